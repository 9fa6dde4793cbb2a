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
