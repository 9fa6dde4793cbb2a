package client_test

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"net/http/httputil"
	"net/url"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
	"go.uber.org/goleak"

	"github.com/chatgate/chatgate/client"
	"github.com/chatgate/chatgate/internal/testkit"
)

// serverGoroutines are the node's, not the client's: buntdb's background
// manager notices Close only at its next one-second tick.
var serverGoroutines = []goleak.Option{
	goleak.IgnoreTopFunction("github.com/tidwall/buntdb.(*DB).backgroundManager"),
}

func TestMain(m *testing.M) { goleak.VerifyTestMain(m, serverGoroutines...) }

// waitLimit bounds every wait of a test; it is a failure deadline, never
// a synchronisation delay.
const waitLimit = 20 * time.Second

func ctxT(t *testing.T) context.Context {
	ctx, cancel := context.WithTimeout(context.Background(), waitLimit)
	t.Cleanup(cancel)
	return ctx
}

// fast is the backoff of test clients, so fault tests run quickly.
var fast = client.WithBackoff(time.Millisecond, 20*time.Millisecond)

// newUser signs a user up on the node and returns a client of base (the
// node or a proxy in front of it) logged in as that user's device, plus
// the testkit client to drive the node directly.
func newUser(t *testing.T, node, base string, opts ...client.Option) (*client.Client, *testkit.Client) {
	t.Helper()
	tk := testkit.Signup(t, node, "cl")
	c := client.New(base, append([]client.Option{client.WithToken(tk.Token, tk.ID), fast}, opts...)...)
	t.Cleanup(c.CloseIdleConnections)
	return c, tk
}

// recorder collects the events a Conn delivers and checks, as they come,
// that durable ones arrive exactly once and in seq order.
type recorder struct {
	mu       sync.Mutex
	start    uint64 // the Connect cursor
	last     uint64
	durable  []client.Event
	other    []client.Event
	problems []string
	states   []client.State
	notify   chan struct{}
}

func newRecorder(cursor uint64) *recorder {
	return &recorder{start: cursor, last: cursor, notify: make(chan struct{}, 1)}
}

func (r *recorder) onEvent(e client.Event) {
	r.mu.Lock()
	if e.Durable() {
		if e.Seq != r.last+1 {
			r.problems = append(r.problems, fmt.Sprintf("seq %d after %d", e.Seq, r.last))
		}
		r.last = e.Seq
		r.durable = append(r.durable, e)
	} else {
		r.other = append(r.other, e)
	}
	r.mu.Unlock()
	r.poke()
}

func (r *recorder) onState(s client.State) {
	r.mu.Lock()
	r.states = append(r.states, s)
	r.mu.Unlock()
	r.poke()
}

func (r *recorder) poke() {
	select {
	case r.notify <- struct{}{}:
	default:
	}
}

func (r *recorder) options(o client.ConnectOptions) client.ConnectOptions {
	o.Cursor, o.OnEvent, o.OnState = r.start, r.onEvent, r.onState
	return o
}

// waitFor waits until cond (called under the lock) holds.
func (r *recorder) waitFor(t *testing.T, what string, cond func(r *recorder) bool) {
	t.Helper()
	deadline := time.NewTimer(waitLimit)
	defer deadline.Stop()
	for {
		r.mu.Lock()
		ok := cond(r)
		r.mu.Unlock()
		if ok {
			return
		}
		select {
		case <-r.notify:
		case <-deadline.C:
			r.mu.Lock()
			defer r.mu.Unlock()
			t.Fatalf("timed out waiting for %s (durable %d, other %d, problems %v)", what, len(r.durable), len(r.other), r.problems)
		}
	}
}

func (r *recorder) waitDurable(t *testing.T, n int) []client.Event {
	t.Helper()
	r.waitFor(t, fmt.Sprintf("%d durable events", n), func(r *recorder) bool { return len(r.durable) >= n })
	return r.snapshot()
}

func (r *recorder) snapshot() []client.Event {
	r.mu.Lock()
	defer r.mu.Unlock()
	return append([]client.Event(nil), r.durable...)
}

func (r *recorder) check(t *testing.T) {
	t.Helper()
	r.mu.Lock()
	defer r.mu.Unlock()
	require.Empty(t, r.problems, "durable events out of order or repeated")
}

// proxy sits between a client and a node. Its handle function decides
// what to do with each request; forward passes it on unchanged. It can
// also cut every connection it holds (streams included).
type proxy struct {
	*httptest.Server
	t      *testing.T
	rp     *httputil.ReverseProxy
	tr     *http.Transport
	ln     *trackingListener
	mu     sync.Mutex
	count  map[string]int // requests per path
	handle func(p *proxy, w http.ResponseWriter, r *http.Request)
}

func newProxy(t *testing.T, target string, handle func(p *proxy, w http.ResponseWriter, r *http.Request)) *proxy {
	u, err := url.Parse(target)
	require.NoError(t, err)
	p := &proxy{t: t, count: map[string]int{}, handle: handle, tr: http.DefaultTransport.(*http.Transport).Clone()}
	p.rp = httputil.NewSingleHostReverseProxy(u)
	p.rp.Transport = p.tr
	p.rp.ErrorLog = nil
	p.rp.ErrorHandler = func(w http.ResponseWriter, r *http.Request, err error) { w.WriteHeader(http.StatusBadGateway) }
	p.Server = httptest.NewUnstartedServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		p.mu.Lock()
		p.count[r.URL.Path]++
		p.mu.Unlock()
		if p.handle == nil {
			p.forward(w, r)
			return
		}
		p.handle(p, w, r)
	}))
	p.ln = &trackingListener{Listener: p.Server.Listener, conns: map[net.Conn]struct{}{}}
	p.Server.Listener = p.ln
	p.Start()
	t.Cleanup(func() {
		p.ln.killAll()
		p.Close()
		p.tr.CloseIdleConnections()
	})
	return p
}

func (p *proxy) requests(path string) int {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.count[path]
}

func (p *proxy) forward(w http.ResponseWriter, r *http.Request) { p.rp.ServeHTTP(w, r) }

// roundTrip forwards r and returns the node's answer without sending it.
func (p *proxy) roundTrip(r *http.Request) *httptest.ResponseRecorder {
	rec := httptest.NewRecorder()
	p.rp.ServeHTTP(rec, r)
	return rec
}

// cut drops the client's connection without an answer.
func cut(w http.ResponseWriter) {
	conn, _, err := http.NewResponseController(w).Hijack()
	if err == nil {
		conn.Close()
	}
}

func (p *proxy) killAll() { p.ln.killAll() }

type trackingListener struct {
	net.Listener
	mu    sync.Mutex
	conns map[net.Conn]struct{}
}

func (l *trackingListener) Accept() (net.Conn, error) {
	c, err := l.Listener.Accept()
	if err == nil {
		l.mu.Lock()
		l.conns[c] = struct{}{}
		l.mu.Unlock()
	}
	return c, err
}

func (l *trackingListener) killAll() {
	l.mu.Lock()
	defer l.mu.Unlock()
	for c := range l.conns {
		c.Close()
		delete(l.conns, c)
	}
}

// bodyField reads one string field of a JSON request body and restores
// the body for forwarding.
func bodyField(t *testing.T, r *http.Request, field string) string {
	b, err := io.ReadAll(r.Body)
	require.NoError(t, err)
	r.Body = io.NopCloser(bytes.NewReader(b))
	var m map[string]any
	_ = json.Unmarshal(b, &m)
	s, _ := m[field].(string)
	return s
}

func requireAPIError(t *testing.T, err error, status int, code string) {
	t.Helper()
	var ae *client.APIError
	require.True(t, errors.As(err, &ae), "want *APIError, got %T %v", err, err)
	require.Equal(t, status, ae.Status, "status of %v", ae)
	require.Equal(t, code, ae.Code, "code of %v", ae)
}
