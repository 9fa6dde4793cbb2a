package storetest

import (
	"fmt"
	"slices"
	"strings"
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/chatgate/chatgate/core"
)

var inboxTests = []test{
	{"Paging", testInboxPaging},
	{"MaxBytes", testInboxMaxBytes},
	{"Empty", testInboxEmpty},
}

var historyTests = []test{
	{"Paging", testHistoryPaging},
	{"Group", testHistoryGroup},
	{"NotAMember", testHistoryNotMember},
}

var conversationTests = []test{
	{"NewestActivityFirst", testConversationsOrder},
	{"Unread", testUnread},
	{"MemberAddedLaterHasNothingUnread", testJoinLate},
	{"RemovedMemberLosesConversation", testRemovedMember},
}

var markReadTests = []test{
	{"OnlyForward", testMarkReadForward},
	{"Group", testMarkReadGroup},
	{"Errors", testMarkReadErrors},
}

// ---- inbox ----

func seqs(in []core.InboxEntry) []uint64 {
	out := make([]uint64, 0, len(in))
	for _, e := range in {
		out = append(out, e.Seq)
	}
	return out
}

func testInboxPaging(t *testing.T, e *env) {
	a, b := e.user("alice"), e.user("bob")
	var sent []core.Message
	for i := range 5 {
		sent = append(sent, e.send(a, b, fmt.Sprint("message ", i)))
	}
	require.Equal(t, uint64(5), e.head(b))

	page, err := e.s.Inbox(e.ctx, b, 0, 3, 1<<20)
	require.NoError(t, err)
	require.Equal(t, []uint64{1, 2, 3}, seqs(page), "limit")
	for i, en := range page {
		requireMessage(t, sent[i], decode(t, en.Message))
	}
	page, err = e.s.Inbox(e.ctx, b, 3, 3, 1<<20)
	require.NoError(t, err)
	require.Equal(t, []uint64{4, 5}, seqs(page), "after is exclusive")
	requireMessage(t, sent[4], decode(t, page[1].Message))
	page, err = e.s.Inbox(e.ctx, b, 1, 1, 1<<20)
	require.NoError(t, err)
	require.Equal(t, []uint64{2}, seqs(page))
	page, err = e.s.Inbox(e.ctx, b, 5, 10, 1<<20)
	require.NoError(t, err)
	require.Empty(t, page, "nothing after the head")
	page, err = e.s.Inbox(e.ctx, b, 9, 10, 1<<20)
	require.NoError(t, err)
	require.Empty(t, page, "nothing after a cursor beyond the head")
}

func testInboxMaxBytes(t *testing.T, e *env) {
	a, b := e.user("alice"), e.user("bob")
	for i := range 6 {
		e.send(a, b, strings.Repeat("x", 50+100*i))
	}
	all := e.inbox(b, 0)
	require.Len(t, all, 6)
	size := func(in []core.InboxEntry) (n int) {
		for _, en := range in {
			n += len(en.Message)
		}
		return n
	}

	page, err := e.s.Inbox(e.ctx, b, 0, 10, 1)
	require.NoError(t, err)
	require.Equal(t, []uint64{1}, seqs(page), "at least one entry, however small maxBytes")
	page, err = e.s.Inbox(e.ctx, b, 3, 10, 1)
	require.NoError(t, err)
	require.Equal(t, []uint64{4}, seqs(page))

	max := size(all[:3])
	page, err = e.s.Inbox(e.ctx, b, 0, 10, max)
	require.NoError(t, err)
	require.Equal(t, []uint64{1, 2, 3}, seqs(page), "entries worth exactly maxBytes")

	// One byte short: whether the entry that reaches the cap is included
	// is the adapter's choice; continuing after the cap is reached is not.
	page, err = e.s.Inbox(e.ctx, b, 0, 10, max-1)
	require.NoError(t, err)
	require.Contains(t, [][]uint64{{1, 2}, {1, 2, 3}}, seqs(page), "maxBytes %d", max-1)
	require.Less(t, size(page[:len(page)-1]), max-1, "no entry is added once maxBytes are collected")

	page, err = e.s.Inbox(e.ctx, b, 0, 2, 1<<20)
	require.NoError(t, err)
	require.Equal(t, []uint64{1, 2}, seqs(page), "limit still applies under the byte cap")
}

func testInboxEmpty(t *testing.T, e *env) {
	a, b, c := e.user("alice"), e.user("bob"), e.user("carol")
	e.send(a, b, "not for carol")
	require.Zero(t, e.head(c))
	page, err := e.s.Inbox(e.ctx, c, 0, 10, 1<<20)
	require.NoError(t, err)
	require.Empty(t, page)
}

// ---- history ----

func reversed(ids []core.ID) []core.ID {
	out := slices.Clone(ids)
	slices.Reverse(out)
	return out
}

func testHistoryPaging(t *testing.T, e *env) {
	a, b, c := e.user("alice"), e.user("bob"), e.user("carol")
	conv := core.DirectConv(a, b)
	var m []core.ID // oldest first
	for i := range 6 {
		from, to := a, b
		if i%2 == 1 {
			from, to = b, a
		}
		m = append(m, e.send(from, to, fmt.Sprint("ab ", i)).ID)
		e.send(a, c, fmt.Sprint("ac ", i)) // another conversation in between
	}

	require.Equal(t, reversed(m), e.history(a, conv, 0, 0, 100), "newest first, this conversation only")
	require.Equal(t, reversed(m), e.history(b, conv, 0, 0, 100), "both sides see the same history")
	require.Equal(t, []core.ID{m[5], m[4]}, e.history(a, conv, 0, 0, 2), "limit")
	require.Equal(t, []core.ID{m[3], m[2], m[1], m[0]}, e.history(a, conv, m[4], 0, 100), "before is exclusive")
	require.Equal(t, []core.ID{m[5], m[4], m[3], m[2]}, e.history(a, conv, 0, m[1], 100), "after is exclusive")
	require.Equal(t, []core.ID{m[3], m[2]}, e.history(a, conv, m[4], m[1], 100), "both bounds")
	require.Equal(t, []core.ID{m[4], m[3]}, e.history(a, conv, m[5], 0, 2), "before with limit")
	require.Equal(t, []core.ID{m[5], m[4]}, e.history(a, conv, 0, m[2], 2), "after with limit keeps the newest")
	require.Empty(t, e.history(a, conv, m[0], 0, 100), "nothing before the first")
	require.Empty(t, e.history(a, conv, 0, m[5], 100), "nothing after the last")
	require.Empty(t, e.history(a, conv, m[3], m[2], 100), "nothing between neighbours")
	// An id that is no message is still a bound (ids of the other
	// conversation, or one above a message's).
	require.Equal(t, []core.ID{m[3], m[2], m[1], m[0]}, e.history(a, conv, m[3]+1, 0, 100), "before a non-message id")
	require.Equal(t, []core.ID{m[5], m[4], m[3], m[2]}, e.history(a, conv, 0, m[1]+1, 100), "after a non-message id")

	d := e.user("dave")
	require.Empty(t, e.history(a, core.DirectConv(a, d), 0, 0, 100), "a 1:1 in which nothing was said is empty")

	raws, err := e.s.History(e.ctx, a, conv, 0, 0, 1)
	require.NoError(t, err)
	got := decode(t, raws[0])
	require.Equal(t, b, got.From)
	require.Equal(t, a, got.To)
	require.Equal(t, "ab 5", got.Content)
}

func testHistoryGroup(t *testing.T, e *env) {
	o, a, b := e.user("owner"), e.user("alice"), e.user("bob")
	g := e.group(o, a, b)
	conv := core.GroupConv(g.ID)
	var m []core.ID
	for i, from := range []core.ID{o, a, b, a} {
		m = append(m, e.sendGroup(from, g.ID, fmt.Sprint("g ", i)).ID)
	}
	e.send(o, a, "direct, not in the group")
	for _, u := range []core.ID{o, a, b} {
		require.Equal(t, reversed(m), e.history(u, conv, 0, 0, 100), "member %d", u)
	}
	require.Equal(t, []core.ID{m[2], m[1]}, e.history(b, conv, m[3], m[0], 100))
}

func testHistoryNotMember(t *testing.T, e *env) {
	a, b, c := e.user("alice"), e.user("bob"), e.user("carol")
	g := e.group(a, b)
	e.send(a, b, "private")
	e.sendGroup(a, g.ID, "members only")

	lo, hi := min(a, c), max(a, c)
	bad := map[string]string{
		"a 1:1 of two others":        core.DirectConv(a, b),
		"a group one is not in":      core.GroupConv(g.ID),
		"an unknown group":           core.GroupConv(e.unknownID()),
		"empty":                      "",
		"no kind":                    "hello",
		"direct with one user":       "d_" + c.String(),
		"direct in the wrong order":  "d_" + hi.String() + "_" + lo.String(),
		"direct with a zero id":      "d_0_" + c.String(),
		"group id not a number":      "g_abc",
		"group id with leading zero": "g_0" + g.ID.String(),
		"group with a suffix":        core.GroupConv(g.ID) + "_x",
	}
	for name, conv := range bad {
		_, err := e.s.History(e.ctx, c, conv, 0, 0, 10)
		require.ErrorIs(t, err, core.ErrConvNotFound, "%s: %q", name, conv)
	}
	// Members too, for a malformed spelling of their own conversation.
	lo, hi = min(a, b), max(a, b)
	for _, conv := range []string{
		"g_0" + g.ID.String(),
		"d_" + hi.String() + "_" + lo.String(),
		"D" + core.DirectConv(a, b)[1:],
	} {
		_, err := e.s.History(e.ctx, a, conv, 0, 0, 10)
		require.ErrorIs(t, err, core.ErrConvNotFound, "%q", conv)
	}
}

// ---- conversations ----

func testConversationsOrder(t *testing.T, e *env) {
	a, b, c, o, d := e.user("alice"), e.user("bob"), e.user("carol"), e.user("owner"), e.user("dave")
	g := e.group(o, a)
	e.send(a, b, "ab 1")
	mc := e.send(c, a, "ca 1")
	mg := e.sendGroup(o, g.ID, "g 1")
	mb := e.send(b, a, "ba 2")

	cs := e.convs(a)
	require.Len(t, cs, 3)
	want := []struct {
		id          string
		kind        string
		peer, group core.ID
		last        core.Message
	}{
		{core.DirectConv(a, b), "direct", b, 0, mb},
		{core.GroupConv(g.ID), "group", 0, g.ID, mg},
		{core.DirectConv(a, c), "direct", c, 0, mc},
	}
	for i, w := range want {
		got := cs[i]
		require.Equal(t, w.id, got.ID, "position %d: newest activity first", i)
		require.Equal(t, w.kind, got.Kind, w.id)
		require.Equal(t, w.peer, got.PeerID, w.id)
		require.Equal(t, w.group, got.GroupID, w.id)
		requireMessage(t, w.last, decode(t, got.LastMessage), "%s: last_message", w.id)
	}

	lim, err := e.s.Conversations(e.ctx, a, 2)
	require.NoError(t, err)
	require.Len(t, lim, 2, "limit")
	require.Equal(t, []string{want[0].id, want[1].id}, []string{lim[0].ID, lim[1].ID}, "limit keeps the newest")

	ma := e.send(a, c, "ac 2") // one's own message is activity too
	cs = e.convs(a)
	require.Equal(t, []string{core.DirectConv(a, c), core.DirectConv(a, b), core.GroupConv(g.ID)},
		[]string{cs[0].ID, cs[1].ID, cs[2].ID})
	requireMessage(t, ma, decode(t, cs[0].LastMessage))

	bs := e.convs(b)
	require.Len(t, bs, 1, "b sees only its own conversations")
	require.Equal(t, a, bs[0].PeerID, "the peer is the other side")
	require.Empty(t, e.convs(d))

	// docs/protocol.md: only conversations with a message appear.
	quiet := e.group(d, a)
	require.Empty(t, e.convs(d), "a group without messages is not listed")
	_, ok := e.conv(a, core.GroupConv(quiet.ID))
	require.False(t, ok)
}

func testUnread(t *testing.T, e *env) {
	a, b, c := e.user("alice"), e.user("bob"), e.user("carol")
	ab := core.DirectConv(a, b)
	e.send(a, b, "1")
	e.send(b, a, "2")
	m3 := e.send(b, a, "3")
	m4 := e.send(a, b, "4")
	e.send(b, a, "5")
	require.Equal(t, 3, e.unread(a, ab), "only others' messages are unread")
	require.Equal(t, 2, e.unread(b, ab))

	require.NoError(t, e.s.MarkRead(e.ctx, a, ab, m3.ID))
	require.Equal(t, 1, e.unread(a, ab), "messages after the marker")
	ca, _ := e.conv(a, ab)
	require.Equal(t, m3.ID, ca.ReadUpTo)
	require.Equal(t, 2, e.unread(b, ab), "each side has its own marker")
	require.NoError(t, e.s.MarkRead(e.ctx, b, ab, m4.ID))
	require.Zero(t, e.unread(b, ab), "marking one's own message reads everything before it")

	g := e.group(a, b, c)
	gc := core.GroupConv(g.ID)
	e.sendGroup(a, g.ID, "g1")
	e.sendGroup(a, g.ID, "g2")
	mg := e.sendGroup(b, g.ID, "g3")
	require.Equal(t, 1, e.unread(a, gc))
	require.Equal(t, 2, e.unread(b, gc))
	require.Equal(t, 3, e.unread(c, gc))
	cc, _ := e.conv(c, gc)
	require.Zero(t, cc.ReadUpTo, "no marker before the first MarkRead")
	require.NoError(t, e.s.MarkRead(e.ctx, c, gc, mg.ID))
	require.Zero(t, e.unread(c, gc))
	require.Equal(t, 1, e.unread(a, gc))
}

func testJoinLate(t *testing.T, e *env) {
	o, a, b := e.user("owner"), e.user("alice"), e.user("bob")
	g := e.group(o, a)
	gc := core.GroupConv(g.ID)
	for i := range 3 {
		e.sendGroup(o, g.ID, fmt.Sprint("before bob ", i))
	}
	_, err := e.s.AddMember(e.ctx, g.ID, o, b)
	require.NoError(t, err)
	// Whether the group is listed before its next message is the
	// adapter's choice; if it is, nothing in it is unread.
	if c, ok := e.conv(b, gc); ok {
		require.Zero(t, c.Unread, "messages from before joining are not unread")
	}
	m := e.sendGroup(a, g.ID, "welcome bob")
	c, ok := e.conv(b, gc)
	require.True(t, ok, "a member lists the group once it has a message")
	require.Equal(t, 1, c.Unread, "only messages since joining are unread")
	requireMessage(t, m, decode(t, c.LastMessage))
	require.Equal(t, 1, e.unread(o, gc), "the others' counts are their own")
	require.Equal(t, 3, e.unread(a, gc))
}

func testRemovedMember(t *testing.T, e *env) {
	o, a, b := e.user("owner"), e.user("alice"), e.user("bob")
	g := e.group(o, a, b)
	gc := core.GroupConv(g.ID)
	m := e.sendGroup(a, g.ID, "hello all")
	_, ok := e.conv(b, gc)
	require.True(t, ok)
	headB := e.head(b)

	_, err := e.s.RemoveMember(e.ctx, g.ID, o, b)
	require.NoError(t, err)
	_, ok = e.conv(b, gc)
	require.False(t, ok, "a removed member no longer lists the group")
	_, err = e.s.History(e.ctx, b, gc, 0, 0, 10)
	require.ErrorIs(t, err, core.ErrConvNotFound)
	require.ErrorIs(t, e.s.MarkRead(e.ctx, b, gc, m.ID), core.ErrConvNotFound)
	_, err = e.s.Append(e.ctx, e.req(b, 0, g.ID, "still here?"))
	require.ErrorIs(t, err, core.ErrGroupNotFound)

	res := e.append(e.req(o, 0, g.ID, "after bob"))
	require.NotContains(t, deliveredTo(t, res.Deliveries), b, "a removed member gets no new messages")
	require.Equal(t, headB, e.head(b))
	_, ok = e.conv(b, gc)
	require.False(t, ok, "nor does a new message bring the group back")
	_, ok = e.conv(a, gc)
	require.True(t, ok)

	// Rejoining is joining: the group comes back with what follows only.
	_, err = e.s.AddMember(e.ctx, g.ID, o, b)
	require.NoError(t, err)
	back := e.sendGroup(o, g.ID, "welcome back")
	c, ok := e.conv(b, gc)
	require.True(t, ok, "a member who rejoined lists the group again")
	require.Equal(t, 1, c.Unread)
	requireMessage(t, back, decode(t, c.LastMessage))
}

// ---- read markers ----

func testMarkReadForward(t *testing.T, e *env) {
	a, b := e.user("alice"), e.user("bob")
	ab := core.DirectConv(a, b)
	m1 := e.send(b, a, "1")
	m2 := e.send(b, a, "2")
	m3 := e.send(b, a, "3")
	readUpTo := func() core.ID {
		t.Helper()
		c, ok := e.conv(a, ab)
		require.True(t, ok)
		return c.ReadUpTo
	}

	require.NoError(t, e.s.MarkRead(e.ctx, a, ab, m2.ID))
	require.Equal(t, m2.ID, readUpTo())
	require.Equal(t, 1, e.unread(a, ab))

	require.NoError(t, e.s.MarkRead(e.ctx, a, ab, m1.ID), "an older message is not an error")
	require.Equal(t, m2.ID, readUpTo(), "the marker never moves backwards")
	require.Equal(t, 1, e.unread(a, ab))
	require.NoError(t, e.s.MarkRead(e.ctx, a, ab, m2.ID))
	require.Equal(t, m2.ID, readUpTo())

	require.NoError(t, e.s.MarkRead(e.ctx, a, ab, m3.ID))
	require.Equal(t, m3.ID, readUpTo())
	require.Zero(t, e.unread(a, ab))

	e.send(b, a, "4")
	require.Equal(t, 1, e.unread(a, ab), "new messages after the marker are unread")
}

func testMarkReadGroup(t *testing.T, e *env) {
	o, a := e.user("owner"), e.user("alice")
	g := e.group(o, a)
	gc := core.GroupConv(g.ID)
	m1 := e.sendGroup(o, g.ID, "1")
	e.sendGroup(o, g.ID, "2")
	require.NoError(t, e.s.MarkRead(e.ctx, a, gc, m1.ID))
	c, ok := e.conv(a, gc)
	require.True(t, ok)
	require.Equal(t, m1.ID, c.ReadUpTo)
	require.Equal(t, 1, c.Unread)
}

func testMarkReadErrors(t *testing.T, e *env) {
	a, b, c := e.user("alice"), e.user("bob"), e.user("carol")
	ab := core.DirectConv(a, b)
	g := e.group(a, b)
	gc := core.GroupConv(g.ID)
	mab := e.send(b, a, "ab")
	mac := e.send(c, a, "ac")
	mg := e.sendGroup(b, g.ID, "g")
	require.NoError(t, e.s.MarkRead(e.ctx, a, ab, mab.ID))
	before := e.snapshot(a, b, c)

	require.ErrorIs(t, e.s.MarkRead(e.ctx, a, ab, e.unknownID()), core.ErrMessageNotFound, "unknown message")
	require.ErrorIs(t, e.s.MarkRead(e.ctx, a, ab, mac.ID), core.ErrMessageNotFound, "a message of another conversation")
	require.ErrorIs(t, e.s.MarkRead(e.ctx, a, ab, mg.ID), core.ErrMessageNotFound, "a group message in a 1:1")
	require.ErrorIs(t, e.s.MarkRead(e.ctx, a, gc, mab.ID), core.ErrMessageNotFound, "a 1:1 message in a group")
	require.ErrorIs(t, e.s.MarkRead(e.ctx, c, ab, mab.ID), core.ErrConvNotFound, "a 1:1 of two others")
	require.ErrorIs(t, e.s.MarkRead(e.ctx, c, gc, mg.ID), core.ErrConvNotFound, "a group one is not in")
	require.ErrorIs(t, e.s.MarkRead(e.ctx, a, "g_"+e.unknownID().String(), mg.ID), core.ErrConvNotFound, "an unknown group")
	require.ErrorIs(t, e.s.MarkRead(e.ctx, a, "nonsense", mab.ID), core.ErrConvNotFound, "a malformed id")
	require.Equal(t, before, e.snapshot(a, b, c), "refused marks move no marker")
}
