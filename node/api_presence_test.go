package node_test

import (
	"net/http"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/chatgate/chatgate/internal/testkit"
)

const offlineAfter = 1500 * time.Millisecond

// friendPresence is what watcher sees of friend in GET /v1/friends.
func friendPresence(t testing.TB, watcher, friend *testkit.Client) (string, time.Time) {
	t.Helper()
	for _, f := range friendsOf(t, watcher).Friends {
		if f["id"] == friend.ID {
			var last time.Time
			if f["last_active_at"] != nil {
				last = requireTime(t, f["last_active_at"], "last_active_at")
			}
			return f["status"].(string), last
		}
	}
	require.Failf(t, "not a friend", "%s does not list %s", watcher.ID, friend.ID)
	return "", time.Time{}
}

// waitStatus waits until watcher sees friend with status, polling the API
// (each poll is activity of watcher, never of friend).
func waitStatus(t *testing.T, watcher, friend *testkit.Client, status string) {
	t.Helper()
	require.Eventually(t, func() bool {
		s, _ := friendPresence(t, watcher, friend)
		return s == status
	}, 10*offlineAfter, 25*time.Millisecond, "%s never became %s", friend.ID, status)
}

func TestAPIPresenceWindow(t *testing.T) {
	n := testkit.Start(t, testkit.WithOfflineAfter(offlineAfter))
	a := testkit.Signup(t, n.URL(), "prwa")
	b := testkit.Signup(t, n.URL(), "prwb")
	testkit.Befriend(t, a, b)

	// b was just active: online.
	beforeLast := time.Now().UTC().Truncate(time.Millisecond)
	requireStatus(t, b.Do("POST", "/v1/heartbeat", nil), http.StatusNoContent)
	afterLast := time.Now()
	status, last := friendPresence(t, a, b)
	require.Equal(t, "online", status)
	assert.False(t, last.Before(beforeLast), "last_active_at %v is the heartbeat's time (>= %v)", last, beforeLast)

	// b goes silent: offline once the window has passed, not before, with
	// last_active_at at its last activity.
	waitStatus(t, a, b, "offline")
	offlineSeen := time.Now()
	assert.GreaterOrEqual(t, offlineSeen.Sub(beforeLast), offlineAfter, "offline before the window ended")
	// The sweep runs every tenth of the window; two windows are plenty of
	// slack for a loaded machine, and far from "never".
	assert.Less(t, offlineSeen.Sub(afterLast), 2*offlineAfter+500*time.Millisecond, "offline long after the window ended")
	// The offline record is stored asynchronously; until then a reader may
	// see the time b came online (see the report on presence hand-off).
	require.Eventually(t, func() bool {
		var status string
		status, last = friendPresence(t, a, b)
		return status == "offline" && !last.Before(beforeLast)
	}, 5*time.Second, 20*time.Millisecond, "b did not stay offline with last_active_at at its last activity")
	assert.False(t, last.After(afterLast), "last_active_at %v after b's last request", last)

	// Any authenticated request of b is activity: online again at once.
	requireStatus(t, b.Do("GET", "/v1/me", nil), http.StatusOK)
	status, last2 := friendPresence(t, a, b)
	assert.Equal(t, "online", status)
	assert.True(t, last2.After(last), "last_active_at moved forward")

	// Heartbeats keep b online for longer than a window. The sleep is the
	// client's heartbeat interval, not synchronisation: time passing is what
	// is tested.
	deadline := time.Now().Add(offlineAfter + offlineAfter/3)
	for time.Now().Before(deadline) {
		requireStatus(t, b.Do("POST", "/v1/heartbeat", nil), http.StatusNoContent)
		status, _ := friendPresence(t, a, b)
		require.Equal(t, "online", status, "b sends heartbeats, it must not flap")
		time.Sleep(offlineAfter / 5) // the negotiated heartbeat interval
	}
}

func TestAPIPresenceLogout(t *testing.T) {
	n := testkit.Start(t, testkit.WithOfflineAfter(offlineAfter))
	a := testkit.Signup(t, n.URL(), "prla")
	b := testkit.Signup(t, n.URL(), "prlb")
	testkit.Befriend(t, a, b)
	phone := login(t, n.URL(), username(b), "phone")

	status, _ := friendPresence(t, a, b)
	require.Equal(t, "online", status)

	// Logging out one device leaves the user online through the other.
	requireStatus(t, b.Do("POST", "/v1/auth/logout", nil), http.StatusNoContent)
	requireStatus(t, phone.Do("POST", "/v1/heartbeat", nil), http.StatusNoContent)
	status, _ = friendPresence(t, a, b)
	assert.Equal(t, "online", status)

	// Logging out the last device: offline at once, no waiting for the window.
	beforeLogout := time.Now().UTC().Truncate(time.Millisecond)
	requireStatus(t, phone.Do("POST", "/v1/auth/logout", nil), http.StatusNoContent)
	status, _ = friendPresence(t, a, b)
	assert.Equal(t, "offline", status)

	// The stored presence gets the last activity (the logout request).
	require.Eventually(t, func() bool {
		_, last := friendPresence(t, a, b)
		return !last.Before(beforeLogout)
	}, 5*time.Second, 20*time.Millisecond)
	status, _ = friendPresence(t, a, b)
	assert.Equal(t, "offline", status)

	// Group members see the same snapshot.
	gid := createGroup(t, a, "g", b.ID)["id"].(string)
	for _, m := range groupDetail(t, a, gid)["members"].([]any) {
		mm := m.(map[string]any)
		want := "online"
		if mm["id"] == b.ID {
			want = "offline"
		}
		assert.Equal(t, want, mm["status"], "member %v", mm["id"])
	}

	// Logging in again is online again.
	login(t, n.URL(), username(b), "")
	status, _ = friendPresence(t, a, b)
	assert.Equal(t, "online", status)
}
