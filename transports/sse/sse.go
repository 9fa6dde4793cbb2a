// Package sse is the Server-Sent Events transport: GET /v1/sse?cursor=N
// streams text/event-stream, one event per `data:` line, durable events
// with `id: <seq>` so EventSource resumes by Last-Event-ID.
//
// The server side is written on net/http rather than r3labs/sse's Server:
// that server is built around named streams shared by subscribers, with an
// in-memory replay log that grows without bound (AutoReplay). chatgate's
// streams are per device and resume from the user's durable inbox, which
// is the core's job; what is left for SSE is framing, flushing and
// heartbeats, a few lines.
package sse

import (
	"errors"
	"net/http"
	"strconv"
	"sync"
	"time"

	"github.com/chatgate/chatgate/core"
	"github.com/chatgate/chatgate/transports"
)

// Name is the protocol name of SSE.
const Name = "sse"

// Options tune the transport.
type Options struct {
	// Heartbeat is the idle time after which a `: ping` comment is sent, to
	// keep proxies (often 60 s idle timeouts) from closing the stream.
	Heartbeat time.Duration
	// WriteTimeout cuts a client that does not read (its TCP window full).
	WriteTimeout time.Duration
}

// DefaultOptions are the production settings.
var DefaultOptions = Options{Heartbeat: 15 * time.Second, WriteTimeout: 10 * time.Second}

// New returns the SSE endpoint.
func New(svc *core.Service, o Options) transports.Endpoint {
	return transports.Endpoint{Name: Name, Path: "/v1/sse", Handler: func(w http.ResponseWriter, r *http.Request, se core.Session) error {
		cursor, err := transports.Cursor(r)
		if err != nil {
			return err
		}
		// EventSource sends the last id it saw when it reconnects by
		// itself; it wins over the cursor of the original URL.
		if id := r.Header.Get("Last-Event-ID"); id != "" {
			if cursor, err = strconv.ParseUint(id, 10, 64); err != nil {
				return core.Errorf(core.KindInvalid, "invalid_cursor", "Last-Event-ID must be a non-negative integer")
			}
		}
		release, err := svc.AdmitConn(se, Name)
		if err != nil {
			return err
		}
		defer release()
		h := w.Header()
		h.Set("Content-Type", "text/event-stream")
		h.Set("Cache-Control", "no-store")
		h.Set("X-Accel-Buffering", "no") // nginx: do not buffer the stream
		t := &transport{w: w, rc: http.NewResponseController(w), timeout: o.WriteTimeout}
		// The server's request-wide read deadline is for requests that
		// end; a stream's request never does (its writes carry their own).
		_ = t.rc.SetReadDeadline(time.Time{})
		w.WriteHeader(http.StatusOK)
		if err := t.raw([]byte("retry: 2000\n: stream open\n\n")); err != nil {
			return nil
		}
		// Errors after the headers cannot become an error response: the
		// stream just ends and the client resumes by its last id.
		_ = transports.Pump(r.Context(), svc, se, cursor, t, o.Heartbeat, func() error {
			return t.raw([]byte(": ping\n\n"))
		})
		return nil
	}}
}

// transport frames events for one SSE response.
type transport struct {
	w       http.ResponseWriter
	rc      *http.ResponseController
	timeout time.Duration
	buf     []byte

	mu     sync.Mutex // orders deadline changes of writes and Close
	closed bool
}

var _ transports.Transport = (*transport)(nil)

func (t *transport) Name() string { return Name }

func (t *transport) Write(ev core.Event) error { return t.WriteMany(ev) }

// WriteMany frames the events and flushes once.
func (t *transport) WriteMany(evs ...core.Event) error {
	b := t.buf[:0]
	for _, e := range evs {
		if e.Durable() {
			b = append(b, "id: "...)
			b = strconv.AppendUint(b, e.Seq, 10)
			b = append(b, '\n')
		}
		b = append(b, "data: "...)
		b = e.AppendTo(b)
		b = append(b, "\n\n"...)
	}
	t.buf = b
	return t.raw(b)
}

func (t *transport) raw(b []byte) error {
	t.mu.Lock()
	if t.closed {
		t.mu.Unlock()
		return errClosed
	}
	_ = t.rc.SetWriteDeadline(time.Now().Add(t.timeout))
	t.mu.Unlock()
	if _, err := t.w.Write(b); err != nil {
		return err
	}
	return t.rc.Flush()
}

var errClosed = errors.New("sse: stream closed")

// Close cuts the stream: a write in progress fails at once (its deadline
// becomes now) and later writes are refused, so the handler returns.
func (t *transport) Close() error {
	t.mu.Lock()
	defer t.mu.Unlock()
	t.closed = true
	return t.rc.SetWriteDeadline(time.Now())
}
