// Package ws is the WebSocket transport (github.com/olahol/melody): GET
// /v1/ws?cursor=N upgrades to a socket carrying one JSON event per text
// frame from the server, and send, heartbeat and typing frames from the
// client.
package ws

import (
	"context"
	"encoding/json"
	"net/http"
	"sync"
	"time"

	"github.com/gorilla/websocket"
	"github.com/olahol/melody"

	"github.com/chatgate/chatgate/core"
	"github.com/chatgate/chatgate/transports"
	"github.com/chatgate/chatgate/wire"
)

// Name is the protocol name of WebSocket.
const Name = "websocket"

// Options tune the transport.
type Options struct {
	// PingPeriod is how often the server pings; a client that has not
	// answered within PongWait is disconnected.
	PingPeriod, PongWait time.Duration
	// QueueFrames bounds the frames waiting to be written to one socket.
	QueueFrames int
	// WriteTimeout cuts a client that does not read (its TCP window full).
	WriteTimeout time.Duration
}

// DefaultOptions are the production settings.
var DefaultOptions = Options{PingPeriod: 20 * time.Second, PongWait: 30 * time.Second, QueueFrames: 256, WriteTimeout: 10 * time.Second}

const keySession, keyCursor, keyConn = "se", "cursor", "conn"

// conn is the per-socket state kept in the melody session.
//
// melody drops a frame when a session's output buffer is full, and its
// Close is itself a frame, dropped the same way. So frames are written only
// against credits: one per free buffer slot but one, taken before a write
// and given back when melody reports the frame sent. A client that does not
// read makes writers wait instead of losing frames; the core's bounded
// stream queue then overflows and cuts it, and the close frame always fits.
type conn struct {
	ctx     context.Context
	cancel  context.CancelFunc
	done    chan struct{}
	credits chan struct{}
}

func (c *conn) write(s *melody.Session, frame []byte) error {
	select {
	case c.credits <- struct{}{}:
	case <-c.ctx.Done():
		return c.ctx.Err()
	}
	return s.Write(frame)
}

// New returns the WebSocket endpoint.
func New(svc *core.Service, o Options) transports.Endpoint {
	m := melody.New()
	m.Config.MaxMessageSize = wire.MaxBodyBytes // melody's default of 512 bytes would cut messages
	m.Config.MessageBufferSize = o.QueueFrames
	m.Config.PingPeriod, m.Config.PongWait = o.PingPeriod, o.PongWait
	m.Config.WriteWait = o.WriteTimeout
	// Any origin may connect: sockets authenticate with a token, never a
	// cookie, so a foreign page cannot borrow a user's session.
	m.Upgrader.CheckOrigin = func(*http.Request) bool { return true }

	m.HandleConnect(func(s *melody.Session) {
		se := s.MustGet(keySession).(core.Session)
		cursor := s.MustGet(keyCursor).(uint64)
		ctx, cancel := context.WithCancel(context.Background())
		c := &conn{ctx: ctx, cancel: cancel, done: make(chan struct{}), credits: make(chan struct{}, o.QueueFrames-1)}
		s.Set(keyConn, c)
		go func() {
			defer close(c.done)
			_ = transports.Pump(ctx, svc, se, cursor, transport{s, c}, 0, nil)
			_ = s.Close()
		}()
	})
	m.HandleSentMessage(func(s *melody.Session, _ []byte) {
		if v, ok := s.Get(keyConn); ok {
			select {
			case <-v.(*conn).credits:
			default:
			}
		}
	})
	m.HandleDisconnect(func(s *melody.Session) {
		if v, ok := s.Get(keyConn); ok {
			c := v.(*conn)
			c.cancel()
			<-c.done // the pump ends with the socket: no goroutine outlives it
		}
	})
	m.HandleMessage(func(s *melody.Session, msg []byte) {
		se := s.MustGet(keySession).(core.Session)
		v, _ := s.Get(keyConn)
		c, _ := v.(*conn)
		if c == nil {
			return
		}
		if out := handleFrame(c.ctx, svc, se, msg); out != nil {
			_ = c.write(s, out)
		}
	})

	// Sockets are hijacked, so the HTTP server's shutdown does not wait for
	// them: Close waits for their handlers (the core's Drain has ended their
	// streams, which closes them) before closing melody, whose hub would
	// otherwise strand a handler that unregisters as the hub exits.
	var active sync.WaitGroup
	closeAll := func() error {
		done := make(chan struct{})
		go func() { active.Wait(); close(done) }()
		select {
		case <-done:
		case <-time.After(o.WriteTimeout + o.PongWait):
		}
		return m.Close()
	}
	return transports.Endpoint{Name: Name, Path: "/v1/ws", Close: closeAll, Handler: func(w http.ResponseWriter, r *http.Request, se core.Session) error {
		cursor, err := transports.Cursor(r)
		if err != nil {
			return err
		}
		if !websocket.IsWebSocketUpgrade(r) {
			return core.Errorf(core.KindInvalid, "websocket_upgrade_required", "this endpoint needs a WebSocket upgrade request")
		}
		// After a successful upgrade this returns when the socket closes; a
		// failed upgrade has already been answered by the upgrader.
		active.Add(1)
		defer active.Done()
		_ = m.HandleRequestWithKeys(w, r, map[string]any{keySession: se, keyCursor: cursor})
		return nil
	}}
}

// frame is any client frame; which fields count depends on Type.
type frame struct {
	Type string `json:"type"`
	core.SendInput
	ConversationID string `json:"conversation_id"`
}

// handleFrame acts on one client frame and returns the answer frame, if
// any. Every frame counts as activity of the device.
func handleFrame(ctx context.Context, svc *core.Service, se core.Session, msg []byte) []byte {
	svc.Heartbeat(se)
	var f frame
	if err := wire.Decode(msg, &f); err != nil {
		return wire.ErrorEvent(core.AsError(err), "")
	}
	switch f.Type {
	case "send":
		res, err := svc.Send(ctx, se, f.SendInput)
		if err != nil {
			return wire.ErrorEvent(core.AsError(err), f.ClientMsgID)
		}
		b, _ := json.Marshal(struct {
			Type        string          `json:"type"`
			ClientMsgID string          `json:"client_msg_id"`
			Message     json.RawMessage `json:"message"`
		}{"sent", f.ClientMsgID, res.Raw})
		return b
	case "heartbeat":
		return nil
	case "typing":
		if err := svc.Typing(ctx, se, f.ConversationID); err != nil {
			return wire.ErrorEvent(core.AsError(err), "")
		}
		return nil
	}
	return wire.ErrorEvent(core.Errorf(core.KindInvalid, "unknown_frame_type", "unknown frame type %q; expected send, heartbeat or typing", f.Type), f.ClientMsgID)
}

// transport writes events to one melody session, one per text frame.
type transport struct {
	s *melody.Session
	c *conn
}

var _ transports.Transport = transport{}

func (t transport) Name() string { return Name }

func (t transport) Write(ev core.Event) error { return t.c.write(t.s, ev.Data) }

func (t transport) WriteMany(evs ...core.Event) error {
	for _, e := range evs {
		if err := t.c.write(t.s, e.Data); err != nil {
			return err
		}
	}
	return nil
}

// Close cuts the socket with close code 1013 (try again later): the only
// reason the core closes a transport is a client too slow for its queue,
// which should reconnect with its cursor.
func (t transport) Close() error {
	err := t.s.CloseWithMsg(websocket.FormatCloseMessage(websocket.CloseTryAgainLater, core.ErrSlowConsumer.Code))
	t.c.cancel() // writers waiting for credits give up
	return err
}
