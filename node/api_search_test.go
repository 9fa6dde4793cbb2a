package node_test

import (
	"fmt"
	"net/http"
	"net/url"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/chatgate/chatgate/core"
	"github.com/chatgate/chatgate/internal/testkit"
	"github.com/chatgate/chatgate/node"
)

// searchOf runs GET /v1/search and returns the ids found and has_more,
// checking each result's shape.
func searchOf(t testing.TB, c *testkit.Client, q, extra string) ([]string, bool) {
	t.Helper()
	m := requireStatus(t, c.Do("GET", "/v1/search?q="+url.QueryEscape(q)+extra, nil), http.StatusOK)
	assert.ElementsMatch(t, []string{"results", "has_more"}, keys(m))
	var out []string
	for _, r := range m["results"].([]any) {
		res := r.(map[string]any)
		assert.ElementsMatch(t, []string{"conversation_id", "message"}, keys(res))
		msg := res["message"].(map[string]any)
		assert.Equal(t, msg["conversation_id"], res["conversation_id"])
		out = append(out, msg["id"].(string))
	}
	return out, m["has_more"].(bool)
}

func idOf(m map[string]any) string { return m["id"].(string) }

// noSearchLimit lifts the per-user search limit for tests that search more
// than a person would (TestSearchLimit checks the limit).
func noSearchLimit(c *node.Config) { c.Limits.SearchesPerUser = core.Rate{} }

// TestAPISearch: a black-box client finds its own messages by a word, or a
// two-character Korean or Japanese substring, newest first, and never
// another user's.
func TestAPISearch(t *testing.T) {
	n := testkit.Start(t, noSearchLimit)
	us := testkit.SignupMany(t, n.URL(), "find", 3)
	a, b, c := us[0], us[1], us[2]
	hello := a.Send(b.ID, "Hello, World!", "s-1")
	ko := b.Send(a.ID, "채팅을 시작합니다", "s-2")
	ja := a.Send(b.ID, "明日、東京に行きます", "s-3")
	b.Send(c.ID, "hello 채팅 東京 from b to c", "s-4")
	c.Send(c.ID, "hello 채팅 東京 note to self", "s-5")
	mixed := b.Send(a.ID, "채팅 Hello again", "s-6")

	for q, want := range map[string][]string{
		"hello":       {idOf(mixed), idOf(hello)},
		"HeLLo world": {idOf(hello)},
		"채팅":          {idOf(mixed), idOf(ko)},
		"시작":          {idOf(ko)},
		"東京":          {idOf(ja)},
		"京に":          {idOf(ja)},
		"nothing":     nil,
		"?!":          nil, // no terms at all: nothing, and no error
	} {
		got, more := searchOf(t, a, q, "")
		assert.Equal(t, want, got, "a searches %q", q)
		assert.False(t, more)
	}
	got, _ := searchOf(t, c, "hello", "")
	assert.Len(t, got, 2, "c finds its two, never a's")

	// One conversation only.
	got, _ = searchOf(t, a, "hello", "&conversation_id="+directConv(a, b))
	assert.Equal(t, []string{idOf(mixed), idOf(hello)}, got)
	requireError(t, a.Do("GET", "/v1/search?q=hello&conversation_id="+directConv(b, c), nil), http.StatusNotFound, "conversation_not_found")
	requireError(t, a.Do("GET", "/v1/search?q=hello&conversation_id=nonsense", nil), http.StatusNotFound, "conversation_not_found")

	// Paging.
	got, more := searchOf(t, a, "hello", "&limit=1")
	assert.Equal(t, []string{idOf(mixed)}, got)
	assert.True(t, more)
	got, more = searchOf(t, a, "hello", "&limit=1&before="+idOf(mixed))
	assert.Equal(t, []string{idOf(hello)}, got)
	assert.False(t, more)

	// Bad input: a clear error.
	for _, q := range []string{"", "a", " 채 ", "  "} {
		requireError(t, a.Do("GET", "/v1/search?q="+url.QueryEscape(q), nil), http.StatusBadRequest, "query_too_short")
	}
	requireError(t, a.Do("GET", "/v1/search?q="+strings.Repeat("x", 257), nil), http.StatusBadRequest, "query_too_long")
	requireError(t, a.Do("GET", "/v1/search?q=%ff%fe", nil), http.StatusBadRequest, "invalid_query")
	requireError(t, a.Do("GET", "/v1/search?q=hello&before=x", nil), http.StatusBadRequest, "invalid_before")
	requireError(t, a.Do("GET", "/v1/search?q=hello&limit=0", nil), http.StatusBadRequest, "invalid_limit")
}

// A message is found by the very next search after its send answered.
func TestAPISearchReadsYourWrites(t *testing.T) {
	n := testkit.Start(t, noSearchLimit)
	us := testkit.SignupMany(t, n.URL(), "ryw", 2)
	a, b := us[0], us[1]
	for i := range 20 {
		word := fmt.Sprintf("word%d", i)
		m := a.Send(b.ID, "fresh "+word, "ryw-"+word)
		got, _ := searchOf(t, b, word, "")
		require.Equal(t, []string{idOf(m)}, got, "search right after send %d", i)
	}
}

// TestAPIMentions: @username of a member is recorded on the message,
// listed by GET /v1/mentions; a non-member, the sender and unknown names
// are not mentioned.
func TestAPIMentions(t *testing.T) {
	n := testkit.Start(t)
	us := testkit.SignupMany(t, n.URL(), "men", 4)
	a, b, c, out := us[0], us[1], us[2], us[3]
	r := a.Do("POST", "/v1/groups", map[string]any{"name": "mentions", "members": []string{b.ID, c.ID}})
	gid := requireStatus(t, r, http.StatusCreated)["id"].(string)
	content := fmt.Sprintf("@%s and @%s, see this. cc @%s @%s @nobody mail@%s",
		username(b), strings.ToUpper(username(c)), username(out), username(a), username(b))
	g := send(t, a, map[string]any{"group_id": gid, "content": content, "client_msg_id": "m-1"})
	assert.Equal(t, []any{b.ID, c.ID}, g["mentions"], "members only, in member order; not the sender, not an outsider")
	d := send(t, c, map[string]any{"to": b.ID, "content": "thanks @" + username(b) + ".", "client_msg_id": "m-2"})
	assert.Equal(t, []any{b.ID}, d["mentions"])
	plain := send(t, c, map[string]any{"to": b.ID, "content": "no mention", "client_msg_id": "m-3"})
	assert.NotContains(t, plain, "mentions")

	list := func(cl *testkit.Client, q string) ([]string, bool) {
		m := requireStatus(t, cl.Do("GET", "/v1/mentions"+q, nil), http.StatusOK)
		assert.ElementsMatch(t, []string{"messages", "has_more"}, keys(m))
		return ids(asMaps(m["messages"])), m["has_more"].(bool)
	}
	got, more := list(b, "")
	assert.Equal(t, []string{idOf(d), idOf(g)}, got)
	assert.False(t, more)
	got, more = list(b, "?limit=1")
	assert.Equal(t, []string{idOf(d)}, got)
	assert.True(t, more)
	got, _ = list(b, "?before="+idOf(d))
	assert.Equal(t, []string{idOf(g)}, got)
	got, _ = list(c, "")
	assert.Equal(t, []string{idOf(g)}, got)
	for _, cl := range []*testkit.Client{a, out} {
		got, _ = list(cl, "")
		assert.Empty(t, got)
	}
	// Everyone reads the mentions on the message itself.
	hist, _ := historyOf(t, c, "g_"+gid, "")
	assert.Equal(t, []any{b.ID, c.ID}, hist[0]["mentions"])
	requireError(t, b.Do("GET", "/v1/mentions?before=zz", nil), http.StatusBadRequest, "invalid_before")

	// Leaving the group takes its mentions out of the list.
	requireStatus(t, c.Do("DELETE", "/v1/groups/"+gid+"/members/"+c.ID, nil), http.StatusNoContent)
	got, _ = list(c, "")
	assert.Empty(t, got)
}

func asMaps(v any) []map[string]any {
	var out []map[string]any
	for _, x := range v.([]any) {
		out = append(out, x.(map[string]any))
	}
	return out
}

// TestAPIHistoryAround: jumping to a message gives it with its neighbours,
// newest first, and says whether older and newer messages remain.
func TestAPIHistoryAround(t *testing.T) {
	n := testkit.Start(t)
	us := testkit.SignupMany(t, n.URL(), "jump", 3)
	a, b, c := us[0], us[1], us[2]
	var ms []string
	for i := range 30 {
		ms = append(ms, idOf(a.Send(b.ID, fmt.Sprintf("m%d", i), fmt.Sprintf("j-%d", i))))
	}
	other := idOf(a.Send(c.ID, "elsewhere", "j-other"))
	conv := directConv(a, b)
	around := func(id, limit string) map[string]any {
		return requireStatus(t, b.Do("GET", "/v1/conversations/"+conv+"/messages?around="+id+"&limit="+limit, nil), http.StatusOK)
	}
	page := around(ms[10], "9")
	assert.ElementsMatch(t, []string{"messages", "has_more", "has_newer"}, keys(page))
	assert.Equal(t, []string{ms[14], ms[13], ms[12], ms[11], ms[10], ms[9], ms[8], ms[7], ms[6]}, ids(asMaps(page["messages"])))
	assert.Equal(t, true, page["has_more"])
	assert.Equal(t, true, page["has_newer"])

	page = around(ms[1], "10") // near the start: fewer older ones
	assert.Equal(t, []string{ms[5], ms[4], ms[3], ms[2], ms[1], ms[0]}, ids(asMaps(page["messages"])))
	assert.Equal(t, false, page["has_more"])
	assert.Equal(t, true, page["has_newer"])

	page = around(ms[29], "4") // the newest
	assert.Equal(t, []string{ms[29], ms[28], ms[27]}, ids(asMaps(page["messages"])))
	assert.Equal(t, true, page["has_more"])
	assert.Equal(t, false, page["has_newer"])

	page = around(ms[28], "1")
	assert.Equal(t, []string{ms[28]}, ids(asMaps(page["messages"])))
	assert.Equal(t, true, page["has_newer"])

	// Not a message of this conversation: 404, whoever's it is.
	for _, id := range []string{other, "123456789"} {
		requireError(t, b.Do("GET", "/v1/conversations/"+conv+"/messages?around="+id, nil), http.StatusNotFound, "message_not_found")
	}
	requireError(t, c.Do("GET", "/v1/conversations/"+conv+"/messages?around="+ms[3], nil), http.StatusNotFound, "conversation_not_found")
	requireError(t, b.Do("GET", "/v1/conversations/"+conv+"/messages?around=x", nil), http.StatusBadRequest, "invalid_around")
	requireError(t, b.Do("GET", "/v1/conversations/"+conv+"/messages?around="+ms[3]+"&before="+ms[9], nil), http.StatusBadRequest, "invalid_around")
}

// A user mentioned while all their devices are offline gets a push that
// says so; the others in the group get a plain one.
func TestPushMentioned(t *testing.T) {
	const secret = "s3cret-for-tests"
	rcv := whStart(t, secret, whOK)
	n := testkit.Start(t, testkit.WithPushWebhook(rcv.URL(), secret), testkit.WithOfflineAfter(2*time.Second))
	us := testkit.SignupMany(t, n.URL(), "pm", 3)
	a, b, c := us[0], us[1], us[2]
	r := a.Do("POST", "/v1/groups", map[string]any{"name": "pm", "members": []string{b.ID, c.ID}})
	gid := requireStatus(t, r, http.StatusCreated)["id"].(string)
	for _, cl := range []*testkit.Client{b, c} {
		require.Equal(t, http.StatusNoContent, cl.Do("POST", "/v1/auth/logout", nil).Status)
	}
	m := whSendGroup(t, a, gid, "@"+username(b)+" please look")
	by := rcv.waitAccepted(t, []whWant{{b.ID, m, ""}, {c.ID, m, ""}}, 10*time.Second)
	assert.Equal(t, true, by[b.ID+"/"+idOf(m)][0].Payload["mentioned"])
	assert.NotContains(t, by[c.ID+"/"+idOf(m)][0].Payload, "mentioned")
}
