package node_test

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"io"
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
		if strings.Contains(query, "#") {
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
