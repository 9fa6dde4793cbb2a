// Command bench measures what each of chatgate's transports costs —
// latency, throughput, fan-out, bytes on the wire, idle cost, server CPU
// and memory — against the theoretical floor of each transport and,
// when its binary is there, against Centrifugo v6 on the same machine in
// the same run.
//
//	go run ./bench              # the full run (about 13 minutes on 2 cores)
//	go run ./bench -quick       # under a minute, small figures
//	go run ./bench -out DIR     # where results go (default bench/out)
//	go run ./bench -prefill 1M  # the same on a node that already holds 1 M messages
//	go run ./bench -history 5M -baseline BIN  # the history probe instead (history.go)
//	go run ./bench -search 1M   # the search probe instead (search.go)
//
// The bench builds chatgate and runs it as a separate process (so the
// server's CPU and memory, read from /proc, are its own), drives it with
// the Go client (client/) on loopback over each transport, and writes
// results.json, results.csv, results.md, chart.svg and meta.json. See
// docs/benchmarks.md for what each figure means and how floors are
// worked out.
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"os/signal"
	"path/filepath"
	"runtime"
	"runtime/pprof"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/chatgate/chatgate/client"
)

type config struct {
	quick        bool
	out          string
	chatgateBin  string
	centrifugo   string
	transports   []string
	peerTrs      []string
	payload      int
	poll         time.Duration
	users        int
	group        int
	fanBound     time.Duration
	idle         int
	idleWindow   time.Duration
	idleSettle   time.Duration
	step         time.Duration
	p99Bound     time.Duration
	inflight     int
	latRates     []float64
	thrRates     []float64
	fanRates     []float64
	wireRate     float64
	groupSenders int
	cpuProfile   string
	render       string

	// The fill (fill.go), the history probe (history.go) and -prefill.
	history     int64
	checkpoints []int64
	baseline    string
	histSamples int
	histWindow  time.Duration
	prefill     int64
	fillShare   float64
	fillSenders int

	// The guessing probe (guess.go).
	guess    string
	guessFor time.Duration

	// The cluster probe (cluster.go).
	cluster        bool
	nodes          []string
	clusterPairs   int
	clusterRates   []float64
	clusterStep    time.Duration
	clusterSenders int

	// The soak probe (soak.go).
	soak soakConfig

	// The search probe (search.go).
	search searchConfig
}

func defaultCentrifugo() string {
	home, err := os.UserHomeDir()
	if err != nil {
		return ""
	}
	return filepath.Join(home, ".cache", "chatgate-peer", "centrifugo")
}

func parseFlags(args []string, stderr io.Writer) (config, error) {
	var c config
	fs := flag.NewFlagSet("bench", flag.ContinueOnError)
	fs.SetOutput(stderr)
	fs.BoolVar(&c.quick, "quick", false, "small and fast (under a minute on 2 cores): for CI and trying the tool")
	fs.StringVar(&c.out, "out", filepath.Join("bench", "out"), "directory for results.json, results.csv, results.md, chart.svg")
	fs.StringVar(&c.chatgateBin, "chatgate", "", "chatgate binary to run (default: go build ./cmd/chatgate into a temporary directory)")
	fs.StringVar(&c.centrifugo, "centrifugo", defaultCentrifugo(), `Centrifugo v6 binary to compare with (scripts/build-centrifugo builds it); "" to skip`)
	trs := fs.String("transports", strings.Join(client.DefaultTransports, ","), "chatgate transports to measure")
	peerTrs := fs.String("peer-transports", "websocket,sse", "Centrifugo transports to measure (websocket, sse)")
	fs.IntVar(&c.payload, "payload", 100, "message content size in bytes")
	fs.DurationVar(&c.poll, "poll-interval", 2*time.Second, "short-polling interval (client/'s default is 2s)")
	fs.IntVar(&c.users, "users", 1000, "load users, in 1:1 pairs (one sends, the other receives)")
	fs.IntVar(&c.group, "group", 100, "members of the fan-out group (the first users; at most 100)")
	fs.IntVar(&c.idle, "idle", 10000, "idle connections per transport (capped by the open-files limit)")
	fs.DurationVar(&c.idleWindow, "idle-window", 30*time.Second, "how long idle clients are measured (covers the 25 s long poll, 15 s pings and 5 s heartbeats)")
	fs.DurationVar(&c.step, "step", 6*time.Second, "duration of each load step (the first fifth warms up)")
	fs.DurationVar(&c.p99Bound, "p99-bound", 50*time.Millisecond, "a 1:1 rate is sustained while p99 stays within the transport's latency floor plus this")
	fs.DurationVar(&c.fanBound, "fanout-p99-bound", 100*time.Millisecond, "a fan-out rate is sustained while p99 stays within the latency floor plus this")
	fs.IntVar(&c.inflight, "inflight", 8, "sends in flight per sending user")
	lat := fs.String("rates", "100,1000,10000", "1:1 latency rates, messages/s in total")
	thr := fs.String("throughput-rates", "2000,4000,7000,8500,10000,12000,14000,20000,28000,40000", "1:1 throughput ramp, messages/s (stops at the first rate not sustained)")
	fan := fs.String("fanout-rates", "50,100,200,400,700,1000,1100,1200,1400,2000,2800,4000", "fan-out ramp, group messages/s (each delivered to every other member)")
	fs.Float64Var(&c.wireRate, "wire-rate", 1000, "the latency rate whose step gives the wire and cpu rows")
	fs.StringVar(&c.cpuProfile, "cpuprofile", "", "write the load generator's CPU profile here (to see what the client costs)")
	fs.StringVar(&c.render, "render", "", "only rewrite results.md, results.csv, chart.svg and scaling.md (or history.md) of the run in this directory")
	fs.Var(countFlag{&c.history}, "history", "run the history probe instead of the protocol bench: fill a fresh node to `N` stored messages (5000000, 5M, 500k), restarting it at each checkpoint; writes history.json and history.md")
	cps := fs.String("history-checkpoints", "", "stored-message counts at which the history probe measures and restarts the node, ascending (default: 1M and -history, or -history alone when ≤ 1M)")
	fs.StringVar(&c.baseline, "baseline", "", "a second chatgate `binary` the history probe measures in the same run, after the first (scripts/build-release REV OUT builds one)")
	fs.IntVar(&c.histSamples, "history-samples", 300, "history probe: requests timed per kind of read at each checkpoint, before and after the restart")
	fs.DurationVar(&c.histWindow, "history-window", 10*time.Second, "history probe: sends/s are measured over the first and the last window of this length of each fill")
	fs.Var(countFlag{&c.prefill}, "prefill", "protocol bench: store `N` messages on the node before measuring (1M, 500k), as the history probe fills")
	fs.Float64Var(&c.fillShare, "fill-group-share", 0.1, "history probe and -prefill: share of the messages sent to a group (the users form groups of -group members)")
	fs.StringVar(&c.guess, "guess", "", "run the guessing probe against the node at `URL`: 64 clients guess one account's password while another user's GET /v1/me is timed")
	fs.DurationVar(&c.guessFor, "guess-for", 6*time.Second, "guessing probe: how long the guessing lasts")
	fs.BoolVar(&c.cluster, "cluster", false, "run the cluster probe instead: scripts/cluster up, measure sender on node 1 → receiver on node 2 and durable sends/s, scripts/cluster down; writes cluster.json and cluster.md")
	nodes := fs.String("nodes", "", "run the cluster probe against these running nodes (`URL,URL,…`): sender on the first, receiver on the second; one URL measures a single node the same way")
	fs.IntVar(&c.clusterPairs, "cluster-pairs", 100, "cluster probe: sender/receiver pairs")
	crates := fs.String("cluster-rates", "100,500,1000,2000,3000,4000,6000", "cluster probe: 1:1 rates (msg/s), each held for -cluster-step")
	fs.DurationVar(&c.clusterStep, "cluster-step", 10*time.Second, "cluster probe: length of each rate step and of the durable-sends run")
	fs.IntVar(&c.clusterSenders, "cluster-senders", 256, "cluster probe: concurrent HTTP senders of the durable-sends run")
	fs.IntVar(&c.fillSenders, "fill-senders", 128, "history probe and -prefill: concurrent keep-alive HTTP senders")
	registerSoakFlags(fs, &c.soak)
	registerSearchFlags(fs, &c.search)
	registerHostileFlags(fs)
	if err := fs.Parse(args); err != nil {
		return c, err
	}
	set := map[string]bool{}
	fs.Visit(func(f *flag.Flag) { set[f.Name] = true })
	if c.quick {
		def := func(name string, apply func()) {
			if !set[name] {
				apply()
			}
		}
		def("users", func() { c.users = 20 })
		def("group", func() { c.group = 20 })
		def("idle", func() { c.idle = 100 })
		def("idle-window", func() { c.idleWindow = time.Second })
		def("step", func() { c.step = time.Second })
		def("poll-interval", func() { c.poll = 500 * time.Millisecond })
		def("rates", func() { *lat = "100,1000" })
		def("throughput-rates", func() { *thr = "2000" })
		def("fanout-rates", func() { *fan = "25" })
		def("peer-transports", func() { *peerTrs = "websocket" })
	}
	c.idleSettle = min(max(c.idleWindow/10, 300*time.Millisecond), 3*time.Second)
	if c.history > 0 {
		var err error
		if c.checkpoints, err = checkpoints(*cps, c.history); err != nil {
			return c, fmt.Errorf("-history-checkpoints: %w", err)
		}
		if c.histSamples < 1 {
			return c, errors.New("-history-samples must be at least 1")
		}
		if c.histWindow <= 0 {
			return c, errors.New("-history-window must be positive")
		}
		if c.prefill > 0 {
			return c, errors.New("-prefill is for the protocol bench; the history probe fills by itself")
		}
	} else if c.baseline != "" || *cps != "" {
		return c, errors.New("-baseline and -history-checkpoints go with -history N")
	}
	if c.fillShare < 0 || c.fillShare > 1 {
		return c, errors.New("-fill-group-share must be 0..1")
	}
	if c.fillSenders < 1 {
		return c, errors.New("-fill-senders must be at least 1")
	}
	c.group = min(c.group, c.users)
	c.groupSenders = min(10, c.group)
	var err error
	c.nodes = splitList(*nodes)
	if c.clusterRates, err = rates(*crates); err != nil {
		return c, fmt.Errorf("-cluster-rates: %w", err)
	}
	if c.latRates, err = rates(*lat); err != nil {
		return c, fmt.Errorf("-rates: %w", err)
	}
	if c.thrRates, err = rates(*thr); err != nil {
		return c, fmt.Errorf("-throughput-rates: %w", err)
	}
	if c.fanRates, err = rates(*fan); err != nil {
		return c, fmt.Errorf("-fanout-rates: %w", err)
	}
	c.transports = splitList(*trs)
	for _, t := range c.transports {
		if !slices.Contains(client.DefaultTransports, t) {
			return c, fmt.Errorf("-transports: unknown transport %q", t)
		}
	}
	c.peerTrs = splitList(*peerTrs)
	for _, t := range c.peerTrs {
		if t != "websocket" && t != "sse" {
			return c, fmt.Errorf("-peer-transports: unknown transport %q", t)
		}
	}
	if c.users < 4 || c.users%2 != 0 {
		return c, errors.New("-users must be even, at least 4")
	}
	if c.group < 2 || c.group > 100 {
		return c, errors.New("-group must be 2..100 (a group holds at most 100 members)")
	}
	if c.payload < 24 {
		return c, errors.New("-payload must be at least 24 bytes (the send-time stamp)")
	}
	payloadSize = c.payload
	if !slices.Contains(c.latRates, c.wireRate) {
		c.wireRate = c.latRates[min(1, len(c.latRates)-1)]
	}
	return c, nil
}

func rates(s string) ([]float64, error) {
	var out []float64
	for _, f := range splitList(s) {
		v, err := strconv.ParseFloat(f, 64)
		if err != nil || v <= 0 {
			return nil, fmt.Errorf("bad rate %q", f)
		}
		out = append(out, v)
	}
	if len(out) == 0 {
		return nil, errors.New("no rates")
	}
	slices.Sort(out)
	return out, nil
}

func splitList(s string) []string {
	var out []string
	for _, f := range strings.Split(s, ",") {
		if f = strings.TrimSpace(f); f != "" {
			out = append(out, f)
		}
	}
	return out
}

func main() {
	cfg, err := parseFlags(os.Args[1:], os.Stderr)
	if err != nil {
		if errors.Is(err, flag.ErrHelp) {
			return
		}
		fmt.Fprintln(os.Stderr, "bench:", err)
		os.Exit(2)
	}
	if cfg.render != "" {
		if err := render(cfg.render); err != nil {
			fmt.Fprintln(os.Stderr, "bench:", err)
			os.Exit(1)
		}
		return
	}
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	switch {
	case cfg.soak.dur > 0:
		err = runSoak(ctx, cfg, os.Stdout, os.Stderr)
	case cfg.search.n > 0:
		err = runSearch(ctx, cfg, os.Stdout, os.Stderr)
	case hostileOn():
		err = runHostile(ctx, cfg, os.Stdout, os.Stderr)
	case cfg.guess != "":
		err = runGuessProbe(ctx, cfg.guess, cfg.guessFor, os.Stdout, os.Stderr)
	case cfg.cluster || len(cfg.nodes) > 0:
		err = runClusterProbe(ctx, cfg, os.Stdout, os.Stderr)
	case cfg.history > 0:
		err = runHistory(ctx, cfg, os.Stdout, os.Stderr)
	default:
		err = run(ctx, cfg, os.Stderr)
	}
	if err != nil {
		fmt.Fprintln(os.Stderr, "bench:", err)
		os.Exit(1)
	}
}

// Meta describes the run: machine, parameters and what the peer was.
type Meta struct {
	Date        string     `json:"date"`
	Quick       bool       `json:"quick"`
	CPU         string     `json:"cpu"`
	Cores       int        `json:"cores"`
	MemoryGiB   float64    `json:"memory_gib"`
	Kernel      string     `json:"kernel"`
	GoVersion   string     `json:"go_version"`
	LoadAvg     string     `json:"load_avg_at_start"`
	NoFile      uint64     `json:"nofile_limit"`
	Users       int        `json:"users"`
	Group       int        `json:"group"`
	PayloadB    int        `json:"payload_bytes"`
	PollMs      float64    `json:"poll_interval_ms"`
	StepS       float64    `json:"step_s"`
	IdleWindowS float64    `json:"idle_window_s"`
	P99BoundMs  float64    `json:"p99_bound_ms"`
	FanBoundMs  float64    `json:"fanout_p99_bound_ms"`
	RTTus       float64    `json:"loopback_rtt_us"`
	FsyncUs     float64    `json:"fsync_us"`
	Transports  []string   `json:"transports"`
	Peer        string     `json:"peer"`
	Store       *storeCost `json:"store,omitempty"`
	Prefill     int64      `json:"prefill,omitempty"`             // messages stored before the measurements
	PrefillRate float64    `json:"prefill_sends_per_s,omitempty"` // mean sends/s of that fill
	PrefillMix  float64    `json:"prefill_group_share,omitempty"`
	DurationS   float64    `json:"duration_s"`
	Errors      []string   `json:"errors,omitempty"`
}

func run(ctx context.Context, cfg config, stderr io.Writer) error {
	began := time.Now()
	if cfg.cpuProfile != "" {
		pf, err := os.Create(cfg.cpuProfile)
		if err != nil {
			return err
		}
		if err := pprof.StartCPUProfile(pf); err != nil {
			return err
		}
		defer func() { pprof.StopCPUProfile(); pf.Close() }()
	}
	nofile, err := raiseNoFile()
	if err != nil {
		return fmt.Errorf("raise open-files limit: %w", err)
	}
	if err := os.MkdirAll(cfg.out, 0o755); err != nil {
		return err
	}
	logDir := filepath.Join(cfg.out, "logs")
	if err := os.MkdirAll(logDir, 0o755); err != nil {
		return err
	}
	work, err := os.MkdirTemp("", "chatgate-bench-")
	if err != nil {
		return err
	}
	defer os.RemoveAll(work)

	peerBin := ""
	peerNote := "not run (-centrifugo \"\")"
	if cfg.centrifugo != "" {
		if st, err := os.Stat(cfg.centrifugo); err == nil && st.Mode().IsRegular() {
			peerBin = cfg.centrifugo
			peerNote = "Centrifugo v6 at " + cfg.centrifugo
		} else {
			peerNote = "not run: no Centrifugo binary at " + cfg.centrifugo + " (scripts/build-centrifugo builds it)"
		}
	}

	prog := newProgress(stderr, estimate(cfg, peerBin != ""))
	defer func() {
		if prog != nil {
			prog.finish()
		}
	}()
	meta := Meta{
		Date: time.Now().UTC().Format(time.RFC3339), Quick: cfg.quick, Cores: runtime.NumCPU(),
		GoVersion: runtime.Version(), NoFile: nofile, Users: cfg.users, Group: cfg.group, PayloadB: cfg.payload,
		PollMs: float64(cfg.poll.Milliseconds()), StepS: cfg.step.Seconds(), IdleWindowS: cfg.idleWindow.Seconds(),
		P99BoundMs: float64(cfg.p99Bound.Milliseconds()), FanBoundMs: float64(cfg.fanBound.Milliseconds()), Transports: cfg.transports, Peer: peerNote,
	}
	meta.CPU, meta.MemoryGiB, meta.Kernel, meta.LoadAvg = machine()

	bin := cfg.chatgateBin
	if bin == "" {
		prog.stage("building chatgate", 20)
		if bin, err = buildChatgate(ctx, work); err != nil {
			return err
		}
	}
	prog.stage(fmt.Sprintf("signing up %d users", cfg.users), float64(cfg.users)*0.03)
	var pf *prefill
	if cfg.prefill > 0 {
		pf = &prefill{n: cfg.prefill, share: cfg.fillShare, senders: cfg.fillSenders, payload: cfg.payload, prog: prog}
		// A node holding history may load it at start.
		serverWait = historyWait
	}
	setup, err := prepareChatgate(ctx, bin, work, cfg.users, cfg.group, logDir, pf)
	if err != nil {
		return fmt.Errorf("setup: %w", err)
	}
	if pf != nil {
		meta.Prefill, meta.PrefillRate, meta.PrefillMix = cfg.prefill, round(pf.rate, 0), cfg.fillShare
	}
	nProbe, nGroupProbe := 5000, 500
	if cfg.quick {
		nProbe, nGroupProbe = 200, 20
	}
	prog.stage("measuring what stored history costs", 3)
	if sc, err := probeStore(ctx, setup, work, logDir, nProbe, nGroupProbe, cfg.payload); err != nil {
		return fmt.Errorf("store probe: %w", err)
	} else {
		meta.Store = &sc
	}
	rtt, fsync, err := measureBase(filepath.Join(work, "probe"))
	if err != nil {
		return fmt.Errorf("measuring loopback and fsync: %w", err)
	}
	base := rtt + fsync
	meta.RTTus, meta.FsyncUs = float64(rtt.Microseconds()), float64(fsync.Microseconds())
	prog.log("loopback round trip %s, fsync %s: latency floor %s + polling's wait", rtt.Round(time.Microsecond), fsync.Round(time.Microsecond), base.Round(time.Microsecond))

	var results []Result
	var errs []string
	for _, tr := range cfg.transports {
		if ctx.Err() != nil {
			break
		}
		t, err := startChatgate(ctx, setup, tr, work, logDir, cfg.users, cfg.poll)
		if err != nil {
			errs = append(errs, fmt.Sprintf("%s: %v", tr, err))
			continue
		}
		rs, err := benchTarget(ctx, cfg, t, prog, nofile, base, chatgateFloors(cfg, setup, t, base))
		if serr := t.stop(); serr != nil && err == nil {
			err = serr
		}
		results = append(results, rs...)
		if err != nil {
			errs = append(errs, fmt.Sprintf("%s: %v", tr, err))
			prog.log("%s: %v", tr, err)
		}
	}
	if peerBin != "" {
		for _, tr := range cfg.peerTrs {
			if ctx.Err() != nil {
				break
			}
			t, err := startCentrifugo(peerBin, tr, work, logDir, cfg.users, cfg.group)
			if err != nil {
				errs = append(errs, fmt.Sprintf("centrifugo %s: %v", tr, err))
				continue
			}
			rs, err := benchTarget(ctx, cfg, t, prog, nofile, base, nil)
			if serr := t.stop(); serr != nil && err == nil {
				err = serr
			}
			results = append(results, rs...)
			if err != nil {
				errs = append(errs, fmt.Sprintf("centrifugo %s: %v", tr, err))
				prog.log("centrifugo %s: %v", tr, err)
			}
		}
	}
	prog.stage("writing results", 0.2)
	meta.DurationS = round(time.Since(began).Seconds(), 1)
	meta.Errors = errs
	if err := writeResults(cfg.out, meta, results); err != nil {
		return err
	}
	prog.finish()
	prog = nil
	fmt.Fprintf(stderr, "results in %s (%s)\n", cfg.out, time.Since(began).Round(time.Second))
	if ctx.Err() != nil {
		return ctx.Err()
	}
	if len(errs) > 0 {
		return fmt.Errorf("%d part(s) failed: %s", len(errs), strings.Join(errs, "; "))
	}
	return nil
}

// estimate is the expected duration in seconds, for the progress bar.
func estimate(cfg config, peer bool) float64 {
	total := float64(cfg.users)*0.03 + 3 + float64(cfg.prefill)/8000
	if cfg.chatgateBin == "" {
		total += 5
	}
	for _, t := range cfg.transports {
		var poll time.Duration
		if t == client.TransportPolling {
			poll = cfg.poll
		}
		total += targetEstimate(cfg, poll, cfg.idle)
	}
	if peer {
		for range cfg.peerTrs {
			total += targetEstimate(cfg, 0, cfg.idle)
		}
	}
	return total
}

func stepEstimate(cfg config, poll time.Duration) float64 {
	return cfg.step.Seconds() + 0.3 + poll.Seconds()
}

func idleEstimate(cfg config, n int) float64 {
	return float64(n)/600 + cfg.idleWindow.Seconds() + cfg.idleSettle.Seconds() + 1
}

// extraRates are the throughput rates that are not latency rates.
func extraRates(cfg config) []float64 {
	var out []float64
	for _, r := range cfg.thrRates {
		if !slices.Contains(cfg.latRates, r) {
			out = append(out, r)
		}
	}
	return out
}

func targetEstimate(cfg config, poll time.Duration, idleN int) float64 {
	steps := len(cfg.latRates) + len(extraRates(cfg)) + len(cfg.fanRates)
	return idleEstimate(cfg, idleN) + 1 + poll.Seconds() + float64(steps)*stepEstimate(cfg, poll)
}

// benchTarget runs every scenario against one target.
func benchTarget(ctx context.Context, cfg config, t target, prog *progress, nofile uint64, base time.Duration, floors func(*Result, stepOut, stepKind)) ([]Result, error) {
	name := t.Name()
	row := func(scenario string) Result {
		return Result{System: t.System(), Transport: name, Scenario: scenario}
	}
	var out []Result
	poll := t.PollInterval()
	_, floorP99 := latencyFloor(t.Transport(), base, poll)
	if t.System() != "chatgate" {
		floorP99 = base
	}
	bound, fanBound := floorP99+cfg.p99Bound, floorP99+cfg.fanBound
	drain := 2*time.Second + 2*poll
	if cfg.quick {
		drain = time.Second + 2*poll
	}
	stepEst := stepEstimate(cfg, poll)

	// Idle first, on a server that has served nothing yet.
	n := cfg.idle
	if budget := (int(min(nofile, 1<<20)) - 2000 - 2*cfg.users) / t.SocketsPerIdle(); n > budget {
		n = max(budget, 1)
	}
	prog.stage(fmt.Sprintf("%s · idle cost, %d connections", name, n), idleEstimate(cfg, n))
	prog.skip(idleEstimate(cfg, cfg.idle) - idleEstimate(cfg, n))
	idle, err := runIdle(ctx, t, n, cfg.idleSettle, cfg.idleWindow, prog.note)
	if err != nil {
		return out, fmt.Errorf("idle: %w", err)
	}
	r := row("idle")
	r.fillIdle(idle)
	if n < cfg.idle {
		r.Note = fmt.Sprintf("capped at %d connections by the open-files limit (%d; %d sockets per client)", n, nofile, t.SocketsPerIdle())
	}
	out = append(out, r)

	prog.stage(fmt.Sprintf("%s · connecting %d load users", name, t.FleetSize()), 1+poll.Seconds())
	cur := &current{}
	if err := t.ConnectFleet(ctx, cur); err != nil {
		return out, err
	}
	defer t.CloseFleet()

	step := func(kind stepKind, rate float64) (stepOut, error) {
		senders, inflight := t.FleetSize()/2, cfg.inflight
		if kind == group {
			senders, inflight = cfg.groupSenders, 2*cfg.inflight
		}
		return runStep(ctx, t, cur, kind, rate, cfg.step, drain, senders, inflight)
	}
	fill := func(r *Result, o stepOut, kind stepKind, bound time.Duration) {
		r.fill(o, bound)
		if kind == group {
			r.MsgsPerS = round(o.rate(), 0)
		}
		if floors != nil {
			floors(r, o, kind)
		}
		if o.drops > 0 {
			why := ""
			if d, ok := t.(interface{ DropReasons() string }); ok {
				why = " (so far in this run: " + d.DropReasons() + ")"
			}
			r.Note = strings.TrimPrefix(r.Note+fmt.Sprintf("; the server closed %d load connections%s", o.drops, why), "; ")
		}
	}
	// ramp runs rates in ascending order. A rate is sustained when the
	// generator kept it, nothing was lost and p99 stayed within bound; a
	// rate that failed on p99 alone is tried once more (a hiccup of the
	// shared machine). After the first failure, only the rates in must
	// still run (the fixed latency rates). It returns every step run and
	// the highest sustained.
	type run struct {
		rate float64
		o    stepOut
	}
	ramp := func(kind stepKind, rates []float64, must map[float64]bool, bound time.Duration, label string) ([]run, []Step, *stepOut, error) {
		var runs []run
		var steps []Step
		var best *stepOut
		failed := false
		for i, rate := range rates {
			if failed && !must[rate] {
				prog.skip(stepEst)
				continue
			}
			prog.stage(fmt.Sprintf("%s · %s at %g msg/s", name, label, rate), stepEst)
			o, err := step(kind, rate)
			if err != nil {
				return runs, steps, best, fmt.Errorf("%s at %g/s: %w", label, rate, err)
			}
			st := o.step(bound)
			if kind == group {
				st.MsgsPerS = round(o.rate(), 0)
			}
			steps = append(steps, st)
			if !failed && o.onlySlow(bound) {
				prog.stage(fmt.Sprintf("%s · %s at %g msg/s, again (p99 %s)", name, label, rate, o.lat.p99.Round(time.Millisecond)), stepEst)
				o2, err := step(kind, rate)
				if err != nil {
					return runs, steps, best, fmt.Errorf("%s at %g/s: %w", label, rate, err)
				}
				st := o2.step(bound)
				st.Retry = true
				if kind == group {
					st.MsgsPerS = round(o2.rate(), 0)
				}
				steps = append(steps, st)
				if o2.sustained(bound) {
					o = o2
				}
			}
			runs = append(runs, run{rate, o})
			if failed {
				continue
			}
			if o.sustained(bound) {
				best = &runs[len(runs)-1].o
				continue
			}
			failed = true
			if best == nil {
				best = &runs[len(runs)-1].o // report the lowest rate even when it fails
			}
			_ = i
		}
		return runs, steps, best, nil
	}

	// 1:1: the latency rates and the throughput rates in one ascending
	// ramp, so no rate runs after an overload.
	must := map[float64]bool{}
	for _, r := range cfg.latRates {
		must[r] = true
	}
	var all []float64
	for r := range must {
		all = append(all, r)
	}
	for _, r := range cfg.thrRates {
		if !must[r] {
			all = append(all, r)
		}
	}
	slices.Sort(all)
	runs, steps, best, err := ramp(direct, all, must, bound, "1:1")
	var wire *stepOut
	for i := range runs {
		if !must[runs[i].rate] {
			continue
		}
		r := row(fmt.Sprintf("latency_%g", runs[i].rate))
		fill(&r, runs[i].o, direct, bound)
		if !r.Sustained {
			r.Note = strings.TrimPrefix(r.Note+"; rate not sustained", "; ")
		}
		out = append(out, r)
		if runs[i].rate == cfg.wireRate {
			wire = &runs[i].o
		}
	}
	if err != nil {
		return out, err
	}
	r = row("throughput")
	if best != nil {
		fill(&r, *best, direct, bound)
		note := fmt.Sprintf("highest rate sustained with p99 ≤ %s", bound.Round(time.Millisecond))
		if !best.sustained(bound) {
			note = "no rate sustained; the lowest rate's figures"
		}
		r.Note = strings.TrimPrefix(note+"; "+r.Note, "; ")
		r.Note = strings.TrimSuffix(r.Note, "; ")
	}
	r.Steps = steps
	out = append(out, r)

	// Fan-out to the group.
	_, steps, bestFan, err := ramp(group, cfg.fanRates, nil, fanBound, "fan-out")
	if err != nil {
		return out, err
	}
	r = row("fanout")
	if bestFan != nil {
		fill(&r, *bestFan, group, fanBound)
		note := fmt.Sprintf("%d-member group; msgs_per_s counts deliveries to the %d other members; highest rate sustained with p99 ≤ %s",
			t.GroupSize(), t.GroupSize()-1, fanBound.Round(time.Millisecond))
		r.Note = strings.TrimSuffix(note+"; "+r.Note, "; ")
	}
	r.Steps = steps
	out = append(out, r)

	if n := t.Drops(); n > 0 {
		why := ""
		if d, ok := t.(interface{ DropReasons() string }); ok {
			why = ": " + d.DropReasons()
		}
		prog.log("%s: the server closed %d load connections during the run%s", name, n, why)
	}
	if wire != nil {
		for _, sc := range []string{"wire", "cpu"} {
			r := row(sc)
			fill(&r, *wire, direct, bound)
			r.Note = strings.TrimSuffix(fmt.Sprintf("the 1:1 step at %g msg/s; %s", cfg.wireRate, r.Note), "; ")
			out = append(out, r)
		}
	}
	return out, nil
}

// chatgateFloors returns the function that sets a row's floors.
func chatgateFloors(cfg config, st *chatgateSetup, t *chatgateTarget, base time.Duration) func(*Result, stepOut, stepKind) {
	sendBody := len(mustJSON(client.SendInput{To: st.users[1].ID, Content: strings.Repeat("x", cfg.payload), ClientMsgID: client.NewClientMsgID()}))
	host := strings.TrimPrefix(t.srv.base, "http://")
	return func(r *Result, o stepOut, kind stepKind) {
		p50, p99 := latencyFloor(t.transport, base, t.PollInterval())
		r.FloorP50ms, r.FloorP99ms = ms(p50), ms(p99)
		if r.FloorP50ms > 0 && r.P50ms > 0 {
			r.P50VsFloor = round(r.P50ms/r.FloorP50ms, 2)
		}
		if kind != direct {
			return
		}
		up, down := bytesFloor(floorInput{
			transport: t.transport, host: host, sendBody: sendBody, event: int(r.EventBytes + 0.5),
			users: t.fleetN, window: o.window, delivered: o.deliveredInWindow, poll: t.PollInterval(),
		})
		r.FloorBytesPerMsg = round(up+down, 1)
		if r.FloorBytesPerMsg > 0 && r.BytesPerMsg > 0 {
			r.BytesVsFloor = round(r.BytesPerMsg/r.FloorBytesPerMsg, 2)
		}
	}
}

// machine describes the host for the record.
func machine() (cpu string, memGiB float64, kernel, load string) {
	if b, err := os.ReadFile("/proc/cpuinfo"); err == nil {
		for _, l := range strings.Split(string(b), "\n") {
			if k, v, ok := strings.Cut(l, ":"); ok && strings.TrimSpace(k) == "model name" {
				cpu = strings.TrimSpace(v)
				break
			}
		}
	}
	if b, err := os.ReadFile("/proc/meminfo"); err == nil {
		var kb float64
		if _, err := fmt.Sscanf(string(b), "MemTotal: %f kB", &kb); err == nil {
			memGiB = round(kb/(1<<20), 1)
		}
	}
	if b, err := os.ReadFile("/proc/sys/kernel/osrelease"); err == nil {
		kernel = strings.TrimSpace(string(b))
	}
	if b, err := os.ReadFile("/proc/loadavg"); err == nil {
		f := strings.Fields(string(b))
		if len(f) >= 3 {
			load = strings.Join(f[:3], " ")
		}
	}
	return
}
