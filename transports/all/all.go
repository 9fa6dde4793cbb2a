// Package all lists chatgate's transports in the order clients should try
// them. It is the one place a new transport is added on the server side.
package all

import (
	"time"

	"github.com/chatgate/chatgate/core"
	"github.com/chatgate/chatgate/transports"
	"github.com/chatgate/chatgate/transports/longpoll"
	"github.com/chatgate/chatgate/transports/poll"
	"github.com/chatgate/chatgate/transports/sse"
	"github.com/chatgate/chatgate/transports/ws"
)

// Options tune the streaming transports.
type Options struct {
	// Heartbeat is the SSE ping comment interval and the WebSocket ping
	// period (a socket silent for twice as long is closed).
	Heartbeat time.Duration
	// WriteTimeout cuts a client whose stream write is blocked this long.
	WriteTimeout time.Duration
}

// Endpoints returns every transport, cheapest and fastest first.
func Endpoints(svc *core.Service, o Options) []transports.Endpoint {
	if o.Heartbeat <= 0 {
		o.Heartbeat = 15 * time.Second
	}
	if o.WriteTimeout <= 0 {
		o.WriteTimeout = 10 * time.Second
	}
	return []transports.Endpoint{
		ws.New(svc, ws.Options{PingPeriod: o.Heartbeat, PongWait: 2 * o.Heartbeat, WriteTimeout: o.WriteTimeout}),
		sse.New(svc, sse.Options{Heartbeat: o.Heartbeat, WriteTimeout: o.WriteTimeout}),
		longpoll.New(svc, o.WriteTimeout),
		poll.New(svc),
	}
}
