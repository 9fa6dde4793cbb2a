package transports

import (
	"context"
	"errors"
	"time"

	"github.com/chatgate/chatgate/core"
	"github.com/chatgate/chatgate/wire"
)

// StreamBatch is how many backlog events a streaming transport writes at a
// time.
const StreamBatch = 100

// Pump moves a device's events from the core's resume path to t until ctx
// ends or writing fails. Every idle period of heartbeat it calls ping (for
// transports that keep proxies awake themselves, ping may be nil). It is
// the one loop SSE and WebSocket share.
func Pump(ctx context.Context, svc *core.Service, se core.Session, cursor uint64, t Transport, heartbeat time.Duration, ping func() error) error {
	st := svc.OpenStream(se, cursor)
	defer st.Close()
	for {
		wctx, cancel := ctx, context.CancelFunc(func() {})
		if ping != nil {
			wctx, cancel = context.WithTimeout(ctx, heartbeat)
		}
		evs, err := st.Next(wctx, StreamBatch)
		cancel()
		switch {
		case err == nil:
		case ping != nil && errors.Is(err, context.DeadlineExceeded) && ctx.Err() == nil:
			if err := ping(); err != nil {
				return err
			}
			continue
		case errors.Is(err, core.ErrSlowConsumer):
			// Say why before closing; the client resumes by cursor.
			_ = t.Write(ErrorEvent(core.ErrSlowConsumer, ""))
			return err
		default:
			return err
		}
		if err := t.WriteMany(evs...); err != nil {
			return err
		}
	}
}

// ErrorEvent encodes {"type":"error","error":{...},"client_msg_id":..}, the
// event a streaming transport sends for a failed client frame or before it
// closes a connection for a reason the client should know.
func ErrorEvent(err error, clientMsgID string) core.Event {
	return core.Event{Type: "error", Data: wire.ErrorEvent(core.AsError(err), clientMsgID)}
}
