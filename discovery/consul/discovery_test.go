package consul_test

import (
	"bytes"
	"context"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/hashicorp/consul/api"
	"github.com/stretchr/testify/require"

	"github.com/chatgate/chatgate/discovery"
	"github.com/chatgate/chatgate/discovery/consul"
	"github.com/chatgate/chatgate/internal/consultest"
)

// checkInterval is Consul's minimum check interval.
const checkInterval = time.Second

// slack covers what follows a failing check: the agent's sync to the
// catalogue and the blocking query's answer (milliseconds on an idle
// machine; generous for a busy, shared one).
const slack = 1500 * time.Millisecond

// fakeNode is a chat node as Consul sees it: an HTTP server whose /readyz
// answers 200 or 503 on demand.
type fakeNode struct {
	srv   *httptest.Server
	ready atomic.Bool
	mu    sync.Mutex
	hits  []time.Time // when /readyz was called
}

func newFakeNode(t *testing.T) *fakeNode {
	n := &fakeNode{}
	n.ready.Store(true)
	n.srv = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path != "/readyz" {
			http.NotFound(w, r)
			return
		}
		n.mu.Lock()
		n.hits = append(n.hits, time.Now())
		n.mu.Unlock()
		if n.ready.Load() {
			w.WriteHeader(http.StatusOK)
			return
		}
		w.WriteHeader(http.StatusServiceUnavailable)
	}))
	t.Cleanup(n.srv.Close)
	return n
}

func (n *fakeNode) URL() string { return n.srv.URL }

func (n *fakeNode) readyzHits() []time.Time {
	n.mu.Lock()
	defer n.mu.Unlock()
	return append([]time.Time(nil), n.hits...)
}

func testLogger(t testing.TB) *slog.Logger {
	return slog.New(slog.NewTextHandler(tWriter{t}, &slog.HandlerOptions{Level: slog.LevelWarn}))
}

type tWriter struct{ t testing.TB }

func (w tWriter) Write(p []byte) (int, error) {
	w.t.Log(string(bytes.TrimRight(p, "\n")))
	return len(p), nil
}

// eventually polls cond until it holds and returns how long that took; it
// fails the test after within.
func eventually(t *testing.T, within time.Duration, what string, cond func() bool) time.Duration {
	t.Helper()
	start := time.Now()
	for !cond() {
		if time.Since(start) > within {
			t.Fatalf("%s: not within %s", what, within)
		}
		time.Sleep(20 * time.Millisecond)
	}
	return time.Since(start)
}

func register(t *testing.T, c *api.Client, service, id, zone string, n *fakeNode) *consul.Registration {
	t.Helper()
	reg, err := consul.Register(context.Background(), c, consul.Service{
		Name: service, ID: id, URL: n.URL(), Zone: zone,
		CheckInterval: checkInterval, Logger: testLogger(t),
	})
	require.NoError(t, err)
	t.Cleanup(func() { _ = reg.Deregister(context.Background()) })
	return reg
}

var self = discovery.Server{ID: "self", URL: "http://self.example:8080"}

func newDiscovery(t *testing.T, c *api.Client, service, zone string) *consul.Discovery {
	t.Helper()
	d, err := consul.New(context.Background(), c, consul.Config{
		Self: self, Zone: zone, Service: service, Logger: testLogger(t),
	})
	require.NoError(t, err)
	t.Cleanup(func() { require.NoError(t, d.Close()) })
	return d
}

// recommend asks d for the server of a client naming zone (none if empty).
func recommend(t *testing.T, d *consul.Discovery, zone string) string {
	t.Helper()
	target := "/v1/negotiate"
	if zone != "" {
		target += "?zone=" + zone
	}
	s, err := d.Recommend(context.Background(), httptest.NewRequest(http.MethodGet, target, nil))
	require.NoError(t, err)
	return s.ID
}

// loads returns the load d sees per node id.
func loads(d *consul.Discovery) map[string]int {
	out := map[string]int{}
	for _, n := range d.Nodes() {
		out[n.ID] = n.Load
	}
	return out
}

func equalLoads(d *consul.Discovery, want map[string]int) func() bool {
	return func() bool {
		got := loads(d)
		if len(got) != len(want) {
			return false
		}
		for k, v := range want {
			if got[k] != v {
				return false
			}
		}
		return true
	}
}

func TestDiscovery(t *testing.T) {
	// Each starts its own agent (a few seconds); run them side by side.
	t.Parallel()
	agent := consultest.Start(t)
	c := agent.Client()

	t.Run("RecommendsLeastLoadedHealthyNodeInClientZone", func(t *testing.T) {
		t.Parallel()
		const svc = "chatgate-zones"
		a, b, w := newFakeNode(t), newFakeNode(t), newFakeNode(t)
		ra := register(t, c, svc, "east-a", "east", a)
		rb := register(t, c, svc, "east-b", "east", b)
		rw := register(t, c, svc, "west-1", "west", w)
		ra.SetLoad(5)
		rb.SetLoad(2)
		rw.SetLoad(0)
		d := newDiscovery(t, c, svc, "east")
		// A new check runs within one interval; a load update within ~1 s.
		eventually(t, checkInterval+2*time.Second+slack, "all three nodes healthy with their loads",
			equalLoads(d, map[string]int{"east-a": 5, "east-b": 2, "west-1": 0}))
		for _, s := range d.Nodes() {
			require.Contains(t, []string{a.URL(), b.URL(), w.URL()}, s.URL)
		}

		require.Equal(t, "east-b", recommend(t, d, "east"), "least loaded in the client's zone, not the least loaded overall")
		require.Equal(t, "west-1", recommend(t, d, "west"))
		require.Equal(t, "east-b", recommend(t, d, ""), "no zone named: this node's zone")
		req := httptest.NewRequest(http.MethodGet, "/v1/negotiate", nil)
		req.Header.Set(consul.ZoneHeader, "west")
		s, err := d.Recommend(context.Background(), req)
		require.NoError(t, err)
		require.Equal(t, "west-1", s.ID, "zone from the header")
		require.Equal(t, "west-1", recommend(t, d, "north"), "zone without nodes: least loaded anywhere")

		// b fails its check: it must stop being recommended within the
		// check interval.
		b.ready.Store(false)
		took := eventually(t, checkInterval+slack, "failing east-b no longer recommended", func() bool {
			return recommend(t, d, "east") == "east-a"
		})
		t.Logf("failing node dropped after %s (interval %s)", took, checkInterval)
		require.NotContains(t, loads(d), "east-b")

		// SetLoad moves clients: west-1 gets busier than east-a, so a
		// client of a zone without nodes now goes east.
		rw.SetLoad(9)
		eventually(t, 2*time.Second+slack, "west-1's new load seen", func() bool { return loads(d)["west-1"] == 9 })
		require.Equal(t, "east-a", recommend(t, d, "north"))

		// b recovers and is recommended again.
		b.ready.Store(true)
		eventually(t, checkInterval+slack, "recovered east-b recommended", func() bool {
			return recommend(t, d, "east") == "east-b"
		})

		// Deregister removes b from every view at once.
		require.NoError(t, rb.Deregister(context.Background()))
		require.NoError(t, rb.Deregister(context.Background()), "a second Deregister does nothing")
		eventually(t, slack, "deregistered east-b gone", func() bool {
			_, ok := loads(d)["east-b"]
			return !ok
		})
		require.Equal(t, "east-a", recommend(t, d, "east"))
		svcs, err := c.Agent().ServicesWithFilter(`ID == "east-b"`)
		require.NoError(t, err)
		require.Empty(t, svcs, "service removed from the agent")

		// Nothing healthy: this node itself.
		a.ready.Store(false)
		w.ready.Store(false)
		eventually(t, checkInterval+slack, "no healthy node: self", func() bool {
			return recommend(t, d, "east") == self.ID && recommend(t, d, "west") == self.ID
		})
	})

	t.Run("EqualLoadsAreSpreadAtRandom", func(t *testing.T) {
		t.Parallel()
		const svc = "chatgate-ties"
		r1 := register(t, c, svc, "tie-1", "z", newFakeNode(t))
		r2 := register(t, c, svc, "tie-2", "z", newFakeNode(t))
		r1.SetLoad(3)
		r2.SetLoad(3)
		d := newDiscovery(t, c, svc, "z")
		eventually(t, checkInterval+2*time.Second+slack, "both nodes healthy",
			equalLoads(d, map[string]int{"tie-1": 3, "tie-2": 3}))
		seen := map[string]int{}
		for i := 0; i < 400; i++ {
			seen[recommend(t, d, "z")]++
		}
		// Each has probability 1/2; fewer than 100 of 400 is a 1e-24 event.
		require.Greater(t, seen["tie-1"], 100, "%v", seen)
		require.Greater(t, seen["tie-2"], 100, "%v", seen)
	})

	t.Run("LoadUpdatesKeepCheck", func(t *testing.T) {
		t.Parallel()
		const svc = "chatgate-load"
		n := newFakeNode(t)
		reg := register(t, c, svc, "busy", "z", n)
		d := newDiscovery(t, c, svc, "z")
		eventually(t, checkInterval+slack, "node healthy", func() bool { return recommend(t, d, "z") == "busy" })

		// Change the load all the time, as connects and disconnects do,
		// while watching the check: it must stay passing, and its timer
		// must keep its rhythm (Consul restarts the timer of a check that
		// is registered again; see publishLoad).
		stop := make(chan struct{})
		churned := make(chan struct{})
		go func() {
			defer close(churned)
			for i := 1; ; i++ {
				select {
				case <-stop:
					return
				case <-time.After(20 * time.Millisecond):
					reg.SetLoad(i)
				}
			}
		}()
		defer func() {
			close(stop)
			<-churned
		}()
		hitsBefore := len(n.readyzHits())
		published := map[int]bool{}
		end := time.Now().Add(4 * time.Second)
		for time.Now().Before(end) {
			checks, err := c.Agent().ChecksWithFilter(`CheckID == "service:busy"`)
			require.NoError(t, err)
			require.Len(t, checks, 1)
			require.Equal(t, api.HealthPassing, checks["service:busy"].Status, "check status changed by a load update")
			require.Equal(t, "busy", recommend(t, d, "z"), "node left the healthy list during load updates")
			published[loads(d)["busy"]] = true
			time.Sleep(25 * time.Millisecond)
		}
		require.GreaterOrEqual(t, len(published), 3, "load updates published: %v", published)
		require.LessOrEqual(t, len(published), 7, "load written at most about once a second: %v", published)
		hits := n.readyzHits()[hitsBefore:]
		require.GreaterOrEqual(t, len(hits), 3)
		for i := 1; i < len(hits); i++ {
			gap := hits[i].Sub(hits[i-1])
			require.InDelta(t, checkInterval.Seconds(), gap.Seconds(), 0.4, "check timer disturbed: gap %s between /readyz calls", gap)
		}
		for _, s := range d.Nodes() {
			require.Equal(t, n.URL(), s.URL)
		}

		// And a failing node is still noticed within the interval while the
		// load keeps changing.
		n.ready.Store(false)
		eventually(t, checkInterval+slack, "failing node dropped during load updates", func() bool {
			return recommend(t, d, "z") == self.ID
		})
	})
}

func TestDiscovery_ConsulUnreachable(t *testing.T) {
	t.Parallel()
	agent := consultest.Start(t)
	c := agent.Client()
	register(t, c, consul.ServiceName, "only", "z", newFakeNode(t))
	d, err := consul.New(context.Background(), c, consul.Config{
		Self: self, Zone: "z", MaxStale: time.Second, Logger: testLogger(t),
	})
	require.NoError(t, err)
	t.Cleanup(func() { require.NoError(t, d.Close()) })
	eventually(t, checkInterval+slack, "node healthy", func() bool { return recommend(t, d, "z") == "only" })

	// Recommend answers from the local view: losing Consul changes nothing
	// at first, then, once the view is older than MaxStale, only this node
	// is recommended.
	stopping := time.Now()
	agent.Stop()
	stopped := time.Now()
	require.Equal(t, "only", recommend(t, d, "z"))
	eventually(t, time.Second+slack, "self after MaxStale", func() bool { return recommend(t, d, "z") == self.ID })
	require.GreaterOrEqual(t, time.Since(stopping), time.Second)
	t.Logf("self recommended %s after the agent stopped", time.Since(stopped))
}

func TestRegister_Validates(t *testing.T) {
	for _, s := range []consul.Service{
		{NodeID: 1},
		{NodeID: 1, URL: "10.0.0.1:8080"},
		{NodeID: 1, URL: "ftp://10.0.0.1"},
		{NodeID: 2000, URL: "http://10.0.0.1"},
	} {
		_, err := consul.Register(context.Background(), nil, s)
		require.Error(t, err, "%+v", s)
	}
}

func TestClientZone(t *testing.T) {
	r := httptest.NewRequest(http.MethodGet, "/v1/negotiate?zone=eu", nil)
	r.Header.Set(consul.ZoneHeader, "us")
	require.Equal(t, "eu", consul.ClientZone(r, "home"))
	r = httptest.NewRequest(http.MethodGet, "/v1/negotiate", nil)
	r.Header.Set(consul.ZoneHeader, "us")
	require.Equal(t, "us", consul.ClientZone(r, "home"))
	require.Equal(t, "home", consul.ClientZone(httptest.NewRequest(http.MethodGet, "/", nil), "home"))
}
