package clustertest_test

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"os"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/gorilla/websocket"
	"github.com/stretchr/testify/require"

	"github.com/chatgate/chatgate/client"
	"github.com/chatgate/chatgate/internal/clustertest"
	"github.com/chatgate/chatgate/internal/testkit"
)

func TestMain(m *testing.M) {
	code := m.Run()
	testkit.RemoveBinary()
	os.Exit(code)
}

const (
	offlineAfter = 3 * time.Second
	heartbeat    = 600 * time.Millisecond
)

func procFlags(zone string, nodeID string) []string {
	return []string{"-zone", zone, "-node-id", nodeID, "-offline-after", offlineAfter.String(),
		"-heartbeat-interval", heartbeat.String(), "-check-interval", "1s"}
}

// recorder collects what a connection receives, and when.
type recorder struct {
	mu     sync.Mutex
	events []client.Event
	ch     chan timed
}

type timed struct {
	client.Event
	at time.Time
}

func newRecorder() *recorder { return &recorder{ch: make(chan timed, 100_000)} }

func (r *recorder) on(e client.Event) {
	r.mu.Lock()
	r.events = append(r.events, e)
	r.mu.Unlock()
	r.ch <- timed{e, time.Now()}
}

// messages returns the message events received so far.
func (r *recorder) messages() []client.Event {
	r.mu.Lock()
	defer r.mu.Unlock()
	var out []client.Event
	for _, e := range r.events {
		if e.Type == client.EventMessage {
			out = append(out, e)
		}
	}
	return out
}

// waitFor returns when the first event matching ok arrived.
func (r *recorder) waitFor(t *testing.T, what string, within time.Duration, ok func(client.Event) bool) time.Time {
	t.Helper()
	timeout := time.After(within)
	for {
		select {
		case e := <-r.ch:
			if ok(e.Event) {
				return e.at
			}
		case <-timeout:
			t.Fatalf("no %s within %v", what, within)
		}
	}
}

func signup(t *testing.T, base, prefix string, opts ...client.Option) *client.Client {
	t.Helper()
	opts = append([]client.Option{client.WithBackoff(50*time.Millisecond, 500*time.Millisecond)}, opts...)
	c := client.New(base, opts...)
	_, err := c.Signup(context.Background(), client.SignupInput{Username: testkit.UniqueName(prefix), Password: "correct horse"})
	require.NoError(t, err)
	t.Cleanup(c.CloseIdleConnections)
	return c
}

func befriend(t *testing.T, a, b *client.Client) {
	t.Helper()
	for _, p := range [][2]*client.Client{{a, b}, {b, a}} {
		require.NoError(t, p[0].Do(context.Background(), "PUT", "/v1/friends/"+p[1].UserID(), nil, nil))
	}
}

func connect(t *testing.T, c *client.Client, tr string, r *recorder) *client.Conn {
	t.Helper()
	opts := client.ConnectOptions{OnEvent: r.on, PollInterval: 100 * time.Millisecond, LongPollWait: 2 * time.Second,
		IdleTimeout: 5 * time.Second, ConnectTimeout: 5 * time.Second}
	if tr != "" {
		opts.Transports = []string{tr}
	}
	conn, err := c.Connect(context.Background(), opts)
	require.NoError(t, err)
	t.Cleanup(func() { conn.Close() })
	return conn
}

// requireExactlyOnce checks a device got seqs 1..n in order with no gap or
// duplicate and every id in want among them.
func requireExactlyOnce(t *testing.T, who string, got []client.Event, want map[string]bool) {
	t.Helper()
	seen := map[string]bool{}
	for i, e := range got {
		require.Equal(t, uint64(i+1), e.Seq, "%s: event %d", who, i)
		require.False(t, seen[e.Message.ID], "%s: message %s twice", who, e.Message.ID)
		seen[e.Message.ID] = true
	}
	for id := range want {
		require.True(t, seen[id], "%s: acknowledged message %s never delivered", who, id)
	}
}

// history pages through a conversation from base.
func history(t *testing.T, c *client.Client, conv string) map[string]bool {
	t.Helper()
	out := map[string]bool{}
	before := ""
	for {
		var page struct {
			Messages []client.Message `json:"messages"`
			HasMore  bool             `json:"has_more"`
		}
		path := "/v1/conversations/" + conv + "/messages?limit=100"
		if before != "" {
			path += "&before=" + before
		}
		require.NoError(t, c.Do(context.Background(), "GET", path, nil, &page))
		for _, m := range page.Messages {
			require.False(t, out[m.ID], "message %s twice in history", m.ID)
			out[m.ID] = true
			before = m.ID
		}
		if !page.HasMore {
			return out
		}
	}
}

// TestClusterKill9: a node is killed with SIGKILL while clients on it and
// on another node are sending to each other, and comes straight back under
// the same node id. The clients negotiate again, land on live nodes and
// resume with no gap and no duplicate; every acknowledged message is in
// history; a user who was only on the dead node goes offline for her
// friend within the window, and stays offline after the node is back.
func TestClusterKill9(t *testing.T) {
	env := clustertest.Start(t)
	n1 := env.StartProc(t, procFlags("a", "11")...)
	n2 := env.StartProc(t, procFlags("b", "12")...)
	n3 := env.StartProc(t, procFlags("a", "13")...)
	_ = n3

	// Every client enters through n1 (as through a load balancer) and is
	// sent by negotiation to a node of its zone: alice and carol to n2,
	// once Consul has seen its first check pass.
	require.Eventually(t, func() bool { return negotiate(t, n1.URL, "b") == n2.URL }, 30*time.Second, 20*time.Millisecond,
		"n2 healthy in zone b")
	require.Eventually(t, func() bool { return negotiate(t, n1.URL, "a") != n2.URL }, 30*time.Second, 20*time.Millisecond,
		"a healthy node in zone a")
	alice := signup(t, n1.URL, "k_alice", client.WithZone("b"))
	bob := signup(t, n1.URL, "k_bob", client.WithZone("a"))
	carol := signup(t, n1.URL, "k_carol", client.WithZone("b"))
	dave := signup(t, n1.URL, "k_dave", client.WithZone("a"))
	befriend(t, alice, bob)
	befriend(t, carol, dave)

	ra, rb, rd := newRecorder(), newRecorder(), newRecorder()
	ca := connect(t, alice, client.TransportWebSocket, ra)
	cb := connect(t, bob, client.TransportSSE, rb)
	connect(t, dave, client.TransportWebSocket, rd)
	require.Equal(t, n2.URL, ca.Server(), "alice negotiated into zone b")
	require.NotEqual(t, n2.URL, cb.Server())

	// Carol holds a bare socket on n2 that nobody reconnects.
	ws, resp, err := websocket.DefaultDialer.Dial(strings.Replace(n2.URL, "http", "ws", 1)+"/v1/ws?access_token="+carol.Token(), nil)
	require.NoError(t, err)
	resp.Body.Close()
	defer ws.Close()
	go func() { // drain it so the server never sees it as slow
		for {
			if _, _, err := ws.ReadMessage(); err != nil {
				return
			}
		}
	}()
	var fl struct {
		Friends []struct {
			ID     string `json:"id"`
			Status string `json:"status"`
		} `json:"friends"`
	}
	require.NoError(t, dave.Do(context.Background(), "GET", "/v1/friends", nil, &fl))
	require.Equal(t, "online", fl.Friends[0].Status, "carol before the kill")

	var mu sync.Mutex
	acked := map[string]bool{}
	var conv string
	ctx, stop := context.WithCancel(context.Background())
	var wg sync.WaitGroup
	counts := make([]int, 2)
	sender := func(i int, conn *client.Conn, to string) {
		defer wg.Done()
		for n := 0; ctx.Err() == nil; n++ {
			m, err := conn.Send(context.Background(), client.SendInput{To: to, Content: fmt.Sprintf("m%d-%d", i, n)})
			if err != nil {
				t.Errorf("send %d-%d: %v", i, n, err)
				return
			}
			mu.Lock()
			acked[m.ID], conv = true, m.ConversationID
			counts[i]++
			mu.Unlock()
		}
	}
	wg.Add(2)
	go sender(0, ca, bob.UserID())
	go sender(1, cb, alice.UserID())
	waitCount := func(min int) {
		require.Eventually(t, func() bool {
			mu.Lock()
			defer mu.Unlock()
			return counts[0] >= min && counts[1] >= min
		}, 60*time.Second, 10*time.Millisecond)
	}
	waitCount(20)

	mu.Lock()
	atKill := len(acked)
	mu.Unlock()
	n2.Kill()
	killed := time.Now()
	n2.Restart() // straight back, same node id, same address
	mu.Lock()
	base := max(counts[0], counts[1])
	mu.Unlock()
	waitCount(base + 20)
	stop()
	wg.Wait()
	require.False(t, t.Failed())

	// Everything acknowledged reaches both devices exactly once, in order.
	require.Eventually(t, func() bool {
		return len(ra.messages()) >= len(acked) && len(rb.messages()) >= len(acked)
	}, 60*time.Second, 20*time.Millisecond, "devices caught up (alice %d, bob %d, acked %d)",
		len(ra.messages()), len(rb.messages()), len(acked))
	requireExactlyOnce(t, "alice", ra.messages(), acked)
	requireExactlyOnce(t, "bob", rb.messages(), acked)
	h := history(t, bob, conv)
	for id := range acked {
		require.True(t, h[id], "acknowledged message %s missing from history", id)
	}
	t.Logf("%d messages acknowledged, %d of them after the kill; alice now on %s", len(acked), len(acked)-atKill, ca.Server())

	// Carol was only on the dead node: offline for dave within the
	// window, although the node came back under the same id at once.
	at := rd.waitFor(t, "carol offline", 3*offlineAfter, func(e client.Event) bool {
		return e.Type == client.EventPresence && e.UserID == carol.UserID() && e.Status == "offline"
	})
	require.LessOrEqual(t, at.Sub(killed), offlineAfter+2*time.Second, "carol went offline %v after the kill", at.Sub(killed))
	for _, base := range []string{n1.URL, n2.URL, n3.URL} {
		c := client.New(base, client.WithToken(dave.Token(), dave.UserID()))
		require.NoError(t, c.Do(context.Background(), "GET", "/v1/friends", nil, &fl))
		require.Len(t, fl.Friends, 1)
		require.Equal(t, "offline", fl.Friends[0].Status, "carol on %s", base)
		c.CloseIdleConnections()
	}
	// Alice moved and kept sending: online for bob.
	require.NoError(t, bob.Do(context.Background(), "GET", "/v1/friends", nil, &fl))
	require.Equal(t, "online", fl.Friends[0].Status)
	_ = http.StatusOK
}

// pinned connects c to server with transport tr, without negotiating.
func pinned(t *testing.T, c *client.Client, server, tr string, r *recorder) *client.Conn {
	t.Helper()
	conn, err := c.Connect(context.Background(), client.ConnectOptions{
		OnEvent: r.on, Transports: []string{tr}, PollInterval: 100 * time.Millisecond, LongPollWait: 2 * time.Second,
		IdleTimeout: 5 * time.Second, ConnectTimeout: 5 * time.Second,
		Negotiation: &client.Negotiation{Server: server, Transports: []string{tr}, HeartbeatInterval: heartbeat},
	})
	require.NoError(t, err)
	t.Cleanup(func() { conn.Close() })
	return conn
}

var transports = []string{client.TransportWebSocket, client.TransportSSE, client.TransportLongPolling, client.TransportPolling}

// TestClusterNATSRestart: NATS restarts while devices on one node receive
// from a sender on another. Live delivery comes back by itself and no
// device misses an event: what the bus dropped, resume reads from the store.
func TestClusterNATSRestart(t *testing.T) {
	env := clustertest.Start(t)
	n1 := env.Node(t, testkit.WithOfflineAfter(offlineAfter))
	n2 := env.Node(t, testkit.WithOfflineAfter(offlineAfter))
	alice := signup(t, n1.URL(), "nr_alice")
	bob := signup(t, n2.URL(), "nr_bob")
	var recs []*recorder
	for i, tr := range transports {
		dev := bob
		if i > 0 {
			dev = client.New(n2.URL(), client.WithBackoff(50*time.Millisecond, 500*time.Millisecond))
			_, err := dev.Login(context.Background(), bob.User().Username, "correct horse", tr)
			require.NoError(t, err)
			t.Cleanup(dev.CloseIdleConnections)
		}
		r := newRecorder()
		pinned(t, dev, n2.URL(), tr, r)
		recs = append(recs, r)
	}
	acked := map[string]bool{}
	send := func(n int, tag string) {
		for i := range n {
			m, err := alice.Send(context.Background(), client.SendInput{To: bob.UserID(), Content: fmt.Sprintf("%s %d", tag, i)})
			require.NoError(t, err)
			acked[m.ID] = true
		}
	}
	waitAll := func() {
		for i, r := range recs {
			require.Eventually(t, func() bool { return len(r.messages()) >= len(acked) }, 30*time.Second, 10*time.Millisecond,
				"%s device: %d of %d", transports[i], len(r.messages()), len(acked))
		}
	}
	send(10, "before")
	waitAll()
	env.NATS.Stop()
	send(10, "while NATS is down")
	env.NATS.Restart()
	send(10, "after")
	waitAll()
	for i, r := range recs {
		requireExactlyOnce(t, transports[i], r.messages(), acked)
	}
}

// TestClusterClockSkew: one node's clock is 2 s behind, so on its own it
// would mint ids 2 s older than the other node's. Per-user seq order and
// resume by cursor stay exact (sync never compares ids), and within one
// user's inbox ids still rise with seq: the store lifts the generator past
// every recipient's newest id before minting (see docs/design.md).
func TestClusterClockSkew(t *testing.T) {
	env := clustertest.Start(t)
	n1 := env.Node(t)
	n2 := env.Node(t, testkit.WithClock(func() time.Time { return time.Now().Add(-2 * time.Second) }))
	alice := signup(t, n1.URL(), "sk_alice")
	bob := signup(t, n2.URL(), "sk_bob")
	carol := signup(t, n1.URL(), "sk_carol")
	r := newRecorder()
	pinned(t, carol, n1.URL(), client.TransportWebSocket, r)

	var sent []*client.Message
	for i := range 20 {
		from := alice
		if i%2 == 1 {
			from = bob
		}
		m, err := from.Send(context.Background(), client.SendInput{To: carol.UserID(), Content: fmt.Sprint(i)})
		require.NoError(t, err)
		sent = append(sent, m)
	}
	require.Eventually(t, func() bool { return len(r.messages()) >= 20 }, 30*time.Second, 10*time.Millisecond)
	got := r.messages()
	for i, e := range got {
		require.Equal(t, uint64(i+1), e.Seq)
		require.Equal(t, sent[i].ID, e.Message.ID, "seq order is the order the sends were stored")
		if i > 0 {
			require.True(t, idLess(got[i-1].Message.ID, e.Message.ID), "ids rise with seq in one inbox")
		}
	}
	// Resume from the middle, on the skewed node, by another transport.
	dev := client.New(n2.URL())
	_, err := dev.Login(context.Background(), carol.User().Username, "correct horse", "second")
	require.NoError(t, err)
	defer dev.CloseIdleConnections()
	r2 := newRecorder()
	conn, err := dev.Connect(context.Background(), client.ConnectOptions{
		OnEvent: r2.on, Cursor: 10, Transports: []string{client.TransportPolling}, PollInterval: 50 * time.Millisecond,
		Negotiation: &client.Negotiation{Server: n2.URL(), Transports: []string{client.TransportPolling}, HeartbeatInterval: heartbeat},
	})
	require.NoError(t, err)
	defer conn.Close()
	require.Eventually(t, func() bool { return len(r2.messages()) >= 10 }, 30*time.Second, 10*time.Millisecond)
	for i, e := range r2.messages() {
		require.Equal(t, uint64(11+i), e.Seq)
		require.Equal(t, sent[10+i].ID, e.Message.ID)
	}
}

func idLess(a, b string) bool {
	if len(a) != len(b) {
		return len(a) < len(b)
	}
	return a < b
}

func negotiate(t *testing.T, base, zone string) string {
	t.Helper()
	c := client.New(base, client.WithZone(zone))
	defer c.CloseIdleConnections()
	n, err := c.Negotiate(context.Background())
	require.NoError(t, err)
	return n.Server
}

// TestClusterNegotiate: any node recommends the least-loaded healthy node
// of the client's zone, and stops recommending a node within its check
// interval once its /readyz fails.
func TestClusterNegotiate(t *testing.T) {
	env := clustertest.Start(t)
	opts := []testkit.Option{testkit.WithCheckInterval(time.Second)}
	a1 := env.Node(t, append(opts, testkit.WithZone("a"))...)
	a2 := env.Node(t, append(opts, testkit.WithZone("a"))...)
	b1 := env.Node(t, append(opts, testkit.WithZone("b"))...)
	for _, n := range []*testkit.Node{a1, a2, b1} {
		require.Eventually(t, func() bool { return negotiate(t, n.URL(), "b") == b1.URL() }, 20*time.Second, 50*time.Millisecond,
			"zone b from %s", n.URL())
	}
	// Load a1 with connected devices: zone a goes to a2.
	for i := range 3 {
		c := signup(t, a1.URL(), fmt.Sprint("ng", i))
		pinned(t, c, a1.URL(), client.TransportSSE, newRecorder())
	}
	require.Eventually(t, func() bool { return negotiate(t, b1.URL(), "a") == a2.URL() }, 20*time.Second, 50*time.Millisecond,
		"the least-loaded node of zone a")
	// a2 starts draining: its /readyz fails, and within the check
	// interval (1 s, plus Consul's and the watch's latency) nobody sends
	// clients there.
	a2.Service().Drain()
	resp, err := http.Get(a2.URL() + "/readyz")
	require.NoError(t, err)
	resp.Body.Close()
	require.Equal(t, http.StatusServiceUnavailable, resp.StatusCode)
	failed := time.Now()
	require.Eventually(t, func() bool { return negotiate(t, b1.URL(), "a") == a1.URL() }, 20*time.Second, 20*time.Millisecond)
	// Within the check interval plus its timeout and the watch's latency;
	// the bound leaves room for a loaded CI machine.
	require.Less(t, time.Since(failed), 5*time.Second, "still recommended %v after its check failed", time.Since(failed))
}

// TestClusterThreeNodes: two devices of one user and a friend, each on its
// own node, on every transport: every message, typing and presence change
// reaches every device, live and on resume.
func TestClusterThreeNodes(t *testing.T) {
	env := clustertest.Start(t)
	var nodes []*testkit.Node
	for range 3 {
		nodes = append(nodes, env.Node(t, testkit.WithOfflineAfter(offlineAfter)))
	}
	for _, tr := range transports {
		t.Run(tr, func(t *testing.T) {
			alice := signup(t, nodes[0].URL(), "tn_alice")
			bob := signup(t, nodes[2].URL(), "tn_bob")
			befriend(t, alice, bob)
			alice2 := client.New(nodes[1].URL(), client.WithBackoff(50*time.Millisecond, 500*time.Millisecond))
			_, err := alice2.Login(context.Background(), alice.User().Username, "correct horse", "phone")
			require.NoError(t, err)
			defer alice2.CloseIdleConnections()
			ra1, ra2, rb := newRecorder(), newRecorder(), newRecorder()
			pinned(t, alice, nodes[0].URL(), tr, ra1)
			c2 := pinned(t, alice2, nodes[1].URL(), tr, ra2)
			pinned(t, bob, nodes[2].URL(), tr, rb)

			want := map[string]bool{}
			m, err := bob.Send(context.Background(), client.SendInput{To: alice.UserID(), Content: "from bob"})
			require.NoError(t, err)
			want[m.ID] = true
			m, err = alice.Send(context.Background(), client.SendInput{To: bob.UserID(), Content: "from alice"})
			require.NoError(t, err)
			want[m.ID] = true
			for who, r := range map[string]*recorder{"alice@1": ra1, "alice@2": ra2, "bob@3": rb} {
				require.Eventually(t, func() bool { return len(r.messages()) >= 2 }, 20*time.Second, 10*time.Millisecond, who)
				requireExactlyOnce(t, who, r.messages(), want)
			}
			require.NoError(t, bob.Typing(context.Background(), m.ConversationID))
			for who, r := range map[string]*recorder{"alice@1": ra1, "alice@2": ra2} {
				r.waitFor(t, "typing on "+who, 20*time.Second, func(e client.Event) bool {
					return e.Type == client.EventTyping && e.UserID == bob.UserID()
				})
			}

			// Resume: alice's phone goes away, messages arrive, it comes
			// back on another node with its cursor.
			cursor := c2.Cursor()
			c2.Close()
			for i := range 5 {
				m, err := bob.Send(context.Background(), client.SendInput{To: alice.UserID(), Content: fmt.Sprint("while away ", i)})
				require.NoError(t, err)
				want[m.ID] = true
			}
			r2 := newRecorder()
			conn, err := alice2.Connect(context.Background(), client.ConnectOptions{
				OnEvent: r2.on, Cursor: cursor, Transports: []string{tr}, PollInterval: 100 * time.Millisecond,
				LongPollWait: 2 * time.Second, ConnectTimeout: 5 * time.Second,
				Negotiation: &client.Negotiation{Server: nodes[2].URL(), Transports: []string{tr}, HeartbeatInterval: heartbeat},
			})
			require.NoError(t, err)
			require.Eventually(t, func() bool { return len(r2.messages()) >= 5 }, 20*time.Second, 10*time.Millisecond)
			require.Len(t, r2.messages(), 5)
			for i, e := range r2.messages() {
				require.Equal(t, cursor+uint64(i)+1, e.Seq)
			}

			// Presence: the last of alice's devices logs out, on another
			// node than the first: bob sees offline once, then online once
			// when she logs in again elsewhere.
			conn.Close()
			require.NoError(t, alice2.Logout(context.Background()))
			require.NoError(t, alice.Logout(context.Background()))
			rb.waitFor(t, "alice offline", 20*time.Second, func(e client.Event) bool {
				return e.Type == client.EventPresence && e.UserID == alice.UserID() && e.Status == "offline"
			})
			alice3 := client.New(nodes[1].URL())
			defer alice3.CloseIdleConnections()
			_, err = alice3.Login(context.Background(), alice.User().Username, "correct horse", "tablet")
			require.NoError(t, err)
			rb.waitFor(t, "alice online", 20*time.Second, func(e client.Event) bool {
				if e.Type == client.EventPresence && e.UserID == alice.UserID() && e.Status != "online" {
					t.Fatalf("presence %s twice", e.Status)
				}
				return e.Type == client.EventPresence && e.UserID == alice.UserID()
			})
			// Exactly once each: nothing more about alice follows.
			require.NoError(t, bob.Heartbeat(context.Background()))
			select {
			case e := <-rb.ch:
				if e.Type == client.EventPresence && e.UserID == alice.UserID() {
					t.Fatalf("extra presence %s", e.Status)
				}
			case <-time.After(500 * time.Millisecond):
			}
		})
	}
}

// TestClusterLogoutRevokesEverywhere: nodes cache tokens; a logout on one
// node ends the token on every other at once (the revocation travels on
// the bus), well before the cache's TTL.
func TestClusterLogoutRevokesEverywhere(t *testing.T) {
	env := clustertest.Start(t)
	n1, n2 := env.Node(t), env.Node(t)
	alice := signup(t, n1.URL(), "rv_alice")
	on2 := client.New(n2.URL(), client.WithToken(alice.Token(), alice.UserID()))
	defer on2.CloseIdleConnections()
	require.NoError(t, on2.Do(context.Background(), "GET", "/v1/me", nil, nil)) // cached on n2 now
	require.NoError(t, alice.Logout(context.Background()))
	out := time.Now()
	require.Eventually(t, func() bool {
		err := on2.Do(context.Background(), "GET", "/v1/me", nil, nil)
		var ae *client.APIError
		return errors.As(err, &ae) && ae.Status == http.StatusUnauthorized
	}, 10*time.Second, 5*time.Millisecond)
	require.Less(t, time.Since(out), 3*time.Second, "n2 accepted the revoked token for %v", time.Since(out))
}

// TestClusterLostNodeIDFences: when a node's Consul session is destroyed
// behind its back (an operator, a partition that outlived the TTL), the
// node notices at its next renewal, stops minting ids and reports failure
// for its supervisor to restart it.
func TestClusterLostNodeIDFences(t *testing.T) {
	env := clustertest.Start(t)
	n := env.Node(t)
	kv, _, err := env.Consul.Client().KV().Get(fmt.Sprintf("chatgate/node-ids/%d", n.NodeID()), nil)
	require.NoError(t, err)
	require.NotNil(t, kv, "the node's id is held in Consul")
	require.NotEmpty(t, kv.Session)
	_, err = env.Consul.Client().Session().Destroy(kv.Session, nil)
	require.NoError(t, err)
	select {
	case err := <-n.Failed():
		require.ErrorContains(t, err, "stopped minting ids")
	case <-time.After(20 * time.Second): // renewals run every TTL/3 = 5 s
		t.Fatal("the node did not notice it lost its node id")
	}
}
