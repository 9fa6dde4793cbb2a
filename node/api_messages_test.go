package node_test

import (
	"fmt"
	"net/http"
	"strings"
	"testing"
	"unicode/utf8"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/chatgate/chatgate/internal/testkit"
)

func directConv(a, b *testkit.Client) string {
	x, y := a.ID, b.ID
	if len(x) > len(y) || (len(x) == len(y) && x > y) {
		x, y = y, x
	}
	return "d_" + x + "_" + y
}

func TestAPISendDirectMessage(t *testing.T) {
	n := testkit.Start(t)
	a := testkit.Signup(t, n.URL(), "sa")
	b := testkit.Signup(t, n.URL(), "sb")

	r := a.Do("POST", "/v1/messages", map[string]any{"to": b.ID, "content": "héllo 👋", "client_msg_id": "m-1"})
	m := requireStatus(t, r, http.StatusCreated)
	assert.ElementsMatch(t, []string{"message"}, keys(m))
	msg := m["message"].(map[string]any)
	assert.ElementsMatch(t, []string{"id", "conversation_id", "from", "to", "content", "created_at", "client_msg_id"}, keys(msg))
	requireID(t, msg["id"], "message.id")
	requireID(t, msg["from"], "message.from")
	requireID(t, msg["to"], "message.to")
	assert.Equal(t, directConv(a, b), msg["conversation_id"])
	assert.Equal(t, a.ID, msg["from"])
	assert.Equal(t, b.ID, msg["to"])
	assert.Equal(t, "héllo 👋", msg["content"])
	assert.Equal(t, "m-1", msg["client_msg_id"])
	requireTime(t, msg["created_at"], "message.created_at")
	assert.Empty(t, r.Header.Get("Idempotent-Replayed"))

	// The stored message is what both inboxes and the history show.
	for _, c := range []*testkit.Client{a, b} {
		evs, _ := c.PollAll(0)
		require.Len(t, evs, 1)
		assert.ElementsMatch(t, []string{"type", "seq", "message"}, keys(evs[0]))
		assert.Equal(t, msg, evs[0]["message"])
		hist, more := historyOf(t, c, directConv(a, b), "")
		assert.False(t, more)
		require.Len(t, hist, 1)
		assert.Equal(t, msg, hist[0])
	}

	// Message ids follow time.
	later := a.Send(b.ID, "second", "m-2")
	assert.Positive(t, cmpID(later["id"].(string), msg["id"].(string)))

	// A client_msg_id is optional.
	noKey := send(t, b, map[string]any{"to": a.ID, "content": "no key"})
	assert.Equal(t, "", noKey["client_msg_id"])
	other := send(t, b, map[string]any{"to": a.ID, "content": "no key"})
	assert.NotEqual(t, noKey["id"], other["id"], "without client_msg_id every send is a new message")

	// Notes to self are a conversation of one.
	self := send(t, a, map[string]any{"to": a.ID, "content": "note", "client_msg_id": "self"})
	assert.Equal(t, "d_"+a.ID+"_"+a.ID, self["conversation_id"])
	evs, _ := a.PollAll(3)
	require.Len(t, evs, 2, "the note lands once in the sender's inbox")
	assert.Equal(t, self["id"], evs[1]["message"].(map[string]any)["id"])
}

// cmpID compares decimal ids numerically.
func cmpID(x, y string) int {
	if len(x) != len(y) {
		return len(x) - len(y)
	}
	return strings.Compare(x, y)
}

func TestAPISendIdempotent(t *testing.T) {
	n := testkit.Start(t)
	a := testkit.Signup(t, n.URL(), "ia")
	b := testkit.Signup(t, n.URL(), "ib")

	first := a.Send(b.ID, "once", "retry-me")
	r := a.Do("POST", "/v1/messages", map[string]any{"to": b.ID, "content": "once", "client_msg_id": "retry-me"})
	again := requireStatus(t, r, http.StatusCreated)["message"].(map[string]any)
	assert.Equal(t, first, again, "a retry returns the very same message")
	assert.Equal(t, "true", r.Header.Get("Idempotent-Replayed"))

	// A retry from the user's other device is the same message too.
	other := login(t, n.URL(), username(a), "other")
	assert.Equal(t, first["id"], other.Send(b.ID, "once", "retry-me")["id"])

	for _, c := range []*testkit.Client{a, b} {
		evs, _ := c.PollAll(0)
		require.Len(t, evs, 1, "no duplicate in %s's inbox", c.ID)
		hist, _ := historyOf(t, c, directConv(a, b), "")
		require.Len(t, hist, 1)
		cs := conversations(t, c)
		require.Len(t, cs, 1)
	}
	cb := findConv(conversations(t, b), directConv(a, b))
	assert.Equal(t, float64(1), cb["unread_count"])

	// Same key, different message: refused, nothing changes.
	before := snapshot(t, a, b)
	for _, body := range []map[string]any{
		{"to": b.ID, "content": "twice", "client_msg_id": "retry-me"},
		{"to": a.ID, "content": "once", "client_msg_id": "retry-me"},
	} {
		requireError(t, a.Do("POST", "/v1/messages", body), http.StatusConflict, "client_msg_id_conflict")
	}
	requireUnchanged(t, before, a, b)

	// Keys are per sender: b may use the same key for its own message.
	reply := b.Send(a.ID, "once", "retry-me")
	assert.NotEqual(t, first["id"], reply["id"])
}

func TestAPIContentLength(t *testing.T) {
	n := testkit.Start(t)
	a := testkit.Signup(t, n.URL(), "la")
	b := testkit.Signup(t, n.URL(), "lb")

	// 100,000 code points is the limit, whatever their byte length.
	for i, unit := range []string{"é", "😀", "x"} {
		content := strings.Repeat(unit, 100_000)
		msg := a.Send(b.ID, content, fmt.Sprintf("max-%d", i))
		assert.Equal(t, 100_000, utf8.RuneCountInString(msg["content"].(string)))
		assert.Equal(t, content, msg["content"])
	}
	hist, _ := historyOf(t, b, directConv(a, b), "?limit=1")
	require.Len(t, hist, 1)
	assert.Equal(t, strings.Repeat("x", 100_000), hist[0]["content"])

	before := snapshot(t, a, b)
	for i, unit := range []string{"é", "😀", "x"} {
		r := a.Do("POST", "/v1/messages", map[string]any{
			"to": b.ID, "content": strings.Repeat(unit, 100_001), "client_msg_id": fmt.Sprintf("over-%d", i),
		})
		requireError(t, r, http.StatusBadRequest, "content_too_long")
	}
	requireUnchanged(t, before, a, b)

	// The largest legal message in its largest JSON form (every emoji as an
	// escaped surrogate pair, 12 bytes) fits under the body cap.
	body := `{"to":"` + b.ID + `","client_msg_id":"escaped","content":"` + strings.Repeat(`\ud83d\ude00`, 100_000) + `"}`
	msg := requireStatus(t, a.Do("POST", "/v1/messages", body), http.StatusCreated)["message"].(map[string]any)
	assert.Equal(t, strings.Repeat("😀", 100_000), msg["content"])
}

// TestAPISendRejectsBadInput sends every kind of bad request and checks
// each gets its error and changes nothing for anyone.
func TestAPISendRejectsBadInput(t *testing.T) {
	n := testkit.Start(t)
	a := testkit.Signup(t, n.URL(), "ba")
	b := testkit.Signup(t, n.URL(), "bb")
	outsider := testkit.Signup(t, n.URL(), "bo")
	gid := createGroup(t, a, "g", b.ID)["id"].(string)
	a.Send(b.ID, "before", "before") // so there is state to keep

	neg := requireStatus(t, a.Do("GET", "/v1/negotiate", nil), http.StatusOK)
	maxBody := int(neg["max_body_bytes"].(float64))
	require.Greater(t, maxBody, 100_000*4)

	to := `"to":"` + b.ID + `"`
	cases := []struct {
		name   string
		body   any
		status int
		code   string
	}{
		{"empty content", `{` + to + `,"content":"","client_msg_id":"e"}`, 400, "content_empty"},
		{"missing content", `{` + to + `,"client_msg_id":"e"}`, 400, "content_empty"},
		{"invalid utf-8 bytes", []byte("{" + to + `,"content":"bad ` + "\xff\xfe" + `","client_msg_id":"u"}`), 400, "invalid_utf8"},
		{"invalid utf-8 in key", []byte("{" + to + `,"content":"ok","client_msg_id":"` + "\xc3\x28" + `"}`), 400, "invalid_utf8"},
		{"lone high surrogate", `{` + to + `,"content":"a\ud800b","client_msg_id":"s1"}`, 400, "invalid_utf8"},
		{"lone low surrogate", `{` + to + `,"content":"\udc00","client_msg_id":"s2"}`, 400, "invalid_utf8"},
		{"reversed surrogates", `{` + to + `,"content":"\ude00\ud83d","client_msg_id":"s3"}`, 400, "invalid_utf8"},
		{"malformed json", `{` + to + `,"content":"x"`, 400, "invalid_json"},
		{"not json", `hello`, 400, "invalid_json"},
		{"empty body", ``, 400, "invalid_json"},
		{"two objects", `{` + to + `,"content":"x"}{"content":"y"}`, 400, "invalid_json"},
		{"array", `[1,2]`, 400, "invalid_json"},
		{"to as number", `{"to":5,"content":"x","client_msg_id":"t"}`, 400, "invalid_field"},
		{"to as big number", `{"to":` + b.ID + `,"content":"x","client_msg_id":"t"}`, 400, "invalid_field"},
		{"to zero", `{"to":"0","content":"x","client_msg_id":"t"}`, 400, "invalid_field"},
		{"to not decimal", `{"to":"bob","content":"x","client_msg_id":"t"}`, 400, "invalid_field"},
		{"content as number", `{` + to + `,"content":5,"client_msg_id":"t"}`, 400, "invalid_field"},
		{"client_msg_id as number", `{` + to + `,"content":"x","client_msg_id":5}`, 400, "invalid_field"},
		{"unknown field", `{` + to + `,"content":"x","client_msg_id":"t","priority":1}`, 400, "unknown_field"},
		{"both to and group_id", `{` + to + `,"group_id":"` + gid + `","content":"x","client_msg_id":"r"}`, 400, "invalid_recipient"},
		{"neither to nor group_id", `{"content":"x","client_msg_id":"r"}`, 400, "invalid_recipient"},
		{"to null", `{"to":null,"content":"x","client_msg_id":"r"}`, 400, "invalid_recipient"},
		{"client_msg_id too long", map[string]any{"to": b.ID, "content": "x", "client_msg_id": strings.Repeat("k", 129)}, 400, "invalid_client_msg_id"},
		{"unknown recipient", `{"to":"987654321987","content":"x","client_msg_id":"n"}`, 404, "user_not_found"},
		{"group not a member", `{"group_id":"` + gid + `","content":"x","client_msg_id":"g"}`, 404, "group_not_found"},
		{"body over the cap", `{` + to + `,"client_msg_id":"big","content":"` + strings.Repeat("a", maxBody) + `"}`, 413, "body_too_large"},
	}
	before := snapshot(t, a, b, outsider)
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			sender := a
			if tc.code == "group_not_found" {
				sender = outsider
			}
			cl := &testkit.Client{T: t, Base: sender.Base, Token: sender.Token, HTTP: sender.HTTP}
			requireError(t, cl.Do("POST", "/v1/messages", tc.body), tc.status, tc.code)
		})
	}
	requireUnchanged(t, before, a, b, outsider)

	// The keys the refused requests used are still free.
	msg := send(t, a, map[string]any{"to": b.ID, "content": "after", "client_msg_id": "t"})
	assert.Equal(t, "after", msg["content"])
	send(t, a, map[string]any{"to": b.ID, "content": "and the big one", "client_msg_id": "big"})
}

func TestAPIConcurrentSendsGapFree(t *testing.T) {
	n := testkit.Start(t)
	b := testkit.Signup(t, n.URL(), "cb")
	senders := []*testkit.Client{testkit.Signup(t, n.URL(), "cs1"), testkit.Signup(t, n.URL(), "cs2"), testkit.Signup(t, n.URL(), "cs3")}
	const per = 20

	errs := make(chan error, len(senders)*per)
	for i, s := range senders {
		go func() {
			for j := 0; j < per; j++ {
				r, err := s.TryDo("POST", "/v1/messages", map[string]any{"to": b.ID, "content": fmt.Sprintf("%d/%d", i, j), "client_msg_id": fmt.Sprint(j)})
				if err == nil && r.Status != http.StatusCreated {
					err = fmt.Errorf("status %d: %s", r.Status, r.Body)
				}
				errs <- err
			}
		}()
	}
	for range len(senders) * per {
		require.NoError(t, <-errs)
	}

	evs, cursor := b.PollAll(0)
	require.Len(t, evs, len(senders)*per)
	requireSeqs(t, evs, 1)
	assert.Equal(t, uint64(len(senders)*per), cursor)
	seen := map[string]bool{}
	next := map[string]int{} // per sender, messages arrive in send order
	for _, m := range messages(t, evs) {
		require.False(t, seen[m["id"].(string)], "duplicate %v", m["id"])
		seen[m["id"].(string)] = true
		var i, j int
		_, err := fmt.Sscanf(m["content"].(string), "%d/%d", &i, &j)
		require.NoError(t, err)
		assert.Equal(t, next[m["from"].(string)], j)
		next[m["from"].(string)]++
	}
	for _, s := range senders {
		evs, _ := s.PollAll(0)
		assert.Len(t, evs, per)
		requireSeqs(t, evs, 1)
	}
}
