package storetest

import (
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/chatgate/chatgate/core"
)

var userTests = []test{
	{"CreateUser", testCreateUser},
	{"UsernameTakenInAnyCase", testUsernameTaken},
	{"UnknownUser", testUnknownUser},
	{"UsersByIDLeavesOutUnknown", testUsersByID},
	{"SearchUsers", testSearchUsers},
	{"UpdateDisplayName", testUpdateDisplayName},
	{"Devices", testDevices},
}

func testCreateUser(t *testing.T, e *env) {
	a := e.newAccount("Alice", "Alice Liddell")

	got, err := e.s.UserByID(e.ctx, a.ID)
	require.NoError(t, err)
	requireUser(t, a.User, got, "the username keeps the case it was given")

	for _, name := range []string{"Alice", "alice", "ALICE"} {
		rec, err := e.s.UserByName(e.ctx, name)
		require.NoError(t, err, "UserByName(%q) must ignore case", name)
		requireUser(t, a.User, rec.User)
		require.Equal(t, a.PasswordHash, rec.PasswordHash)
	}

	d, err := e.s.DeviceByToken(e.ctx, a.TokenHash)
	require.NoError(t, err, "CreateUser stores the first device")
	requireDevice(t, a.Device, d)
}

func testUsernameTaken(t *testing.T, e *env) {
	a := e.newAccount("Alice", "Alice")
	for _, name := range []string{"Alice", "alice", "ALICE", "aLiCe"} {
		b := e.mkAccount(name, "Impostor")
		err := e.s.CreateUser(e.ctx, b.UserRecord, b.Device, b.TokenHash)
		require.ErrorIs(t, err, core.ErrUsernameTaken, name)

		// A refused create stores nothing, not even the device.
		_, err = e.s.UserByID(e.ctx, b.ID)
		require.ErrorIs(t, err, core.ErrUserNotFound, name)
		_, err = e.s.DeviceByToken(e.ctx, b.TokenHash)
		require.ErrorIs(t, err, core.ErrUnauthorized, name)
	}
	rec, err := e.s.UserByName(e.ctx, "alice")
	require.NoError(t, err)
	requireUser(t, a.User, rec.User, "the first owner of the name keeps it")
}

func testUnknownUser(t *testing.T, e *env) {
	e.user("alice")
	_, err := e.s.UserByID(e.ctx, e.unknownID())
	require.ErrorIs(t, err, core.ErrUserNotFound)
	_, err = e.s.UserByName(e.ctx, "nobody")
	require.ErrorIs(t, err, core.ErrUserNotFound)
	_, err = e.s.UserByName(e.ctx, "alic")
	require.ErrorIs(t, err, core.ErrUserNotFound, "UserByName matches whole names, not prefixes")
}

func testUsersByID(t *testing.T, e *env) {
	a := e.newAccount("alice", "Alice")
	b := e.newAccount("bob", "Bob")
	got, err := e.s.UsersByID(e.ctx, []core.ID{a.ID, e.unknownID(), b.ID})
	require.NoError(t, err)
	require.Len(t, got, 2, "unknown ids are left out")
	requireUser(t, a.User, got[a.ID])
	requireUser(t, b.User, got[b.ID])

	got, err = e.s.UsersByID(e.ctx, nil)
	require.NoError(t, err)
	require.Empty(t, got)
}

func testSearchUsers(t *testing.T, e *env) {
	alice := e.newAccount("alice", "Wonderland Queen").ID
	alfred := e.newAccount("Alfred", "Butler").ID
	bob := e.newAccount("bob", "Alpha Bob").ID      // found by display name
	zed := e.newAccount("zed", "ALBATROSS").ID      // by display name, other case
	carol := e.newAccount("carol", "Carol Danvers") // by both: listed once
	e.newAccount("dave", "Dave")

	search := func(prefix string, limit int) []core.ID {
		t.Helper()
		us, err := e.s.SearchUsers(e.ctx, prefix, limit)
		require.NoError(t, err)
		ids := make([]core.ID, 0, len(us))
		for _, u := range us {
			ids = append(ids, u.ID)
		}
		return ids
	}

	al := []core.ID{alice, alfred, bob, zed}
	for _, prefix := range []string{"al", "AL", "Al"} {
		require.ElementsMatch(t, al, search(prefix, 10), "prefix %q", prefix)
	}
	require.ElementsMatch(t, []core.ID{alice}, search("WONDER", 10))
	require.ElementsMatch(t, []core.ID{bob}, search("alpha b", 10), "a display-name prefix may hold a space")
	require.ElementsMatch(t, []core.ID{carol.ID}, search("car", 10), "a user matching twice is listed once")
	require.Empty(t, search("lice", 10), "a match must be a prefix, not a substring")
	require.Empty(t, search("x", 10))

	two := search("al", 2)
	require.Len(t, two, 2, "limit")
	require.Subset(t, al, two)
	require.NotEqual(t, two[0], two[1])

	us, err := e.s.SearchUsers(e.ctx, "carol", 10)
	require.NoError(t, err)
	require.Len(t, us, 1)
	requireUser(t, carol.User, us[0], "SearchUsers returns whole profiles")
}

func testUpdateDisplayName(t *testing.T, e *env) {
	a := e.newAccount("alice", "Wonderland Queen")
	u, err := e.s.UpdateDisplayName(e.ctx, a.ID, "Zebra Crossing")
	require.NoError(t, err)
	want := a.User
	want.DisplayName = "Zebra Crossing"
	requireUser(t, want, u, "UpdateDisplayName returns the changed user")

	got, err := e.s.UserByID(e.ctx, a.ID)
	require.NoError(t, err)
	requireUser(t, want, got)
	rec, err := e.s.UserByName(e.ctx, "alice")
	require.NoError(t, err)
	requireUser(t, want, rec.User)
	require.Equal(t, a.PasswordHash, rec.PasswordHash, "changing the name must keep the password")

	found, err := e.s.SearchUsers(e.ctx, "zebra", 10)
	require.NoError(t, err)
	require.Len(t, found, 1, "the new name is searchable")
	requireUser(t, want, found[0])
	found, err = e.s.SearchUsers(e.ctx, "wonder", 10)
	require.NoError(t, err)
	require.Empty(t, found, "the old name is no longer searchable")

	_, err = e.s.UpdateDisplayName(e.ctx, e.unknownID(), "Ghost")
	require.ErrorIs(t, err, core.ErrUserNotFound)
	found, err = e.s.SearchUsers(e.ctx, "ghost", 10)
	require.NoError(t, err)
	require.Empty(t, found, "a refused update indexes nothing")
}

func testDevices(t *testing.T, e *env) {
	a := e.newAccount("alice", "Alice")
	b := e.newAccount("bob", "Bob")

	d2 := e.mkDevice(a.ID)
	h2 := core.TokenHash("second token of alice")
	require.NoError(t, e.s.CreateDevice(e.ctx, d2, h2))
	got, err := e.s.DeviceByToken(e.ctx, h2)
	require.NoError(t, err)
	requireDevice(t, d2, got)
	got, err = e.s.DeviceByToken(e.ctx, a.TokenHash)
	require.NoError(t, err)
	requireDevice(t, a.Device, got, "a new device leaves the others alone")

	ghost := e.mkDevice(e.unknownID())
	hg := core.TokenHash("token of nobody")
	require.ErrorIs(t, e.s.CreateDevice(e.ctx, ghost, hg), core.ErrUserNotFound)
	_, err = e.s.DeviceByToken(e.ctx, hg)
	require.ErrorIs(t, err, core.ErrUnauthorized, "a refused device has no token")
	_, err = e.s.DeviceByToken(e.ctx, core.TokenHash("never issued"))
	require.ErrorIs(t, err, core.ErrUnauthorized)

	// Bob cannot revoke Alice's device by naming it.
	_, err = e.s.DeleteDevice(e.ctx, b.ID, a.Device.ID)
	require.ErrorIs(t, err, core.ErrUnauthorized)
	_, err = e.s.DeviceByToken(e.ctx, a.TokenHash)
	require.NoError(t, err)

	n, err := e.s.DeleteDevice(e.ctx, a.ID, d2.ID)
	require.NoError(t, err)
	require.Equal(t, 1, n, "remaining devices")
	_, err = e.s.DeviceByToken(e.ctx, h2)
	require.ErrorIs(t, err, core.ErrUnauthorized, "a deleted device's token is revoked")
	_, err = e.s.DeviceByToken(e.ctx, a.TokenHash)
	require.NoError(t, err, "the other device keeps working")

	_, err = e.s.DeleteDevice(e.ctx, a.ID, d2.ID)
	require.ErrorIs(t, err, core.ErrUnauthorized, "deleting twice")
	_, err = e.s.DeleteDevice(e.ctx, a.ID, e.unknownID())
	require.ErrorIs(t, err, core.ErrUnauthorized, "unknown device")

	n, err = e.s.DeleteDevice(e.ctx, a.ID, a.Device.ID)
	require.NoError(t, err)
	require.Equal(t, 0, n)
	_, err = e.s.DeviceByToken(e.ctx, a.TokenHash)
	require.ErrorIs(t, err, core.ErrUnauthorized)
	_, err = e.s.DeviceByToken(e.ctx, b.TokenHash)
	require.NoError(t, err, "other users' devices are untouched")
}
