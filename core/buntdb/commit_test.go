package buntdb

import (
	"context"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"

	"github.com/stretchr/testify/require"
	"github.com/tidwall/buntdb"

	"github.com/chatgate/chatgate/core"
)

func TestJournalOpsRoundTrip(t *testing.T) {
	ops := []*op{{key: "a", val: "1"}, {key: "b", del: true}, {key: "c:\x00bin", val: string([]byte{0, 1, 2, 255})}}
	got, err := decodeOps(encodeOps(ops))
	require.NoError(t, err)
	require.Equal(t, ops, got)
	_, err = decodeOps(encodeOps(ops)[:7])
	require.Error(t, err, "a cut journal must not decode")
}

// A crash can leave journal keys whose batches were never (or only partly)
// applied; Open must apply them in order and remove them.
func TestOpenReplaysLeftoverJournals(t *testing.T) {
	dir := t.TempDir()
	raw, err := buntdb.Open(filepath.Join(dir, "chatgate.db"))
	require.NoError(t, err)
	require.NoError(t, raw.Update(func(tx *buntdb.Tx) error {
		// Batch 1 was half applied (only "x"), batch 2 not at all.
		tx.Set("x", "old", nil)
		tx.Set("gone", "1", nil)
		tx.Set(journalKey(1), encodeOps([]*op{{key: "x", val: "1"}, {key: "y", val: "1"}}), nil)
		tx.Set(journalKey(2), encodeOps([]*op{{key: "x", val: "2"}, {key: "gone", del: true}}), nil)
		return nil
	}))
	require.NoError(t, raw.Close())

	ids, _ := core.NewSnowflake(1)
	s, err := Open(dir, ids, slog.New(slog.DiscardHandler))
	require.NoError(t, err)
	defer s.Close()
	require.NoError(t, s.db.View(func(tx *buntdb.Tx) error {
		x, _ := tx.Get("x")
		y, _ := tx.Get("y")
		_, goneErr := tx.Get("gone")
		_, j1 := tx.Get(journalKey(1))
		_, j2 := tx.Get(journalKey(2))
		require.Equal(t, "2", x, "later batch wins")
		require.Equal(t, "1", y)
		require.ErrorIs(t, goneErr, buntdb.ErrNotFound)
		require.ErrorIs(t, j1, buntdb.ErrNotFound)
		require.ErrorIs(t, j2, buntdb.ErrNotFound)
		return nil
	}))
}

// Writes of one batch see each other and the batch in flight before them;
// a failing write leaves nothing behind; after Close and reopen no journal
// key is left and every acknowledged write is there.
func TestCommitterSerialisesWrites(t *testing.T) {
	dir := t.TempDir()
	ids, _ := core.NewSnowflake(1)
	s, err := Open(dir, ids, slog.New(slog.DiscardHandler))
	require.NoError(t, err)
	ctx := context.Background()
	var wg sync.WaitGroup
	for i := 0; i < 200; i++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			require.NoError(t, s.write(ctx, 0, func(w *wtx) error {
				v, _ := w.get("counter")
				w.set("counter", v+"x")
				return nil
			}))
		}()
	}
	wg.Wait()
	err = s.write(ctx, 0, func(w *wtx) error {
		w.set("never", "1")
		return core.ErrGroupFull
	})
	require.ErrorIs(t, err, core.ErrGroupFull)
	require.NoError(t, s.Close())
	require.ErrorIs(t, s.write(ctx, 0, func(*wtx) error { return nil }), core.ErrUnavailable)

	s, err = Open(dir, ids, slog.New(slog.DiscardHandler))
	require.NoError(t, err)
	defer s.Close()
	require.NoError(t, s.db.View(func(tx *buntdb.Tx) error {
		v, _ := tx.Get("counter")
		require.Len(t, v, 200, "every increment applied exactly once")
		_, err := tx.Get("never")
		require.ErrorIs(t, err, buntdb.ErrNotFound)
		n := 0
		tx.AscendKeys("j:*", func(string, string) bool { n++; return true })
		require.Zero(t, n, "no journal key left after a clean close")
		return nil
	}))
}

// Open compacts a big file that is mostly garbage and keeps every live key.
func TestOpenCompacts(t *testing.T) {
	old := CompactAbove
	CompactAbove = 1 << 10
	defer func() { CompactAbove = old }()
	dir := t.TempDir()
	ids, _ := core.NewSnowflake(1)
	s, err := Open(dir, ids, slog.New(slog.DiscardHandler))
	require.NoError(t, err)
	ctx := context.Background()
	for i := 0; i < 300; i++ {
		require.NoError(t, s.write(ctx, 0, func(w *wtx) error {
			w.set("k", strings.Repeat("v", i)) // overwritten: garbage
			return nil
		}))
	}
	require.NoError(t, s.write(ctx, 0, func(w *wtx) error { w.set("keep", "1"); return nil }))
	require.NoError(t, s.Close())
	path := filepath.Join(dir, "chatgate.db")
	before, _ := os.Stat(path)

	s, err = Open(dir, ids, slog.New(slog.DiscardHandler))
	require.NoError(t, err)
	after, _ := os.Stat(path)
	require.Less(t, after.Size()*2, before.Size(), "compacted")
	require.NoError(t, s.db.View(func(tx *buntdb.Tx) error {
		k, _ := tx.Get("k")
		keep, _ := tx.Get("keep")
		require.Equal(t, strings.Repeat("v", 299), k)
		require.Equal(t, "1", keep)
		return nil
	}))
	// Writes after compaction are durable through the new file.
	require.NoError(t, s.write(ctx, 0, func(w *wtx) error { w.set("later", "1"); return nil }))
	require.NoError(t, s.Close())
	s, err = Open(dir, ids, slog.New(slog.DiscardHandler))
	require.NoError(t, err)
	defer s.Close()
	require.NoError(t, s.db.View(func(tx *buntdb.Tx) error {
		v, err := tx.Get("later")
		require.NoError(t, err)
		require.Equal(t, "1", v)
		return nil
	}))
}

// Inbox heads are derived from inbox keys, through the batch being built
// and the one in flight: concurrent appends to the same users must still
// get gap-free seqs, and InboxHead must agree with them after a reopen.
func TestAppendSeqsGapFreeAcrossBatches(t *testing.T) {
	dir := t.TempDir()
	ids, _ := core.NewSnowflake(1)
	s, err := Open(dir, ids, slog.New(slog.DiscardHandler))
	require.NoError(t, err)
	ctx := context.Background()
	users := []core.ID{ids.Next(), ids.Next(), ids.Next()}
	for i, u := range users {
		require.NoError(t, s.CreateUser(ctx, core.UserRecord{User: core.User{ID: u, Username: "user" + string(rune('a'+i))}}, core.Device{ID: ids.Next(), UserID: u}, []byte{byte(i)}))
	}
	const n = 300
	seqs := make(map[core.ID][]uint64)
	var mu sync.Mutex
	var wg sync.WaitGroup
	for i := 0; i < n; i++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			from, to := users[i%3], users[(i+1)%3]
			res, err := s.Append(ctx, core.SendRequest{From: from, To: to, Content: "x", CreatedAt: core.Now()})
			require.NoError(t, err)
			mu.Lock()
			for _, d := range res.Deliveries {
				seqs[d.UserID] = append(seqs[d.UserID], d.Seq)
			}
			mu.Unlock()
		}()
	}
	wg.Wait()
	require.NoError(t, s.Close())
	s, err = Open(dir, ids, slog.New(slog.DiscardHandler))
	require.NoError(t, err)
	defer s.Close()
	for _, u := range users {
		got := seqs[u]
		require.Len(t, got, 2*n/3)
		seen := make(map[uint64]bool)
		for _, q := range got {
			require.False(t, seen[q], "seq %d given twice", q)
			seen[q] = true
			require.LessOrEqual(t, q, uint64(len(got)), "gap in seqs")
		}
		head, err := s.InboxHead(ctx, u)
		require.NoError(t, err)
		require.Equal(t, uint64(len(got)), head)
		cs, err := s.Conversations(ctx, u, 10)
		require.NoError(t, err)
		require.Len(t, cs, 2)
		require.Greater(t, cs[0].LastID(), cs[1].LastID(), "newest activity first")
	}
}

// The committer remembers that a user's conversation key is set; removing
// the user from the group deletes the key, and after re-joining the next
// message must write it again.
func TestConversationKeyRewrittenAfterRejoin(t *testing.T) {
	ids, _ := core.NewSnowflake(1)
	s, err := Open(t.TempDir(), ids, slog.New(slog.DiscardHandler))
	require.NoError(t, err)
	defer s.Close()
	ctx := context.Background()
	a, b := ids.Next(), ids.Next()
	for i, u := range []core.ID{a, b} {
		require.NoError(t, s.CreateUser(ctx, core.UserRecord{User: core.User{ID: u, Username: "user" + string(rune('a'+i))}}, core.Device{ID: ids.Next(), UserID: u}, []byte{byte(i)}))
	}
	g := core.Group{ID: ids.Next(), Name: "g", OwnerID: a, Members: []core.ID{a, b}, CreatedAt: core.Now()}
	require.NoError(t, s.CreateGroup(ctx, g))
	send := func() {
		_, err := s.Append(ctx, core.SendRequest{From: a, GroupID: g.ID, Content: "x", CreatedAt: core.Now()})
		require.NoError(t, err)
	}
	convs := func() int {
		cs, err := s.Conversations(ctx, b, 10)
		require.NoError(t, err)
		return len(cs)
	}
	send()
	send() // finds the key set: now it is remembered
	require.Equal(t, 1, convs())
	_, err = s.RemoveMember(ctx, g.ID, a, b)
	require.NoError(t, err)
	require.Equal(t, 0, convs())
	_, err = s.AddMember(ctx, g.ID, a, b)
	require.NoError(t, err)
	require.Equal(t, 0, convs(), "no message since joining")
	send()
	require.Equal(t, 1, convs())
}
