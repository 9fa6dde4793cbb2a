package embedded_test

import (
	"context"
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/chatgate/chatgate/core"
)

// BenchmarkAppendGroup measures durable appends to a 100-member group:
// one message, 100 inbox entries (fan-out on write), one fsync per batch.
func BenchmarkAppendGroup(b *testing.B) {
	s, users := openBench(b)
	ctx := context.Background()
	g := core.Group{ID: 1, Name: "g", OwnerID: users[0], Members: users[:core.MaxGroupMembers], CreatedAt: core.Now()}
	require.NoError(b, s.CreateGroup(ctx, g))
	b.SetParallelism(8)
	b.ResetTimer()
	b.RunParallel(func(pb *testing.PB) {
		for pb.Next() {
			if _, err := s.Append(ctx, core.SendRequest{From: users[0], GroupID: g.ID, Content: "hello group", CreatedAt: core.Now()}); err != nil {
				b.Error(err)
				return
			}
		}
	})
	b.ReportMetric(float64(b.N*core.MaxGroupMembers)/b.Elapsed().Seconds(), "deliveries/s")
}
