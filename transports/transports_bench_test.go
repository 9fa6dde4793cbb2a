package transports_test

import (
	"context"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/chatgate/chatgate/client"
	"github.com/chatgate/chatgate/internal/testkit"
)

func benchPair(b *testing.B, tr string, onMessage func()) (*client.Client, *client.Client, *client.Conn) {
	n := testkit.Start(b)
	mk := func(p string) *client.Client {
		c := client.New(n.URL())
		if _, err := c.Signup(context.Background(), client.SignupInput{Username: testkit.UniqueName(p), Password: "correct horse"}); err != nil {
			b.Fatal(err)
		}
		b.Cleanup(c.CloseIdleConnections)
		return c
	}
	a, r := mk("ba"), mk("br")
	conn, err := r.Connect(context.Background(), client.ConnectOptions{
		Transports: []string{tr}, PollInterval: 100 * time.Millisecond, LongPollWait: 25 * time.Second,
		OnEvent: func(e client.Event) {
			if e.Type == client.EventMessage {
				onMessage()
			}
		},
	})
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() { conn.Close() })
	return a, r, conn
}

// BenchmarkDeliveryLatency: one message at a time, from the send to its
// delivery to the receiving client (durable store included). Polling's
// figure is dominated by its 100 ms interval (mean delay: half of it).
func BenchmarkDeliveryLatency(b *testing.B) {
	for _, tr := range conformanceTransports {
		b.Run(tr, func(b *testing.B) {
			got := make(chan struct{}, 1)
			a, r, _ := benchPair(b, tr, func() { got <- struct{}{} })
			ctx := context.Background()
			b.ResetTimer()
			for i := 0; i < b.N; i++ {
				if _, err := a.Send(ctx, client.SendInput{To: r.UserID(), Content: "ping"}); err != nil {
					b.Fatal(err)
				}
				<-got
			}
			b.ReportMetric(float64(b.Elapsed().Microseconds())/float64(b.N)/1000, "ms/msg")
		})
	}
}

// BenchmarkDeliveryThroughput: 32 concurrent senders to one receiving
// client; messages delivered per second.
func BenchmarkDeliveryThroughput(b *testing.B) {
	for _, tr := range conformanceTransports {
		b.Run(tr, func(b *testing.B) {
			var delivered atomic.Int64
			all := make(chan struct{})
			var target atomic.Int64
			target.Store(1 << 62)
			a, r, _ := benchPair(b, tr, func() {
				if delivered.Add(1) == target.Load() {
					close(all)
				}
			})
			target.Store(int64(b.N))
			if b.N == 0 {
				return
			}
			ctx := context.Background()
			b.ResetTimer()
			var wg sync.WaitGroup
			var next atomic.Int64
			for w := 0; w < 32; w++ {
				wg.Add(1)
				go func() {
					defer wg.Done()
					for next.Add(1) <= int64(b.N) {
						if _, err := a.Send(ctx, client.SendInput{To: r.UserID(), Content: "hello, this is a benchmark message"}); err != nil {
							b.Error(err)
							return
						}
					}
				}()
			}
			wg.Wait()
			<-all
			b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "msgs/s")
		})
	}
}
