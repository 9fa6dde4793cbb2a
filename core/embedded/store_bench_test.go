package embedded_test

import (
	"context"
	"fmt"
	"sync/atomic"
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/chatgate/chatgate/core"
	"github.com/chatgate/chatgate/core/embedded"
	"github.com/chatgate/chatgate/internal/testkit"
)

func openBench(b *testing.B) (*embedded.Store, []core.ID) {
	ids, _ := core.NewSnowflake(1)
	s, err := embedded.Open(b.TempDir(), ids, testkit.Logger(b), embedded.Options{})
	require.NoError(b, err)
	b.Cleanup(func() { s.Close() })
	users := make([]core.ID, 1000)
	for i := range users {
		users[i] = ids.Next()
		d := core.Device{ID: ids.Next(), UserID: users[i]}
		require.NoError(b, s.CreateUser(context.Background(), core.UserRecord{User: core.User{ID: users[i], Username: fmt.Sprintf("u%d", i), DisplayName: "u"}}, d, []byte(fmt.Sprint(i))))
	}
	return s, users
}

// BenchmarkAppend measures acknowledged 1:1 appends (durable: fsynced
// before return) with many concurrent senders sharing group commits.
func BenchmarkAppend(b *testing.B) {
	for _, senders := range []int{1, 64, 512} {
		b.Run(fmt.Sprintf("senders=%d", senders), func(b *testing.B) {
			s, users := openBench(b)
			var n atomic.Int64
			b.SetParallelism(senders)
			b.ResetTimer()
			b.RunParallel(func(pb *testing.PB) {
				for pb.Next() {
					i := n.Add(1)
					from, to := users[i%1000], users[(i*7+1)%1000]
					_, err := s.Append(context.Background(), core.SendRequest{From: from, To: to, Content: "hello, this is a benchmark message", ClientMsgID: fmt.Sprint(i), CreatedAt: core.Now()})
					if err != nil {
						b.Error(err)
						return
					}
				}
			})
			b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "sends/s")
		})
	}
}

// BenchmarkInbox measures the resume path: reading 100 events of an inbox.
func BenchmarkInbox(b *testing.B) {
	s, users := openBench(b)
	ctx := context.Background()
	for i := 0; i < 1000; i++ {
		_, err := s.Append(ctx, core.SendRequest{From: users[1], To: users[0], Content: "hello, this is a benchmark message", CreatedAt: core.Now()})
		require.NoError(b, err)
	}
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		es, err := s.Inbox(ctx, users[0], uint64(i%900), 100, 1<<20)
		if err != nil || len(es) != 100 {
			b.Fatal(err, len(es))
		}
	}
	b.ReportMetric(float64(b.N*100)/b.Elapsed().Seconds(), "events/s")
}
