package storetest

import (
	"fmt"
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/chatgate/chatgate/core"
)

var pushTests = []test{
	{"Outbox", testPushOutbox},
	{"Paging", testPushPaging},
	{"ReplayWritesNone", testPushReplay},
}

// pushPairs lists the outbox as "user/message" in its order.
func pushPairs(t *testing.T, ps []core.Push) []string {
	out := make([]string, 0, len(ps))
	for _, p := range ps {
		out = append(out, fmt.Sprintf("%d/%d", p.UserID, decode(t, p.Message).ID))
	}
	return out
}

func pair(u core.ID, m core.Message) string { return fmt.Sprintf("%d/%d", u, m.ID) }

func testPushOutbox(t *testing.T, e *env) {
	a, b, c, d := e.user("alice"), e.user("bob"), e.user("carol"), e.user("dave")
	g := e.group(a, b, c, d)

	r := e.req(a, b, 0, "are you there?")
	r.NeedsPush = allPush // the sender too, who must still get no push
	direct := e.append(r)
	require.Equal(t, 1, direct.Pushes)

	r = e.req(a, 0, g.ID, "meeting at noon")
	r.NeedsPush = func(u core.ID) bool { return u != c } // carol is online
	group := e.append(r)
	require.Equal(t, 2, group.Pushes, "bob and dave; never the sender")

	r = e.req(b, a, 0, "everyone online")
	r.NeedsPush = noPush
	require.Zero(t, e.append(r).Pushes)
	r = e.req(a, a, 0, "note")
	r.NeedsPush = allPush
	require.Zero(t, e.append(r).Pushes, "a note to self pushes nothing")

	ps := e.pushes()
	require.Len(t, ps, 3)
	got := pushPairs(t, ps)
	require.Equal(t, pair(b, direct.Message), got[0], "oldest first")
	require.ElementsMatch(t, []string{pair(b, group.Message), pair(d, group.Message)}, got[1:])
	requireMessage(t, direct.Message, decode(t, ps[0].Message), "a push carries the message")

	all, err := e.s.PendingPushes(e.ctx, "", 100)
	require.NoError(t, err)
	require.Equal(t, ps, all, "one page or many, the same entries")

	require.NoError(t, e.s.DeletePush(e.ctx, ps[0].Key))
	left := e.pushes()
	require.Equal(t, ps[1:], left, "DeletePush removes that entry only")
	require.NoError(t, e.s.DeletePush(e.ctx, ps[2].Key))
	require.Equal(t, ps[1:2], e.pushes())
}

func testPushPaging(t *testing.T, e *env) {
	a, b, c := e.user("alice"), e.user("bob"), e.user("carol")
	g := e.group(a, b, c)
	var want []string
	for i := range 4 {
		r := e.req(a, b, 0, fmt.Sprint("direct ", i))
		r.NeedsPush = allPush
		want = append(want, pair(b, e.append(r).Message))
		r = e.req(b, 0, g.ID, fmt.Sprint("group ", i))
		r.NeedsPush = allPush
		m := e.append(r).Message
		want = append(want, pair(a, m), pair(c, m))
	}
	ps := e.pushes() // pages of 2: keys checked to increase across pages
	got := pushPairs(t, ps)
	require.ElementsMatch(t, want, got)
	for i := 1; i < len(ps); i++ {
		require.GreaterOrEqual(t, decode(t, ps[i].Message).ID, decode(t, ps[i-1].Message).ID, "oldest message first")
	}

	// Resuming after any key gives exactly the entries behind it.
	for i, p := range ps {
		rest, err := e.s.PendingPushes(e.ctx, p.Key, 100)
		require.NoError(t, err)
		if i == len(ps)-1 {
			require.Empty(t, rest, "after the last key")
		} else {
			require.Equal(t, ps[i+1:], rest, "after key %d", i)
		}
	}
	// Deleting while paging (as the pusher does) skips nothing.
	require.NoError(t, e.s.DeletePush(e.ctx, ps[1].Key))
	rest, err := e.s.PendingPushes(e.ctx, ps[0].Key, 2)
	require.NoError(t, err)
	require.Equal(t, ps[2:4], rest)
}

func testPushReplay(t *testing.T, e *env) {
	a, b := e.user("alice"), e.user("bob")
	r := e.req(a, b, 0, "ping")
	r.NeedsPush = allPush
	e.append(r)
	before := pushPairs(t, e.pushes())
	require.Len(t, before, 1)
	again := e.append(r)
	require.True(t, again.Replayed)
	require.Zero(t, again.Pushes)
	require.Equal(t, before, pushPairs(t, e.pushes()))
}
