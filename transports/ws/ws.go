// Package ws is the WebSocket transport: GET /v1/ws?cursor=N upgrades to a
// socket carrying one JSON event per text frame from the server, and send,
// heartbeat and typing frames from the client.
//
// An idle socket costs one goroutine (its reader) and no write buffer:
// events are written by a goroutine started when the core queues one
// (core.StreamHooks.Ready) that ends when the queue is empty, pings come
// from a timer, and a batch of events leaves in one writev with no copy of
// the event bytes. gorilla/websocket does the handshake and reads frames;
// server frames are unmasked and trivial to write, so they are written
// here. melody, which the design card named, costs three goroutines and a
// 256-slot channel per socket and drops frames when that channel is full
// (docs/design.md says why it was replaced).
package ws

import (
	"bytes"
	"context"
	"encoding/binary"
	"encoding/json"
	"errors"
	"io"
	"net"
	"net/http"
	"sync"
	"sync/atomic"
	"time"

	"github.com/gorilla/websocket"

	"github.com/chatgate/chatgate/core"
	"github.com/chatgate/chatgate/transports"
	"github.com/chatgate/chatgate/wire"
)

// Name is the protocol name of WebSocket.
const Name = "websocket"

// Options tune the transport.
type Options struct {
	// PingPeriod is how often the server pings; a client silent for
	// PongWait (no frame, no pong) is disconnected.
	PingPeriod, PongWait time.Duration
	// WriteTimeout cuts a client that does not read (its TCP window full).
	WriteTimeout time.Duration
	// ReadBufferSize is the per-socket read buffer. Client frames are
	// small; larger ones are read straight past the buffer.
	ReadBufferSize int
}

// DefaultOptions are the production settings.
var DefaultOptions = Options{PingPeriod: 15 * time.Second, PongWait: 30 * time.Second, WriteTimeout: 10 * time.Second, ReadBufferSize: 512}

// closeWait is how long a socket closed by the server waits for the
// client's close frame before the TCP connection is dropped: closing at
// once could reset the connection and lose the close frame with its code.
const closeWait = time.Second

type endpoint struct {
	svc  *core.Service
	o    Options
	up   websocket.Upgrader
	wg   sync.WaitGroup // readers, writers and the drain watcher
	stop chan struct{}

	mu     sync.Mutex
	conns  map[*conn]struct{}
	closed bool
}

// New returns the WebSocket endpoint.
func New(svc *core.Service, o Options) transports.Endpoint {
	if o.ReadBufferSize <= 0 {
		o.ReadBufferSize = DefaultOptions.ReadBufferSize
	}
	ep := &endpoint{svc: svc, o: o, conns: map[*conn]struct{}{}, stop: make(chan struct{})}
	ep.up = websocket.Upgrader{
		ReadBufferSize: o.ReadBufferSize,
		// Never used (frames are written here, not by gorilla), but without
		// a pool gorilla allocates a 4 KiB write buffer per socket.
		WriteBufferPool: &sync.Pool{},
		// Any origin may connect: sockets authenticate with a token, never
		// a cookie, so a foreign page cannot borrow a user's session.
		CheckOrigin: func(*http.Request) bool { return true },
	}
	ep.wg.Add(1)
	go ep.watchDrain()
	return transports.Endpoint{Name: Name, Path: "/v1/ws", Handler: ep.serve, Close: ep.close}
}

func (ep *endpoint) serve(w http.ResponseWriter, r *http.Request, se core.Session) error {
	cursor, err := transports.Cursor(r)
	if err != nil {
		return err
	}
	if !websocket.IsWebSocketUpgrade(r) {
		return core.Errorf(core.KindInvalid, "websocket_upgrade_required", "this endpoint needs a WebSocket upgrade request")
	}
	release, err := ep.svc.AdmitConn(se, Name)
	if err != nil {
		return err
	}
	ws, err := ep.up.Upgrade(w, r, nil)
	if err != nil {
		release()
		return nil // the upgrader has answered the request
	}
	ws.SetReadLimit(wire.MaxBodyBytes)
	c := &conn{ep: ep, ws: ws, nc: ws.NetConn(), raw: ws.NetConn(), se: se, release: release,
		frames: core.NewAllowance(ep.svc.Config().Limits.FramesPerSocket)}
	if u, ok := c.nc.(interface{ NetConn() net.Conn }); ok {
		c.raw = u.NetConn()
	}
	if m, ok := c.nc.(interface{ MeterReads(func(int) error) }); ok {
		bytes := core.NewAllowance(ep.svc.Config().Limits.BytesPerSocket)
		m.MeterReads(func(n int) error {
			if bytes.TakeN(n) > 0 {
				return errFrameFlood
			}
			return nil
		})
	}
	c.ctx, c.cancel = context.WithCancel(context.Background())
	ep.mu.Lock()
	if ep.closed {
		ep.mu.Unlock()
		c.closeWith(websocket.CloseServiceRestart, core.ErrDraining.Code)
		c.nc.Close()
		return nil
	}
	ep.conns[c] = struct{}{}
	ep.wg.Add(1)
	ep.mu.Unlock()
	st := ep.svc.OpenStream(se, cursor, core.StreamHooks{Cut: c.cut, Ready: c.kick, Transport: Name})
	c.mu.Lock()
	c.st = st
	c.mu.Unlock()
	c.ping = time.AfterFunc(ep.o.PingPeriod, c.sendPing)
	c.kick() // the backlog, and any live event that came while the stream opened
	// The handler returns and its deep net/http stack with it: the socket
	// is read by a goroutine of its own with a shallow one.
	go c.read()
	return nil
}

// watchDrain ends every socket when the server starts shutting down: no
// goroutine waits in the core for them to notice.
func (ep *endpoint) watchDrain() {
	defer ep.wg.Done()
	select {
	case <-ep.svc.Draining():
	case <-ep.stop:
		return
	}
	ep.mu.Lock()
	for c := range ep.conns {
		c.kick()
	}
	ep.mu.Unlock()
}

// close waits for the sockets the drain has closed, then drops any left.
func (ep *endpoint) close() error {
	ep.mu.Lock()
	if ep.closed {
		ep.mu.Unlock()
		return nil
	}
	ep.closed = true
	close(ep.stop)
	ep.mu.Unlock()
	done := make(chan struct{})
	go func() { ep.wg.Wait(); close(done) }()
	select {
	case <-done:
		return nil
	case <-time.After(ep.o.WriteTimeout + closeWait):
	}
	ep.mu.Lock()
	for c := range ep.conns {
		c.nc.Close()
	}
	ep.mu.Unlock()
	<-done
	return nil
}

// conn is one socket. Its reader goroutine owns it: it ends the stream
// and unregisters when the socket closes, after any writer has finished.
type conn struct {
	ep     *endpoint
	ws     *websocket.Conn
	nc     net.Conn
	raw    net.Conn // nc unwrapped: writev needs the *net.TCPConn
	se     core.Session
	st     *core.Stream // set under mu once opened; kicks before that wait for the one after
	ctx    context.Context
	cancel context.CancelFunc
	ping   *time.Timer
	// release ends the connection's count against the user's limit.
	release func()
	// frames is the client's allowance of frames; past it the socket is
	// closed, since a client flooding frames is broken or hostile.
	frames *core.Allowance

	mu      sync.Mutex // guards the three flags
	writing bool       // a writer goroutine runs
	again   bool       // events were queued while it ran
	closed  bool       // the reader has ended: no new writer

	wmu       sync.Mutex // one frame sequence on the wire at a time
	flushMu   sync.Mutex // held by the writer while it uses the stream
	closeSent atomic.Bool
}

var _ transports.Transport = (*conn)(nil)

// kick starts the writer unless one runs; that one then looks again.
func (c *conn) kick() {
	c.mu.Lock()
	defer c.mu.Unlock()
	switch {
	case c.closed:
	case c.st == nil:
		// The stream is still opening (a live event, or a drain, came
		// first): the kick that follows its opening reads everything.
	case c.writing:
		c.again = true
	default:
		c.writing = true
		c.ep.wg.Add(1)
		go c.flush()
	}
}

// flush writes what the stream has until it is empty, then ends.
func (c *conn) flush() {
	defer c.ep.wg.Done()
	c.flushMu.Lock()
	defer c.flushMu.Unlock()
	for {
		c.mu.Lock()
		if c.closed {
			c.writing = false
			c.mu.Unlock()
			return
		}
		c.again = false
		c.mu.Unlock()
		evs, err := c.st.TryNext(c.ctx, transports.StreamBatch)
		if err == nil && len(evs) > 0 {
			err = c.WriteMany(evs...)
		}
		if err != nil {
			c.end(err)
			c.mu.Lock()
			c.writing = false
			c.mu.Unlock()
			return
		}
		if len(evs) == 0 {
			c.mu.Lock()
			if !c.again {
				c.writing = false
				c.mu.Unlock()
				return
			}
			c.mu.Unlock()
		}
	}
}

// end closes the socket for a reason the stream gave.
func (c *conn) end(err error) {
	switch {
	case errors.Is(err, core.ErrSlowConsumer):
		c.closeWith(websocket.CloseTryAgainLater, core.ErrSlowConsumer.Code)
	case errors.Is(err, core.ErrDraining):
		c.closeWith(websocket.CloseServiceRestart, core.ErrDraining.Code)
	case errors.Is(err, core.ErrUnauthorized):
		c.closeWith(websocket.ClosePolicyViolation, core.ErrUnauthorized.Code)
	default:
		c.nc.Close() // a failed write: the reader sees it and cleans up
	}
}

// closeWith sends a close frame and gives the client closeWait to answer
// before the reader's deadline drops the connection.
func (c *conn) closeWith(code int, reason string) {
	if c.closeSent.Swap(true) {
		return
	}
	msg := websocket.FormatCloseMessage(code, reason)
	if err := c.writeFrame(opClose, msg, closeWait); err != nil {
		c.nc.Close()
		return
	}
	_ = c.nc.SetReadDeadline(time.Now().Add(closeWait))
}

// cut is called by the core, from a publisher, when the stream's queue
// overflows. A writer blocked on the full socket is released at once
// (its write fails and the socket closes); otherwise the writer started
// here finds ErrSlowConsumer and closes with 1013.
func (c *conn) cut() {
	_ = c.nc.SetWriteDeadline(time.Now())
	c.kick()
}

// Close cuts the socket as a slow consumer would be; the client resumes by
// cursor.
func (c *conn) Close() error {
	c.cut()
	return nil
}

func (c *conn) Name() string { return Name }

func (c *conn) Write(ev core.Event) error { return c.WriteMany(ev) }

// WriteMany writes one text frame per event in a single writev: the frame
// headers are built here and the event bytes are sent as they are.
func (c *conn) WriteMany(evs ...core.Event) error {
	w := framesPool.Get().(*frames)
	defer w.release()
	for _, e := range evs {
		w.addEvent(e)
	}
	return c.send(w, c.ep.o.WriteTimeout)
}

func (c *conn) writeFrame(op byte, payload []byte, timeout time.Duration) error {
	w := framesPool.Get().(*frames)
	defer w.release()
	w.add(op, payload)
	return c.send(w, timeout)
}

// send writes the collected frames in one writev, after any frames being
// written by another goroutine.
func (c *conn) send(w *frames, timeout time.Duration) error {
	c.wmu.Lock()
	defer c.wmu.Unlock()
	_ = c.nc.SetWriteDeadline(time.Now().Add(timeout))
	bufs := w.bufs // WriteTo consumes the slice it is given
	_, err := bufs.WriteTo(c.raw)
	return err
}

// sendPing runs on the ping timer. A writer busy on the socket stands in
// for the ping: the client's TCP stack is answering anyway.
func (c *conn) sendPing() {
	c.mu.Lock()
	closed := c.closed
	c.mu.Unlock()
	if closed {
		return
	}
	if c.wmu.TryLock() {
		_ = c.nc.SetWriteDeadline(time.Now().Add(c.ep.o.WriteTimeout))
		_, err := c.nc.Write(pingFrame)
		c.wmu.Unlock()
		if err != nil {
			c.nc.Close()
			return
		}
	}
	c.ping.Reset(c.ep.o.PingPeriod)
}

var readPool = sync.Pool{New: func() any { return new(bytes.Buffer) }}

var pingFrame = []byte{0x80 | opPing, 0}

// read is the socket's reader and owner.
func (c *conn) read() {
	defer c.finish()
	// A pong extends the read deadline only between messages: a message
	// must arrive whole within one, or a client answering pings could
	// keep one open for ever in empty fragments, which no limit counts.
	// The handlers run on this goroutine, inside NextReader and Read.
	inMessage := false
	c.ws.SetPongHandler(func(string) error {
		if inMessage {
			return nil
		}
		return c.nc.SetReadDeadline(time.Now().Add(c.ep.o.PongWait))
	})
	ping := c.ws.PingHandler()
	c.ws.SetPingHandler(func(data string) error {
		if c.frames.Take() > 0 {
			return errFrameFlood
		}
		return ping(data)
	})
	// The client's close is answered (unless ours crossed it) under the
	// frame lock; ReadMessage then returns and the socket is torn down.
	c.ws.SetCloseHandler(func(code int, _ string) error {
		if !c.closeSent.Swap(true) {
			_ = c.writeFrame(opClose, websocket.FormatCloseMessage(code, ""), closeWait)
		}
		return nil
	})
	// flooded closes a client past its frame or byte allowance with 1008.
	flooded := func(err error) bool {
		if !errors.Is(err, errFrameFlood) {
			return false
		}
		c.ep.svc.Observer().RateLimited("ws_frames")
		c.closeWith(websocket.ClosePolicyViolation, "rate_limited")
		// Whatever else the client sends is dropped until it answers the
		// close or closeWait passes: closing with unread bytes would reset
		// the connection and lose the close frame. (Read from raw: nc's
		// meter would refuse it.)
		_, _ = io.Copy(io.Discard, c.raw)
		return true
	}
	for {
		_ = c.nc.SetReadDeadline(time.Now().Add(c.ep.o.PongWait))
		mt, r, err := c.ws.NextReader()
		if err == nil && c.frames.Take() > 0 {
			err = errFrameFlood
		}
		if flooded(err) || err != nil {
			return
		}
		if mt != websocket.TextMessage {
			// Read away here, not by the next NextReader, so the deadline
			// rule above holds for it too.
			inMessage = true
			_, err = io.Copy(io.Discard, r)
			inMessage = false
			if flooded(err) || err != nil {
				return
			}
			continue
		}
		// Frames are read into pooled buffers, not one allocation each:
		// decoding copies out what it keeps.
		buf := readPool.Get().(*bytes.Buffer)
		buf.Reset()
		inMessage = true
		_, err = buf.ReadFrom(r)
		inMessage = false
		var out []byte
		if err == nil {
			out = handleFrame(c.ctx, c.ep.svc, c.se, buf.Bytes())
		}
		if buf.Cap() <= 64<<10 {
			readPool.Put(buf)
		}
		if flooded(err) || err != nil {
			return
		}
		if out != nil {
			if err := c.writeFrame(opText, out, c.ep.o.WriteTimeout); err != nil {
				return
			}
		}
	}
}

// finish tears the socket down once the reader has ended: no writer may
// start, the running one is stopped by the closed connection, and the
// stream is closed only after it has let go.
func (c *conn) finish() {
	c.mu.Lock()
	c.closed = true
	c.mu.Unlock()
	c.ping.Stop()
	c.cancel()
	c.nc.Close()
	c.flushMu.Lock()
	c.st.Close()
	c.flushMu.Unlock()
	c.ep.mu.Lock()
	delete(c.ep.conns, c)
	c.ep.mu.Unlock()
	c.release()
	c.ep.wg.Done()
}

// errFrameFlood ends the reader of a client past its frame or byte
// allowance.
var errFrameFlood = errors.New("ws: too many frames")

// WebSocket opcodes (RFC 6455 section 5.2).
const (
	opText  = 0x1
	opClose = 0x8
	opPing  = 0x9
)

// frames collects frame headers and payloads for one writev. The headers
// share one array, so a batch allocates nothing once the pool is warm.
type frames struct {
	hdr  []byte
	bufs net.Buffers
}

var framesPool = sync.Pool{New: func() any { return &frames{hdr: make([]byte, 0, 64*transports.StreamBatch)} }}

func (w *frames) add(op byte, payload []byte) {
	start := w.header(op, len(payload))
	w.bufs = append(w.bufs, w.hdr[start:len(w.hdr):len(w.hdr)])
	if len(payload) > 0 {
		w.bufs = append(w.bufs, payload)
	}
}

// addEvent frames an event: the frame header and the event's per-user head
// share the header array; its shared body and tail are sent as they are.
func (w *frames) addEvent(e core.Event) {
	start := w.header(opText, e.Len())
	w.hdr = e.AppendHead(w.hdr)
	w.bufs = append(w.bufs, w.hdr[start:len(w.hdr):len(w.hdr)])
	if b := e.Body(); len(b) > 0 {
		w.bufs = append(w.bufs, b)
	}
	if t := e.Tail(); len(t) > 0 {
		w.bufs = append(w.bufs, t)
	}
}

// header appends a frame header for n payload bytes to the header array,
// leaving room for an event head after it, and returns where it starts.
func (w *frames) header(op byte, n int) int {
	const room = 10 + 64 // the largest frame header and an event head
	if cap(w.hdr)-len(w.hdr) < room {
		// A new array: earlier headers stay valid in the old one.
		w.hdr = make([]byte, 0, 2*cap(w.hdr)+room)
	}
	start := len(w.hdr)
	w.hdr = append(w.hdr, 0x80|op) // FIN: never fragmented
	switch {
	case n < 126:
		w.hdr = append(w.hdr, byte(n))
	case n <= 0xffff:
		w.hdr = append(w.hdr, 126)
		w.hdr = binary.BigEndian.AppendUint16(w.hdr, uint16(n))
	default:
		w.hdr = append(w.hdr, 127)
		w.hdr = binary.BigEndian.AppendUint64(w.hdr, uint64(n))
	}
	return start
}

func (w *frames) release() {
	clear(w.bufs) // drop references to event bytes
	w.hdr, w.bufs = w.hdr[:0], w.bufs[:0]
	framesPool.Put(w)
}

// Client frames, each decoded strictly by its type: a field another type
// has (conversation_id on a send) is an error, as in a request body.
type (
	frameType struct {
		Type string `json:"type"`
	}
	sendFrame struct {
		Type string `json:"type"`
		core.SendInput
	}
	typingFrame struct {
		Type           string `json:"type"`
		ConversationID string `json:"conversation_id"`
	}
)

// handleFrame acts on one client frame and returns the answer frame, if
// any. Every frame counts as activity of the device.
func handleFrame(ctx context.Context, svc *core.Service, se core.Session, msg []byte) []byte {
	svc.Heartbeat(se)
	var ft frameType
	// The type alone, leniently: the strict decode below, by type, says
	// what is wrong with the rest.
	if err := json.Unmarshal(msg, &ft); err != nil {
		return wire.ErrorEvent(core.AsError(wire.Decode(msg, &ft)), "")
	}
	switch ft.Type {
	case "send":
		var f sendFrame
		if err := wire.Decode(msg, &f); err != nil {
			return wire.ErrorEvent(core.AsError(err), clientMsgID(msg))
		}
		res, err := svc.Send(ctx, se, f.SendInput)
		if err != nil {
			return wire.ErrorEvent(core.AsError(err), f.ClientMsgID)
		}
		return core.SentEvent(f.ClientMsgID, res.Raw)
	case "heartbeat":
		if err := wire.Decode(msg, &ft); err != nil {
			return wire.ErrorEvent(core.AsError(err), "")
		}
		return nil
	case "typing":
		var f typingFrame
		if err := wire.Decode(msg, &f); err != nil {
			return wire.ErrorEvent(core.AsError(err), "")
		}
		if err := svc.Typing(ctx, se, f.ConversationID); err != nil {
			return wire.ErrorEvent(core.AsError(err), "")
		}
		return nil
	}
	return wire.ErrorEvent(core.Errorf(core.KindInvalid, "unknown_frame_type", "unknown frame type %q; expected send, heartbeat or typing", ft.Type), clientMsgID(msg))
}

// clientMsgID is the client_msg_id of a frame that failed to decode, if it
// has a readable one, so the client can match the error to its send.
func clientMsgID(msg []byte) string {
	var f struct {
		ClientMsgID string `json:"client_msg_id"`
	}
	_ = json.Unmarshal(msg, &f)
	return f.ClientMsgID
}
