package consul

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"math"
	"math/rand/v2"
	"net/http"
	"strconv"
	"strings"
	"sync/atomic"
	"time"

	"github.com/hashicorp/consul/api"

	"github.com/chatgate/chatgate/discovery"
)

// ZoneHeader names the client's zone when the ?zone= query parameter does
// not (a load balancer or CDN edge can set it from the client's location).
const ZoneHeader = "X-Chatgate-Zone"

const (
	// watchWait is how long one blocking query may wait for a change.
	// Shorter than Consul's 5 min default so a connection that died
	// silently is noticed: each query also has a client-side deadline.
	watchWait = 30 * time.Second
	// defaultMaxStale is how long the last healthy list is still trusted
	// while Consul cannot be reached.
	defaultMaxStale = 30 * time.Second
)

// Config configures a Discovery.
type Config struct {
	// Self is this node: recommended when no node is healthy.
	Self discovery.Server
	// Zone is this node's zone: the client's zone when the request names
	// none (the client reached this node, so it is likely near it).
	Zone string
	// Service is the Consul service name; default ServiceName.
	Service string
	// MaxStale is how long the last known healthy list is used while
	// Consul is unreachable; after that only Self is recommended. Default
	// 30 s.
	MaxStale time.Duration
	Logger   *slog.Logger
}

// Node is a healthy chatgate node as seen in Consul.
type Node struct {
	discovery.Server
	Zone string
	Load int // connected devices; math.MaxInt when the node published none
}

// Discovery recommends the best healthy node from a local copy of Consul's
// list of passing chatgate services. One background blocking query keeps
// the copy current, so Recommend never waits on Consul.
//
// How fast a failing node drops out: its check fails within CheckInterval
// (+ CheckTimeout if it hangs), the agent syncs the result to the servers
// and the blocking query returns, which takes milliseconds. One exception
// comes from Consul: for a few seconds after its servers elect a leader
// (up to 3 s, more in clusters over 128 nodes) an agent holds back check
// results until a staggered full sync has run.
type Discovery struct {
	client *api.Client
	cfg    Config
	log    *slog.Logger
	view   atomic.Pointer[[]Node]
	cancel context.CancelFunc
	done   chan struct{}
	// failingSince is when queries to Consul started failing (unix nanos),
	// 0 while they succeed.
	failingSince atomic.Int64
}

var _ discovery.Discovery = (*Discovery)(nil)

// New reads the healthy nodes once and then keeps watching them until
// Close. It fails when that first read fails: a wrong -consul address
// should stop the node at start rather than leave it quietly sending every
// client to itself.
func New(ctx context.Context, client *api.Client, cfg Config) (*Discovery, error) {
	if cfg.Self.URL == "" {
		return nil, errors.New("consul discovery: Config.Self needs this node's URL (the fallback)")
	}
	if cfg.Service == "" {
		cfg.Service = ServiceName
	}
	if cfg.MaxStale <= 0 {
		cfg.MaxStale = defaultMaxStale
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.Default()
	}
	d := &Discovery{
		client: client, cfg: cfg, done: make(chan struct{}),
		log: cfg.Logger.With("component", "consul-discovery"),
	}
	entries, meta, err := client.Health().Service(cfg.Service, "", true, (&api.QueryOptions{}).WithContext(ctx))
	if err != nil {
		return nil, fmt.Errorf("consul discovery: list healthy %s services: %w", cfg.Service, err)
	}
	d.store(entries)
	wctx, cancel := context.WithCancel(context.Background())
	d.cancel = cancel
	go d.watch(wctx, meta.LastIndex)
	return d, nil
}

// Close stops the background query. Recommend keeps answering from the
// last known list.
func (d *Discovery) Close() error {
	d.cancel()
	<-d.done
	return nil
}

// Nodes returns the healthy nodes as last seen.
func (d *Discovery) Nodes() []Node {
	if p := d.view.Load(); p != nil {
		return append([]Node(nil), *p...)
	}
	return nil
}

// Recommend implements discovery.Discovery: among the healthy nodes it
// picks those in the client's zone (ClientZone) if there are any, else all
// of them, and of those the least loaded one. Nodes with equal load are
// chosen between at random: loads are published at most once a second, so
// a deterministic choice would send a whole burst of logins (a cluster
// start, a reconnect storm after a node died) to the same node until its
// next load update; random choice spreads such a burst over the equals.
//
// When no node is healthy (Consul not yet reporting, this node's own check
// pending, or Consul unreachable for longer than MaxStale) it recommends
// this node itself: it is answering this request, so it is alive, and a
// client sent here still gets served; an error would leave the client with
// nowhere to go.
func (d *Discovery) Recommend(_ context.Context, r *http.Request) (discovery.Server, error) {
	nodes := d.current()
	zone := ClientZone(r, d.cfg.Zone)
	if n, ok := pick(nodes, func(n *Node) bool { return n.Zone == zone }); ok {
		return n.Server, nil
	}
	if n, ok := pick(nodes, func(*Node) bool { return true }); ok {
		return n.Server, nil
	}
	return d.cfg.Self, nil
}

// ClientZone is the zone a request comes from: the ?zone= query parameter,
// else the X-Chatgate-Zone header, else fallback.
func ClientZone(r *http.Request, fallback string) string {
	if r != nil {
		if z := strings.TrimSpace(r.URL.Query().Get("zone")); z != "" {
			return z
		}
		if z := strings.TrimSpace(r.Header.Get(ZoneHeader)); z != "" {
			return z
		}
	}
	return fallback
}

// pick returns the least loaded node matching keep, uniformly at random
// among equally loaded ones (reservoir sampling: one pass, no allocation).
func pick(nodes []Node, keep func(*Node) bool) (Node, bool) {
	var best Node
	equal := 0
	for i := range nodes {
		n := &nodes[i]
		if !keep(n) {
			continue
		}
		switch {
		case equal == 0 || n.Load < best.Load:
			best, equal = *n, 1
		case n.Load == best.Load:
			equal++
			if rand.IntN(equal) == 0 {
				best = *n
			}
		}
	}
	return best, equal > 0
}

func (d *Discovery) current() []Node {
	if f := d.failingSince.Load(); f != 0 && time.Since(time.Unix(0, f)) > d.cfg.MaxStale {
		return nil
	}
	if p := d.view.Load(); p != nil {
		return *p
	}
	return nil
}

func (d *Discovery) store(entries []*api.ServiceEntry) {
	nodes := make([]Node, 0, len(entries))
	for _, e := range entries {
		if e.Service == nil {
			continue
		}
		s := e.Service
		n := Node{Server: discovery.Server{ID: s.ID, URL: s.Meta[MetaURL]}, Zone: s.Meta[MetaZone], Load: math.MaxInt}
		if n.URL == "" {
			// Not registered by Register; its address is the best guess.
			addr := s.Address
			if addr == "" && e.Node != nil {
				addr = e.Node.Address
			}
			n.URL = "http://" + addr + ":" + strconv.Itoa(s.Port)
		}
		if l, err := strconv.Atoi(s.Meta[MetaLoad]); err == nil && l >= 0 {
			n.Load = l
		}
		nodes = append(nodes, n)
	}
	d.view.Store(&nodes)
	d.failingSince.Store(0)
}

// watch keeps the view current with blocking queries: each returns as soon
// as the set of passing services or their metadata changes (a check turning
// critical, a load update) or after watchWait.
func (d *Discovery) watch(ctx context.Context, index uint64) {
	defer close(d.done)
	backoff := 100 * time.Millisecond
	for {
		qctx, cancel := context.WithTimeout(ctx, watchWait+watchWait/16+10*time.Second)
		entries, meta, err := d.client.Health().Service(d.cfg.Service, "", true,
			(&api.QueryOptions{WaitIndex: index, WaitTime: watchWait}).WithContext(qctx))
		cancel()
		if ctx.Err() != nil {
			return
		}
		if err != nil {
			d.failingSince.CompareAndSwap(0, time.Now().UnixNano())
			d.log.Warn("watching healthy chatgate nodes in consul failed; retrying", "err", err, "retry_in", backoff)
			select {
			case <-ctx.Done():
				return
			case <-time.After(backoff):
			}
			backoff = min(2*backoff, 5*time.Second)
			continue
		}
		backoff = 100 * time.Millisecond
		// Consul's rules for blocking queries: an index that went backwards
		// (a restored snapshot, a new leader) means start over from 0.
		if meta.LastIndex < index {
			index = 0
		} else {
			index = meta.LastIndex
		}
		d.store(entries)
	}
}
