package storetest

import (
	"encoding/json"
	"fmt"
	"slices"
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/chatgate/chatgate/core"
)

// The random-access side of history (core.Finder): search, mentions and the
// oldest-first read behind a jump to a message. SPEC §4 "Finding things in
// history" is the contract; the terms are core.Terms, so both stores find
// the same messages.
var findTests = []test{
	{"SearchEveryScript", testSearchScripts},
	{"SearchNeverOthers", testSearchNeverOthers},
	{"SearchAllTerms", testSearchAllTerms},
	{"SearchPaging", testSearchPaging},
	{"SearchOneConversation", testSearchOneConversation},
	{"SearchAfterLeavingGroup", testSearchLeftGroup},
	{"SearchSurvivesRestart", testSearchRestart},
	{"SearchManyConversations", testSearchManyConversations},
	{"Mentions", testMentions},
	{"MentionsAfterLeavingGroup", testMentionsLeftGroup},
	{"HistoryAfter", testHistoryAfter},
}

// search waits for the index (a store whose index trails its commits says
// so with core.IndexWaiter) and returns the ids found, checking that each
// result names its message's conversation.
func (e *env) search(uid core.ID, q, conv string, before core.ID, limit int) []core.ID {
	e.t.Helper()
	found, err := e.searchErr(uid, q, conv, before, limit)
	require.NoError(e.t, err, "search %q for %d", q, uid)
	var ids []core.ID
	for _, f := range found {
		var m core.Message
		require.NoError(e.t, json.Unmarshal(f.Message, &m))
		require.Equal(e.t, m.ConversationID, f.ConversationID)
		ids = append(ids, m.ID)
	}
	return ids
}

func (e *env) searchErr(uid core.ID, q, conv string, before core.ID, limit int) ([]core.Found, error) {
	if w, ok := e.s.(core.IndexWaiter); ok {
		require.NoError(e.t, w.WaitIndexed(e.ctx, 0))
	}
	return e.s.Search(e.ctx, uid, core.SearchQuery{Terms: core.QueryTerms(q), Conv: conv, Before: before, Limit: limit})
}

func ids(ms ...core.Message) []core.ID {
	out := make([]core.ID, 0, len(ms))
	for _, m := range slices.Backward(ms) {
		out = append(out, m.ID) // newest first: the messages were given oldest first
	}
	return out
}

func testSearchScripts(t *testing.T, e *env) {
	a, b := e.user("sa"), e.user("sb")
	hello := e.send(a, b, "Hello, World!")
	ko := e.send(b, a, "채팅을 시작합니다")
	ja := e.send(a, b, "明日、東京に行きます")
	zh := e.send(b, a, "我们明天见")
	mixed := e.send(a, b, "채팅app 2024年 release")
	th := e.send(b, a, "ผมชอบกินข้าว")
	for q, want := range map[string][]core.ID{
		"hello":       ids(hello),
		"HELLO":       ids(hello),
		"world":       ids(hello),
		"채팅":          ids(ko, mixed),
		"팅을":          ids(ko),
		"채팅을 시작":      ids(ko),
		"시작합니다":       ids(ko),
		"東京":          ids(ja),
		"京に行":         ids(ja),
		"明天":          ids(zh),
		"ชอบกิน":      ids(th),
		"app":         ids(mixed),
		"release":     ids(mixed),
		"2024":        ids(mixed),
		"hel":         nil, // words are whole words
		"nothing":     nil,
		"hello 채팅":    nil, // every term, and no message holds both
		"東京 tokyo":    nil,
		"?!":          nil,        // no terms: nothing matches
		"ＨＥＬＬＯ":       ids(hello), // full-width folds to ASCII
		"world hello": ids(hello),
	} {
		require.Equal(t, want, e.search(a, q, "", 0, 20), "search %q", q)
	}
}

// Results never come from a conversation the caller does not belong to,
// however well they match.
func testSearchNeverOthers(t *testing.T, e *env) {
	a, b, c := e.user("na"), e.user("nb"), e.user("nc")
	g := e.group(b, c)
	mine := e.send(a, b, "secret plan 채팅")
	e.send(b, c, "secret plan 채팅")
	e.sendGroup(c, g.ID, "secret plan 채팅")
	e.send(c, c, "secret plan 채팅") // a note to self
	for _, q := range []string{"secret", "plan", "채팅", "secret plan"} {
		require.Equal(t, ids(mine), e.search(a, q, "", 0, 50), "search %q", q)
	}
	require.Len(t, e.search(c, "secret", "", 0, 50), 3)
	_, err := e.searchErr(a, "secret", core.DirectConv(b, c), 0, 10)
	require.ErrorIs(t, err, core.ErrConvNotFound)
	_, err = e.searchErr(a, "secret", core.GroupConv(g.ID), 0, 10)
	require.ErrorIs(t, err, core.ErrConvNotFound)
	_, err = e.searchErr(a, "secret", core.GroupConv(e.unknownID()), 0, 10)
	require.ErrorIs(t, err, core.ErrConvNotFound)
}

func testSearchAllTerms(t *testing.T, e *env) {
	a, b := e.user("ta"), e.user("tb")
	both := e.send(a, b, "the quick brown fox")
	e.send(a, b, "the quick cat")
	e.send(a, b, "a brown dog")
	later := e.send(b, a, "FOX, quick!")
	require.Equal(t, ids(both, later), e.search(a, "quick fox", "", 0, 10))
	require.Equal(t, ids(both), e.search(a, "brown quick", "", 0, 10))
}

func testSearchPaging(t *testing.T, e *env) {
	a, b := e.user("pa"), e.user("pb")
	g := e.group(a, b)
	var all []core.Message
	for i := range 25 {
		if i%3 == 0 {
			all = append(all, e.sendGroup(b, g.ID, fmt.Sprintf("ping %d", i)))
		} else {
			all = append(all, e.send(a, b, fmt.Sprintf("ping %d", i)))
		}
		e.send(a, b, "pong") // not a match, in between
	}
	want := ids(all...)
	var got []core.ID
	var before core.ID
	for {
		page := e.search(a, "ping", "", before, 10)
		require.LessOrEqual(t, len(page), 10)
		if len(page) == 0 {
			break
		}
		got = append(got, page...)
		before = page[len(page)-1]
	}
	require.Equal(t, want, got, "pages hold every match once, newest first")
}

func testSearchOneConversation(t *testing.T, e *env) {
	a, b, c := e.user("oa"), e.user("ob"), e.user("oc")
	g := e.group(a, c)
	ab := e.send(a, b, "lunch today?")
	gm := e.sendGroup(c, g.ID, "lunch at noon")
	require.Equal(t, ids(ab, gm), e.search(a, "lunch", "", 0, 10))
	require.Equal(t, ids(ab), e.search(a, "lunch", core.DirectConv(a, b), 0, 10))
	require.Equal(t, ids(gm), e.search(a, "lunch", core.GroupConv(g.ID), 0, 10))
	require.Empty(t, e.search(a, "lunch", core.DirectConv(a, c), 0, 10), "a conversation with no messages yet")
}

func testSearchLeftGroup(t *testing.T, e *env) {
	a, b := e.user("la"), e.user("lb")
	g := e.group(a, b)
	m := e.sendGroup(a, g.ID, "farewell party")
	require.Equal(t, ids(m), e.search(b, "farewell", "", 0, 10))
	_, err := e.s.RemoveMember(e.ctx, g.ID, b, b)
	require.NoError(t, err)
	require.Empty(t, e.search(b, "farewell", "", 0, 10))
	_, err = e.searchErr(b, "farewell", core.GroupConv(g.ID), 0, 10)
	require.ErrorIs(t, err, core.ErrConvNotFound)
	require.Equal(t, ids(m), e.search(a, "farewell", "", 0, 10))
}

func testSearchRestart(t *testing.T, e *env) {
	a, b := e.user("ra"), e.user("rb")
	m1 := e.send(a, b, "before the restart 채팅")
	e.restart()
	m2 := e.send(b, a, "after the restart 채팅")
	require.Equal(t, ids(m1, m2), e.search(a, "restart", "", 0, 10))
	require.Equal(t, ids(m1, m2), e.search(b, "채팅", "", 0, 10))
}

// A caller in many conversations gets the newest matches across all of
// them, merged.
func testSearchManyConversations(t *testing.T, e *env) {
	a := e.user("ma")
	peers := e.users("mp", 12)
	var all []core.Message
	for round := range 3 {
		for i, p := range peers {
			if (i+round)%2 == 0 {
				all = append(all, e.send(p, a, fmt.Sprintf("deploy %d %d", round, i)))
			} else {
				e.send(p, a, "nothing here")
			}
		}
	}
	want := ids(all...)
	require.Equal(t, want[:5], e.search(a, "deploy", "", 0, 5))
	require.Equal(t, want[5:10], e.search(a, "deploy", "", want[4], 5))
	require.Equal(t, want, e.search(a, "deploy", "", 0, 100))
}

func testMentions(t *testing.T, e *env) {
	a, b, c := e.user("xa"), e.user("xb"), e.user("xc")
	g := e.group(a, b, c)
	req := e.req(a, 0, g.ID, "@xb and @xc, look")
	req.Mentions = []core.ID{b, c}
	m1 := e.append(req).Message
	require.Equal(t, []core.ID{b, c}, m1.Mentions)
	e.sendGroup(a, g.ID, "no mention")
	req = e.req(a, b, 0, "@xb direct")
	req.Mentions = []core.ID{b}
	m2 := e.append(req).Message

	raws, err := e.s.Mentions(e.ctx, b, 0, 10)
	require.NoError(t, err)
	require.Equal(t, ids(m1, m2), msgIDs(t, raws))
	var got core.Message
	require.NoError(t, json.Unmarshal(raws[1], &got))
	require.Equal(t, []core.ID{b, c}, got.Mentions, "the stored message carries its mentions")
	raws, err = e.s.Mentions(e.ctx, b, m2.ID, 10)
	require.NoError(t, err)
	require.Equal(t, ids(m1), msgIDs(t, raws), "paged by before")
	raws, err = e.s.Mentions(e.ctx, b, 0, 1)
	require.NoError(t, err)
	require.Equal(t, ids(m2), msgIDs(t, raws), "limit")
	raws, err = e.s.Mentions(e.ctx, a, 0, 10)
	require.NoError(t, err)
	require.Empty(t, raws)

	// Everywhere a message is read, it carries its mentions.
	for _, in := range e.inbox(c, 0) {
		var m core.Message
		require.NoError(t, json.Unmarshal(in.Message, &m))
		if m.ID == m1.ID {
			require.Equal(t, []core.ID{b, c}, m.Mentions)
		}
	}
	hist, err := e.s.History(e.ctx, c, core.GroupConv(g.ID), 0, 0, 10)
	require.NoError(t, err)
	require.NoError(t, json.Unmarshal(hist[len(hist)-1], &got))
	require.Equal(t, []core.ID{b, c}, got.Mentions)
	e.restart()
	raws, err = e.s.Mentions(e.ctx, c, 0, 10)
	require.NoError(t, err)
	require.Equal(t, ids(m1), msgIDs(t, raws))
	require.NoError(t, json.Unmarshal(raws[0], &got))
	require.Equal(t, []core.ID{b, c}, got.Mentions, "mentions survive a restart")
}

func testMentionsLeftGroup(t *testing.T, e *env) {
	a, b := e.user("ya"), e.user("yb")
	g := e.group(a, b)
	req := e.req(a, 0, g.ID, "@yb hi")
	req.Mentions = []core.ID{b}
	e.append(req)
	raws, err := e.s.Mentions(e.ctx, b, 0, 10)
	require.NoError(t, err)
	require.Len(t, raws, 1)
	_, err = e.s.RemoveMember(e.ctx, g.ID, b, b)
	require.NoError(t, err)
	raws, err = e.s.Mentions(e.ctx, b, 0, 10)
	require.NoError(t, err)
	require.Empty(t, raws, "a former member no longer reads the group")
}

func testHistoryAfter(t *testing.T, e *env) {
	a, b, c := e.user("ha"), e.user("hb"), e.user("hc")
	conv := core.DirectConv(a, b)
	var ms []core.Message
	for i := range 10 {
		ms = append(ms, e.send(a, b, fmt.Sprintf("m%d", i)))
	}
	raws, err := e.s.HistoryAfter(e.ctx, b, conv, ms[3].ID, 4)
	require.NoError(t, err)
	require.Equal(t, []core.ID{ms[4].ID, ms[5].ID, ms[6].ID, ms[7].ID}, msgIDs(t, raws), "oldest first, after is exclusive")
	raws, err = e.s.HistoryAfter(e.ctx, a, conv, ms[8].ID, 10)
	require.NoError(t, err)
	require.Equal(t, []core.ID{ms[9].ID}, msgIDs(t, raws))
	raws, err = e.s.HistoryAfter(e.ctx, a, conv, 0, 2)
	require.NoError(t, err)
	require.Equal(t, []core.ID{ms[0].ID, ms[1].ID}, msgIDs(t, raws))
	_, err = e.s.HistoryAfter(e.ctx, c, conv, 0, 2)
	require.ErrorIs(t, err, core.ErrConvNotFound)
}
