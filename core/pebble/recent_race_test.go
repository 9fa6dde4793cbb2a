package pebble

import (
	"context"
	"log/slog"
	"strings"
	"sync"
	"sync/atomic"
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/chatgate/chatgate/core"
)

// A reader following a user's inbox never sees its head go back below
// what it has read. It did twice:
//   - batches became visible to disk readers and then reached the
//     recent-inbox cache a message at a time, so a reader could read seqs
//     n and n+1 from disk and then be told by the cache that the head was
//     n (a client resuming there was handed n+1 twice);
//   - Inbox read the durable limit before making its iterator, so a batch
//     applied in between showed entries not yet on disk.
//
// A small cache, emptied every few messages, makes reads go to disk often.
// (Both failed within 50 runs before their fixes.)
func TestInboxHeadNeverGoesBack(t *testing.T) {
	ids, err := core.NewSnowflake(1)
	require.NoError(t, err)
	d := &dirStub{users: map[core.ID]bool{1: true, 2: true}}
	s, err := Open(t.TempDir(), d, ids, slog.New(slog.DiscardHandler), Options{})
	require.NoError(t, err)
	defer s.Close()
	s.recent = newRecent(64 << 10)
	ctx := context.Background()
	content := strings.Repeat("x", 8<<10)

	const senders, each = 8, 150
	var done atomic.Bool
	var wg sync.WaitGroup
	for range senders {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for range each {
				if _, err := s.Append(ctx, core.SendRequest{From: 2, To: 1, Content: content, CreatedAt: core.Now()}); err != nil {
					t.Error(err)
					return
				}
			}
		}()
	}
	go func() { wg.Wait(); done.Store(true) }()

	var cursor uint64
	for {
		finished := done.Load()
		es, err := s.Inbox(ctx, 1, cursor, 100, 1<<20)
		require.NoError(t, err)
		for _, e := range es {
			require.Equal(t, cursor+1, e.Seq, "inbox read after %d", cursor)
			cursor = e.Seq
		}
		h, err := s.InboxHead(ctx, 1)
		require.NoError(t, err)
		if h < cursor {
			rh, rok := s.recent.head(1)
			sh, _ := s.storedHead(1)
			t.Fatalf("head %d < cursor %d: recent %d %v, stored %d, durable limit %d, read %d entries", h, cursor, rh, rok, sh, s.durableLimit(1), len(es))
		}
		if finished && len(es) == 0 {
			break
		}
	}
	require.Equal(t, uint64(senders*each), cursor)
}
