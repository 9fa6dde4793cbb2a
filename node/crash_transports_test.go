package node_test

import (
	"bytes"
	"context"
	"encoding/binary"
	"encoding/json"
	"flag"
	"fmt"
	"io"
	"math/rand/v2"
	"net"
	"net/http"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/gorilla/websocket"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/chatgate/chatgate/client"
	"github.com/chatgate/chatgate/internal/testkit"
)

var (
	crashRounds = flag.Int("crash.rounds", 3, "TestCrashTransports: how many times the server is killed with SIGKILL")
	crashSeed   = flag.Uint64("crash.seed", 0, "TestCrashTransports: seed of the kill points (0: a new one, logged)")
)

// crTransports are the four realtime transports, in the order devices are
// given them.
var crTransports = []string{client.TransportWebSocket, client.TransportSSE, client.TransportLongPolling, client.TransportPolling}

// TestCrashTransports runs the real binary with 16 users (8 pairs of
// friends and a group of four), each with one device connected over one of
// the four transports through the client package, sending to its friend
// (and the group) over that transport all the time. The server is killed
// with SIGKILL at a random point (seeded: -crash.seed replays the kill
// points) and restarted on the same data and port, -crash.rounds times;
// devices reconnect and resume by themselves, and senders retry the send
// the crash interrupted with the same client_msg_id until it is
// acknowledged. At the end every acknowledged message is in history and in
// each of its recipients' inboxes exactly once, inboxes are gap-free and
// hold nothing else, each device's delivered stream is exactly its inbox,
// and every single transport session (one WebSocket, one SSE stream, one
// poll) carried the durable events after its cursor in order, with no gap
// and no repeat, as docs/protocol.md ("Resume rules") promises.
func TestCrashTransports(t *testing.T) {
	if testing.Short() {
		t.Skip("-short: builds and kills the real binary")
	}
	durLeakCheck(t)
	start := time.Now()
	seed := *crashSeed
	if seed == 0 {
		seed = rand.Uint64()
	}
	rounds := *crashRounds
	t.Logf("seed %d (replay the kill points with -crash.seed=%d), %d rounds", seed, seed, rounds)
	rng := rand.New(rand.NewPCG(seed, 0x63726173685f7472))

	bin := testkit.Binary(t)
	dir, logDir := t.TempDir(), t.TempDir()
	addr := fmt.Sprintf("127.0.0.1:%d", durFreePort(t))
	p := crStart(t, bin, dir, logDir, addr, 0)
	base := p.base

	// Users: pairs (0,1), (2,3), ... are friends; 0, 3, 6 and 8 share a
	// group. User i's device uses crTransports[(i+i/8)%4], so that pairs
	// mix transports (WS-SSE, LP-poll, SSE-LP, poll-WS) and the group
	// holds all four.
	const nUsers = 16
	users := testkit.SignupMany(t, base, "ctr", nUsers)
	for i := 0; i < nUsers; i += 2 {
		testkit.Befriend(t, users[i], users[i+1])
	}
	groupIdx := []int{0, 3, 6, 8}
	var memberIDs []string
	for _, i := range groupIdx[1:] {
		memberIDs = append(memberIDs, users[i].ID)
	}
	r := users[0].Do("POST", "/v1/groups", map[string]any{"name": "crash transports", "members": memberIDs})
	require.Equal(t, http.StatusCreated, r.Status, "%s", r.Body)
	gid := r.JSON()["id"].(string)
	groups := map[string][]string{gid: append([]string{users[0].ID}, memberIDs...)}
	inGroup := map[int]bool{}
	for _, i := range groupIdx {
		inGroup[i] = true
	}

	// Senders and devices stop, whatever happens, before the processes are
	// killed and the leak check runs (cleanups run last first).
	ctx, cancel := context.WithCancel(context.Background())
	stop := make(chan struct{})
	var stopOnce sync.Once
	stopSenders := func() { stopOnce.Do(func() { close(stop) }) }
	var wg sync.WaitGroup
	devs := make([]*crDevice, nUsers)
	t.Cleanup(func() {
		cancel()
		stopSenders()
		wg.Wait()
		for _, d := range devs {
			if d != nil && d.conn != nil {
				d.conn.Close()
			}
		}
	})

	for i, u := range users {
		devs[i] = crNewDevice(i, u, crTransports[(i+i/8)%4], base)
	}
	for _, d := range devs {
		cctx, ccancel := context.WithTimeout(ctx, 20*time.Second)
		conn, err := d.cl.Connect(cctx, d.connectOptions())
		ccancel()
		require.NoError(t, err, "connect user %d over %s", d.idx, d.transport)
		require.Equal(t, d.transport, conn.Transport())
		d.conn = conn
	}

	var (
		epoch    atomic.Int64 // restarts so far; tags the client_msg_id of new sends
		acks     atomic.Int64
		inflight atomic.Int64
		mu       sync.Mutex
		acked    []durSent
		fails    []string
	)
	fail := func(format string, args ...any) {
		mu.Lock()
		fails = append(fails, fmt.Sprintf(format, args...))
		mu.Unlock()
	}
	failed := func() []string {
		mu.Lock()
		defer mu.Unlock()
		return append([]string(nil), fails...)
	}
	for _, d := range devs {
		wg.Add(1)
		go func(d *crDevice) {
			defer wg.Done()
			friend := users[d.idx^1]
			for i := 0; ; i++ {
				select {
				case <-stop:
					return
				default:
				}
				in := client.SendInput{
					ClientMsgID: fmt.Sprintf("ct%02d-e%d-%d", d.idx, epoch.Load(), i),
					Content:     fmt.Sprintf("%s #%d from %d over %s ✓", d.transport, i, d.idx, d.transport),
				}
				s := durSent{From: d.user.ID, Content: in.Content, ClientMsgID: in.ClientMsgID}
				if inGroup[d.idx] && i%5 == 4 {
					in.GroupID, s.Group, s.Conv = gid, gid, "g_"+gid
				} else {
					in.To, s.To, s.Conv = friend.ID, friend.ID, durDirectConv(d.user.ID, friend.ID)
				}
				// Send retries network errors, a dropped socket and 5xx with
				// the same client_msg_id until the server (restarted, if it
				// was killed meanwhile) acknowledges it.
				inflight.Add(1)
				sctx, scancel := context.WithTimeout(ctx, 60*time.Second)
				m, err := d.conn.Send(sctx, in)
				scancel()
				inflight.Add(-1)
				if err != nil {
					if ctx.Err() == nil {
						fail("user %d (%s): send %s: %v", d.idx, d.transport, in.ClientMsgID, err)
					}
					return
				}
				if m.From != s.From || m.Content != s.Content || m.ClientMsgID != s.ClientMsgID ||
					m.ConversationID != s.Conv || m.To != s.To || m.GroupID != s.Group {
					fail("user %d: answer %+v does not match the send %+v", d.idx, m, s)
					return
				}
				s.ID = m.ID
				mu.Lock()
				acked = append(acked, s)
				mu.Unlock()
				acks.Add(1)
			}
		}(d)
	}

	// reconnected waits until every device has received, over its
	// transport, a message first sent after the latest restart: each one
	// resumed from the new process and is live again.
	reconnected := func(what string) {
		t.Helper()
		e := epoch.Load()
		crWaitFor(t, 30*time.Second, what, func() string {
			if f := failed(); len(f) > 0 {
				return "senders failed: " + strings.Join(f, "; ")
			}
			return ""
		}, func() bool {
			for _, d := range devs {
				if d.maxEpoch.Load() < e {
					return false
				}
			}
			return true
		}, func() string {
			var late []string
			for _, d := range devs {
				if d.maxEpoch.Load() < e {
					late = append(late, fmt.Sprintf("%d(%s, cursor %d)", d.idx, d.transport, d.conn.Cursor()))
				}
			}
			return "devices still behind: " + strings.Join(late, ", ")
		})
	}

	type roundInfo struct {
		target, inflight int64
		delay, down      time.Duration
	}
	var infos []roundInfo
	reconnected("first traffic on every device")
	for round := 1; round <= rounds; round++ {
		// A random kill point: after a random number of acknowledgements
		// in this round, then a random delay, so the kill lands anywhere
		// in a send, a commit, a fan-out or a stream write.
		ri := roundInfo{target: int64(30 + rng.IntN(170)), delay: time.Duration(rng.IntN(150)) * time.Millisecond}
		goal := acks.Load() + ri.target
		crWaitFor(t, 30*time.Second, fmt.Sprintf("round %d: %d acknowledgements", round, ri.target), func() string {
			if f := failed(); len(f) > 0 {
				return "senders failed: " + strings.Join(f, "; ")
			}
			return ""
		}, func() bool { return acks.Load() >= goal }, func() string { return fmt.Sprintf("%d acknowledged", acks.Load()) })
		timer := time.NewTimer(ri.delay) // the random kill point, not a synchronisation
		<-timer.C
		ri.inflight = inflight.Load()
		p.kill()
		down := time.Now()
		p = crStart(t, bin, dir, logDir, addr, round)
		ri.down = time.Since(down)
		epoch.Store(int64(round))
		reconnected(fmt.Sprintf("round %d: every device live again after the restart", round))
		infos = append(infos, ri)
		t.Logf("round %d: killed after +%d acks and %v with %d sends in flight; restarted in %v; %d acknowledged so far",
			round, ri.target, ri.delay, ri.inflight, ri.down.Round(time.Millisecond), acks.Load())
	}

	// Stop sending: each sender finishes the send it is in (acknowledged,
	// the server being up), then every device drains to its inbox head.
	stopSenders()
	wg.Wait()
	require.Empty(t, failed())
	heads := make([]uint64, nUsers)
	for i, u := range users {
		_, heads[i] = u.PollAll(0)
	}
	crWaitFor(t, 30*time.Second, "every device caught up with its inbox", func() string { return "" }, func() bool {
		for i, d := range devs {
			if d.conn.Cursor() < heads[i] {
				return false
			}
		}
		return true
	}, func() string {
		var late []string
		for i, d := range devs {
			if c := d.conn.Cursor(); c < heads[i] {
				late = append(late, fmt.Sprintf("%d(%s) at %d of %d", d.idx, d.transport, c, heads[i]))
			}
		}
		return strings.Join(late, ", ")
	})
	for _, d := range devs {
		d.conn.Close()
	}
	runTime := time.Since(start)

	// Every send was acknowledged once, under its own id.
	mu.Lock()
	all := append([]durSent(nil), acked...)
	mu.Unlock()
	byCMID, byID := map[string]string{}, map[string]string{}
	for _, s := range all {
		require.Empty(t, byCMID[s.From+"/"+s.ClientMsgID], "client_msg_id %s acknowledged twice", s.ClientMsgID)
		require.Empty(t, byID[s.ID], "message id %s acknowledged for %s and %s", s.ID, byID[s.ID], s.ClientMsgID)
		byCMID[s.From+"/"+s.ClientMsgID], byID[s.ID] = s.ID, s.ClientMsgID
	}

	// Inboxes (from cursor 0: seq 1..N, each acknowledged message exactly
	// once, nothing else) and every conversation's history, read by each
	// member.
	durCheckAll(t, users, all, groups)

	// What each device got over its transport: exactly its inbox, in
	// order, and no session broke the resume rules.
	perTransport := map[string]*struct{ devices, sessions, raw, repeats, delivered int }{}
	var lines []string
	var sendErrs, replayed int
	for i, d := range devs {
		evs, _ := users[i].PollAll(0)
		d.mu.Lock()
		// Every device is checked before the test stops, so that a failure
		// shows whether the device also lost or repeated messages.
		assert.Empty(t, d.violations, "user %d (%s): protocol violations seen by the device", d.idx, d.transport)
		assert.Len(t, d.delivered, len(evs), "user %d (%s): events delivered over the transport vs inbox", d.idx, d.transport)
		for k, e := range evs {
			if k >= len(d.delivered) {
				break
			}
			got := d.delivered[k]
			assert.Equal(t, uint64(k+1), got.seq, "user %d (%s): delivered event %d", d.idx, d.transport, k)
			assert.Equal(t, e["message"].(map[string]any)["id"], got.id, "user %d (%s): message at seq %d (inbox: %s, delivered: %s)",
				d.idx, d.transport, k+1, e["message"].(map[string]any)["client_msg_id"], got.cmid)
		}
		st := perTransport[d.transport]
		if st == nil {
			st = &struct{ devices, sessions, raw, repeats, delivered int }{}
			perTransport[d.transport] = st
		}
		st.devices++
		st.sessions += d.sessions
		st.raw += d.raw
		st.repeats += d.repeats
		st.delivered += len(d.delivered)
		sendErrs += d.sendErrs
		replayed += d.replayed
		lines = append(lines, fmt.Sprintf("user %2d %-11s inbox %4d = delivered %4d (raw %4d over %3d sessions, %d asked again after a reconnect)",
			d.idx, d.transport, len(evs), len(d.delivered), d.raw, d.sessions, d.repeats))
		d.mu.Unlock()
	}
	var checked int
	for i := range users {
		checked += int(heads[i])
	}
	var cover []string
	for _, tr := range crTransports {
		st := perTransport[tr]
		cover = append(cover, fmt.Sprintf("%s: %d devices, %d sessions, %d events delivered", tr, st.devices, st.sessions, st.delivered))
	}
	t.Logf("per recipient:\n%s", strings.Join(lines, "\n"))
	if t.Failed() {
		t.FailNow()
	}
	t.Logf("seed %d, %d rounds (%d kills), %d messages acknowledged, %d inbox entries checked (each against history, "+
		"the acknowledgements and the device's stream); HTTP sends: %d unanswered attempts retried, %d retries found "+
		"the message stored before the kill; transports: %s; %v",
		seed, rounds, len(infos), len(all), checked, sendErrs, replayed, strings.Join(cover, "; "), runTime.Round(time.Millisecond))
}

// ---- devices ----

// crDevice is one user's only device: it sends and receives over one
// transport. Every durable event the server writes to it is observed
// below the client package too (crRawSession), to check the protocol's
// per-session promise, which the client's dedupe would otherwise hide.
type crDevice struct {
	idx       int
	user      *testkit.Client
	transport string
	cl        *client.Client
	conn      *client.Conn
	maxEpoch  atomic.Int64

	mu         sync.Mutex
	delivered  []crDelivered
	violations []string
	sessions   int    // transport sessions seen on the wire
	raw        int    // durable events seen on the wire
	repeats    int    // of them, seqs an earlier session had carried (asked again by cursor)
	maxRaw     uint64 // highest seq seen on the wire
	sendErrs   int    // POST /v1/messages without an answer (server down or killed under it)
	replayed   int    // POST /v1/messages answered Idempotent-Replayed: stored before the crash, found by the retry
}

type crDelivered struct {
	seq      uint64
	id, cmid string
}

func crNewDevice(idx int, u *testkit.Client, transport, base string) *crDevice {
	d := &crDevice{idx: idx, user: u, transport: transport}
	tr := http.DefaultTransport.(*http.Transport).Clone()
	tr.Proxy = nil
	hc := &http.Client{Transport: &crTripper{base: tr, dev: d}}
	dialer := &websocket.Dialer{
		HandshakeTimeout: 10 * time.Second,
		NetDialContext: func(ctx context.Context, network, addr string) (net.Conn, error) {
			var nd net.Dialer
			c, err := nd.DialContext(ctx, network, addr)
			if err != nil {
				return nil, err
			}
			return &crWSConn{Conn: c, dev: d}, nil
		},
	}
	d.cl = client.New(base, client.WithToken(u.Token, u.ID), client.WithHTTPClient(hc),
		client.WithWebSocketDialer(dialer), client.WithBackoff(10*time.Millisecond, 250*time.Millisecond),
		client.WithRequestTimeout(15*time.Second))
	return d
}

func (d *crDevice) connectOptions() client.ConnectOptions {
	return client.ConnectOptions{
		Transports:   []string{d.transport},
		PollInterval: 100 * time.Millisecond,
		LongPollWait: 5 * time.Second,
		OnEvent:      d.onEvent,
		OnError: func(err error) {
			// Reconnects are expected; a gap, a cursor moved back or an
			// event the client cannot read are not.
			msg := err.Error()
			for _, bad := range []string{"seq gap", "accepting the gap", "moved the cursor back", "undecodable"} {
				if strings.Contains(msg, bad) {
					d.violate("client reported: %v", err)
				}
			}
		},
	}
}

// onEvent runs on the Conn's goroutine.
func (d *crDevice) onEvent(e client.Event) {
	if !e.Durable() {
		return
	}
	d.mu.Lock()
	defer d.mu.Unlock()
	if e.Type != client.EventMessage || e.Message == nil {
		d.violations = append(d.violations, fmt.Sprintf("durable event of type %q: %s", e.Type, e.Raw))
		return
	}
	if want := uint64(len(d.delivered) + 1); e.Seq != want {
		d.violations = append(d.violations, fmt.Sprintf("delivered seq %d, want %d", e.Seq, want))
	}
	d.delivered = append(d.delivered, crDelivered{seq: e.Seq, id: e.Message.ID, cmid: e.Message.ClientMsgID})
	// client_msg_id "ctNN-eE-I": E is the number of restarts before it was
	// first sent.
	parts := strings.Split(e.Message.ClientMsgID, "-")
	if len(parts) == 3 && strings.HasPrefix(parts[1], "e") {
		if ep, err := strconv.ParseInt(parts[1][1:], 10, 64); err == nil && ep > d.maxEpoch.Load() {
			d.maxEpoch.Store(ep) // only this goroutine stores
		}
	}
}

func (d *crDevice) violate(format string, args ...any) {
	d.mu.Lock()
	d.violations = append(d.violations, fmt.Sprintf(format, args...))
	d.mu.Unlock()
}

// ---- the wire, below the client package ----

// crRawSession checks one transport session as the server sent it:
// opened with cursor N, its durable events must be N+1, N+2, ... (resume
// rule 2: no event skipped or repeated), and it must not pull the cursor
// back (the inbox would have lost entries the device had seen).
type crRawSession struct {
	dev  *crDevice
	kind string
	from uint64
	next uint64
}

func (d *crDevice) newRawSession(kind string, cursor uint64) *crRawSession {
	d.mu.Lock()
	d.sessions++
	d.mu.Unlock()
	return &crRawSession{dev: d, kind: kind, from: cursor, next: cursor + 1}
}

// event checks one event object of the session.
func (s *crRawSession) event(raw []byte) {
	var w struct {
		Type   string `json:"type"`
		Seq    uint64 `json:"seq"`
		Cursor uint64 `json:"cursor"`
	}
	if err := json.Unmarshal(raw, &w); err != nil {
		s.dev.violate("%s session from cursor %d: undecodable event %q: %v", s.kind, s.from, raw, err)
		return
	}
	switch {
	case w.Type == "cursor":
		s.dev.violate("%s session from cursor %d: server moved the cursor back to %d (entries lost?)", s.kind, s.from, w.Cursor)
	case w.Seq != 0:
		d := s.dev
		d.mu.Lock()
		if w.Seq != s.next {
			d.violations = append(d.violations, fmt.Sprintf("%s session from cursor %d: got seq %d, want %d (%s)",
				s.kind, s.from, w.Seq, s.next, map[bool]string{true: "repeat", false: "gap"}[w.Seq < s.next]))
		}
		s.next = w.Seq + 1
		d.raw++
		if w.Seq <= d.maxRaw {
			d.repeats++
		}
		d.maxRaw = max(d.maxRaw, w.Seq)
		d.mu.Unlock()
	}
}

// page checks a /v1/poll or /v1/longpoll answer.
func (s *crRawSession) page(body []byte) {
	var pg struct {
		Events []json.RawMessage `json:"events"`
		Cursor uint64            `json:"cursor"`
	}
	if err := json.Unmarshal(body, &pg); err != nil {
		return // cut short by the kill: the client could not read it either
	}
	for _, e := range pg.Events {
		s.event(e)
	}
	switch {
	case pg.Cursor < s.from:
		s.dev.violate("%s from cursor %d: answered cursor %d (entries lost?): %s", s.kind, s.from, pg.Cursor, body)
	case s.next-1 != pg.Cursor:
		s.dev.violate("%s from cursor %d: answered cursor %d after seq %d: %s", s.kind, s.from, pg.Cursor, s.next-1, body)
	}
}

// crTripper observes the SSE and polling responses a device reads.
type crTripper struct {
	base *http.Transport
	dev  *crDevice
}

func (rt *crTripper) CloseIdleConnections() { rt.base.CloseIdleConnections() }

func (rt *crTripper) RoundTrip(req *http.Request) (*http.Response, error) {
	resp, err := rt.base.RoundTrip(req)
	if req.Method == http.MethodPost && req.URL.Path == "/v1/messages" {
		rt.dev.mu.Lock()
		switch {
		case err != nil:
			rt.dev.sendErrs++
		case resp.Header.Get("Idempotent-Replayed") == "true":
			rt.dev.replayed++
		}
		rt.dev.mu.Unlock()
	}
	if err != nil || req.Method != http.MethodGet || resp.StatusCode != http.StatusOK {
		return resp, err
	}
	cursor, _ := strconv.ParseUint(req.URL.Query().Get("cursor"), 10, 64)
	switch req.URL.Path {
	case "/v1/sse":
		if id := req.Header.Get("Last-Event-ID"); id != "" {
			cursor, _ = strconv.ParseUint(id, 10, 64)
		}
		resp.Body = &crSSEBody{ReadCloser: resp.Body, s: rt.dev.newRawSession("sse", cursor)}
	case "/v1/poll", "/v1/longpoll":
		resp.Body = &crPollBody{ReadCloser: resp.Body, s: rt.dev.newRawSession(strings.TrimPrefix(req.URL.Path, "/v1/"), cursor)}
	}
	return resp, nil
}

// crPollBody keeps a poll answer and checks it once read (the client's
// JSON decoder may stop before EOF, so also at Close).
type crPollBody struct {
	io.ReadCloser
	s    *crRawSession
	buf  bytes.Buffer
	once sync.Once
}

func (b *crPollBody) Read(p []byte) (int, error) {
	n, err := b.ReadCloser.Read(p)
	b.buf.Write(p[:n])
	if err == io.EOF {
		b.once.Do(func() { b.s.page(b.buf.Bytes()) })
	}
	return n, err
}

func (b *crPollBody) Close() error {
	b.once.Do(func() { b.s.page(b.buf.Bytes()) })
	return b.ReadCloser.Close()
}

// crSSEBody checks each complete `data:` line of an SSE stream as it is
// read.
type crSSEBody struct {
	io.ReadCloser
	s    *crRawSession
	line []byte
}

func (b *crSSEBody) Read(p []byte) (int, error) {
	n, err := b.ReadCloser.Read(p)
	b.line = append(b.line, p[:n]...)
	for {
		i := bytes.IndexByte(b.line, '\n')
		if i < 0 {
			break
		}
		l := bytes.TrimSuffix(b.line[:i], []byte("\r"))
		if data, ok := bytes.CutPrefix(l, []byte("data:")); ok {
			b.s.event(bytes.TrimPrefix(data, []byte(" ")))
		}
		b.line = b.line[i+1:]
	}
	b.line = append([]byte(nil), b.line...) // do not pin the consumed part
	return n, err
}

// crWSConn observes a WebSocket as bytes: the handshake request (for the
// cursor), the 101 answer, then the server's frames (never masked; every
// text frame is one event object or a "sent"/"error" answer).
type crWSConn struct {
	net.Conn
	dev *crDevice

	wmu  sync.Mutex
	req  []byte
	sess atomic.Pointer[crRawSession]

	in        []byte // unparsed bytes from the server (read side: one goroutine)
	handshake bool
	dead      bool
	frag      []byte
}

func (c *crWSConn) Write(p []byte) (int, error) {
	if c.sess.Load() == nil {
		c.wmu.Lock()
		if c.sess.Load() == nil {
			c.req = append(c.req, p...)
			if line, _, ok := bytes.Cut(c.req, []byte("\r\n")); ok {
				// GET /v1/ws?cursor=N HTTP/1.1
				cursor := uint64(0)
				if f := strings.Fields(string(line)); len(f) >= 2 {
					if _, q, ok := strings.Cut(f[1], "?"); ok {
						for _, kv := range strings.Split(q, "&") {
							if v, ok := strings.CutPrefix(kv, "cursor="); ok {
								cursor, _ = strconv.ParseUint(v, 10, 64)
							}
						}
					}
				}
				c.sess.Store(c.dev.newRawSession("ws", cursor))
				c.req = nil
			}
		}
		c.wmu.Unlock()
	}
	return c.Conn.Write(p)
}

func (c *crWSConn) Read(p []byte) (int, error) {
	n, err := c.Conn.Read(p)
	if n > 0 && !c.dead {
		c.in = append(c.in, p[:n]...)
		c.parse()
	}
	return n, err
}

func (c *crWSConn) parse() {
	if !c.handshake {
		hdr, rest, ok := bytes.Cut(c.in, []byte("\r\n\r\n"))
		if !ok {
			return
		}
		if !bytes.HasPrefix(hdr, []byte("HTTP/1.1 101")) {
			c.dead = true // refused: no frames follow
			return
		}
		c.handshake, c.in = true, append([]byte(nil), rest...)
	}
	s := c.sess.Load()
	for len(c.in) >= 2 {
		b0, b1 := c.in[0], c.in[1]
		hl, n := 2, uint64(b1&0x7f)
		switch n {
		case 126:
			if len(c.in) < 4 {
				return
			}
			hl, n = 4, uint64(binary.BigEndian.Uint16(c.in[2:4]))
		case 127:
			if len(c.in) < 10 {
				return
			}
			hl, n = 10, binary.BigEndian.Uint64(c.in[2:10])
		}
		var mask []byte
		if b1&0x80 != 0 {
			if len(c.in) < hl+4 {
				return
			}
			mask, hl = c.in[hl:hl+4], hl+4
		}
		if uint64(len(c.in)-hl) < n {
			return
		}
		payload := append([]byte(nil), c.in[hl:hl+int(n)]...)
		for i := range payload {
			if mask != nil {
				payload[i] ^= mask[i%4]
			}
		}
		c.in = c.in[hl+int(n):]
		switch op := b0 & 0x0f; {
		case op >= 0x8: // control frame
			continue
		case op == 0x0:
			c.frag = append(c.frag, payload...)
		default:
			c.frag = payload
		}
		if b0&0x80 != 0 && s != nil {
			s.event(c.frag)
			c.frag = nil
		}
	}
	c.in = append([]byte(nil), c.in...)
}

// ---- the process ----

// crStart starts the binary on dir, listening on addr (the same port at
// every restart, so that connected clients find it again).
func crStart(t *testing.T, bin, dir, logDir, addr string, run int) *durProc {
	t.Helper()
	return startProc(t, bin, procSpec{dir: dir, logDir: logDir, addr: addr, run: run})
}

// ---- helpers ----

// crWaitFor polls cond until it holds, failing the test when abort returns
// a reason or within passes (then with state's description).
func crWaitFor(t *testing.T, within time.Duration, what string, abort func() string, cond func() bool, state func() string) {
	t.Helper()
	deadline := time.Now().Add(within)
	for !cond() {
		if why := abort(); why != "" {
			t.Fatalf("%s: %s", what, why)
		}
		if time.Now().After(deadline) {
			t.Fatalf("%s: not within %v: %s", what, within, state())
		}
		time.Sleep(5 * time.Millisecond) // polling for a condition
	}
}
