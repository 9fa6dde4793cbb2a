package postgres_test

import (
	"context"
	"fmt"
	"sync"
	"sync/atomic"
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/chatgate/chatgate/core"
	"github.com/chatgate/chatgate/core/postgres"
	"github.com/chatgate/chatgate/internal/pgtest"
)

// openBench opens a store on a fresh database of the shared server with
// 1000 users.
func openBench(b *testing.B) (*postgres.Store, []core.ID) {
	s := open(b, pgtest.NewDB(b), 1, postgres.Options{})
	b.Cleanup(func() { s.Close() })
	ids, _ := core.NewSnowflake(2)
	users := make([]core.ID, 1000)
	for i := range users {
		users[i] = ids.Next()
	}
	var wg sync.WaitGroup
	errs := make(chan error, len(users))
	for w := range 16 {
		wg.Go(func() {
			for i := w; i < len(users); i += 16 {
				d := core.Device{ID: ids.Next(), UserID: users[i]}
				errs <- s.CreateUser(context.Background(), core.UserRecord{User: core.User{ID: users[i], Username: fmt.Sprintf("u%d", i), DisplayName: "u"}}, d, []byte(fmt.Sprint(i)))
			}
		})
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		require.NoError(b, err)
	}
	return s, users
}

// BenchmarkAppend measures acknowledged 1:1 appends (durable: committed
// with synchronous_commit on before Append returns) from exactly senders
// concurrent goroutines, which share group commits.
func BenchmarkAppend(b *testing.B) {
	for _, senders := range []int{1, 64, 512} {
		b.Run(fmt.Sprintf("senders=%d", senders), func(b *testing.B) {
			s, users := openBench(b)
			ctx := context.Background()
			var n atomic.Int64
			var wg sync.WaitGroup
			b.ResetTimer()
			for range senders {
				wg.Go(func() {
					for i := n.Add(1); i <= int64(b.N); i = n.Add(1) {
						from, to := users[i%1000], users[(i*7+1)%1000]
						_, err := s.Append(ctx, core.SendRequest{From: from, To: to, Content: "hello, this is a benchmark message", ClientMsgID: fmt.Sprint(i), CreatedAt: core.Now()})
						if err != nil {
							b.Error(err)
							return
						}
					}
				})
			}
			wg.Wait()
			b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "sends/s")
		})
	}
}

// BenchmarkAppendGroup measures durable appends to a 100-member group
// from 8 senders: one message and 100 inbox entries each.
func BenchmarkAppendGroup(b *testing.B) {
	s, users := openBench(b)
	ctx := context.Background()
	g := core.Group{ID: 1, Name: "g", OwnerID: users[0], Members: users[:core.MaxGroupMembers], CreatedAt: core.Now()}
	require.NoError(b, s.CreateGroup(ctx, g))
	var n atomic.Int64
	var wg sync.WaitGroup
	b.ResetTimer()
	for range 8 {
		wg.Go(func() {
			for i := n.Add(1); i <= int64(b.N); i = n.Add(1) {
				if _, err := s.Append(ctx, core.SendRequest{From: users[i%core.MaxGroupMembers], GroupID: g.ID, Content: "hello group", CreatedAt: core.Now()}); err != nil {
					b.Error(err)
					return
				}
			}
		})
	}
	wg.Wait()
	b.ReportMetric(float64(b.N*core.MaxGroupMembers)/b.Elapsed().Seconds(), "deliveries/s")
}

// BenchmarkInbox measures the resume path: reading 100 events of an inbox.
func BenchmarkInbox(b *testing.B) {
	s, users := openBench(b)
	ctx := context.Background()
	var wg sync.WaitGroup
	for w := range 10 {
		wg.Go(func() {
			for range 100 {
				_, err := s.Append(ctx, core.SendRequest{From: users[1+w], To: users[0], Content: "hello, this is a benchmark message", CreatedAt: core.Now()})
				require.NoError(b, err)
			}
		})
	}
	wg.Wait()
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		es, err := s.Inbox(ctx, users[0], uint64(i%900), 100, 1<<20)
		if err != nil || len(es) != 100 {
			b.Fatal(err, len(es))
		}
	}
	b.ReportMetric(float64(b.N*100)/b.Elapsed().Seconds(), "events/s")
}
