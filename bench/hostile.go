package main

// The hostile-client probe (-hostile DURATION): each attack of
// docs/reliability.md runs for DURATION against a fresh node (a child
// process on a fresh data directory) while a bystander, one user sending
// to another at a person's pace over HTTP and receiving over WebSocket, is
// timed before it (for half of DURATION) and during it. It prints a
// markdown table: what the attackers got, the bystander's send and
// delivery latency (p50/p99) before and during, the server's RSS before
// and at its peak, the server's CPU, and its goroutines before, at their
// peak during the attack and 5 s after it (go_goroutines from GET
// /metrics).
//
//	go run ./bench -hostile 10s
//	go run ./bench -hostile 10s -hostile-only slowloris,idle-sockets
//
// The attackers run on the same machine as the node: on 2 cores the
// bystander's latency during an attack is also the attackers' own CPU.

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
	"path/filepath"
	"slices"
	"sort"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/chatgate/chatgate/client"
	"github.com/chatgate/chatgate/internal/rawclient"
)

// hostileConfig is the probe's parameters (-hostile* flags).
type hostileConfig struct {
	dur  time.Duration // each attack's length; 0: the probe is off
	only string        // comma-separated attack names; "": all
}

var hostileCfg hostileConfig

func registerHostileFlags(fs *flag.FlagSet) {
	fs.DurationVar(&hostileCfg.dur, "hostile", 0, "run the hostile-client probe instead: each attack (huge bodies, WebSocket frame floods, readers that never read, slowloris, idle sockets, …) for `DURATION` against a fresh node while a bystander's sends and deliveries are timed; prints a table")
	fs.StringVar(&hostileCfg.only, "hostile-only", "", "hostile probe: run only these attacks (comma-separated names; -hostile-only list names them)")
}

func hostileOn() bool { return hostileCfg.dur > 0 || hostileCfg.only == "list" }

// hstNode is the node under attack.
type hstNode struct {
	base, addr string
	pid        int
	users      []account // the attackers' accounts
}

// hstAttack is one row of the table.
type hstAttack struct {
	name  string
	what  string
	args  []string // node flags beyond the defaults
	users int      // attacker accounts signed up before the run
	prep  func(ctx context.Context, n *hstNode) error
	// run attacks until ctx ends and says what the attackers got.
	run func(ctx context.Context, n *hstNode) string
}

type hstRow struct {
	attack                       hstAttack
	got                          string
	sendBefore, sendDuring       latency
	deliverBefore, deliverDuring latency
	lost                         int
	rssBefore, rssPeak           int64
	cpu                          float64 // server cores used during the attack
	gBefore, gPeak, gAfter       float64 // gPeak: the most seen during the attack
}

func runHostile(ctx context.Context, cfg config, stdout, stderr io.Writer) error {
	attacks := hostileAttacks()
	if hostileCfg.only == "list" {
		for _, a := range attacks {
			fmt.Fprintf(stdout, "%-22s %s\n", a.name, a.what)
		}
		return nil
	}
	if hostileCfg.only != "" {
		want := splitList(hostileCfg.only)
		var sel []hstAttack
		for _, a := range attacks {
			if slices.Contains(want, a.name) {
				sel = append(sel, a)
			}
		}
		if len(sel) != len(want) {
			return fmt.Errorf("-hostile-only %q: unknown attack (-hostile-only list names them)", hostileCfg.only)
		}
		attacks = sel
	}
	if _, err := raiseNoFile(); err != nil {
		return fmt.Errorf("raise open-files limit: %w", err)
	}
	work, err := os.MkdirTemp("", "chatgate-hostile-")
	if err != nil {
		return err
	}
	defer os.RemoveAll(work)
	bin := cfg.chatgateBin
	if bin == "" {
		fmt.Fprintln(stderr, "building chatgate")
		if bin, err = buildChatgate(ctx, work); err != nil {
			return err
		}
	}
	var rows []hstRow
	for i, a := range attacks {
		fmt.Fprintf(stderr, "[%d/%d] %s: %s\n", i+1, len(attacks), a.name, a.what)
		row, err := runHostileAttack(ctx, bin, filepath.Join(work, strconv.Itoa(i)), a, hostileCfg.dur)
		if err != nil {
			return fmt.Errorf("%s: %w", a.name, err)
		}
		fmt.Fprintf(stderr, "    %s\n", row.got)
		rows = append(rows, row)
	}
	fmt.Fprint(stdout, hostileTable(rows, hostileCfg.dur))
	return nil
}

func hostileTable(rows []hstRow, dur time.Duration) string {
	var b strings.Builder
	fmt.Fprintf(&b, "Each attack for %v against a fresh node (defaults unless noted); bystander: one message every 20 ms, sent over HTTP, received over WebSocket.\n\n", dur)
	b.WriteString("| attack | what the attackers got | bystander send p50 / p99, before → during | delivery p50 / p99, before → during | server RSS before → peak | server CPU | goroutines before / peak / 5 s after |\n")
	b.WriteString("|---|---|---|---|---|---:|---|\n")
	lat := func(l latency) string { return fmt.Sprintf("%.2f / %.2f ms", ms(l.p50), ms(l.p99)) }
	for _, r := range rows {
		lost := ""
		if r.lost > 0 {
			lost = fmt.Sprintf(" (**%d not delivered**)", r.lost)
		}
		fmt.Fprintf(&b, "| %s: %s | %s | %s → %s | %s → %s%s | %.0f → %.0f MiB | %.2f cores | %.0f / %.0f / %.0f |\n",
			r.attack.name, r.attack.what, r.got, lat(r.sendBefore), lat(r.sendDuring), lat(r.deliverBefore), lat(r.deliverDuring), lost,
			float64(r.rssBefore)/(1<<20), float64(r.rssPeak)/(1<<20), r.cpu, r.gBefore, r.gPeak, r.gAfter)
	}
	return b.String()
}

func runHostileAttack(ctx context.Context, bin, dir string, a hstAttack, dur time.Duration) (hstRow, error) {
	row := hstRow{attack: a}
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return row, err
	}
	addr, err := freeAddr()
	if err != nil {
		return row, err
	}
	n := &hstNode{base: "http://" + addr, addr: addr}
	args := append([]string{"-addr", addr, "-data", filepath.Join(dir, "data"), "-log-level", "warn"}, a.args...)
	srv, err := startProcess("chatgate", bin, args, n.base, "/healthz", "", filepath.Join(dir, "chatgate.log"))
	if err != nil {
		return row, err
	}
	defer srv.stop()
	n.pid = srv.pid()
	if a.users > 0 {
		if n.users, err = signupUsers(ctx, n.base, fmt.Sprintf("h%d_", time.Now().UnixNano()%1_000_000), a.users, nil); err != nil {
			return row, err
		}
	}
	by, err := newHstBystander(ctx, n.base)
	if err != nil {
		return row, err
	}
	defer by.conn.Close()
	if a.prep != nil {
		if err := a.prep(ctx, n); err != nil {
			return row, err
		}
	}
	qctx, qcancel := context.WithTimeout(ctx, dur/2)
	row.sendBefore, row.deliverBefore, _, err = by.phase(qctx)
	qcancel()
	if err != nil {
		return row, err
	}
	row.gBefore = hstGoroutines(n.base)
	before, err := sampleProc(n.pid)
	if err != nil {
		return row, err
	}
	row.rssBefore = before.rss
	// The high-water mark from here on (if the kernel lets us reset it),
	// and samples in case it does not.
	cleared := os.WriteFile(fmt.Sprintf("/proc/%d/clear_refs", n.pid), []byte("5"), 0) == nil
	var peak atomic.Int64
	peak.Store(before.rss)
	stopSampling := make(chan struct{})
	sampled := make(chan struct{})
	go func() {
		defer close(sampled)
		tk := time.NewTicker(20 * time.Millisecond)
		defer tk.Stop()
		for i := 0; ; i++ {
			select {
			case <-stopSampling:
				return
			case <-tk.C:
			}
			if s, err := sampleProc(n.pid); err == nil && s.rss > peak.Load() {
				peak.Store(s.rss)
			}
			if i%25 == 24 { // every 500 ms
				row.gPeak = max(row.gPeak, hstGoroutines(n.base))
			}
		}
	}()
	actx, acancel := context.WithTimeout(ctx, dur)
	got := make(chan string, 1)
	go func() { got <- a.run(actx, n) }()
	row.sendDuring, row.deliverDuring, row.lost, err = by.phase(actx)
	acancel()
	row.got = <-got
	after, serr := sampleProc(n.pid)
	close(stopSampling)
	<-sampled
	if err != nil {
		return row, err
	}
	if serr != nil {
		return row, fmt.Errorf("the node is gone: %w\n%s", serr, tailFile(filepath.Join(dir, "chatgate.log"), 2000))
	}
	row.cpu = float64(after.cpu-before.cpu) / float64(after.at.Sub(before.at))
	row.rssPeak = peak.Load()
	if cleared {
		row.rssPeak = max(row.rssPeak, after.hwm)
	}
	select {
	case <-ctx.Done():
		return row, ctx.Err()
	case <-time.After(5 * time.Second):
	}
	row.gAfter = hstGoroutines(n.base)
	select {
	case <-srv.exited:
		return row, fmt.Errorf("the node exited during the attack\n%s", tailFile(filepath.Join(dir, "chatgate.log"), 2000))
	default:
	}
	return row, nil
}

// hstGoroutines reads go_goroutines from /metrics (-1 without it).
func hstGoroutines(base string) float64 { return hstMetric(base, "go_goroutines") }

// hstMetric reads one series of /metrics (-1 without it).
func hstMetric(base, series string) float64 {
	hc := &http.Client{Timeout: 10 * time.Second, Transport: &http.Transport{DisableKeepAlives: true}}
	resp, err := hc.Get(base + "/metrics")
	if err != nil {
		return -1
	}
	defer resp.Body.Close()
	sc := bufio.NewScanner(resp.Body)
	for sc.Scan() {
		if v, ok := strings.CutPrefix(sc.Text(), series+" "); ok {
			f, _ := strconv.ParseFloat(v, 64)
			return f
		}
	}
	return -1
}

// ---- the bystander ----

type hstBystander struct {
	from *client.Client
	to   string
	conn *client.Conn

	mu      sync.Mutex
	sentAt  map[string]int64
	deliver []int64
	arrived chan struct{}
}

func newHstBystander(ctx context.Context, base string) (*hstBystander, error) {
	us, err := signupUsers(ctx, base, fmt.Sprintf("b%d_", time.Now().UnixNano()%1_000_000), 2, nil)
	if err != nil {
		return nil, err
	}
	b := &hstBystander{from: client.New(base, client.WithToken(us[0].Token, us[0].ID)), to: us[1].ID,
		sentAt: map[string]int64{}, arrived: make(chan struct{}, 1)}
	cctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	b.conn, err = client.New(base, client.WithToken(us[1].Token, us[1].ID)).Connect(cctx, client.ConnectOptions{
		Transports: []string{client.TransportWebSocket},
		OnEvent: func(e client.Event) {
			if e.Type != client.EventMessage {
				return
			}
			now := nowNanos()
			b.mu.Lock()
			if at, ok := b.sentAt[e.Message.ClientMsgID]; ok {
				delete(b.sentAt, e.Message.ClientMsgID)
				b.deliver = append(b.deliver, now-at)
			}
			b.mu.Unlock()
			select {
			case b.arrived <- struct{}{}:
			default:
			}
		},
	})
	return b, err
}

// phase sends every 20 ms until ctx ends, then waits up to 10 s for the
// deliveries; lost is what never came.
func (b *hstBystander) phase(ctx context.Context) (send, deliver latency, lost int, err error) {
	b.mu.Lock()
	clear(b.sentAt)
	b.deliver = nil
	b.mu.Unlock()
	var sends []int64
	for ctx.Err() == nil {
		id := client.NewClientMsgID()
		t0 := nowNanos()
		b.mu.Lock()
		b.sentAt[id] = t0
		b.mu.Unlock()
		sctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		_, err := b.from.Send(sctx, client.SendInput{To: b.to, Content: "hello from a bystander", ClientMsgID: id})
		cancel()
		if err != nil {
			return send, deliver, 0, fmt.Errorf("bystander send: %w", err)
		}
		sends = append(sends, nowNanos()-t0)
		select {
		case <-ctx.Done():
		case <-time.After(20 * time.Millisecond): // a person's pace, not a load generator's
		}
	}
	deadline := time.After(10 * time.Second)
	for {
		b.mu.Lock()
		pending := len(b.sentAt)
		b.mu.Unlock()
		if pending == 0 {
			break
		}
		select {
		case <-b.arrived:
			continue
		case <-deadline:
		}
		lost = pending
		break
	}
	b.mu.Lock()
	deliver = summarize(slices.Clone(b.deliver))
	b.mu.Unlock()
	return summarize(sends), deliver, lost, nil
}

// ---- what the attackers got ----

// hstTally counts outcomes by name.
type hstTally struct {
	mu sync.Mutex
	m  map[string]int
}

func (t *hstTally) add(what string) {
	t.mu.Lock()
	defer t.mu.Unlock()
	if t.m == nil {
		t.m = map[string]int{}
	}
	t.m[what]++
}

func (t *hstTally) String() string {
	t.mu.Lock()
	defer t.mu.Unlock()
	keys := make([]string, 0, len(t.m))
	for k := range t.m {
		keys = append(keys, k)
	}
	sort.Slice(keys, func(i, j int) bool { return t.m[keys[i]] > t.m[keys[j]] })
	var parts []string
	for _, k := range keys {
		parts = append(parts, fmt.Sprintf("%s ×%d", k, t.m[k]))
	}
	if len(parts) == 0 {
		return "nothing"
	}
	return strings.Join(parts, ", ")
}

// hstWorkers runs f on n goroutines until ctx ends.
func hstWorkers(ctx context.Context, n int, f func(ctx context.Context, i int)) {
	var wg sync.WaitGroup
	for i := range n {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for ctx.Err() == nil {
				f(ctx, i)
			}
		}()
	}
	wg.Wait()
}

// ---- raw WebSocket outcomes ----

// hstClosed says how the server ended w within timeout, for the tally.
func hstClosed(w *rawclient.WS, timeout time.Duration) string {
	code, reason, err := w.CloseCode(timeout)
	var ne net.Error
	switch {
	case errors.As(err, &ne) && ne.Timeout():
		return "still open"
	case err != nil:
		return "closed without a close frame"
	case code == rawclient.NoStatus:
		return "close frame without a code"
	}
	return strings.TrimSpace(fmt.Sprintf("close %d %s", code, reason))
}

// hstFloodWS opens a WebSocket for token, writes first (if any) and then
// batch over and over, all within 30 s, and tallies how the server ended
// it.
func hstFloodWS(t *hstTally, addr, token string, first, batch []byte) {
	w, err := rawclient.DialWS(addr, token, nil)
	if err != nil {
		t.add("dial: " + err.Error())
		return
	}
	defer w.Conn.Close()
	go func() {
		_ = w.Conn.SetWriteDeadline(time.Now().Add(30 * time.Second))
		if len(first) > 0 {
			if _, err := w.Conn.Write(first); err != nil {
				return
			}
		}
		for {
			if _, err := w.Conn.Write(batch); err != nil {
				return
			}
		}
	}()
	t.add(hstClosed(w, 30*time.Second))
}

// ---- the attacks ----

func hostileAttacks() []hstAttack {
	bodies := func(size int64) func(ctx context.Context, n *hstNode) string {
		return func(ctx context.Context, n *hstNode) string {
			var t hstTally
			var most atomic.Int64
			// Every 64 KiB piece is the JSON's opening, the probe's bytes as
			// they have always been: the server answers once past the cap,
			// whatever the body says after its first piece.
			piece, _ := rawclient.EndlessJSON()
			hstWorkers(ctx, 8, func(ctx context.Context, i int) {
				path, token := "/v1/messages", n.users[0].Token
				if i%2 == 1 {
					path, token = "/v1/auth/signup", ""
				}
				r, err := rawclient.PostBody(n.addr, path, token, size, piece, piece)
				if err != nil {
					t.add("error: " + err.Error())
					return
				}
				t.add(fmt.Sprintf("%d %s", r.Status, r.Code))
				if r.Written > most.Load() {
					most.Store(r.Written)
				}
			})
			return fmt.Sprintf("%s; at most %.1f MiB written before the server closed", t.String(), float64(most.Load())/(1<<20))
		}
	}
	return []hstAttack{
		{name: "bodies-100mb", what: "8 clients at a time POST 100 MB bodies (send and signup)", users: 1, run: bodies(100 << 20)},
		{name: "bodies-chunked", what: "8 clients at a time POST endless chunked bodies", users: 1, run: bodies(0)},
		{name: "ws-oversized", what: "8 sockets at a time send one message in 64 KiB fragments that never ends", users: 1,
			run: func(ctx context.Context, n *hstNode) string {
				var t hstTally
				piece := append(rawclient.FrameHeader(false, rawclient.OpCont, 64<<10), bytes.Repeat([]byte("a"), 64<<10)...)
				first := append(rawclient.FrameHeader(false, rawclient.OpText, 64<<10), bytes.Repeat([]byte("a"), 64<<10)...)
				hstWorkers(ctx, 8, func(ctx context.Context, i int) {
					hstFloodWS(&t, n.addr, n.users[0].Token, first, piece)
				})
				return t.String()
			}},
		{name: "ws-frame-flood", what: "8 sockets at a time flood tiny frames (heartbeats, pings), reconnecting", users: 1,
			run: func(ctx context.Context, n *hstNode) string {
				var t hstTally
				heartbeat := bytes.Repeat(append(rawclient.FrameHeader(true, rawclient.OpText, 20), `{"type":"heartbeat"}`...), 64)
				ping := bytes.Repeat(rawclient.FrameHeader(true, rawclient.OpPing, 0), 64)
				hstWorkers(ctx, 8, func(ctx context.Context, i int) {
					batch := heartbeat
					if i%2 == 1 {
						batch = ping
					}
					hstFloodWS(&t, n.addr, n.users[0].Token, nil, batch)
				})
				return t.String()
			}},
		{name: "ws-empty-fragments", what: "8 sockets send one message of endless empty fragments, a pong every 64 frames", users: 1,
			run: func(ctx context.Context, n *hstNode) string {
				var t hstTally
				var frames atomic.Int64
				batch := append(bytes.Repeat(rawclient.FrameHeader(false, rawclient.OpCont, 0), 63), rawclient.FrameHeader(true, rawclient.OpPong, 0)...)
				var wg sync.WaitGroup
				for range 8 {
					wg.Add(1)
					go func() {
						defer wg.Done()
						w, err := rawclient.DialWS(n.addr, n.users[0].Token, nil)
						if err != nil {
							t.add("dial: " + err.Error())
							return
						}
						defer w.Conn.Close()
						go func() {
							if _, err := w.Conn.Write(rawclient.FrameHeader(false, rawclient.OpText, 0)); err != nil {
								return
							}
							for ctx.Err() == nil {
								_ = w.Conn.SetWriteDeadline(time.Now().Add(time.Second))
								if _, err := w.Conn.Write(batch); err != nil {
									var ne net.Error
									if errors.As(err, &ne) && ne.Timeout() {
										continue
									}
									return
								}
								frames.Add(64)
							}
						}()
						start := time.Now()
						dl, _ := ctx.Deadline()
						if rawclient.WaitClosed(w.Conn, w.Reader, time.Until(dl)) == nil {
							t.add(fmt.Sprintf("cut within %v", time.Since(start).Round(time.Second)))
						} else {
							t.add("still open at the end")
						}
					}()
				}
				wg.Wait()
				return fmt.Sprintf("%s; %d frames sent", t.String(), frames.Load())
			}},
		{name: "never-reading", what: "a user's 30 SSE streams and 30 WebSockets never read (half read a byte a second) while 2 users send it 1 KB messages at their send limit", users: 3,
			run: func(ctx context.Context, n *hstNode) string {
				victim := n.users[0]
				var t hstTally
				var sent, refused atomic.Int64
				content := strings.Repeat("x", 1000)
				var wg sync.WaitGroup
				for s := 1; s <= 2; s++ {
					for range 4 {
						wg.Add(1)
						go func() {
							defer wg.Done()
							c := client.New(n.base, client.WithToken(n.users[s].Token, n.users[s].ID))
							defer c.CloseIdleConnections()
							for ctx.Err() == nil {
								err := c.Do(ctx, "POST", "/v1/messages", map[string]any{"to": victim.ID, "content": content, "client_msg_id": client.NewClientMsgID()}, nil)
								var ae *client.APIError
								switch {
								case err == nil:
									sent.Add(1)
								case errors.As(err, &ae) && ae.Status == http.StatusTooManyRequests:
									refused.Add(1)
									time.Sleep(100 * time.Millisecond) // what Retry-After asks, roughly
								}
							}
						}()
					}
				}
				hstWorkers(ctx, 60, func(ctx context.Context, i int) {
					var c net.Conn
					var r io.Reader
					if i%2 == 0 {
						cc, err := rawclient.DialSmallWindow("tcp", n.addr)
						if err != nil {
							t.add("dial: " + err.Error())
							return
						}
						if _, err := fmt.Fprintf(cc, "GET /v1/sse HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer %s\r\n\r\n", victim.Token); err != nil {
							cc.Close()
							return
						}
						c, r = cc, cc
					} else {
						w, err := rawclient.DialWS(n.addr, victim.Token, rawclient.DialSmallWindow)
						if err != nil {
							t.add("dial: " + err.Error())
							time.Sleep(100 * time.Millisecond)
							return
						}
						c, r = w.Conn, w.Reader
					}
					defer c.Close()
					kind := map[bool]string{true: "SSE", false: "WebSocket"}[i%2 == 0]
					if i%4 < 2 {
						// Never reads: whether it was cut is seen once the
						// attack is over.
						<-ctx.Done()
						if rawclient.WaitClosed(c, r, 15*time.Second) == nil {
							t.add(kind + " never reading: cut")
						} else {
							t.add(kind + " never reading: still open 15 s after the flood")
						}
						return
					}
					var b [1]byte
					for ctx.Err() == nil {
						_ = c.SetReadDeadline(time.Now().Add(time.Second))
						if _, err := r.Read(b[:]); err != nil && !errors.Is(err, os.ErrDeadlineExceeded) {
							break
						}
						time.Sleep(time.Second)
					}
					// What the server wrote before it cut the connection is
					// still buffered: read it away to find the end.
					if rawclient.WaitClosed(c, r, 15*time.Second) == nil {
						t.add(kind + " a byte a second: cut")
					} else {
						t.add(kind + " a byte a second: still open 15 s after the flood")
					}
				})
				wg.Wait()
				return fmt.Sprintf("%s; %d messages sent to the victim, %d sends refused 429", t.String(), sent.Load(), refused.Load())
			}},
		{name: "slowloris", what: "900 connections send their headers a byte a second, reconnecting when cut (the read-header timeout is 10 s)",
			run: func(ctx context.Context, n *hstNode) string {
				var t hstTally
				hstWorkers(ctx, 900, func(ctx context.Context, i int) {
					c, err := net.Dial("tcp", n.addr)
					if err != nil {
						t.add("dial: " + err.Error())
						time.Sleep(100 * time.Millisecond)
						return
					}
					defer c.Close()
					start := time.Now()
					if _, err := io.WriteString(c, "GET /v1/me HTTP/1.1\r\nHost: x\r\nX-Slow: "); err != nil {
						return
					}
					gone := make(chan struct{})
					go func() { _, _ = io.Copy(io.Discard, c); close(gone) }()
					tk := time.NewTicker(time.Second)
					defer tk.Stop()
					for {
						select {
						case <-gone:
							t.add(fmt.Sprintf("cut after %ds", int(time.Since(start).Seconds())))
							return
						case <-ctx.Done():
							t.add("open at the end")
							return
						case <-tk.C:
							_ = c.SetWriteDeadline(time.Now().Add(time.Second))
							_, _ = c.Write([]byte("a"))
						}
					}
				})
				return t.String()
			}},
		{name: "idle-sockets", what: "one address (127.0.0.2) holds 1000 idle keep-alive sockets and keeps opening more (-limit-loopback)",
			args: []string{"-limit-loopback"},
			run: func(ctx context.Context, n *hstNode) string {
				var t hstTally
				dial := func() (net.Conn, error) {
					d := net.Dialer{LocalAddr: &net.TCPAddr{IP: net.IPv4(127, 0, 0, 2)}}
					return d.Dial("tcp", n.addr)
				}
				get := func(c net.Conn) string {
					_ = c.SetDeadline(time.Now().Add(10 * time.Second))
					defer c.SetDeadline(time.Time{})
					if _, err := io.WriteString(c, "GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n"); err != nil {
						return "write: " + err.Error()
					}
					resp, err := http.ReadResponse(bufio.NewReader(c), nil)
					if err != nil {
						return "read: " + err.Error()
					}
					body, _ := io.ReadAll(resp.Body)
					resp.Body.Close()
					return strings.TrimSpace(fmt.Sprintf("%d %s", resp.StatusCode, rawclient.ErrorCode(body)))
				}
				var idle []net.Conn
				defer func() {
					for _, c := range idle {
						c.Close()
					}
				}()
				for ctx.Err() == nil {
					c, err := dial()
					if err != nil {
						t.add("dial: " + err.Error())
						time.Sleep(10 * time.Millisecond)
						continue
					}
					got := get(c)
					if got == "200" {
						idle = append(idle, c) // held, idle
						continue
					}
					t.add(got)
					c.Close()
				}
				return fmt.Sprintf("%d sockets held idle; then %s", len(idle), t.String())
			}},
		{name: "vanishing-polls", what: "a user's 64 long polls (wait=60) are held, then their connections closed, over and over", users: 1,
			run: func(ctx context.Context, n *hstNode) string {
				var t hstTally
				u := n.users[0]
				for ctx.Err() == nil {
					var conns []net.Conn
					for range 64 {
						c, err := net.Dial("tcp", n.addr)
						if err != nil {
							t.add("dial: " + err.Error())
							continue
						}
						_, _ = fmt.Fprintf(c, "GET /v1/longpoll?cursor=0&wait=60 HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer %s\r\n\r\n", u.Token)
						conns = append(conns, c)
					}
					select {
					case <-ctx.Done():
					case <-time.After(500 * time.Millisecond): // held
					}
					for _, c := range conns {
						c.Close()
					}
					t.add("64 held and dropped")
					select {
					case <-ctx.Done():
					case <-time.After(100 * time.Millisecond):
					}
				}
				// Every slot is free again.
				c := client.New(n.base, client.WithToken(u.Token, u.ID))
				var out struct{}
				deadline := time.Now().Add(10 * time.Second)
				for {
					err := c.Do(context.Background(), "GET", "/v1/poll", nil, &out)
					if err == nil {
						t.add("then a poll answered 200")
						break
					}
					if time.Now().After(deadline) {
						t.add("then a poll still refused 10 s later: " + err.Error())
						break
					}
					time.Sleep(10 * time.Millisecond)
				}
				return t.String()
			}},
		{name: "never-reading-history", what: "16 connections ask for a page of 50 messages of 100,000 characters and never read it", users: 2,
			prep: func(ctx context.Context, n *hstNode) error {
				a := client.New(n.base, client.WithToken(n.users[0].Token, n.users[0].ID))
				content := strings.Repeat("x", 100_000)
				for i := range 50 {
					if err := a.Do(ctx, "POST", "/v1/messages", map[string]any{"to": n.users[1].ID, "content": content, "client_msg_id": fmt.Sprintf("big-%d", i)}, nil); err != nil {
						return err
					}
				}
				return nil
			},
			run: func(ctx context.Context, n *hstNode) string {
				var t hstTally
				a := client.New(n.base, client.WithToken(n.users[0].Token, n.users[0].ID))
				var convs struct {
					Conversations []struct {
						ID string `json:"id"`
					} `json:"conversations"`
				}
				if err := a.Do(ctx, "GET", "/v1/conversations", nil, &convs); err != nil || len(convs.Conversations) == 0 {
					return fmt.Sprintf("no conversation: %v", err)
				}
				g0, h0 := hstMetric(n.base, "go_goroutines"), hstMetric(n.base, "go_memstats_heap_inuse_bytes")
				for range 16 {
					c, err := rawclient.DialSmallWindow("tcp", n.addr)
					if err != nil {
						t.add("dial: " + err.Error())
						continue
					}
					defer c.Close()
					_, _ = fmt.Fprintf(c, "GET /v1/conversations/%s/messages?limit=50 HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer %s\r\n\r\n", convs.Conversations[0].ID, n.users[0].Token)
				}
				<-ctx.Done()
				// Still held? The server's own count says; a cut connection's
				// FIN waits behind the unread bytes, so the client cannot tell.
				out := fmt.Sprintf("at the end, unread: server goroutines %+.0f, heap in use %+.0f MiB",
					hstMetric(n.base, "go_goroutines")-g0, (hstMetric(n.base, "go_memstats_heap_inuse_bytes")-h0)/(1<<20))
				if len(t.m) > 0 {
					out += "; " + t.String()
				}
				return out
			}},
	}
}
