// Package consul is chatgate's cluster discovery on Consul: each node
// registers itself with an HTTP health check on /readyz (Register), every
// node keeps a local view of the healthy ones and recommends the best for a
// client (Discovery), and nodes take unique snowflake node ids under session
// locks (AcquireNodeID).
package consul

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net/url"
	"strconv"
	"strings"
	"sync/atomic"
	"time"

	"github.com/hashicorp/consul/api"
)

// ServiceName is the Consul service every chatgate node registers as.
const ServiceName = "chatgate"

// Service metadata keys.
const (
	MetaURL    = "url"     // the node's public base URL, what clients are sent to
	MetaZone   = "zone"    // the node's zone (location)
	MetaLoad   = "load"    // connected devices, decimal
	MetaNodeID = "node_id" // snowflake node id, decimal
)

const (
	defaultCheckInterval = 10 * time.Second
	// Consul refuses to deregister sooner (check_deregister_interval_min).
	defaultDeregisterAfter = time.Minute
	// loadUpdateEvery bounds how often one node writes its load: each write
	// is a Raft commit and wakes every node's blocking query, so the cost
	// grows with the square of the cluster size.
	loadUpdateEvery = time.Second
	// resyncEvery is how often the registration makes sure the agent still
	// has the service and its check (an agent restarted without its state
	// would otherwise have forgotten this node).
	resyncEvery = 30 * time.Second
	callTimeout = 10 * time.Second
)

// Service describes the node being registered.
type Service struct {
	// ID is the node's unique name: the Consul service ID and the server id
	// /v1/negotiate reports. Empty: "node-<NodeID>", as discovery.Static.
	ID     string
	NodeID int
	// Name is the Consul service name; default ServiceName. Discovery's
	// Config.Service must match.
	Name string
	// URL is the node's public base URL, e.g. http://10.0.0.5:8080; the
	// service's Address and Port come from it.
	URL  string
	Zone string
	// ReadyURL is what Consul's HTTP check calls; empty: URL+"/readyz". It
	// must be reachable from the Consul agent the node registers with.
	ReadyURL string
	// CheckInterval is how often Consul calls ReadyURL (default 10 s,
	// Consul's minimum is 1 s). A failing node stops being recommended
	// within about CheckInterval + CheckTimeout.
	CheckInterval time.Duration
	// CheckTimeout bounds one check call; default half the interval, at
	// most 5 s, so a hung node is detected about as fast as a failing one.
	CheckTimeout time.Duration
	// DeregisterAfter removes the entry of a node whose check stayed
	// critical this long (a node that died without deregistering). Default
	// and minimum: 1 minute.
	DeregisterAfter time.Duration
	Tags            []string
	Logger          *slog.Logger
}

func (s *Service) normalize() error {
	if s.NodeID < 0 || s.NodeID > MaxNodeID {
		return fmt.Errorf("node id %d out of range 0..%d", s.NodeID, MaxNodeID)
	}
	if s.ID == "" {
		s.ID = "node-" + strconv.Itoa(s.NodeID)
	}
	if s.Name == "" {
		s.Name = ServiceName
	}
	if s.URL == "" {
		return errors.New("service needs the node's public URL")
	}
	s.URL = strings.TrimRight(s.URL, "/")
	if s.ReadyURL == "" {
		s.ReadyURL = s.URL + "/readyz"
	}
	if s.CheckInterval <= 0 {
		s.CheckInterval = defaultCheckInterval
	}
	if s.CheckTimeout <= 0 {
		s.CheckTimeout = min(s.CheckInterval/2, 5*time.Second)
	}
	if s.DeregisterAfter <= 0 {
		s.DeregisterAfter = defaultDeregisterAfter
	}
	if s.Logger == nil {
		s.Logger = slog.Default()
	}
	return nil
}

// hostPort splits a base URL into the service's Address and Port.
func hostPort(raw string) (string, int, error) {
	u, err := url.Parse(raw)
	if err != nil {
		return "", 0, fmt.Errorf("parse node URL %q: %w", raw, err)
	}
	if u.Scheme != "http" && u.Scheme != "https" || u.Host == "" {
		return "", 0, fmt.Errorf("node URL %q: want http(s)://HOST[:PORT]", raw)
	}
	port := u.Port()
	if port == "" {
		port = map[string]string{"http": "80", "https": "443"}[u.Scheme]
	}
	p, err := strconv.Atoi(port)
	if err != nil || p <= 0 || p > 65535 {
		return "", 0, fmt.Errorf("node URL %q: bad port", raw)
	}
	return u.Hostname(), p, nil
}

// Registration is this node's entry in Consul. Its load is kept current by
// one goroutine it owns until Deregister.
type Registration struct {
	client  *api.Client
	svc     Service
	addr    string
	port    int
	checkID string
	log     *slog.Logger

	load   atomic.Int64
	kick   chan struct{} // capacity 1: "the load may have changed"
	ctx    context.Context
	cancel context.CancelFunc // stops run
	done   chan struct{}      // closed when run has returned

	deregistered atomic.Bool
}

// Register registers the node with the Consul agent client talks to: the
// service (Name, default "chatgate") with the node's URL, zone and load (0)
// in its Meta and an HTTP check on ReadyURL. A new check starts critical, so
// the node is not recommended until Consul has seen /readyz answer 200 once
// (within one interval); registering an ID the agent already has keeps that
// check's last status. Other checks of an earlier registration with the same
// ID are removed. A node that dies without Deregister turns critical and is
// then recommended by no one; Consul removes its entry after
// DeregisterAfter (its reaper runs every 30 s).
func Register(ctx context.Context, client *api.Client, svc Service) (*Registration, error) {
	if err := svc.normalize(); err != nil {
		return nil, fmt.Errorf("register with consul: %w", err)
	}
	addr, port, err := hostPort(svc.URL)
	if err != nil {
		return nil, fmt.Errorf("register with consul: %w", err)
	}
	r := &Registration{
		client: client, svc: svc, addr: addr, port: port,
		checkID: "service:" + svc.ID,
		log:     svc.Logger.With("component", "consul-registration", "service_id", svc.ID),
		kick:    make(chan struct{}, 1),
		done:    make(chan struct{}),
	}
	r.ctx, r.cancel = context.WithCancel(context.Background())
	if err := r.registerFull(ctx, 0); err != nil {
		r.cancel()
		return nil, err
	}
	go r.run(0)
	return r, nil
}

// ID is the Consul service ID.
func (r *Registration) ID() string { return r.svc.ID }

// SetLoad records the node's number of connected devices. It never blocks
// and never talks to Consul itself: the registration's goroutine publishes
// the newest value when it differs from the published one, at most about
// once a second, so calling SetLoad on every connect and disconnect is fine.
func (r *Registration) SetLoad(n int) {
	r.load.Store(int64(n))
	select {
	case r.kick <- struct{}{}:
	default:
	}
}

// Deregister stops the load updates and removes the service and its check
// from Consul, so no node recommends this one any more. Once it has
// succeeded, later calls do nothing.
func (r *Registration) Deregister(ctx context.Context) error {
	r.cancel()
	<-r.done
	if !r.deregistered.CompareAndSwap(false, true) {
		return nil
	}
	if err := r.client.Agent().ServiceDeregisterOpts(r.svc.ID, (&api.QueryOptions{}).WithContext(ctx)); err != nil {
		r.deregistered.Store(false) // let the caller retry
		return fmt.Errorf("deregister %s from consul: %w", r.svc.ID, err)
	}
	return nil
}

func (r *Registration) service(load int64) *api.AgentServiceRegistration {
	return &api.AgentServiceRegistration{
		ID: r.svc.ID, Name: r.svc.Name, Tags: r.svc.Tags,
		Address: r.addr, Port: r.port,
		Meta: map[string]string{
			MetaURL:    r.svc.URL,
			MetaZone:   r.svc.Zone,
			MetaLoad:   strconv.FormatInt(load, 10),
			MetaNodeID: strconv.Itoa(r.svc.NodeID),
		},
	}
}

// registerFull registers the service together with its check.
func (r *Registration) registerFull(ctx context.Context, load int64) error {
	reg := r.service(load)
	reg.Check = &api.AgentServiceCheck{
		CheckID:                        r.checkID,
		Name:                           "chatgate /readyz",
		HTTP:                           r.svc.ReadyURL,
		Method:                         "GET",
		Interval:                       r.svc.CheckInterval.String(),
		Timeout:                        r.svc.CheckTimeout.String(),
		DeregisterCriticalServiceAfter: r.svc.DeregisterAfter.String(),
	}
	err := r.client.Agent().ServiceRegisterOpts(reg, api.ServiceRegisterOpts{ReplaceExistingChecks: true}.WithContext(ctx))
	if err != nil {
		return fmt.Errorf("register %s with consul: %w", r.svc.ID, err)
	}
	return nil
}

// publishLoad puts load into the service's Meta.
//
// Re-registering a service is the only way to change its Meta. Whether that
// disturbs the health check was read in Consul's agent (v1.14,
// Agent.addServiceInternal and addCheck) and is pinned by
// TestRegistration_LoadUpdatesKeepCheck:
//   - re-registering WITH the check keeps the check's status (the agent
//     restores Status and Output from a snapshot of the old check), so a
//     healthy node does not turn critical; but the agent stops the check's
//     runner and starts a new one whose first run comes after a random
//     stagger in [0, interval). Re-registered every second with a 10 s
//     interval, the check would run only when the stagger happened to be
//     under a second: a node that fails /readyz would be noticed after a
//     random, unbounded delay (35% of the time later than the interval).
//     Measured against a real agent: re-registered with its check every
//     second for 12 s, a 3 s check ran once instead of four times, its
//     status staying "passing" throughout.
//   - re-registering WITHOUT any check and without replace-existing-checks
//     leaves the existing check, its status and its timer alone.
//
// So load updates register the service alone. A service without any check
// would count as healthy, though, so the update first makes sure the check
// is still there (a local agent read, no Raft write) and falls back to the
// full registration when the agent lost it.
func (r *Registration) publishLoad(ctx context.Context, load int64) error {
	ok, err := r.checkPresent(ctx)
	if err != nil {
		return err
	}
	if !ok {
		r.log.Warn("consul agent lost this node's registration; registering again")
		return r.registerFull(ctx, load)
	}
	if err := r.client.Agent().ServiceRegisterOpts(r.service(load), api.ServiceRegisterOpts{}.WithContext(ctx)); err != nil {
		return fmt.Errorf("update load of %s: %w", r.svc.ID, err)
	}
	return nil
}

// checkPresent reports whether the agent still has the node's check.
func (r *Registration) checkPresent(ctx context.Context) (bool, error) {
	checks, err := r.client.Agent().ChecksWithFilterOpts(
		"CheckID == "+strconv.Quote(r.checkID), (&api.QueryOptions{}).WithContext(ctx))
	if err != nil {
		return false, fmt.Errorf("read check of %s: %w", r.svc.ID, err)
	}
	return len(checks) > 0, nil
}

// resync registers the node again if the agent forgot it.
func (r *Registration) resync(ctx context.Context, load int64) error {
	ok, err := r.checkPresent(ctx)
	if err != nil || ok {
		return err
	}
	r.log.Warn("consul agent lost this node's registration; registering again")
	return r.registerFull(ctx, load)
}

// run publishes load changes, at most one write per loadUpdateEvery, and
// every resyncEvery makes sure the agent still knows the node.
func (r *Registration) run(published int64) {
	defer close(r.done)
	ctx := r.ctx
	resync := time.NewTicker(resyncEvery)
	defer resync.Stop()
	var retry <-chan time.Time
	var last time.Time
	for {
		select {
		case <-ctx.Done():
			return
		case <-r.kick:
		case <-retry:
			retry = nil
		case <-resync.C:
			cctx, ccancel := context.WithTimeout(ctx, callTimeout)
			err := r.resync(cctx, published)
			ccancel()
			if err != nil && ctx.Err() == nil {
				r.log.Warn("checking this node's consul registration failed", "err", err)
			}
			continue
		}
		if wait := loadUpdateEvery - time.Since(last); wait > 0 {
			select {
			case <-ctx.Done():
				return
			case <-time.After(wait):
			}
		}
		load := r.load.Load()
		if load == published {
			continue
		}
		last = time.Now()
		cctx, ccancel := context.WithTimeout(ctx, callTimeout)
		err := r.publishLoad(cctx, load)
		ccancel()
		if err != nil {
			if ctx.Err() != nil {
				return
			}
			r.log.Warn("publishing load to consul failed; retrying", "load", load, "err", err)
			retry = time.After(loadUpdateEvery)
			continue
		}
		published = load
	}
}
