package transports_test

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/chatgate/chatgate/client"
	"github.com/chatgate/chatgate/internal/testkit"
)

// The conformance suite: one table of scenarios, run unchanged over every
// transport through the Go client forced onto that transport. A new
// transport is one more entry in conformanceTransports.
var conformanceTransports = []string{
	client.TransportWebSocket,
	client.TransportSSE,
	client.TransportLongPolling,
	client.TransportPolling,
}

var conformanceScenarios = []struct {
	name string
	run  func(h *harness)
}{
	{"live delivery", scenarioLive},
	{"resume after an offline gap", scenarioResume},
	{"no duplicate across reconnects", scenarioNoDuplicate},
	{"message stored while the backlog is read", scenarioBacklogRace},
	{"switching transport mid-conversation", scenarioSwitch},
	{"presence online and offline", scenarioPresence},
	{"logout while connected: offline, and stays offline", scenarioLogoutWhileConnected},
	{"typing", scenarioTyping},
	{"auth failure", scenarioAuthFailure},
	{"over-long message refused, connection usable", scenarioOverLong},
	{"slow consumer cut off and resumed without loss", scenarioSlowConsumer},
	{"cursor beyond the inbox head is pulled back", scenarioCursorAhead},
}

func TestConformance(t *testing.T) {
	for i, tr := range conformanceTransports {
		t.Run(tr, func(t *testing.T) {
			n := testkit.Start(t, conformanceNodeOptions()...)
			runConformance(t, []*testkit.Node{n}, tr, conformanceTransports[(i+1)%len(conformanceTransports)])
		})
	}
}

func conformanceNodeOptions() []testkit.Option {
	return []testkit.Option{testkit.WithOfflineAfter(1500 * time.Millisecond),
		testkit.WithStreamTimeouts(time.Second, time.Second)}
}

// runConformance runs every scenario; with several nodes, each new user
// signs up on the next node, so the two sides of a scenario sit on
// different nodes.
func runConformance(t *testing.T, nodes []*testkit.Node, tr, next string) {
	for _, sc := range conformanceScenarios {
		t.Run(sc.name, func(t *testing.T) {
			h := &harness{t: t, nodes: nodes, tr: tr, next: next}
			sc.run(h)
		})
	}
}

type harness struct {
	t     *testing.T
	nodes []*testkit.Node
	turn  int
	tr    string // transport under test
	next  string // another transport, for switching
}

// url is the base URL of the next node in turn.
func (h *harness) url() string {
	n := h.nodes[h.turn%len(h.nodes)]
	h.turn++
	return n.URL()
}

var userN sync.Mutex

// user signs up a new user through the Go client.
func (h *harness) user(prefix string) *client.Client {
	h.t.Helper()
	c := client.New(h.url(), client.WithBackoff(20*time.Millisecond, 200*time.Millisecond))
	_, err := c.Signup(context.Background(), client.SignupInput{Username: testkit.UniqueName(prefix), Password: "correct horse"})
	require.NoError(h.t, err)
	h.t.Cleanup(c.CloseIdleConnections)
	return c
}

// recorder is a connection that records what it receives.
type recorder struct {
	h      *harness
	conn   *client.Conn
	events chan client.Event
	gate   chan struct{} // when set, OnEvent waits on it (a slow app)
}

func (h *harness) connect(c *client.Client, tr string, cursor uint64) *recorder {
	h.t.Helper()
	r := &recorder{h: h, events: make(chan client.Event, 100_000)}
	conn, err := c.Connect(context.Background(), h.options(tr, cursor, r))
	require.NoError(h.t, err)
	require.Equal(h.t, tr, conn.Transport())
	r.conn = conn
	h.t.Cleanup(func() { conn.Close() })
	return r
}

func (h *harness) options(tr string, cursor uint64, r *recorder) client.ConnectOptions {
	return client.ConnectOptions{
		Transports:     []string{tr},
		Cursor:         cursor,
		PollInterval:   50 * time.Millisecond,
		LongPollWait:   2 * time.Second,
		IdleTimeout:    5 * time.Second,
		ConnectTimeout: 5 * time.Second,
		OnEvent: func(e client.Event) {
			if r.gate != nil {
				<-r.gate
			}
			r.events <- e
		},
	}
}

// messages waits for n message events and returns them.
func (r *recorder) messages(n int) []client.Event {
	r.h.t.Helper()
	var out []client.Event
	timeout := time.After(30 * time.Second)
	for len(out) < n {
		select {
		case e := <-r.events:
			if e.Type == client.EventMessage {
				out = append(out, e)
			}
		case <-timeout:
			r.h.t.Fatalf("%s: got %d of %d messages", r.h.tr, len(out), n)
		}
	}
	return out
}

// waitFor waits for an event matching ok.
func (r *recorder) waitFor(what string, ok func(client.Event) bool) client.Event {
	r.h.t.Helper()
	timeout := time.After(20 * time.Second)
	for {
		select {
		case e := <-r.events:
			if ok(e) {
				return e
			}
		case <-timeout:
			r.h.t.Fatalf("%s: no %s event", r.h.tr, what)
		}
	}
}

// quiet asserts no further message event arrives in the time a round trip
// of every transport takes (a negative check; it bounds, never syncs).
func (r *recorder) quiet() {
	r.h.t.Helper()
	select {
	case e := <-r.events:
		if e.Type == client.EventMessage {
			r.h.t.Fatalf("%s: unexpected extra message seq %d", r.h.tr, e.Seq)
		}
	case <-time.After(300 * time.Millisecond):
	}
}

func send(t *testing.T, c *client.Client, to string, content string) *client.Message {
	t.Helper()
	m, err := c.Send(context.Background(), client.SendInput{To: to, Content: content})
	require.NoError(t, err)
	return m
}

// requireSeqs checks the events carry exactly seqs from..to in order, with
// the expected contents when given.
func requireSeqs(t *testing.T, evs []client.Event, from uint64, contents ...string) {
	t.Helper()
	for i, e := range evs {
		require.Equal(t, from+uint64(i), e.Seq, "event %d", i)
		if i < len(contents) {
			require.Equal(t, contents[i], e.Message.Content)
		}
	}
}

func scenarioLive(h *harness) {
	a, b := h.user("live_a"), h.user("live_b")
	rb := h.connect(b, h.tr, 0)
	for i := 0; i < 3; i++ {
		send(h.t, a, b.UserID(), fmt.Sprint("live ", i))
	}
	requireSeqs(h.t, rb.messages(3), 1, "live 0", "live 1", "live 2")
	rb.quiet()
}

func scenarioResume(h *harness) {
	a, b := h.user("res_a"), h.user("res_b")
	send(h.t, a, b.UserID(), "before")
	rb := h.connect(b, h.tr, 0)
	requireSeqs(h.t, rb.messages(1), 1, "before")
	cursor := rb.conn.Cursor()
	require.EqualValues(h.t, 1, cursor)
	rb.conn.Close()
	for i := 0; i < 5; i++ {
		send(h.t, a, b.UserID(), fmt.Sprint("offline ", i))
	}
	rb2 := h.connect(b, h.tr, cursor)
	requireSeqs(h.t, rb2.messages(5), 2, "offline 0", "offline 1", "offline 2", "offline 3", "offline 4")
	rb2.quiet()
}

func scenarioNoDuplicate(h *harness) {
	a, b := h.user("dup_a"), h.user("dup_b")
	const total = 60
	var wg sync.WaitGroup
	wg.Add(1)
	go func() {
		defer wg.Done()
		for i := 0; i < total; i++ {
			send(h.t, a, b.UserID(), fmt.Sprint(i))
		}
	}()
	var got []client.Event
	cursor := uint64(0)
	for round := 0; round < 3; round++ {
		r := h.connect(b, h.tr, cursor)
		want := min(total/3, total-len(got)) // a page may bring more: see below
		if round == 2 {
			want = total - len(got)
		}
		got = append(got, r.messages(want)...)
		r.conn.Close()
		cursor = r.conn.Cursor()
		// Events already queued in the recorder after Close are part of
		// what was delivered: the cursor says how far delivery went.
		for len(got) < int(cursor) {
			got = append(got, r.messages(1)...)
		}
	}
	wg.Wait()
	require.Len(h.t, got, total)
	requireSeqs(h.t, got, 1)
}

func scenarioBacklogRace(h *harness) {
	a, b := h.user("bl_a"), h.user("bl_b")
	const before, during = 250, 50
	for i := 0; i < before; i++ {
		send(h.t, a, b.UserID(), fmt.Sprint(i))
	}
	var wg sync.WaitGroup
	wg.Add(1)
	go func() {
		defer wg.Done()
		for i := before; i < before+during; i++ {
			send(h.t, a, b.UserID(), fmt.Sprint(i))
		}
	}()
	rb := h.connect(b, h.tr, 0)
	evs := rb.messages(before + during)
	wg.Wait()
	requireSeqs(h.t, evs, 1)
	for i, e := range evs {
		require.Equal(h.t, fmt.Sprint(i), e.Message.Content)
	}
	rb.quiet()
}

func scenarioSwitch(h *harness) {
	a, b := h.user("sw_a"), h.user("sw_b")
	rb := h.connect(b, h.tr, 0)
	send(h.t, a, b.UserID(), "on first")
	requireSeqs(h.t, rb.messages(1), 1, "on first")
	rb.conn.Close()
	send(h.t, a, b.UserID(), "between")
	rb2 := h.connect(b, h.next, rb.conn.Cursor())
	send(h.t, a, b.UserID(), "on second")
	requireSeqs(h.t, rb2.messages(2), 2, "between", "on second")
	rb2.quiet()
}

func scenarioPresence(h *harness) {
	a, b := h.user("pr_a"), h.user("pr_b")
	for _, p := range [][2]*client.Client{{a, b}, {b, a}} {
		var out struct{}
		require.NoError(h.t, p[0].Do(context.Background(), "PUT", "/v1/friends/"+p[1].UserID(), nil, &out))
	}
	rb := h.connect(b, h.tr, 0)
	require.NoError(h.t, a.Logout(context.Background()))
	rb.waitFor("offline presence", func(e client.Event) bool {
		return e.Type == client.EventPresence && e.UserID == a.UserID() && e.Status == "offline"
	})
	a2 := client.New(h.url())
	defer a2.CloseIdleConnections()
	user := h.usernameOf(b, a.UserID())
	_, err := a2.Login(context.Background(), user, "correct horse", "second")
	require.NoError(h.t, err)
	rb.waitFor("online presence", func(e client.Event) bool {
		return e.Type == client.EventPresence && e.UserID == a.UserID() && e.Status == "online"
	})
}

func (h *harness) usernameOf(c *client.Client, id string) string {
	var u client.User
	require.NoError(h.t, c.Do(context.Background(), "GET", "/v1/users/"+id, nil, &u))
	return u.Username
}

func scenarioTyping(h *harness) {
	a, b := h.user("ty_a"), h.user("ty_b")
	m := send(h.t, a, b.UserID(), "hello")
	rb := h.connect(b, h.tr, 0)
	rb.messages(1)
	require.NoError(h.t, a.Typing(context.Background(), m.ConversationID))
	e := rb.waitFor("typing", func(e client.Event) bool { return e.Type == client.EventTyping })
	require.Equal(h.t, a.UserID(), e.UserID)
	require.Equal(h.t, m.ConversationID, e.ConversationID)
	require.Zero(h.t, e.Seq, "typing is ephemeral")
}

func scenarioAuthFailure(h *harness) {
	c := client.New(h.url(), client.WithToken("not-a-token", "1"))
	defer c.CloseIdleConnections()
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	_, err := c.Connect(ctx, client.ConnectOptions{Transports: []string{h.tr}, ConnectTimeout: 5 * time.Second})
	var apiErr *client.APIError
	require.True(h.t, errors.As(err, &apiErr), "got %v", err)
	require.Equal(h.t, 401, apiErr.Status)
	require.Equal(h.t, "unauthorized", apiErr.Code)
}

func scenarioOverLong(h *harness) {
	a, b := h.user("ol_a"), h.user("ol_b")
	ra := h.connect(a, h.tr, 0)
	rb := h.connect(b, h.tr, 0)
	_, err := ra.conn.Send(context.Background(), client.SendInput{To: b.UserID(), Content: strings.Repeat("é", 100_001)})
	var apiErr *client.APIError
	require.True(h.t, errors.As(err, &apiErr), "got %v", err)
	require.Equal(h.t, "content_too_long", apiErr.Code)
	m, err := ra.conn.Send(context.Background(), client.SendInput{To: b.UserID(), Content: strings.Repeat("é", 100_000)})
	require.NoError(h.t, err, "the connection stays usable")
	got := rb.messages(1)
	require.Equal(h.t, m.ID, got[0].Message.ID)
	require.EqualValues(h.t, 1, got[0].Seq, "the refused message was never stored")
}

func scenarioSlowConsumer(h *harness) {
	a, b := h.user("sc_a"), h.user("sc_b")
	rb := &recorder{h: h, events: make(chan client.Event, 100_000), gate: make(chan struct{})}
	conn, err := b.Connect(context.Background(), h.options(h.tr, 0, rb))
	require.NoError(h.t, err)
	rb.conn = conn
	defer conn.Close()
	// The app stops taking events; the sender must not be slowed or
	// blocked, and the server must not buffer without bound.
	const total = 1500
	big := strings.Repeat("s", 8_000)
	for i := 0; i < total; i++ {
		send(h.t, a, b.UserID(), big)
	}
	close(rb.gate) // the app catches up
	evs := rb.messages(total)
	requireSeqs(h.t, evs, 1)
	rb.quiet()
}

// A client whose cursor is beyond its inbox (a bug, or a server restored
// from an older backup) is told where the inbox ends and still receives
// what comes next.
func scenarioCursorAhead(h *harness) {
	a, b := h.user("ca_a"), h.user("ca_b")
	send(h.t, a, b.UserID(), "one")
	send(h.t, a, b.UserID(), "two")
	rb := h.connect(b, h.tr, 1000)
	// The stream pulls the cursor back to the head it reads; a message
	// stored before that read would be inside the head and skipped (the
	// client's cursor claimed it), so send only once the client is back.
	require.Eventually(h.t, func() bool { return rb.conn.Cursor() == 2 }, 20*time.Second, 5*time.Millisecond)
	send(h.t, a, b.UserID(), "three")
	requireSeqs(h.t, rb.messages(1), 3, "three")
	require.EqualValues(h.t, 3, rb.conn.Cursor())
}

// scenarioLogoutWhileConnected: the last device logs out while its own
// stream (or held poll) is still open. Friends see offline once; the
// connection's end that follows the logout must not bring the user back.
func scenarioLogoutWhileConnected(h *harness) {
	a, b := h.user("lo_a"), h.user("lo_b")
	for _, p := range [][2]*client.Client{{a, b}, {b, a}} {
		var out struct{}
		require.NoError(h.t, p[0].Do(context.Background(), "PUT", "/v1/friends/"+p[1].UserID(), nil, &out))
	}
	aID := a.UserID()
	ra := h.connect(a, h.tr, 0)
	rb := h.connect(b, h.tr, 0)
	require.NoError(h.t, a.Logout(context.Background()))
	rb.waitFor("offline presence", func(e client.Event) bool {
		return e.Type == client.EventPresence && e.UserID == aID && e.Status == "offline"
	})
	// The logged-out connection ends (its reconnect is refused).
	select {
	case <-ra.conn.Done():
	case <-time.After(20 * time.Second):
		h.t.Fatalf("%s: the logged-out device's connection did not end", h.tr)
	}
	// Bounded negative check: the bug brought "online" back ~1 ms after
	// the stream ended.
	deadline := time.After(500 * time.Millisecond)
	for done := false; !done; {
		select {
		case e := <-rb.events:
			if e.Type == client.EventPresence && e.UserID == aID {
				h.t.Fatalf("%s: presence %s after the last logout", h.tr, e.Status)
			}
		case <-deadline:
			done = true
		}
	}
	var fl struct {
		Friends []struct {
			ID     string `json:"id"`
			Status string `json:"status"`
		} `json:"friends"`
	}
	require.NoError(h.t, b.Do(context.Background(), "GET", "/v1/friends", nil, &fl))
	require.Len(h.t, fl.Friends, 1)
	require.Equal(h.t, "offline", fl.Friends[0].Status, "GET /v1/friends after the last logout")
}
