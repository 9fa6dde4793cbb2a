package transports_test

import (
	"context"
	"fmt"
	"net/http"
	"net/http/httptest"
	"net/http/httputil"
	"net/url"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/chatgate/chatgate/client"
	"github.com/chatgate/chatgate/internal/testkit"
)

// proxy is a real HTTP reverse proxy in front of the node that can refuse
// what bad middleboxes refuse: WebSocket upgrades (it strips them, as many
// do) and event streams.
func proxy(t *testing.T, n *testkit.Node, noUpgrade, noSSE bool) *httptest.Server {
	target, _ := url.Parse(n.URL())
	rp := httputil.NewSingleHostReverseProxy(target)
	rp.FlushInterval = -1
	p := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if noUpgrade {
			r.Header.Del("Upgrade")
			r.Header.Del("Connection")
		}
		if noSSE && strings.HasSuffix(r.URL.Path, "/sse") {
			http.Error(w, "streaming not allowed by policy", http.StatusForbidden)
			return
		}
		rp.ServeHTTP(w, r)
	}))
	t.Cleanup(p.Close)
	return p
}

func TestFallbackThroughProxy(t *testing.T) {
	n := testkit.Start(t, testkit.WithStreamTimeouts(time.Second, time.Second))
	cases := []struct {
		name             string
		noUpgrade, noSSE bool
		want             string
	}{
		{"proxy strips websocket upgrades", true, false, client.TransportSSE},
		{"proxy also refuses event streams", true, true, client.TransportLongPolling},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			p := proxy(t, n, tc.noUpgrade, tc.noSSE)
			h := &harness{t: t, nodes: []*testkit.Node{n}, tr: tc.want}
			a := h.user("fb_a")
			// b reaches the server only through the proxy.
			b := client.New(p.URL, client.WithBackoff(20*time.Millisecond, 200*time.Millisecond))
			defer b.CloseIdleConnections()
			_, err := b.Signup(context.Background(), client.SignupInput{Username: testkit.UniqueName("fb_b"), Password: "correct horse"})
			require.NoError(t, err)
			for i := 0; i < 3; i++ {
				send(t, a, b.UserID(), fmt.Sprint("before ", i))
			}
			r := &recorder{h: h, events: make(chan client.Event, 1000)}
			opts := h.options("", 0, r)
			opts.Transports = nil // the default order: websocket, sse, longpolling, polling
			// negotiate names the server itself; behind a proxy the client
			// must stay on the proxy's address.
			opts.Negotiation = &client.Negotiation{Server: p.URL, Transports: client.DefaultTransports, HeartbeatInterval: time.Second}
			conn, err := b.Connect(context.Background(), opts)
			require.NoError(t, err)
			defer conn.Close()
			r.conn = conn
			require.Equal(t, tc.want, conn.Transport(), "fell back to the next transport the proxy carries")
			for i := 0; i < 3; i++ {
				send(t, a, b.UserID(), fmt.Sprint("after ", i))
			}
			evs := r.messages(6)
			requireSeqs(t, evs, 1, "before 0", "before 1", "before 2", "after 0", "after 1", "after 2")
			r.quiet()
		})
	}
}
