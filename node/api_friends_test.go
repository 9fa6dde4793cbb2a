package node_test

import (
	"net/http"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/chatgate/chatgate/internal/testkit"
)

func TestAPIFriendRequestAndFriendship(t *testing.T) {
	n := testkit.Start(t)
	a := testkit.Signup(t, n.URL(), "amy")
	b := testkit.Signup(t, n.URL(), "bob")

	// One side: a request, visible as outgoing to a and incoming to b,
	// without presence.
	m := requireStatus(t, a.Do("PUT", "/v1/friends/"+b.ID, nil), http.StatusOK)
	assert.Equal(t, "requested", m["status"])
	assert.Equal(t, b.ID, m["user_id"])

	fa, fb := friendsOf(t, a), friendsOf(t, b)
	assert.Empty(t, fa.Friends)
	assert.Empty(t, fa.Incoming)
	assert.Equal(t, []string{b.ID}, ids(fa.Outgoing))
	assert.Empty(t, fb.Friends)
	assert.Empty(t, fb.Outgoing)
	assert.Equal(t, []string{a.ID}, ids(fb.Incoming))
	for _, u := range append(fa.Outgoing, fb.Incoming...) {
		requireUserShape(t, u) // no status, no last_active_at
	}

	// Adding again is idempotent.
	m = requireStatus(t, a.Do("PUT", "/v1/friends/"+b.ID, nil), http.StatusOK)
	assert.Equal(t, "requested", m["status"])
	assert.Equal(t, []string{b.ID}, ids(friendsOf(t, a).Outgoing))

	// Both sides: friends, with presence, and no pending requests left.
	m = requireStatus(t, b.Do("PUT", "/v1/friends/"+a.ID, nil), http.StatusOK)
	assert.Equal(t, "friends", m["status"])
	for _, pair := range [][2]*testkit.Client{{a, b}, {b, a}} {
		me, other := pair[0], pair[1]
		fl := friendsOf(t, me)
		assert.Empty(t, fl.Incoming)
		assert.Empty(t, fl.Outgoing)
		require.Len(t, fl.Friends, 1)
		f := fl.Friends[0]
		assert.Equal(t, other.ID, f["id"])
		assert.Equal(t, username(other), f["username"])
		assert.ElementsMatch(t, []string{"id", "username", "display_name", "created_at", "status", "last_active_at"}, keys(f))
		assert.Equal(t, "online", f["status"], "%s was just active", other.ID)
		requireTime(t, f["last_active_at"], "last_active_at")
	}

	// Deleting from one side removes the friendship on both.
	requireStatus(t, a.Do("DELETE", "/v1/friends/"+b.ID, nil), http.StatusNoContent)
	for _, c := range []*testkit.Client{a, b} {
		fl := friendsOf(t, c)
		assert.Empty(t, fl.Friends)
		assert.Empty(t, fl.Incoming)
		assert.Empty(t, fl.Outgoing)
	}

	// Declining a request also removes it on both sides.
	requireStatus(t, a.Do("PUT", "/v1/friends/"+b.ID, nil), http.StatusOK)
	requireStatus(t, b.Do("DELETE", "/v1/friends/"+a.ID, nil), http.StatusNoContent)
	assert.Empty(t, friendsOf(t, a).Outgoing)
	assert.Empty(t, friendsOf(t, b).Incoming)
}

func TestAPIFriendErrors(t *testing.T) {
	n := testkit.Start(t)
	a := testkit.Signup(t, n.URL(), "ferr")
	b := testkit.Signup(t, n.URL(), "fpal")
	testkit.Befriend(t, a, b)
	before := friendsOf(t, a)
	require.Len(t, before.Friends, 1)

	requireError(t, a.Do("PUT", "/v1/friends/"+a.ID, nil), http.StatusBadRequest, "cannot_friend_self")
	requireError(t, a.Do("PUT", "/v1/friends/987654321987", nil), http.StatusNotFound, "user_not_found")
	requireError(t, a.Do("DELETE", "/v1/friends/987654321987", nil), http.StatusNotFound, "user_not_found")
	requireError(t, a.Do("PUT", "/v1/friends/bob", nil), http.StatusBadRequest, "invalid_id")
	requireError(t, a.Do("PUT", "/v1/friends/-1", nil), http.StatusBadRequest, "invalid_id")
	requireError(t, a.Do("PUT", "/v1/friends/18446744073709551616", nil), http.StatusBadRequest, "invalid_id")

	after := friendsOf(t, a)
	assert.Equal(t, ids(before.Friends), ids(after.Friends))
	assert.Empty(t, after.Incoming)
	assert.Empty(t, after.Outgoing)
	assert.Len(t, friendsOf(t, b).Friends, 1)
}

func TestAPIPresenceOnlyForMutualFriends(t *testing.T) {
	n := testkit.Start(t)
	a := testkit.Signup(t, n.URL(), "pa")
	friend := testkit.Signup(t, n.URL(), "pf")
	asker := testkit.Signup(t, n.URL(), "pq")  // a request to a, not accepted
	wanted := testkit.Signup(t, n.URL(), "pw") // a asked, no answer
	testkit.Befriend(t, a, friend)
	requireStatus(t, asker.Do("PUT", "/v1/friends/"+a.ID, nil), http.StatusOK)
	requireStatus(t, a.Do("PUT", "/v1/friends/"+wanted.ID, nil), http.StatusOK)

	fl := friendsOf(t, a)
	require.Equal(t, []string{friend.ID}, ids(fl.Friends))
	assert.Equal(t, "online", fl.Friends[0]["status"])
	require.Equal(t, []string{asker.ID}, ids(fl.Incoming))
	require.Equal(t, []string{wanted.ID}, ids(fl.Outgoing))
	for _, u := range append(fl.Incoming, fl.Outgoing...) {
		assert.NotContains(t, u, "status")
		assert.NotContains(t, u, "last_active_at")
	}
	// The one-sided requesters do not see a's presence either.
	for _, c := range []*testkit.Client{asker, wanted} {
		fl := friendsOf(t, c)
		assert.Empty(t, fl.Friends)
		for _, u := range append(fl.Incoming, fl.Outgoing...) {
			assert.Equal(t, a.ID, u["id"])
			assert.NotContains(t, u, "status")
		}
	}
	// Nor does a profile.
	assert.NotContains(t, requireStatus(t, asker.Do("GET", "/v1/users/"+a.ID, nil), http.StatusOK), "status")
}
