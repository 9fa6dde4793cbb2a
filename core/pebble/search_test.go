package pebble

import (
	"context"
	"encoding/json"
	"log/slog"
	"math/rand/v2"
	"slices"
	"testing"
	"time"

	"github.com/cockroachdb/pebble/v2"
	"github.com/stretchr/testify/require"

	"github.com/chatgate/chatgate/core"
)

type sent struct {
	id    core.ID
	conv  string
	terms map[string]bool
}

// fillRandom appends n messages of random words and Korean syllables
// between users 1..6 and the group 100 (members 1..4).
func fillRandom(t *testing.T, s *Store, rng *rand.Rand, n int) []sent {
	words := []string{"alpha", "beta", "Gamma", "delta", "가", "나", "다", "라", "東", "京"}
	var out []sent
	for range n {
		var content string
		for range 1 + rng.IntN(6) {
			w := words[rng.IntN(len(words))]
			if rng.IntN(3) == 0 {
				content += " "
			}
			content += w
		}
		req := core.SendRequest{From: core.ID(1 + rng.IntN(6)), Content: content, CreatedAt: core.Now()}
		if rng.IntN(4) == 0 && req.From <= 4 {
			req.GroupID = 100
		} else {
			req.To = core.ID(1 + rng.IntN(6))
		}
		res, err := s.Append(context.Background(), req)
		require.NoError(t, err)
		terms := map[string]bool{}
		for _, x := range core.Terms(content) {
			terms[x] = true
		}
		out = append(out, sent{res.Message.ID, res.Message.ConversationID, terms})
	}
	return out
}

func openTestStore(t *testing.T, dir string) *Store {
	ids, err := core.NewSnowflake(1)
	require.NoError(t, err)
	d := &dirStub{users: map[core.ID]bool{}, group: core.Group{ID: 100, Members: []core.ID{1, 2, 3, 4}}}
	for i := core.ID(1); i <= 6; i++ {
		d.users[i] = true
	}
	s, err := Open(dir, d, ids, slog.New(slog.DiscardHandler), Options{})
	require.NoError(t, err)
	return s
}

// brute is what a search must answer: every message of uid's conversations
// (optionally one) holding all terms, newest first.
func brute(all []sent, uid core.ID, conv string, terms []string) []core.ID {
	var out []core.ID
	for _, m := range slices.Backward(all) {
		p, _ := core.ParseConv(m.conv)
		if (p.Group != 0 && uid > 4) || (p.Group == 0 && !p.HasUser(uid)) || (conv != "" && m.conv != conv) {
			continue
		}
		ok := true
		for _, x := range terms {
			ok = ok && m.terms[x]
		}
		if ok {
			out = append(out, m.id)
		}
	}
	return out
}

func searchAll(t *testing.T, s *Store, uid core.ID, conv string, terms []string, limit int) []core.ID {
	var out []core.ID
	var before core.ID
	for {
		found, err := s.Search(context.Background(), uid, core.SearchQuery{Terms: terms, Conv: conv, Before: before, Limit: limit})
		require.NoError(t, err)
		require.LessOrEqual(t, len(found), limit)
		for _, f := range found {
			var m core.Message
			require.NoError(t, json.Unmarshal(f.Message, &m))
			out = append(out, m.ID)
			before = m.ID
		}
		if len(found) < limit {
			return out
		}
	}
}

// The leapfrog join and the merge across conversations answer exactly what
// a scan of every message would, page after page.
func TestSearchMatchesBruteForce(t *testing.T) {
	s := openTestStore(t, t.TempDir())
	defer s.Close()
	rng := rand.New(rand.NewPCG(7, 13))
	all := fillRandom(t, s, rng, 800)
	require.NoError(t, s.WaitIndexed(context.Background(), 0))
	queries := []string{"alpha", "GAMMA beta", "가나", "나다 alpha", "東京", "京가", "delta 東京 가나", "alpha beta gamma delta", "zeta", "라라"}
	for _, q := range queries {
		terms := core.QueryTerms(q)
		for _, uid := range []core.ID{1, 5, 6} {
			for _, limit := range []int{1, 3, 20, 1000} {
				require.Equal(t, brute(all, uid, "", terms), searchAll(t, s, uid, "", terms, limit), "user %d searches %q, pages of %d", uid, q, limit)
			}
			for _, conv := range []string{core.DirectConv(uid, 2), core.GroupConv(100)} {
				want := brute(all, uid, conv, terms)
				if p, _ := core.ParseConv(conv); p.Group != 0 && uid > 4 {
					_, err := s.Search(context.Background(), uid, core.SearchQuery{Terms: terms, Conv: conv, Limit: 5})
					require.ErrorIs(t, err, core.ErrConvNotFound)
					continue
				}
				require.Equal(t, want, searchAll(t, s, uid, conv, terms, 7), "user %d searches %q in %s", uid, q, conv)
			}
		}
	}
}

// A history from before the index (format 1) is indexed by the backfill,
// which resumes where it stopped; messages sent meanwhile are indexed too.
func TestSearchBackfill(t *testing.T) {
	dir := t.TempDir()
	s := openTestStore(t, dir)
	rng := rand.New(rand.NewPCG(1, 2))
	all := fillRandom(t, s, rng, 3*indexChunk+17)
	require.NoError(t, s.WaitIndexed(context.Background(), 0))
	require.NoError(t, s.Close())

	// Make it format 1: no postings, no queue, format byte 1.
	db, err := pebble.Open(dir, &pebble.Options{Logger: pebbleLogger{slog.New(slog.DiscardHandler)}})
	require.NoError(t, err)
	require.NoError(t, db.DeleteRange([]byte{kindPosting}, []byte{kindPosting + 1}, pebble.Sync))
	require.NoError(t, db.DeleteRange([]byte{kindIndexQueue}, []byte{kindIndexQueue + 1}, pebble.Sync))
	require.NoError(t, db.Set(metaKey("format"), []byte{1}, pebble.Sync))
	require.NoError(t, db.Close())

	s = openTestStore(t, dir)
	all = append(all, fillRandom(t, s, rng, 50)...)
	require.Eventually(t, func() bool {
		busy, err := s.Backfilling()
		require.NoError(t, err)
		return !busy
	}, 10*time.Second, time.Millisecond)
	require.NoError(t, s.WaitIndexed(context.Background(), 0))
	// Every message, whichever chunk it fell in (the first of each chunk
	// after the first was once skipped).
	for _, q := range []string{"alpha", "beta", "gamma", "delta", "가", "나", "東", "京", "가나 beta"} {
		terms := core.QueryTerms(q)
		for uid := core.ID(1); uid <= 6; uid++ {
			require.Equal(t, brute(all, uid, "", terms), searchAll(t, s, uid, "", terms, 50), "user %d searches %q", uid, q)
		}
	}
	require.NoError(t, s.Close())
	s = openTestStore(t, dir)
	defer s.Close()
	v, _, err := s.get(metaKey("format"))
	require.NoError(t, err)
	require.Equal(t, []byte{FormatVersion}, v)
	busy, err := s.Backfilling()
	require.NoError(t, err)
	require.False(t, busy)
}

// Queue keys left by a crash (the index batch lost, the messages kept) are
// indexed at the next start.
func TestSearchQueueLeftByCrash(t *testing.T) {
	dir := t.TempDir()
	s := openTestStore(t, dir)
	rng := rand.New(rand.NewPCG(3, 4))
	all := fillRandom(t, s, rng, 100)
	require.NoError(t, s.WaitIndexed(context.Background(), 0))
	require.NoError(t, s.Close())

	// What a crash after the messages' batch and before the index's leaves.
	db, err := pebble.Open(dir, &pebble.Options{Logger: pebbleLogger{slog.New(slog.DiscardHandler)}})
	require.NoError(t, err)
	require.NoError(t, db.DeleteRange([]byte{kindPosting}, []byte{kindPosting + 1}, pebble.Sync))
	b := db.NewBatch()
	for _, m := range all {
		c, _, ok := convOf(m.conv)
		require.True(t, ok)
		require.NoError(t, b.Set(queueKey(m.id, c), nil, nil))
	}
	require.NoError(t, b.Commit(pebble.Sync))
	require.NoError(t, db.Close())

	s = openTestStore(t, dir)
	defer s.Close()
	require.NoError(t, s.WaitIndexed(context.Background(), 0))
	terms := core.QueryTerms("alpha")
	require.NotEmpty(t, brute(all, 2, "", terms))
	require.Equal(t, brute(all, 2, "", terms), searchAll(t, s, 2, "", terms, 10))
}
