package node_test

import (
	"encoding/json"
	"fmt"
	"net/http"
	"regexp"
	"strconv"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/chatgate/chatgate/internal/testkit"
)

// Shared helpers of the black-box API tests (api_*_test.go). They only talk
// to a node through its HTTP API, via testkit.

const password = "correct horse" // testkit.Signup's password

var (
	decimalID = regexp.MustCompile(`^[1-9][0-9]{0,19}$`)
	msTime    = regexp.MustCompile(`^[0-9]{4}-[0-9]{2}-[0-9]{2}T[0-9]{2}:[0-9]{2}:[0-9]{2}\.[0-9]{3}Z$`)
)

// requireID checks v is a 64-bit id as a decimal string and returns it.
func requireID(t testing.TB, v any, what string) string {
	t.Helper()
	s, ok := v.(string)
	require.True(t, ok, "%s must be a JSON string, got %T %v", what, v, v)
	require.Regexp(t, decimalID, s, "%s", what)
	_, err := strconv.ParseUint(s, 10, 64)
	require.NoError(t, err, "%s must fit in 64 bits", what)
	return s
}

// requireTime checks v is RFC 3339 with milliseconds in UTC and returns it.
func requireTime(t testing.TB, v any, what string) time.Time {
	t.Helper()
	s, ok := v.(string)
	require.True(t, ok, "%s must be a JSON string, got %T %v", what, v, v)
	require.Regexp(t, msTime, s, "%s", what)
	tm, err := time.Parse(time.RFC3339Nano, s)
	require.NoError(t, err)
	return tm
}

// keys returns the sorted key set of a JSON object for exact shape checks.
func keys(m map[string]any) []string {
	out := make([]string, 0, len(m))
	for k := range m {
		out = append(out, k)
	}
	return out
}

// requireError checks an error answer: the status, the snake_case code and
// a human message, in the protocol's one error shape.
func requireError(t testing.TB, r testkit.Response, status int, code string) {
	t.Helper()
	require.Equal(t, status, r.Status, "body: %s", r.Body)
	assert.Contains(t, r.Header.Get("Content-Type"), "application/json")
	var body struct {
		Error *struct {
			Code    string `json:"code"`
			Message string `json:"message"`
		} `json:"error"`
	}
	require.NoError(t, json.Unmarshal(r.Body, &body), "body: %s", r.Body)
	require.NotNil(t, body.Error, "no error object in %s", r.Body)
	require.Equal(t, code, body.Error.Code, "body: %s", r.Body)
	require.NotEmpty(t, body.Error.Message)
}

// requireStatus checks a success status and returns the decoded object.
func requireStatus(t testing.TB, r testkit.Response, status int) map[string]any {
	t.Helper()
	require.Equal(t, status, r.Status, "body: %s", r.Body)
	if status == http.StatusNoContent {
		require.Empty(t, r.Body)
		return nil
	}
	var m map[string]any
	require.NoError(t, json.Unmarshal(r.Body, &m), "body: %s", r.Body)
	return m
}

// login logs username in as a new device and returns a client for it.
func login(t testing.TB, base, username, device string) *testkit.Client {
	t.Helper()
	c := testkit.NewClient(t, base)
	in := map[string]any{"username": username, "password": password}
	if device != "" {
		in["device"] = device
	}
	m := requireStatus(t, c.Do("POST", "/v1/auth/login", in), http.StatusOK)
	c.Token = m["token"].(string)
	c.User = m["user"].(map[string]any)
	c.ID = c.User["id"].(string)
	return c
}

func username(c *testkit.Client) string { return c.User["username"].(string) }

// send posts a message body and requires 201; it returns the message.
func send(t testing.TB, c *testkit.Client, body map[string]any) map[string]any {
	t.Helper()
	m := requireStatus(t, c.Do("POST", "/v1/messages", body), http.StatusCreated)
	msg, ok := m["message"].(map[string]any)
	require.True(t, ok, "no message in %v", m)
	return msg
}

// state is what a refused request must leave unchanged: every involved
// user's inbox (all durable events) and conversation list.
type state struct {
	inbox map[string][]map[string]any
	convs map[string]string
}

func snapshot(t testing.TB, cs ...*testkit.Client) state {
	t.Helper()
	s := state{inbox: map[string][]map[string]any{}, convs: map[string]string{}}
	for _, c := range cs {
		evs, _ := c.PollAll(0)
		s.inbox[c.ID] = evs
		r := c.Do("GET", "/v1/conversations", nil)
		require.Equal(t, http.StatusOK, r.Status, "conversations: %s", r.Body)
		s.convs[c.ID] = string(r.Body)
	}
	return s
}

// requireUnchanged checks that nobody's inbox or conversations moved since
// the snapshot was taken of the same clients.
func requireUnchanged(t testing.TB, before state, cs ...*testkit.Client) {
	t.Helper()
	after := snapshot(t, cs...)
	for _, c := range cs {
		require.Equal(t, before.inbox[c.ID], after.inbox[c.ID], "inbox of %s changed", c.ID)
		require.JSONEq(t, before.convs[c.ID], after.convs[c.ID], "conversations of %s changed", c.ID)
	}
}

// messages returns the message objects of message events, in order.
func messages(t testing.TB, evs []map[string]any) []map[string]any {
	t.Helper()
	out := make([]map[string]any, 0, len(evs))
	for _, e := range evs {
		require.Equal(t, "message", e["type"], "event %v", e)
		out = append(out, e["message"].(map[string]any))
	}
	return out
}

// requireSeqs checks events carry seq from, from+1, ... with no gap.
func requireSeqs(t testing.TB, evs []map[string]any, from uint64) {
	t.Helper()
	for i, e := range evs {
		seq, ok := e["seq"].(float64) // seq is a JSON number
		require.True(t, ok, "seq must be a JSON number in %v", e)
		require.Equal(t, float64(from+uint64(i)), seq, "event %d", i)
	}
}

func historyOf(t testing.TB, c *testkit.Client, conv, query string) ([]map[string]any, bool) {
	t.Helper()
	r := c.Do("GET", "/v1/conversations/"+conv+"/messages"+query, nil)
	require.Equal(t, http.StatusOK, r.Status, "history: %s", r.Body)
	var out struct {
		Messages []map[string]any `json:"messages"`
		HasMore  *bool            `json:"has_more"`
	}
	r.Decode(t, &out)
	require.NotNil(t, out.Messages, "messages must be an array: %s", r.Body)
	require.NotNil(t, out.HasMore, "has_more missing: %s", r.Body)
	return out.Messages, *out.HasMore
}

// conversations returns the caller's conversation list.
func conversations(t testing.TB, c *testkit.Client) []map[string]any {
	t.Helper()
	r := c.Do("GET", "/v1/conversations", nil)
	require.Equal(t, http.StatusOK, r.Status, "conversations: %s", r.Body)
	var out struct {
		Conversations []map[string]any `json:"conversations"`
	}
	r.Decode(t, &out)
	require.NotNil(t, out.Conversations, "conversations must be an array: %s", r.Body)
	return out.Conversations
}

func findConv(cs []map[string]any, id string) map[string]any {
	for _, c := range cs {
		if c["id"] == id {
			return c
		}
	}
	return nil
}

// friendsOf returns GET /v1/friends decoded.
type friendList struct {
	Friends  []map[string]any `json:"friends"`
	Incoming []map[string]any `json:"incoming"`
	Outgoing []map[string]any `json:"outgoing"`
}

func friendsOf(t testing.TB, c *testkit.Client) friendList {
	t.Helper()
	r := c.Do("GET", "/v1/friends", nil)
	require.Equal(t, http.StatusOK, r.Status, "friends: %s", r.Body)
	var fl friendList
	r.Decode(t, &fl)
	require.NotNil(t, fl.Friends, "friends must be an array: %s", r.Body)
	require.NotNil(t, fl.Incoming, "incoming must be an array: %s", r.Body)
	require.NotNil(t, fl.Outgoing, "outgoing must be an array: %s", r.Body)
	return fl
}

func ids(objs []map[string]any) []string {
	out := make([]string, len(objs))
	for i, o := range objs {
		out[i] = fmt.Sprint(o["id"])
	}
	return out
}

// groupDetail reads GET /v1/groups/{id} as c.
func groupDetail(t testing.TB, c *testkit.Client, gid string) map[string]any {
	t.Helper()
	return requireStatus(t, c.Do("GET", "/v1/groups/"+gid, nil), http.StatusOK)
}

func memberIDs(t testing.TB, detail map[string]any) []string {
	t.Helper()
	ms, ok := detail["members"].([]any)
	require.True(t, ok, "members must be an array: %v", detail)
	out := make([]string, len(ms))
	for i, m := range ms {
		out[i] = m.(map[string]any)["id"].(string)
	}
	return out
}
