package storetest

import (
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/chatgate/chatgate/core"
)

var socialTests = []test{
	{"Friends", testFriends},
	{"FriendEdgesAllKinds", testFriendEdgesAllKinds},
	{"FriendUnknownUser", testFriendUnknownUser},
	{"CreateGroup", testCreateGroup},
	{"CreateGroupUnknownMember", testCreateGroupUnknownMember},
	{"GroupSizeLimit", testGroupSizeLimit},
	{"AddMember", testAddMember},
	{"RemoveMember", testRemoveMember},
	{"OwnerLeavingPassesOwnership", testOwnerLeaves},
	{"LastMemberLeaving", testLastMemberLeaves},
	{"Presence", testPresence},
}

// edges is FriendEdges as sets: the contract promises no order.
func (e *env) requireEdges(uid core.ID, mutual, incoming, outgoing []core.ID) {
	e.t.Helper()
	m, in, out, err := e.s.FriendEdges(e.ctx, uid)
	require.NoError(e.t, err)
	require.ElementsMatch(e.t, mutual, m, "mutual friends of %d", uid)
	require.ElementsMatch(e.t, incoming, in, "incoming requests of %d", uid)
	require.ElementsMatch(e.t, outgoing, out, "outgoing requests of %d", uid)
}

func (e *env) setFriend(from, to core.ID, on bool) bool {
	e.t.Helper()
	mutual, err := e.s.SetFriend(e.ctx, from, to, on)
	require.NoError(e.t, err)
	return mutual
}

func testFriends(t *testing.T, e *env) {
	a, b, c := e.user("alice"), e.user("bob"), e.user("carol")
	e.requireEdges(a, nil, nil, nil)

	require.False(t, e.setFriend(a, b, true), "one side is a request, not a friendship")
	e.requireEdges(a, nil, nil, []core.ID{b})
	e.requireEdges(b, nil, []core.ID{a}, nil)

	require.True(t, e.setFriend(b, a, true), "both sides make a friendship")
	e.requireEdges(a, []core.ID{b}, nil, nil)
	e.requireEdges(b, []core.ID{a}, nil, nil)
	require.True(t, e.setFriend(a, b, true), "adding again keeps the friendship")
	e.requireEdges(a, []core.ID{b}, nil, nil)

	require.False(t, e.setFriend(a, b, false))
	e.requireEdges(a, nil, nil, nil)
	e.requireEdges(b, nil, nil, nil) // removing removes the other side too

	// Declining a request removes the requester's side.
	e.setFriend(c, a, true)
	e.requireEdges(a, nil, []core.ID{c}, nil)
	require.False(t, e.setFriend(a, c, false))
	e.requireEdges(a, nil, nil, nil)
	e.requireEdges(c, nil, nil, nil)
}

func testFriendEdgesAllKinds(t *testing.T, e *env) {
	a, b, c, d, x := e.user("alice"), e.user("bob"), e.user("carol"), e.user("dave"), e.user("xavier")
	e.setFriend(a, b, true)
	e.setFriend(b, a, true)
	e.setFriend(c, a, true)
	e.setFriend(a, d, true)
	e.setFriend(x, b, true) // others' edges stay out of a's lists
	e.requireEdges(a, []core.ID{b}, []core.ID{c}, []core.ID{d})
	e.requireEdges(b, []core.ID{a}, []core.ID{x}, nil)
	e.requireEdges(c, nil, nil, []core.ID{a})
	e.requireEdges(d, nil, []core.ID{a}, nil)
}

func testFriendUnknownUser(t *testing.T, e *env) {
	a, b := e.user("alice"), e.user("bob")
	e.setFriend(a, b, true)
	ghost := e.unknownID()
	for _, on := range []bool{true, false} {
		_, err := e.s.SetFriend(e.ctx, a, ghost, on)
		require.ErrorIs(t, err, core.ErrUserNotFound, "on=%v", on)
	}
	e.requireEdges(a, nil, nil, []core.ID{b})
}

func testCreateGroup(t *testing.T, e *env) {
	o, a, b, c := e.user("owner"), e.user("alice"), e.user("bob"), e.user("carol")
	g := e.group(o, a, b)

	got, err := e.s.Group(e.ctx, g.ID)
	require.NoError(t, err)
	requireGroup(t, g, got)

	for _, u := range []core.ID{o, a, b} {
		gs, err := e.s.GroupsOf(e.ctx, u)
		require.NoError(t, err)
		require.Len(t, gs, 1, "groups of %d", u)
		requireGroup(t, g, gs[0])
	}
	gs, err := e.s.GroupsOf(e.ctx, c)
	require.NoError(t, err)
	require.Empty(t, gs)

	g2 := e.group(a, c)
	gs, err = e.s.GroupsOf(e.ctx, a)
	require.NoError(t, err)
	require.ElementsMatch(t, []core.ID{g.ID, g2.ID}, groupIDs(gs))

	_, err = e.s.Group(e.ctx, e.unknownID())
	require.ErrorIs(t, err, core.ErrGroupNotFound)
}

func groupIDs(gs []core.Group) []core.ID {
	ids := make([]core.ID, 0, len(gs))
	for _, g := range gs {
		ids = append(ids, g.ID)
	}
	return ids
}

func testCreateGroupUnknownMember(t *testing.T, e *env) {
	o, a := e.user("owner"), e.user("alice")
	g := e.mkGroup(o, a, e.unknownID())
	require.ErrorIs(t, e.s.CreateGroup(e.ctx, g), core.ErrUserNotFound)
	_, err := e.s.Group(e.ctx, g.ID)
	require.ErrorIs(t, err, core.ErrGroupNotFound, "a refused group is not stored")
	for _, u := range []core.ID{o, a} {
		gs, err := e.s.GroupsOf(e.ctx, u)
		require.NoError(t, err)
		require.Empty(t, gs, "a refused group lists no member")
	}
	_, err = e.s.Append(e.ctx, e.req(o, 0, g.ID, "hello?"))
	require.ErrorIs(t, err, core.ErrGroupNotFound)
}

func testGroupSizeLimit(t *testing.T, e *env) {
	us := e.users("member", core.MaxGroupMembers+1)

	tooBig := e.mkGroup(us[0], us[1:]...)
	require.ErrorIs(t, e.s.CreateGroup(e.ctx, tooBig), core.ErrGroupFull)
	_, err := e.s.Group(e.ctx, tooBig.ID)
	require.ErrorIs(t, err, core.ErrGroupNotFound)

	full := e.group(us[0], us[1:core.MaxGroupMembers]...)
	got, err := e.s.Group(e.ctx, full.ID)
	require.NoError(t, err)
	require.Len(t, got.Members, core.MaxGroupMembers, "exactly MaxGroupMembers is allowed")

	last := us[core.MaxGroupMembers]
	_, err = e.s.AddMember(e.ctx, full.ID, us[0], last)
	require.ErrorIs(t, err, core.ErrGroupFull)
	got, err = e.s.Group(e.ctx, full.ID)
	require.NoError(t, err)
	require.Len(t, got.Members, core.MaxGroupMembers)
	require.False(t, got.Has(last))

	// The group fills up to the limit through AddMember as well.
	g := e.group(us[0], us[1:core.MaxGroupMembers-1]...)
	_, err = e.s.AddMember(e.ctx, g.ID, us[1], us[core.MaxGroupMembers-1])
	require.NoError(t, err)
	_, err = e.s.AddMember(e.ctx, g.ID, us[1], last)
	require.ErrorIs(t, err, core.ErrGroupFull)
}

func testAddMember(t *testing.T, e *env) {
	o, a, b, c, d := e.user("owner"), e.user("alice"), e.user("bob"), e.user("carol"), e.user("dave")
	g := e.group(o, a)

	got, err := e.s.AddMember(e.ctx, g.ID, o, b)
	require.NoError(t, err)
	g.Members = append(g.Members, b)
	requireGroup(t, g, got, "AddMember returns the changed group")
	stored, err := e.s.Group(e.ctx, g.ID)
	require.NoError(t, err)
	requireGroup(t, g, stored)
	gs, err := e.s.GroupsOf(e.ctx, b)
	require.NoError(t, err)
	require.Equal(t, []core.ID{g.ID}, groupIDs(gs))

	// Any member may add, not only the owner.
	_, err = e.s.AddMember(e.ctx, g.ID, a, c)
	require.NoError(t, err)
	g.Members = append(g.Members, c)

	_, err = e.s.AddMember(e.ctx, g.ID, d, d)
	require.ErrorIs(t, err, core.ErrGroupNotFound, "a non-member cannot add (not even itself)")
	_, err = e.s.AddMember(e.ctx, e.unknownID(), o, d)
	require.ErrorIs(t, err, core.ErrGroupNotFound, "unknown group")
	_, err = e.s.AddMember(e.ctx, g.ID, o, e.unknownID())
	require.ErrorIs(t, err, core.ErrUserNotFound)
	_, err = e.s.AddMember(e.ctx, g.ID, o, a)
	require.ErrorIs(t, err, core.ErrAlreadyMember)
	_, err = e.s.AddMember(e.ctx, g.ID, a, o)
	require.ErrorIs(t, err, core.ErrAlreadyMember, "the owner is a member")

	stored, err = e.s.Group(e.ctx, g.ID)
	require.NoError(t, err)
	requireGroup(t, g, stored, "refused adds change nothing")
}

func testRemoveMember(t *testing.T, e *env) {
	o, a, b, c := e.user("owner"), e.user("alice"), e.user("bob"), e.user("carol")
	g := e.group(o, a, b)

	_, err := e.s.RemoveMember(e.ctx, g.ID, a, b)
	require.ErrorIs(t, err, core.ErrForbidden, "a member may not remove another")
	_, err = e.s.RemoveMember(e.ctx, g.ID, a, o)
	require.ErrorIs(t, err, core.ErrForbidden, "nor the owner")
	_, err = e.s.RemoveMember(e.ctx, g.ID, o, c)
	require.ErrorIs(t, err, core.ErrNotMember)
	// ErrGroupNotFound means "no such group, or you are not a member":
	// a stranger learns nothing about the group.
	_, err = e.s.RemoveMember(e.ctx, g.ID, c, a)
	require.ErrorIs(t, err, core.ErrGroupNotFound, "by a non-member")
	_, err = e.s.RemoveMember(e.ctx, e.unknownID(), o, a)
	require.ErrorIs(t, err, core.ErrGroupNotFound, "unknown group")
	stored, err := e.s.Group(e.ctx, g.ID)
	require.NoError(t, err)
	requireGroup(t, g, stored, "refused removals change nothing")

	got, err := e.s.RemoveMember(e.ctx, g.ID, a, a)
	require.NoError(t, err, "a member may leave")
	g.Members = []core.ID{o, b}
	requireGroup(t, g, got, "RemoveMember returns the changed group")
	gs, err := e.s.GroupsOf(e.ctx, a)
	require.NoError(t, err)
	require.Empty(t, gs, "a member who left no longer has the group")
	_, err = e.s.AddMember(e.ctx, g.ID, a, c)
	require.ErrorIs(t, err, core.ErrGroupNotFound, "a member who left cannot act on the group")

	got, err = e.s.RemoveMember(e.ctx, g.ID, o, b)
	require.NoError(t, err, "the owner may remove anyone")
	g.Members = []core.ID{o}
	requireGroup(t, g, got)
	stored, err = e.s.Group(e.ctx, g.ID)
	require.NoError(t, err)
	requireGroup(t, g, stored)
}

func testOwnerLeaves(t *testing.T, e *env) {
	// Users are created in the reverse of their joining order, so neither
	// id order nor creation order names the longest-standing member.
	c, b, a, o := e.user("carol"), e.user("bob"), e.user("alice"), e.user("owner")
	g := e.group(o, a)
	_, err := e.s.AddMember(e.ctx, g.ID, o, b)
	require.NoError(t, err)
	_, err = e.s.AddMember(e.ctx, g.ID, o, c)
	require.NoError(t, err)

	got, err := e.s.RemoveMember(e.ctx, g.ID, o, o)
	require.NoError(t, err, "the owner may leave")
	require.Equal(t, a, got.OwnerID, "the longest-standing member becomes owner")
	require.ElementsMatch(t, []core.ID{a, b, c}, got.Members)
	stored, err := e.s.Group(e.ctx, g.ID)
	require.NoError(t, err)
	require.Equal(t, a, stored.OwnerID)

	// The new owner has the owner's powers.
	_, err = e.s.RemoveMember(e.ctx, g.ID, a, c)
	require.NoError(t, err)
	_, err = e.s.AddMember(e.ctx, g.ID, a, c) // c rejoins: now the newest
	require.NoError(t, err)
	_, err = e.s.RemoveMember(e.ctx, g.ID, a, a)
	require.NoError(t, err)
	stored, err = e.s.Group(e.ctx, g.ID)
	require.NoError(t, err)
	require.Equal(t, b, stored.OwnerID, "rejoining starts a member's standing anew")
}

func testLastMemberLeaves(t *testing.T, e *env) {
	o, a := e.user("owner"), e.user("alice")
	g := e.group(o)
	e.sendGroup(o, g.ID, "anyone?")
	_, err := e.s.RemoveMember(e.ctx, g.ID, o, o)
	require.NoError(t, err)

	stored, err := e.s.Group(e.ctx, g.ID)
	require.NoError(t, err, "the last member leaving deletes nothing")
	require.Empty(t, stored.Members)
	_, err = e.s.AddMember(e.ctx, g.ID, o, a)
	require.ErrorIs(t, err, core.ErrGroupNotFound, "nobody can act on an empty group")
	_, err = e.s.Append(e.ctx, e.req(o, 0, g.ID, "back?"))
	require.ErrorIs(t, err, core.ErrGroupNotFound)
	_, err = e.s.History(e.ctx, o, core.GroupConv(g.ID), 0, 0, 10)
	require.ErrorIs(t, err, core.ErrConvNotFound)
}

func testPresence(t *testing.T, e *env) {
	a, b := e.user("alice"), e.user("bob")
	t1 := core.Now()
	require.NoError(t, e.s.SavePresence(e.ctx, a, core.Presence{Status: core.Online, LastActiveAt: t1}))

	ps, err := e.s.Presences(e.ctx, []core.ID{a, b})
	require.NoError(t, err)
	require.Equal(t, core.Online, ps[a].Status)
	require.True(t, t1.Equal(ps[a].LastActiveAt.Time), "last_active_at %v, want %v", ps[a].LastActiveAt, t1)
	require.Equal(t, core.Offline, ps[b].Status, "a user never seen is offline")
	require.True(t, ps[b].LastActiveAt.IsZero(), "a user never seen was never active")

	t2 := core.Time{Time: t1.Add(5 * time.Second)}
	require.NoError(t, e.s.SavePresence(e.ctx, a, core.Presence{Status: core.Offline, LastActiveAt: t2}))
	ps, err = e.s.Presences(e.ctx, []core.ID{a})
	require.NoError(t, err)
	require.Equal(t, core.Offline, ps[a].Status, "the newest save wins")
	require.True(t, t2.Equal(ps[a].LastActiveAt.Time))
}
