package postgres_test

import (
	"context"
	"encoding/json"
	"fmt"
	"maps"
	"math/rand/v2"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/stretchr/testify/require"
	"go.uber.org/goleak"

	"github.com/chatgate/chatgate/core"
	"github.com/chatgate/chatgate/core/postgres"
	"github.com/chatgate/chatgate/internal/pgtest"
)

// sent is a message as the test remembers it.
type sent struct {
	id      core.ID
	conv    string
	content string
}

// reference answers a search the slow way: the messages of convs holding
// every term, newest first, with id < before, at most limit.
func reference(msgs []sent, convs map[string]bool, terms []string, before core.ID, limit int) []core.ID {
	var out []core.ID
	for _, m := range slices.Backward(msgs) {
		if !convs[m.conv] || (before != 0 && m.id >= before) {
			continue
		}
		have := core.Terms(m.content)
		if !slices.ContainsFunc(terms, func(t string) bool { return !slices.Contains(have, t) }) {
			out = append(out, m.id)
		}
	}
	return out[:min(len(out), limit)]
}

func foundIDs(t *testing.T, found []core.Found) []core.ID {
	t.Helper()
	var out []core.ID
	for _, f := range found {
		var m core.Message
		require.NoError(t, json.Unmarshal(f.Message, &m))
		require.Equal(t, m.ConversationID, f.ConversationID)
		out = append(out, m.ID)
	}
	return out
}

// TestSearchPlansAgree checks both ways a conversation is searched (newest
// first through the primary key, or through the GIN index) and the choice
// between them made from real statistics against a reference, over
// common, rare, multi-term and CJK queries, paged.
func TestSearchPlansAgree(t *testing.T) {
	url := pgtest.NewDB(t)
	ctx := context.Background()
	w := open(t, url, 1, postgres.Options{})
	t.Cleanup(func() { w.Close() })
	f := newFixture(t)
	us := f.users(w, 8)
	a := us[0]
	g1 := f.group(w, a, us[1], us[2], us[3])
	g2 := f.group(w, us[4], us[5]) // a is not a member
	g3 := f.group(w, a, us[5])     // a leaves it below

	words := []string{"hello", "hello", "hello", "deploy", "build", "coffee", "채팅을", "시작합니다", "東京タワー", "Ｆｕｌｌ"}
	rng := rand.New(rand.NewPCG(1, 2))
	var msgs []sent
	for i := range 600 {
		var content []string
		for range 1 + rng.IntN(4) {
			content = append(content, words[rng.IntN(len(words))])
		}
		if i%97 == 0 {
			content = append(content, "zebra")
		}
		req := core.SendRequest{From: a, Content: strings.Join(content, " "), ClientMsgID: fmt.Sprint(i), CreatedAt: core.Now()}
		switch r := rng.IntN(10); {
		case r < 4: // one busy 1:1
			req.To = us[1]
		case r < 6:
			req.To = us[2+rng.IntN(5)]
		case r < 7:
			req.To = a // notes to self
		case r < 8:
			req.GroupID = g1.ID
		case r < 9:
			req.From, req.GroupID = us[4], g2.ID
		default:
			req.GroupID = g3.ID
		}
		if req.From != a {
			req.ClientMsgID = "o" + req.ClientMsgID
		}
		res, err := w.Append(ctx, req)
		require.NoError(t, err)
		msgs = append(msgs, sent{id: res.Message.ID, conv: res.Message.ConversationID, content: req.Content})
	}
	_, err := w.RemoveMember(ctx, g3.ID, a, a)
	require.NoError(t, err)

	convs := map[string]bool{core.GroupConv(g1.ID): true, core.DirectConv(a, a): true}
	for _, u := range us[1:] {
		convs[core.DirectConv(a, u)] = true
	}
	require.False(t, convs[core.GroupConv(g2.ID)])

	conn, err := pgx.Connect(ctx, url)
	require.NoError(t, err)
	defer conn.Close(ctx)
	_, err = conn.Exec(ctx, `ANALYZE messages`)
	require.NoError(t, err)

	auto := open(t, url, 2, postgres.Options{})
	t.Cleanup(func() { auto.Close() })
	ordered := open(t, url, 3, postgres.Options{})
	t.Cleanup(func() { ordered.Close() })
	ordered.ForceSearchPlan(true)
	indexed := open(t, url, 4, postgres.Options{})
	t.Cleanup(func() { indexed.Close() })
	indexed.ForceSearchPlan(false)

	// The statistics see that hello is common, so the busy conversation
	// is read newest first, and zebra rare, so nothing is.
	busy := core.DirectConv(a, us[1])
	convList := slices.Collect(maps.Keys(convs))
	ord, _ := auto.SearchPlan(ctx, convList, []string{"hello"}, 5)
	require.Contains(t, ord, busy, "common term in a busy conversation")
	ord, idx := auto.SearchPlan(ctx, convList, []string{"zebra"}, 5)
	require.Empty(t, ord, "rare term")
	require.Len(t, idx, len(convList))

	stores := map[string]*postgres.Store{"auto": auto, "ordered": ordered, "indexed": indexed}
	queries := []string{"hello", "HELLO deploy", "zebra", "채팅", "시작", "東京", "full", "nosuch", "coffee build hello"}
	for name, s := range stores {
		for _, q := range queries {
			terms := core.QueryTerms(q)
			for _, limit := range []int{1, 7, 1000} {
				// Page through everything.
				var before core.ID
				for page := 0; ; page++ {
					want := reference(msgs, convs, terms, before, limit)
					found, err := s.Search(ctx, a, core.SearchQuery{Terms: terms, Before: before, Limit: limit})
					require.NoError(t, err)
					require.Equal(t, want, foundIDs(t, found), "%s: %q limit %d page %d", name, q, limit, page)
					if len(want) < limit || page == 5 {
						break
					}
					before = want[len(want)-1]
				}
			}
			// One conversation at a time.
			for conv := range convs {
				want := reference(msgs, map[string]bool{conv: true}, terms, 0, 10)
				found, err := s.Search(ctx, a, core.SearchQuery{Terms: terms, Conv: conv, Limit: 10})
				require.NoError(t, err)
				require.Equal(t, want, foundIDs(t, found), "%s: %q in %s", name, q, conv)
			}
		}
		for _, conv := range []string{core.GroupConv(g2.ID), core.GroupConv(g3.ID), core.DirectConv(us[1], us[2]), "nonsense"} {
			_, err := s.Search(ctx, a, core.SearchQuery{Terms: []string{"hello"}, Conv: conv, Limit: 10})
			require.ErrorIs(t, err, core.ErrConvNotFound, "%s: %s", name, conv)
		}
		// A term no message can hold matches nothing, and is no error.
		for _, terms := range [][]string{{"\x00"}, {"a_b"}, {busy}, {""}} {
			found, err := s.Search(ctx, a, core.SearchQuery{Terms: terms, Limit: 10})
			require.NoError(t, err)
			require.Empty(t, found, "%s: %q", name, terms)
		}
		_, err := s.Search(ctx, a, core.SearchQuery{Terms: []string{"\x00"}, Conv: core.GroupConv(g2.ID), Limit: 1})
		require.ErrorIs(t, err, core.ErrConvNotFound)
	}
}

// TestMentionsStored checks what the store keeps of SendRequest.Mentions:
// the message carries them as given, through every read, and only the
// recipients among them are listed by Mentions.
func TestMentionsStored(t *testing.T) {
	s := open(t, pgtest.NewDB(t), 1, postgres.Options{})
	t.Cleanup(func() { s.Close() })
	ctx := context.Background()
	f := newFixture(t)
	us := f.users(s, 3)
	a, b, c := us[0], us[1], us[2]

	req := core.SendRequest{From: a, To: b, Content: "@b @c", ClientMsgID: "m1", CreatedAt: core.Now(), Mentions: []core.ID{b, c, b}}
	res, err := s.Append(ctx, req)
	require.NoError(t, err)
	require.Equal(t, []core.ID{b, c, b}, res.Message.Mentions)
	mentions := `"mentions":["` + b.String() + `","` + c.String() + `","` + b.String() + `"]`
	require.Contains(t, string(res.Raw), mentions)

	replay, err := s.Append(ctx, req)
	require.NoError(t, err)
	require.True(t, replay.Replayed)
	require.Equal(t, string(res.Raw), string(replay.Raw))

	plain, err := s.Append(ctx, core.SendRequest{From: b, To: a, Content: "no one", CreatedAt: core.Now()})
	require.NoError(t, err)
	require.NotContains(t, string(plain.Raw), "mentions")

	hist, err := s.History(ctx, b, res.Message.ConversationID, 0, 0, 10)
	require.NoError(t, err)
	require.Len(t, hist, 2)
	require.Equal(t, string(res.Raw), string(hist[1]))
	inbox, err := s.Inbox(ctx, b, 0, 10, 1<<20)
	require.NoError(t, err)
	require.Equal(t, string(res.Raw), string(inbox[0].Message))
	after, err := s.HistoryAfter(ctx, a, res.Message.ConversationID, 0, 1)
	require.NoError(t, err)
	require.Equal(t, []json.RawMessage{res.Raw}, after)

	got, err := s.Mentions(ctx, b, 0, 10)
	require.NoError(t, err)
	require.Equal(t, []json.RawMessage{res.Raw}, got)
	got, err = s.Mentions(ctx, c, 0, 10)
	require.NoError(t, err)
	require.Empty(t, got, "c is not in the conversation")
	got, err = s.Mentions(ctx, b, res.Message.ID, 10)
	require.NoError(t, err)
	require.Empty(t, got)
}

// TestBackfill opens a database written by the release before search: its
// messages have no terms until the backfill, run by two stores at once,
// gives them theirs; then they are found like new ones, and the stores
// leave no goroutine behind.
func TestBackfill(t *testing.T) {
	url := pgtest.NewDB(t)
	ctx := context.Background()
	require.NoError(t, postgres.MigrateTo(ctx, url, 1))

	// The earlier release's rows, written as it wrote them.
	const n = 2500 // several batches
	a, b := core.ID(1001), core.ID(1002)
	conv := core.DirectConv(a, b)
	conn, err := pgx.Connect(ctx, url)
	require.NoError(t, err)
	defer conn.Close(ctx)
	_, err = conn.Exec(ctx, `INSERT INTO messages (conversation_id, id, sender_id, recipient_id, group_id, content, created_at, client_msg_id)
		SELECT $1, i, $2, $3, 0, convert_to(format('old message %s%s', i, CASE WHEN i % 100 = 0 THEN ' 채팅을 RARE' ELSE '' END), 'UTF8'), now(), ''
		FROM generate_series(1, $4) i`, conv, int64(a), int64(b), n)
	require.NoError(t, err)
	_, err = conn.Exec(ctx, `INSERT INTO user_conversations (user_id, conversation_id, group_id, last_id, read_up_to)
		VALUES ($1, $3, 0, $4, 0), ($2, $3, 0, $4, 0)`, int64(a), int64(b), conv, n)
	require.NoError(t, err)

	leaks := goleak.IgnoreCurrent()
	stores := make([]*postgres.Store, 2)
	var wg sync.WaitGroup
	for i := range stores {
		wg.Go(func() { stores[i] = open(t, url, i+1, postgres.Options{}) })
	}
	wg.Wait()
	for _, s := range stores {
		wctx, cancel := context.WithTimeout(ctx, time.Minute)
		require.NoError(t, s.WaitBackfilled(wctx))
		cancel()
	}

	rows, err := conn.Query(ctx, `SELECT conversation_id, content, terms FROM messages`)
	require.NoError(t, err)
	count := 0
	for rows.Next() {
		var (
			c       string
			content []byte
			terms   []string
		)
		require.NoError(t, rows.Scan(&c, &content, &terms))
		require.Equal(t, append([]string{c}, core.Terms(string(content))...), terms)
		count++
	}
	require.NoError(t, rows.Err())
	require.Equal(t, n, count)

	for _, s := range stores {
		found, err := s.Search(ctx, a, core.SearchQuery{Terms: core.QueryTerms("rare 채팅"), Limit: 100})
		require.NoError(t, err)
		require.Len(t, found, n/100)
		require.Equal(t, core.ID(n), foundIDs(t, found)[0])
		found, err = s.Search(ctx, b, core.SearchQuery{Terms: core.QueryTerms("old"), Before: 11, Limit: 3})
		require.NoError(t, err)
		require.Equal(t, []core.ID{10, 9, 8}, foundIDs(t, found))
	}
	for _, s := range stores {
		require.NoError(t, s.Close())
	}
	goleak.VerifyNone(t, leaks)
}
