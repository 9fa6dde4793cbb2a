package node_test

import (
	"encoding/json"
	"fmt"
	"net/http"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/chatgate/chatgate/internal/testkit"
)

func contents(t testing.TB, msgs []map[string]any) []string {
	t.Helper()
	out := make([]string, len(msgs))
	for i, m := range msgs {
		out[i] = m["content"].(string)
	}
	return out
}

func TestAPIPollCursor(t *testing.T) {
	n := testkit.Start(t)
	a := testkit.Signup(t, n.URL(), "pca")
	b := testkit.Signup(t, n.URL(), "pcb")
	c := testkit.Signup(t, n.URL(), "pcc")
	gid := createGroup(t, a, "g", b.ID, c.ID)["id"].(string)

	// An empty inbox: no events, the cursor echoed.
	p := b.Poll(0)
	assert.Empty(t, p.Events)
	assert.Equal(t, uint64(0), p.Cursor)
	assert.False(t, p.HasMore)
	raw := requireStatus(t, b.Do("GET", "/v1/poll", nil), http.StatusOK)
	assert.Equal(t, []any{}, raw["events"], "events is an array even when empty")
	assert.Equal(t, float64(0), raw["cursor"])

	// b's inbox interleaves 1:1 messages from two users and a group.
	var want []string
	for i := 0; i < 3; i++ {
		want = append(want, a.Send(b.ID, fmt.Sprintf("a%d", i), fmt.Sprintf("a%d", i))["content"].(string))
		want = append(want, c.Send(b.ID, fmt.Sprintf("c%d", i), fmt.Sprintf("c%d", i))["content"].(string))
		want = append(want, send(t, a, map[string]any{"group_id": gid, "content": fmt.Sprintf("g%d", i), "client_msg_id": fmt.Sprintf("g%d", i)})["content"].(string))
	}

	// Everything after 0: seq 1..9 in order, cursor at the last.
	p = b.Poll(0)
	require.Len(t, p.Events, 9)
	requireSeqs(t, p.Events, 1)
	assert.Equal(t, uint64(9), p.Cursor)
	assert.False(t, p.HasMore)
	assert.Equal(t, want, contents(t, messages(t, p.Events)))
	for _, e := range p.Events {
		assert.ElementsMatch(t, []string{"type", "seq", "message"}, keys(e))
	}

	// Everything after N: exactly the events with seq > N.
	for _, from := range []uint64{1, 4, 8} {
		p := b.Poll(from)
		require.Len(t, p.Events, 9-int(from))
		requireSeqs(t, p.Events, from+1)
		assert.Equal(t, want[from:], contents(t, messages(t, p.Events)))
		assert.Equal(t, uint64(9), p.Cursor)
	}
	// Caught up: nothing, same cursor.
	p = b.Poll(9)
	assert.Empty(t, p.Events)
	assert.Equal(t, uint64(9), p.Cursor)
	assert.False(t, p.HasMore)
	// A cursor beyond the head is pulled back to it, so the client does not
	// skip the messages that will fill the gap.
	p = b.Poll(1000)
	assert.Empty(t, p.Events)
	assert.Equal(t, uint64(9), p.Cursor)
	assert.False(t, p.HasMore)

	// A new message continues the sequence.
	a.Send(b.ID, "tenth", "tenth")
	p = b.Poll(9)
	require.Len(t, p.Events, 1)
	requireSeqs(t, p.Events, 10)
	assert.Equal(t, uint64(10), p.Cursor)

	// Each user's seq is their own: a's inbox holds its 1:1 sends and the
	// group messages, numbered from 1.
	evs, cursor := a.PollAll(0)
	require.Len(t, evs, 7)
	requireSeqs(t, evs, 1)
	assert.Equal(t, uint64(7), cursor)
}

func TestAPIPollLimitPaging(t *testing.T) {
	n := testkit.Start(t)
	a := testkit.Signup(t, n.URL(), "pla")
	b := testkit.Signup(t, n.URL(), "plb")
	for i := 0; i < 7; i++ {
		a.Send(b.ID, fmt.Sprint(i), fmt.Sprint(i))
	}

	var got []string
	cursor, pages := uint64(0), 0
	for {
		r := b.Do("GET", fmt.Sprintf("/v1/poll?cursor=%d&limit=3", cursor), nil)
		require.Equal(t, http.StatusOK, r.Status, "%s", r.Body)
		var p testkit.PollPage
		r.Decode(t, &p)
		pages++
		require.LessOrEqual(t, len(p.Events), 3)
		requireSeqs(t, p.Events, cursor+1)
		got = append(got, contents(t, messages(t, p.Events))...)
		cursor = p.Cursor
		if !p.HasMore {
			break
		}
		require.Len(t, p.Events, 3, "a page with more after it is full")
		require.Less(t, pages, 10, "paging does not end")
	}
	assert.Equal(t, 3, pages)
	assert.Equal(t, []string{"0", "1", "2", "3", "4", "5", "6"}, got)
	assert.Equal(t, uint64(7), cursor)

	// A page that ends exactly at the head says there is no more.
	r := b.Do("GET", "/v1/poll?cursor=4&limit=3", nil)
	var p testkit.PollPage
	r.Decode(t, &p)
	assert.Len(t, p.Events, 3)
	assert.False(t, p.HasMore)
}

func TestAPIPollRejects(t *testing.T) {
	n := testkit.Start(t)
	a := testkit.Signup(t, n.URL(), "pra")
	for _, q := range []string{"cursor=abc", "cursor=-1", "cursor=1.5", "cursor=18446744073709551616"} {
		requireError(t, a.Do("GET", "/v1/poll?"+q, nil), http.StatusBadRequest, "invalid_cursor")
	}
	for _, q := range []string{"limit=abc", "limit=-3"} {
		requireError(t, a.Do("GET", "/v1/poll?cursor=0&"+q, nil), http.StatusBadRequest, "invalid_limit")
	}
}

func TestAPIMultiDeviceSync(t *testing.T) {
	n := testkit.Start(t)
	a := testkit.Signup(t, n.URL(), "mda")
	b := testkit.Signup(t, n.URL(), "mdb")

	sent := a.Send(b.ID, "from device 1", "d1")
	// The sender's own inbox holds its message, so its other devices sync it.
	// Login reports the inbox head, where a device that loads history through
	// the conversation endpoints may start syncing.
	lr := requireStatus(t, testkit.NewClient(t, n.URL()).Do("POST", "/v1/auth/login",
		map[string]any{"username": username(a), "password": password}), http.StatusOK)
	assert.Equal(t, float64(1), lr["cursor"])
	phone := login(t, n.URL(), username(a), "phone")
	evs, cursor := phone.PollAll(0)
	require.Len(t, evs, 1)
	assert.Equal(t, sent, evs[0]["message"])
	assert.Equal(t, uint64(1), cursor)

	// Devices share the user's inbox but each keeps its own cursor.
	reply := b.Send(a.ID, "to every device", "r1")
	fromPhone := phone.Send(b.ID, "from the phone", "p1")
	for _, dev := range []*testkit.Client{a, phone} {
		evs, cursor := dev.PollAll(1)
		require.Len(t, evs, 2)
		requireSeqs(t, evs, 2)
		assert.Equal(t, []any{reply["id"], fromPhone["id"]}, []any{evs[0]["message"].(map[string]any)["id"], evs[1]["message"].(map[string]any)["id"]})
		assert.Equal(t, uint64(3), cursor)
	}
	// A logged-out device no longer syncs; the other still does.
	requireStatus(t, phone.Do("POST", "/v1/auth/logout", nil), http.StatusNoContent)
	requireError(t, phone.Do("GET", "/v1/poll?cursor=0", nil), http.StatusUnauthorized, "unauthorized")
	evs, _ = a.PollAll(0)
	assert.Len(t, evs, 3)
}

func TestAPIConversationsAndReadMarker(t *testing.T) {
	n := testkit.Start(t)
	a := testkit.Signup(t, n.URL(), "cva")
	b := testkit.Signup(t, n.URL(), "cvb")
	c := testkit.Signup(t, n.URL(), "cvc")

	assert.Empty(t, conversations(t, b))

	m1 := a.Send(b.ID, "one", "1")
	m2 := a.Send(b.ID, "two", "2")
	m3 := a.Send(b.ID, "three", "3")
	ab := directConv(a, b)

	cs := conversations(t, b)
	require.Len(t, cs, 1)
	conv := cs[0]
	assert.Equal(t, ab, conv["id"])
	assert.Equal(t, "direct", conv["kind"])
	assert.Equal(t, a.ID, conv["peer_id"])
	assert.Equal(t, m3, conv["last_message"])
	assert.Equal(t, float64(3), conv["unread_count"])
	assert.NotContains(t, conv, "read_up_to")
	// The sender's own messages are not unread for it.
	ca := findConv(conversations(t, a), ab)
	require.NotNil(t, ca)
	assert.Equal(t, b.ID, ca["peer_id"])
	assert.Equal(t, float64(0), ca["unread_count"])

	// Newest activity first.
	mc := c.Send(b.ID, "from c", "c1")
	gid := createGroup(t, c, "trio", a.ID, b.ID)["id"].(string)
	mg := send(t, a, map[string]any{"group_id": gid, "content": "group hi", "client_msg_id": "g"})
	cs = conversations(t, b)
	require.Len(t, cs, 3)
	assert.Equal(t, []string{"g_" + gid, directConv(b, c), ab}, ids(cs))
	assert.Equal(t, "group", cs[0]["kind"])
	assert.Equal(t, gid, cs[0]["group_id"])
	assert.Equal(t, mg, cs[0]["last_message"])
	assert.Equal(t, mc, cs[1]["last_message"])
	assert.Equal(t, float64(1), cs[0]["unread_count"])

	read := func(conv string, msg any) testkit.Response {
		return b.Do("POST", "/v1/conversations/"+conv+"/read", map[string]any{"message_id": msg})
	}
	unread := func() (float64, any) {
		c := findConv(conversations(t, b), ab)
		require.NotNil(t, c)
		return c["unread_count"].(float64), c["read_up_to"]
	}

	// Reading moves the marker.
	requireStatus(t, read(ab, m2["id"]), http.StatusNoContent)
	u, upTo := unread()
	assert.Equal(t, float64(1), u)
	assert.Equal(t, m2["id"], upTo)
	// Never backwards.
	requireStatus(t, read(ab, m1["id"]), http.StatusNoContent)
	u, upTo = unread()
	assert.Equal(t, float64(1), u)
	assert.Equal(t, m2["id"], upTo)
	// All read.
	requireStatus(t, read(ab, m3["id"]), http.StatusNoContent)
	u, upTo = unread()
	assert.Equal(t, float64(0), u)
	assert.Equal(t, m3["id"], upTo)
	// b's own reply does not make the conversation unread.
	b.Send(a.ID, "reply", "reply")
	u, _ = unread()
	assert.Equal(t, float64(0), u)
	// A new message from a does.
	a.Send(b.ID, "four", "4")
	u, _ = unread()
	assert.Equal(t, float64(1), u)

	// Markers are per user: a's unread count is its own.
	assert.Equal(t, float64(1), findConv(conversations(t, a), ab)["unread_count"])

	// Refused markers change nothing.
	before := snapshot(t, a, b, c)
	requireError(t, read(ab, mc["id"]), http.StatusNotFound, "message_not_found")
	requireError(t, read(ab, "987654321987"), http.StatusNotFound, "message_not_found")
	requireError(t, read(ab, 5), http.StatusBadRequest, "invalid_field")
	requireError(t, b.Do("POST", "/v1/conversations/"+ab+"/read", map[string]any{}), http.StatusBadRequest, "invalid_field")
	requireError(t, b.Do("POST", "/v1/conversations/"+ab+"/read", `{"message_id":`), http.StatusBadRequest, "invalid_json")
	// Someone else's conversation, for reading markers and history alike.
	r := c.Do("POST", "/v1/conversations/"+ab+"/read", map[string]any{"message_id": m1["id"]})
	requireError(t, r, http.StatusNotFound, "conversation_not_found")
	requireError(t, c.Do("GET", "/v1/conversations/"+ab+"/messages", nil), http.StatusNotFound, "conversation_not_found")
	lo, hi := a.ID, b.ID
	if ab != "d_"+lo+"_"+hi {
		lo, hi = hi, lo
	}
	for _, bogus := range []string{"nope", "d_1_2", "d_" + hi + "_" + lo, "d_0" + lo + "_" + hi, "g_987654321987", "d_" + a.ID, "g_0", "g_" + gid + "x"} {
		requireError(t, b.Do("GET", "/v1/conversations/"+bogus+"/messages", nil), http.StatusNotFound, "conversation_not_found")
		requireError(t, read(bogus, m1["id"]), http.StatusNotFound, "conversation_not_found")
	}
	requireUnchanged(t, before, a, b, c)
}

func TestAPIHistoryPaging(t *testing.T) {
	n := testkit.Start(t)
	a := testkit.Signup(t, n.URL(), "hpa")
	b := testkit.Signup(t, n.URL(), "hpb")
	other := testkit.Signup(t, n.URL(), "hpo")
	ab := directConv(a, b)

	var sent []string // oldest first
	for i := 0; i < 25; i++ {
		from, to := a, b
		if i%3 == 0 {
			from, to = b, a
		}
		sent = append(sent, from.Send(to.ID, fmt.Sprint(i), fmt.Sprint(i))["id"].(string))
		if i%5 == 0 { // other conversations in between must not leak in
			other.Send(a.ID, "noise", fmt.Sprint("n", i))
		}
	}
	newestFirst := make([]string, len(sent))
	for i, id := range sent {
		newestFirst[len(sent)-1-i] = id
	}

	// Default page: everything, newest first.
	all, more := historyOf(t, a, ab, "")
	assert.False(t, more)
	assert.Equal(t, newestFirst, ids(all))

	// Pages of 10 going back with before=: each message exactly once.
	var got []string
	query, pages := "?limit=10", 0
	for {
		page, more := historyOf(t, b, ab, query)
		pages++
		got = append(got, ids(page)...)
		if !more {
			break
		}
		require.Len(t, page, 10)
		require.Less(t, pages, 10, "paging does not end")
		query = "?limit=10&before=" + page[len(page)-1]["id"].(string)
	}
	assert.Equal(t, 3, pages)
	assert.Equal(t, newestFirst, got)

	// before and after are exclusive.
	page, more := historyOf(t, a, ab, "?before="+sent[10]+"&after="+sent[5])
	assert.Equal(t, []string{sent[9], sent[8], sent[7], sent[6]}, ids(page))
	assert.False(t, more)
	page, _ = historyOf(t, a, ab, "?after="+sent[21])
	assert.Equal(t, []string{sent[24], sent[23], sent[22]}, ids(page))
	page, _ = historyOf(t, a, ab, "?before="+sent[2])
	assert.Equal(t, []string{sent[1], sent[0]}, ids(page))
	page, more = historyOf(t, a, ab, "?before="+sent[0])
	assert.Empty(t, page)
	assert.False(t, more)
	page, more = historyOf(t, a, ab, "?after="+sent[24])
	assert.Empty(t, page)
	assert.False(t, more)
	// after with a limit: has_more says more lie between after and the page.
	page, more = historyOf(t, a, ab, "?after="+sent[10]+"&limit=5")
	assert.Len(t, page, 5)
	assert.True(t, more)
	page, more = historyOf(t, a, ab, "?after="+sent[10]+"&limit=14")
	assert.Len(t, page, 14)
	assert.False(t, more)

	for _, q := range []string{"?before=abc", "?before=0"} {
		requireError(t, a.Do("GET", "/v1/conversations/"+ab+"/messages"+q, nil), http.StatusBadRequest, "invalid_before")
	}
	requireError(t, a.Do("GET", "/v1/conversations/"+ab+"/messages?after=x", nil), http.StatusBadRequest, "invalid_after")
	requireError(t, a.Do("GET", "/v1/conversations/"+ab+"/messages?limit=0", nil), http.StatusBadRequest, "invalid_limit")
	requireError(t, other.Do("GET", "/v1/conversations/"+ab+"/messages", nil), http.StatusNotFound, "conversation_not_found")
}

// A long poll whose cursor is past the inbox's head answers at once with
// the head, so a message sent meanwhile is not skipped: held, it came back
// with the head the message had moved, and resuming there lost it.
func TestLongPollCursorPastHead(t *testing.T) {
	n := testkit.Start(t)
	alice, bob := testkit.Signup(t, n.URL(), "lpa"), testkit.Signup(t, n.URL(), "lpb")
	testkit.Befriend(t, alice, bob)
	_, head := bob.PollAll(0)
	done := make(chan testkit.PollPage, 1)
	go func() {
		var p testkit.PollPage
		if r, err := bob.TryDo("GET", fmt.Sprintf("/v1/longpoll?cursor=%d&wait=2", head+5), nil); err == nil {
			_ = json.Unmarshal(r.Body, &p)
		}
		done <- p
	}()
	send(t, alice, map[string]any{"to": bob.ID, "content": "not skipped", "client_msg_id": "lp1"})
	p := <-done
	evs, _ := bob.PollAll(p.Cursor)
	all := append(p.Events, evs...)
	found := false
	for _, m := range messages(t, all) {
		found = found || m["content"] == "not skipped"
	}
	require.True(t, found, "resuming from the long poll's cursor %d lost the message", p.Cursor)
}
