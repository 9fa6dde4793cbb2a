// Package longpoll is the long-polling transport: GET
// /v1/longpoll?cursor=N&wait=25 answers like /v1/poll, but holds the
// request until an event exists or wait seconds pass.
package longpoll

import (
	"net/http"
	"time"

	"github.com/chatgate/chatgate/core"
	"github.com/chatgate/chatgate/transports"
	"github.com/chatgate/chatgate/transports/poll"
)

// Name is the protocol name of long polling.
const Name = "longpolling"

// DefaultWait is the wait when the request gives none: under common 30 s
// proxy idle timeouts.
const DefaultWait = 25 * time.Second

// New returns the long-polling endpoint.
//
// grace is how long past its wait a held request may take to be read and
// answered: the server's request-wide deadlines are for requests that
// answer at once.
func New(svc *core.Service, grace time.Duration) transports.Endpoint {
	return transports.Endpoint{Name: Name, Path: "/v1/longpoll", Handler: func(w http.ResponseWriter, r *http.Request, se core.Session) error {
		wait := DefaultWait
		if r.URL.Query().Has("wait") {
			secs, err := transports.Uint(r, "wait", "invalid_wait")
			if err != nil {
				return err
			}
			if time.Duration(secs)*time.Second > core.MaxPollWait {
				return core.Errorf(core.KindInvalid, "invalid_wait", "wait must be 0 to %d seconds", int(core.MaxPollWait.Seconds()))
			}
			wait = time.Duration(secs) * time.Second
		}
		rc, end := http.NewResponseController(w), time.Now().Add(wait+grace)
		_ = rc.SetReadDeadline(end)
		_ = rc.SetWriteDeadline(end)
		return poll.Serve(w, r, svc, se, Name, wait)
	}}
}
