// Package transports holds the ways a client receives its events. Each
// transport adapts one kind of client connection to the core's resume path
// and live bus, and knows nothing of messages, users or groups: it moves
// encoded events and reports liveness.
package transports

import (
	"net/http"
	"strconv"

	"github.com/chatgate/chatgate/core"
)

// Transport is one client connection as the core sees it: it is handed
// events already encoded (core.Event: the JSON bytes, plus the seq of a
// durable event for framings that carry it, like SSE's id:) and only moves
// the bytes. Streaming transports implement it; request/response transports
// (polling) answer from the resume path directly.
type Transport interface {
	// Name is the transport's protocol name as listed by /v1/negotiate.
	Name() string
	// Write sends one encoded event.
	Write(event core.Event) error
	// WriteMany sends several events at once, so a burst costs one flush.
	WriteMany(events ...core.Event) error
	// Close ends the connection; the client resumes by cursor.
	Close() error
}

// HandlerFunc serves one request of an authenticated device. A returned
// error is rendered by the gateway as the protocol's error object, so a
// transport never writes error bodies itself.
type HandlerFunc func(w http.ResponseWriter, r *http.Request, se core.Session) error

// Endpoint is a transport mounted on the gateway.
type Endpoint struct {
	Name    string // protocol name, e.g. "polling"
	Path    string // e.g. "/v1/poll"
	Handler HandlerFunc
	// Close, if set, releases what the transport holds beyond its requests
	// (WebSocket sessions outlive the HTTP server's shutdown); the node
	// calls it after the server has stopped.
	Close func() error
}

// Cursor reads the resume position of a request: the cursor query
// parameter, defaulting to 0 (everything).
func Cursor(r *http.Request) (uint64, error) {
	return Uint(r, "cursor", "invalid_cursor")
}

// Uint reads an optional non-negative integer query parameter.
func Uint(r *http.Request, name, code string) (uint64, error) {
	v := r.URL.Query().Get(name)
	if v == "" {
		return 0, nil
	}
	n, err := strconv.ParseUint(v, 10, 64)
	if err != nil {
		return 0, core.Errorf(core.KindInvalid, code, "%s must be a non-negative integer", name)
	}
	return n, nil
}
