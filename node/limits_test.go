package node_test

import (
	"bufio"
	"context"
	"net"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/gorilla/websocket"
	"github.com/stretchr/testify/require"

	"github.com/chatgate/chatgate/core"
	"github.com/chatgate/chatgate/internal/testkit"
	"github.com/chatgate/chatgate/node"
)

// Sends past a user's allowance are refused with 429 and Retry-After over
// HTTP, and with an error frame over WebSocket; nothing refused is stored,
// and other users keep their own allowance.
func TestSendLimit(t *testing.T) {
	n := testkit.Start(t, func(c *node.Config) {
		c.Limits = core.Limits{SendsPerUser: core.Rate{N: 3, Per: time.Hour}}
	})
	alice, bob := testkit.Signup(t, n.URL(), "sl-a"), testkit.Signup(t, n.URL(), "sl-b")
	testkit.Befriend(t, alice, bob)
	for i := range 3 {
		send(t, alice, map[string]any{"to": bob.ID, "content": "hi", "client_msg_id": "m" + string(rune('0'+i))})
	}
	r := alice.Do("POST", "/v1/messages", map[string]any{"to": bob.ID, "content": "one too many", "client_msg_id": "m3"})
	requireError(t, r, http.StatusTooManyRequests, "rate_limited")
	require.NotEmpty(t, r.Header.Get("Retry-After"))

	// Over WebSocket the refusal answers the frame; the socket stays.
	ws, _, err := websocket.DefaultDialer.Dial(strings.Replace(n.URL(), "http", "ws", 1)+"/v1/ws?access_token="+alice.Token, nil)
	require.NoError(t, err)
	defer ws.Close()
	require.NoError(t, ws.WriteJSON(map[string]any{"type": "send", "to": bob.ID, "content": "ws", "client_msg_id": "w1"}))
	for {
		var ev map[string]any
		require.NoError(t, ws.ReadJSON(&ev))
		if ev["type"] == "error" {
			require.Equal(t, "rate_limited", ev["error"].(map[string]any)["code"], "%v", ev)
			require.Equal(t, "w1", ev["client_msg_id"])
			break
		}
		require.NotEqual(t, "sent", ev["type"], "a send past the limit was accepted: %v", ev)
	}

	msgs, _ := historyOf(t, bob, directConv(alice, bob), "")
	require.Len(t, msgs, 3, "only the allowed sends are stored")
	send(t, bob, map[string]any{"to": alice.ID, "content": "bob has his own allowance", "client_msg_id": "b1"})
}

// A WebSocket client flooding frames, or bytes (which counts what no frame
// count sees, like endless empty fragments), past its allowance is closed
// with 1008 rate_limited.
func TestWebSocketFrameFlood(t *testing.T) {
	for name, limits := range map[string]core.Limits{
		"frames": {FramesPerSocket: core.Rate{N: 20, Per: time.Hour}},
		"bytes":  {BytesPerSocket: core.Rate{N: 1000, Per: time.Hour}},
	} {
		t.Run(name, func(t *testing.T) {
			n := testkit.Start(t, func(c *node.Config) { c.Limits = limits })
			alice := testkit.Signup(t, n.URL(), "ff")
			ws, _, err := websocket.DefaultDialer.Dial(strings.Replace(n.URL(), "http", "ws", 1)+"/v1/ws?access_token="+alice.Token, nil)
			require.NoError(t, err)
			defer ws.Close()
			for range 200 {
				if err := ws.WriteMessage(websocket.TextMessage, []byte(`{"type":"heartbeat"}`)); err != nil {
					break // the server has closed: writes may fail before the close is read
				}
			}
			require.NoError(t, ws.SetReadDeadline(time.Now().Add(30*time.Second)))
			for {
				_, _, err := ws.ReadMessage()
				if err == nil {
					continue
				}
				var ce *websocket.CloseError
				require.ErrorAs(t, err, &ce)
				require.Equal(t, websocket.ClosePolicyViolation, ce.Code)
				require.Equal(t, "rate_limited", ce.Text)
				return
			}
		})
	}
}

// A user's connections past -max-conns-per-user are refused with 429
// too_many_connections before any upgrade, on every transport; a closed
// one frees its slot.
func TestConnsPerUser(t *testing.T) {
	n := testkit.Start(t, func(c *node.Config) { c.Limits = core.Limits{ConnsPerUser: 2} })
	alice := testkit.Signup(t, n.URL(), "cpu")
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	open := func() (*http.Response, error) {
		req, _ := http.NewRequestWithContext(ctx, "GET", n.URL()+"/v1/sse", nil)
		req.Header.Set("Authorization", "Bearer "+alice.Token)
		return http.DefaultClient.Do(req)
	}
	var held []*http.Response
	for range 2 {
		resp, err := open()
		require.NoError(t, err)
		require.Equal(t, http.StatusOK, resp.StatusCode)
		held = append(held, resp)
	}
	resp, err := open()
	require.NoError(t, err)
	resp.Body.Close()
	require.Equal(t, http.StatusTooManyRequests, resp.StatusCode)
	require.Equal(t, "1", resp.Header.Get("Retry-After"))

	_, wresp, err := websocket.DefaultDialer.Dial(strings.Replace(n.URL(), "http", "ws", 1)+"/v1/ws?access_token="+alice.Token, nil)
	require.Error(t, err)
	require.Equal(t, http.StatusTooManyRequests, wresp.StatusCode)
	r := alice.Do("GET", "/v1/poll", nil)
	requireError(t, r, http.StatusTooManyRequests, "too_many_connections")

	held[0].Body.Close()
	require.Eventually(t, func() bool {
		return alice.Do("GET", "/v1/poll", nil).Status == http.StatusOK
	}, 10*time.Second, 10*time.Millisecond, "a closed stream frees its slot")
	held[1].Body.Close()
}

// Connections from one address past -max-conns-per-address get a plain 429
// at accept and are closed; a closed connection frees its slot.
func TestConnsPerAddress(t *testing.T) {
	n := testkit.Start(t, func(c *node.Config) {
		c.MaxConnsPerAddress = 3
		c.Limits.Loopback = true
	})
	var conns []net.Conn
	for range 3 {
		c, err := net.Dial("tcp", n.Addr())
		require.NoError(t, err)
		conns = append(conns, c)
	}
	// The slots are taken at accept, which the server does in its own
	// time: the first three are counted once one of them has an answer.
	_, err := conns[0].Write([]byte("GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n"))
	require.NoError(t, err)
	st, err := http.ReadResponse(bufio.NewReader(conns[0]), nil)
	require.NoError(t, err)
	require.Equal(t, http.StatusOK, st.StatusCode)
	require.Eventually(t, func() bool { return refused(t, n.Addr()) }, 10*time.Second, 10*time.Millisecond)

	conns[1].Close()
	require.Eventually(t, func() bool { return !refused(t, n.Addr()) }, 10*time.Second, 10*time.Millisecond,
		"a closed connection frees its slot")
	for _, c := range conns {
		c.Close()
	}
}

// refused opens a connection and reports whether it got the 429 answer.
func refused(t *testing.T, addr string) bool {
	c, err := net.Dial("tcp", addr)
	require.NoError(t, err)
	defer c.Close()
	_, _ = c.Write([]byte("GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n"))
	require.NoError(t, c.SetReadDeadline(time.Now().Add(10*time.Second)))
	resp, err := http.ReadResponse(bufio.NewReader(c), nil)
	require.NoError(t, err)
	defer resp.Body.Close()
	if resp.StatusCode == http.StatusTooManyRequests {
		require.Equal(t, "1", resp.Header.Get("Retry-After"))
		return true
	}
	require.Equal(t, http.StatusOK, resp.StatusCode)
	return false
}

// WebSocket frames are decoded strictly by their type, like request
// bodies: a field of another frame type is an error, and nothing is done.
func TestWebSocketFramesStrict(t *testing.T) {
	n := testkit.Start(t)
	alice, bob := testkit.Signup(t, n.URL(), "wss-a"), testkit.Signup(t, n.URL(), "wss-b")
	testkit.Befriend(t, alice, bob)
	ws, _, err := websocket.DefaultDialer.Dial(strings.Replace(n.URL(), "http", "ws", 1)+"/v1/ws?access_token="+alice.Token, nil)
	require.NoError(t, err)
	defer ws.Close()
	for _, f := range []map[string]any{
		{"type": "send", "to": bob.ID, "content": "x", "client_msg_id": "s1", "conversation_id": directConv(alice, bob)},
		{"type": "typing", "conversation_id": directConv(alice, bob), "content": "x"},
		{"type": "heartbeat", "to": bob.ID},
	} {
		require.NoError(t, ws.WriteJSON(f))
		for {
			var ev map[string]any
			require.NoError(t, ws.ReadJSON(&ev))
			if ev["type"] == "error" {
				require.Equal(t, "unknown_field", ev["error"].(map[string]any)["code"], "%v: %v", f, ev)
				if f["client_msg_id"] != nil {
					require.Equal(t, "s1", ev["client_msg_id"])
				}
				break
			}
			require.NotEqual(t, "sent", ev["type"], "%v was accepted", f)
		}
	}
	msgs, _ := historyOf(t, bob, directConv(alice, bob), "")
	require.Empty(t, msgs)
}

// Searches past a user's allowance are refused with 429 and Retry-After;
// other users keep their own allowance.
func TestSearchLimit(t *testing.T) {
	n := testkit.Start(t, func(c *node.Config) {
		c.Limits = core.Limits{SearchesPerUser: core.Rate{N: 2, Per: time.Hour}}
	})
	alice, bob := testkit.Signup(t, n.URL(), "ql-a"), testkit.Signup(t, n.URL(), "ql-b")
	requireError(t, alice.Do("GET", "/v1/search?q=x", nil), http.StatusBadRequest, "query_too_short") // bad input costs nothing
	for range 2 {
		requireStatus(t, alice.Do("GET", "/v1/search?q=hello", nil), http.StatusOK)
	}
	r := alice.Do("GET", "/v1/search?q=hello", nil)
	requireError(t, r, http.StatusTooManyRequests, "rate_limited")
	require.NotEmpty(t, r.Header.Get("Retry-After"))
	requireStatus(t, bob.Do("GET", "/v1/search?q=hello", nil), http.StatusOK)
	requireStatus(t, alice.Do("GET", "/v1/mentions", nil), http.StatusOK) // mentions are not searches
}
