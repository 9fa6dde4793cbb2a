package client

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net"
	"net/http"
	"strings"
	"sync"
	"time"

	"github.com/gorilla/websocket"
)

const (
	// wsReadLimit bounds one server frame: a message event or "sent"
	// answer of 100,000 code points, escaped at worst, fits.
	wsReadLimit = 4 << 20
	wsWriteWait = 10 * time.Second
)

// errWSClosed ends a Send waiting on a socket that went away; it is
// retried (over the next transport) with the same client_msg_id.
var errWSClosed = errors.New("chatgate: the WebSocket closed before the server answered")

// wsConn is an established WebSocket while its session runs. Reads belong
// to the session; writes (sends, typing, heartbeats) come from any
// goroutine and are serialised by wmu, as gorilla/websocket requires.
type wsConn struct {
	c      *Client
	conn   *websocket.Conn
	wmu    sync.Mutex
	mu     sync.Mutex
	wait   map[string][]chan wsReply // Sends waiting, by client_msg_id
	closed chan struct{}
}

type wsReply struct {
	msg *Message
	err error
}

// wsSession dials GET /v1/ws and reads frames until the socket fails.
// Any answer other than 101 (a proxy that strips Upgrade, a 4xx/5xx) is a
// refusal; 401 is fatal.
func (cn *Conn) wsSession(s *session) error {
	u, err := wsURL(cn.serverURL(), cn.cursor.Load())
	if err != nil {
		return err
	}
	d := *cn.c.dialer
	d.HandshakeTimeout = cn.opts.ConnectTimeout
	h := http.Header{}
	h.Set("Authorization", "Bearer "+cn.c.Token())
	cn.c.touch()
	conn, resp, err := d.DialContext(cn.ctx, u, h)
	if err != nil {
		if resp != nil {
			ae := readAPIError(resp)
			if ae.Status == http.StatusUnauthorized {
				return ae
			}
			return &refusedError{fmt.Errorf("WebSocket upgrade answered %d: %w", resp.StatusCode, ae)}
		}
		return err
	}
	conn.SetReadLimit(wsReadLimit)
	w := &wsConn{c: cn.c, conn: conn, wait: map[string][]chan wsReply{}, closed: make(chan struct{})}

	stop, closerDone := make(chan struct{}), make(chan struct{})
	go func() { // Close (or the end of the session) unblocks the reader
		defer close(closerDone)
		select {
		case <-cn.ctx.Done():
			_ = conn.WriteControl(websocket.CloseMessage,
				websocket.FormatCloseMessage(websocket.CloseNormalClosure, ""), time.Now().Add(time.Second))
		case <-stop:
		}
		conn.Close()
	}()
	defer func() {
		cn.mu.Lock()
		cn.ws = nil
		cn.mu.Unlock()
		w.mu.Lock()
		close(w.closed)
		w.mu.Unlock()
		close(stop)
		<-closerDone
	}()
	cn.mu.Lock()
	cn.ws = w
	cn.mu.Unlock()
	s.markUp()

	idle := cn.opts.IdleTimeout
	conn.SetPingHandler(func(data string) error {
		_ = conn.SetReadDeadline(time.Now().Add(idle))
		err := conn.WriteControl(websocket.PongMessage, []byte(data), time.Now().Add(wsWriteWait))
		var ne net.Error
		if err == websocket.ErrCloseSent || errors.As(err, &ne) && ne.Timeout() {
			return nil
		}
		return err
	})
	for {
		_ = conn.SetReadDeadline(time.Now().Add(idle))
		mt, data, err := conn.ReadMessage()
		if err != nil {
			return err
		}
		if mt != websocket.TextMessage {
			continue
		}
		if err := s.deliver(data); err != nil {
			_ = conn.WriteControl(websocket.CloseMessage,
				websocket.FormatCloseMessage(websocket.CloseNormalClosure, "resuming"), time.Now().Add(time.Second))
			return err
		}
	}
}

func wsURL(base string, cursor uint64) (string, error) {
	switch {
	case strings.HasPrefix(base, "https://"):
		base = "wss://" + strings.TrimPrefix(base, "https://")
	case strings.HasPrefix(base, "http://"):
		base = "ws://" + strings.TrimPrefix(base, "http://")
	default:
		return "", fmt.Errorf("chatgate: server URL %q is not http(s)", base)
	}
	return fmt.Sprintf("%s/v1/ws?cursor=%d", base, cursor), nil
}

// write sends one client frame. A failed write closes the socket, so the
// session ends and reconnects.
func (w *wsConn) write(v any) error {
	b, err := json.Marshal(v)
	if err != nil {
		return err
	}
	w.wmu.Lock()
	defer w.wmu.Unlock()
	_ = w.conn.SetWriteDeadline(time.Now().Add(wsWriteWait))
	if err := w.conn.WriteMessage(websocket.TextMessage, b); err != nil {
		w.conn.Close()
		return err
	}
	w.c.touch()
	return nil
}

// send writes a send frame and waits for its "sent" or "error" answer.
func (w *wsConn) send(ctx context.Context, in SendInput) (*Message, error) {
	ch := make(chan wsReply, 1)
	w.mu.Lock()
	select {
	case <-w.closed:
		w.mu.Unlock()
		return nil, errWSClosed
	default:
	}
	w.wait[in.ClientMsgID] = append(w.wait[in.ClientMsgID], ch)
	w.mu.Unlock()
	defer w.forget(in.ClientMsgID, ch)

	if err := w.write(struct {
		Type string `json:"type"`
		SendInput
	}{"send", in}); err != nil {
		return nil, err
	}
	select {
	case r := <-ch:
		return r.msg, r.err
	case <-w.closed:
		return nil, errWSClosed
	case <-ctx.Done():
		return nil, ctx.Err()
	}
}

// resolve answers the Sends waiting for id; it reports whether any was.
func (w *wsConn) resolve(id string, r wsReply) bool {
	w.mu.Lock()
	defer w.mu.Unlock()
	chs := w.wait[id]
	delete(w.wait, id)
	for _, ch := range chs {
		ch <- r // buffered, one answer per waiter
	}
	return len(chs) > 0
}

func (w *wsConn) forget(id string, ch chan wsReply) {
	w.mu.Lock()
	defer w.mu.Unlock()
	chs := w.wait[id]
	for i, c := range chs {
		if c == ch {
			w.wait[id] = append(chs[:i:i], chs[i+1:]...)
			break
		}
	}
	if len(w.wait[id]) == 0 {
		delete(w.wait, id)
	}
}
