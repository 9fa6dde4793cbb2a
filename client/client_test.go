package client_test

import (
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"go.uber.org/goleak"

	"github.com/chatgate/chatgate/client"
	"github.com/chatgate/chatgate/internal/testkit"
)

var polling = []string{client.TransportPolling}

func TestClient_SignupLoginNegotiate(t *testing.T) {
	n := testkit.Start(t)
	ctx := ctxT(t)
	name := testkit.UniqueName("signup")

	c := client.New(n.URL())
	defer c.CloseIdleConnections()
	acc, err := c.Signup(ctx, client.SignupInput{Username: name, Password: "correct horse", DisplayName: "Sig"})
	require.NoError(t, err)
	assert.NotEmpty(t, acc.Token)
	assert.Equal(t, "Sig", acc.User.DisplayName)
	assert.Equal(t, acc.User.ID, c.UserID())
	assert.Equal(t, acc.Token, c.Token())

	_, err = c.Signup(ctx, client.SignupInput{Username: name, Password: "correct horse"})
	requireAPIError(t, err, http.StatusConflict, "username_taken")

	d := client.New(n.URL())
	defer d.CloseIdleConnections()
	_, err = d.Login(ctx, name, "wrong horse", "")
	requireAPIError(t, err, http.StatusUnauthorized, "invalid_credentials")
	assert.Empty(t, d.Token())
	_, err = d.Connect(ctx, client.ConnectOptions{Transports: polling})
	require.ErrorIs(t, err, client.ErrNotLoggedIn)

	acc2, err := d.Login(ctx, name, "correct horse", "phone")
	require.NoError(t, err)
	assert.Equal(t, acc.User.ID, acc2.User.ID)
	assert.NotEqual(t, acc.Token, acc2.Token)
	assert.NotEqual(t, acc.DeviceID, d.DeviceID())

	neg, err := d.Negotiate(ctx)
	require.NoError(t, err)
	assert.Equal(t, n.URL(), neg.Server)
	assert.Contains(t, neg.Transports, client.TransportPolling)
	assert.Equal(t, 5*time.Second, neg.HeartbeatInterval)
	assert.Equal(t, 100000, neg.MaxMessageChars)

	require.NoError(t, d.Logout(ctx))
	assert.Empty(t, d.Token())
	// The other device is still logged in.
	require.NoError(t, c.Heartbeat(ctx))
}

func TestConn_PollingReceivesAndSends(t *testing.T) {
	n := testkit.Start(t)
	ctx := ctxT(t)
	bob, _ := newUser(t, n.URL(), n.URL())
	_, alice := newUser(t, n.URL(), n.URL())

	rec := newRecorder(0)
	conn, err := bob.Connect(ctx, rec.options(client.ConnectOptions{Transports: polling, PollInterval: 5 * time.Millisecond}))
	require.NoError(t, err)
	defer conn.Close()
	assert.Equal(t, client.TransportPolling, conn.Transport())
	assert.True(t, conn.Connected())

	for i := range 5 {
		alice.Send(bob.UserID(), fmt.Sprintf("hi %d", i), fmt.Sprintf("a-%d", i))
	}
	evs := rec.waitDurable(t, 5)
	for i, e := range evs {
		require.Equal(t, client.EventMessage, e.Type)
		assert.Equal(t, uint64(i+1), e.Seq)
		assert.Equal(t, fmt.Sprintf("hi %d", i), e.Message.Content)
		assert.Equal(t, alice.ID, e.Message.From)
		assert.Equal(t, bob.UserID(), e.Message.To)
		assert.False(t, e.Message.CreatedAt.IsZero())
		assert.Contains(t, string(e.Raw), `"type":"message"`)
	}

	// Bob answers; his own message comes back through his inbox.
	m, err := conn.Send(ctx, client.SendInput{To: alice.ID, Content: "hello alice"})
	require.NoError(t, err)
	assert.Equal(t, bob.UserID(), m.From)
	assert.NotEmpty(t, m.ClientMsgID, "a client_msg_id is generated")
	evs = rec.waitDurable(t, 6)
	assert.Equal(t, m.ID, evs[5].Message.ID)

	// A second send with the same key is the same message.
	again, err := conn.Send(ctx, client.SendInput{To: alice.ID, Content: "hello alice", ClientMsgID: m.ClientMsgID})
	require.NoError(t, err)
	assert.Equal(t, m.ID, again.ID)

	require.NoError(t, conn.Close())
	assert.Equal(t, uint64(6), conn.Cursor())
	assert.False(t, conn.Connected())
	rec.check(t)
}

func TestConn_ResumesFromCursor(t *testing.T) {
	n := testkit.Start(t)
	ctx := ctxT(t)
	bob, _ := newUser(t, n.URL(), n.URL())
	_, alice := newUser(t, n.URL(), n.URL())
	for i := range 3 {
		alice.Send(bob.UserID(), fmt.Sprintf("old %d", i), "")
	}

	rec := newRecorder(2)
	conn, err := bob.Connect(ctx, rec.options(client.ConnectOptions{Transports: polling, PollInterval: 5 * time.Millisecond}))
	require.NoError(t, err)
	defer conn.Close()
	alice.Send(bob.UserID(), "new", "")
	evs := rec.waitDurable(t, 2)
	require.Len(t, evs, 2)
	assert.Equal(t, "old 2", evs[0].Message.Content)
	assert.Equal(t, "new", evs[1].Message.Content)
	rec.check(t)
}

// A proxy hides every transport but short polling, each in a way seen in
// the field; the Conn must end up polling and deliver.
func TestConnect_FallsBackWhenTransportsAreRefused(t *testing.T) {
	cases := []struct {
		name                 string
		ws, sse, longpolling func(p *proxy, w http.ResponseWriter, r *http.Request)
	}{{
		name: "upgrade stripped, sse as html, longpoll 404",
		ws: func(p *proxy, w http.ResponseWriter, r *http.Request) {
			r.Header.Del("Upgrade")
			r.Header.Del("Connection")
			p.forward(w, r)
		},
		sse: func(p *proxy, w http.ResponseWriter, r *http.Request) {
			w.Header().Set("Content-Type", "text/html")
			_, _ = w.Write([]byte("<html>blocked</html>"))
		},
		longpolling: func(p *proxy, w http.ResponseWriter, r *http.Request) { http.NotFound(w, r) },
	}, {
		name: "upgrade 502, sse never starts, longpoll 500",
		ws:   func(p *proxy, w http.ResponseWriter, r *http.Request) { w.WriteHeader(http.StatusBadGateway) },
		sse: func(p *proxy, w http.ResponseWriter, r *http.Request) {
			// A buffering proxy: headers, then nothing.
			w.Header().Set("Content-Type", "text/event-stream")
			w.WriteHeader(http.StatusOK)
			http.NewResponseController(w).Flush()
			<-r.Context().Done()
		},
		longpolling: func(p *proxy, w http.ResponseWriter, r *http.Request) { w.WriteHeader(http.StatusInternalServerError) },
	}, {
		name: "upgrade 403, sse no answer, longpoll cut",
		ws: func(p *proxy, w http.ResponseWriter, r *http.Request) {
			http.Error(w, "forbidden", http.StatusForbidden)
		},
		sse: func(p *proxy, w http.ResponseWriter, r *http.Request) { <-r.Context().Done() },
		longpolling: func(p *proxy, w http.ResponseWriter, r *http.Request) {
			cut(w)
		},
	}}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			n := testkit.Start(t)
			ctx := ctxT(t)
			p := newProxy(t, n.URL(), func(p *proxy, w http.ResponseWriter, r *http.Request) {
				switch r.URL.Path {
				case "/v1/ws":
					tc.ws(p, w, r)
				case "/v1/sse":
					tc.sse(p, w, r)
				case "/v1/longpoll":
					tc.longpolling(p, w, r)
				case "/v1/negotiate":
					// Offer all four whatever the node offers today.
					w.Header().Set("Content-Type", "application/json")
					fmt.Fprintf(w, `{"server":%q,"transports":["websocket","sse","longpolling","polling"],"heartbeat_interval_ms":5000}`, "http://"+r.Host)
				default:
					p.forward(w, r)
				}
			})
			bob, _ := newUser(t, n.URL(), p.URL)
			_, alice := newUser(t, n.URL(), n.URL())

			rec := newRecorder(0)
			var errs []error
			var mu sync.Mutex
			opts := rec.options(client.ConnectOptions{PollInterval: 5 * time.Millisecond, ConnectTimeout: 500 * time.Millisecond})
			opts.OnError = func(err error) { mu.Lock(); errs = append(errs, err); mu.Unlock() }
			conn, err := bob.Connect(ctx, opts)
			require.NoError(t, err)
			defer conn.Close()
			assert.Equal(t, client.TransportPolling, conn.Transport())
			for _, path := range []string{"/v1/ws", "/v1/sse", "/v1/longpoll"} {
				assert.Equal(t, 1, p.requests(path), "%s tried once", path)
			}

			alice.Send(bob.UserID(), "through the proxy", "")
			evs := rec.waitDurable(t, 1)
			assert.Equal(t, "through the proxy", evs[0].Message.Content)
			require.NoError(t, conn.Close())
			rec.check(t)
		})
	}
}

func TestConnect_NoTransportWorks(t *testing.T) {
	n := testkit.Start(t)
	p := newProxy(t, n.URL(), func(p *proxy, w http.ResponseWriter, r *http.Request) {
		if r.URL.Path == "/v1/poll" || r.URL.Path == "/v1/longpoll" {
			w.WriteHeader(http.StatusBadGateway)
			return
		}
		p.forward(w, r)
	})
	bob, _ := newUser(t, n.URL(), p.URL)
	_, err := bob.Connect(ctxT(t), client.ConnectOptions{Transports: []string{"longpolling", "polling"}})
	require.Error(t, err)
	assert.Contains(t, err.Error(), "longpolling")
	assert.Contains(t, err.Error(), "polling")

	_, err = bob.Connect(ctxT(t), client.ConnectOptions{Transports: []string{"carrier-pigeon"}})
	require.Error(t, err)
}

// Sends whose answer is lost (a 502 after the node stored the message, a
// connection cut after it) are retried with the same client_msg_id and
// yield one stored message.
func TestSend_RetriesWithTheSameClientMsgID(t *testing.T) {
	n := testkit.Start(t)
	ctx := ctxT(t)
	var mu sync.Mutex
	var keys []string
	p := newProxy(t, n.URL(), func(p *proxy, w http.ResponseWriter, r *http.Request) {
		if r.URL.Path != "/v1/messages" {
			p.forward(w, r)
			return
		}
		mu.Lock()
		keys = append(keys, bodyField(t, r, "client_msg_id"))
		attempt := len(keys)
		mu.Unlock()
		switch attempt {
		case 1: // stored, but the answer is lost
			p.roundTrip(r)
			w.WriteHeader(http.StatusBadGateway)
		case 2: // stored again (replayed), connection lost
			p.roundTrip(r)
			cut(w)
		case 3: // the node is unavailable
			http.Error(w, `{"error":{"code":"unavailable","message":"try again"}}`, http.StatusServiceUnavailable)
		default:
			p.forward(w, r)
		}
	})
	alice, _ := newUser(t, n.URL(), p.URL)
	bob, bobTK := newUser(t, n.URL(), n.URL())

	rec := newRecorder(0)
	conn, err := bob.Connect(ctx, rec.options(client.ConnectOptions{Transports: polling, PollInterval: 5 * time.Millisecond}))
	require.NoError(t, err)
	defer conn.Close()

	m, err := alice.Send(ctx, client.SendInput{To: bob.UserID(), Content: "once"})
	require.NoError(t, err)
	assert.Equal(t, "once", m.Content)
	mu.Lock()
	require.Len(t, keys, 4)
	for _, k := range keys {
		assert.Equal(t, m.ClientMsgID, k)
	}
	mu.Unlock()

	// One message stored, delivered once.
	r := bobTK.Do("GET", "/v1/conversations/"+url.PathEscape(m.ConversationID)+"/messages", nil)
	require.Equal(t, http.StatusOK, r.Status)
	msgs := r.JSON()["messages"].([]any)
	require.Len(t, msgs, 1)
	assert.Equal(t, m.ID, msgs[0].(map[string]any)["id"])
	evs := rec.waitDurable(t, 1)
	assert.Equal(t, m.ID, evs[0].Message.ID)
	require.NoError(t, conn.Close())
	rec.check(t)
}

func TestSend_ClientErrorsAreNotRetried(t *testing.T) {
	n := testkit.Start(t)
	ctx := ctxT(t)
	p := newProxy(t, n.URL(), nil)
	alice, _ := newUser(t, n.URL(), p.URL)

	_, err := alice.Send(ctx, client.SendInput{To: "1", Content: "nobody"})
	requireAPIError(t, err, http.StatusNotFound, "user_not_found")
	_, err = alice.Send(ctx, client.SendInput{To: alice.UserID(), Content: ""})
	requireAPIError(t, err, http.StatusBadRequest, "content_empty")
	_, err = alice.Send(ctx, client.SendInput{To: alice.UserID(), GroupID: "5", Content: "x"})
	requireAPIError(t, err, http.StatusBadRequest, "invalid_recipient")
	_, err = alice.Send(ctx, client.SendInput{To: alice.UserID(), Content: strings.Repeat("é", 100001)})
	requireAPIError(t, err, http.StatusBadRequest, "content_too_long")
	assert.Equal(t, 4, p.requests("/v1/messages"))

	// The largest legal message goes through.
	big := strings.Repeat("😀", 100000)
	m, err := alice.Send(ctx, client.SendInput{To: alice.UserID(), Content: big})
	require.NoError(t, err)
	assert.Equal(t, big, m.Content)
}

// The realtime loop resumes from its cursor through every kind of failure:
// errors, lost answers, a server that replays old events, a page with a
// hole. Each durable event reaches the caller once, in order. Pages are
// cut to 5 events so that the backlog takes many polls, each meeting the
// next fault of a fixed cycle.
func TestConn_ExactlyOnceAcrossReconnects(t *testing.T) {
	n := testkit.Start(t)
	ctx := ctxT(t)
	var mu sync.Mutex
	polls, replayed, holes := 0, 0, 0
	p := newProxy(t, n.URL(), func(p *proxy, w http.ResponseWriter, r *http.Request) {
		if r.URL.Path != "/v1/poll" {
			p.forward(w, r)
			return
		}
		q := r.URL.Query()
		q.Set("limit", "5")
		r.URL.RawQuery = q.Encode()
		mu.Lock()
		polls++
		k := polls % 6
		mu.Unlock()
		switch k {
		case 1: // refused for a while
			w.WriteHeader(http.StatusBadGateway)
		case 2: // answered, but the answer is lost
			p.roundTrip(r)
			cut(w)
		case 3: // a replay: the node answers from an older cursor
			cur, _ := strconv.ParseUint(q.Get("cursor"), 10, 64)
			if cur > 0 {
				mu.Lock()
				replayed++
				mu.Unlock()
			}
			q.Set("cursor", strconv.FormatUint(cur-min(cur, 3), 10))
			r.URL.RawQuery = q.Encode()
			p.forward(w, r)
		case 4: // a page with its first event missing
			rec := p.roundTrip(r)
			var page map[string]any
			if err := json.Unmarshal(rec.Body.Bytes(), &page); err != nil {
				w.WriteHeader(http.StatusBadGateway)
				return
			}
			if evs, _ := page["events"].([]any); len(evs) > 1 {
				page["events"] = evs[1:]
				mu.Lock()
				holes++
				mu.Unlock()
			}
			w.Header().Set("Content-Type", "application/json")
			_ = json.NewEncoder(w).Encode(page)
		default:
			p.forward(w, r)
		}
	})
	bob, _ := newUser(t, n.URL(), p.URL)
	_, alice := newUser(t, n.URL(), n.URL())

	const backlog, live = 60, 10
	for i := range backlog {
		alice.Send(bob.UserID(), fmt.Sprintf("m%d", i), fmt.Sprintf("k%d", i))
	}
	rec := newRecorder(0)
	conn, err := bob.Connect(ctx, rec.options(client.ConnectOptions{Transports: polling, PollInterval: 2 * time.Millisecond}))
	require.NoError(t, err)
	defer conn.Close()
	rec.waitDurable(t, backlog)
	for i := backlog; i < backlog+live; i++ {
		alice.Send(bob.UserID(), fmt.Sprintf("m%d", i), fmt.Sprintf("k%d", i))
	}
	evs := rec.waitDurable(t, backlog+live)
	require.NoError(t, conn.Close())
	rec.check(t)
	require.Len(t, rec.snapshot(), backlog+live, "nothing after the last")
	for i, e := range evs {
		assert.Equal(t, fmt.Sprintf("m%d", i), e.Message.Content)
	}
	assert.Equal(t, uint64(backlog+live), conn.Cursor())

	mu.Lock()
	assert.Positive(t, replayed, "old events were replayed")
	assert.Positive(t, holes, "pages had holes")
	mu.Unlock()
	rec.mu.Lock()
	downs := 0
	for _, s := range rec.states {
		if !s.Connected {
			downs++
		}
	}
	rec.mu.Unlock()
	assert.Greater(t, downs, 3, "the faults forced reconnects")
}

func TestConn_UnauthorizedStops(t *testing.T) {
	n := testkit.Start(t)
	ctx := ctxT(t)

	bogus := client.New(n.URL(), client.WithToken("not-a-token", ""))
	defer bogus.CloseIdleConnections()
	_, err := bogus.Connect(ctx, client.ConnectOptions{})
	requireAPIError(t, err, http.StatusUnauthorized, "unauthorized")

	bob, bobTK := newUser(t, n.URL(), n.URL())
	conn, err := bob.Connect(ctx, client.ConnectOptions{Transports: polling, PollInterval: 5 * time.Millisecond})
	require.NoError(t, err)
	defer conn.Close()
	// The device is logged out elsewhere (same token): the Conn stops.
	require.Equal(t, http.StatusNoContent, bobTK.Do("POST", "/v1/auth/logout", nil).Status)
	select {
	case <-conn.Done():
	case <-ctx.Done():
		t.Fatal("the Conn kept running with a revoked token")
	}
	requireAPIError(t, conn.Err(), http.StatusUnauthorized, "unauthorized")
}

func TestConn_HeartbeatsWhenIdle(t *testing.T) {
	n := testkit.Start(t)
	ctx := ctxT(t)
	beats := make(chan struct{}, 100)
	p := newProxy(t, n.URL(), func(p *proxy, w http.ResponseWriter, r *http.Request) {
		if r.URL.Path == "/v1/heartbeat" {
			beats <- struct{}{}
		}
		p.forward(w, r)
	})
	bob, _ := newUser(t, n.URL(), p.URL)
	conn, err := bob.Connect(ctx, client.ConnectOptions{
		Transports: polling,
		// Polls are activity: poll rarely so that heartbeats are needed.
		PollInterval: time.Hour,
		Negotiation:  &client.Negotiation{Server: p.URL, HeartbeatInterval: 10 * time.Millisecond},
	})
	require.NoError(t, err)
	defer conn.Close()
	for range 3 {
		select {
		case <-beats:
		case <-ctx.Done():
			t.Fatal("no heartbeat")
		}
	}
}

// An open stream keeps the device online by itself: an idle streaming
// client sends no heartbeats (they would cost a request per interval).
func TestConn_StreamsSendNoHeartbeat(t *testing.T) {
	n := testkit.Start(t)
	ctx := ctxT(t)
	var beats atomic.Int64
	p := newProxy(t, n.URL(), func(p *proxy, w http.ResponseWriter, r *http.Request) {
		if r.URL.Path == "/v1/heartbeat" {
			beats.Add(1)
		}
		p.forward(w, r)
	})
	bob, _ := newUser(t, n.URL(), p.URL)
	conn, err := bob.Connect(ctx, client.ConnectOptions{
		Transports:  []string{client.TransportSSE},
		Negotiation: &client.Negotiation{Server: p.URL, HeartbeatInterval: 10 * time.Millisecond},
	})
	require.NoError(t, err)
	defer conn.Close()
	// Many heartbeat intervals pass; the device stays online without one.
	alice, _ := newUser(t, n.URL(), n.URL())
	var u struct {
		Friends []struct{ Status string } `json:"friends"`
	}
	require.NoError(t, alice.Do(ctx, "PUT", "/v1/friends/"+bob.UserID(), nil, nil))
	require.NoError(t, bob.Do(ctx, "PUT", "/v1/friends/"+alice.UserID(), nil, nil))
	deadline := time.Now().Add(300 * time.Millisecond)
	for time.Now().Before(deadline) {
		require.NoError(t, alice.Do(ctx, "GET", "/v1/friends", nil, &u))
		require.Equal(t, "online", u.Friends[0].Status)
	}
	require.Zero(t, beats.Load(), "no heartbeat while the stream is open")
}

func TestConn_CloseLeavesNoGoroutine(t *testing.T) {
	n := testkit.Start(t)
	ctx := ctxT(t)
	bob, _ := newUser(t, n.URL(), n.URL())
	opt := goleak.IgnoreCurrent()
	for _, trs := range [][]string{polling, {client.TransportLongPolling}, {client.TransportSSE}, {client.TransportWebSocket}} {
		conn, err := bob.Connect(ctx, client.ConnectOptions{Transports: trs, PollInterval: time.Millisecond})
		if err != nil {
			// A transport this node does not serve yet.
			t.Logf("%v: %v", trs, err)
			continue
		}
		require.NoError(t, conn.Close())
		require.NoError(t, conn.Close(), "idempotent")
	}
	bob.CloseIdleConnections()
	n.Stop(t) // the node's handlers for our connections end with it
	goleak.VerifyNone(t, append(serverGoroutines, opt)...)
}

func TestBackoffErrorsAreTyped(t *testing.T) {
	e := &client.APIError{Status: 503, Code: "unavailable", Message: "x"}
	assert.True(t, e.Temporary())
	assert.False(t, (&client.APIError{Status: 409}).Temporary())
	assert.True(t, errors.As(fmt.Errorf("wrapped: %w", e), new(*client.APIError)))
	assert.Regexp(t, `^[0-9a-f]{8}-[0-9a-f]{4}-4[0-9a-f]{3}-[89ab][0-9a-f]{3}-[0-9a-f]{12}$`, client.NewClientMsgID())
}
