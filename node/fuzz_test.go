package node_test

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"strings"
	"testing"
	"time"

	"github.com/chatgate/chatgate/internal/testkit"
)

// fuzzRoutes are the API's routes a client can reach with a body, path ids
// and query parameters (logout, which would end the fuzzing client, and the
// streaming transports, which never answer, are left out).
var fuzzRoutes = []struct{ method, path string }{
	{"POST", "/v1/auth/signup"}, {"POST", "/v1/auth/login"}, {"POST", "/v1/heartbeat"},
	{"POST", "/v1/typing"}, {"GET", "/v1/me"}, {"PATCH", "/v1/me"}, {"GET", "/v1/users"},
	{"GET", "/v1/users/:id"}, {"GET", "/v1/friends"}, {"PUT", "/v1/friends/:id"},
	{"DELETE", "/v1/friends/:id"}, {"GET", "/v1/groups"}, {"POST", "/v1/groups"},
	{"GET", "/v1/groups/:id"}, {"POST", "/v1/groups/:id/members"},
	{"DELETE", "/v1/groups/:id/members/:id"}, {"POST", "/v1/messages"},
	{"GET", "/v1/conversations"}, {"GET", "/v1/conversations/:id/messages"},
	{"POST", "/v1/conversations/:id/read"}, {"GET", "/v1/poll"}, {"GET", "/v1/longpoll"},
	{"GET", "/v1/negotiate"}, {"GET", "/v1/ws"},
}

// FuzzAPI sends arbitrary bodies, path ids and query strings (cursor,
// wait, limit, before, after, q, …) to every route as an authenticated
// user: the answer is never a 5xx, and every error has the protocol's
// shape with a code.
func FuzzAPI(f *testing.F) {
	n := testkit.Start(f)
	alice := testkit.Signup(f, n.URL(), "fuzz")
	bob := testkit.Signup(f, n.URL(), "fuzz")
	conv := "d_" + alice.ID + "_" + bob.ID
	if alice.ID > bob.ID {
		conv = "d_" + bob.ID + "_" + alice.ID
	}
	for i := range fuzzRoutes {
		f.Add(uint8(i), bob.ID, "limit=10&cursor=0", []byte(`{"to":"`+bob.ID+`","content":"hi","client_msg_id":"c1"}`))
	}
	f.Add(uint8(18), conv, "before=1&after=18446744073709551615&limit=-1", []byte(nil))
	f.Add(uint8(21), "", "cursor=99999999999999999999&wait=60", []byte(nil))
	f.Add(uint8(20), "", "cursor=-1&limit=0", []byte(nil))
	f.Add(uint8(6), "", "q=%00&limit=1e9", []byte(nil))
	f.Add(uint8(19), conv, "", []byte(`{"message_id":"0"}`))
	f.Add(uint8(12), "", "", []byte(`{"name":"g","members":["1","1","`+bob.ID+`"]}`))
	hc := &http.Client{Timeout: 5 * time.Second}
	f.Fuzz(func(t *testing.T, route uint8, id, query string, body []byte) {
		r := fuzzRoutes[int(route)%len(fuzzRoutes)]
		path := strings.ReplaceAll(r.path, ":id", url.PathEscape(id))
		// Not a request target a client can send (a fragment, a space or
		// a control byte): net/http refuses it before the API sees it.
		if strings.ContainsFunc(query, func(r rune) bool { return r == '#' || r <= ' ' || r == 0x7f }) {
			return
		}
		ctx, cancel := context.WithTimeout(context.Background(), 3*time.Second)
		defer cancel()
		req, err := http.NewRequestWithContext(ctx, r.method, n.URL()+path+"?"+query, bytes.NewReader(body))
		if err != nil {
			return // not a request a client could send
		}
		req.Header.Set("Authorization", "Bearer "+alice.Token)
		req.Header.Set("Content-Type", "application/json")
		resp, err := hc.Do(req)
		if errors.Is(err, context.DeadlineExceeded) || (err != nil && strings.Contains(err.Error(), "deadline")) {
			return // a long poll held to its wait: an answer will come
		}
		if err != nil {
			t.Fatalf("%s %s?%s: %v", r.method, path, query, err)
		}
		defer resp.Body.Close()
		b, _ := io.ReadAll(resp.Body)
		if resp.StatusCode >= 500 {
			t.Fatalf("%s %s?%s %q: %d %s", r.method, path, query, body, resp.StatusCode, b)
		}
		if resp.StatusCode >= 400 && r.method != "HEAD" {
			var e struct {
				Error struct{ Code, Message string } `json:"error"`
			}
			if json.Unmarshal(b, &e) != nil || e.Error.Code == "" {
				t.Fatalf("%s %s?%s: %d without the error shape: %s", r.method, path, query, resp.StatusCode, b)
			}
		}
	})
}

// FuzzStreamHeaders feeds the headers a streaming client controls — SSE's
// Last-Event-ID, the Authorization header and the access_token and cursor
// parameters — to /v1/sse: the answer is a stream or a 4xx with the error
// shape, never a 5xx.
func FuzzStreamHeaders(f *testing.F) {
	n := testkit.Start(f)
	alice := testkit.Signup(f, n.URL(), "fuzzsse")
	f.Add("Bearer "+alice.Token, "", "cursor=0", "3")
	f.Add("Bearer "+alice.Token, "", "", "18446744073709551616")
	f.Add("", alice.Token, "cursor=1", "-1")
	f.Add("bearer  "+alice.Token+" ", "", "cursor=x", "")
	f.Add("Basic "+alice.Token, "%zz", "", "1e3")
	f.Add("Bearer "+alice.Token[:len(alice.Token)-1]+"A", "", "", "")
	hc := &http.Client{Timeout: 5 * time.Second}
	f.Fuzz(func(t *testing.T, authz, token, query, lastID string) {
		ctx, cancel := context.WithTimeout(context.Background(), 3*time.Second)
		defer cancel()
		// The query as a client library would send it (a raw space is
		// refused by net/http before the API sees the request).
		vals, _ := url.ParseQuery(query)
		if token != "" {
			vals.Set("access_token", token)
		}
		q := vals.Encode()
		req, err := http.NewRequestWithContext(ctx, "GET", n.URL()+"/v1/sse?"+q, nil)
		if err != nil {
			return
		}
		for k, v := range map[string]string{"Authorization": authz, "Last-Event-ID": lastID} {
			if v != "" {
				req.Header[k] = []string{v}
			}
		}
		resp, err := hc.Do(req)
		if err != nil {
			return // a header net/http refuses to send
		}
		defer resp.Body.Close()
		if resp.StatusCode == http.StatusOK {
			return // a stream: the client was who it said
		}
		b, _ := io.ReadAll(resp.Body)
		if resp.StatusCode >= 500 {
			t.Fatalf("authz %q token %q query %q Last-Event-ID %q: %d %s", authz, token, query, lastID, resp.StatusCode, b)
		}
		var e struct {
			Error struct{ Code, Message string } `json:"error"`
		}
		if json.Unmarshal(b, &e) != nil || e.Error.Code == "" {
			t.Fatalf("%d without the error shape: %s", resp.StatusCode, b)
		}
	})
}

// FuzzWebSocketFrames writes arbitrary bytes after a WebSocket handshake:
// frames of any opcode, length, mask and fragmentation. The server answers
// or closes the socket; it never crashes (a panic in its reader would end
// the test binary), and it still serves others afterwards.
func FuzzWebSocketFrames(f *testing.F) {
	n := testkit.Start(f)
	alice := testkit.Signup(f, n.URL(), "fuzzws")
	frame := func(fin bool, op byte, payload []byte) []byte {
		b0 := op
		if fin {
			b0 |= 0x80
		}
		b := []byte{b0}
		switch {
		case len(payload) < 126:
			b = append(b, 0x80|byte(len(payload)))
		default:
			b = append(b, 0x80|126, byte(len(payload)>>8), byte(len(payload)))
		}
		b = append(b, 0, 0, 0, 0) // a zero mask leaves the payload as it is
		return append(b, payload...)
	}
	f.Add(frame(true, 1, []byte(`{"type":"send","to":"`+alice.ID+`","content":"hi","client_msg_id":"f1"}`)))
	f.Add(frame(true, 1, []byte(`{"type":"typing","conversation_id":"g_1"}`)))
	f.Add(append(frame(false, 1, []byte(`{"type":`)), frame(true, 0, []byte(`"heartbeat"}`))...))
	f.Add(frame(true, 2, []byte{0xff, 0}))
	f.Add(frame(true, 9, []byte("ping")))
	f.Add(frame(true, 8, []byte{3, 0xe8}))
	f.Add(frame(true, 1, []byte{0xc3, 0x28}))                           // invalid UTF-8
	f.Add([]byte{0x81, 0xff, 0x7f, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff}) // a 2^63-byte frame
	f.Add(frame(false, 0, nil))
	f.Fuzz(func(t *testing.T, data []byte) {
		c, err := net.Dial("tcp", n.Addr())
		if err != nil {
			t.Fatal(err)
		}
		defer c.Close()
		_ = c.SetDeadline(time.Now().Add(2 * time.Second))
		fmt.Fprintf(c, "GET /v1/ws?access_token=%s HTTP/1.1\r\nHost: x\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"+
			"Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n", url.QueryEscape(alice.Token))
		br := bufio.NewReader(c)
		resp, err := http.ReadResponse(br, nil)
		if err != nil || resp.StatusCode != http.StatusSwitchingProtocols {
			t.Fatalf("handshake: %v %v", resp, err)
		}
		_, _ = c.Write(data)
		// Half-close: the server reads our bytes, then EOF, and ends.
		_ = c.(*net.TCPConn).CloseWrite()
		_, _ = io.Copy(io.Discard, br)
		if r, err := fuzzHTTP.Get(n.URL() + "/healthz"); err != nil || r.StatusCode != http.StatusOK {
			t.Fatalf("server not serving after %x: %v", data, err)
		} else {
			r.Body.Close()
		}
	})
}

var fuzzHTTP = &http.Client{Timeout: 5 * time.Second}
