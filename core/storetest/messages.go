package storetest

import (
	"encoding/json"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/chatgate/chatgate/core"
)

var messageTests = []test{
	{"Direct", testDirect},
	{"NoteToSelf", testNoteToSelf},
	{"UnknownRecipientChangesNothing", testUnknownRecipient},
	{"Group", testGroupMessage},
	{"GroupNotFoundChangesNothing", testGroupNotFound},
	{"ClientMsgIDRetryReplays", testReplay},
	{"ClientMsgIDReuse", testClientMsgIDReuse},
	{"ClientMsgIDIsPerSender", testClientMsgIDPerSender},
	{"EmptyClientMsgIDNeverReplays", testEmptyClientMsgID},
}

// content that JSON encoders escape differently, so that Raw is checked to
// decode to the very message and not merely to look like one.
const tricky = `<b>"Hi" & bye</b> 채팅 ✓ \ line` + "\u2028"

func testDirect(t *testing.T, e *env) {
	a, b := e.user("alice"), e.user("bob")
	req := e.req(a, b, 0, tricky)
	res := e.append(req)

	m := res.Message
	require.NotZero(t, m.ID, "the store assigns the id")
	requireMessage(t, core.Message{
		ID: m.ID, ConversationID: core.DirectConv(a, b), From: a, To: b,
		Content: req.Content, CreatedAt: req.CreatedAt, ClientMsgID: req.ClientMsgID,
	}, m)
	require.Equal(t, core.DirectConv(b, a), m.ConversationID, "either side names the same conversation")
	require.False(t, res.Replayed)
	require.Zero(t, res.Pushes)

	require.True(t, json.Valid(res.Raw), "Raw is JSON: %s", res.Raw)
	requireMessage(t, m, decode(t, res.Raw), "Raw decodes to Message")
	want, err := json.Marshal(m)
	require.NoError(t, err)
	require.JSONEq(t, string(want), string(res.Raw), "Raw is the message's JSON")

	require.Len(t, res.Deliveries, 2)
	require.Equal(t, map[core.ID]uint64{a: 1, b: 1}, deliveredTo(t, res.Deliveries), "sender and recipient, each at seq 1")
	for _, u := range []core.ID{a, b} {
		require.Equal(t, uint64(1), e.head(u))
		in := e.inbox(u, 0)
		require.Len(t, in, 1)
		require.Equal(t, uint64(1), in[0].Seq)
		requireMessage(t, m, decode(t, in[0].Message), "inbox of %d", u)
	}

	// The next message takes each side's next seq.
	res = e.append(e.req(b, a, 0, "reply"))
	require.Equal(t, map[core.ID]uint64{a: 2, b: 2}, deliveredTo(t, res.Deliveries))
	require.Greater(t, res.Message.ID, m.ID, "message ids follow time")
	require.Equal(t, m.ConversationID, res.Message.ConversationID)
}

func testNoteToSelf(t *testing.T, e *env) {
	a := e.user("alice")
	res := e.append(e.req(a, a, 0, "remember the milk"))
	require.Equal(t, core.DirectConv(a, a), res.Message.ConversationID)
	require.Equal(t, a, res.Message.To)
	require.Equal(t, []core.Delivery{{UserID: a, Seq: 1}}, res.Deliveries, "a note to self is delivered once")
	require.Equal(t, uint64(1), e.head(a))
	require.Len(t, e.inbox(a, 0), 1)
	require.Equal(t, []core.ID{res.Message.ID}, e.history(a, core.DirectConv(a, a), 0, 0, 10))
	c, ok := e.conv(a, core.DirectConv(a, a))
	require.True(t, ok)
	require.Equal(t, "direct", c.Kind)
	require.Equal(t, a, c.PeerID, "the peer of a note to self is oneself")
	require.Zero(t, c.Unread, "one's own notes are never unread")
}

func testUnknownRecipient(t *testing.T, e *env) {
	a, b := e.user("alice"), e.user("bob")
	first := e.req(a, b, 0, "hello")
	first.NeedsPush = allPush
	e.append(first)
	before := e.snapshot(a, b)

	req := e.req(a, e.unknownID(), 0, "anyone?")
	req.NeedsPush = allPush
	_, err := e.s.Append(e.ctx, req)
	require.ErrorIs(t, err, core.ErrUserNotFound)
	require.Equal(t, before, e.snapshot(a, b), "a refused send changes no inbox, conversation or outbox")

	// Nor does it use up its client_msg_id.
	retry := req
	retry.To = b
	res := e.append(retry)
	require.False(t, res.Replayed)
	require.Equal(t, map[core.ID]uint64{a: 2, b: 2}, deliveredTo(t, res.Deliveries))
}

func testGroupMessage(t *testing.T, e *env) {
	o, a, b, c := e.user("owner"), e.user("alice"), e.user("bob"), e.user("carol")
	g := e.group(o, a, b)
	e.send(o, a, "before the group") // so that members' heads differ

	req := e.req(a, 0, g.ID, tricky)
	res := e.append(req)
	m := res.Message
	requireMessage(t, core.Message{
		ID: m.ID, ConversationID: core.GroupConv(g.ID), From: a, GroupID: g.ID,
		Content: req.Content, CreatedAt: req.CreatedAt, ClientMsgID: req.ClientMsgID,
	}, m)
	requireMessage(t, m, decode(t, res.Raw))
	require.Equal(t, map[core.ID]uint64{o: 2, a: 2, b: 1}, deliveredTo(t, res.Deliveries),
		"every member once, at its own next seq")
	require.Zero(t, e.head(c), "non-members get nothing")
	for _, u := range []core.ID{o, a, b} {
		in := e.inbox(u, 0)
		require.Equal(t, m.ID, decode(t, in[len(in)-1].Message).ID, "inbox of %d", u)
	}
}

func testGroupNotFound(t *testing.T, e *env) {
	o, a, c := e.user("owner"), e.user("alice"), e.user("carol")
	g := e.group(o, a)
	e.sendGroup(o, g.ID, "hi")
	before := e.snapshot(o, a, c)

	req := e.req(c, 0, g.ID, "let me in")
	req.NeedsPush = allPush
	_, err := e.s.Append(e.ctx, req)
	require.ErrorIs(t, err, core.ErrGroupNotFound, "a non-member may not send")
	req = e.req(o, 0, e.unknownID(), "where?")
	req.NeedsPush = allPush
	_, err = e.s.Append(e.ctx, req)
	require.ErrorIs(t, err, core.ErrGroupNotFound, "unknown group")
	require.Equal(t, before, e.snapshot(o, a, c))
}

func testReplay(t *testing.T, e *env) {
	a, b, c := e.user("alice"), e.user("bob"), e.user("carol")
	g := e.group(a, c)
	for _, target := range []struct {
		name    string
		to, gid core.ID
	}{{"direct", b, 0}, {"group", 0, g.ID}} {
		req := e.req(a, target.to, target.gid, "once only")
		req.NeedsPush = allPush
		first := e.append(req)
		before := e.snapshot(a, b, c)

		// A client retries after a lost reply: a new request time, and
		// possibly nobody online any more.
		retry := req
		retry.CreatedAt = core.Time{Time: req.CreatedAt.Add(3 * time.Second)}
		again := e.append(retry)
		require.True(t, again.Replayed, target.name)
		requireMessage(t, first.Message, again.Message, "%s: the retry returns the stored message", target.name)
		require.JSONEq(t, string(first.Raw), string(again.Raw), target.name)
		require.Empty(t, again.Deliveries, target.name)
		require.Zero(t, again.Pushes, target.name)
		require.Equal(t, before, e.snapshot(a, b, c), "%s: a retry stores nothing", target.name)
	}
}

func testClientMsgIDReuse(t *testing.T, e *env) {
	a, b, c := e.user("alice"), e.user("bob"), e.user("carol")
	g := e.group(a, b)
	req := e.req(a, b, 0, "original")
	e.append(req)
	before := e.snapshot(a, b, c)

	changed := map[string]core.SendRequest{}
	r := req
	r.Content = "edited"
	changed["content"] = r
	r = req
	r.To = c
	changed["recipient"] = r
	r = req
	r.To, r.GroupID = 0, g.ID
	changed["group instead of user"] = r
	for name, r := range changed {
		_, err := e.s.Append(e.ctx, r)
		require.ErrorIs(t, err, core.ErrClientMsgIDReuse, name)
	}
	require.Equal(t, before, e.snapshot(a, b, c))
}

func testClientMsgIDPerSender(t *testing.T, e *env) {
	a, b := e.user("alice"), e.user("bob")
	ra := e.req(a, b, 0, "same words")
	first := e.append(ra)
	rb := ra
	rb.From, rb.To = b, a
	second := e.append(rb)
	require.False(t, second.Replayed, "another sender's client_msg_id is its own")
	require.NotEqual(t, first.Message.ID, second.Message.ID)
	require.Equal(t, b, second.Message.From)
	require.Len(t, second.Deliveries, 2)
	require.Equal(t, uint64(2), e.head(a))
}

func testEmptyClientMsgID(t *testing.T, e *env) {
	a, b := e.user("alice"), e.user("bob")
	req := e.req(a, b, 0, "no key")
	req.ClientMsgID = ""
	first := e.append(req)
	second := e.append(req)
	require.False(t, second.Replayed, "an empty client_msg_id asks for no idempotency")
	require.NotEqual(t, first.Message.ID, second.Message.ID)
	require.Equal(t, uint64(2), e.head(b))
	req.Content = "other"
	third := e.append(req)
	require.False(t, third.Replayed)
}
