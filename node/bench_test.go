package node_test

import (
	"bytes"
	"fmt"
	"io"
	"net/http"
	"sync/atomic"
	"testing"

	"github.com/chatgate/chatgate/internal/testkit"
)

// BenchmarkHTTPSend measures acknowledged 1:1 sends over the real HTTP API
// (POST /v1/messages, fsync before the 201) with 256 concurrent clients on
// keep-alive connections: the figure docs/benchmarks.md reports.
func BenchmarkHTTPSend(b *testing.B) {
	n := testkit.Start(b)
	const users = 64
	cs := make([]*testkit.Client, users)
	for i := range cs {
		cs[i] = testkit.Signup(b, n.URL(), "bench")
	}
	tr := &http.Transport{MaxIdleConnsPerHost: 1024, MaxConnsPerHost: 1024}
	hc := &http.Client{Transport: tr}
	defer tr.CloseIdleConnections()
	var seq atomic.Int64
	b.SetParallelism(128) // 256 senders on 2 cores
	b.ResetTimer()
	b.RunParallel(func(pb *testing.PB) {
		for pb.Next() {
			i := seq.Add(1)
			from, to := cs[i%users], cs[(i*7+3)%users]
			body := fmt.Sprintf(`{"to":%q,"content":"hello, this is a benchmark message","client_msg_id":"b%d"}`, to.ID, i)
			req, _ := http.NewRequest("POST", n.URL()+"/v1/messages", bytes.NewReader([]byte(body)))
			req.Header.Set("Authorization", "Bearer "+from.Token)
			resp, err := hc.Do(req)
			if err != nil {
				b.Error(err)
				return
			}
			_, _ = io.Copy(io.Discard, resp.Body)
			resp.Body.Close()
			if resp.StatusCode != http.StatusCreated {
				b.Errorf("status %d", resp.StatusCode)
				return
			}
		}
	})
	b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "sends/s")
}

// BenchmarkHTTPPollSync measures GET /v1/poll pages of 100 events (the
// resume path every transport shares) with 8 concurrent readers.
func BenchmarkHTTPPollSync(b *testing.B) {
	n := testkit.Start(b)
	a, r := testkit.Signup(b, n.URL(), "src"), testkit.Signup(b, n.URL(), "dst")
	for i := 0; i < 1000; i++ {
		a.Send(r.ID, "hello, this is a benchmark message", "")
	}
	tr := &http.Transport{MaxIdleConnsPerHost: 64}
	hc := &http.Client{Transport: tr}
	defer tr.CloseIdleConnections()
	var seq atomic.Int64
	b.SetParallelism(4)
	b.ResetTimer()
	b.RunParallel(func(pb *testing.PB) {
		for pb.Next() {
			cursor := seq.Add(1) % 900
			req, _ := http.NewRequest("GET", fmt.Sprintf("%s/v1/poll?cursor=%d&limit=100", n.URL(), cursor), nil)
			req.Header.Set("Authorization", "Bearer "+r.Token)
			resp, err := hc.Do(req)
			if err != nil {
				b.Error(err)
				return
			}
			_, _ = io.Copy(io.Discard, resp.Body)
			resp.Body.Close()
			if resp.StatusCode != http.StatusOK {
				b.Errorf("status %d", resp.StatusCode)
				return
			}
		}
	})
	b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "polls/s")
	b.ReportMetric(float64(b.N*100)/b.Elapsed().Seconds(), "events/s")
}
