package transports_test

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"runtime"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/gorilla/websocket"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"go.uber.org/goleak"

	"github.com/chatgate/chatgate/core"
	"github.com/chatgate/chatgate/internal/testkit"
)

// TestMain fails the package if any goroutine outlives the tests: every
// connection, stream, poll and node must have stopped. buntdb's background
// goroutine is the one exception: after Close it exits on its next 1 s
// tick, which a check right after the last test can beat.
func TestMain(m *testing.M) {
	goleak.VerifyTestMain(m, goleak.IgnoreTopFunction("github.com/tidwall/buntdb.(*DB).backgroundManager"))
}

func wsURL(n *testkit.Node, token string, cursor uint64) string {
	return fmt.Sprintf("ws://%s/v1/ws?cursor=%d&access_token=%s", n.Addr(), cursor, token)
}

// readWS reads frames until fn says stop or the deadline passes.
func readWS(t *testing.T, c *websocket.Conn, fn func(map[string]any) bool) {
	t.Helper()
	_ = c.SetReadDeadline(time.Now().Add(10 * time.Second))
	for {
		_, b, err := c.ReadMessage()
		require.NoError(t, err)
		var ev map[string]any
		require.NoError(t, json.Unmarshal(b, &ev))
		if !fn(ev) {
			return
		}
	}
}

func TestWebSocketFrames(t *testing.T) {
	n := testkit.Start(t)
	a, b := testkit.Signup(t, n.URL(), "wsa"), testkit.Signup(t, n.URL(), "wsb")
	c, resp, err := websocket.DefaultDialer.Dial(wsURL(n, a.Token, 0), nil)
	require.NoError(t, err)
	resp.Body.Close()
	defer c.Close()

	// send → sent with the stored message; the sender's own inbox event too.
	require.NoError(t, c.WriteJSON(map[string]any{"type": "send", "to": b.ID, "content": "hi", "client_msg_id": "w1"}))
	var sent, own map[string]any
	readWS(t, c, func(ev map[string]any) bool {
		switch ev["type"] {
		case "sent":
			sent = ev
		case "message":
			own = ev
		}
		return sent == nil || own == nil
	})
	assert.Equal(t, "w1", sent["client_msg_id"])
	msg := sent["message"].(map[string]any)
	assert.Equal(t, "hi", msg["content"])
	assert.Equal(t, msg["id"], own["message"].(map[string]any)["id"])
	assert.EqualValues(t, 1, own["seq"])

	// Bad frames get an error frame and the socket stays usable.
	bad := []struct{ frame, code string }{
		{`{"type":"send","to":"` + b.ID + `","content":"` + strings.Repeat("x", 100_001) + `","client_msg_id":"w2"}`, "content_too_long"},
		{`{"type":"send","to":"` + b.ID + `","content":"","client_msg_id":"w3"}`, "content_empty"},
		{`{"type":"nope","client_msg_id":"w4"}`, "unknown_frame_type"},
		{`{"type":"send",`, "invalid_json"},
		{`{"type":"typing","conversation_id":"d_1_2"}`, "conversation_not_found"},
	}
	for _, tc := range bad {
		require.NoError(t, c.WriteMessage(websocket.TextMessage, []byte(tc.frame)))
		readWS(t, c, func(ev map[string]any) bool {
			if ev["type"] != "error" {
				return true
			}
			assert.Equal(t, tc.code, ev["error"].(map[string]any)["code"], tc.frame[:min(len(tc.frame), 60)])
			return false
		})
	}
	require.NoError(t, c.WriteJSON(map[string]any{"type": "send", "to": b.ID, "content": "still here", "client_msg_id": "w5"}))
	readWS(t, c, func(ev map[string]any) bool { return ev["type"] != "sent" })
	// Nothing of the refused frames was stored.
	events, _ := b.PollAll(0)
	require.Len(t, events, 2)
}

func TestWebSocketRefusals(t *testing.T) {
	n := testkit.Start(t)
	a := testkit.Signup(t, n.URL(), "wsr")
	_, resp, err := websocket.DefaultDialer.Dial(wsURL(n, "garbage", 0), nil)
	require.Error(t, err)
	require.Equal(t, http.StatusUnauthorized, resp.StatusCode)
	resp.Body.Close()
	r := a.Do("GET", "/v1/ws", nil)
	require.Equal(t, http.StatusBadRequest, r.Status)
	require.Equal(t, "websocket_upgrade_required", r.ErrorCode())
}

// sseEvents reads an SSE stream and sends each event's id and data.
type sseEvent struct {
	ID   string
	Data map[string]any
}

func openSSE(t *testing.T, ctx context.Context, n *testkit.Node, token, query string, hdr http.Header) (<-chan sseEvent, *http.Response) {
	t.Helper()
	req, err := http.NewRequestWithContext(ctx, "GET", n.URL()+"/v1/sse?"+query, nil)
	require.NoError(t, err)
	req.Header.Set("Authorization", "Bearer "+token)
	for k, v := range hdr {
		req.Header[k] = v
	}
	resp, err := http.DefaultClient.Do(req)
	require.NoError(t, err)
	ch := make(chan sseEvent, 1024)
	if resp.StatusCode != http.StatusOK {
		close(ch)
		return ch, resp
	}
	go func() {
		defer close(ch)
		defer resp.Body.Close()
		sc := bufio.NewScanner(resp.Body)
		sc.Buffer(make([]byte, 1<<20), 4<<20)
		var ev sseEvent
		for sc.Scan() {
			line := sc.Text()
			switch {
			case strings.HasPrefix(line, "id: "):
				ev.ID = line[4:]
			case strings.HasPrefix(line, "data: "):
				_ = json.Unmarshal([]byte(line[6:]), &ev.Data)
			case line == "" && ev.Data != nil:
				ch <- ev
				ev = sseEvent{}
			}
		}
	}()
	return ch, resp
}

func TestSSEResumeAndFraming(t *testing.T) {
	n := testkit.Start(t)
	a, b := testkit.Signup(t, n.URL(), "ssea"), testkit.Signup(t, n.URL(), "sseb")
	for i := 0; i < 3; i++ {
		a.Send(b.ID, fmt.Sprint("m", i), "")
	}
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	ch, resp := openSSE(t, ctx, n, b.Token, "cursor=0", nil)
	require.Equal(t, "text/event-stream", resp.Header.Get("Content-Type"))
	for i := 1; i <= 3; i++ {
		ev := <-ch
		require.Equal(t, fmt.Sprint(i), ev.ID, "durable events carry id: <seq>")
		require.EqualValues(t, i, ev.Data["seq"])
	}
	cancel()
	for range ch {
	}
	// Last-Event-ID wins over the URL's cursor, as EventSource reconnects.
	a.Send(b.ID, "m3", "")
	ctx2, cancel2 := context.WithCancel(context.Background())
	defer cancel2()
	ch2, _ := openSSE(t, ctx2, n, b.Token, "cursor=0", http.Header{"Last-Event-Id": {"3"}})
	ev := <-ch2
	require.Equal(t, "4", ev.ID)
	cancel2()
	for range ch2 {
	}
	_, resp = openSSE(t, context.Background(), n, "garbage", "", nil)
	require.Equal(t, http.StatusUnauthorized, resp.StatusCode)
	resp.Body.Close()
}

// A long poll is held until the event arrives and returns it; a client
// that goes away releases its request at once.
func TestLongPollWakesAndReleases(t *testing.T) {
	n := testkit.Start(t)
	a, b := testkit.Signup(t, n.URL(), "lpa"), testkit.Signup(t, n.URL(), "lpb")
	done := make(chan testkit.PollPage, 1)
	go func() {
		r := b.Do("GET", "/v1/longpoll?cursor=0&wait=60", nil)
		var p testkit.PollPage
		_ = json.Unmarshal(r.Body, &p)
		done <- p
	}()
	require.Eventually(t, func() bool { return n.Service().Stats().Polls == 1 }, 10*time.Second, 5*time.Millisecond)
	a.Send(b.ID, "wake up", "")
	p := <-done
	require.Len(t, p.Events, 1, "woken by the message, not by the 60 s wait")
	require.EqualValues(t, 1, p.Cursor)

	ctx, cancel := context.WithCancel(context.Background())
	req, _ := http.NewRequestWithContext(ctx, "GET", n.URL()+"/v1/longpoll?cursor=1&wait=60", nil)
	req.Header.Set("Authorization", "Bearer "+b.Token)
	var wg sync.WaitGroup
	wg.Add(1)
	go func() {
		defer wg.Done()
		if resp, err := http.DefaultClient.Do(req); err == nil {
			resp.Body.Close()
		}
	}()
	require.Eventually(t, func() bool { return n.Service().Stats().Polls == 1 }, 10*time.Second, 5*time.Millisecond)
	cancel()
	wg.Wait()
	require.Eventually(t, func() bool { return n.Service().Stats().Polls == 0 }, 10*time.Second, 5*time.Millisecond,
		"the server released the abandoned long poll")
	r := b.Do("GET", "/v1/longpoll?wait=61", nil)
	require.Equal(t, "invalid_wait", r.ErrorCode())
}

// A client that stops reading is cut once its queue overflows, without
// slowing the sender; it resumes by cursor and loses nothing.
func TestSlowConsumerCutAndResumed(t *testing.T) {
	for _, tr := range []string{"websocket", "sse"} {
		t.Run(tr, func(t *testing.T) {
			// Sends as fast as it can, past the default per-user limit.
			n := testkit.Start(t, testkit.WithStreamTimeouts(time.Second, time.Second), testkit.WithLimits(core.Limits{}))
			a, b := testkit.Signup(t, n.URL(), "slowa"), testkit.Signup(t, n.URL(), "slowb")
			ctx, cancel := context.WithCancel(context.Background())
			defer cancel()
			var closeConn func()
			switch tr {
			case "websocket":
				c, resp, err := websocket.DefaultDialer.Dial(wsURL(n, b.Token, 0), nil)
				require.NoError(t, err)
				resp.Body.Close()
				closeConn = func() { c.Close() }
			case "sse":
				req, _ := http.NewRequestWithContext(ctx, "GET", n.URL()+"/v1/sse?cursor=0", nil)
				req.Header.Set("Authorization", "Bearer "+b.Token)
				resp, err := http.DefaultClient.Do(req)
				require.NoError(t, err)
				closeConn = func() { resp.Body.Close() }
			}
			defer closeConn()
			require.Eventually(t, func() bool { return n.Service().Stats().Streams == 1 }, 10*time.Second, 5*time.Millisecond)
			// Never read. Large messages fill the socket buffers, then the
			// bounded queues: the server must cut the stream.
			big := strings.Repeat("z", 20_000)
			sent := 0
			for n.Service().Stats().Streams == 1 {
				require.Less(t, sent, 20_000, "the stuck client was never cut")
				a.Send(b.ID, big, "")
				sent++
			}
			events, cursor := b.PollAll(0)
			require.Len(t, events, sent, "every message is there to resume from")
			require.EqualValues(t, sent, cursor)
		})
	}
}

// Logging a device out ends its open streams at once.
func TestLogoutEndsStreams(t *testing.T) {
	n := testkit.Start(t)
	b := testkit.Signup(t, n.URL(), "lo")
	c, resp, err := websocket.DefaultDialer.Dial(wsURL(n, b.Token, 0), nil)
	require.NoError(t, err)
	resp.Body.Close()
	defer c.Close()
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	ch, _ := openSSE(t, ctx, n, b.Token, "cursor=0", nil)
	require.Eventually(t, func() bool { return n.Service().Stats().Streams == 2 }, 10*time.Second, 5*time.Millisecond)
	require.Equal(t, http.StatusNoContent, b.Do("POST", "/v1/auth/logout", nil).Status)
	_ = c.SetReadDeadline(time.Now().Add(10 * time.Second))
	for {
		if _, _, err := c.ReadMessage(); err != nil {
			require.NotErrorIs(t, err, context.DeadlineExceeded)
			var ne interface{ Timeout() bool }
			if errors.As(err, &ne) {
				require.False(t, ne.Timeout(), "the socket was not closed")
			}
			break
		}
	}
	for range ch { // the SSE stream ends
	}
	require.Eventually(t, func() bool { return n.Service().Stats().Streams == 0 }, 10*time.Second, 5*time.Millisecond)
}

// An idle WebSocket holds one goroutine on the server, its reader: writers
// exist only while events are queued, pings come from a timer. A live
// event still arrives, and afterwards the socket is idle again.
func TestIdleWebSocketHoldsOneGoroutine(t *testing.T) {
	n := testkit.Start(t)
	const conns = 40
	users := testkit.SignupMany(t, n.URL(), "idle", conns)
	require.Eventually(t, func() bool { return n.Service().Stats().Streams == 0 }, 10*time.Second, 5*time.Millisecond)
	before := runtime.NumGoroutine()
	var sockets []*websocket.Conn
	for _, u := range users {
		c, resp, err := websocket.DefaultDialer.Dial(wsURL(n, u.Token, 0), nil)
		require.NoError(t, err)
		resp.Body.Close()
		sockets = append(sockets, c)
	}
	defer func() {
		for _, c := range sockets {
			c.Close()
		}
	}()
	require.Eventually(t, func() bool { return n.Service().Stats().Streams == conns }, 10*time.Second, 5*time.Millisecond)
	// Each socket's first writer (the empty backlog) ends by itself. The
	// slack is for the runtime's own goroutines; a second goroutine per
	// socket would be 40 more.
	const slack = 5
	require.Eventually(t, func() bool { return runtime.NumGoroutine()-before <= conns+slack }, 10*time.Second, 5*time.Millisecond,
		"goroutines for %d idle sockets: %d", conns, runtime.NumGoroutine()-before)

	// A message sent over another socket (no HTTP connection comes and
	// goes) wakes a writer, which ends once it has written.
	require.NoError(t, sockets[1].WriteJSON(map[string]any{"type": "send", "to": users[0].ID, "content": "wake up"}))
	readWS(t, sockets[0], func(ev map[string]any) bool { return ev["type"] != "message" }) // reads until the message
	require.Eventually(t, func() bool { return runtime.NumGoroutine()-before <= conns+slack }, 10*time.Second, 5*time.Millisecond,
		"the writer did not end after the event")
}
