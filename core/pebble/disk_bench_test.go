package pebble

import (
	"context"
	"fmt"
	"log/slog"
	"math/rand/v2"
	"os"
	"path/filepath"
	"sync"
	"testing"

	"github.com/chatgate/chatgate/core"
)

// dirStub is a Directory of n users and one group of the first 100.
type dirStub struct {
	users map[core.ID]bool
	group core.Group
}

func (d *dirStub) UserExists(_ context.Context, id core.ID) (bool, error) {
	return d.users[id], nil
}

func (d *dirStub) Group(_ context.Context, id core.ID) (core.Group, error) {
	if id != d.group.ID {
		return core.Group{}, core.ErrGroupNotFound
	}
	return d.group, nil
}

func dirSize(t testing.TB, dir string) int64 {
	var n int64
	err := filepath.Walk(dir, func(_ string, fi os.FileInfo, err error) error {
		if err == nil && !fi.IsDir() {
			n += fi.Size()
		}
		return err
	})
	if err != nil {
		t.Fatal(err)
	}
	return n
}

// BenchmarkBytesOnDisk stores 100-byte messages (1:1, and to a
// 100-member group), compacts everything into the last level, as history
// that has aged ends up, and reports the bytes on disk per message.
func BenchmarkBytesOnDisk(b *testing.B) {
	for _, kind := range []string{"direct", "group"} {
		b.Run(kind, func(b *testing.B) {
			ids, _ := core.NewSnowflake(1)
			d := &dirStub{users: map[core.ID]bool{}}
			var users []core.ID
			for i := 0; i < 1000; i++ {
				u := ids.Next()
				users = append(users, u)
				d.users[u] = true
			}
			d.group = core.Group{ID: ids.Next(), Members: users[:100]}
			dir := b.TempDir()
			s, err := Open(dir, d, ids, slog.New(slog.DiscardHandler), Options{})
			if err != nil {
				b.Fatal(err)
			}
			defer s.Close()
			n := 20000
			if kind == "group" {
				n = 2000
			}
			// Random letters: real text compresses somewhat, this barely.
			rng := rand.New(rand.NewPCG(1, 2))
			contents := make([]string, 256)
			for i := range contents {
				b := make([]byte, 100)
				for j := range b {
					b[j] = byte('a' + rng.IntN(26))
				}
				contents[i] = string(b)
			}
			var wg sync.WaitGroup
			for w := 0; w < 64; w++ {
				wg.Add(1)
				go func(w int) {
					defer wg.Done()
					for i := w; i < n; i += 64 {
						req := core.SendRequest{From: users[i%1000], To: users[(i*7+1)%1000], Content: contents[i%256] + "",
							ClientMsgID: fmt.Sprintf("%08x-4b1c-4d2e-9f3a-%012x", i, i), CreatedAt: core.Now()}
						if kind == "group" {
							req.From, req.To, req.GroupID = users[i%100], 0, d.group.ID
						}
						if _, err := s.Append(context.Background(), req); err != nil {
							b.Error(err)
							return
						}
					}
				}(w)
			}
			wg.Wait()
			if err := s.db.Flush(); err != nil {
				b.Fatal(err)
			}
			if err := s.db.Compact(context.Background(), []byte{0}, []byte{0xff}, false); err != nil {
				b.Fatal(err)
			}
			var sst int64
			m, _ := filepath.Glob(filepath.Join(dir, "*.sst"))
			for _, f := range m {
				fi, _ := os.Stat(f)
				sst += fi.Size()
			}
			b.ReportMetric(float64(sst)/float64(n), "sst-B/msg")
			b.ReportMetric(float64(dirSize(b, dir))/float64(n), "dir-B/msg")
		})
	}
}

// BenchmarkPendingPushesAfterDeletes reads the front of a push outbox
// whose first 20,000 entries were delivered (deleted, so tombstones until
// compaction) and 10 are pending: the pusher does this every round.
func BenchmarkPendingPushesAfterDeletes(b *testing.B) {
	ids, _ := core.NewSnowflake(1)
	d := &dirStub{users: map[core.ID]bool{1: true, 2: true}}
	s, err := Open(b.TempDir(), d, ids, slog.New(slog.DiscardHandler), Options{})
	if err != nil {
		b.Fatal(err)
	}
	defer s.Close()
	ctx := context.Background()
	push := func(core.ID) bool { return true }
	for i := 0; i < 20010; i++ {
		if _, err := s.Append(ctx, core.SendRequest{From: 1, To: 2, Content: "x", CreatedAt: core.Now(), NeedsPush: push}); err != nil {
			b.Fatal(err)
		}
	}
	ps, err := s.PendingPushes(ctx, "", 20000)
	if err != nil || len(ps) != 20000 {
		b.Fatal(err, len(ps))
	}
	for _, p := range ps {
		if err := s.DeletePush(ctx, p.Key); err != nil {
			b.Fatal(err)
		}
	}
	for _, learn := range []bool{false, true} {
		b.Run(fmt.Sprintf("learned-front=%v", learn), func(b *testing.B) {
			for i := 0; i < b.N; i++ {
				if !learn {
					s.pushMu.Lock()
					s.pushLow = nil
					s.pushMu.Unlock()
				}
				ps, err := s.PendingPushes(ctx, "", 256)
				if err != nil || len(ps) != 10 {
					b.Fatal(err, len(ps))
				}
			}
		})
	}
}
