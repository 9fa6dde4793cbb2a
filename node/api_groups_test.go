package node_test

import (
	"net/http"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/chatgate/chatgate/internal/testkit"
)

func createGroup(t testing.TB, owner *testkit.Client, name string, members ...string) map[string]any {
	t.Helper()
	if members == nil {
		members = []string{}
	}
	return requireStatus(t, owner.Do("POST", "/v1/groups", map[string]any{"name": name, "members": members}), http.StatusCreated)
}

func groupIDs(t testing.TB, c *testkit.Client) []string {
	t.Helper()
	m := requireStatus(t, c.Do("GET", "/v1/groups", nil), http.StatusOK)
	gs, ok := m["groups"].([]any)
	require.True(t, ok, "groups must be an array: %v", m)
	out := []string{}
	for _, g := range gs {
		out = append(out, g.(map[string]any)["id"].(string))
	}
	return out
}

func TestAPIGroupCreateAndDetail(t *testing.T) {
	n := testkit.Start(t)
	owner := testkit.Signup(t, n.URL(), "gown")
	b := testkit.Signup(t, n.URL(), "gb")
	c := testkit.Signup(t, n.URL(), "gc")
	outsider := testkit.Signup(t, n.URL(), "gout")

	// The owner is always a member, and duplicates count once.
	d := createGroup(t, owner, "  Book club  ", b.ID, c.ID, b.ID, owner.ID)
	gid := requireID(t, d["id"], "group.id")
	assert.Equal(t, "Book club", d["name"])
	assert.Equal(t, owner.ID, d["owner_id"])
	assert.Equal(t, "g_"+gid, d["conversation_id"])
	requireTime(t, d["created_at"], "group.created_at")
	assert.Equal(t, []string{owner.ID, b.ID, c.ID}, memberIDs(t, d))

	// Members read the detail with each member's presence snapshot.
	for _, cl := range []*testkit.Client{owner, b, c} {
		got := groupDetail(t, cl, gid)
		assert.Equal(t, []string{owner.ID, b.ID, c.ID}, memberIDs(t, got))
		for _, m := range got["members"].([]any) {
			mm := m.(map[string]any)
			assert.ElementsMatch(t, []string{"id", "username", "display_name", "created_at", "status", "last_active_at"}, keys(mm))
			assert.Equal(t, "online", mm["status"], "every member was just active")
			requireTime(t, mm["last_active_at"], "member.last_active_at")
		}
		assert.Contains(t, groupIDs(t, cl), gid)
	}

	// Others learn nothing, not even that it exists.
	requireError(t, outsider.Do("GET", "/v1/groups/"+gid, nil), http.StatusNotFound, "group_not_found")
	requireError(t, outsider.Do("GET", "/v1/groups/987654321987", nil), http.StatusNotFound, "group_not_found")
	requireError(t, outsider.Do("GET", "/v1/groups/xyz", nil), http.StatusBadRequest, "invalid_id")
	assert.Empty(t, groupIDs(t, outsider))
	requireError(t, outsider.Do("GET", "/v1/conversations/g_"+gid+"/messages", nil), http.StatusNotFound, "conversation_not_found")
}

func TestAPIGroupCreateRejects(t *testing.T) {
	n := testkit.Start(t)
	owner := testkit.Signup(t, n.URL(), "gcr")
	b := testkit.Signup(t, n.URL(), "gcrb")

	cases := []struct {
		name   string
		body   any
		status int
		code   string
	}{
		{"unknown member", map[string]any{"name": "x", "members": []string{b.ID, "987654321987"}}, http.StatusNotFound, "user_not_found"},
		{"empty name", map[string]any{"name": "  ", "members": []string{b.ID}}, http.StatusBadRequest, "invalid_name"},
		{"numeric member id", `{"name":"x","members":[5]}`, http.StatusBadRequest, "invalid_field"},
		{"zero member id", `{"name":"x","members":["0"]}`, http.StatusBadRequest, "invalid_field"},
		{"members not an array", `{"name":"x","members":"` + b.ID + `"}`, http.StatusBadRequest, "invalid_field"},
		{"unknown field", map[string]any{"name": "x", "members": []string{}, "public": true}, http.StatusBadRequest, "unknown_field"},
		{"malformed", `{"name":"x",`, http.StatusBadRequest, "invalid_json"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			cl := &testkit.Client{T: t, Base: owner.Base, Token: owner.Token, HTTP: owner.HTTP}
			requireError(t, cl.Do("POST", "/v1/groups", tc.body), tc.status, tc.code)
		})
	}
	assert.Empty(t, groupIDs(t, owner))
	assert.Empty(t, groupIDs(t, b))
}

func TestAPIGroupMembership(t *testing.T) {
	n := testkit.Start(t)
	owner := testkit.Signup(t, n.URL(), "mown")
	b := testkit.Signup(t, n.URL(), "mb")
	c := testkit.Signup(t, n.URL(), "mc")
	d := testkit.Signup(t, n.URL(), "md")
	outsider := testkit.Signup(t, n.URL(), "mout")
	gid := createGroup(t, owner, "team", b.ID, c.ID)["id"].(string)

	// Any member may add someone.
	got := requireStatus(t, b.Do("POST", "/v1/groups/"+gid+"/members", map[string]any{"user_id": d.ID}), http.StatusOK)
	assert.Equal(t, []string{owner.ID, b.ID, c.ID, d.ID}, memberIDs(t, got))
	assert.Equal(t, []string{owner.ID, b.ID, c.ID, d.ID}, memberIDs(t, groupDetail(t, d, gid)))

	// Refused additions change nothing.
	requireError(t, owner.Do("POST", "/v1/groups/"+gid+"/members", map[string]any{"user_id": d.ID}), http.StatusConflict, "already_member")
	requireError(t, owner.Do("POST", "/v1/groups/"+gid+"/members", map[string]any{"user_id": "987654321987"}), http.StatusNotFound, "user_not_found")
	requireError(t, owner.Do("POST", "/v1/groups/"+gid+"/members", map[string]any{}), http.StatusBadRequest, "invalid_field")
	requireError(t, owner.Do("POST", "/v1/groups/"+gid+"/members", `{"user_id":7}`), http.StatusBadRequest, "invalid_field")
	requireError(t, outsider.Do("POST", "/v1/groups/"+gid+"/members", map[string]any{"user_id": outsider.ID}), http.StatusNotFound, "group_not_found")
	requireError(t, owner.Do("POST", "/v1/groups/987654321987/members", map[string]any{"user_id": outsider.ID}), http.StatusNotFound, "group_not_found")
	assert.Equal(t, []string{owner.ID, b.ID, c.ID, d.ID}, memberIDs(t, groupDetail(t, owner, gid)))
	requireError(t, outsider.Do("GET", "/v1/groups/"+gid, nil), http.StatusNotFound, "group_not_found")

	// A member who is not the owner cannot remove others...
	requireError(t, b.Do("DELETE", "/v1/groups/"+gid+"/members/"+c.ID, nil), http.StatusForbidden, "forbidden")
	requireError(t, b.Do("DELETE", "/v1/groups/"+gid+"/members/"+owner.ID, nil), http.StatusForbidden, "forbidden")
	requireError(t, outsider.Do("DELETE", "/v1/groups/"+gid+"/members/"+c.ID, nil), http.StatusNotFound, "group_not_found")
	requireError(t, owner.Do("DELETE", "/v1/groups/"+gid+"/members/"+outsider.ID, nil), http.StatusNotFound, "member_not_found")
	assert.Equal(t, []string{owner.ID, b.ID, c.ID, d.ID}, memberIDs(t, groupDetail(t, c, gid)))

	// ...but can leave.
	requireStatus(t, b.Do("DELETE", "/v1/groups/"+gid+"/members/"+b.ID, nil), http.StatusNoContent)
	requireError(t, b.Do("GET", "/v1/groups/"+gid, nil), http.StatusNotFound, "group_not_found")
	assert.NotContains(t, groupIDs(t, b), gid)
	assert.Equal(t, []string{owner.ID, c.ID, d.ID}, memberIDs(t, groupDetail(t, owner, gid)))

	// The owner removes anyone.
	requireStatus(t, owner.Do("DELETE", "/v1/groups/"+gid+"/members/"+d.ID, nil), http.StatusNoContent)
	requireError(t, d.Do("GET", "/v1/groups/"+gid, nil), http.StatusNotFound, "group_not_found")
	assert.Equal(t, []string{owner.ID, c.ID}, memberIDs(t, groupDetail(t, c, gid)))

	// When the owner leaves, the longest-standing member owns the group.
	requireStatus(t, owner.Do("DELETE", "/v1/groups/"+gid+"/members/"+owner.ID, nil), http.StatusNoContent)
	detail := groupDetail(t, c, gid)
	assert.Equal(t, []string{c.ID}, memberIDs(t, detail))
	assert.Equal(t, c.ID, detail["owner_id"])
}

func TestAPIGroupMessagesFanOut(t *testing.T) {
	n := testkit.Start(t)
	owner := testkit.Signup(t, n.URL(), "fown")
	b := testkit.Signup(t, n.URL(), "fb")
	c := testkit.Signup(t, n.URL(), "fc")
	outsider := testkit.Signup(t, n.URL(), "fout")
	gid := createGroup(t, owner, "fan", b.ID, c.ID)["id"].(string)

	msg := send(t, b, map[string]any{"group_id": gid, "content": "hello all", "client_msg_id": "g1"})
	requireID(t, msg["id"], "message.id")
	assert.Equal(t, gid, msg["group_id"])
	assert.Equal(t, "g_"+gid, msg["conversation_id"])
	assert.Equal(t, b.ID, msg["from"])
	assert.NotContains(t, msg, "to")

	// Exactly once in every member's inbox, the sender's included.
	for _, cl := range []*testkit.Client{owner, b, c} {
		evs, cursor := cl.PollAll(0)
		require.Len(t, evs, 1, "inbox of %s", cl.ID)
		requireSeqs(t, evs, 1)
		assert.Equal(t, uint64(1), cursor)
		assert.Equal(t, msg, evs[0]["message"])
	}
	evs, _ := outsider.PollAll(0)
	assert.Empty(t, evs)

	// Retrying is not a second message for anyone.
	again := send(t, b, map[string]any{"group_id": gid, "content": "hello all", "client_msg_id": "g1"})
	assert.Equal(t, msg["id"], again["id"])

	// Outsiders cannot post, and nothing moves.
	before := snapshot(t, owner, b, c, outsider)
	r := outsider.Do("POST", "/v1/messages", map[string]any{"group_id": gid, "content": "let me in", "client_msg_id": "x"})
	requireError(t, r, http.StatusNotFound, "group_not_found")
	r = owner.Do("POST", "/v1/messages", map[string]any{"group_id": "987654321987", "content": "void", "client_msg_id": "y"})
	requireError(t, r, http.StatusNotFound, "group_not_found")
	requireUnchanged(t, before, owner, b, c, outsider)

	// A member who left no longer receives; a new member receives from then on.
	requireStatus(t, c.Do("DELETE", "/v1/groups/"+gid+"/members/"+c.ID, nil), http.StatusNoContent)
	requireStatus(t, owner.Do("POST", "/v1/groups/"+gid+"/members", map[string]any{"user_id": outsider.ID}), http.StatusOK)
	second := send(t, owner, map[string]any{"group_id": gid, "content": "second", "client_msg_id": "g2"})
	evs, _ = c.PollAll(0)
	assert.Len(t, evs, 1, "c left before the second message")
	evs, _ = outsider.PollAll(0)
	require.Len(t, evs, 1)
	assert.Equal(t, second["id"], evs[0]["message"].(map[string]any)["id"])
	// The former member's conversation list drops the group (and with it an
	// unread count of messages it may not read); the new member's unread
	// count starts at joining.
	assert.Nil(t, findConv(conversations(t, c), "g_"+gid))
	nc := findConv(conversations(t, outsider), "g_"+gid)
	require.NotNil(t, nc)
	assert.Equal(t, float64(1), nc["unread_count"])
	assert.Equal(t, second, nc["last_message"])
	evs, _ = b.PollAll(0)
	require.Len(t, evs, 2)
	requireSeqs(t, evs, 1)

	// A former member cannot post or read the history any more.
	r = c.Do("POST", "/v1/messages", map[string]any{"group_id": gid, "content": "still here?", "client_msg_id": "z"})
	requireError(t, r, http.StatusNotFound, "group_not_found")
	requireError(t, c.Do("GET", "/v1/conversations/g_"+gid+"/messages", nil), http.StatusNotFound, "conversation_not_found")
	hist, _ := historyOf(t, outsider, "g_"+gid, "")
	assert.Equal(t, []string{second["id"].(string), msg["id"].(string)}, ids(hist))
}

// TestAPIGroupLimit checks the 100-member cap: exactly 100 works, the 101st
// is refused with group_full and nothing changes.
func TestAPIGroupLimit(t *testing.T) {
	n := testkit.Start(t)
	users := testkit.SignupMany(t, n.URL(), "cap", 101)
	owner, extra := users[0], users[100]
	others := make([]string, 0, 100)
	for _, u := range users[1:] {
		others = append(others, u.ID)
	}

	// Create with 101 members (owner + 100): refused, no group created.
	r := owner.Do("POST", "/v1/groups", map[string]any{"name": "too big", "members": others})
	requireError(t, r, http.StatusConflict, "group_full")
	assert.Empty(t, groupIDs(t, owner))
	assert.Empty(t, groupIDs(t, extra))

	// Owner + 98 others, with duplicates and the owner listed too: 99.
	withDups := append(append([]string{owner.ID}, others[:98]...), others[:10]...)
	d := createGroup(t, owner, "big", withDups...)
	gid := d["id"].(string)
	require.Len(t, memberIDs(t, d), 99)

	// The 100th member is accepted.
	got := requireStatus(t, owner.Do("POST", "/v1/groups/"+gid+"/members", map[string]any{"user_id": others[98]}), http.StatusOK)
	require.Len(t, memberIDs(t, got), 100)

	// The 101st is refused, by anyone, and nothing changes.
	requireError(t, owner.Do("POST", "/v1/groups/"+gid+"/members", map[string]any{"user_id": extra.ID}), http.StatusConflict, "group_full")
	requireError(t, users[50].Do("POST", "/v1/groups/"+gid+"/members", map[string]any{"user_id": extra.ID}), http.StatusConflict, "group_full")
	detail := groupDetail(t, owner, gid)
	assert.Len(t, memberIDs(t, detail), 100)
	assert.NotContains(t, memberIDs(t, detail), extra.ID)
	requireError(t, extra.Do("GET", "/v1/groups/"+gid, nil), http.StatusNotFound, "group_not_found")

	// Exactly 100 at creation works too.
	d2 := createGroup(t, owner, "exactly 100", others[:99]...)
	assert.Len(t, memberIDs(t, d2), 100)

	// A message to a full group lands once in each of the 100 inboxes.
	msg := send(t, users[7], map[string]any{"group_id": gid, "content": "hi 100", "client_msg_id": "cap"})
	for _, u := range users[:100] { // the owner and others[:99]

		evs, _ := u.PollAll(0)
		require.Len(t, evs, 1, "inbox of %s", u.ID)
		assert.Equal(t, msg["id"], evs[0]["message"].(map[string]any)["id"])
	}
	evs, _ := extra.PollAll(0)
	assert.Empty(t, evs)
}
