package client

import (
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"net/http"
	"slices"
	"sync"
	"sync/atomic"
	"time"
)

// ConnectOptions configure a realtime connection. Only OnEvent is usually
// set; the zero values of the rest are sensible defaults.
type ConnectOptions struct {
	// Transports to use, in the order to try them. Default: the order
	// GET /v1/negotiate gives (names this package does not know are
	// skipped), or DefaultTransports if negotiate fails or offers none.
	Transports []string
	// Cursor is the highest seq the caller has processed: the connection
	// delivers the durable events after it.
	Cursor uint64
	// OnEvent receives every event: each durable event exactly once, in
	// seq order, and ephemeral events (presence, typing) as they come.
	// Calls are sequential, from the Conn's goroutine; while it runs the
	// stream waits. It must not call Close (it would wait for itself):
	// call Close from another goroutine.
	OnEvent func(Event)
	// OnState is told when a transport goes up or down (Err says why it
	// went down). It is called from the same goroutine as OnEvent.
	OnState func(State)
	// OnError is told about errors the Conn recovers from (dropped
	// streams, refused transports, error events), for logging. Same
	// goroutine as OnEvent.
	OnError func(error)
	// Negotiation, when set, is used instead of calling GET /v1/negotiate
	// (at connect and after disconnects).
	Negotiation *Negotiation
	// PollInterval is the short-polling period when idle (default 2 s).
	PollInterval time.Duration
	// LongPollWait is how long a long poll may be held (whole seconds,
	// 1..60; default 25 s).
	LongPollWait time.Duration
	// ConnectTimeout bounds establishing one transport: the WebSocket
	// handshake, the first byte of an SSE stream, the first poll (default
	// 10 s). A transport that needs longer counts as refused.
	ConnectTimeout time.Duration
	// IdleTimeout is how long a stream may stay silent (the server sends
	// heartbeats well within it) before it is treated as dead and
	// reconnected (default 45 s).
	IdleTimeout time.Duration
	// FallbackAfter is how many consecutive failed sessions of a working
	// transport lead to the next one (default 3). A refusal (say, a proxy
	// that strips the WebSocket upgrade) falls back at once.
	FallbackAfter int
}

// State is a change of the connection: which transport is in use and
// whether it is up.
type State struct {
	Transport string
	Connected bool
	Err       error // why the transport went down (Connected false)
}

// Conn is a realtime connection. It reconnects by itself until Close, or
// until the server refuses the device's token (see Err).
type Conn struct {
	c          *Client
	opts       ConnectOptions
	transports []string

	ctx    context.Context
	cancel context.CancelFunc
	done   chan struct{}
	ready  chan struct{}
	once   sync.Once // closes ready
	cursor atomic.Uint64
	kick   chan struct{} // wakes short polling (after a send)

	mu        sync.Mutex
	transport string
	connected bool
	server    string
	heartbeat time.Duration
	ws        *wsConn
	err       error

	// Owned by the run goroutine.
	gapCursor, gapSeq uint64
	gapCount          int
}

// stableAfter is how long a stream must have stayed up to count as
// working even if it delivered no event (an idle inbox).
const stableAfter = 10 * time.Second

// maxGapRetries is how often the same seq gap is resumed before the Conn
// accepts the server's word for it (a server that lost entries would
// otherwise be reconnected to forever).
const maxGapRetries = 3

var errGap = errors.New("chatgate: seq gap on the stream; resuming from the cursor")

// refusedError marks a transport the server (or a proxy) will not carry:
// the Conn falls back to the next transport at once.
type refusedError struct{ err error }

func (e *refusedError) Error() string { return "transport refused: " + e.err.Error() }
func (e *refusedError) Unwrap() error { return e.err }

// Connect opens the realtime connection and returns once a transport is
// up, trying the transports in order and moving on from any that is
// refused or fails before it is up. ctx bounds only this: the Conn lives
// until Close. The error is *APIError 401 when the token is refused.
func (c *Client) Connect(ctx context.Context, opts ConnectOptions) (*Conn, error) {
	if c.Token() == "" {
		return nil, ErrNotLoggedIn
	}
	opts = withDefaults(opts)
	neg := opts.Negotiation
	if neg == nil {
		n, err := c.Negotiate(ctx)
		if ctx.Err() != nil {
			return nil, ctx.Err()
		}
		if err != nil {
			c.log.Warn("chatgate: negotiate failed; using defaults", "err", err)
			n = &Negotiation{}
		}
		neg = n
	}
	trs := opts.Transports
	if len(trs) == 0 {
		for _, t := range neg.Transports {
			if slices.Contains(DefaultTransports, t) && !slices.Contains(trs, t) {
				trs = append(trs, t)
			}
		}
		if len(trs) == 0 {
			trs = DefaultTransports
		}
	}
	for _, t := range trs {
		if !slices.Contains(DefaultTransports, t) {
			return nil, fmt.Errorf("chatgate: unknown transport %q", t)
		}
	}
	cn := &Conn{
		c: c, opts: opts, transports: slices.Clone(trs),
		done: make(chan struct{}), ready: make(chan struct{}), kick: make(chan struct{}, 1),
		server: c.base, heartbeat: 5 * time.Second,
	}
	cn.applyNegotiation(neg)
	cn.cursor.Store(opts.Cursor)
	cn.ctx, cn.cancel = context.WithCancel(context.Background())
	go cn.run()
	select {
	case <-cn.ready:
		return cn, nil
	case <-cn.done:
		return nil, cn.Err()
	case <-ctx.Done():
		cn.Close()
		return nil, ctx.Err()
	}
}

func withDefaults(o ConnectOptions) ConnectOptions {
	if o.PollInterval <= 0 {
		o.PollInterval = 2 * time.Second
	}
	if o.LongPollWait <= 0 {
		o.LongPollWait = 25 * time.Second
	}
	o.LongPollWait = min(max(o.LongPollWait.Round(time.Second), time.Second), 60*time.Second)
	if o.ConnectTimeout <= 0 {
		o.ConnectTimeout = 10 * time.Second
	}
	if o.IdleTimeout <= 0 {
		o.IdleTimeout = 45 * time.Second
	}
	if o.FallbackAfter <= 0 {
		o.FallbackAfter = 3
	}
	return o
}

func (cn *Conn) applyNegotiation(n *Negotiation) {
	cn.mu.Lock()
	defer cn.mu.Unlock()
	if n.Server != "" {
		cn.server = n.Server
	}
	if n.HeartbeatInterval > 0 {
		cn.heartbeat = n.HeartbeatInterval
	}
}

// Transport is the name of the transport in use (or being tried).
func (cn *Conn) Transport() string {
	cn.mu.Lock()
	defer cn.mu.Unlock()
	return cn.transport
}

// Connected reports whether a transport is up right now.
func (cn *Conn) Connected() bool {
	cn.mu.Lock()
	defer cn.mu.Unlock()
	return cn.connected
}

// Cursor is the highest seq delivered to OnEvent (or the starting cursor).
// Persist it after processing events and pass it to the next Connect.
func (cn *Conn) Cursor() uint64 { return cn.cursor.Load() }

// Done is closed when the Conn has stopped: after Close, or when the
// server refused the token.
func (cn *Conn) Done() <-chan struct{} { return cn.done }

// Err is why the Conn stopped by itself (*APIError 401 when the token was
// revoked), or nil.
func (cn *Conn) Err() error {
	cn.mu.Lock()
	defer cn.mu.Unlock()
	return cn.err
}

// Close stops the connection and waits until its goroutines have ended; no
// OnEvent call happens after it returns. It is idempotent.
func (cn *Conn) Close() error {
	cn.cancel()
	<-cn.done
	return nil
}

// Server is the base URL of the chat server the connection uses now; it
// changes when a reconnect negotiates another one.
func (cn *Conn) Server() string { return cn.serverURL() }

func (cn *Conn) serverURL() string {
	cn.mu.Lock()
	defer cn.mu.Unlock()
	return cn.server
}

func (cn *Conn) heartbeatInterval() time.Duration {
	cn.mu.Lock()
	defer cn.mu.Unlock()
	return cn.heartbeat
}

func (cn *Conn) currentWS() *wsConn {
	cn.mu.Lock()
	defer cn.mu.Unlock()
	return cn.ws
}

// session is one attempt at one transport, from dial to disconnect. It is
// owned by the run goroutine.
type session struct {
	cn       *Conn
	name     string
	up       bool
	upAt     time.Time
	progress bool // delivered something: the transport works
}

// markUp records that the transport is established.
func (s *session) markUp() {
	if s.up {
		return
	}
	s.up, s.upAt = true, time.Now()
	cn := s.cn
	cn.mu.Lock()
	cn.connected = true
	cn.mu.Unlock()
	cn.c.log.Debug("chatgate: connected", "transport", s.name, "cursor", cn.cursor.Load())
	if cn.opts.OnState != nil {
		cn.opts.OnState(State{Transport: s.name, Connected: true})
	}
	cn.once.Do(func() { close(cn.ready) })
}

// deliver handles one event object received on this session.
func (s *session) deliver(raw []byte) error {
	err := s.cn.handle(raw)
	if err == nil || errors.Is(err, errGap) {
		s.progress = true // not for an undecodable event: that is a failure
	}
	return err
}

// run is the Conn's goroutine: it runs sessions one after another until
// Close, choosing the transport and the delay before each.
func (cn *Conn) run() {
	defer close(cn.done)
	var hb sync.WaitGroup
	hb.Add(1)
	go func() {
		defer hb.Done()
		cn.heartbeats()
	}()
	defer func() {
		cn.cancel()
		hb.Wait()
		cn.mu.Lock()
		cn.connected = false
		cn.mu.Unlock()
		cn.c.http.CloseIdleConnections()
	}()

	everUp := false
	var sweep []error // why each transport failed before any was up
	allRefused, sweeps := true, 0
	idx, failures, attempt := 0, 0, 0
	for {
		name := cn.transports[idx]
		cn.mu.Lock()
		cn.transport = name
		cn.mu.Unlock()
		s := &session{cn: cn, name: name}
		err := cn.runSession(s)
		if cn.ctx.Err() != nil {
			return
		}
		if s.up {
			everUp = true
			if time.Since(s.upAt) >= stableAfter {
				s.progress = true
			}
			cn.mu.Lock()
			cn.connected = false
			cn.mu.Unlock()
			if cn.opts.OnState != nil {
				cn.opts.OnState(State{Transport: name, Connected: false, Err: err})
			}
		}
		if fatal(err) {
			cn.fail(err)
			return
		}
		if !everUp {
			// Connect is still waiting: move straight on to the next. When
			// all have failed, sweep again (FallbackAfter sweeps in all)
			// unless every one was refused outright.
			sweep = append(sweep, fmt.Errorf("%s: %w", name, err))
			cn.report(fmt.Errorf("chatgate: %s: %w", name, err))
			var refused *refusedError
			allRefused = allRefused && errors.As(err, &refused)
			if idx++; idx < len(cn.transports) {
				continue
			}
			if sweeps++; allRefused || sweeps >= cn.opts.FallbackAfter {
				cn.fail(fmt.Errorf("chatgate: no transport could connect: %w", errors.Join(sweep...)))
				return
			}
			if !sleep(cn.ctx, backoff(cn.c.minBackoff, cn.c.maxBackoff, sweeps-1)) {
				return
			}
			idx, sweep, allRefused = 0, nil, true
			continue
		}
		cn.report(fmt.Errorf("chatgate: %s: %w", name, err))
		if errors.Is(err, errGap) {
			continue // not a failure: resume at once
		}
		var refused *refusedError
		switch {
		case s.progress:
			failures, attempt = 0, 0
		case errors.As(err, &refused):
			failures = cn.opts.FallbackAfter
		default:
			failures++
		}
		if failures >= cn.opts.FallbackAfter && len(cn.transports) > 1 {
			idx, failures = (idx+1)%len(cn.transports), 0
			cn.c.log.Info("chatgate: falling back", "from", name, "to", cn.transports[idx], "err", err)
		}
		cn.renegotiate()
		if !sleep(cn.ctx, backoff(cn.c.minBackoff, cn.c.maxBackoff, attempt)) {
			return
		}
		attempt++
	}
}

func (cn *Conn) runSession(s *session) error {
	if cn.c.Token() == "" {
		return ErrNotLoggedIn
	}
	switch s.name {
	case TransportWebSocket:
		return cn.wsSession(s)
	case TransportSSE:
		return cn.sseSession(s)
	case TransportLongPolling:
		return cn.pollSession(s, true)
	default:
		return cn.pollSession(s, false)
	}
}

// fatal reports errors no reconnect can fix: the token is refused.
func fatal(err error) bool {
	var ae *APIError
	return errors.Is(err, ErrNotLoggedIn) || errors.As(err, &ae) && ae.Status == http.StatusUnauthorized
}

func (cn *Conn) fail(err error) {
	cn.mu.Lock()
	cn.err = err
	cn.mu.Unlock()
	cn.c.log.Warn("chatgate: connection stopped", "err", err)
}

func (cn *Conn) report(err error) {
	cn.c.log.Debug("chatgate: connection error", "err", err)
	if cn.opts.OnError != nil && err != nil {
		cn.opts.OnError(err)
	}
}

// renegotiate asks again which server to use after losing the connection
// (in a cluster the old one may be gone). Failure keeps the old answer.
func (cn *Conn) renegotiate() {
	if cn.opts.Negotiation != nil {
		return
	}
	ctx, cancel := context.WithTimeout(cn.ctx, cn.opts.ConnectTimeout)
	defer cancel()
	if n, err := cn.c.Negotiate(ctx); err == nil {
		cn.applyNegotiation(n)
	}
}

// handle decodes one event object and hands it to OnEvent, keeping the
// exactly-once, in-order promise for durable events: a seq at or below
// the cursor was delivered already and is dropped; a seq beyond cursor+1
// means something was skipped, so the session ends (errGap) and resumes
// from the cursor instead of delivering out of order.
func (cn *Conn) handle(raw []byte) error {
	var w wireEvent
	if err := decodeEvent(raw, &w); err != nil {
		// It may be a durable event we cannot read: resume rather than skip.
		return fmt.Errorf("chatgate: undecodable event: %w", err)
	}
	switch w.Type {
	case "sent", "error":
		cn.reply(&w)
		return nil
	case "cursor":
		// The server's inbox ends below our cursor (see docs/protocol.md):
		// continue from its head, or every new event would be dropped.
		if cur := cn.cursor.Load(); w.Cursor < cur {
			cn.report(fmt.Errorf("chatgate: server moved the cursor back from %d to %d", cur, w.Cursor))
			cn.cursor.Store(w.Cursor)
		}
		return nil
	}
	if w.Seq == 0 {
		cn.emit(w.event(raw))
		return nil
	}
	cur := cn.cursor.Load()
	if w.Seq <= cur {
		return nil
	}
	if w.Seq > cur+1 {
		if cn.gapCursor != cur || cn.gapSeq != w.Seq {
			cn.gapCursor, cn.gapSeq, cn.gapCount = cur, w.Seq, 0
		}
		if cn.gapCount++; cn.gapCount <= maxGapRetries {
			return errGap
		}
		cn.report(fmt.Errorf("chatgate: the server resumes from %d at %d every time; accepting the gap", cur, w.Seq))
	}
	cn.gapCount = 0
	cn.cursor.Store(w.Seq)
	cn.emit(w.event(raw))
	return nil
}

func (cn *Conn) emit(e Event) {
	if cn.opts.OnEvent != nil {
		cn.opts.OnEvent(e)
	}
}

// reply routes a WebSocket "sent" or "error" object to the Send waiting
// for it; an error nobody waits for (say, slow_consumer before the server
// closes the stream) goes to OnError.
func (cn *Conn) reply(w *wireEvent) {
	var r wsReply
	if w.Type == "sent" {
		r.msg = w.Message
		if r.msg == nil {
			r.err = errors.New("chatgate: sent frame without message")
		}
	} else {
		r.err = frameError(w.Error)
	}
	if ws := cn.currentWS(); ws != nil && w.ClientMsgID != "" && ws.resolve(w.ClientMsgID, r) {
		return
	}
	if r.err != nil {
		cn.report(r.err)
	}
}

// heartbeats keeps the device active: every heartbeat interval without
// other activity it sends a heartbeat frame (WebSocket) or POST
// /v1/heartbeat. Polls and sends are activity, so a busy device sends none.
func (cn *Conn) heartbeats() {
	t := time.NewTimer(cn.heartbeatInterval())
	defer t.Stop()
	for {
		select {
		case <-cn.ctx.Done():
			return
		case <-t.C:
		}
		iv := cn.heartbeatInterval()
		if cn.Connected() && cn.Transport() != TransportPolling {
			// An open stream or a held long poll already keeps the device
			// online (docs/protocol.md): a heartbeat would only cost a
			// request, or a frame, per interval per idle client.
			t.Reset(iv)
			continue
		}
		if since := cn.c.sinceActivity(); since < iv {
			t.Reset(iv - since)
			continue
		}
		var err error
		if ws := cn.currentWS(); ws != nil {
			err = ws.write(struct {
				Type string `json:"type"`
			}{"heartbeat"})
		} else {
			ctx, cancel := context.WithTimeout(cn.ctx, cn.c.requestTimeout)
			err = cn.c.do(ctx, cn.serverURL(), http.MethodPost, "/v1/heartbeat", true, nil, nil)
			cancel()
		}
		if err != nil && cn.ctx.Err() == nil {
			cn.c.log.Debug("chatgate: heartbeat failed", "err", err)
		}
		t.Reset(iv)
	}
}

// Send stores a message and returns it, like Client.Send: over the
// WebSocket when that is the transport in use and up (matching the
// server's "sent" or "error" frame by client_msg_id), otherwise POST
// /v1/messages. It retries with the same client_msg_id on network errors,
// dropped connections and 5xx until ctx ends; a refusal is returned at
// once as *APIError.
func (cn *Conn) Send(ctx context.Context, in SendInput) (*Message, error) {
	if in.ClientMsgID == "" {
		in.ClientMsgID = NewClientMsgID()
	}
	m, err := cn.c.retrySend(ctx, func(ctx context.Context) (*Message, error) {
		if ws := cn.currentWS(); ws != nil {
			return ws.send(ctx, in)
		}
		return cn.c.sendHTTP(ctx, cn.serverURL(), in)
	})
	if err == nil {
		// Short polling: fetch the message's echo (and anything else) now.
		select {
		case cn.kick <- struct{}{}:
		default:
		}
	}
	return m, err
}

// Typing tells the conversation's other members that the user is typing:
// a typing frame over the WebSocket, otherwise POST /v1/typing. It is not
// retried.
func (cn *Conn) Typing(ctx context.Context, conversationID string) error {
	if ws := cn.currentWS(); ws != nil {
		err := ws.write(struct {
			Type           string `json:"type"`
			ConversationID string `json:"conversation_id"`
		}{"typing", conversationID})
		if err == nil {
			return nil
		}
	}
	return cn.c.typing(ctx, cn.serverURL(), conversationID)
}

// backoff is the delay before retry n (from 0): min doubled n times,
// capped at max, with "equal jitter" (a random point in its upper half) so
// that clients cut off together do not come back together.
func backoff(lo, hi time.Duration, n int) time.Duration {
	d := hi
	if n < 32 && lo<<n < hi && lo<<n > 0 {
		d = lo << n
	}
	return d/2 + rand.N(d/2+1)
}

// sleep waits d or until ctx ends; it reports whether d passed.
func sleep(ctx context.Context, d time.Duration) bool {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-ctx.Done():
		return false
	case <-t.C:
		return true
	}
}
