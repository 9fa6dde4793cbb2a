package transports_test

import (
	"context"
	"fmt"
	"net/http"
	"runtime"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/gorilla/websocket"

	"github.com/chatgate/chatgate/client"
	"github.com/chatgate/chatgate/core"
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

// BenchmarkFanoutDelivery is the server's live fan-out over WebSocket: one
// op is one message to a 100-member group (stored durably, then written to
// the 99 other members' sockets), sent in process so that no HTTP request
// is in the figure. The members read raw frames and decode nothing.
// deliveries/s is the figure to compare with bench/'s fan-out scenario.
func BenchmarkFanoutDelivery(b *testing.B) {
	const members = 100
	n := testkit.Start(b)
	users := testkit.SignupMany(b, n.URL(), "fan", members)
	ids := make([]string, 0, members-1)
	for _, u := range users[1:] {
		ids = append(ids, u.ID)
	}
	r := users[0].Do("POST", "/v1/groups", map[string]any{"name": "fan", "members": ids})
	if r.Status != http.StatusCreated {
		b.Fatalf("create group: %d %s", r.Status, r.Body)
	}
	gid, err := core.ParseID(r.JSON()["id"].(string))
	if err != nil {
		b.Fatal(err)
	}
	sender, err := n.Service().Authenticate(context.Background(), users[0].Token)
	if err != nil {
		b.Fatal(err)
	}
	var got atomic.Int64
	var wg sync.WaitGroup
	cut := make(chan error, members)
	var conns []*websocket.Conn
	defer func() {
		for _, c := range conns {
			c.Close()
		}
		wg.Wait()
	}()
	for _, u := range users[1:] {
		c, resp, err := websocket.DefaultDialer.Dial(fmt.Sprintf("ws://%s/v1/ws?access_token=%s", n.Addr(), u.Token), nil)
		if err != nil {
			b.Fatal(err)
		}
		resp.Body.Close()
		conns = append(conns, c)
		wg.Add(1)
		go func() {
			defer wg.Done()
			for {
				if _, _, err := c.NextReader(); err != nil {
					cut <- err
					return
				}
				got.Add(1)
			}
		}()
	}
	const senders, window = 16, 256 // window: messages sent but not yet delivered everywhere, well under a stream's queue
	content := strings.Repeat("x", 100)
	var sent, next atomic.Int64
	b.ResetTimer()
	var sg sync.WaitGroup
	for range senders {
		sg.Add(1)
		go func() {
			defer sg.Done()
			for next.Add(1) <= int64(b.N) {
				for sent.Load()-got.Load()/(members-1) > window {
					runtime.Gosched()
				}
				if _, err := n.Service().Send(context.Background(), sender, core.SendInput{GroupID: &gid, Content: content}); err != nil {
					b.Error(err)
					return
				}
				sent.Add(1)
			}
		}()
	}
	sg.Wait()
	want := int64(b.N) * (members - 1)
	for got.Load() < want {
		select {
		case err := <-cut:
			b.Fatalf("a member's socket ended: %v", err)
		case <-time.After(time.Millisecond):
		}
	}
	b.StopTimer()
	b.ReportMetric(float64(want)/b.Elapsed().Seconds(), "deliveries/s")
}
