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
	"strconv"
	"time"

	"github.com/labstack/echo/v4"

	"github.com/chatgate/chatgate/core"
	"github.com/chatgate/chatgate/core/embedded"
	"github.com/chatgate/chatgate/discovery"
	"github.com/chatgate/chatgate/gateway"
	"github.com/chatgate/chatgate/push"
	"github.com/chatgate/chatgate/transports"
	"github.com/chatgate/chatgate/transports/all"
	"github.com/chatgate/chatgate/web"
)

// Config is everything a node needs; cmd/chatgate fills it from flags and
// environment variables.
type Config struct {
	Addr               string        // listen address, e.g. ":8080"
	DataDir            string        // data directory: chatgate.db (buntdb) and history/ (Pebble)
	CacheMB            int           // history block cache in MiB; 0: the default (64)
	NodeID             int           // snowflake node id, 0..1023
	PublicURL          string        // base URL clients are sent to; empty: as reached
	HeartbeatInterval  time.Duration // what clients are told to send
	OfflineAfter       time.Duration // silence before a user is offline
	PushWebhook        string        // webhook URL; empty: log notifier
	PushSecret         string        // HMAC key of webhook pushes
	StreamHeartbeat    time.Duration // SSE ping comment and WebSocket ping period; default 15 s
	StreamWriteTimeout time.Duration // a stream write blocked this long cuts the client; default 10 s
	Logger             *slog.Logger
}

// Defaults returns the single-node defaults.
func Defaults() Config {
	return Config{
		Addr: ":8080", DataDir: "./data", NodeID: 1,
		HeartbeatInterval: 5 * time.Second, OfflineAfter: 30 * time.Second,
	}
}

// Node is a running chatgate server.
type Node struct {
	cfg   Config
	store *embedded.Store
	svc   *core.Service
	srv   *http.Server
	ln    net.Listener
	eps   []transports.Endpoint
	done  chan error
}

// Start opens the store and serves until Shutdown.
func Start(cfg Config) (*Node, error) {
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
	var notifier core.Notifier = push.Log{Logger: log}
	if cfg.PushWebhook != "" {
		if cfg.PushSecret == "" {
			return nil, errors.New("-push-webhook needs -push-secret (CHATGATE_PUSH_SECRET) to sign requests")
		}
		notifier = push.NewWebhook(cfg.PushWebhook, []byte(cfg.PushSecret))
	}
	ids, err := core.NewSnowflake(cfg.NodeID)
	if err != nil {
		return nil, err
	}
	store, err := embedded.Open(cfg.DataDir, ids, log, embedded.Options{CacheBytes: int64(cfg.CacheMB) << 20})
	if err != nil {
		return nil, err
	}
	ln, err := net.Listen("tcp", cfg.Addr)
	if err != nil {
		store.Close()
		return nil, fmt.Errorf("listen on %s: %w", cfg.Addr, err)
	}
	svc := core.New(core.Config{HeartbeatInterval: cfg.HeartbeatInterval, OfflineAfter: cfg.OfflineAfter},
		store, core.NewLocalBus(), notifier, ids, log)
	eps := all.Endpoints(svc, all.Options{Heartbeat: cfg.StreamHeartbeat, WriteTimeout: cfg.StreamWriteTimeout})
	disc := discovery.Static{ID: "node-" + strconv.Itoa(cfg.NodeID), URL: cfg.PublicURL}
	gw := gateway.New(svc, disc, eps, log)
	// The web client at / and /assets/*; /v1/* and /healthz stay the API's.
	wh := echo.WrapHandler(web.Handler())
	for _, p := range web.Paths {
		gw.Echo().GET(p, wh)
		gw.Echo().HEAD(p, wh)
	}
	n := &Node{
		cfg: cfg, store: store, svc: svc, ln: ln, done: make(chan error, 1),
		srv: &http.Server{
			Handler:           gw,
			ReadHeaderTimeout: 10 * time.Second,
			IdleTimeout:       2 * time.Minute,
			ErrorLog:          slog.NewLogLogger(log.Handler(), slog.LevelDebug),
		},
	}
	// Shutdown waits for requests to finish; streams and held long polls
	// would never finish by themselves, so they are drained first.
	n.srv.RegisterOnShutdown(svc.Drain)
	n.eps = eps
	go func() { n.done <- n.srv.Serve(ln) }()
	log.Info("chatgate listening", "addr", ln.Addr().String(), "data", cfg.DataDir, "node_id", cfg.NodeID)
	return n, nil
}

// Addr is the address the node listens on (useful with port 0).
func (n *Node) Addr() string { return n.ln.Addr().String() }

// URL is http://Addr.
func (n *Node) URL() string { return "http://" + n.Addr() }

// Service is the node's core, for in-process tests and tools.
func (n *Node) Service() *core.Service { return n.svc }

// Shutdown stops accepting connections, lets in-flight requests (sends
// among them) finish until ctx ends, then stops the core and closes the
// store durably.
func (n *Node) Shutdown(ctx context.Context) error {
	err := n.srv.Shutdown(ctx)
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
	return errors.Join(err, n.store.Close())
}
