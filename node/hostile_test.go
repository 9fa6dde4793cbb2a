package node_test

// Hostile clients (docs/reliability.md): bodies of any size, oversized,
// fragmented and endless WebSocket frames, readers that never read or read
// a byte a second, held long polls that vanish, slowloris headers, and
// idle sockets by the thousand. Each test checks that the node refuses or
// cuts the offender with a clear error, that its memory stays bounded
// (nodes run as processes, their RSS read from /proc) and that a normal
// client keeps being served meanwhile. Latencies are logged, never
// asserted: CI machines are shared. -hostile.long runs them at full size.

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"runtime"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/chatgate/chatgate/client"
	"github.com/chatgate/chatgate/core"
	"github.com/chatgate/chatgate/internal/rawclient"
	"github.com/chatgate/chatgate/internal/testkit"
	"github.com/chatgate/chatgate/wire"
)

var hostileLong = flag.Bool("hostile.long", false, "run the hostile-client tests at full size (minutes): bigger floods, more sockets and connections")

// hsize is ci normally and long under -hostile.long.
func hsize[T any](ci, long T) T {
	if *hostileLong {
		return long
	}
	return ci
}

// ---- a node as a process, for its memory ----

// hostileStart runs the binary on a fresh data directory with args added
// and kills it when the test ends; its exiting by itself meanwhile is a
// crash.
func hostileStart(t *testing.T, args ...string) *durProc {
	t.Helper()
	return startProc(t, testkit.Binary(t), procSpec{args: args, mustLive: true})
}

// statusKB reads a kB field of /proc/PID/status (VmRSS, VmHWM).
func (p *durProc) statusKB(t testing.TB, field string) int64 {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", p.pid))
	require.NoError(t, err)
	for _, line := range strings.Split(string(b), "\n") {
		if v, ok := strings.CutPrefix(line, field+":"); ok {
			n, err := strconv.ParseInt(strings.TrimSpace(strings.TrimSuffix(strings.TrimSpace(v), "kB")), 10, 64)
			require.NoError(t, err)
			return n
		}
	}
	t.Fatalf("no %s in /proc/%d/status", field, p.pid)
	return 0
}

// alive fails the test if the node has exited (crashed).
func (p *durProc) alive(t testing.TB) {
	t.Helper()
	select {
	case <-p.exited:
		t.Fatal("chatgate exited")
	default:
	}
}

// hmem follows a process's resident memory during an attack: its peak is
// the kernel's high-water mark, reset at the start, and the highest of the
// samples taken every 10 ms in case the reset is not allowed.
type hmem struct {
	p       *durProc
	base    int64
	stop    chan struct{}
	done    chan struct{}
	peak    atomic.Int64
	cleared bool
}

func hostileWatchMem(t testing.TB, p *durProc) *hmem {
	m := &hmem{p: p, base: p.statusKB(t, "VmRSS"), stop: make(chan struct{}), done: make(chan struct{})}
	m.cleared = os.WriteFile(fmt.Sprintf("/proc/%d/clear_refs", p.pid), []byte("5"), 0) == nil
	m.peak.Store(m.base)
	go func() {
		defer close(m.done)
		tk := time.NewTicker(10 * time.Millisecond)
		defer tk.Stop()
		for {
			select {
			case <-m.stop:
				return
			case <-tk.C:
			}
			b, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", p.pid))
			if err != nil {
				return
			}
			for _, line := range strings.Split(string(b), "\n") {
				if v, ok := strings.CutPrefix(line, "VmRSS:"); ok {
					n, _ := strconv.ParseInt(strings.TrimSpace(strings.TrimSuffix(strings.TrimSpace(v), "kB")), 10, 64)
					if n > m.peak.Load() {
						m.peak.Store(n)
					}
				}
			}
		}
	}()
	return m
}

// end stops watching and returns the baseline and the peak, in MiB.
func (m *hmem) end(t testing.TB) (base, peak float64) {
	close(m.stop)
	<-m.done
	pk := m.peak.Load()
	if m.cleared {
		pk = max(pk, m.p.statusKB(t, "VmHWM"))
	}
	return float64(m.base) / 1024, float64(pk) / 1024
}

// metric reads one series of the node's GET /metrics ("name" or
// `name{label="value"}`); 0 when it is absent.
func (p *durProc) metric(t testing.TB, series string) float64 {
	t.Helper()
	resp, err := http.Get(p.base + "/metrics")
	require.NoError(t, err)
	defer resp.Body.Close()
	require.Equal(t, http.StatusOK, resp.StatusCode, "GET /metrics")
	sc := bufio.NewScanner(resp.Body)
	for sc.Scan() {
		if v, ok := strings.CutPrefix(sc.Text(), series+" "); ok {
			f, err := strconv.ParseFloat(v, 64)
			require.NoError(t, err)
			return f
		}
	}
	return 0
}

// ---- raw WebSocket ----

// hostileDialWS is rawclient.DialWS on the test's goroutine: a failure
// fails the test, and the socket is closed when the test ends.
func hostileDialWS(t testing.TB, addr, token string, dial func(string, string) (net.Conn, error)) *rawclient.WS {
	t.Helper()
	w, err := rawclient.DialWS(addr, token, dial)
	require.NoError(t, err)
	t.Cleanup(func() { w.Conn.Close() })
	return w
}

// ---- a bystander: a normal user whose messages are timed ----

// hbystander sends to another user at a person's pace over HTTP and receives
// over a realtime connection, timing each message from send to delivery.
type hbystander struct {
	t    *testing.T
	from *client.Client
	conn *client.Conn
	to   string

	mu      sync.Mutex
	sentAt  map[string]time.Time
	lat     []time.Duration
	got     map[string]bool
	arrived chan struct{}
}

func hostileBystander(t *testing.T, base, transport string) *hbystander {
	t.Helper()
	us := testkit.SignupMany(t, base, "bys", 2)
	b := &hbystander{t: t, to: us[1].ID, sentAt: map[string]time.Time{}, got: map[string]bool{}, arrived: make(chan struct{}, 1)}
	b.from = client.New(base, client.WithToken(us[0].Token, us[0].ID))
	rc := client.New(base, client.WithToken(us[1].Token, us[1].ID))
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	conn, err := rc.Connect(ctx, client.ConnectOptions{Transports: []string{transport}, OnEvent: func(e client.Event) {
		if e.Type != client.EventMessage {
			return
		}
		b.mu.Lock()
		if at, ok := b.sentAt[e.Message.ClientMsgID]; ok && !b.got[e.Message.ClientMsgID] {
			b.got[e.Message.ClientMsgID] = true
			b.lat = append(b.lat, time.Since(at))
		}
		b.mu.Unlock()
		select {
		case b.arrived <- struct{}{}:
		default:
		}
	}})
	require.NoError(t, err)
	b.conn = conn
	t.Cleanup(func() { conn.Close() })
	return b
}

// run sends one message every interval until ctx ends, then waits for all
// of them, and returns the latencies of that run.
func (b *hbystander) run(ctx context.Context, interval time.Duration) ([]time.Duration, error) {
	b.mu.Lock()
	from := len(b.lat)
	b.mu.Unlock()
	sent := 0
	for ctx.Err() == nil {
		id := client.NewClientMsgID()
		b.mu.Lock()
		b.sentAt[id] = time.Now()
		b.mu.Unlock()
		sctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		_, err := b.from.Send(sctx, client.SendInput{To: b.to, Content: "hello from a bystander", ClientMsgID: id})
		cancel()
		if err != nil {
			return nil, fmt.Errorf("bystander send: %w", err)
		}
		sent++
		select {
		case <-ctx.Done():
		case <-time.After(interval): // a person's pace
		}
	}
	deadline := time.After(30 * time.Second)
	for {
		b.mu.Lock()
		n := len(b.lat) - from
		out := slices.Clone(b.lat[from:])
		b.mu.Unlock()
		if n >= sent {
			return out, nil
		}
		select {
		case <-b.arrived:
		case <-deadline:
			return out, fmt.Errorf("bystander: %d of %d messages delivered within 30 s", n, sent)
		}
	}
}

func hostilePct(ds []time.Duration, p float64) time.Duration {
	if len(ds) == 0 {
		return 0
	}
	s := slices.Clone(ds)
	slices.Sort(s)
	return s[min(len(s)-1, int(float64(len(s))*p))]
}

func hostileLat(ds []time.Duration) string {
	return fmt.Sprintf("p50 %.2f ms, p99 %.2f ms, max %.2f ms (%d messages)",
		float64(hostilePct(ds, 0.5).Microseconds())/1000, float64(hostilePct(ds, 0.99).Microseconds())/1000,
		float64(hostilePct(ds, 1).Microseconds())/1000, len(ds))
}

// during runs attack while the bystander chats, after a quiet run for
// comparison, and logs both.
func (b *hbystander) during(name string, quiet time.Duration, attack func(ctx context.Context)) {
	t := b.t
	t.Helper()
	qctx, qcancel := context.WithTimeout(context.Background(), quiet)
	before, err := b.run(qctx, 10*time.Millisecond)
	qcancel()
	require.NoError(t, err)
	actx, acancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { defer close(done); attack(actx) }()
	var dur []time.Duration
	bdone := make(chan error, 1)
	go func() {
		var err error
		dur, err = b.run(actx, 10*time.Millisecond)
		bdone <- err
	}()
	<-done
	acancel()
	require.NoError(t, <-bdone)
	t.Logf("%s: bystander before: %s; during: %s", name, hostileLat(before), hostileLat(dur))
}

// hostileUserID parses a testkit user id.
func hostileUserID(t testing.TB, s string) core.ID {
	id, err := core.ParseID(s)
	require.NoError(t, err)
	return id
}

// ---- 1. bodies of any size ----

// TestHostileHugeBodies: 100 MB bodies and endless chunked ones, several at
// once, to a send and to signup are answered 413 body_too_large as soon as
// the cap is passed; the server reads only a few MiB of each (no 100 MB
// buffered anywhere), its memory stays within 64 MiB of where it was, and
// a bystander's messages keep flowing.
func TestHostileHugeBodies(t *testing.T) {
	p := hostileStart(t)
	u := testkit.Signup(t, p.base, "body")
	by := hostileBystander(t, p.base, client.TransportWebSocket)
	type attack struct {
		name, path, token string
		size              int64
		status            int
		code              string
	}
	attacks := []attack{
		{"100 MB to POST /v1/messages", "/v1/messages", u.Token, 100 << 20, http.StatusRequestEntityTooLarge, "body_too_large"},
		{"100 MB to POST /v1/auth/signup", "/v1/auth/signup", "", 100 << 20, http.StatusRequestEntityTooLarge, "body_too_large"},
		{"endless chunked body to POST /v1/messages", "/v1/messages", u.Token, 0, http.StatusRequestEntityTooLarge, "body_too_large"},
		{"endless chunked body to POST /v1/auth/signup", "/v1/auth/signup", "", 0, http.StatusRequestEntityTooLarge, "body_too_large"},
		// Refused before the body is looked at.
		{"100 MB to POST /v1/messages without a token", "/v1/messages", "", 100 << 20, http.StatusUnauthorized, "unauthorized"},
	}
	parallel := hsize(2, 16)
	first, rest := rawclient.EndlessJSON()
	mem := hostileWatchMem(t, p)
	var mu sync.Mutex
	results := map[string][]rawclient.BodyResult{}
	by.during("huge bodies", time.Second, func(ctx context.Context) {
		var wg sync.WaitGroup
		for _, a := range attacks {
			for range parallel {
				wg.Add(1)
				go func() {
					defer wg.Done()
					r, err := rawclient.PostBody(p.addr, a.path, a.token, a.size, first, rest)
					if err != nil {
						t.Errorf("%s: %v", a.name, err)
						return
					}
					mu.Lock()
					results[a.name] = append(results[a.name], r)
					mu.Unlock()
				}()
			}
		}
		wg.Wait()
	})
	base, peak := mem.end(t)
	p.alive(t)
	for _, a := range attacks {
		rs := results[a.name]
		require.Len(t, rs, parallel, a.name)
		var maxW int64
		var maxA, maxC time.Duration
		for _, r := range rs {
			require.Equal(t, a.status, r.Status, a.name)
			require.Equal(t, a.code, r.Code, a.name)
			// Every byte past the cap that the client got to write sat in
			// socket buffers, never in the server's memory; 48 MiB leaves
			// room for any loopback autotuning and is still half of 100 MB.
			require.Less(t, r.Written, int64(48<<20), "%s: the server took %d bytes", a.name, r.Written)
			maxW, maxA, maxC = max(maxW, r.Written), max(maxA, r.Answer), max(maxC, r.Cut)
		}
		t.Logf("%s ×%d: answered %d %s within %v; the client wrote at most %.1f MiB before the server closed (%v)",
			a.name, parallel, a.status, a.code, maxA.Round(time.Millisecond), float64(maxW)/(1<<20), maxC.Round(time.Millisecond))
	}
	t.Logf("server RSS: %.1f MiB before, peak %.1f MiB during %d concurrent huge bodies", base, peak, parallel*len(attacks))
	require.Less(t, peak-base, 64.0, "server RSS grew by %.1f MiB", peak-base)
	r := u.Do("GET", "/v1/me", nil)
	require.Equal(t, http.StatusOK, r.Status)
}

// ---- 2. WebSocket frames ----

// TestHostileWebSocketFrames: a frame longer than the read limit, a
// message whose fragments add up past it, and an endless stream of
// continuation frames are each answered with close code 1009 (message too
// big) before the server has buffered more than the limit; a message that
// never ends in empty fragments is cut by the read deadline. The node
// keeps serving and its stream count returns to zero.
func TestHostileWebSocketFrames(t *testing.T) {
	n := testkit.Start(t, testkit.WithStreamTimeouts(time.Second, 2*time.Second)) // pong wait 2 s
	u := testkit.Signup(t, n.URL(), "frames")
	limit := uint64(wire.MaxBodyBytes)

	expect1009 := func(t *testing.T, w *rawclient.WS) {
		t.Helper()
		code, _, err := w.CloseCode(10 * time.Second)
		require.NoError(t, err, "no close frame")
		require.Equal(t, 1009, code)
		require.NoError(t, rawclient.WaitClosed(w.Conn, w.Reader, 10*time.Second))
	}
	t.Run("frame over the limit", func(t *testing.T) {
		for _, c := range []struct {
			op byte
			n  uint64
		}{{rawclient.OpText, limit + 1}, {rawclient.OpBinary, limit + 1}, {rawclient.OpText, 1<<63 - 1}} {
			w := hostileDialWS(t, n.Addr(), u.Token, nil)
			_, err := w.Conn.Write(rawclient.FrameHeader(true, c.op, c.n)) // the header alone: the server must not wait for the payload
			require.NoError(t, err)
			expect1009(t, w)
		}
	})
	t.Run("fragments adding up past the limit", func(t *testing.T) {
		w := hostileDialWS(t, n.Addr(), u.Token, nil)
		piece := bytes.Repeat([]byte("a"), 64<<10)
		op, sent := rawclient.OpText, uint64(0)
		for sent+uint64(len(piece)) <= limit {
			require.NoError(t, w.WriteFrame(false, op, piece))
			op, sent = rawclient.OpCont, sent+uint64(len(piece))
		}
		// Each fragment is within the limit; this one's header takes the
		// message past it.
		_, err := w.Conn.Write(rawclient.FrameHeader(false, rawclient.OpCont, uint64(len(piece))))
		require.NoError(t, err)
		expect1009(t, w)
	})
	t.Run("endless continuation frames", func(t *testing.T) {
		w := hostileDialWS(t, n.Addr(), u.Token, nil)
		var written atomic.Int64
		go func() {
			piece := bytes.Repeat([]byte("a"), 1<<10)
			op := rawclient.OpText
			for w.WriteFrame(false, op, piece) == nil {
				op = rawclient.OpCont
				written.Add(int64(len(piece)))
			}
		}()
		expect1009(t, w)
		t.Logf("the client wrote %.2f MiB of one message before the close (limit %.2f MiB)", float64(written.Load())/(1<<20), float64(limit)/(1<<20))
	})
	t.Run("endless empty fragments", func(t *testing.T) {
		// Empty fragments never reach the size limit; the read deadline
		// (pong wait) ends a message that takes longer than it.
		w := hostileDialWS(t, n.Addr(), u.Token, nil)
		go func() {
			op := rawclient.OpText
			for w.WriteFrame(false, op, nil) == nil {
				op = rawclient.OpCont
			}
		}()
		start := time.Now()
		require.NoError(t, rawclient.WaitClosed(w.Conn, w.Reader, 20*time.Second))
		t.Logf("cut after %v", time.Since(start).Round(time.Millisecond))
	})
	t.Run("endless empty fragments answering pings", func(t *testing.T) {
		// Pongs move the read deadline: a client that keeps answering
		// could keep one message open for ever in empty fragments, which
		// no size or frame limit counts, making the server parse frames
		// as fast as it can send them. A message must end within the read
		// deadline whatever pongs come meanwhile. Text messages are read
		// by the transport, binary ones skipped: both are checked.
		for _, first := range []byte{rawclient.OpText, rawclient.OpBinary} {
			w := hostileDialWS(t, n.Addr(), u.Token, nil)
			go func() {
				op := first
				for i := 0; ; i++ {
					var err error
					if i%64 == 63 {
						err = w.WriteFrame(true, rawclient.OpPong, nil)
					} else {
						err = w.WriteFrame(false, op, nil)
						op = rawclient.OpCont
					}
					if err != nil {
						return
					}
				}
			}()
			start := time.Now()
			err := rawclient.WaitClosed(w.Conn, w.Reader, 20*time.Second)
			require.NoError(t, err, "a message (opcode %d) of endless empty fragments with pongs between them was not ended", first)
			t.Logf("opcode %d: cut after %v", first, time.Since(start).Round(time.Millisecond))
		}
	})
	require.Eventually(t, func() bool { return n.Service().Stats().Streams == 0 }, 10*time.Second, 10*time.Millisecond)
	r := u.Do("GET", "/v1/me", nil)
	require.Equal(t, http.StatusOK, r.Status)
}

// ---- 4. held long polls that vanish ----

// TestHostileVanishingLongPolls: users each holding as many long polls
// (wait=60) as they may, whose TCP connections are then closed by the
// client: the server releases every one at once (not when the wait ends),
// its goroutines return to where they were, and each user's accounting
// returns to zero: no poll in progress, every connection slot free again,
// offline after the offline window, no mailbox left.
func TestHostileVanishingLongPolls(t *testing.T) {
	n := testkit.Start(t, testkit.WithOfflineAfter(time.Second))
	perUser := core.DefaultLimits().ConnsPerUser
	users := testkit.SignupMany(t, n.URL(), "vanish", hsize(1, 16))
	svc := n.Service()
	for _, u := range users {
		require.Eventually(t, func() bool { return !svc.Presence().Online(hostileUserID(t, u.ID)) }, 10*time.Second, 10*time.Millisecond)
	}
	require.Eventually(t, func() bool { return svc.Stats().Mailboxes == 0 }, 10*time.Second, 10*time.Millisecond)
	settle := func() int {
		// The count of a quiet process: the lowest of a few readings.
		low := runtime.NumGoroutine()
		for range 10 {
			time.Sleep(10 * time.Millisecond) // sampling, not synchronising
			low = min(low, runtime.NumGoroutine())
		}
		return low
	}
	before := settle()
	hold := func(u *testkit.Client) net.Conn {
		c, err := net.Dial("tcp", n.Addr())
		require.NoError(t, err)
		t.Cleanup(func() { c.Close() })
		_, err = fmt.Fprintf(c, "GET /v1/longpoll?cursor=0&wait=60 HTTP/1.1\r\nHost: %s\r\nAuthorization: Bearer %s\r\n\r\n", n.Addr(), u.Token)
		require.NoError(t, err)
		return c
	}
	var conns []net.Conn
	for _, u := range users {
		for range perUser {
			conns = append(conns, hold(u))
		}
	}
	k := len(conns)
	require.Eventually(t, func() bool { return svc.Stats().Polls == int64(k) }, 30*time.Second, 10*time.Millisecond,
		"polls held: %d of %d", svc.Stats().Polls, k)
	held := runtime.NumGoroutine()
	for _, u := range users {
		require.True(t, svc.Presence().Online(hostileUserID(t, u.ID)), "a device holding a long poll is online")
	}
	// One more is refused: the user's connections are all in use.
	r := users[0].Do("GET", "/v1/longpoll?cursor=0&wait=1", nil)
	require.Equal(t, http.StatusTooManyRequests, r.Status, "%s", r.Body)
	require.Equal(t, "too_many_connections", r.ErrorCode())

	start := time.Now()
	for _, c := range conns {
		require.NoError(t, c.Close())
	}
	require.Eventually(t, func() bool { return svc.Stats().Polls == 0 }, 10*time.Second, 5*time.Millisecond,
		"polls still held: %d", svc.Stats().Polls)
	released := time.Since(start)
	require.Eventually(t, func() bool { return runtime.NumGoroutine() <= before+2 }, 10*time.Second, 10*time.Millisecond,
		"goroutines: %d before, %d now", before, runtime.NumGoroutine())
	// Every slot is free again: the user may hold as many as before.
	conns = conns[:0]
	for range perUser {
		conns = append(conns, hold(users[0]))
	}
	require.Eventually(t, func() bool { return svc.Stats().Polls == int64(perUser) }, 30*time.Second, 10*time.Millisecond,
		"after the vanish, polls held: %d of %d", svc.Stats().Polls, perUser)
	for _, c := range conns {
		require.NoError(t, c.Close())
	}
	require.Eventually(t, func() bool { return svc.Stats().Polls == 0 }, 10*time.Second, 5*time.Millisecond)
	for _, u := range users {
		require.Eventually(t, func() bool { return !svc.Presence().Online(hostileUserID(t, u.ID)) }, 10*time.Second, 10*time.Millisecond, "still online")
	}
	require.Eventually(t, func() bool { return svc.Stats().Mailboxes == 0 }, 10*time.Second, 10*time.Millisecond, "mailbox kept")
	t.Logf("%d long polls held (%d users × %d): %d goroutines (%d before); all released %v after their connections closed",
		k, len(users), perUser, held, before, released.Round(time.Millisecond))
}

// ---- 5. slowloris ----

// TestHostileSlowloris: connections that send their request headers one
// byte at a time are closed by the header read timeout, every one of
// them and none before it, while a bystander's messages keep flowing and
// the server's memory stays bounded.
func TestHostileSlowloris(t *testing.T) {
	readHeaderTimeout := 2 * time.Second
	p := hostileStart(t, "-read-header-timeout", readHeaderTimeout.String())
	by := hostileBystander(t, p.base, client.TransportSSE)
	k := hsize(200, 900) // under the 1000 connections per address
	mem := hostileWatchMem(t, p)
	var closedAt []time.Duration
	by.during("slowloris", time.Second, func(ctx context.Context) {
		start := time.Now()
		conns := make([]net.Conn, k)
		ends := make(chan time.Duration, k)
		for i := range conns {
			c, err := net.Dial("tcp", p.addr)
			if err != nil {
				t.Errorf("dial %d: %v", i, err)
				return
			}
			defer c.Close()
			conns[i] = c
			_, _ = io.WriteString(c, "GET /v1/me HTTP/1.1\r\nHost: x\r\nX-Slow: ")
			go func() {
				_, _ = io.Copy(io.Discard, c) // until the server closes
				ends <- time.Since(start)
			}()
		}
		// One byte per connection every 250 ms, until each is closed.
		stopTrickle := make(chan struct{})
		defer close(stopTrickle)
		go func() {
			tk := time.NewTicker(250 * time.Millisecond)
			defer tk.Stop()
			for {
				select {
				case <-stopTrickle:
					return
				case <-tk.C:
				}
				for _, c := range conns {
					_ = c.SetWriteDeadline(time.Now().Add(100 * time.Millisecond))
					_, _ = c.Write([]byte("a"))
				}
			}
		}()
		deadline := time.After(3*readHeaderTimeout + 10*time.Second)
		for range k {
			select {
			case d := <-ends:
				closedAt = append(closedAt, d)
			case <-deadline:
				return
			}
		}
	})
	base, peak := mem.end(t)
	p.alive(t)
	require.Len(t, closedAt, k, "connections still open after %v", 3*readHeaderTimeout+10*time.Second)
	slices.Sort(closedAt)
	t.Logf("%d slowloris connections closed by the server after %v to %v (read-header timeout %v); server RSS %.1f MiB before, peak %.1f MiB",
		k, closedAt[0].Round(time.Millisecond), closedAt[len(closedAt)-1].Round(time.Millisecond), readHeaderTimeout, base, peak)
	require.GreaterOrEqual(t, closedAt[0], readHeaderTimeout-500*time.Millisecond, "closed before the header timeout: by what?")
	require.Less(t, peak-base, 64.0)
}

// TestHostileTrickledBody: request bodies sent a byte at a time, once the
// headers are in (the read-header timeout is over). The server must give
// up on them within a bounded time, to a route that reads its body (a
// send) and to one that does not (GET /healthz: net/http reads up to
// 256 KiB of an unread body away before it answers, with no deadline of
// its own). Otherwise each holds a connection and its goroutine for as
// long as the client keeps trickling, with no timeout at all.
func TestHostileTrickledBody(t *testing.T) {
	bound, args := 12*time.Second, []string{"-read-timeout", "2s"}
	p := hostileStart(t, args...)
	u := testkit.Signup(t, p.base, "trickle")
	u.HTTP.CloseIdleConnections()
	k := hsize(20, 500)
	g0 := p.metric(t, "go_goroutines")
	type trickler struct {
		what string
		c    net.Conn
		end  chan time.Duration
	}
	var ts []*trickler
	start := time.Now()
	for i := range 2 * k {
		c, err := net.Dial("tcp", p.addr)
		require.NoError(t, err)
		t.Cleanup(func() { c.Close() })
		tr := &trickler{what: "GET /healthz", c: c, end: make(chan time.Duration, 1)}
		req := "GET /healthz HTTP/1.1\r\nHost: x\r\nContent-Length: 200000\r\n\r\n"
		if i%2 == 1 {
			tr.what = "POST /v1/messages"
			req = fmt.Sprintf("POST /v1/messages HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer %s\r\nContent-Type: application/json\r\nContent-Length: 200000\r\n\r\n{", u.Token)
		}
		_, err = io.WriteString(c, req)
		require.NoError(t, err)
		go func() {
			_, _ = io.Copy(io.Discard, c) // whatever the server answers, until it closes
			tr.end <- time.Since(start)
		}()
		ts = append(ts, tr)
	}
	stop := make(chan struct{})
	defer close(stop)
	go func() {
		tk := time.NewTicker(500 * time.Millisecond)
		defer tk.Stop()
		for {
			select {
			case <-stop:
				return
			case <-tk.C:
			}
			for _, tr := range ts {
				_ = tr.c.SetWriteDeadline(time.Now().Add(100 * time.Millisecond))
				_, _ = tr.c.Write([]byte("a"))
			}
		}
	}()
	time.Sleep(time.Second) // the server has read every header
	held := p.metric(t, "go_goroutines")
	deadline := start.Add(bound)
	open := map[string]int{}
	var last time.Duration
	for _, tr := range ts {
		select {
		case d := <-tr.end:
			last = max(last, d)
			continue
		case <-time.After(time.Until(deadline)):
		}
		select {
		case d := <-tr.end: // both were ready
			last = max(last, d)
		default:
			open[tr.what]++
		}
	}
	p.alive(t)
	t.Logf("%d trickled bodies: %v goroutines while held (%v before); cut within %v; still open after %v: %v",
		2*k, held, g0, last.Round(time.Millisecond), bound, open)
	require.Empty(t, open, "trickled bodies hold their connections with no timeout")
}

// ---- 3. readers that never read ----

// hostileLogin logs c's user in again: a new device with its own token.
func hostileLogin(t *testing.T, base string, c *testkit.Client) *testkit.Client {
	t.Helper()
	d := testkit.NewClient(t, base)
	r := d.Do("POST", "/v1/auth/login", map[string]any{"username": c.User["username"], "password": "correct horse"})
	require.Equal(t, http.StatusOK, r.Status, "login: %s", r.Body)
	d.Token, d.User, d.ID = r.JSON()["token"].(string), c.User, c.ID
	return d
}

// TestHostileNeverReading: a user's SSE streams and WebSockets that never
// read, and ones that read a byte a second, while the user receives a
// flood of messages. The server cuts every one of them (slow consumer or
// write timeout: their bounded queues fill), its memory stays bounded,
// the same user's normal device receives every message, and so does a
// bystander, whose latency is logged.
func TestHostileNeverReading(t *testing.T) {
	p := hostileStart(t, "-limit-send", "off") // the flood is the point here, not the send limit
	senders := testkit.SignupMany(t, p.base, "flood", 4)
	victim := testkit.Signup(t, p.base, "victim")
	normal := hostileLogin(t, p.base, victim)
	by := hostileBystander(t, p.base, client.TransportWebSocket)
	msgs, size := hsize(4000, 20000), hsize(1000, 16000)
	hostile := hsize(2, 15) // of each kind; 4×15 and the normal device are under 64 per user

	// The victim's normal device counts the flood's messages.
	var mu sync.Mutex
	got := map[string]bool{}
	reconnects := 0
	nc := client.New(p.base, client.WithToken(normal.Token, normal.ID))
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	conn, err := nc.Connect(ctx, client.ConnectOptions{
		Transports: []string{client.TransportWebSocket},
		OnEvent: func(e client.Event) {
			if e.Type == client.EventMessage && strings.HasPrefix(e.Message.ClientMsgID, "flood-") {
				mu.Lock()
				got[e.Message.ClientMsgID] = true
				mu.Unlock()
			}
		},
		OnState: func(s client.State) {
			if !s.Connected {
				mu.Lock()
				reconnects++
				mu.Unlock()
			}
		},
	})
	cancel()
	require.NoError(t, err)
	t.Cleanup(func() { conn.Close() })

	// The victim's hostile connections.
	type hconn struct {
		kind string
		c    net.Conn
		r    io.Reader
		slow bool // reads a byte a second
	}
	var hs []*hconn
	for i := range 2 * hostile {
		slow := i >= hostile
		// SSE, not reading even the response headers.
		c, err := rawclient.DialSmallWindow("tcp", p.addr)
		require.NoError(t, err)
		t.Cleanup(func() { c.Close() })
		_, err = fmt.Fprintf(c, "GET /v1/sse HTTP/1.1\r\nHost: %s\r\nAuthorization: Bearer %s\r\n\r\n", p.addr, victim.Token)
		require.NoError(t, err)
		hs = append(hs, &hconn{kind: "sse", c: c, r: c, slow: slow})
		w := hostileDialWS(t, p.addr, victim.Token, rawclient.DialSmallWindow)
		hs = append(hs, &hconn{kind: "websocket", c: w.Conn, r: w.Reader, slow: slow})
	}
	stopSlow := make(chan struct{})
	var slowWG sync.WaitGroup
	for _, h := range hs {
		if h.slow {
			slowWG.Add(1)
			go func() {
				defer slowWG.Done()
				var b [1]byte
				tk := time.NewTicker(time.Second)
				defer tk.Stop()
				for {
					select {
					case <-stopSlow:
						return
					case <-tk.C:
					}
					_ = h.c.SetReadDeadline(time.Now().Add(time.Second))
					if _, err := h.r.Read(b[:]); err != nil && !errors.Is(err, os.ErrDeadlineExceeded) {
						return
					}
				}
			}()
		}
	}

	mem := hostileWatchMem(t, p)
	content := strings.Repeat("x", size)
	var floodErr atomic.Value
	var flooded time.Duration
	by.during("never-reading clients", time.Second, func(context.Context) {
		start := time.Now()
		var wg sync.WaitGroup
		var next atomic.Int64
		for i := range 16 {
			wg.Add(1)
			go func() {
				defer wg.Done()
				s := senders[i%len(senders)]
				for {
					k := next.Add(1)
					if k > int64(msgs) {
						return
					}
					r, err := s.TryDo("POST", "/v1/messages", map[string]any{"to": victim.ID, "content": content, "client_msg_id": fmt.Sprintf("flood-%d", k)})
					if err == nil && r.Status != http.StatusCreated {
						err = fmt.Errorf("send: %d %s", r.Status, r.Body)
					}
					if err != nil {
						floodErr.CompareAndSwap(nil, err)
						return
					}
				}
			}()
		}
		wg.Wait()
		flooded = time.Since(start)
		// The normal device receives everything.
		deadline := time.Now().Add(60 * time.Second)
		for time.Now().Before(deadline) {
			mu.Lock()
			n := len(got)
			mu.Unlock()
			if n == msgs {
				break
			}
			time.Sleep(10 * time.Millisecond) // polling for delivery
		}
	})
	if err, _ := floodErr.Load().(error); err != nil {
		t.Fatal(err)
	}
	mu.Lock()
	require.Len(t, got, msgs, "the victim's normal device missed messages")
	t.Logf("flood: %d messages of %d bytes in %v; the normal device got all of them (%d reconnects)", msgs, size, flooded.Round(time.Millisecond), reconnects)
	mu.Unlock()

	// Every hostile connection has been cut (or is within the write
	// timeout of being cut): reading it now finds its end.
	close(stopSlow)
	slowWG.Wait()
	for _, h := range hs {
		require.NoError(t, rawclient.WaitClosed(h.c, h.r, 30*time.Second), "a %s client that does not read (slow %v) was not cut", h.kind, h.slow)
	}
	// The server's accounting agrees: the streams left are the normal
	// device's and the bystander's WebSockets.
	require.Eventually(t, func() bool {
		return p.metric(t, `chatgate_connections{transport="sse"}`) == 0 && p.metric(t, `chatgate_connections{transport="websocket"}`) == 2
	}, 10*time.Second, 20*time.Millisecond, "connections: sse %v, websocket %v", p.metric(t, `chatgate_connections{transport="sse"}`), p.metric(t, `chatgate_connections{transport="websocket"}`))
	t.Logf("slow consumers cut: %v; goroutines now %v", p.metric(t, "chatgate_slow_consumers_total"), p.metric(t, "go_goroutines"))
	base, peak := mem.end(t)
	p.alive(t)
	t.Logf("server RSS %.1f MiB before, peak %.1f MiB with %d never-reading and %d byte-a-second connections", base, peak, hostile*2, hostile*2)
	require.Less(t, peak-base, hsize(64.0, 256.0))
}

// TestHostileNeverReadingResponses: plain answers too big for the socket
// buffers (a page of history: up to 200 messages of up to 100,000
// characters each) requested by clients that never read them. The server
// must give up on such a client within a bounded time, releasing the
// goroutine and the answer it was writing, and must not hold much memory
// for it meanwhile: otherwise every such request keeps its whole answer
// in memory for ever, and a few dozen of them (one user, well under every
// connection limit) exhaust the node's memory. The server's goroutines and
// heap are read from its GET /metrics while the clients still do not read
// (a cut connection's FIN waits behind the unread bytes, so the client
// could not tell).
func TestHostileNeverReadingResponses(t *testing.T) {
	// pprof's heap?gc=1 forces a collection, so the live heap can be read
	// without the garbage of building the pages.
	dl, err := net.Listen("tcp", "127.0.0.1:0")
	require.NoError(t, err)
	debug := dl.Addr().String()
	dl.Close()
	bound, args := 12*time.Second, []string{"-write-timeout", "2s", "-debug-addr", debug}
	p := hostileStart(t, args...)
	liveHeap := func() float64 {
		t.Helper()
		resp, err := http.Get("http://" + debug + "/debug/pprof/heap?gc=1")
		require.NoError(t, err)
		_, _ = io.Copy(io.Discard, resp.Body)
		resp.Body.Close()
		return p.metric(t, "go_memstats_heap_alloc_bytes")
	}
	us := testkit.SignupMany(t, p.base, "nrr", 2)
	a, b := us[0], us[1]
	msgs, k := hsize(60, 200), hsize(8, 16)
	content := strings.Repeat("x", core.MaxMessageChars)
	var wg sync.WaitGroup
	var next atomic.Int64
	for range 8 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := next.Add(1); i <= int64(msgs); i = next.Add(1) {
				r, err := a.TryDo("POST", "/v1/messages", map[string]any{"to": b.ID, "content": content, "client_msg_id": fmt.Sprintf("big-%d", i)})
				if err == nil && r.Status != http.StatusCreated {
					err = fmt.Errorf("%d %s", r.Status, r.Body)
				}
				if err != nil {
					t.Errorf("send: %v", err)
					return
				}
			}
		}()
	}
	wg.Wait()
	require.False(t, t.Failed())
	r := a.Do("GET", "/v1/conversations", nil)
	require.Equal(t, http.StatusOK, r.Status)
	var convs struct {
		Conversations []struct {
			ID string `json:"id"`
		} `json:"conversations"`
	}
	r.Decode(t, &convs)
	require.Len(t, convs.Conversations, 1)
	path := fmt.Sprintf("/v1/conversations/%s/messages?limit=%d", convs.Conversations[0].ID, msgs)
	a.HTTP.CloseIdleConnections()
	b.HTTP.CloseIdleConnections()

	// What one such answer costs when its client reads it.
	mem := hostileWatchMem(t, p)
	r = a.Do("GET", path, nil)
	require.Equal(t, http.StatusOK, r.Status)
	base, peak := mem.end(t)
	a.HTTP.CloseIdleConnections()
	t.Logf("one history page read normally: %.1f MiB of JSON; server RSS %.1f MiB before, peak %.1f MiB", float64(len(r.Body))/(1<<20), base, peak)

	const heap = "go_memstats_heap_inuse_bytes"
	g0 := p.metric(t, "go_goroutines")
	for range 5 { // the count of a quiet server: the lowest of a few readings
		time.Sleep(100 * time.Millisecond) // sampling, not synchronising
		g0 = min(g0, p.metric(t, "go_goroutines"))
	}
	h0, h0live := p.metric(t, heap), liveHeap()
	mem = hostileWatchMem(t, p)
	start := time.Now()
	for range k {
		c, err := rawclient.DialSmallWindow("tcp", p.addr)
		require.NoError(t, err)
		t.Cleanup(func() { c.Close() })
		_, err = fmt.Fprintf(c, "GET %s HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer %s\r\n\r\n", path, a.Token)
		require.NoError(t, err)
	}
	// Held: a goroutine (or two) per request, the answers in the heap.
	var heldG, heldHeap float64
	require.Eventually(t, func() bool {
		heldG, heldHeap = p.metric(t, "go_goroutines"), max(heldHeap, p.metric(t, heap))
		return heldG >= g0+float64(k)
	}, 10*time.Second, 50*time.Millisecond, "the requests are not being answered: %v goroutines, %v before", heldG, g0)
	time.Sleep(time.Second) // the answers are built and stuck
	heldHeap = max(heldHeap, p.metric(t, heap))
	// Released while the clients still do not read: every handler has
	// returned (it counts its request once its answer is written or its
	// write has timed out). What is left are keep-alive connections
	// waiting for a next request, which the idle timeout ends; a page
	// (at most about 1 MiB) sits in the kernel's socket buffer, not in
	// the server's memory.
	const answered = `chatgate_http_requests_total{code="200",method="GET",route="/v1/conversations/:id/messages"}`
	released := hostileEventually(bound-time.Since(start), func() bool { return p.metric(t, answered) >= float64(k+1) })
	base, peak = mem.end(t)
	p.alive(t)
	t.Logf("%d never-reading history requests (%d messages of %d characters): held %v goroutines (%v before), heap in use %.1f MiB → %.1f MiB; server RSS %.1f MiB → peak %.1f MiB; released: %v after %v",
		k, msgs, core.MaxMessageChars, heldG, g0, h0/(1<<20), heldHeap/(1<<20), base, peak, released, time.Since(start).Round(time.Second))
	require.True(t, released, "answers nobody reads are held for ever: %v of %d answered (no write timeout on plain responses?)", p.metric(t, answered), k+1)
	// What the server keeps for the clients that still do not read: the
	// live heap after a collection (the peak above is mostly the garbage
	// of building the pages, and varies with when the collector runs).
	live := liveHeap()
	t.Logf("live heap after a collection, the clients still not reading: %.1f MiB (%.1f MiB with nobody connected)", live/(1<<20), h0live/(1<<20))
	require.Less(t, (live-h0live)/(1<<20), 16.0, "answers nobody reads hold their whole page in memory")
}

// hostileEventually polls cond every 50 ms for up to d.
func hostileEventually(d time.Duration, cond func() bool) bool {
	deadline := time.Now().Add(d)
	for {
		if cond() {
			return true
		}
		if time.Now().After(deadline) {
			return false
		}
		time.Sleep(50 * time.Millisecond) // polling for a condition
	}
}

// ---- 6. idle sockets by the thousand ----

// TestHostileIdleSockets: one address holds idle keep-alive connections up
// to -max-conns-per-address; every connection past it is answered 429
// too_many_connections with Retry-After and closed, without taking a
// slot; a slot freed is usable again; another address (the bystander's)
// is served throughout; the server's memory per idle socket is logged and
// its total bounded.
func TestHostileIdleSockets(t *testing.T) {
	limit, extra, addrs := hsize(300, 1000), hsize(100, 2000), hsize(1, 10)
	// The attackers come from 127.0.0.2.. (all of 127/8 is loopback on
	// Linux), the bystander from 127.0.0.1.
	ln, err := net.Listen("tcp", "127.0.0.2:0")
	require.NoError(t, err, "this host does not route 127.0.0.2")
	ln.Close()
	p := hostileStart(t, "-max-conns-per-address", strconv.Itoa(limit), "-limit-loopback")
	by := hostileBystander(t, p.base, client.TransportWebSocket) // from 127.0.0.1
	dialFrom := func(a int) (net.Conn, error) {
		d := net.Dialer{LocalAddr: &net.TCPAddr{IP: net.IPv4(127, 0, 0, byte(2+a))}}
		return d.Dial("tcp", p.addr)
	}
	// get sends GET /healthz on c and returns the answer.
	get := func(c net.Conn, br *bufio.Reader) (*http.Response, []byte, error) {
		_ = c.SetDeadline(time.Now().Add(10 * time.Second))
		if _, err := io.WriteString(c, "GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n"); err != nil {
			return nil, nil, err
		}
		resp, err := http.ReadResponse(br, nil)
		if err != nil {
			return nil, nil, err
		}
		body, err := io.ReadAll(resp.Body)
		resp.Body.Close()
		return resp, body, err
	}
	var idle []net.Conn
	t.Cleanup(func() {
		for _, c := range idle {
			c.Close()
		}
	})
	mem := hostileWatchMem(t, p)
	var refused atomic.Int64
	by.during("idle sockets", time.Second, func(context.Context) {
		for a := range addrs {
			for i := range limit {
				c, err := dialFrom(a)
				if err != nil {
					t.Errorf("address %d, connection %d: %v", a, i, err)
					return
				}
				idle = append(idle, c)
				resp, _, err := get(c, bufio.NewReader(c))
				if err != nil || resp.StatusCode != http.StatusOK {
					t.Errorf("address %d, connection %d of %d: %v %v", a, i, limit, resp, err)
					return
				}
				_ = c.SetDeadline(time.Time{})
			}
			for i := range extra {
				c, err := dialFrom(a)
				if err != nil {
					t.Errorf("address %d, connection %d past the limit: %v", a, i, err)
					return
				}
				br := bufio.NewReader(c)
				resp, body, err := get(c, br)
				if err != nil {
					c.Close()
					t.Errorf("address %d, connection %d past the limit: %v", a, i, err)
					return
				}
				if resp.StatusCode != http.StatusTooManyRequests || resp.Header.Get("Retry-After") == "" || rawclient.ErrorCode(body) != "too_many_connections" {
					c.Close()
					t.Errorf("address %d, connection %d past the limit: %d Retry-After %q %s", a, i, resp.StatusCode, resp.Header.Get("Retry-After"), body)
					return
				}
				if err := rawclient.WaitClosed(c, br, 10*time.Second); err != nil {
					t.Errorf("a refused connection: %v", err)
				}
				c.Close()
				refused.Add(1)
			}
		}
		time.Sleep(hsize(time.Second, 10*time.Second)) // held while the bystander chats
	})
	base, peak := mem.end(t)
	p.alive(t)
	require.False(t, t.Failed())
	n := limit * addrs
	t.Logf("%d idle keep-alive sockets from %d address(es), %d more refused with 429: server RSS %.1f MiB before, peak %.1f MiB (%.1f KiB per idle socket)",
		n, addrs, refused.Load(), base, peak, (peak-base)*1024/float64(n))
	require.Less(t, peak-base, hsize(64.0, 512.0))

	// A slot given back is usable again.
	require.NoError(t, idle[0].Close())
	require.Eventually(t, func() bool {
		c, err := dialFrom(0)
		if err != nil {
			return false
		}
		defer c.Close()
		resp, _, err := get(c, bufio.NewReader(c))
		return err == nil && resp.StatusCode == http.StatusOK
	}, 10*time.Second, 10*time.Millisecond, "a closed connection's slot is not given back")
}

// ---- 2b. frame floods ----

// TestHostileFrameFlood: WebSockets of one user flooding tiny frames
// (heartbeats, or pings) past -limit-ws-frames, reconnecting each time they
// are closed, for a while: every socket is closed with 1008 rate_limited,
// a bystander's messages keep flowing, and the server's memory stays
// bounded.
func TestHostileFrameFlood(t *testing.T) {
	p := hostileStart(t) // the default: 1000 frames a second
	u := testkit.Signup(t, p.base, "flood")
	by := hostileBystander(t, p.base, client.TransportWebSocket)
	k, dur := hsize(4, 32), hsize(2*time.Second, 20*time.Second) // sockets at a time: under 64 per user
	var mu sync.Mutex
	closes := map[string]int{}
	var sockets, frames atomic.Int64
	mem := hostileWatchMem(t, p)
	by.during("frame flood", time.Second, func(context.Context) {
		end := time.Now().Add(dur)
		var wg sync.WaitGroup
		for i := range k {
			wg.Add(1)
			go func() {
				defer wg.Done()
				kind := "heartbeat"
				one := append(rawclient.FrameHeader(true, rawclient.OpText, 20), `{"type":"heartbeat"}`...)
				if i%2 == 1 {
					kind, one = "ping", rawclient.FrameHeader(true, rawclient.OpPing, 0)
				}
				batch := bytes.Repeat(one, 64)
				for time.Now().Before(end) {
					w, err := rawclient.DialWS(p.addr, u.Token, nil)
					if err != nil {
						t.Errorf("%s flood: dial: %v", kind, err)
						return
					}
					sockets.Add(1)
					go func() {
						_ = w.Conn.SetWriteDeadline(time.Now().Add(30 * time.Second))
						for {
							if _, err := w.Conn.Write(batch); err != nil {
								return
							}
							frames.Add(64)
						}
					}()
					code, reason, err := w.CloseCode(30 * time.Second)
					w.Conn.Close()
					mu.Lock()
					closes[fmt.Sprintf("%s flood: %d %s %v", kind, code, reason, err)]++
					mu.Unlock()
				}
			}()
		}
		wg.Wait()
	})
	base, peak := mem.end(t)
	p.alive(t)
	t.Logf("%d sockets flooded frames (the clients wrote %d) for %v: server RSS %.1f MiB before, peak %.1f MiB", sockets.Load(), frames.Load(), dur, base, peak)
	for what, n := range closes {
		t.Logf("%s ×%d", what, n)
		require.Regexp(t, `flood: 1008 rate_limited <nil>$`, what, "every socket is closed with 1008 rate_limited")
	}
	require.Less(t, peak-base, 64.0)
}
