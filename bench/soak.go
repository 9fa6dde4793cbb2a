package main

// The soak probe (-soak DURATION): a bounded run of mixed, person-like
// traffic over all four transports, with reconnects, against a chatgate
// the probe starts as its own child process on a fresh data directory.
// The server's resident memory, goroutines and open files are sampled
// all along; once the warm-up is over they must level off, not grow, and
// once every client has left they must fall back to where they were
// before the traffic. Every acknowledged message is then looked for in
// each recipient's inbox (exactly once) and must have reached each
// recipient's live connections (exactly once, across every reconnect,
// transport change and new device).
//
//	go run ./bench -soak 5m -out docs/bench/soak
//
// writes soak.md (summary and verdict), soak.csv (the samples) and
// soak.svg (the curves, with the traffic phases).

import (
	"bufio"
	"bytes"
	"context"
	"encoding/csv"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"html"
	"io"
	"math"
	"math/rand/v2"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"runtime"
	"slices"
	"sort"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/chatgate/chatgate/client"
)

// soakConfig is the probe's parameters (-soak-* flags).
type soakConfig struct {
	dur        time.Duration // how long the traffic runs; 0: the probe is off
	users      int
	group      int           // the group's members: the first users
	groupShare float64       // share of a member's messages that go to the group
	sendEvery  time.Duration // mean pause between a user's actions, drawn from [1/3, 5/3] of it
	session    time.Duration // mean time a connection stays up before its user drops it, drawn from [1/2, 3/2] of it
	away       time.Duration // one disconnect in five stays away up to this long (the others come back within 2 s)
	relogin    float64       // share of disconnects that log out and come back as a new device
	sample     time.Duration // sampling period; 0: dur/60, within 1–5 s
	warmup     float64       // share of the traffic discarded before judging
	poll       time.Duration // short-polling period of the short pollers
}

func registerSoakFlags(fs *flag.FlagSet, s *soakConfig) {
	fs.DurationVar(&s.dur, "soak", 0, "run the soak probe instead: mixed traffic over all four transports with reconnects for `DURATION` (10m), the server's memory, goroutines and open files sampled; writes soak.md, soak.csv and soak.svg")
	fs.IntVar(&s.users, "soak-users", 160, "soak: users, spread over the four transports")
	fs.IntVar(&s.group, "soak-group", 20, "soak: members of the group (the first users)")
	fs.Float64Var(&s.groupShare, "soak-group-share", 0.1, "soak: share of a member's messages sent to the group")
	fs.DurationVar(&s.sendEvery, "soak-send-every", 3*time.Second, "soak: mean pause between a user's actions (a message most of the time; drawn from 1/3 to 5/3 of it)")
	fs.DurationVar(&s.session, "soak-session", 40*time.Second, "soak: mean time a connection stays up before its user drops it")
	fs.DurationVar(&s.away, "soak-away", 45*time.Second, "soak: one disconnect in five stays away up to this long (long enough to go offline)")
	fs.Float64Var(&s.relogin, "soak-relogin", 0.2, "soak: share of disconnects that log out and log in again as a new device")
	fs.DurationVar(&s.sample, "soak-sample", 0, "soak: sampling period (default: the duration / 60, within 1 s to 5 s)")
	fs.Float64Var(&s.warmup, "soak-warmup", 0.2, "soak: share of the traffic treated as warm-up, not judged")
	fs.DurationVar(&s.poll, "soak-poll-interval", 2*time.Second, "soak: short-polling period")
}

func (s *soakConfig) validate() error {
	switch {
	case s.users < 8:
		return errors.New("-soak-users must be at least 8 (two per transport)")
	case s.group < 2 || s.group > 100 || s.group > s.users:
		return errors.New("-soak-group must be 2..100 and at most -soak-users")
	case s.groupShare < 0 || s.groupShare > 1:
		return errors.New("-soak-group-share must be 0..1")
	case s.relogin < 0 || s.relogin > 1:
		return errors.New("-soak-relogin must be 0..1")
	case s.warmup < 0 || s.warmup >= 0.8:
		return errors.New("-soak-warmup must be 0..0.8")
	case s.sendEvery <= 0 || s.session <= 0 || s.away < 0 || s.poll <= 0:
		return errors.New("-soak-send-every, -soak-session and -soak-poll-interval must be positive")
	}
	if s.sample <= 0 {
		s.sample = min(max(s.dur/60, time.Second), 5*time.Second)
	}
	if s.dur < 12*s.sample {
		return fmt.Errorf("-soak %s is too short for -soak-sample %s: at least 12 samples are needed", s.dur, s.sample)
	}
	return nil
}

// runSoak is `bench -soak`: it builds chatgate if needed, runs the probe
// into cfg.out and prints the summary; it fails when the levels grew or
// a message was lost.
func runSoak(ctx context.Context, cfg config, stdout, stderr io.Writer) error {
	sc := cfg.soak
	if err := sc.validate(); err != nil {
		return err
	}
	if _, err := raiseNoFile(); err != nil {
		return fmt.Errorf("raise open-files limit: %w", err)
	}
	work, err := os.MkdirTemp("", "chatgate-soak-")
	if err != nil {
		return err
	}
	defer os.RemoveAll(work)
	prog := newProgress(stderr, soakEstimate(sc, cfg.chatgateBin == ""))
	bin := cfg.chatgateBin
	if bin == "" {
		prog.stage("building chatgate", 20)
		if bin, err = buildChatgate(ctx, work); err != nil {
			prog.finish()
			return err
		}
	}
	rep, err := soakRun(ctx, sc, bin, cfg.out, "go run ./bench "+strings.Join(os.Args[1:], " "), prog)
	prog.finish()
	if rep != nil {
		fmt.Fprint(stdout, rep.markdown())
		fmt.Fprintf(stderr, "soak.md, soak.csv and soak.svg in %s\n", cfg.out)
	}
	if err != nil {
		return err
	}
	if !rep.Pass {
		return errors.New("soak: " + rep.failure())
	}
	return nil
}

func soakEstimate(sc soakConfig, build bool) float64 {
	total := float64(sc.users)*0.05 + 4*sc.sample.Seconds() + sc.dur.Seconds() + 5 + 5*sc.sample.Seconds()
	if build {
		total += 20
	}
	return total
}

// soakOfflineAfter is the server's default presence window: a user away
// longer goes offline to its friends.
const soakOfflineAfter = 30 * time.Second

// soakMsg is an acknowledged message: from user from to user to, or to
// the group (to -1).
type soakMsg struct {
	id       string
	from, to int
}

// soakUser is one person: an account, a device (replaced at each
// re-login) and what its connections received.
type soakUser struct {
	i        int
	id, name string
	contacts []int // the users it writes to (its friends)

	mu      sync.Mutex
	token   string // the current device's
	cursor  uint64 // the highest seq processed, carried over to every new connection and device
	lastSeq uint64
	got     map[string]int // message id → times its connections received it
	early   int            // durable events at or below the last seq (a duplicate or a step back)
}

// soakDevice is one login of a user: its client, its own HTTP
// connections and its current realtime connection.
type soakDevice struct {
	c       *client.Client
	hc      *http.Client
	conn    *client.Conn
	closing atomic.Bool
	up      atomic.Bool
}

// soak is one run of the probe.
type soak struct {
	cfg     soakConfig
	base    string
	neg     *client.Negotiation
	users   []*soakUser
	groupID string

	mu    sync.Mutex
	acked []soakMsg
	errs  map[string]int // what failed, by kind, for the summary

	sends, sendErrs              atomic.Int64
	typings, typingErrs          atomic.Int64
	heartbeats, heartbeatErrs    atomic.Int64
	reads, readErrs              atomic.Int64
	sessions                     [4]atomic.Int64 // connections made, per transport (DefaultTransports order)
	reconnects, switches         atomic.Int64    // connections after the first (resuming from the cursor); of those, to another transport
	relogins, aways              atomic.Int64
	connectErrs, drops           atomic.Int64 // connections that failed to come up; that went down by themselves
	delivered, echoes            atomic.Int64 // message events received by recipients; by senders (their own)
	typingEvents, presenceEvents atomic.Int64
	connected                    atomic.Int64 // devices up now
}

func (s *soak) fail(kind string, err error) {
	msg := kind
	if err != nil {
		e := err.Error()
		if len(e) > 160 {
			e = e[:160] + "…"
		}
		msg += ": " + e
	}
	s.mu.Lock()
	if len(s.errs) < 200 || s.errs[msg] > 0 {
		s.errs[msg]++
	}
	s.mu.Unlock()
}

// soakHTTP is a device's own HTTP client: its connections are its own,
// as a phone's are, and are closed with it.
func soakHTTP(perHost int) *http.Client {
	return &http.Client{Transport: &http.Transport{
		Proxy:               nil,
		DialContext:         (&net.Dialer{Timeout: 5 * time.Second}).DialContext,
		MaxIdleConns:        perHost,
		MaxIdleConnsPerHost: perHost,
		IdleConnTimeout:     30 * time.Second,
	}}
}

func (s *soak) newDevice(u *soakUser, token string) *soakDevice {
	hc := soakHTTP(4)
	var opts []client.Option
	opts = append(opts, client.WithHTTPClient(hc), client.WithRequestTimeout(15*time.Second),
		client.WithSendTimeout(30*time.Second), client.WithBackoff(50*time.Millisecond, 2*time.Second))
	if token != "" {
		opts = append(opts, client.WithToken(token, u.id))
	}
	return &soakDevice{c: client.New(s.base, opts...), hc: hc}
}

func (s *soak) dropDevice(d *soakDevice) {
	d.hc.CloseIdleConnections()
}

// onEvent records what a user's connection receives. It runs on the
// connection's goroutine.
func (s *soak) onEvent(u *soakUser) func(client.Event) {
	return func(e client.Event) {
		switch e.Type {
		case client.EventMessage:
			if e.Message == nil {
				return
			}
			u.mu.Lock()
			if e.Seq <= u.lastSeq {
				u.early++
			} else {
				u.lastSeq = e.Seq
			}
			u.cursor = max(u.cursor, e.Seq)
			u.got[e.Message.ID]++
			u.mu.Unlock()
			if e.Message.From == u.id {
				s.echoes.Add(1)
			} else {
				s.delivered.Add(1)
			}
		case client.EventTyping:
			s.typingEvents.Add(1)
		case client.EventPresence:
			s.presenceEvents.Add(1)
		}
	}
}

func (s *soak) onState(d *soakDevice) func(client.State) {
	return func(st client.State) {
		if st.Connected {
			if d.up.CompareAndSwap(false, true) {
				s.connected.Add(1)
			}
			return
		}
		if d.up.CompareAndSwap(true, false) {
			s.connected.Add(-1)
		}
		if !d.closing.Load() {
			s.drops.Add(1) // the server or the network dropped it; the Conn reconnects by itself
			s.fail("connection went down", st.Err)
		}
	}
}

func (u *soakUser) cursorNow() uint64 {
	u.mu.Lock()
	defer u.mu.Unlock()
	return u.cursor
}

// connect opens d's realtime connection over transport tr, from the
// user's cursor, retrying until it is up or ctx ends.
func (s *soak) connect(ctx context.Context, u *soakUser, d *soakDevice, tr int) error {
	for attempt := 0; ; attempt++ {
		cctx, cancel := context.WithTimeout(ctx, 20*time.Second)
		d.closing.Store(false)
		conn, err := d.c.Connect(cctx, client.ConnectOptions{
			Transports:   []string{client.DefaultTransports[tr]},
			Cursor:       u.cursorNow(),
			OnEvent:      s.onEvent(u),
			OnState:      s.onState(d),
			Negotiation:  s.neg,
			PollInterval: s.cfg.poll,
		})
		cancel()
		if err == nil {
			d.conn = conn
			s.sessions[tr].Add(1)
			return nil
		}
		if ctx.Err() != nil {
			return ctx.Err()
		}
		s.connectErrs.Add(1)
		s.fail("connect "+client.DefaultTransports[tr], err)
		if !sleepCtx(ctx, min(100*time.Millisecond<<min(attempt, 5), 3*time.Second)) {
			return ctx.Err()
		}
	}
}

// disconnect closes d's realtime connection and its idle HTTP
// connections, as a phone that loses its network does.
func (s *soak) disconnect(d *soakDevice) {
	if d.conn == nil {
		return
	}
	d.closing.Store(true)
	d.conn.Close()
	d.conn = nil
	if d.up.CompareAndSwap(true, false) {
		s.connected.Add(-1)
	}
	d.hc.CloseIdleConnections()
}

// relogin logs d out (its token is revoked) and logs the user in again
// as a new device, retrying the login until it succeeds or ctx ends.
func (s *soak) relogin(ctx context.Context, u *soakUser, d *soakDevice, n int) (*soakDevice, error) {
	lctx, cancel := context.WithTimeout(ctx, 15*time.Second)
	if err := d.c.Logout(lctx); err != nil {
		s.fail("logout", err)
	}
	cancel()
	s.dropDevice(d)
	nd := s.newDevice(u, "")
	for attempt := 0; ; attempt++ {
		lctx, cancel := context.WithTimeout(ctx, 15*time.Second)
		a, err := nd.c.Login(lctx, u.name, benchPassword, fmt.Sprintf("soak-%d-%d", u.i, n))
		cancel()
		if err == nil {
			u.mu.Lock()
			u.token = a.Token
			u.mu.Unlock()
			s.relogins.Add(1)
			return nd, nil
		}
		s.fail("login", err)
		if !sleepCtx(ctx, min(200*time.Millisecond<<min(attempt, 4), 3*time.Second)) {
			return nd, ctx.Err()
		}
	}
}

// runUser is one person until run ends: connect, act every 1–5 s, drop
// the connection now and then (sometimes for long, sometimes logging out
// and back in as a new device), reconnect from the cursor — until
// traffic ends; then stay connected (settled is told) until run ends.
func (s *soak) runUser(run, traffic context.Context, u *soakUser, settled func()) {
	once := sync.Once{}
	defer once.Do(settled)
	rng := rand.New(rand.NewPCG(0x50a4, uint64(u.i)))
	tr := u.i % len(client.DefaultTransports)
	d := s.newDevice(u, u.token)
	defer func() {
		s.disconnect(d)
		s.dropDevice(d)
	}()
	if err := s.connect(run, u, d, tr); err != nil {
		return
	}
	uniform := func(mean time.Duration, lo, hi float64) time.Duration {
		return time.Duration(float64(mean) * (lo + (hi-lo)*rng.Float64()))
	}
	var convs []string // conversations the user wrote to
	logins := 0
	for traffic.Err() == nil {
		sessionEnd := time.NewTimer(uniform(s.cfg.session, 0.5, 1.5))
		next := time.NewTimer(uniform(s.cfg.sendEvery, 1.0/3, 5.0/3))
	session:
		for {
			select {
			case <-traffic.Done():
				break session
			case <-sessionEnd.C:
				break session
			case <-next.C:
				if c := s.act(run, rng, u, d, convs); c != "" && !slices.Contains(convs, c) {
					convs = append(convs, c)
				}
				next.Reset(uniform(s.cfg.sendEvery, 1.0/3, 5.0/3))
			}
		}
		sessionEnd.Stop()
		next.Stop()
		if traffic.Err() != nil {
			break
		}
		// Drop the connection; stay away a while; perhaps come back as a
		// new device; perhaps on another transport.
		s.disconnect(d)
		if rng.Float64() < s.cfg.relogin {
			logins++
			nd, err := s.relogin(run, u, d, logins)
			d = nd
			if err != nil {
				return
			}
		}
		gap := time.Duration(rng.Int64N(int64(2 * time.Second)))
		if rng.IntN(5) == 0 {
			gap = time.Duration(rng.Int64N(int64(s.cfg.away) + 1))
			s.aways.Add(1)
		}
		sleepCtx(traffic, gap) // the end of traffic brings everyone back
		if rng.IntN(4) == 0 {
			tr = (tr + 1) % len(client.DefaultTransports)
			s.switches.Add(1)
		}
		if err := s.connect(run, u, d, tr); err != nil {
			return
		}
		s.reconnects.Add(1)
	}
	once.Do(settled)
	<-run.Done()
}

// act does one thing a person does: mostly a message (typing first, half
// of the time), sometimes a history read, the conversation list or an
// explicit heartbeat. It returns the conversation a message went to.
func (s *soak) act(ctx context.Context, rng *rand.Rand, u *soakUser, d *soakDevice, convs []string) string {
	actx, cancel := context.WithTimeout(ctx, 30*time.Second)
	defer cancel()
	r := rng.Float64()
	switch {
	case r < 0.08 && len(convs) > 0:
		var page struct {
			Messages []json.RawMessage `json:"messages"`
		}
		s.reads.Add(1)
		if err := d.c.Do(actx, http.MethodGet, "/v1/conversations/"+convs[rng.IntN(len(convs))]+"/messages?limit=20", nil, &page); err != nil {
			s.readErrs.Add(1)
			s.fail("history read", err)
		}
		return ""
	case r < 0.10:
		var list json.RawMessage
		s.reads.Add(1)
		if err := d.c.Do(actx, http.MethodGet, "/v1/conversations?limit=20", nil, &list); err != nil {
			s.readErrs.Add(1)
			s.fail("conversation list", err)
		}
		return ""
	case r < 0.15:
		s.heartbeats.Add(1)
		if err := d.c.Heartbeat(actx); err != nil {
			s.heartbeatErrs.Add(1)
			s.fail("heartbeat", err)
		}
		return ""
	}
	in := client.SendInput{Content: soakContent(rng, u)}
	to := -1
	var conv string
	if u.i < s.cfg.group && rng.Float64() < s.cfg.groupShare {
		in.GroupID = s.groupID
		conv = "g_" + s.groupID
	} else {
		to = u.contacts[rng.IntN(len(u.contacts))]
		in.To = s.users[to].id
		conv = directConv(u.id, in.To)
	}
	if rng.IntN(2) == 0 {
		s.typings.Add(1)
		if err := d.conn.Typing(actx, conv); err != nil {
			s.typingErrs.Add(1)
			s.fail("typing", err)
		}
	}
	s.sends.Add(1)
	m, err := d.conn.Send(actx, in)
	if err != nil {
		s.sendErrs.Add(1)
		s.fail("send", err)
		return ""
	}
	s.mu.Lock()
	s.acked = append(s.acked, soakMsg{id: m.ID, from: u.i, to: to})
	s.mu.Unlock()
	return conv
}

// soakContent is 20 to 200 bytes of lowercase words.
func soakContent(rng *rand.Rand, u *soakUser) string {
	n := 20 + rng.IntN(181)
	b := make([]byte, 0, n)
	b = append(b, u.name...)
	for len(b) < n {
		b = append(b, ' ')
		for w := 2 + rng.IntN(8); w > 0 && len(b) < n; w-- {
			b = append(b, letters[rng.IntN(len(letters))])
		}
	}
	return string(b[:n])
}

// recipients of a message, by user index.
func (s *soak) recipients(m soakMsg) []int {
	if m.to < 0 {
		out := make([]int, s.cfg.group)
		for i := range out {
			out[i] = i
		}
		return out
	}
	return []int{m.from, m.to}
}

// missingLive counts (message, recipient) pairs not yet received by the
// recipient's connections.
func (s *soak) missingLive(acked []soakMsg) int {
	n := 0
	for _, m := range acked {
		for _, r := range s.recipients(m) {
			u := s.users[r]
			u.mu.Lock()
			if u.got[m.id] == 0 {
				n++
			}
			u.mu.Unlock()
		}
	}
	return n
}

// soakSample is the server at one moment.
type soakSample struct {
	T          float64 // seconds since the first sample
	Phase      string
	RSS        int64 // bytes
	Heap       int64 // Go heap in use, bytes; -1 unknown
	Goroutines int   // -1 unknown (then Threads stands in)
	Threads    int
	FDs        int
	Sockets    int
	Devices    int64 // devices connected
	Acked      int64 // messages acknowledged so far
	Delivered  int64 // message events received so far (recipients and senders)
	Reconnects int64
}

// Phases of a run, in order.
const (
	phaseIdle    = "idle"    // users exist, nobody connected
	phaseWarmup  = "warm-up" // traffic, not judged
	phaseTraffic = "traffic" // traffic, judged
	phaseSettle  = "settle"  // traffic stopped, deliveries awaited
	phaseDrain   = "drain"   // every client gone
)

// sampler reads the server's levels every period.
type sampler struct {
	pid         int
	base, debug string
	hc          *http.Client
	every       time.Duration
	t0          time.Time
	counters    func(*soakSample)

	mu      sync.Mutex
	phase   string
	samples []soakSample
	sources map[string]int // where the goroutine counts came from: samples per source
	changed chan struct{}
}

func (sm *sampler) setPhase(p string) {
	sm.mu.Lock()
	sm.phase = p
	sm.mu.Unlock()
}

// next is closed at the next sample.
func (sm *sampler) next() <-chan struct{} {
	sm.mu.Lock()
	defer sm.mu.Unlock()
	return sm.changed
}

// wait returns after the next sample (or when ctx ends).
func (sm *sampler) wait(ctx context.Context) bool {
	ch := sm.next()
	select {
	case <-ch:
		return true
	case <-ctx.Done():
		return false
	}
}

// idle is the last idle sample's goroutines and sockets.
func (sm *sampler) idle() (goroutines, sockets int) {
	sm.mu.Lock()
	defer sm.mu.Unlock()
	for _, s := range sm.samples {
		if s.Phase == phaseIdle {
			goroutines, sockets = s.Goroutines, s.Sockets
		}
	}
	return goroutines, sockets
}

func (sm *sampler) last() soakSample {
	sm.mu.Lock()
	defer sm.mu.Unlock()
	return sm.samples[len(sm.samples)-1]
}

func (sm *sampler) run(ctx context.Context) {
	t := time.NewTicker(sm.every)
	defer t.Stop()
	for {
		sm.take()
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
	}
}

func (sm *sampler) take() {
	now := time.Now()
	if sm.t0.IsZero() {
		sm.t0 = now
	}
	smp := soakSample{T: round(now.Sub(sm.t0).Seconds(), 2), Heap: -1, Goroutines: -1}
	if ps, err := sampleProc(sm.pid); err == nil {
		smp.RSS, smp.Threads = ps.rss, ps.threads
	}
	smp.FDs, smp.Sockets = countFDs(sm.pid)
	src := ""
	if g, heap, ok := sm.metrics(); ok {
		smp.Goroutines, smp.Heap, src = g, heap, "GET /metrics (go_goroutines)"
	} else if g, heap, ok := sm.pprof(); ok {
		smp.Goroutines, smp.Heap, src = g, heap, "the pprof goroutine profile (-debug-addr; GET /metrics did not answer go_goroutines)"
	} else {
		src = "none: neither GET /metrics nor pprof answered; the chart shows the process's threads (/proc/PID/status Threads:) instead"
	}
	if sm.counters != nil {
		sm.counters(&smp)
	}
	sm.mu.Lock()
	smp.Phase = sm.phase
	sm.samples = append(sm.samples, smp)
	if sm.sources == nil {
		sm.sources = map[string]int{}
	}
	sm.sources[src]++
	close(sm.changed)
	sm.changed = make(chan struct{})
	sm.mu.Unlock()
}

func (sm *sampler) get(url string, limit int64) ([]byte, bool) {
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Second)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
	if err != nil {
		return nil, false
	}
	resp, err := sm.hc.Do(req)
	if err != nil {
		return nil, false
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(io.LimitReader(resp.Body, limit))
	return b, err == nil && resp.StatusCode == http.StatusOK
}

// liveHeap is the server's Go heap in use right after a garbage
// collection (pprof's heap?gc=1), or -1.
func (sm *sampler) liveHeap() int64 {
	if sm.debug == "" {
		return -1
	}
	h, ok := sm.get(sm.debug+"/debug/pprof/heap?debug=1&gc=1", 64<<20)
	if !ok {
		return -1
	}
	for _, m := range memstatLine.FindAllSubmatch(h, -1) {
		if string(m[1]) == "HeapInuse" {
			v, _ := strconv.ParseInt(string(m[2]), 10, 64)
			return v
		}
	}
	return -1
}

// metrics reads go_goroutines and go_memstats_heap_inuse_bytes from the
// server's Prometheus exposition.
func (sm *sampler) metrics() (goroutines int, heap int64, ok bool) {
	b, ok := sm.get(sm.base+"/metrics", 8<<20)
	if !ok {
		return 0, 0, false
	}
	heap = -1
	ok = false
	sc := bufio.NewScanner(bytes.NewReader(b))
	sc.Buffer(make([]byte, 64<<10), 1<<20)
	for sc.Scan() {
		name, val, found := strings.Cut(sc.Text(), " ")
		if !found {
			continue
		}
		v, err := strconv.ParseFloat(strings.TrimSpace(val), 64)
		if err != nil {
			continue
		}
		switch name {
		case "go_goroutines":
			goroutines, ok = int(v), true
		case "go_memstats_heap_inuse_bytes":
			heap = int64(v)
		}
	}
	return goroutines, heap, ok
}

// pprof reads the goroutine count and HeapInuse from the debug endpoint
// (no forced GC: the heap is as the server holds it).
func (sm *sampler) pprof() (goroutines int, heap int64, ok bool) {
	if sm.debug == "" {
		return 0, 0, false
	}
	g, ok := sm.get(sm.debug+"/debug/pprof/goroutine?debug=1", 1<<20)
	if !ok {
		return 0, 0, false
	}
	line, _, _ := bytes.Cut(g, []byte("\n"))
	if _, err := fmt.Sscanf(string(line), "goroutine profile: total %d", &goroutines); err != nil {
		return 0, 0, false
	}
	heap = -1
	if h, ok := sm.get(sm.debug+"/debug/pprof/heap?debug=1", 64<<20); ok {
		for _, m := range memstatLine.FindAllSubmatch(h, -1) {
			if string(m[1]) == "HeapInuse" {
				heap, _ = strconv.ParseInt(string(m[2]), 10, 64)
			}
		}
	}
	return goroutines, heap, true
}

// countFDs counts a process's open file descriptors, and of those the
// sockets.
func countFDs(pid int) (fds, sockets int) {
	dir := fmt.Sprintf("/proc/%d/fd", pid)
	es, err := os.ReadDir(dir)
	if err != nil {
		return 0, 0
	}
	for _, e := range es {
		fds++
		if l, err := os.Readlink(filepath.Join(dir, e.Name())); err == nil && strings.HasPrefix(l, "socket:") {
			sockets++
		}
	}
	return fds, sockets
}

// sourceText names where the goroutine counts came from, the most used
// source first.
func sourceText(m map[string]int) string {
	type kv struct {
		k string
		n int
	}
	var l []kv
	for k, n := range m {
		l = append(l, kv{k, n})
	}
	sort.Slice(l, func(i, j int) bool { return l[i].n > l[j].n || l[i].n == l[j].n && l[i].k < l[j].k })
	if len(l) == 1 {
		return l[0].k
	}
	var parts []string
	for _, e := range l {
		parts = append(parts, fmt.Sprintf("%s (%d samples)", e.k, e.n))
	}
	return strings.Join(parts, "; ")
}

// soakReport is what a run found.
type soakReport struct {
	Command  string
	Date     string
	Machine  string
	LoadAvg  [2]string // at the start and at the end
	Cfg      soakConfig
	Traffic  time.Duration // how long the traffic ran
	Source   string        // where goroutine counts came from
	Samples  []soakSample
	Counts   soakCounts
	Checks   []soakCheck
	Drain    []soakCheck
	Pass     bool
	Errors   []string // failures during the run, by kind with counts
	Shutdown time.Duration
	LiveHeap [2]int64 // Go heap in use after a forced GC: before the traffic, after every client left (-1: unknown)
	ExitCode int
}

type soakCounts struct {
	Sends, Acked, SendErrors          int64
	Typings, TypingErrors             int64
	Heartbeats, HeartbeatErrors       int64
	Reads, ReadErrors                 int64
	Sessions                          [4]int64
	Reconnects, Switches              int64
	Relogins, Aways                   int64
	ConnectErrors, Drops              int64
	Delivered, Echoes                 int64
	TypingEvents, PresenceEvents      int64
	Expected                          int64 // (message, recipient) pairs, the sender included
	MissingLive, DupLive, EarlyEvents int64 // live connections: never received; received twice; seq not increasing
	InboxEntries                      int64
	Lost, DupInbox, Unacked           int64 // inboxes: acknowledged but absent; present twice; stored but unacknowledged
	SettleS                           float64
}

// soakCheck judges one series: the typical (median) level of the second
// half of the judged window against that of the first half.
type soakCheck struct {
	Name, Unit            string
	Idle, Start, Mid, End float64 // levels: before the traffic; at the start, middle and end of the judged window (medians of 5 samples)
	After                 float64 // once every client had left
	Med1, Med2            float64 // median level of each half of the judged window
	Peak                  float64 // highest level of the judged window
	Tolerance             float64
	SlopePerMin           float64 // least-squares slope over the judged window
	Judged                bool
	Pass                  bool
	Rule                  string
}

func (c soakCheck) growth() float64 { return c.Med2 - c.Med1 }

// judgeSoak applies the verdict to the samples. The judged window is
// the traffic after the warm-up; the same load runs all through it, so
// a server that levels off holds the same typical level in both halves,
// and a leak lifts the second half's by what the first half added. The
// median, not the peak: a login hashes a password (argon2id, 19 MiB,
// up to 4 at once), so memory jumps for a moment whenever logins
// coincide — a burst moves a peak, a leak moves the median. The
// tolerances absorb what is not growth: goroutines and open files move
// with the requests in flight and the clients mid-reconnect (5 % + 10);
// RSS with the garbage collector's pacing and the runtime returning
// memory to the OS lazily (20 % + 16 MiB). Then, every client gone, the
// server must be back near its idle level: goroutines within 5 % + 10
// of before the traffic, sockets within 5 — anything more is held for
// clients that left.
func judgeSoak(samples []soakSample) (checks, drain []soakCheck, pass bool, err error) {
	var win, idle, after []soakSample
	for _, s := range samples {
		switch s.Phase {
		case phaseTraffic:
			win = append(win, s)
		case phaseIdle:
			idle = append(idle, s)
		case phaseDrain:
			after = append(after, s)
		}
	}
	if len(win) < 6 {
		return nil, nil, false, fmt.Errorf("only %d samples after the warm-up: too few to judge", len(win))
	}
	mid := (win[0].T + win[len(win)-1].T) / 2
	var h1, h2 []soakSample
	for _, s := range win {
		if s.T < mid {
			h1 = append(h1, s)
		} else {
			h2 = append(h2, s)
		}
	}
	type series struct {
		name, unit string
		get        func(soakSample) float64
		rel, abs   float64
		judged     bool
	}
	gName := "goroutines"
	gGet := func(s soakSample) float64 { return float64(s.Goroutines) }
	if win[0].Goroutines < 0 {
		gName = "threads (no goroutine count)"
		gGet = func(s soakSample) float64 { return float64(s.Threads) }
	}
	all := []series{
		{"RSS", "MiB", func(s soakSample) float64 { return float64(s.RSS) / (1 << 20) }, 0.20, 16, true},
		{gName, "", gGet, 0.05, 10, true},
		{"open files", "", func(s soakSample) float64 { return float64(s.FDs) }, 0.05, 10, true},
		{"sockets", "", func(s soakSample) float64 { return float64(s.Sockets) }, 0.05, 10, false},
	}
	if win[0].Heap >= 0 {
		all = append(all, series{"Go heap in use", "MiB", func(s soakSample) float64 { return float64(s.Heap) / (1 << 20) }, 0.20, 16, false})
	}
	// around is the median of the five samples of the window centred on
	// sample i (as near as the window's ends allow).
	around := func(i int, get func(soakSample) float64) float64 {
		lo := min(max(i-2, 0), max(len(win)-5, 0))
		return medianOf(win[lo:min(lo+5, len(win))], get)
	}
	midIdx := len(h1)
	maxOf := func(l []soakSample, get func(soakSample) float64) float64 {
		m := math.Inf(-1)
		for _, s := range l {
			m = math.Max(m, get(s))
		}
		return m
	}
	lastOf := func(l []soakSample, get func(soakSample) float64) float64 {
		if len(l) == 0 {
			return math.NaN()
		}
		return get(l[len(l)-1])
	}
	pass = true
	for _, sr := range all {
		c := soakCheck{Name: sr.name, Unit: sr.unit, Judged: sr.judged,
			Idle: lastOf(idle, sr.get), Start: around(0, sr.get), Mid: around(midIdx, sr.get), End: around(len(win)-1, sr.get),
			After: lastOf(after, sr.get), Med1: medianOf(h1, sr.get), Med2: medianOf(h2, sr.get), Peak: maxOf(win, sr.get)}
		c.Tolerance = round(sr.rel*c.Med1+sr.abs, 1)
		c.SlopePerMin = slope(win, sr.get) * 60
		c.Pass = c.growth() <= c.Tolerance
		unit := ""
		if sr.unit != "" {
			unit = " " + sr.unit
		}
		c.Rule = fmt.Sprintf("median of 2nd half ≤ median of 1st half + %g %% + %g%s", 100*sr.rel, sr.abs, unit)
		if !sr.judged {
			c.Rule = "shown, not judged"
		}
		if sr.judged && !c.Pass {
			pass = false
		}
		checks = append(checks, c)
	}
	// Back to idle once every client left.
	if len(idle) == 0 || len(after) == 0 {
		return checks, nil, false, errors.New("no idle or drain samples: cannot tell whether the server let go of the clients")
	}
	g := checks[1]
	dg := soakCheck{Name: gName, Idle: g.Idle, After: g.After, Judged: true}
	dg.Tolerance = round(0.05*g.Idle+10, 1)
	dg.Pass = dg.After-dg.Idle <= dg.Tolerance
	dg.Rule = "after ≤ idle + 5 % + 10"
	sk := checks[3]
	ds := soakCheck{Name: "sockets", Idle: sk.Idle, After: sk.After, Judged: true, Tolerance: 5}
	ds.Pass = ds.After-ds.Idle <= ds.Tolerance
	ds.Rule = "after ≤ idle + 5"
	drain = []soakCheck{dg, ds}
	for _, c := range drain {
		if !c.Pass {
			pass = false
		}
	}
	return checks, drain, pass, nil
}

// medianOf is the median of get over l.
func medianOf(l []soakSample, get func(soakSample) float64) float64 {
	if len(l) == 0 {
		return math.NaN()
	}
	v := make([]float64, len(l))
	for i, s := range l {
		v[i] = get(s)
	}
	slices.Sort(v)
	if len(v)%2 == 1 {
		return v[len(v)/2]
	}
	return (v[len(v)/2-1] + v[len(v)/2]) / 2
}

// slope is the least-squares slope of get over time, per second.
func slope(l []soakSample, get func(soakSample) float64) float64 {
	var n, sx, sy, sxx, sxy float64
	for _, s := range l {
		x, y := s.T, get(s)
		n++
		sx += x
		sy += y
		sxx += x * x
		sxy += x * y
	}
	d := n*sxx - sx*sx
	if n < 2 || d == 0 {
		return 0
	}
	return (n*sxy - sx*sy) / d
}

// soakRun runs the probe against binary bin and writes soak.md, soak.csv
// and soak.svg into out. It returns the report even when the verdict
// fails; an error means the run itself could not be made or judged.
func soakRun(ctx context.Context, sc soakConfig, bin, out, command string, prog *progress) (*soakReport, error) {
	if err := sc.validate(); err != nil {
		return nil, err
	}
	if err := os.MkdirAll(out, 0o755); err != nil {
		return nil, err
	}
	work, err := os.MkdirTemp("", "chatgate-soak-data-")
	if err != nil {
		return nil, err
	}
	defer os.RemoveAll(work)
	rep := &soakReport{Command: command, Date: time.Now().UTC().Format(time.RFC3339), Cfg: sc, LiveHeap: [2]int64{-1, -1}}
	cpu, mem, kernel, load := machine()
	rep.Machine = fmt.Sprintf("%d cores %s, %.1f GiB, Linux %s, %s", runtime.NumCPU(), cpu, mem, kernel, runtime.Version())
	rep.LoadAvg[0] = load

	addr, err := freeAddr()
	if err != nil {
		return nil, err
	}
	dbg, err := freeAddr()
	if err != nil {
		return nil, err
	}
	logPath := filepath.Join(work, "chatgate.log")
	srv, err := startProcess("chatgate", bin, []string{"-addr", addr, "-data", filepath.Join(work, "data"), "-debug-addr", dbg, "-log-level", "warn"},
		"http://"+addr, "/healthz", "http://"+dbg, logPath)
	if err != nil {
		return nil, err
	}
	stopped := false
	defer func() {
		if !stopped {
			srv.stop()
		}
	}()

	s := &soak{cfg: sc, base: srv.base, errs: map[string]int{}}
	prog.stage(fmt.Sprintf("signing up %d users, their friends and a %d-member group", sc.users, sc.group), float64(sc.users)*0.05)
	if err := s.setup(ctx); err != nil {
		return nil, fmt.Errorf("setup: %w\n%s", err, tailFile(logPath, 2000))
	}

	shc := soakHTTP(2)
	defer shc.CloseIdleConnections()
	sm := &sampler{pid: srv.pid(), base: srv.base, debug: srv.debug, hc: shc, every: sc.sample, phase: phaseIdle, changed: make(chan struct{}),
		counters: func(smp *soakSample) {
			smp.Devices = s.connected.Load()
			s.mu.Lock()
			smp.Acked = int64(len(s.acked))
			s.mu.Unlock()
			smp.Delivered = s.delivered.Load() + s.echoes.Load()
			smp.Reconnects = s.reconnects.Load()
		}}
	sctx, stopSampling := context.WithCancel(context.Background())
	var swg sync.WaitGroup
	swg.Add(1)
	go func() { defer swg.Done(); sm.run(sctx) }()
	defer func() { stopSampling(); swg.Wait() }()
	note := func() {
		l := sm.last()
		g := strconv.Itoa(l.Goroutines) + " goroutines"
		if l.Goroutines < 0 {
			g = strconv.Itoa(l.Threads) + " threads"
		}
		prog.note(fmt.Sprintf("RSS %.0f MiB · %s · %d fds · %d devices up · %s msgs · %s reconnects",
			float64(l.RSS)/(1<<20), g, l.FDs, l.Devices, commas(l.Acked), commas(l.Reconnects)))
	}

	// Idle: three samples of the server holding the users, nobody connected.
	prog.stage("idle level before the traffic", 3*sc.sample.Seconds())
	for range 3 {
		if !sm.wait(ctx) {
			return nil, ctx.Err()
		}
	}
	rep.LiveHeap[0] = sm.liveHeap()

	// Traffic.
	prog.stage(fmt.Sprintf("soak: %d users over 4 transports for %s", sc.users, sc.dur), sc.dur.Seconds())
	sm.setPhase(phaseWarmup)
	run, endRun := context.WithCancel(ctx)
	defer endRun()
	traffic, endTraffic := context.WithCancel(run)
	defer endTraffic()
	var users, settled sync.WaitGroup
	began := time.Now()
	for _, u := range s.users {
		users.Add(1)
		settled.Add(1)
		go func() {
			defer users.Done()
			s.runUser(run, traffic, u, settled.Done)
		}()
	}
	warm := time.NewTimer(time.Duration(float64(sc.dur) * sc.warmup))
	end := time.NewTimer(sc.dur)
	defer warm.Stop()
	defer end.Stop()
wait:
	for {
		select {
		case <-ctx.Done():
			endRun()
			users.Wait()
			return nil, ctx.Err()
		case <-warm.C:
			sm.setPhase(phaseTraffic)
		case <-end.C:
			break wait
		case <-sm.next():
			note()
		}
	}
	rep.Traffic = time.Since(began)

	// Settle: everyone back online; every acknowledged message must reach
	// every recipient's connection.
	sm.setPhase(phaseSettle)
	endTraffic()
	prog.stage("waiting for every message to reach every recipient", 5)
	settledCh := make(chan struct{})
	go func() { settled.Wait(); close(settledCh) }()
	select { // bounded: a user that cannot reconnect shows as undelivered messages
	case <-settledCh:
	case <-ctx.Done():
	case <-time.After(time.Minute):
	}
	s.mu.Lock()
	acked := slices.Clone(s.acked)
	s.mu.Unlock()
	t0 := time.Now()
	deadline := time.NewTimer(30*time.Second + 3*sc.poll)
	check := time.NewTicker(100 * time.Millisecond)
	missing := s.missingLive(acked)
settle:
	for missing > 0 {
		select {
		case <-ctx.Done():
			break settle
		case <-deadline.C:
			break settle
		case <-check.C:
			missing = s.missingLive(acked)
		}
	}
	deadline.Stop()
	check.Stop()
	rep.Counts.SettleS = round(time.Since(t0).Seconds(), 2)

	// Drain: every client leaves; the server must let go of them.
	endRun()
	users.Wait()
	sm.setPhase(phaseDrain)
	if ctx.Err() != nil {
		return nil, ctx.Err()
	}
	prog.stage("checking every inbox", float64(sc.users)*0.01)
	if err := s.verify(ctx, acked, &rep.Counts); err != nil {
		return nil, fmt.Errorf("verify inboxes: %w", err)
	}
	rep.Counts.MissingLive = int64(missing)
	prog.stage("every client gone: waiting for the server to let go of them", 5*sc.sample.Seconds())
	idleG, idleS := sm.idle()
	drainEnd := time.Now().Add(max(20*time.Second, 6*sc.sample))
	for n := 0; ; n++ {
		if !sm.wait(ctx) {
			return nil, ctx.Err()
		}
		l := sm.last()
		back := l.Goroutines-idleG <= 10+idleG/20 && l.Sockets-idleS <= 5
		if n >= 2 && back || time.Now().After(drainEnd) {
			break
		}
	}
	rep.LiveHeap[1] = sm.liveHeap()
	stopSampling()
	swg.Wait()

	sm.mu.Lock()
	rep.Samples, rep.Source = slices.Clone(sm.samples), sourceText(sm.sources)
	sm.mu.Unlock()
	s.counts(&rep.Counts)
	rep.Errors = s.errorList()
	_, _, _, rep.LoadAvg[1] = machine()

	stopped = true
	rep.Shutdown, err = srv.stopWithin(serverWait)
	rep.ExitCode = srv.exitCode()
	if err != nil {
		rep.Errors = append(rep.Errors, "server stop: "+err.Error())
	}

	var jerr error
	rep.Checks, rep.Drain, rep.Pass, jerr = judgeSoak(rep.Samples)
	c := rep.Counts
	if c.Lost > 0 || c.DupInbox > 0 || c.MissingLive > 0 || c.DupLive > 0 || c.EarlyEvents > 0 || c.Acked == 0 || rep.ExitCode != 0 {
		rep.Pass = false
	}
	if err := rep.write(out); err != nil {
		return rep, err
	}
	if jerr != nil {
		return rep, jerr
	}
	if !rep.Pass {
		// The server's log may say why.
		if t := strings.TrimSpace(tailFile(logPath, 3000)); t != "" {
			rep.Errors = append(rep.Errors, "server log (tail): "+t)
		}
	}
	return rep, nil
}

// setup signs the users up, makes each a friend of the three users on
// either side (so presence flows) and creates the group.
func (s *soak) setup(ctx context.Context) error {
	hc := soakHTTP(16)
	defer hc.CloseIdleConnections()
	n := s.cfg.users
	s.users = make([]*soakUser, n)
	err := parallel(ctx, n, 4, func(i int) error {
		name := fmt.Sprintf("soak%04d", i)
		a, err := client.New(s.base, client.WithHTTPClient(hc)).Signup(ctx, client.SignupInput{Username: name, Password: benchPassword})
		if err != nil {
			return fmt.Errorf("signup %s: %w", name, err)
		}
		s.users[i] = &soakUser{i: i, id: a.User.ID, name: name, token: a.Token, got: map[string]int{}}
		return nil
	})
	if err != nil {
		return err
	}
	const reach = 3
	for i, u := range s.users {
		for k := 1; k <= reach; k++ {
			for _, j := range []int{(i + k) % n, (i - k + n) % n} {
				if j != i && !slices.Contains(u.contacts, j) {
					u.contacts = append(u.contacts, j)
				}
			}
		}
	}
	as := func(u *soakUser) *client.Client {
		return client.New(s.base, client.WithHTTPClient(hc), client.WithToken(u.token, u.id))
	}
	err = parallel(ctx, n, 16, func(i int) error {
		u := s.users[i]
		for _, j := range u.contacts {
			if err := as(u).Do(ctx, http.MethodPut, "/v1/friends/"+s.users[j].id, nil, nil); err != nil {
				return fmt.Errorf("befriend: %w", err)
			}
		}
		return nil
	})
	if err != nil {
		return err
	}
	ids := make([]string, 0, s.cfg.group-1)
	for _, u := range s.users[1:s.cfg.group] {
		ids = append(ids, u.id)
	}
	var g struct {
		ID string `json:"id"`
	}
	if err := as(s.users[0]).Do(ctx, http.MethodPost, "/v1/groups", map[string]any{"name": "soak", "members": ids}, &g); err != nil {
		return fmt.Errorf("create group: %w", err)
	}
	s.groupID = g.ID
	if s.neg, err = client.New(s.base, client.WithHTTPClient(hc)).Negotiate(ctx); err != nil {
		return fmt.Errorf("negotiate: %w", err)
	}
	return nil
}

// verify reads every user's whole inbox from seq 0 and checks that it
// holds each acknowledged message meant for the user exactly once, and
// that the user's connections received each exactly once.
func (s *soak) verify(ctx context.Context, acked []soakMsg, c *soakCounts) error {
	hc := soakHTTP(8)
	defer hc.CloseIdleConnections()
	inbox := make([]map[string]int, len(s.users))
	err := parallel(ctx, len(s.users), 8, func(i int) error {
		u := s.users[i]
		u.mu.Lock()
		token := u.token
		u.mu.Unlock()
		seen := map[string]int{}
		for cursor := uint64(0); ; {
			var page struct {
				Events []struct {
					Seq     uint64 `json:"seq"`
					Message *struct {
						ID string `json:"id"`
					} `json:"message"`
				} `json:"events"`
				Cursor  uint64 `json:"cursor"`
				HasMore bool   `json:"has_more"`
			}
			b, err := getAuthed(ctx, hc, fmt.Sprintf("%s/v1/poll?cursor=%d&limit=500", s.base, cursor), token)
			if err != nil {
				return fmt.Errorf("%s: %w", u.name, err)
			}
			if err := json.Unmarshal(b, &page); err != nil {
				return fmt.Errorf("%s: poll answer: %w", u.name, err)
			}
			for _, e := range page.Events {
				if e.Message != nil {
					seen[e.Message.ID]++
				}
			}
			if len(page.Events) == 0 || page.Cursor <= cursor {
				break
			}
			cursor = page.Cursor
		}
		inbox[i] = seen
		return nil
	})
	if err != nil {
		return err
	}
	ackedIDs := make(map[string]bool, len(acked))
	for _, m := range acked {
		ackedIDs[m.id] = true
		for _, r := range s.recipients(m) {
			c.Expected++
			switch n := inbox[r][m.id]; {
			case n == 0:
				c.Lost++
			case n > 1:
				c.DupInbox++
			}
			s.users[r].mu.Lock()
			if s.users[r].got[m.id] > 1 {
				c.DupLive++
			}
			s.users[r].mu.Unlock()
		}
	}
	for _, seen := range inbox {
		for id, n := range seen {
			c.InboxEntries += int64(n)
			if !ackedIDs[id] {
				c.Unacked++
			}
		}
	}
	for _, u := range s.users {
		u.mu.Lock()
		c.EarlyEvents += int64(u.early)
		u.mu.Unlock()
	}
	return nil
}

func (s *soak) counts(c *soakCounts) {
	s.mu.Lock()
	c.Acked = int64(len(s.acked))
	s.mu.Unlock()
	c.Sends, c.SendErrors = s.sends.Load(), s.sendErrs.Load()
	c.Typings, c.TypingErrors = s.typings.Load(), s.typingErrs.Load()
	c.Heartbeats, c.HeartbeatErrors = s.heartbeats.Load(), s.heartbeatErrs.Load()
	c.Reads, c.ReadErrors = s.reads.Load(), s.readErrs.Load()
	for i := range c.Sessions {
		c.Sessions[i] = s.sessions[i].Load()
	}
	c.Reconnects, c.Switches = s.reconnects.Load(), s.switches.Load()
	c.Relogins, c.Aways = s.relogins.Load(), s.aways.Load()
	c.ConnectErrors, c.Drops = s.connectErrs.Load(), s.drops.Load()
	c.Delivered, c.Echoes = s.delivered.Load(), s.echoes.Load()
	c.TypingEvents, c.PresenceEvents = s.typingEvents.Load(), s.presenceEvents.Load()
}

func (s *soak) errorList() []string {
	s.mu.Lock()
	defer s.mu.Unlock()
	type kv struct {
		k string
		n int
	}
	var l []kv
	for k, n := range s.errs {
		l = append(l, kv{k, n})
	}
	sort.Slice(l, func(i, j int) bool { return l[i].n > l[j].n || l[i].n == l[j].n && l[i].k < l[j].k })
	var out []string
	for i, e := range l {
		if i == 10 {
			out = append(out, fmt.Sprintf("… and %d more kinds", len(l)-10))
			break
		}
		out = append(out, fmt.Sprintf("%d× %s", e.n, e.k))
	}
	return out
}

// failure says in one line why the run failed.
func (r *soakReport) failure() string {
	var why []string
	for _, c := range r.Checks {
		if c.Judged && !c.Pass {
			why = append(why, fmt.Sprintf("%s grew from a median of %s to %s between the halves of the judged window (tolerance %s)", c.Name, f(c.Med1), f(c.Med2), f(c.Tolerance)))
		}
	}
	for _, c := range r.Drain {
		if !c.Pass {
			why = append(why, fmt.Sprintf("%s stayed at %s after every client left (idle: %s)", c.Name, f(c.After), f(c.Idle)))
		}
	}
	c := r.Counts
	for _, x := range []struct {
		n    int64
		what string
	}{{c.Lost, "acknowledged message deliveries missing from inboxes"}, {c.DupInbox, "duplicated in inboxes"},
		{c.MissingLive, "never reached the recipient's connections"}, {c.DupLive, "reached a recipient's connections twice"},
		{c.EarlyEvents, "durable events at or below the cursor already processed"}} {
		if x.n > 0 {
			why = append(why, fmt.Sprintf("%d %s", x.n, x.what))
		}
	}
	if c.Acked == 0 {
		why = append(why, "no message was acknowledged")
	}
	if r.ExitCode != 0 {
		why = append(why, fmt.Sprintf("the server exited with status %d", r.ExitCode))
	}
	return strings.Join(why, "; ")
}

func (r *soakReport) write(out string) error {
	if err := os.WriteFile(filepath.Join(out, "soak.md"), []byte(r.markdown()), 0o644); err != nil {
		return err
	}
	if err := os.WriteFile(filepath.Join(out, "soak.csv"), r.csv(), 0o644); err != nil {
		return err
	}
	return os.WriteFile(filepath.Join(out, "soak.svg"), []byte(r.chart()), 0o644)
}

func (r *soakReport) csv() []byte {
	var b bytes.Buffer
	w := csv.NewWriter(&b)
	w.Write([]string{"t_s", "phase", "rss_mib", "heap_inuse_mib", "goroutines", "threads", "open_fds", "sockets", "devices_connected", "messages_acked", "message_events_received", "reconnects"})
	for _, s := range r.Samples {
		heap := ""
		if s.Heap >= 0 {
			heap = strconv.FormatFloat(round(float64(s.Heap)/(1<<20), 2), 'f', -1, 64)
		}
		g := ""
		if s.Goroutines >= 0 {
			g = strconv.Itoa(s.Goroutines)
		}
		w.Write([]string{strconv.FormatFloat(s.T, 'f', -1, 64), s.Phase, strconv.FormatFloat(round(float64(s.RSS)/(1<<20), 2), 'f', -1, 64), heap, g,
			strconv.Itoa(s.Threads), strconv.Itoa(s.FDs), strconv.Itoa(s.Sockets), strconv.FormatInt(s.Devices, 10),
			strconv.FormatInt(s.Acked, 10), strconv.FormatInt(s.Delivered, 10), strconv.FormatInt(s.Reconnects, 10)})
	}
	w.Flush()
	return b.Bytes()
}

func yesNo(ok bool, yes, no string) string {
	if ok {
		return yes
	}
	return no
}

func (r *soakReport) markdown() string {
	var b strings.Builder
	p := func(format string, args ...any) { fmt.Fprintf(&b, format, args...) }
	c, sc := r.Counts, r.Cfg
	p("# chatgate soak\n\n")
	verdict := "**levels off: pass** — memory, goroutines and open files stop growing once warm, every client's resources are released when it leaves, and no acknowledged message was lost or duplicated."
	if !r.Pass {
		verdict = "**FAIL** — " + r.failure() + "."
	}
	p("%s\n\n![RSS, goroutines, open files and traffic over the run](soak.svg)\n\n", verdict)
	p("`%s` — %s, %s (load average %s at the start, %s at the end; the machine is shared).\n\n", r.Command, r.Date, r.Machine, r.LoadAvg[0], r.LoadAvg[1])

	p("## Traffic\n\n")
	p("%d users for %s (the first %.0f %% warm-up, not judged), sampled every %s. User *i* starts on transport *i* mod 4 (WebSocket, SSE, long polling, short polling every %s) and, every %s–%s, sends a message to one of its six friends or, for the %d members of the group, %.0f %% of the time to the group (typing first half of the time), or reads a conversation's history, the conversation list, or sends an explicit heartbeat. "+
		"Every %s–%s it drops its connection and comes back within 2 s from the cursor it had processed — one time in five after up to %s away%s, one time in four on the next transport, %.0f %% of the times logging out and in again as a new device that carries the cursor over.\n\n",
		sc.users, r.Traffic.Round(time.Second), 100*sc.warmup, sc.sample, sc.poll, sc.sendEvery/3, sc.sendEvery*5/3, sc.group, 100*sc.groupShare,
		sc.session/2, sc.session*3/2, sc.away, yesNo(sc.away > soakOfflineAfter, fmt.Sprintf(" (beyond the server's %s, long enough to go offline to its friends)", soakOfflineAfter), ""), 100*sc.relogin)
	sess := []string{}
	for i, t := range client.DefaultTransports {
		sess = append(sess, fmt.Sprintf("%s %s", name(t), commas(c.Sessions[i])))
	}
	errs := func(n int64) string {
		if n == 0 {
			return ""
		}
		return fmt.Sprintf(" (%s failed)", commas(n))
	}
	p("| | |\n|---|---:|\n")
	p("| messages sent | %s%s |\n", commas(c.Sends), errs(c.SendErrors))
	p("| messages acknowledged | %s (%.1f/s) |\n", commas(c.Acked), float64(c.Acked)/r.Traffic.Seconds())
	p("| message events received by recipients / by senders (echo) | %s / %s |\n", commas(c.Delivered), commas(c.Echoes))
	p("| typing sent / typing events received | %s%s / %s |\n", commas(c.Typings), errs(c.TypingErrors), commas(c.TypingEvents))
	p("| presence events received | %s |\n", commas(c.PresenceEvents))
	p("| history and conversation-list reads | %s%s |\n", commas(c.Reads), errs(c.ReadErrors))
	p("| explicit heartbeats | %s%s |\n", commas(c.Heartbeats), errs(c.HeartbeatErrors))
	p("| connections made, by transport | %s |\n", strings.Join(sess, " · "))
	p("| reconnects (resuming from the cursor) | %s, %s of them to another transport, %s after a long absence |\n", commas(c.Reconnects), commas(c.Switches), commas(c.Aways))
	p("| log-outs and log-ins as a new device | %s |\n", commas(c.Relogins))
	p("| connections that failed to come up / went down by themselves | %s / %s |\n", commas(c.ConnectErrors), commas(c.Drops))

	p("\n## Levels\n\nThe server process: RSS from /proc/PID/status, open files and sockets from /proc/PID/fd, goroutines (and Go heap) from %s. *Idle*: users signed up, nobody connected; *start*, *middle*, *end*: the judged window (after the warm-up); *after*: every client gone.\n\n", r.Source)
	p("| series | idle | start | middle | end | after | median, 1st half | median, 2nd half | growth | tolerance | peak | slope /min | verdict |\n|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---|\n")
	// Counts print whole, MiB with one decimal.
	num := func(v float64, unit string) string {
		switch {
		case math.IsNaN(v):
			return "–"
		case unit == "" && v == math.Trunc(v):
			return commas(int64(v))
		}
		return strconv.FormatFloat(round(v, 1), 'f', 1, 64)
	}
	for _, k := range r.Checks {
		v := "shown, not judged"
		if k.Judged {
			v = yesNo(k.Pass, "levels off", "**grows**")
		}
		unit := ""
		if k.Unit != "" {
			unit = " " + k.Unit
		}
		p("| %s%s | %s | %s | %s | %s | %s | %s | %s | %s | %s | %s | %s | %s |\n", k.Name, unit, num(k.Idle, k.Unit), num(k.Start, k.Unit), num(k.Mid, k.Unit), num(k.End, k.Unit), num(k.After, k.Unit),
			num(k.Med1, k.Unit), num(k.Med2, k.Unit), num(k.growth(), k.Unit), num(k.Tolerance, "MiB"), num(k.Peak, k.Unit), num(k.SlopePerMin, "MiB"), v)
	}
	p("\n**How it is judged.** The judged window is the traffic after the warm-up (*start*, *middle* and *end* are medians of five samples there). The same load runs all through it, so a server that levels off holds the same typical level in both halves of it, and a leak — something kept per message, per connection, per device — lifts the second half's by as much as the first half added. A series grows when the median of the second half exceeds the median of the first by more than a tolerance for what is not growth: goroutines and open files move with the requests in flight and the clients caught mid-reconnect (5 %% + 10); RSS with the garbage collector's pacing and the runtime's lazy return of memory to the OS (20 %% + 16 MiB). The median, not the peak: each login hashes a password with argon2id (19 MiB, up to 4 at once), so memory jumps for a moment whenever re-logins coincide — a burst moves the peak (shown), a leak moves the median. The least-squares slope is shown for information: on a short run it is mostly noise. Then, once every client has left, the server must be back near its idle level, or it is holding something for clients that are gone:\n\n")
	p("| after every client left | idle | after | tolerance | verdict |\n|---|---:|---:|---:|---|\n")
	for _, k := range r.Drain {
		p("| %s | %s | %s | + %s | %s |\n", k.Name, num(k.Idle, ""), num(k.After, ""), num(k.Tolerance, "MiB"), yesNo(k.Pass, "released", "**held**"))
	}

	if r.LiveHeap[0] > 0 && r.LiveHeap[1] > 0 {
		p("\nLive Go heap right after a forced garbage collection (pprof `heap?gc=1`, not judged): %.1f MiB with nobody connected before the traffic, %.1f MiB after every client left — what the node keeps of %s messages, %s connections and %s devices (its store's memtable and caches included). The *Go heap in use* row above is sampled without collecting: it swings between two levels with each GC cycle, so its median says little.\n",
			float64(r.LiveHeap[0])/(1<<20), float64(r.LiveHeap[1])/(1<<20), commas(c.Acked), commas(c.Sessions[0]+c.Sessions[1]+c.Sessions[2]+c.Sessions[3]), commas(c.Relogins+int64(sc.users)))
	}
	p("\n## No message lost\n\nOnce the traffic stopped every user was connected again, and the probe waited (%.1f s) for every acknowledged message to reach each recipient's connections — its sender's too, which the protocol echoes. Then each user's whole inbox was read from seq 0 over `GET /v1/poll`.\n\n", c.SettleS)
	p("| | |\n|---|---:|\n")
	p("| (message, recipient) pairs expected | %s |\n", commas(c.Expected))
	p("| missing from the recipient's inbox | %d |\n", c.Lost)
	p("| twice in the recipient's inbox | %d |\n", c.DupInbox)
	p("| never reached the recipient's connections | %d |\n", c.MissingLive)
	p("| reached the recipient's connections twice | %d |\n", c.DupLive)
	p("| durable events at or below the cursor already processed | %d |\n", c.EarlyEvents)
	p("| inbox entries of sends never acknowledged (stored, the answer lost) | %d |\n", c.Unacked)
	p("\nServer stopped with SIGTERM in %s, exit status %d.\n", r.Shutdown.Round(time.Millisecond), r.ExitCode)
	if len(r.Errors) > 0 {
		p("\n## What failed along the way\n\n")
		for _, e := range r.Errors {
			p("- %s\n", strings.ReplaceAll(e, "\n", " "))
		}
	}
	return b.String()
}

// chart draws the run as four panels over a shared time axis — RSS (and
// Go heap), goroutines, open files (and sockets), the traffic — with the
// phases shaded and, in the judged window, the level the second half
// must stay under.
func (r *soakReport) chart() string {
	const (
		W, left, right = 960, 70, 20
		top, panelH    = 104, 150
		gap, bottom    = 40, 70
	)
	type line struct {
		label  string
		color  string
		dashed bool
		get    func(soakSample) float64
	}
	type panel struct {
		title string
		lines []line
		med1  float64 // the first half's median; 0: none
		med2  float64 // the second half's median
		limit float64 // what the second half's median may reach
	}
	check := func(pn *panel, name string) {
		for _, c := range r.Checks {
			if c.Name == name && c.Judged {
				pn.med1, pn.med2, pn.limit = c.Med1, c.Med2, c.Med1+c.Tolerance
			}
		}
	}
	ss := r.Samples
	hasHeap := len(ss) > 0 && slices.ContainsFunc(ss, func(s soakSample) bool { return s.Heap >= 0 })
	hasG := slices.ContainsFunc(ss, func(s soakSample) bool { return s.Goroutines >= 0 })
	mem := panel{title: "server RSS, MiB", lines: []line{{"RSS", "#2b6cb0", false, func(s soakSample) float64 { return float64(s.RSS) / (1 << 20) }}}}
	check(&mem, "RSS")
	if hasHeap {
		mem.title += " (dashed: Go heap in use)"
		mem.lines = append(mem.lines, line{"heap", "#2b6cb0", true, func(s soakSample) float64 { return float64(max(s.Heap, 0)) / (1 << 20) }})
	}
	gor := panel{title: "goroutines", lines: []line{{"goroutines", "#2f855a", false, func(s soakSample) float64 { return float64(s.Goroutines) }}}}
	check(&gor, "goroutines")
	if !hasG {
		gor = panel{title: "threads (the server gave no goroutine count)", lines: []line{{"threads", "#2f855a", false, func(s soakSample) float64 { return float64(s.Threads) }}}}
		check(&gor, "threads (no goroutine count)")
	}
	fds := panel{title: "open files (dashed: of which sockets)", lines: []line{
		{"fds", "#b7791f", false, func(s soakSample) float64 { return float64(s.FDs) }},
		{"sockets", "#b7791f", true, func(s soakSample) float64 { return float64(s.Sockets) }}}}
	check(&fds, "open files")
	// Messages acknowledged per second between samples.
	rate := make([]float64, len(ss))
	for i := 1; i < len(ss); i++ {
		if dt := ss[i].T - ss[i-1].T; dt > 0 {
			rate[i] = float64(ss[i].Acked-ss[i-1].Acked) / dt
		}
	}
	idx := map[float64]int{}
	for i, s := range ss {
		idx[s.T] = i
	}
	traffic := panel{title: "traffic: devices connected (dashed: messages acknowledged per second)", lines: []line{
		{"devices", "#c53030", false, func(s soakSample) float64 { return float64(s.Devices) }},
		{"msgs/s", "#c53030", true, func(s soakSample) float64 { return rate[idx[s.T]] }}}}
	panels := []panel{mem, gor, fds, traffic}
	H := top + len(panels)*(panelH+gap) + bottom
	plotW := float64(W - left - right)
	tMax := 1.0
	if len(ss) > 0 {
		tMax = math.Max(ss[len(ss)-1].T, 1)
	}
	minutes := tMax >= 180
	x := func(t float64) float64 { return float64(left) + plotW*t/tMax }

	var b strings.Builder
	p := func(format string, args ...any) { fmt.Fprintf(&b, format, args...) }
	p(`<svg xmlns="http://www.w3.org/2000/svg" width="%d" height="%d" viewBox="0 0 %d %d" font-family="Helvetica, Arial, sans-serif" font-size="12">`+"\n", W, H, W, H)
	p(`<rect width="100%%" height="100%%" fill="#ffffff"/>` + "\n")
	title := fmt.Sprintf("chatgate soak: %d users over 4 transports for %s — %s", r.Cfg.users, r.Traffic.Round(time.Second), yesNo(r.Pass, "levels off", "FAIL"))
	p(`<text x="%d" y="26" font-size="18" font-weight="bold">%s</text>`+"\n", left, html.EscapeString(title))
	p(`<text x="%d" y="46" fill="#555">%s</text>`+"\n", left, html.EscapeString(fmt.Sprintf("%s messages acknowledged, %s reconnects (%s as a new device), %d lost · sampled every %s",
		commas(r.Counts.Acked), commas(r.Counts.Reconnects), commas(r.Counts.Relogins), r.Counts.Lost, r.Cfg.sample)))
	p(`<text x="%d" y="62" fill="#555">%s</text>`+"\n", left, html.EscapeString(r.Date[:min(10, len(r.Date))]+" · "+r.Machine))

	// Phase bands, from the samples' phase labels.
	type band struct {
		phase    string
		from, to float64
	}
	var bands []band
	for i, s := range ss {
		if len(bands) == 0 || bands[len(bands)-1].phase != s.Phase {
			from := s.T
			if i > 0 {
				from = (ss[i-1].T + s.T) / 2
				bands[len(bands)-1].to = from
			}
			bands = append(bands, band{s.Phase, from, s.T})
		} else {
			bands[len(bands)-1].to = s.T
		}
	}
	fill := map[string]string{phaseIdle: "#eeeeee", phaseWarmup: "#fdf3d7", phaseTraffic: "#ffffff", phaseSettle: "#e3eefb", phaseDrain: "#eeeeee"}
	var judged []soakSample
	for _, s := range ss {
		if s.Phase == phaseTraffic {
			judged = append(judged, s)
		}
	}
	mid := math.NaN()
	if len(judged) > 0 {
		mid = (judged[0].T + judged[len(judged)-1].T) / 2
	}
	for pi, pn := range panels {
		y0 := float64(top + pi*(panelH+gap))
		maxV := 0.0
		for _, l := range pn.lines {
			for _, s := range ss {
				maxV = math.Max(maxV, l.get(s))
			}
		}
		maxV = math.Max(maxV, pn.limit)
		step := niceStep(maxV / 4)
		hi := math.Max(step*math.Ceil(maxV/step), step)
		y := func(v float64) float64 { return y0 + panelH - panelH*v/hi }
		for _, bd := range bands {
			p(`<rect x="%.1f" y="%.1f" width="%.1f" height="%d" fill="%s"/>`+"\n", x(bd.from), y0, math.Max(x(bd.to)-x(bd.from), 0), panelH, fill[bd.phase])
			if pi == 0 && x(bd.to)-x(bd.from) > 30 {
				p(`<text x="%.1f" y="%.1f" fill="#777" font-size="11">%s</text>`+"\n", x(bd.from)+3, y0-24, html.EscapeString(bd.phase))
			}
		}
		p(`<rect x="%d" y="%.1f" width="%.1f" height="%d" fill="none" stroke="#bbb"/>`+"\n", left, y0, plotW, panelH)
		for v := 0.0; v <= hi+step/2; v += step {
			p(`<line x1="%d" y1="%.1f" x2="%.1f" y2="%.1f" stroke="#e2e2e2"/>`+"\n", left, y(v), float64(left)+plotW, y(v))
			p(`<text x="%d" y="%.1f" text-anchor="end" fill="#555">%s</text>`+"\n", left-6, y(v)+4, html.EscapeString(tick(v)))
		}
		if !math.IsNaN(mid) {
			p(`<line x1="%.1f" y1="%.1f" x2="%.1f" y2="%.1f" stroke="#999" stroke-dasharray="2,3"/>`+"\n", x(mid), y0, x(mid), y0+panelH)
		}
		if pn.limit > 0 && len(judged) > 0 {
			// The medians of the halves (black), and what the second's
			// may reach (red dashes).
			x0, x1 := x(judged[0].T), x(judged[len(judged)-1].T)
			p(`<line x1="%.1f" y1="%.1f" x2="%.1f" y2="%.1f" stroke="#000" stroke-width="1.5"/>`+"\n", x0, y(pn.med1), x(mid), y(pn.med1))
			p(`<line x1="%.1f" y1="%.1f" x2="%.1f" y2="%.1f" stroke="#000" stroke-width="1.5"/>`+"\n", x(mid), y(pn.med2), x1, y(pn.med2))
			p(`<line x1="%.1f" y1="%.1f" x2="%.1f" y2="%.1f" stroke="#c53030" stroke-width="1" stroke-dasharray="6,4"/>`+"\n", x(mid), y(pn.limit), x1, y(pn.limit))
			p(`<text x="%.1f" y="%.1f" fill="#c53030" font-size="11" text-anchor="end">limit for the 2nd half's median</text>`+"\n", x1-2, y(pn.limit)-3)
		}
		for _, l := range pn.lines {
			var pts []string
			for _, s := range ss {
				pts = append(pts, fmt.Sprintf("%.1f,%.1f", x(s.T), y(l.get(s))))
			}
			dash := ""
			if l.dashed {
				dash = ` stroke-dasharray="5,3"`
			}
			p(`<polyline points="%s" fill="none" stroke="%s" stroke-width="1.8"%s/>`+"\n", strings.Join(pts, " "), l.color, dash)
		}
		p(`<text x="%d" y="%.1f" font-weight="bold">%s</text>`+"\n", left, y0-7, html.EscapeString(pn.title))
	}
	// Time axis.
	yAxis := float64(top + len(panels)*(panelH+gap) - gap + 16)
	unit, div := "s", 1.0
	if minutes {
		unit, div = "min", 60
	}
	tstep := niceStep(tMax / div / 10)
	for t := 0.0; t <= tMax/div+tstep/100; t += tstep {
		p(`<text x="%.1f" y="%.1f" text-anchor="middle" fill="#555">%s</text>`+"\n", x(t*div), yAxis, html.EscapeString(tick(t)))
	}
	p(`<text x="%.1f" y="%.1f" text-anchor="middle" fill="#555">time, %s</text>`+"\n", float64(left)+plotW/2, yAxis+18, unit)
	p(`<text x="%d" y="%d" fill="#555">%s</text>`+"\n", left, H-24, html.EscapeString("Grey: idle, drain (nobody connected) · yellow: warm-up, not judged · white: traffic, judged (dotted: its middle) · blue: settle."))
	p(`<text x="%d" y="%d" fill="#555">%s</text>`+"\n", left, H-8, html.EscapeString("Black: the median of each half of the judged window; red dashes: what the second half's median may reach."))
	p("</svg>\n")
	return b.String()
}

// niceStep rounds a raw step up to 1, 2 or 5 times a power of ten.
func niceStep(raw float64) float64 {
	if raw <= 0 {
		return 1
	}
	p := math.Pow(10, math.Floor(math.Log10(raw)))
	for _, m := range []float64{1, 2, 5, 10} {
		if m*p >= raw {
			return m * p
		}
	}
	return 10 * p
}

func tick(v float64) string {
	if v == math.Trunc(v) {
		return commas(int64(v))
	}
	return strconv.FormatFloat(v, 'f', -1, 64)
}
