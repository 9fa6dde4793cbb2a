package client

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
	"mime"
	"net/http"
	"sync/atomic"
	"time"

	"github.com/r3labs/sse/v2"
	backoffv1 "gopkg.in/cenkalti/backoff.v1"
)

// sseMaxEvent bounds one SSE event. A message holds at most 100,000 code
// points (400 kB of UTF-8, 600 kB if the server escapes every character
// as \uXXXX), plus the event's own fields.
const sseMaxEvent = 2 << 20

var (
	errNeverStarted = errors.New("the stream sent no byte (a buffering proxy?)")
	errStreamIdle   = errors.New("the stream went silent (no heartbeat)")
	errStreamEnded  = errors.New("the server ended the stream")
)

// sseSession reads GET /v1/sse with r3labs/sse's client, configured so
// that it stays a plain reader under the Conn's control:
//   - ReconnectStrategy is StopBackOff: it never reconnects by itself (its
//     default would retry with its own backoff and Last-Event-ID, behind
//     the Conn's cursor);
//   - ResponseValidator checks status and content type (so a proxy's page
//     is a refusal, not an empty stream), closes refused bodies (r3labs
//     does not when a validator fails), wraps the body to feed the idle
//     watchdog (r3labs hides `: ping` comments from handlers), and waits
//     for the first byte, so a stream a proxy buffers counts as refused;
//   - ClientMaxBufferSize is 2 MiB (its 64 KiB default cannot hold a
//     100,000-character message);
//   - the token goes in the Authorization header, out of URLs and logs.
//
// The stream's `retry:` field is ignored: the Conn's backoff decides when
// to reconnect, and its cursor (not Last-Event-ID) where to resume.
func (cn *Conn) sseSession(s *session) error {
	ctx, cancel := context.WithCancelCause(cn.ctx)
	defer cancel(nil)
	wd := startWatchdog(ctx, cancel, cn.opts.ConnectTimeout, cn.opts.IdleTimeout)
	defer wd.stop()

	sc := sse.NewClient(fmt.Sprintf("%s/v1/sse?cursor=%d", cn.serverURL(), cn.cursor.Load()),
		sse.ClientMaxBufferSize(sseMaxEvent))
	sc.Connection = cn.c.http
	sc.Headers["Authorization"] = "Bearer " + cn.c.Token()
	sc.ReconnectStrategy = &backoffv1.StopBackOff{}
	sc.ResponseValidator = func(_ *sse.Client, resp *http.Response) error {
		if resp.StatusCode != http.StatusOK {
			ae := readAPIError(resp)
			resp.Body.Close()
			return httpSessionError(ae)
		}
		if mt, _, _ := mime.ParseMediaType(resp.Header.Get("Content-Type")); mt != "text/event-stream" {
			resp.Body.Close()
			return &refusedError{fmt.Errorf("SSE answered with content type %q", resp.Header.Get("Content-Type"))}
		}
		br := bufio.NewReader(&touchReader{r: resp.Body, touch: wd.touch})
		if _, err := br.Peek(1); err != nil {
			resp.Body.Close()
			if cause := context.Cause(ctx); errors.Is(cause, errNeverStarted) {
				return cause
			}
			return err
		}
		resp.Body = struct {
			io.Reader
			io.Closer
		}{br, resp.Body}
		s.markUp()
		return nil
	}
	cn.c.touch()

	var stop error // why the handler ended the session
	err := sc.SubscribeWithContext(ctx, "", func(ev *sse.Event) {
		if stop != nil || len(ev.Data) == 0 {
			return // after a stop, or a retry:/id:-only event
		}
		if err := s.deliver(ev.Data); err != nil {
			stop = err
			cancel(err)
		}
	})
	switch {
	case stop != nil:
		return stop
	case cn.ctx.Err() != nil:
		return cn.ctx.Err()
	case context.Cause(ctx) != nil:
		return context.Cause(ctx) // the watchdog
	case err != nil:
		return err
	}
	return errStreamEnded
}

// touchReader reports every successful read: bytes arrived.
type touchReader struct {
	r     io.Reader
	touch func()
}

func (t *touchReader) Read(p []byte) (int, error) {
	n, err := t.r.Read(p)
	if n > 0 {
		t.touch()
	}
	return n, err
}

// watchdog cancels a stream that stays silent: longer than first before
// its first byte (errNeverStarted, a refusal), or longer than idle later.
type watchdog struct {
	last    atomic.Int64
	started atomic.Bool
	startc  chan struct{} // closed by the first touch
	stopc   chan struct{}
	done    chan struct{}
}

func startWatchdog(ctx context.Context, cancel context.CancelCauseFunc, first, idle time.Duration) *watchdog {
	w := &watchdog{startc: make(chan struct{}), stopc: make(chan struct{}), done: make(chan struct{})}
	w.last.Store(time.Now().UnixNano())
	go func() {
		defer close(w.done)
		t := time.NewTimer(first)
		defer t.Stop()
		startc := w.startc
		for {
			select {
			case <-ctx.Done():
				return
			case <-w.stopc:
				return
			case <-startc: // the idle limit applies from now on
				startc = nil
			case <-t.C:
			}
			limit, cause := first, error(&refusedError{errNeverStarted})
			if w.started.Load() {
				limit, cause = idle, errStreamIdle
			}
			since := time.Duration(time.Now().UnixNano() - w.last.Load())
			if since >= limit {
				cancel(cause)
				return
			}
			t.Reset(limit - since)
		}
	}()
	return w
}

// touch records that bytes arrived. It is called from the reading
// goroutine.
func (w *watchdog) touch() {
	w.last.Store(time.Now().UnixNano())
	if w.started.CompareAndSwap(false, true) {
		close(w.startc)
	}
}

// stop ends the watchdog and waits for its goroutine.
func (w *watchdog) stop() {
	close(w.stopc)
	<-w.done
}
