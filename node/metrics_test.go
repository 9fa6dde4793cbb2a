package node_test

import (
	"bufio"
	"context"
	"io"
	"net/http"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/chatgate/chatgate/core"
	"github.com/chatgate/chatgate/internal/testkit"
	"github.com/chatgate/chatgate/node"
)

// scrape reads GET url and returns each sample line's value by its series
// ("name{labels}" as exposed).
func scrape(t *testing.T, url string) map[string]float64 {
	t.Helper()
	resp, err := http.Get(url)
	require.NoError(t, err)
	defer resp.Body.Close()
	require.Equal(t, http.StatusOK, resp.StatusCode)
	require.Contains(t, resp.Header.Get("Content-Type"), "text/plain")
	out := map[string]float64{}
	sc := bufio.NewScanner(resp.Body)
	sc.Buffer(nil, 1<<20)
	for sc.Scan() {
		line := sc.Text()
		if line == "" || strings.HasPrefix(line, "#") {
			continue
		}
		i := strings.LastIndexByte(line, ' ')
		v, err := strconv.ParseFloat(line[i+1:], 64)
		require.NoError(t, err, line)
		out[line[:i]] = v
	}
	require.NoError(t, sc.Err())
	return out
}

// /metrics exposes what SPEC lists — connections by transport, events
// delivered, sends and their latency, store commits, rate-limited
// requests, presence changes — with route patterns, never paths with ids.
func TestMetrics(t *testing.T) {
	n := testkit.Start(t, func(c *node.Config) {
		c.Limits.LoginFailuresPerAccount = core.Rate{N: 1, Per: time.Hour}
	})
	alice, bob := testkit.Signup(t, n.URL(), "met-a"), testkit.Signup(t, n.URL(), "met-b")
	testkit.Befriend(t, alice, bob)

	// Bob holds an SSE stream while alice sends three messages.
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	req, _ := http.NewRequestWithContext(ctx, "GET", n.URL()+"/v1/sse", nil)
	req.Header.Set("Authorization", "Bearer "+bob.Token)
	resp, err := http.DefaultClient.Do(req)
	require.NoError(t, err)
	defer resp.Body.Close()
	for i := range 3 {
		send(t, alice, map[string]any{"to": bob.ID, "content": "counted", "client_msg_id": "c" + strconv.Itoa(i)})
	}
	// Read until the third message has arrived: delivered events counted.
	br := bufio.NewReader(resp.Body)
	for got := 0; got < 3; {
		line, err := br.ReadString('\n')
		require.NoError(t, err)
		if strings.HasPrefix(line, "data: ") && strings.Contains(line, `"counted"`) {
			got++
		}
	}
	alice.PollAll(0)
	r := testkit.NewClient(t, n.URL()).Do("POST", "/v1/auth/login", map[string]any{"username": username(alice), "password": "wrong-password"})
	require.Equal(t, http.StatusUnauthorized, r.Status)
	r = testkit.NewClient(t, n.URL()).Do("POST", "/v1/auth/login", map[string]any{"username": username(alice), "password": "wrong-password"})
	requireError(t, r, http.StatusTooManyRequests, "rate_limited")
	// A search waits for the index: the three messages are counted then.
	requireStatus(t, bob.Do("GET", "/v1/search?q=counted", nil), http.StatusOK)

	m := scrape(t, n.URL()+"/metrics")
	require.Equal(t, 3.0, m[`chatgate_search_indexed_messages_total`])
	require.Equal(t, 1.0, m[`chatgate_connections{transport="sse"}`])
	require.Equal(t, 3.0, m[`chatgate_sends_total{result="ok"}`])
	require.Equal(t, 3.0, m[`chatgate_send_duration_seconds_count`])
	require.GreaterOrEqual(t, m[`chatgate_events_delivered_total{transport="sse"}`], 3.0)
	require.GreaterOrEqual(t, m[`chatgate_events_delivered_total{transport="polling"}`], 3.0)
	require.GreaterOrEqual(t, m[`chatgate_store_commit_duration_seconds_count`], 1.0)
	require.GreaterOrEqual(t, m[`chatgate_store_commit_batch_size_sum`], 3.0)
	require.Equal(t, 1.0, m[`chatgate_rate_limited_total{limit="login_account"}`])
	require.GreaterOrEqual(t, m[`chatgate_presence_changes_total{status="online"}`], 1.0)
	require.Equal(t, 3.0, m[`chatgate_http_requests_total{code="201",method="POST",route="/v1/messages"}`]+
		m[`chatgate_http_requests_total{code="200",method="POST",route="/v1/messages"}`])
	require.Contains(t, m, `go_goroutines`)
	require.Contains(t, m, `process_open_fds`)
	for series := range m {
		require.NotContains(t, series, alice.ID, "a series names an id: %s", series)
		require.NotContains(t, series, bob.ID, "a series names an id: %s", series)
	}

	cancel()
	require.Eventually(t, func() bool {
		return scrape(t, n.URL()+"/metrics")[`chatgate_connections{transport="sse"}`] == 0
	}, 10*time.Second, 10*time.Millisecond, "a closed stream is no longer counted")
}

// With -metrics-addr, /metrics moves off the public address.
func TestMetricsAddr(t *testing.T) {
	n := testkit.Start(t, func(c *node.Config) { c.MetricsAddr = "127.0.0.1:0" })
	resp, err := http.Get(n.URL() + "/metrics")
	require.NoError(t, err)
	_, _ = io.Copy(io.Discard, resp.Body)
	resp.Body.Close()
	require.Equal(t, http.StatusNotFound, resp.StatusCode)
	m := scrape(t, "http://"+n.MetricsAddr()+"/metrics")
	require.Contains(t, m, `go_goroutines`)
}
