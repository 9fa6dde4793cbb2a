package main

import (
	"context"
	"fmt"
	"math/rand/v2"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/chatgate/chatgate/client"
)

// target is one system on one transport, under load. The scenarios drive
// every target the same way.
type target interface {
	Name() string
	System() string // "chatgate" or "centrifugo"
	Transport() string
	Server() *server
	Meter() *meter
	// ConnectFleet connects the load users, one connection each; every
	// message a user receives from someone else goes to cur.
	ConnectFleet(ctx context.Context, cur *current) error
	FleetSize() int
	// GroupSize is how many of the fleet's first users form the group.
	GroupSize() int
	// SendDirect sends content from sender s (user 2s) to its partner
	// (user 2s+1), who only receives: latency is the receiving
	// transport's, not shortened by the receiver's own activity (a short
	// poller's sends trigger its polls).
	SendDirect(ctx context.Context, s int, content string) error
	// SendGroup sends content from user i (< GroupSize) to the group.
	SendGroup(ctx context.Context, i int, content string) error
	CloseFleet()
	// ConnectIdle opens n idle connections and returns a function that
	// closes them; progress is told how many are up.
	ConnectIdle(ctx context.Context, n int, progress func(int)) (func(), error)
	// Drops counts load connections the server closed (slow consumer, …)
	// since the start.
	Drops() int64
	// SocketsPerIdle is how many sockets one idle client holds (for the
	// open-files budget).
	SocketsPerIdle() int
	// PollInterval is the short-polling period (0 for other transports).
	PollInterval() time.Duration
}

// account is a signed-up bench user. Cursor is the head of the user's
// inbox once the setup is done (0 unless the node was pre-filled): its
// connections resume there.
type account struct {
	ID, Token, Name string
	Cursor          uint64
}

// chatgateSetup is what every chatgate run starts from: a data directory
// holding the bench users and their group.
type chatgateSetup struct {
	bin      string
	template string // data directory with the users
	// bare is the template before -prefill filled it: the store probe
	// measures on it, undisturbed by the prefill's pushes being drained.
	bare    string
	users   []account
	groupID string
	groupN  int
}

const benchPassword = "bench-password-1"

// prefill is -prefill: messages stored on the template node before any
// measurement, by the history probe's fill.
type prefill struct {
	n       int64
	share   float64
	senders int
	payload int
	prog    *progress
	rate    float64 // sends/s over the whole fill, set by the fill
}

// prepareChatgate signs the users up on a fresh server and creates the
// group, fills the node when pf is set, then stops the server: each
// transport's run starts from a copy.
func prepareChatgate(ctx context.Context, bin, work string, nUsers, groupN int, logDir string, pf *prefill) (*chatgateSetup, error) {
	dir := filepath.Join(work, "template")
	addr, err := freeAddr()
	if err != nil {
		return nil, err
	}
	srv, err := startProcess("chatgate", bin, []string{"-addr", addr, "-data", dir, "-log-level", "warn"},
		"http://"+addr, "/healthz", "", filepath.Join(logDir, "chatgate-setup.log"))
	if err != nil {
		return nil, err
	}
	defer func() { srv.stop() }() // srv is replaced when the node is restarted for -prefill
	st := &chatgateSetup{bin: bin, template: dir, groupN: groupN}
	if st.users, err = signupUsers(ctx, srv.base, "bench", nUsers, nil); err != nil {
		return nil, err
	}
	if groupN > 1 {
		if st.groupID, err = createGroup(ctx, srv.base, "bench", st.users[:groupN]); err != nil {
			return nil, err
		}
	}
	st.bare = dir
	if pf != nil {
		if err := srv.stop(); err != nil {
			return nil, err
		}
		st.bare = filepath.Join(work, "template-bare")
		if err := copyDir(dir, st.bare); err != nil {
			return nil, err
		}
		if srv, err = startProcess("chatgate", bin, []string{"-addr", addr, "-data", dir, "-log-level", "warn"},
			"http://"+addr, "/healthz", "", filepath.Join(logDir, "chatgate-setup.log")); err != nil {
			return nil, err
		}
		if err := prefillNode(ctx, srv.base, st, pf); err != nil {
			return nil, fmt.Errorf("prefill: %w", err)
		}
	}
	if err := srv.stop(); err != nil {
		return nil, err
	}
	return st, nil
}

// prefillNode stores pf.n messages among the setup's users: 1:1, and to
// groups of groupN members (the bench group is the first), then reads
// every user's inbox head so that connections resume there.
func prefillNode(ctx context.Context, base string, st *chatgateSetup, pf *prefill) error {
	groups := []string{}
	if st.groupID != "" && pf.share > 0 {
		groups = append(groups, st.groupID)
		for g := 1; (g+1)*st.groupN <= len(st.users); g++ {
			id, err := createGroup(ctx, base, fmt.Sprintf("prefill %d", g), st.users[g*st.groupN:(g+1)*st.groupN])
			if err != nil {
				return err
			}
			groups = append(groups, id)
		}
	}
	pf.prog.stage(fmt.Sprintf("pre-filling the node with %s messages", commas(pf.n)), float64(pf.n)/8000)
	fl := newFiller(fillPlan{users: st.users, groups: groups, groupN: st.groupN, share: pf.share,
		payload: pf.payload, senders: pf.senders, tag: "p"})
	seg, err := fl.fill(ctx, base, pf.n, func(stored int64, rate float64) {
		pf.prog.advance(float64(stored) / float64(pf.n))
		pf.prog.note(fmt.Sprintf("%s / %s stored · %s sends/s", commas(stored), commas(pf.n), f(round(rate, 0))))
	})
	if err != nil {
		return err
	}
	pf.rate = float64(pf.n) / seg.dur.Seconds()
	pf.prog.log("pre-filled the node with %s messages (%s to groups) in %s: %s sends/s",
		commas(pf.n), commas(pf.n-fl.direct.Load()), seg.dur.Round(100*time.Millisecond), f(round(pf.rate, 0)))
	hc := &http.Client{Transport: fillTransport(16), Timeout: time.Minute}
	defer hc.CloseIdleConnections()
	return parallel(ctx, len(st.users), 16, func(i int) error {
		c, err := headCursor(ctx, hc, base, st.users[i])
		st.users[i].Cursor = c
		return err
	})
}

// chatgateTarget is a chatgate server driven over one transport.
type chatgateTarget struct {
	transport string
	setup     *chatgateSetup
	srv       *server
	m         *meter
	neg       *client.Negotiation
	poll      time.Duration
	fleetN    int
	dir       string // data directory, removed at stop

	fleet []*member
	drops atomic.Int64
}

type member struct {
	c    *client.Client
	conn *client.Conn
	acct account
}

// startChatgate starts a server on a copy of the template data directory.
func startChatgate(ctx context.Context, st *chatgateSetup, transport, work, logDir string, fleetN int, poll time.Duration) (*chatgateTarget, error) {
	dir := filepath.Join(work, "data-"+transport)
	_ = os.RemoveAll(dir)
	if err := copyDir(st.template, dir); err != nil {
		return nil, err
	}
	addr, err := freeAddr()
	if err != nil {
		return nil, err
	}
	dbg, err := freeAddr()
	if err != nil {
		return nil, err
	}
	srv, err := startProcess("chatgate", st.bin,
		[]string{"-addr", addr, "-data", dir, "-debug-addr", dbg, "-log-level", "warn"},
		"http://"+addr, "/healthz", "http://"+dbg, filepath.Join(logDir, "chatgate-"+transport+".log"))
	if err != nil {
		return nil, err
	}
	t := &chatgateTarget{transport: transport, setup: st, srv: srv, m: &meter{}, poll: poll, fleetN: fleetN, dir: dir}
	t.neg, err = client.New(srv.base).Negotiate(ctx)
	if err != nil {
		srv.stop()
		return nil, fmt.Errorf("negotiate: %w", err)
	}
	return t, nil
}

func (t *chatgateTarget) Name() string      { return t.transport }
func (t *chatgateTarget) System() string    { return "chatgate" }
func (t *chatgateTarget) Transport() string { return t.transport }
func (t *chatgateTarget) Server() *server   { return t.srv }
func (t *chatgateTarget) Meter() *meter     { return t.m }
func (t *chatgateTarget) FleetSize() int    { return t.fleetN }
func (t *chatgateTarget) GroupSize() int    { return t.setup.groupN }

func (t *chatgateTarget) PollInterval() time.Duration {
	if t.transport == client.TransportPolling {
		return t.poll
	}
	return 0
}

func (t *chatgateTarget) SocketsPerIdle() int {
	switch t.transport {
	case client.TransportSSE, client.TransportLongPolling:
		return 2 // the stream (or held poll), and room for a second connection of the HTTP client (a send while the stream is open)
	}
	return 1
}

func (t *chatgateTarget) newClient(a account) *client.Client {
	return client.New(t.srv.base,
		client.WithHTTPClient(t.m.httpClient()),
		client.WithWebSocketDialer(t.m.wsDialer()),
		client.WithToken(a.Token, a.ID),
		client.WithSendTimeout(20*time.Second),
		client.WithBackoff(50*time.Millisecond, time.Second))
}

func (t *chatgateTarget) Drops() int64 { return t.drops.Load() }

func (t *chatgateTarget) connect(ctx context.Context, a account, onEvent func(client.Event)) (*client.Client, *client.Conn, error) {
	c := t.newClient(a)
	var onState func(client.State)
	if onEvent != nil { // a load connection: count the times it went down
		onState = func(s client.State) {
			if !s.Connected {
				t.drops.Add(1)
			}
		}
	}
	conn, err := c.Connect(ctx, client.ConnectOptions{
		Transports:   []string{t.transport},
		Cursor:       a.Cursor,
		OnEvent:      onEvent,
		OnState:      onState,
		Negotiation:  t.neg,
		PollInterval: t.poll,
	})
	if err != nil {
		c.CloseIdleConnections()
		return nil, nil, err
	}
	return c, conn, nil
}

func (t *chatgateTarget) ConnectFleet(ctx context.Context, cur *current) error {
	users := t.setup.users[:t.fleetN]
	t.fleet = make([]*member, len(users))
	// Short pollers connect spread over one interval, so their polls are
	// spread as independent clients' would be (all at once, they would
	// poll in step and every message would wait the same).
	start, spread := time.Now(), t.PollInterval()
	width := 16
	if spread > 0 {
		width = len(users)
	}
	err := parallel(ctx, len(users), width, func(i int) error {
		a := users[i]
		if spread > 0 && !sleepCtx(ctx, time.Until(start.Add(spread*time.Duration(i)/time.Duration(len(users))))) {
			return ctx.Err()
		}
		c, conn, err := t.connect(ctx, a, func(e client.Event) {
			if e.Type == client.EventMessage && e.Message != nil && e.Message.From != a.ID {
				cur.deliver(e.Message.Content, len(e.Raw))
			}
		})
		if err != nil {
			return fmt.Errorf("connect %s over %s: %w", a.Name, t.transport, err)
		}
		t.fleet[i] = &member{c: c, conn: conn, acct: a}
		return nil
	})
	if err != nil {
		t.CloseFleet()
	}
	return err
}

func (t *chatgateTarget) SendDirect(ctx context.Context, s int, content string) error {
	_, err := t.fleet[2*s].conn.Send(ctx, client.SendInput{To: t.fleet[2*s+1].acct.ID, Content: content})
	return err
}

func (t *chatgateTarget) SendGroup(ctx context.Context, i int, content string) error {
	_, err := t.fleet[i].conn.Send(ctx, client.SendInput{GroupID: t.setup.groupID, Content: content})
	return err
}

func (t *chatgateTarget) CloseFleet() {
	var wg sync.WaitGroup
	for _, m := range t.fleet {
		if m == nil {
			continue
		}
		wg.Add(1)
		go func() {
			defer wg.Done()
			m.conn.Close()
			m.c.CloseIdleConnections()
		}()
	}
	wg.Wait()
	t.fleet = nil
}

func (t *chatgateTarget) ConnectIdle(ctx context.Context, n int, progress func(int)) (func(), error) {
	type pair struct {
		c    *client.Client
		conn *client.Conn
	}
	conns := make([]pair, n)
	var mu sync.Mutex
	up := 0
	closeAll := func() {
		_ = parallel(context.Background(), n, 64, func(i int) error {
			if p := conns[i]; p.conn != nil {
				p.conn.Close()
				p.c.CloseIdleConnections()
			}
			return nil
		})
	}
	users := t.setup.users
	err := parallel(ctx, n, 32, func(i int) error {
		c, conn, err := t.connect(ctx, users[i%len(users)], nil)
		if err != nil {
			return fmt.Errorf("idle connection %d over %s: %w", i, t.transport, err)
		}
		conns[i] = pair{c, conn}
		mu.Lock()
		up++
		u := up
		mu.Unlock()
		if progress != nil {
			progress(u)
		}
		return nil
	})
	if err != nil {
		closeAll()
		return nil, err
	}
	return closeAll, nil
}

func (t *chatgateTarget) stop() error {
	t.CloseFleet()
	err := t.srv.stop()
	_ = os.RemoveAll(t.dir) // history of a run can be hundreds of MB
	return err
}

// parallel runs f(0..n-1) with at most width at once; the first error
// stops the handing out of new work and is returned.
func parallel(parent context.Context, n, width int, f func(i int) error) error {
	ctx, cancel := context.WithCancel(parent)
	defer cancel()
	var wg sync.WaitGroup
	var once sync.Once
	var first error
	next := make(chan int)
	for range min(width, n) {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := range next {
				if err := f(i); err != nil {
					once.Do(func() { first = err; cancel() })
				}
			}
		}()
	}
loop:
	for i := range n {
		select {
		case next <- i:
		case <-ctx.Done():
			break loop
		}
	}
	close(next)
	wg.Wait()
	if first == nil {
		first = parent.Err()
	}
	return first
}

// storeCost is what durable history costs: bytes the data directory grows
// by once the server has stopped cleanly (its memtables flushed), and live
// Go heap the server keeps, per message. Pebble compacts further with
// time (BenchmarkBytesOnDisk in core/pebble measures the fully compacted
// cost).
type storeCost struct {
	Direct1to1    int     `json:"messages_1to1"`
	DirectFile    float64 `json:"file_bytes_per_1to1"`
	DirectHeap    float64 `json:"heap_bytes_per_1to1"`
	GroupMsgs     int     `json:"messages_group"`
	GroupMembers  int     `json:"group_members"`
	GroupFile     float64 `json:"file_bytes_per_group_msg"`
	GroupHeap     float64 `json:"heap_bytes_per_group_msg"`
	PayloadBytes  int     `json:"payload_bytes"`
	JournalFactor float64 `json:"journal_factor"` // growth / live data: 2 for releases that journaled every write in chatgate.db, 1 since history is in Pebble
}

// probeStore sends n 1:1 messages and nGroup group messages over HTTP to
// a server on a copy of the template, measuring the store file and the
// heap after each batch.
func probeStore(ctx context.Context, st *chatgateSetup, work, logDir string, n, nGroup, payload int) (storeCost, error) {
	sc := storeCost{Direct1to1: n, GroupMsgs: nGroup, GroupMembers: st.groupN, PayloadBytes: payload, JournalFactor: 1}
	addr, err := freeAddr()
	if err != nil {
		return sc, err
	}
	dbg, err := freeAddr()
	if err != nil {
		return sc, err
	}
	// Random lowercase letters: a store that compresses sees about what
	// text gives it, not a run of one byte.
	rng := rand.New(rand.NewPCG(uint64(n), uint64(payload)))
	contents := make([]string, 64)
	for i := range contents {
		b := make([]byte, payload)
		for j := range b {
			b[j] = letters[rng.IntN(len(letters))]
		}
		contents[i] = string(b)
	}
	// Each kind of message is measured on its own copy of the template,
	// so that compactions of the other kind's tables do not show in its
	// figures.
	phase := func(name string, count int, send func(cs []*client.Client, i int) error) (file, heap float64, err error) {
		dir := filepath.Join(work, "data-store-probe-"+name)
		defer os.RemoveAll(dir)
		if err := copyDir(st.bare, dir); err != nil {
			return 0, 0, err
		}
		start := func() (*server, error) {
			return startProcess("chatgate", st.bin, []string{"-addr", addr, "-data", dir, "-debug-addr", dbg, "-log-level", "warn"},
				"http://"+addr, "/healthz", "http://"+dbg, filepath.Join(logDir, "chatgate-store-probe-"+name+".log"))
		}
		srv, err := start()
		if err != nil {
			return 0, 0, err
		}
		defer func() { srv.stop() }()
		// Bytes on disk: the data files — chatgate.db and, under history/,
		// Pebble's tables. Its write-ahead logs (kept, emptied, to be
		// reused, whatever their size says) and its manifest (rewritten
		// whole at every start) would only add noise.
		size := func() (int64, error) {
			var total int64
			err := filepath.WalkDir(dir, func(path string, e os.DirEntry, err error) error {
				if err != nil {
					return err
				}
				if filepath.Base(filepath.Dir(path)) == "history" && !strings.HasSuffix(path, ".sst") {
					return nil
				}
				if fi, err := e.Info(); err == nil && fi.Mode().IsRegular() {
					total += fi.Size()
				}
				return nil
			})
			return total, err
		}
		// measure reads the live heap, then restarts the server: a clean
		// stop flushes what the store holds in memory, so the size counts
		// what a message costs on disk, not the log it went through.
		measure := func() (int64, int64, error) {
			rt, err := sampleRuntime(srv.debug, true)
			if err != nil {
				return 0, 0, err
			}
			if err := srv.stop(); err != nil {
				return 0, 0, err
			}
			sz, err := size()
			if err != nil {
				return 0, 0, err
			}
			srv, err = start()
			return sz, rt.heapInuse, err
		}
		clients := make([]*client.Client, len(st.users))
		for i, u := range st.users {
			clients[i] = client.New(srv.base, client.WithToken(u.Token, u.ID))
		}
		defer func() {
			for _, c := range clients {
				c.CloseIdleConnections()
			}
		}()
		f0, h0, err := measure()
		if err != nil {
			return 0, 0, err
		}
		if err := parallel(ctx, count, 32, func(i int) error { return send(clients, i) }); err != nil {
			return 0, 0, fmt.Errorf("store probe, %s: %w", name, err)
		}
		f1, h1, err := measure()
		if err != nil {
			return 0, 0, err
		}
		return round(float64(f1-f0)/float64(count), 0), round(float64(h1-h0)/float64(count), 0), nil
	}
	pairs := len(st.users) / 2
	sc.DirectFile, sc.DirectHeap, err = phase("direct", n, func(cs []*client.Client, i int) error {
		p := i % pairs
		_, err := cs[2*p].Send(ctx, client.SendInput{To: st.users[2*p+1].ID, Content: contents[i%len(contents)]})
		return err
	})
	if err != nil {
		return sc, err
	}
	sc.GroupFile, sc.GroupHeap, err = phase("group", nGroup, func(cs []*client.Client, i int) error {
		_, err := cs[i%st.groupN].Send(ctx, client.SendInput{GroupID: st.groupID, Content: contents[i%len(contents)]})
		return err
	})
	return sc, err
}
