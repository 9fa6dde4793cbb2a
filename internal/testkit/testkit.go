// Package testkit starts real chatgate nodes for tests and talks to them
// over their real HTTP API.
package testkit

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"net/netip"
	"os"
	"sync/atomic"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/chatgate/chatgate/core"
	"github.com/chatgate/chatgate/node"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
)

// Node is a running node started by a test.
type Node struct {
	*node.Node
	Dir string
	cfg node.Config
}

// Option changes a node's configuration before it starts.
type Option func(*node.Config)

// WithOfflineAfter sets the presence window (heartbeat is a fifth of it).
func WithOfflineAfter(d time.Duration) Option {
	return func(c *node.Config) { c.OfflineAfter, c.HeartbeatInterval = d, d/5 }
}

// WithPushWebhook sends pushes to url signed with secret.
func WithPushWebhook(url, secret string) Option {
	return func(c *node.Config) { c.PushWebhook, c.PushSecret = url, secret }
}

// WithStreamTimeouts sets the stream heartbeat and write timeout.
func WithStreamTimeouts(heartbeat, write time.Duration) Option {
	return func(c *node.Config) { c.StreamHeartbeat, c.StreamWriteTimeout = heartbeat, write }
}

// WithCluster makes the node a cluster node: store is a postgres:// URL,
// bus a nats:// URL, consul an agent's HOST:PORT; empty ones keep the
// single-node default.
func WithCluster(store, bus, consul string) Option {
	return func(c *node.Config) { c.Store, c.Bus, c.Consul = store, bus, consul }
}

// WithNodeID sets the snowflake node id; -1 takes one from Consul.
func WithNodeID(id int) Option {
	return func(c *node.Config) {
		if id < 0 {
			c.NodeIDAuto = true
			return
		}
		c.NodeID = id
	}
}

// WithZone sets the node's discovery zone.
func WithZone(z string) Option { return func(c *node.Config) { c.Zone = z } }

// WithCheckInterval sets Consul's /readyz check interval.
func WithCheckInterval(d time.Duration) Option { return func(c *node.Config) { c.CheckInterval = d } }

// WithClock sets the id generator's clock (to skew it).
func WithClock(now func() time.Time) Option { return func(c *node.Config) { c.Clock = now } }

// WithLimits sets the rate limits.
func WithLimits(l core.Limits) Option { return func(c *node.Config) { c.Limits = l } }

// WithTrustedProxies names the peers whose X-Forwarded-For is believed.
func WithTrustedProxies(p ...netip.Prefix) Option {
	return func(c *node.Config) { c.TrustedProxies = p }
}

// WithAddr sets the listen address (to restart a node on the same port).
func WithAddr(addr string) Option { return func(c *node.Config) { c.Addr = addr } }

// WithDir uses dir as data directory (to restart on the same data).
func WithDir(dir string) Option { return func(c *node.Config) { c.DataDir = dir } }

// Logger returns a logger that writes to the test log at warn level and
// above, so a passing test stays quiet.
func Logger(t testing.TB) *slog.Logger {
	return slog.New(slog.NewTextHandler(tWriter{t}, &slog.HandlerOptions{Level: slog.LevelWarn}))
}

type tWriter struct{ t testing.TB }

func (w tWriter) Write(p []byte) (int, error) {
	w.t.Log(string(bytes.TrimRight(p, "\n")))
	return len(p), nil
}

// Start starts a node on 127.0.0.1:0 with a fresh data directory (or the
// one WithDir names) and stops it when the test ends.
func Start(t testing.TB, opts ...Option) *Node {
	t.Helper()
	cfg := node.Defaults()
	cfg.Addr = "127.0.0.1:0"
	cfg.DataDir = t.TempDir()
	cfg.Logger = Logger(t)
	for _, o := range opts {
		o(&cfg)
	}
	n, err := node.Start(cfg)
	require.NoError(t, err)
	tn := &Node{Node: n, Dir: cfg.DataDir, cfg: cfg}
	t.Cleanup(func() { tn.Stop(t) })
	return tn
}

// Stop shuts the node down (idempotent).
func (n *Node) Stop(t testing.TB) {
	if n.Node == nil {
		return
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	require.NoError(t, n.Shutdown(ctx))
	n.Node = nil
}

// Restart stops the node and starts a new one on the same data directory
// and address family (a new port).
func (n *Node) Restart(t testing.TB) {
	t.Helper()
	n.Stop(t)
	nn, err := node.Start(n.cfg)
	require.NoError(t, err)
	n.Node = nn
}

// Client talks to a node's HTTP API as one device.
type Client struct {
	T     testing.TB
	Base  string
	Token string
	User  map[string]any
	ID    string // user id
	HTTP  *http.Client
}

// Response is a decoded API answer.
type Response struct {
	Status int
	Header http.Header
	Body   []byte
}

// JSON decodes the body into a map.
func (r Response) JSON() map[string]any {
	var m map[string]any
	_ = json.Unmarshal(r.Body, &m)
	return m
}

// ErrorCode is the error.code of an error answer, or "".
func (r Response) ErrorCode() string {
	if e, ok := r.JSON()["error"].(map[string]any); ok {
		s, _ := e["code"].(string)
		return s
	}
	return ""
}

// Decode unmarshals the body into v.
func (r Response) Decode(t testing.TB, v any) {
	t.Helper()
	require.NoError(t, json.Unmarshal(r.Body, v), "body: %s", r.Body)
}

// NewClient returns an anonymous client of base.
func NewClient(t testing.TB, base string) *Client {
	return &Client{T: t, Base: base, HTTP: &http.Client{Timeout: 30 * time.Second}}
}

// Do sends a request; body may be nil, a []byte/string sent as is, or a
// value encoded as JSON.
func (c *Client) Do(method, path string, body any) Response {
	c.T.Helper()
	r, err := c.TryDo(method, path, body)
	require.NoError(c.T, err)
	return r
}

var userSeq atomic.Int64

// UniqueName returns a username not used before in this process.
func UniqueName(prefix string) string {
	return fmt.Sprintf("%s%d_%d", prefix, os.Getpid()%10000, userSeq.Add(1))
}

// Signup creates a user with a unique username and returns a client logged
// in as it.
func Signup(t testing.TB, base, prefix string) *Client {
	t.Helper()
	c := NewClient(t, base)
	name := UniqueName(prefix)
	r := c.Do("POST", "/v1/auth/signup", map[string]any{"username": name, "password": "correct horse", "display_name": prefix})
	require.Equal(t, http.StatusCreated, r.Status, "signup: %s", r.Body)
	var out struct {
		User  map[string]any `json:"user"`
		Token string         `json:"token"`
	}
	r.Decode(t, &out)
	c.Token, c.User, c.ID = out.Token, out.User, out.User["id"].(string)
	return c
}

// Befriend makes a and b mutual friends.
func Befriend(t testing.TB, a, b *Client) {
	t.Helper()
	require.Equal(t, http.StatusOK, a.Do("PUT", "/v1/friends/"+b.ID, nil).Status)
	require.Equal(t, http.StatusOK, b.Do("PUT", "/v1/friends/"+a.ID, nil).Status)
}

// Send posts a 1:1 message and returns the message object.
func (c *Client) Send(to, content, clientMsgID string) map[string]any {
	c.T.Helper()
	r := c.Do("POST", "/v1/messages", map[string]any{"to": to, "content": content, "client_msg_id": clientMsgID})
	require.Equal(c.T, http.StatusCreated, r.Status, "send: %s", r.Body)
	return r.JSON()["message"].(map[string]any)
}

// PollPage is a decoded /v1/poll answer.
type PollPage struct {
	Events  []map[string]any `json:"events"`
	Cursor  uint64           `json:"cursor"`
	HasMore bool             `json:"has_more"`
}

// Poll reads one page of events after cursor.
func (c *Client) Poll(cursor uint64) PollPage {
	c.T.Helper()
	r := c.Do("GET", fmt.Sprintf("/v1/poll?cursor=%d", cursor), nil)
	require.Equal(c.T, http.StatusOK, r.Status, "poll: %s", r.Body)
	var p PollPage
	r.Decode(c.T, &p)
	return p
}

// PollAll reads every event after cursor, following has_more.
func (c *Client) PollAll(cursor uint64) ([]map[string]any, uint64) {
	c.T.Helper()
	var all []map[string]any
	for {
		p := c.Poll(cursor)
		all = append(all, p.Events...)
		cursor = p.Cursor
		if !p.HasMore {
			return all, cursor
		}
	}
}

// TryDo is Do for goroutines other than the test's: it reports failures
// as an error instead of failing the test (require must only be called
// from the test goroutine). A transport error (connection refused or
// reset, timeout) is returned as is, so callers can tell "no answer" from
// an answer.
func (c *Client) TryDo(method, path string, body any) (Response, error) {
	var rd io.Reader
	switch b := body.(type) {
	case nil:
	case []byte:
		rd = bytes.NewReader(b)
	case string:
		rd = bytes.NewReader([]byte(b))
	default:
		j, err := json.Marshal(b)
		if err != nil {
			return Response{}, err
		}
		rd = bytes.NewReader(j)
	}
	req, err := http.NewRequest(method, c.Base+path, rd)
	if err != nil {
		return Response{}, err
	}
	if rd != nil {
		req.Header.Set("Content-Type", "application/json")
	}
	if c.Token != "" {
		req.Header.Set("Authorization", "Bearer "+c.Token)
	}
	resp, err := c.HTTP.Do(req)
	if err != nil {
		return Response{}, err
	}
	defer resp.Body.Close()
	data, err := io.ReadAll(resp.Body)
	if err != nil {
		return Response{}, err
	}
	return Response{Status: resp.StatusCode, Header: resp.Header, Body: data}, nil
}

// SignupMany creates n users concurrently (password hashing is slow on
// purpose) and returns clients logged in as them, in creation order of
// their index.
func SignupMany(t testing.TB, base, prefix string, n int) []*Client {
	t.Helper()
	cs := make([]*Client, n)
	errs := make([]error, n)
	done := make(chan struct{})
	for i := range cs {
		go func(i int) {
			defer func() { done <- struct{}{} }()
			c := NewClient(t, base)
			name := UniqueName(prefix)
			r, err := c.TryDo("POST", "/v1/auth/signup", map[string]any{"username": name, "password": "correct horse", "display_name": prefix})
			if err == nil && r.Status != http.StatusCreated {
				err = fmt.Errorf("signup %s: status %d: %s", name, r.Status, r.Body)
			}
			if err != nil {
				errs[i] = err
				return
			}
			var out struct {
				User  map[string]any `json:"user"`
				Token string         `json:"token"`
			}
			if err := json.Unmarshal(r.Body, &out); err != nil {
				errs[i] = err
				return
			}
			c.Token, c.User, c.ID = out.Token, out.User, out.User["id"].(string)
			cs[i] = c
		}(i)
	}
	for range cs {
		<-done
	}
	for _, err := range errs {
		require.NoError(t, err)
	}
	return cs
}

var build struct {
	once sync.Once
	bin  string
	err  error
}

// Binary builds cmd/chatgate once per test binary, for tests that run it
// as a process (to kill -9 it). A package using it removes it from
// TestMain with RemoveBinary.
func Binary(t testing.TB) string {
	t.Helper()
	build.once.Do(func() {
		goBin, err := exec.LookPath("go")
		if err != nil {
			build.err = fmt.Errorf("go tool not found: cannot build the binary: %w", err)
			return
		}
		out, err := exec.Command(goBin, "env", "GOMOD").Output()
		if err != nil {
			build.err = err
			return
		}
		dir, err := os.MkdirTemp("", "chatgate-bin-")
		if err != nil {
			build.err = err
			return
		}
		build.bin = filepath.Join(dir, "chatgate")
		ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
		defer cancel()
		cmd := exec.CommandContext(ctx, goBin, "build", "-o", build.bin, "./cmd/chatgate")
		cmd.Dir = filepath.Dir(strings.TrimSpace(string(out)))
		if b, err := cmd.CombinedOutput(); err != nil {
			build.err = fmt.Errorf("go build: %v: %s", err, b)
		}
	})
	if build.err != nil {
		t.Fatal(build.err)
	}
	return build.bin
}

// RemoveBinary deletes what Binary built; call it from TestMain after
// m.Run.
func RemoveBinary() {
	if build.bin != "" {
		os.RemoveAll(filepath.Dir(build.bin))
	}
}
