package storetest

import (
	"fmt"
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/chatgate/chatgate/core"
)

var restartTests = []test{
	{"EverythingSurvives", testEverythingSurvives},
	{"SeqsContinueFromHead", testSeqsContinue},
	{"ClientMsgIDSurvives", testClientMsgIDSurvives},
	{"EmptyStoreReopens", testEmptyReopen},
}

// testEverythingSurvives writes one of every kind of record, restarts, and
// reads each back.
func testEverythingSurvives(t *testing.T, e *env) {
	alice := e.newAccount("Alice", "Alice Liddell")
	bob := e.newAccount("bob", "Bob")
	carol := e.newAccount("carol", "Carol")
	a, b, c := alice.ID, bob.ID, carol.ID

	d2 := e.mkDevice(a)
	h2 := core.TokenHash("second device of alice")
	require.NoError(t, e.s.CreateDevice(e.ctx, d2, h2))
	d3 := e.mkDevice(a)
	h3 := core.TokenHash("third device of alice")
	require.NoError(t, e.s.CreateDevice(e.ctx, d3, h3))
	_, err := e.s.DeleteDevice(e.ctx, a, d3.ID)
	require.NoError(t, err)
	_, err = e.s.UpdateDisplayName(e.ctx, b, "Robert")
	require.NoError(t, err)

	e.setFriend(a, b, true)
	e.setFriend(b, a, true)
	e.setFriend(c, a, true)

	g := e.group(a, b)
	_, err = e.s.AddMember(e.ctx, g.ID, a, c)
	require.NoError(t, err)
	_, err = e.s.RemoveMember(e.ctx, g.ID, a, a) // ownership passes to bob
	require.NoError(t, err)

	seen := core.Now()
	require.NoError(t, e.s.SavePresence(e.ctx, b, core.Presence{Status: core.Online, LastActiveAt: seen}))

	var ab []core.ID
	for i := range 3 {
		r := e.req(a, b, 0, fmt.Sprint("ab ", i))
		r.NeedsPush = allPush
		ab = append(ab, e.append(r).Message.ID)
	}
	mg := e.sendGroup(b, g.ID, "group")
	require.NoError(t, e.s.MarkRead(e.ctx, b, core.DirectConv(a, b), ab[1]))

	heads := map[core.ID]uint64{a: e.head(a), b: e.head(b), c: e.head(c)}
	inboxes := map[core.ID][]core.InboxEntry{a: e.inbox(a, 0), b: e.inbox(b, 0), c: e.inbox(c, 0)}
	state := e.snapshot(a, b, c)
	pushes := e.pushes()
	require.Len(t, pushes, 3)
	groupBefore, err := e.s.Group(e.ctx, g.ID)
	require.NoError(t, err)
	require.Equal(t, b, groupBefore.OwnerID)

	e.restart()

	for _, acc := range []account{alice, carol} {
		got, err := e.s.UserByID(e.ctx, acc.ID)
		require.NoError(t, err)
		requireUser(t, acc.User, got)
	}
	rec, err := e.s.UserByName(e.ctx, "ALICE")
	require.NoError(t, err)
	require.Equal(t, alice.PasswordHash, rec.PasswordHash)
	got, err := e.s.UserByID(e.ctx, b)
	require.NoError(t, err)
	require.Equal(t, "Robert", got.DisplayName)
	found, err := e.s.SearchUsers(e.ctx, "rob", 10)
	require.NoError(t, err)
	require.Len(t, found, 1, "the search index survives")
	again := e.mkAccount("alice", "Again")
	err = e.s.CreateUser(e.ctx, again.UserRecord, again.Device, again.TokenHash)
	require.ErrorIs(t, err, core.ErrUsernameTaken, "the username index survives")

	dev, err := e.s.DeviceByToken(e.ctx, alice.TokenHash)
	require.NoError(t, err)
	requireDevice(t, alice.Device, dev)
	dev, err = e.s.DeviceByToken(e.ctx, h2)
	require.NoError(t, err)
	requireDevice(t, d2, dev)
	_, err = e.s.DeviceByToken(e.ctx, h3)
	require.ErrorIs(t, err, core.ErrUnauthorized, "a revoked token stays revoked")
	n, err := e.s.DeleteDevice(e.ctx, a, d2.ID)
	require.NoError(t, err)
	require.Equal(t, 1, n, "the device list survives")

	e.requireEdges(a, []core.ID{b}, []core.ID{c}, nil)
	e.requireEdges(b, []core.ID{a}, nil, nil)

	groupAfter, err := e.s.Group(e.ctx, g.ID)
	require.NoError(t, err)
	requireGroup(t, groupBefore, groupAfter)
	gs, err := e.s.GroupsOf(e.ctx, c)
	require.NoError(t, err)
	require.Equal(t, []core.ID{g.ID}, groupIDs(gs))
	gs, err = e.s.GroupsOf(e.ctx, a)
	require.NoError(t, err)
	require.Empty(t, gs)

	ps, err := e.s.Presences(e.ctx, []core.ID{b})
	require.NoError(t, err)
	require.Equal(t, core.Online, ps[b].Status)
	require.True(t, seen.Equal(ps[b].LastActiveAt.Time))

	for u, want := range inboxes {
		require.Equal(t, heads[u], e.head(u), "head of %d", u)
		require.Equal(t, want, e.inbox(u, 0), "inbox of %d", u)
	}
	require.Equal(t, state, e.snapshot(a, b, c), "conversations, read markers, unread counts and pushes survive")
	require.Equal(t, pushPairs(t, pushes), pushPairs(t, e.pushes()))
	require.Equal(t, []core.ID{ab[2], ab[1], ab[0]}, e.history(a, core.DirectConv(a, b), 0, 0, 10))
	require.Equal(t, []core.ID{mg.ID}, e.history(c, core.GroupConv(g.ID), 0, 0, 10))

	// Keys read before the restart still address their entries.
	require.NoError(t, e.s.DeletePush(e.ctx, pushes[0].Key))
	require.Equal(t, pushPairs(t, pushes[1:]), pushPairs(t, e.pushes()))
}

func testSeqsContinue(t *testing.T, e *env) {
	a, b := e.user("alice"), e.user("bob")
	last := e.send(a, b, "1")
	e.send(a, a, "note") // a's head moves ahead of b's
	last2 := e.send(b, a, "2")
	require.Greater(t, last2.ID, last.ID)

	for round := range 2 {
		ha, hb := e.head(a), e.head(b)
		e.restart()
		require.Equal(t, ha, e.head(a))
		require.Equal(t, hb, e.head(b))
		res := e.append(e.req(a, b, 0, fmt.Sprint("after restart ", round)))
		require.Equal(t, map[core.ID]uint64{a: ha + 1, b: hb + 1}, deliveredTo(t, res.Deliveries),
			"round %d: seqs continue from the head, never reused", round)
		require.Greater(t, res.Message.ID, last2.ID, "message ids keep growing")
		last2 = res.Message
		in := e.inbox(b, 0)
		require.Len(t, in, int(hb+1))
		require.Equal(t, res.Message.ID, decode(t, in[len(in)-1].Message).ID)
	}
}

func testClientMsgIDSurvives(t *testing.T, e *env) {
	a, b := e.user("alice"), e.user("bob")
	r := e.req(a, b, 0, "sent before the crash")
	r.NeedsPush = allPush
	first := e.append(r)
	e.restart()

	again := e.append(r)
	require.True(t, again.Replayed, "idempotency survives a restart")
	requireMessage(t, first.Message, again.Message)
	require.Empty(t, again.Deliveries)
	require.Zero(t, again.Pushes)
	require.Equal(t, uint64(1), e.head(b))
	require.Len(t, e.pushes(), 1)

	changed := r
	changed.Content = "something else"
	_, err := e.s.Append(e.ctx, changed)
	require.ErrorIs(t, err, core.ErrClientMsgIDReuse)
}

func testEmptyReopen(t *testing.T, e *env) {
	e.restart()
	require.Empty(t, e.pushes())
	a := e.user("alice")
	e.restart()
	_, err := e.s.UserByID(e.ctx, a)
	require.NoError(t, err)
	require.Zero(t, e.head(a))
}
