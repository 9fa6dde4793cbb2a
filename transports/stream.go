package transports

import (
	"context"
	"errors"
	"time"

	"github.com/chatgate/chatgate/core"
)

// StreamBatch is how many backlog events a streaming transport writes at a
// time.
const StreamBatch = 100

// Pump moves a device's events from the core's resume path to t until ctx
// ends or writing fails. A client too slow for its bounded queue is cut at
// once through t.Close. Every idle period of heartbeat it calls ping (for
// transports that keep proxies awake themselves, ping may be nil). It holds
// a goroutine per connection, which SSE has anyway (net/http keeps the
// handler running for the response); WebSocket instead writes from
// goroutines started by core.StreamHooks.Ready, so an idle socket holds
// none.
func Pump(ctx context.Context, svc *core.Service, se core.Session, cursor uint64, t Transport, heartbeat time.Duration, ping func() error) error {
	st := svc.OpenStream(se, cursor, core.StreamHooks{Cut: func() { _ = t.Close() }, Transport: t.Name()})
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
		default:
			return err
		}
		if err := t.WriteMany(evs...); err != nil {
			return err
		}
	}
}
