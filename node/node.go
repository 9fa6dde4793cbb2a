// Package node wires one chatgate server together: store, core, gateway,
// transports and discovery. cmd/chatgate and the tests both start nodes
// through it.
package node

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"net/netip"
	"os"
	"strconv"
	"strings"
	"sync"
	"time"

	consulapi "github.com/hashicorp/consul/api"
	"github.com/labstack/echo/v4"

	"github.com/chatgate/chatgate/core"
	"github.com/chatgate/chatgate/core/embedded"
	natsbus "github.com/chatgate/chatgate/core/nats"
	"github.com/chatgate/chatgate/core/postgres"
	"github.com/chatgate/chatgate/discovery"
	"github.com/chatgate/chatgate/discovery/consul"
	"github.com/chatgate/chatgate/gateway"
	"github.com/chatgate/chatgate/metrics"
	"github.com/chatgate/chatgate/push"
	"github.com/chatgate/chatgate/transports"
	"github.com/chatgate/chatgate/transports/all"
	"github.com/chatgate/chatgate/web"
)

// Config is everything a node needs; cmd/chatgate fills it from flags and
// environment variables.
type Config struct {
	Addr               string           // listen address, e.g. ":8080"
	DataDir            string           // data directory: chatgate.db (buntdb) and history/ (Pebble)
	CacheMB            int              // history block cache in MiB; 0: the default (64)
	NodeID             int              // snowflake node id, 0..1023
	NodeIDAuto         bool             // take a free node id from Consul instead (-node-id auto)
	PublicURL          string           // base URL clients are sent to; empty: as reached
	Store              string           // postgres://… for the shared store; empty: embedded in DataDir
	Bus                string           // nats://… to reach the other nodes; empty: in-process
	Consul             string           // Consul agent HOST:PORT; empty: static single-node discovery
	Zone               string           // this node's zone, for discovery
	CheckInterval      time.Duration    // Consul's /readyz check interval; default 5 s
	CheckURL           string           // what Consul's check calls; default PublicURL+"/readyz"
	Clock              func() time.Time // the id generator's clock; tests skew it
	Limits             core.Limits      // rate limits (DefaultLimits)
	TrustedProxies     []netip.Prefix   // peers whose X-Forwarded-For names the client
	MaxConnsPerAddress int              // open TCP connections per client address; 0: no limit
	ReadHeaderTimeout  time.Duration    // time to send a request's headers; default 10 s
	ReadTimeout        time.Duration    // time to send a whole request; default 30 s (streams and held polls set their own)
	WriteTimeout       time.Duration    // time to take an answer; default 30 s (streams and held polls set their own)
	MetricsAddr        string           // serve /metrics here instead of on Addr
	AccessLog          bool             // log every answered request (route, status, time; never path, query or body)
	HeartbeatInterval  time.Duration    // what clients are told to send
	OfflineAfter       time.Duration    // silence before a user is offline
	PushWebhook        string           // webhook URL; empty: log notifier
	PushSecret         string           // HMAC key of webhook pushes
	StreamHeartbeat    time.Duration    // SSE ping comment and WebSocket ping period; default 15 s
	StreamWriteTimeout time.Duration    // a stream write blocked this long cuts the client; default 10 s
	Logger             *slog.Logger
}

// Defaults returns the single-node defaults.
func Defaults() Config {
	return Config{
		Addr: ":8080", DataDir: "./data", NodeID: 1,
		HeartbeatInterval: 5 * time.Second, OfflineAfter: 30 * time.Second,
		Limits: core.DefaultLimits(), MaxConnsPerAddress: 1000, ReadHeaderTimeout: 10 * time.Second,
	}
}

// Node is a running chatgate server.
type Node struct {
	cfg    Config
	log    *slog.Logger
	store  core.Store
	bus    *natsbus.Bus // nil on a single node
	ids    *core.Snowflake
	svc    *core.Service
	srv    *http.Server
	ln     net.Listener
	eps    []transports.Endpoint
	done   chan error
	lease  *consul.Lease        // nil unless -node-id auto
	reg    *consul.Registration // nil without Consul
	disc   *consul.Discovery    // nil without Consul
	failed chan error
	stop   chan struct{}
	met    *metrics.Metrics
	msrv   *http.Server // -metrics-addr; nil when /metrics is on the main address
	mdone  chan error
	maddr  string
	wg     sync.WaitGroup
}

// Start opens the store and serves until Shutdown. With Consul, Bus and
// Store set it is a node of a cluster; with none, the embedded single node.
func Start(cfg Config) (n *Node, err error) {
	log := cfg.Logger
	if log == nil {
		log = slog.Default()
	}
	if cfg.CacheMB < 0 {
		return nil, errors.New("-cache-mb must not be negative")
	}
	if cfg.HeartbeatInterval <= 0 || cfg.OfflineAfter <= cfg.HeartbeatInterval {
		return nil, errors.New("need 0 < heartbeat-interval < offline-after")
	}
	if cfg.NodeIDAuto && cfg.Consul == "" {
		return nil, errors.New("-node-id auto needs -consul")
	}
	if cfg.Store != "" && !isPostgresURL(cfg.Store) {
		return nil, fmt.Errorf("-store %q: want postgres://… (or empty for the embedded store)", cfg.Store)
	}
	if cfg.CheckInterval <= 0 {
		cfg.CheckInterval = 5 * time.Second
	}
	if cfg.ReadHeaderTimeout <= 0 {
		cfg.ReadHeaderTimeout = 10 * time.Second
	}
	if cfg.ReadTimeout <= 0 {
		cfg.ReadTimeout = 30 * time.Second
	}
	if cfg.WriteTimeout <= 0 {
		cfg.WriteTimeout = 30 * time.Second
	}
	if cfg.MaxConnsPerAddress < 0 || cfg.Limits.ConnsPerUser < 0 {
		return nil, errors.New("connection limits must not be negative")
	}
	var notifier core.Notifier = push.Log{Logger: log}
	if cfg.PushWebhook != "" {
		if cfg.PushSecret == "" {
			return nil, errors.New("-push-webhook needs -push-secret (CHATGATE_PUSH_SECRET) to sign requests")
		}
		notifier = push.NewWebhook(cfg.PushWebhook, []byte(cfg.PushSecret))
	}
	n = &Node{cfg: cfg, log: log, done: make(chan error, 1), failed: make(chan error, 1), stop: make(chan struct{}),
		met: metrics.New(), mdone: make(chan error, 1)}
	// Whatever Start opened is closed again if a later step fails.
	var undo []func()
	defer func() {
		if err != nil {
			for i := len(undo) - 1; i >= 0; i-- {
				undo[i]()
			}
		}
	}()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()

	var cc *consulapi.Client
	if cfg.Consul != "" {
		if cc, err = consulapi.NewClient(&consulapi.Config{Address: cfg.Consul}); err != nil {
			return nil, fmt.Errorf("consul client for %s: %w", cfg.Consul, err)
		}
	}
	if cfg.NodeIDAuto {
		if n.lease, err = consul.AcquireNodeID(ctx, cc, consul.LeaseOptions{Logger: log}); err != nil {
			return nil, fmt.Errorf("take a node id from consul: %w", err)
		}
		undo = append(undo, func() { _ = n.lease.Release(context.Background()) })
		cfg.NodeID = n.lease.ID()
		n.cfg.NodeID = cfg.NodeID
	}
	if n.ids, err = core.NewSnowflake(cfg.NodeID); err != nil {
		return nil, err
	}
	if cfg.Clock != nil {
		n.ids.SetClock(cfg.Clock)
	}
	if cfg.Store != "" {
		pg, err := postgres.Open(ctx, cfg.Store, n.ids, log, postgres.Options{OnCommit: n.met.Committed})
		if err != nil {
			return nil, err
		}
		n.store = pg
	} else {
		es, err := embedded.Open(cfg.DataDir, n.ids, log, embedded.Options{CacheBytes: int64(cfg.CacheMB) << 20, OnCommit: n.met.Committed, OnIndex: n.met.Indexed})
		if err != nil {
			return nil, err
		}
		n.store = es
	}
	undo = append(undo, func() { n.store.Close() })
	var bus core.Bus = core.NewLocalBus()
	if cfg.Bus != "" {
		if n.bus, err = natsbus.Connect(natsbus.Options{URL: cfg.Bus, Name: "chatgate-node-" + strconv.Itoa(cfg.NodeID), Log: log}); err != nil {
			return nil, err
		}
		undo = append(undo, func() { n.bus.Close() })
		bus = n.bus
	}
	if n.ln, err = net.Listen("tcp", cfg.Addr); err != nil {
		return nil, fmt.Errorf("listen on %s: %w", cfg.Addr, err)
	}
	undo = append(undo, func() { n.ln.Close() })
	n.ln = gateway.AddrLimit{Max: cfg.MaxConnsPerAddress, Refused: n.met.ConnRefused, Exempt: func(a netip.Addr) bool {
		if a.IsLoopback() && !cfg.Limits.Loopback {
			return true
		}
		for _, p := range cfg.TrustedProxies {
			if p.Contains(a) {
				return true
			}
		}
		return false
	}}.Listener(n.ln)
	n.svc = core.New(core.Config{HeartbeatInterval: cfg.HeartbeatInterval, OfflineAfter: cfg.OfflineAfter, Limits: cfg.Limits, Observer: n.met},
		n.store, bus, notifier, n.ids, log)
	undo = append(undo, n.svc.Close)
	n.eps = all.Endpoints(n.svc, all.Options{Heartbeat: cfg.StreamHeartbeat, WriteTimeout: cfg.StreamWriteTimeout})
	self := discovery.Server{ID: "node-" + strconv.Itoa(cfg.NodeID), URL: cfg.PublicURL}
	var disc discovery.Discovery = discovery.Static{ID: self.ID, URL: self.URL}
	if cc != nil {
		if self.URL == "" {
			self.URL = advertisedURL(n.ln.Addr())
		}
		if n.disc, err = consul.New(ctx, cc, consul.Config{Self: self, Zone: cfg.Zone, Logger: log}); err != nil {
			return nil, fmt.Errorf("consul discovery: %w", err)
		}
		undo = append(undo, func() { n.disc.Close() })
		disc = n.disc
	}
	gw := gateway.New(n.svc, disc, n.eps, log, gateway.Options{TrustedProxies: cfg.TrustedProxies, Observe: n.observe})
	if cfg.MetricsAddr == "" {
		gw.Echo().GET("/metrics", echo.WrapHandler(n.met.Handler()))
	} else {
		mln, err := net.Listen("tcp", cfg.MetricsAddr)
		if err != nil {
			return nil, fmt.Errorf("listen on -metrics-addr %s: %w", cfg.MetricsAddr, err)
		}
		n.maddr = mln.Addr().String()
		mux := http.NewServeMux()
		mux.Handle("GET /metrics", n.met.Handler())
		n.msrv = &http.Server{Handler: mux, ReadHeaderTimeout: cfg.ReadHeaderTimeout}
		go func() { n.mdone <- n.msrv.Serve(mln) }()
		undo = append(undo, func() { _ = n.msrv.Close(); <-n.mdone })
	}
	// The web client at / and /assets/*; /v1/* and /healthz stay the API's.
	var nodes func() []string
	if n.disc != nil {
		nodes = func() []string {
			var urls []string
			for _, nd := range n.disc.Nodes() {
				urls = append(urls, nd.URL)
			}
			return urls
		}
	}
	wh := echo.WrapHandler(web.HandlerFor(nodes))
	for _, p := range web.Paths {
		gw.Echo().GET(p, wh)
		gw.Echo().HEAD(p, wh)
	}
	n.srv = &http.Server{
		Handler:           gw,
		ReadHeaderTimeout: cfg.ReadHeaderTimeout,
		// A client that trickles a body no handler reads (net/http reads
		// it away after the answer), or never reads its answer, would
		// otherwise hold a goroutine and the answer for ever.
		ReadTimeout:  cfg.ReadTimeout,
		WriteTimeout: cfg.WriteTimeout,
		IdleTimeout:  2 * time.Minute,
		ErrorLog:     slog.NewLogLogger(log.Handler(), slog.LevelDebug),
	}
	// Shutdown waits for requests to finish; streams and held long polls
	// would never finish by themselves, so they are drained first.
	n.srv.RegisterOnShutdown(n.svc.Drain)
	go func() { n.done <- n.srv.Serve(n.ln) }()
	if cc != nil {
		// Registered once serving, so the first check finds /readyz.
		n.reg, err = consul.Register(ctx, cc, consul.Service{
			ID: self.ID, NodeID: cfg.NodeID, URL: self.URL, Zone: cfg.Zone,
			ReadyURL: cfg.CheckURL, CheckInterval: cfg.CheckInterval, Logger: log,
		})
		if err != nil {
			_ = n.srv.Close()
			<-n.done
			return nil, fmt.Errorf("register with consul: %w", err)
		}
		n.wg.Add(1)
		go func() { defer n.wg.Done(); n.reportLoad() }()
	}
	if n.lease != nil {
		n.wg.Add(1)
		go func() { defer n.wg.Done(); n.watchLease() }()
	}
	log.Info("chatgate listening", "addr", n.ln.Addr().String(), "node_id", cfg.NodeID,
		"store", storeName(cfg), "bus", busName(cfg), "discovery", discName(cfg))
	return n, nil
}

func isPostgresURL(s string) bool {
	return strings.HasPrefix(s, "postgres://") || strings.HasPrefix(s, "postgresql://")
}

func storeName(cfg Config) string {
	if cfg.Store != "" {
		return "postgres"
	}
	return "embedded:" + cfg.DataDir
}

func busName(cfg Config) string {
	if cfg.Bus != "" {
		return "nats"
	}
	return "in-process"
}

func discName(cfg Config) string {
	if cfg.Consul != "" {
		return "consul:" + cfg.Consul
	}
	return "static"
}

// advertisedURL is the base URL of a listener whose -public-url is unset:
// its own address, or the host name when it listens on every interface.
func advertisedURL(a net.Addr) string {
	host, port, _ := net.SplitHostPort(a.String())
	if ip := net.ParseIP(host); ip == nil || ip.IsUnspecified() {
		if h, err := os.Hostname(); err == nil {
			host = h
		}
	}
	return "http://" + net.JoinHostPort(host, port)
}

// reportLoad keeps the node's load in Consul current: its connected
// devices (streams and polling devices). Registration sends only changes.
func (n *Node) reportLoad() {
	t := time.NewTicker(time.Second)
	defer t.Stop()
	for {
		st := n.svc.Stats()
		n.reg.SetLoad(int(st.Streams) + st.Mailboxes)
		select {
		case <-n.stop:
			return
		case <-t.C:
		}
	}
}

// watchLease fences the id generator the moment the node can no longer be
// sure it holds its node id: another node may take it soon, and two nodes
// minting under one id could issue the same message id. The node then
// fails (Failed), and cmd/chatgate exits for its supervisor to restart it
// under a new id.
func (n *Node) watchLease() {
	select {
	case <-n.stop:
	case <-n.lease.Lost():
		n.ids.Fence()
		err := fmt.Errorf("lost the consul lock on node id %d: stopped minting ids", n.lease.ID())
		n.log.Error("node id lease lost; the node must restart", "node_id", n.lease.ID())
		n.failed <- err
	}
}

// Failed reports a fault the node cannot recover from (its node-id lock
// lost); the process should exit.
func (n *Node) Failed() <-chan error { return n.failed }

// NodeID is the snowflake node id the node mints ids under.
func (n *Node) NodeID() int { return n.cfg.NodeID }

// Addr is the address the node listens on (useful with port 0).
func (n *Node) Addr() string { return n.ln.Addr().String() }

// URL is http://Addr.
func (n *Node) URL() string { return "http://" + n.Addr() }

// observe records an answered request: its metrics, and with -access-log a
// line naming its route, never its path or query (which may hold a token).
func (n *Node) observe(r gateway.Request) {
	n.met.Request(r.Route, r.Method, r.Status, r.Duration, r.Transport)
	if n.cfg.AccessLog {
		n.log.Info("request", "route", r.Route, "method", r.Method, "status", r.Status, "bytes", r.Bytes,
			"ms", float64(r.Duration.Microseconds())/1000, "client", r.Client)
	}
}

// MetricsAddr is where -metrics-addr serves /metrics ("" when on Addr).
func (n *Node) MetricsAddr() string { return n.maddr }

// Metrics are the node's series, for in-process tests.
func (n *Node) Metrics() *metrics.Metrics { return n.met }

// Service is the node's core, for in-process tests and tools.
func (n *Node) Service() *core.Service { return n.svc }

// Shutdown stops accepting connections, lets in-flight requests (sends
// among them) finish until ctx ends, then stops the core and closes the
// store durably.
func (n *Node) Shutdown(ctx context.Context) error {
	close(n.stop)
	var err error
	if n.reg != nil {
		// Out of the catalogue first: negotiation elsewhere stops sending
		// clients here, and the clients drained below go to other nodes.
		err = n.reg.Deregister(ctx)
	}
	// Shutdown closes the listeners, then drains streams and held polls
	// (RegisterOnShutdown), so clients reconnect elsewhere, not here.
	err = errors.Join(err, n.srv.Shutdown(ctx))
	if errors.Is(err, context.DeadlineExceeded) {
		err = errors.Join(err, n.srv.Close())
	}
	n.svc.Drain() // also when Serve never ran its shutdown hooks
	for _, ep := range n.eps {
		if ep.Close != nil {
			err = errors.Join(err, ep.Close())
		}
	}
	n.svc.Close()
	if serr := <-n.done; serr != nil && !errors.Is(serr, http.ErrServerClosed) {
		err = errors.Join(err, serr)
	}
	if n.msrv != nil {
		_ = n.msrv.Close() // scrapes are short; nothing to wait for
		<-n.mdone
	}
	n.wg.Wait()
	if n.disc != nil {
		err = errors.Join(err, n.disc.Close())
	}
	if n.bus != nil {
		err = errors.Join(err, n.bus.Close())
	}
	err = errors.Join(err, n.store.Close())
	if n.lease != nil {
		// Last: the id is free for another node only once nothing here
		// can mint under it.
		err = errors.Join(err, n.lease.Release(ctx))
	}
	return err
}
