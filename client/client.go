// Package client is the Go client of chatgate's protocol v1.
//
// A Client is one device of one user: it signs up or logs in, keeps the
// device token, and calls the HTTP API. Connect opens the realtime
// connection (a Conn) over the best transport that works — WebSocket, SSE,
// long polling or short polling, in the order GET /v1/negotiate gives —
// falls back when a transport is refused, reconnects with backoff, and
// resumes from its cursor so that every durable event reaches the caller
// exactly once, in seq order.
//
//	c := client.New("http://localhost:8080")
//	if _, err := c.Login(ctx, "alice", "secret", "laptop"); err != nil { ... }
//	conn, err := c.Connect(ctx, client.ConnectOptions{
//		Cursor:  savedCursor,
//		OnEvent: func(e client.Event) { ... },
//	})
//	defer conn.Close()
//	msg, err := conn.Send(ctx, client.SendInput{To: bobID, Content: "hi"})
package client

import (
	"bytes"
	"context"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"net/url"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/gorilla/websocket"
)

// ErrNotLoggedIn is returned by calls that need a token before Login,
// Signup or WithToken gave one.
var ErrNotLoggedIn = errors.New("chatgate: not logged in")

// Client is one device's view of a chatgate deployment. It is safe for
// concurrent use.
type Client struct {
	base           string
	http           *http.Client
	zone           string // sent to negotiate
	dialer         *websocket.Dialer
	log            *slog.Logger
	requestTimeout time.Duration
	sendTimeout    time.Duration
	minBackoff     time.Duration
	maxBackoff     time.Duration

	mu       sync.RWMutex
	token    string
	user     User
	deviceID string

	// lastActivity is when this device last started an authenticated
	// request or wrote a WebSocket frame (unix nanoseconds): the server
	// counts each as a heartbeat, so explicit heartbeats are skipped
	// while it is recent.
	lastActivity atomic.Int64
}

// Option configures a Client.
type Option func(*Client)

// WithHTTPClient makes the client use hc for every HTTP request, streams
// included. hc must not set Timeout (long polls and SSE streams are long);
// the client bounds each request with a context instead.
func WithHTTPClient(hc *http.Client) Option { return func(c *Client) { c.http = hc } }

// WithWebSocketDialer sets the dialer of the WebSocket transport.
func WithWebSocketDialer(d *websocket.Dialer) Option { return func(c *Client) { c.dialer = d } }

// WithToken resumes a device logged in earlier: its token (and user id, if
// known) are used without a new login.
func WithToken(token, userID string) Option {
	return func(c *Client) { c.token, c.user.ID = token, userID }
}

// WithZone names the client's zone (region, data centre): negotiation
// recommends a server in it first.
func WithZone(zone string) Option { return func(c *Client) { c.zone = zone } }

// WithLogger sets where the client logs reconnects and dropped events
// (default: nowhere).
func WithLogger(l *slog.Logger) Option { return func(c *Client) { c.log = l } }

// WithRequestTimeout bounds each plain HTTP request (default 30 s).
func WithRequestTimeout(d time.Duration) Option { return func(c *Client) { c.requestTimeout = d } }

// WithSendTimeout bounds how long Send keeps retrying when its context has
// no deadline (default 60 s).
func WithSendTimeout(d time.Duration) Option { return func(c *Client) { c.sendTimeout = d } }

// WithBackoff sets the retry and reconnect backoff: it starts at min,
// doubles per failure up to max, with jitter (default 100 ms to 5 s).
func WithBackoff(min, max time.Duration) Option {
	return func(c *Client) { c.minBackoff, c.maxBackoff = min, max }
}

// New returns a client of the chatgate API at baseURL (for example
// "http://localhost:8080").
func New(baseURL string, opts ...Option) *Client {
	c := &Client{
		base:           strings.TrimRight(baseURL, "/"),
		requestTimeout: 30 * time.Second,
		sendTimeout:    60 * time.Second,
		minBackoff:     100 * time.Millisecond,
		maxBackoff:     5 * time.Second,
	}
	for _, o := range opts {
		o(c)
	}
	if c.http == nil {
		// A transport of our own, so CloseIdleConnections closes only ours.
		c.http = &http.Client{Transport: http.DefaultTransport.(*http.Transport).Clone()}
	}
	if c.dialer == nil {
		c.dialer = &websocket.Dialer{Proxy: http.ProxyFromEnvironment, HandshakeTimeout: 10 * time.Second}
	}
	if c.log == nil {
		c.log = slog.New(slog.DiscardHandler)
	}
	if c.minBackoff <= 0 {
		c.minBackoff = 100 * time.Millisecond
	}
	if c.maxBackoff < c.minBackoff {
		c.maxBackoff = c.minBackoff
	}
	return c
}

// BaseURL is the API base URL the client was created with.
func (c *Client) BaseURL() string { return c.base }

// Token is the device token ("" before login).
func (c *Client) Token() string {
	c.mu.RLock()
	defer c.mu.RUnlock()
	return c.token
}

// UserID is the logged-in user's id ("" if unknown).
func (c *Client) UserID() string {
	c.mu.RLock()
	defer c.mu.RUnlock()
	return c.user.ID
}

// User is the logged-in user's profile, as Signup or Login returned it.
func (c *Client) User() User {
	c.mu.RLock()
	defer c.mu.RUnlock()
	return c.user
}

// DeviceID is this device's id, known after Login or Signup.
func (c *Client) DeviceID() string {
	c.mu.RLock()
	defer c.mu.RUnlock()
	return c.deviceID
}

// CloseIdleConnections closes the client's idle keep-alive connections.
func (c *Client) CloseIdleConnections() { c.http.CloseIdleConnections() }

// Signup creates an account and logs in its first device.
func (c *Client) Signup(ctx context.Context, in SignupInput) (*Account, error) {
	var a Account
	if err := c.do(ctx, c.base, http.MethodPost, "/v1/auth/signup", false, in, &a); err != nil {
		return nil, err
	}
	c.setAccount(&a)
	return &a, nil
}

// Login logs in as a new device (named device; "" lets the server name
// it) and keeps its token for every later call.
func (c *Client) Login(ctx context.Context, username, password, device string) (*Account, error) {
	in := struct {
		Username string `json:"username"`
		Password string `json:"password"`
		Device   string `json:"device,omitempty"`
	}{username, password, device}
	var a Account
	if err := c.do(ctx, c.base, http.MethodPost, "/v1/auth/login", false, in, &a); err != nil {
		return nil, err
	}
	c.setAccount(&a)
	return &a, nil
}

func (c *Client) setAccount(a *Account) {
	c.mu.Lock()
	c.token, c.user, c.deviceID = a.Token, a.User, a.DeviceID
	c.mu.Unlock()
}

// Logout revokes this device's token and forgets it.
func (c *Client) Logout(ctx context.Context) error {
	if err := c.do(ctx, c.base, http.MethodPost, "/v1/auth/logout", true, nil, nil); err != nil {
		return err
	}
	c.mu.Lock()
	c.token, c.deviceID = "", ""
	c.mu.Unlock()
	return nil
}

// Negotiate asks which chat server and transports to use (no token needed).
func (c *Client) Negotiate(ctx context.Context) (*Negotiation, error) {
	var n negotiationJSON
	path := "/v1/negotiate"
	if c.zone != "" {
		path += "?zone=" + url.QueryEscape(c.zone)
	}
	if err := c.do(ctx, c.base, http.MethodGet, path, false, nil, &n); err != nil {
		return nil, err
	}
	return &Negotiation{
		Server: strings.TrimRight(n.Server, "/"), ServerID: n.ServerID, Transports: n.Transports,
		HeartbeatInterval: time.Duration(n.HeartbeatInterval) * time.Millisecond,
		OfflineAfter:      time.Duration(n.OfflineAfter) * time.Millisecond,
		MaxMessageChars:   n.MaxMessageChars, MaxGroupMembers: n.MaxGroupMembers, MaxBodyBytes: n.MaxBodyBytes,
	}, nil
}

// Heartbeat marks the device active (POST /v1/heartbeat). A Conn sends
// heartbeats by itself.
func (c *Client) Heartbeat(ctx context.Context) error {
	return c.do(ctx, c.base, http.MethodPost, "/v1/heartbeat", true, nil, nil)
}

// Typing tells the other members of a conversation that the user is
// typing (POST /v1/typing). It is not retried: typing is ephemeral.
func (c *Client) Typing(ctx context.Context, conversationID string) error {
	return c.typing(ctx, c.base, conversationID)
}

func (c *Client) typing(ctx context.Context, base, conversationID string) error {
	in := struct {
		ConversationID string `json:"conversation_id"`
	}{conversationID}
	return c.do(ctx, base, http.MethodPost, "/v1/typing", true, in, nil)
}

// Send stores a message over HTTP (POST /v1/messages) and returns it. It
// generates in.ClientMsgID when empty and retries network errors and 5xx
// answers with the same key (the server then returns the message it
// stored, never a duplicate) until ctx ends. A 4xx is returned at once as
// *APIError. Conn.Send does the same over the realtime connection.
func (c *Client) Send(ctx context.Context, in SendInput) (*Message, error) {
	if in.ClientMsgID == "" {
		in.ClientMsgID = NewClientMsgID()
	}
	return c.retrySend(ctx, func(ctx context.Context) (*Message, error) { return c.sendHTTP(ctx, c.base, in) })
}

func (c *Client) sendHTTP(ctx context.Context, base string, in SendInput) (*Message, error) {
	var out struct {
		Message *Message `json:"message"`
	}
	if err := c.do(ctx, base, http.MethodPost, "/v1/messages", true, in, &out); err != nil {
		return nil, err
	}
	if out.Message == nil {
		return nil, errors.New("chatgate: send answer has no message")
	}
	return out.Message, nil
}

// retrySend runs attempt until it succeeds, fails for good, or ctx (or the
// send timeout, when ctx has no deadline) ends.
func (c *Client) retrySend(ctx context.Context, attempt func(context.Context) (*Message, error)) (*Message, error) {
	if _, ok := ctx.Deadline(); !ok && c.sendTimeout > 0 {
		var cancel context.CancelFunc
		ctx, cancel = context.WithTimeout(ctx, c.sendTimeout)
		defer cancel()
	}
	for n := 0; ; n++ {
		actx, cancel := context.WithTimeout(ctx, c.requestTimeout)
		m, err := attempt(actx)
		cancel()
		if err == nil {
			return m, nil
		}
		if ctx.Err() != nil {
			return nil, fmt.Errorf("chatgate: send: %w (last attempt: %v)", ctx.Err(), err)
		}
		if !retryable(err) {
			return nil, err
		}
		c.log.Debug("chatgate: send failed, retrying", "attempt", n+1, "err", err)
		if !sleep(ctx, backoff(c.minBackoff, c.maxBackoff, n)) {
			return nil, fmt.Errorf("chatgate: send: %w (last attempt: %v)", ctx.Err(), err)
		}
	}
}

// retryable reports whether a failed request may succeed when repeated:
// network errors, timeouts of one attempt and temporary API errors.
func retryable(err error) bool {
	var ae *APIError
	if errors.As(err, &ae) {
		return ae.Temporary()
	}
	return !errors.Is(err, ErrNotLoggedIn)
}

// Do calls any endpoint of the API (for the calls this package does not
// wrap): in is encoded as the JSON body when non-nil, a 2xx body is
// decoded into out when non-nil, and an error answer is returned as
// *APIError. path starts with "/v1/".
func (c *Client) Do(ctx context.Context, method, path string, in, out any) error {
	return c.do(ctx, c.base, method, path, c.Token() != "", in, out)
}

// do sends one request to base+path. auth adds the bearer token.
func (c *Client) do(ctx context.Context, base, method, path string, auth bool, in, out any) error {
	var body io.Reader
	if in != nil {
		b, err := json.Marshal(in)
		if err != nil {
			return err
		}
		body = bytes.NewReader(b)
	}
	if _, ok := ctx.Deadline(); !ok && c.requestTimeout > 0 {
		var cancel context.CancelFunc
		ctx, cancel = context.WithTimeout(ctx, c.requestTimeout)
		defer cancel()
	}
	req, err := http.NewRequestWithContext(ctx, method, base+path, body)
	if err != nil {
		return err
	}
	if in != nil {
		req.Header.Set("Content-Type", "application/json")
	}
	req.Header.Set("Accept", "application/json")
	if auth {
		tok := c.Token()
		if tok == "" {
			return ErrNotLoggedIn
		}
		req.Header.Set("Authorization", "Bearer "+tok)
		c.touch()
	}
	resp, err := c.http.Do(req)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	if resp.StatusCode < 200 || resp.StatusCode > 299 {
		return readAPIError(resp)
	}
	if out == nil {
		_, _ = io.Copy(io.Discard, io.LimitReader(resp.Body, 1<<16))
		return nil
	}
	if err := json.NewDecoder(resp.Body).Decode(out); err != nil {
		return fmt.Errorf("chatgate: %s %s: decoding answer: %w", method, path, err)
	}
	return nil
}

func (c *Client) touch() { c.lastActivity.Store(time.Now().UnixNano()) }

// sinceActivity is how long ago the device last showed activity.
func (c *Client) sinceActivity() time.Duration {
	return time.Duration(time.Now().UnixNano() - c.lastActivity.Load())
}

// readAPIError turns a non-2xx answer into *APIError, also when the body
// is not the protocol's error object (a proxy's HTML page, say).
func readAPIError(resp *http.Response) *APIError {
	b, _ := io.ReadAll(io.LimitReader(resp.Body, 1<<16))
	var body struct {
		Error errorObject `json:"error"`
	}
	e := &APIError{Status: resp.StatusCode}
	if json.Unmarshal(b, &body) == nil {
		e.Code, e.Message = body.Error.flat()
	}
	if e.Code == "" && e.Message == "" {
		e.Message = strings.TrimSpace(string(b))
		if len(e.Message) > 200 {
			e.Message = e.Message[:200] + "…"
		}
	}
	return e
}

// NewClientMsgID returns a random idempotency key (a UUID v4).
func NewClientMsgID() string {
	var b [16]byte
	_, _ = rand.Read(b[:])
	b[6] = b[6]&0x0f | 0x40
	b[8] = b[8]&0x3f | 0x80
	h := hex.EncodeToString(b[:])
	return h[0:8] + "-" + h[8:12] + "-" + h[12:16] + "-" + h[16:20] + "-" + h[20:]
}
