// Command chatgate runs a chatgate chat server. With no flags it is the
// embedded single node: buntdb and Pebble in ./data, listening on :8080.
package main

import (
	"context"
	"flag"
	"fmt"
	"log/slog"
	"net/http"
	_ "net/http/pprof"
	"net/netip"
	"os"
	"os/signal"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/chatgate/chatgate/core"
	"github.com/chatgate/chatgate/node"
)

func main() {
	if err := run(os.Args[1:]); err != nil {
		fmt.Fprintln(os.Stderr, "chatgate:", err)
		os.Exit(1)
	}
}

func run(args []string) error {
	cfg := node.Defaults()
	fs := flag.NewFlagSet("chatgate", flag.ContinueOnError)
	fs.StringVar(&cfg.Addr, "addr", cfg.Addr, "listen address HOST:PORT")
	fs.StringVar(&cfg.DataDir, "data", cfg.DataDir, "data directory: chatgate.db (accounts, friends, groups) and history/ (messages)")
	fs.IntVar(&cfg.CacheMB, "cache-mb", 64, "memory for caching history read from disk, MiB")
	fs.Var(nodeIDFlag{&cfg}, "node-id", "snowflake node id, 0..1023, unique per node; auto: take a free one from Consul")
	fs.StringVar(&cfg.PublicURL, "public-url", "", "base URL clients are told to use (default: the URL they used; with -consul: this node's address)")
	fs.StringVar(&cfg.Store, "store", "", "postgres://… for a cluster's shared store (default: the embedded store in -data)")
	fs.StringVar(&cfg.Bus, "bus", "", "nats://… to reach the cluster's other nodes (default: in-process, a single node)")
	fs.StringVar(&cfg.Consul, "consul", "", "Consul agent HOST:PORT for discovery and node ids (default: static single-node discovery)")
	fs.StringVar(&cfg.Zone, "zone", "", "this node's zone: negotiation recommends nodes in the client's zone first")
	fs.DurationVar(&cfg.CheckInterval, "check-interval", 5*time.Second, "how often Consul checks this node's /readyz")
	fs.StringVar(&cfg.CheckURL, "check-url", "", "the URL of this node's /readyz as the Consul agent reaches it (default: -public-url + /readyz)")
	fs.DurationVar(&cfg.HeartbeatInterval, "heartbeat-interval", cfg.HeartbeatInterval, "heartbeat interval clients are told to keep")
	fs.DurationVar(&cfg.OfflineAfter, "offline-after", cfg.OfflineAfter, "a user is offline after this long without activity")
	fs.StringVar(&cfg.PushWebhook, "push-webhook", "", "URL to POST push notifications to (default: log them)")
	fs.StringVar(&cfg.PushSecret, "push-secret", "", "HMAC-SHA256 key that signs webhook pushes")
	fs.Var(rateFlag{&cfg.Limits.LoginFailuresPerAccount}, "limit-login-account", "failed logins allowed per account, N/DURATION (refilled at that rate) or off")
	fs.Var(rateFlag{&cfg.Limits.LoginFailuresPerAddress}, "limit-login-address", "failed logins allowed per client address, N/DURATION or off (loopback is not limited by address)")
	fs.Var(rateFlag{&cfg.Limits.SignupsPerAddress}, "limit-signup-address", "signups allowed per client address, N/DURATION or off")
	fs.Var(rateFlag{&cfg.Limits.SendsPerUser}, "limit-send", "messages each user may send, N/DURATION or off")
	fs.Var(rateFlag{&cfg.Limits.SearchesPerUser}, "limit-search", "searches each user may run, N/DURATION or off")
	fs.Var(rateFlag{&cfg.Limits.FramesPerSocket}, "limit-ws-frames", "frames a WebSocket client may send, N/DURATION or off; past it the socket is closed (1008)")
	fs.Var(rateFlag{&cfg.Limits.BytesPerSocket}, "limit-ws-bytes", "bytes a WebSocket client may send, N/DURATION (a burst of N) or off; past it the socket is closed (1008)")
	fs.IntVar(&cfg.Limits.ConnsPerUser, "max-conns-per-user", cfg.Limits.ConnsPerUser, "concurrent WebSocket, SSE and polling connections per user; 0: no limit")
	fs.IntVar(&cfg.MaxConnsPerAddress, "max-conns-per-address", cfg.MaxConnsPerAddress, "open TCP connections per client address (loopback and trusted proxies exempt); 0: no limit")
	fs.BoolVar(&cfg.Limits.Loopback, "limit-loopback", false, "apply the limits by address to loopback clients too (for testing them locally)")
	fs.DurationVar(&cfg.ReadHeaderTimeout, "read-header-timeout", cfg.ReadHeaderTimeout, "time a client has to send a request's headers (slow clients are cut)")
	fs.DurationVar(&cfg.ReadTimeout, "read-timeout", 30*time.Second, "time a client has to send a whole request (streams and held polls excepted)")
	fs.DurationVar(&cfg.WriteTimeout, "write-timeout", 30*time.Second, "time a client has to take a whole answer (streams and held polls set their own)")
	fs.BoolVar(&cfg.AccessLog, "access-log", false, "log every answered request: route pattern, status, bytes, time, client address (never the path, query or body)")
	fs.StringVar(&cfg.MetricsAddr, "metrics-addr", "", "serve GET /metrics on this address instead of the main one (keep it private)")
	fs.Var(prefixesFlag{&cfg.TrustedProxies}, "trusted-proxies", "comma-separated CIDRs of reverse proxies whose X-Forwarded-For names the client (default: none; the header is ignored)")
	level := fs.String("log-level", "info", "log level: debug, info, warn, error")
	format := fs.String("log-format", "text", "log format: text or json")
	debugAddr := fs.String("debug-addr", "", "if set, serve net/http/pprof on this address (keep it private)")
	shutdown := fs.Duration("shutdown-timeout", 15*time.Second, "how long in-flight requests may take at shutdown")
	fs.Usage = func() {
		fmt.Fprintf(fs.Output(), "Usage: chatgate [flags]\n\nEvery flag can also be set by an environment variable: -push-webhook is CHATGATE_PUSH_WEBHOOK.\nA flag on the command line wins over the variable.\n\n")
		fs.PrintDefaults()
	}
	if err := fs.Parse(args); err != nil {
		return err
	}
	if err := applyEnv(fs, os.LookupEnv); err != nil {
		return err
	}
	var lv slog.Level
	if err := lv.UnmarshalText([]byte(*level)); err != nil {
		return fmt.Errorf("-log-level: %w", err)
	}
	opts := &slog.HandlerOptions{Level: lv}
	var h slog.Handler = slog.NewTextHandler(os.Stderr, opts)
	if *format == "json" {
		h = slog.NewJSONHandler(os.Stderr, opts)
	}
	cfg.Logger = slog.New(h)

	if *debugAddr != "" {
		// pprof registers itself on http.DefaultServeMux, which nothing
		// else uses: the API has its own router.
		go func() {
			if err := http.ListenAndServe(*debugAddr, nil); err != nil {
				cfg.Logger.Error("debug listener", "err", err)
			}
		}()
	}

	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	n, err := node.Start(cfg)
	if err != nil {
		return err
	}
	select {
	case <-ctx.Done():
	case err := <-n.Failed():
		// No graceful shutdown: the node must not go on, and waiting for
		// in-flight requests that need new ids would hang.
		return err
	}
	stop()
	cfg.Logger.Info("shutting down")
	sctx, cancel := context.WithTimeout(context.Background(), *shutdown)
	defer cancel()
	if err := n.Shutdown(sctx); err != nil {
		return fmt.Errorf("shutdown: %w", err)
	}
	cfg.Logger.Info("stopped cleanly")
	return nil
}

// applyEnv sets each flag not given on the command line from
// CHATGATE_<NAME>, with dashes as underscores.
func applyEnv(fs *flag.FlagSet, lookup func(string) (string, bool)) error {
	given := map[string]bool{}
	fs.Visit(func(f *flag.Flag) { given[f.Name] = true })
	var err error
	fs.VisitAll(func(f *flag.Flag) {
		if given[f.Name] || err != nil {
			return
		}
		env := "CHATGATE_" + strings.ToUpper(strings.ReplaceAll(f.Name, "-", "_"))
		if v, ok := lookup(env); ok {
			if e := f.Value.Set(v); e != nil {
				err = fmt.Errorf("%s=%q: %w", env, v, e)
			}
		}
	})
	return err
}

// nodeIDFlag is -node-id: a number, or "auto".
type nodeIDFlag struct{ cfg *node.Config }

func (f nodeIDFlag) String() string {
	if f.cfg == nil {
		return ""
	}
	if f.cfg.NodeIDAuto {
		return "auto"
	}
	return strconv.Itoa(f.cfg.NodeID)
}

func (f nodeIDFlag) Set(v string) error {
	if v == "auto" {
		f.cfg.NodeIDAuto = true
		return nil
	}
	id, err := strconv.Atoi(v)
	if err != nil || id < 0 || id > 1023 {
		return fmt.Errorf("want 0..1023 or auto, got %q", v)
	}
	f.cfg.NodeID, f.cfg.NodeIDAuto = id, false
	return nil
}

// rateFlag is a core.Rate flag: N/DURATION or off.
type rateFlag struct{ r *core.Rate }

func (f rateFlag) String() string {
	if f.r == nil {
		return ""
	}
	return f.r.String()
}

func (f rateFlag) Set(v string) error {
	r, err := core.ParseRate(v)
	if err != nil {
		return err
	}
	*f.r = r
	return nil
}

// prefixesFlag is a list of CIDRs (a bare address is its own /32 or /128).
type prefixesFlag struct{ p *[]netip.Prefix }

func (f prefixesFlag) String() string {
	if f.p == nil {
		return ""
	}
	var s []string
	for _, p := range *f.p {
		s = append(s, p.String())
	}
	return strings.Join(s, ",")
}

func (f prefixesFlag) Set(v string) error {
	var out []netip.Prefix
	for _, part := range strings.Split(v, ",") {
		part = strings.TrimSpace(part)
		if part == "" {
			continue
		}
		if !strings.Contains(part, "/") {
			a, err := netip.ParseAddr(part)
			if err != nil {
				return fmt.Errorf("bad address %q", part)
			}
			out = append(out, netip.PrefixFrom(a, a.BitLen()))
			continue
		}
		p, err := netip.ParsePrefix(part)
		if err != nil {
			return fmt.Errorf("bad CIDR %q", part)
		}
		out = append(out, p.Masked())
	}
	*f.p = out
	return nil
}
