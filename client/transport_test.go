package client_test

import (
	"bufio"
	"bytes"
	"fmt"
	"net/http"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/gorilla/websocket"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/chatgate/chatgate/client"
	"github.com/chatgate/chatgate/internal/testkit"
)

var streaming = []string{client.TransportWebSocket, client.TransportSSE, client.TransportLongPolling}

// requireOffered fails the test when the node does not serve transport.
func requireOffered(t *testing.T, n *testkit.Node, transport string) {
	t.Helper()
	c := client.New(n.URL())
	defer c.CloseIdleConnections()
	neg, err := c.Negotiate(ctxT(t))
	require.NoError(t, err)
	if !slices.Contains(neg.Transports, transport) {
		t.Fatalf("the node does not offer %s (offers %v)", transport, neg.Transports)
	}
}

// Every transport carries messages both ways (a send over WebSocket is a
// frame), the largest legal message, and typing.
func TestTransports_SendReceiveTyping(t *testing.T) {
	for _, tr := range streaming {
		t.Run(tr, func(t *testing.T) {
			n := testkit.Start(t)
			requireOffered(t, n, tr)
			ctx := ctxT(t)
			p := newProxy(t, n.URL(), nil)
			alice, aliceTK := newUser(t, n.URL(), p.URL)
			bob, bobTK := newUser(t, n.URL(), n.URL())
			testkit.Befriend(t, aliceTK, bobTK)

			bobRec := newRecorder(0)
			bobConn, err := bob.Connect(ctx, bobRec.options(client.ConnectOptions{Transports: []string{tr}}))
			require.NoError(t, err)
			defer bobConn.Close()
			require.Equal(t, tr, bobConn.Transport())
			aliceConn, err := alice.Connect(ctx, client.ConnectOptions{Transports: []string{tr}})
			require.NoError(t, err)
			defer aliceConn.Close()

			m, err := aliceConn.Send(ctx, client.SendInput{To: bob.UserID(), Content: "hi over " + tr})
			require.NoError(t, err)
			if tr == client.TransportWebSocket {
				assert.Zero(t, p.requests("/v1/messages"), "sent as a frame")
			} else {
				assert.Equal(t, 1, p.requests("/v1/messages"))
			}
			evs := bobRec.waitDurable(t, 1)
			assert.Equal(t, m.ID, evs[0].Message.ID)

			big := strings.Repeat("😀", 100000)
			_, err = aliceConn.Send(ctx, client.SendInput{To: bob.UserID(), Content: big})
			require.NoError(t, err)
			evs = bobRec.waitDurable(t, 2)
			assert.True(t, evs[1].Message.Content == big, "the largest message arrives intact")

			_, err = aliceConn.Send(ctx, client.SendInput{To: "1", Content: "nobody"})
			requireAPIError(t, err, http.StatusNotFound, "user_not_found")

			require.NoError(t, aliceConn.Typing(ctx, m.ConversationID))
			bobRec.waitFor(t, "typing", func(r *recorder) bool {
				for _, e := range r.other {
					if e.Type == client.EventTyping && e.UserID == alice.UserID() && e.ConversationID == m.ConversationID {
						return true
					}
				}
				return false
			})
			require.NoError(t, bobConn.Close())
			bobRec.check(t)
		})
	}
}

// Connections cut under a live stream are resumed from the cursor without
// loss or repeat.
func TestTransports_ExactlyOnceAcrossCutConnections(t *testing.T) {
	for _, tr := range streaming {
		t.Run(tr, func(t *testing.T) {
			n := testkit.Start(t)
			requireOffered(t, n, tr)
			ctx := ctxT(t)
			p := newProxy(t, n.URL(), nil)
			bob, _ := newUser(t, n.URL(), p.URL)
			_, alice := newUser(t, n.URL(), n.URL())
			for i := range 10 {
				alice.Send(bob.UserID(), fmt.Sprintf("m%d", i), "")
			}
			rec := newRecorder(0)
			conn, err := bob.Connect(ctx, rec.options(client.ConnectOptions{Transports: []string{tr}}))
			require.NoError(t, err)
			defer conn.Close()
			const total = 60
			for i := 10; i < total; i++ {
				if i%10 == 0 {
					p.killAll()
				}
				alice.Send(bob.UserID(), fmt.Sprintf("m%d", i), "")
			}
			evs := rec.waitDurable(t, total)
			require.NoError(t, conn.Close())
			rec.check(t)
			for i, e := range evs {
				require.Equal(t, fmt.Sprintf("m%d", i), e.Message.Content)
			}
			assert.Equal(t, tr, conn.Transport(), "a cut connection is not a refusal")
			if tr != client.TransportLongPolling { // a cut idle keep-alive is retried by net/http unseen
				rec.mu.Lock()
				downs := 0
				for _, s := range rec.states {
					if !s.Connected {
						downs++
					}
				}
				rec.mu.Unlock()
				assert.Positive(t, downs, "the stream was cut and resumed")
			}
		})
	}
}

// An SSE stream that skips an event (seq 3) is dropped and resumed from
// the cursor rather than delivered out of order.
func TestSSE_GapOnLiveStreamResumes(t *testing.T) {
	n := testkit.Start(t)
	requireOffered(t, n, client.TransportSSE)
	ctx := ctxT(t)
	var mu sync.Mutex
	streams := 0
	p := newProxy(t, n.URL(), func(p *proxy, w http.ResponseWriter, r *http.Request) {
		if r.URL.Path != "/v1/sse" {
			p.forward(w, r)
			return
		}
		mu.Lock()
		streams++
		first := streams == 1
		mu.Unlock()
		req, err := http.NewRequestWithContext(r.Context(), "GET", n.URL()+r.URL.RequestURI(), nil)
		if err != nil {
			return
		}
		req.Header = r.Header.Clone()
		resp, err := p.tr.RoundTrip(req)
		if err != nil {
			w.WriteHeader(http.StatusBadGateway)
			return
		}
		defer resp.Body.Close()
		w.Header().Set("Content-Type", resp.Header.Get("Content-Type"))
		w.WriteHeader(resp.StatusCode)
		rc := http.NewResponseController(w)
		_ = rc.Flush()
		sc := bufio.NewScanner(resp.Body)
		sc.Buffer(nil, 4<<20)
		var block bytes.Buffer
		for sc.Scan() {
			block.Write(sc.Bytes())
			block.WriteByte('\n')
			if len(sc.Bytes()) > 0 {
				continue
			}
			if !(first && strings.HasPrefix(block.String(), "id: 3\n")) {
				if _, err := w.Write(block.Bytes()); err != nil {
					return
				}
				_ = rc.Flush()
			}
			block.Reset()
		}
	})
	bob, _ := newUser(t, n.URL(), p.URL)
	_, alice := newUser(t, n.URL(), n.URL())
	for i := range 5 {
		alice.Send(bob.UserID(), fmt.Sprintf("m%d", i), "")
	}
	rec := newRecorder(0)
	var gaps []error
	opts := rec.options(client.ConnectOptions{Transports: []string{client.TransportSSE}})
	opts.OnError = func(err error) { gaps = append(gaps, err) }
	conn, err := bob.Connect(ctx, opts)
	require.NoError(t, err)
	defer conn.Close()
	evs := rec.waitDurable(t, 5)
	require.NoError(t, conn.Close())
	rec.check(t)
	for i, e := range evs {
		assert.Equal(t, fmt.Sprintf("m%d", i), e.Message.Content)
	}
	mu.Lock()
	assert.GreaterOrEqual(t, streams, 2, "resumed on a new stream")
	mu.Unlock()
	require.NotEmpty(t, gaps)
	assert.Contains(t, gaps[0].Error(), "gap")
}

// With every transport offered, Connect picks the first that works: the
// WebSocket, or SSE when a proxy strips the upgrade.
func TestTransports_DefaultOrder(t *testing.T) {
	n := testkit.Start(t)
	for _, tr := range streaming {
		requireOffered(t, n, tr)
	}
	ctx := ctxT(t)
	bob, _ := newUser(t, n.URL(), n.URL())
	conn, err := bob.Connect(ctx, client.ConnectOptions{})
	require.NoError(t, err)
	assert.Equal(t, client.TransportWebSocket, conn.Transport())
	require.NoError(t, conn.Close())

	p := newProxy(t, n.URL(), func(p *proxy, w http.ResponseWriter, r *http.Request) {
		if r.URL.Path == "/v1/ws" {
			r.Header.Del("Upgrade")
			r.Header.Del("Connection")
		}
		p.forward(w, r)
	})
	carol, _ := newUser(t, n.URL(), p.URL)
	conn, err = carol.Connect(ctx, client.ConnectOptions{IdleTimeout: time.Minute})
	require.NoError(t, err)
	assert.Equal(t, client.TransportSSE, conn.Transport())
	require.NoError(t, conn.Close())
}

// A send frame whose answer is lost with the socket is retried with the
// same client_msg_id (over the next connection) and stored once.
func TestWebSocket_SendRetriedAfterLostAnswer(t *testing.T) {
	n := testkit.Start(t)
	requireOffered(t, n, client.TransportWebSocket)
	ctx := ctxT(t)
	var mu sync.Mutex
	sockets, sendFrames := 0, 0
	var wg sync.WaitGroup
	t.Cleanup(wg.Wait)
	p := newProxy(t, n.URL(), func(p *proxy, w http.ResponseWriter, r *http.Request) {
		if r.URL.Path != "/v1/ws" {
			p.forward(w, r)
			return
		}
		mu.Lock()
		sockets++
		first := sockets == 1
		mu.Unlock()
		if !first {
			p.forward(w, r)
			return
		}
		// The first socket: relay frames, but lose the answer of the first
		// send and the socket with it.
		h := http.Header{"Authorization": r.Header.Values("Authorization")}
		up, _, err := websocket.DefaultDialer.DialContext(r.Context(), "ws"+strings.TrimPrefix(n.URL(), "http")+r.URL.RequestURI(), h)
		if err != nil {
			w.WriteHeader(http.StatusBadGateway)
			return
		}
		defer up.Close()
		down, err := (&websocket.Upgrader{}).Upgrade(w, r, nil)
		if err != nil {
			return
		}
		defer down.Close()
		sentSeen := make(chan struct{})
		wg.Add(1)
		go func() { // node → client, until the answer to the send
			defer wg.Done()
			for {
				_, b, err := up.ReadMessage()
				if err != nil {
					return
				}
				if strings.Contains(string(b), `"type":"sent"`) {
					close(sentSeen)
					return
				}
				if down.WriteMessage(websocket.TextMessage, b) != nil {
					return
				}
			}
		}()
		for { // client → node
			_, b, err := down.ReadMessage()
			if err != nil {
				return
			}
			if up.WriteMessage(websocket.TextMessage, b) != nil {
				return
			}
			if strings.Contains(string(b), `"type":"send"`) {
				mu.Lock()
				sendFrames++
				mu.Unlock()
				select {
				case <-sentSeen: // stored; now lose the answer and the socket
				case <-r.Context().Done():
				}
				return
			}
		}
	})
	alice, _ := newUser(t, n.URL(), p.URL)
	bob, bobTK := newUser(t, n.URL(), n.URL())
	rec := newRecorder(0)
	bobConn, err := bob.Connect(ctx, rec.options(client.ConnectOptions{Transports: []string{client.TransportPolling}, PollInterval: 5 * time.Millisecond}))
	require.NoError(t, err)
	defer bobConn.Close()

	conn, err := alice.Connect(ctx, client.ConnectOptions{Transports: []string{client.TransportWebSocket}})
	require.NoError(t, err)
	defer conn.Close()
	m, err := conn.Send(ctx, client.SendInput{To: bob.UserID(), Content: "exactly once", ClientMsgID: "ws-retry-1"})
	require.NoError(t, err)
	assert.Equal(t, "ws-retry-1", m.ClientMsgID)
	mu.Lock()
	assert.Equal(t, 1, sendFrames, "the first attempt went over the socket that was lost")
	mu.Unlock()

	evs := rec.waitDurable(t, 1)
	assert.Equal(t, m.ID, evs[0].Message.ID)
	r := bobTK.Do("GET", "/v1/conversations/"+m.ConversationID+"/messages", nil)
	require.Equal(t, http.StatusOK, r.Status)
	assert.Len(t, r.JSON()["messages"].([]any), 1, "stored once")
	require.NoError(t, conn.Close())
	require.NoError(t, bobConn.Close())
	rec.check(t)
}

// A stream that opens and then goes silent (no heartbeat) is treated as
// dead after IdleTimeout and reopened.
func TestSSE_SilentStreamIsReopened(t *testing.T) {
	n := testkit.Start(t)
	ctx := ctxT(t)
	opened := make(chan struct{}, 10)
	p := newProxy(t, n.URL(), func(p *proxy, w http.ResponseWriter, r *http.Request) {
		if r.URL.Path != "/v1/sse" {
			p.forward(w, r)
			return
		}
		w.Header().Set("Content-Type", "text/event-stream")
		_, _ = w.Write([]byte("retry: 2000\n: open\n\n"))
		_ = http.NewResponseController(w).Flush()
		opened <- struct{}{}
		<-r.Context().Done()
	})
	bob, _ := newUser(t, n.URL(), p.URL)
	rec := newRecorder(0)
	conn, err := bob.Connect(ctx, rec.options(client.ConnectOptions{
		Transports:  []string{client.TransportSSE},
		IdleTimeout: 50 * time.Millisecond,
		Negotiation: &client.Negotiation{Server: p.URL, HeartbeatInterval: time.Hour},
	}))
	require.NoError(t, err)
	defer conn.Close()
	for range 3 {
		select {
		case <-opened:
		case <-ctx.Done():
			t.Fatal("the silent stream was not reopened")
		}
	}
	require.NoError(t, conn.Close())
	rec.mu.Lock()
	defer rec.mu.Unlock()
	require.NotEmpty(t, rec.states)
	for _, s := range rec.states {
		if !s.Connected {
			assert.ErrorContains(t, s.Err, "silent")
		}
	}
}
