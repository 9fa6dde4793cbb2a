// Package poll is the short-polling transport: GET /v1/poll?cursor=N
// answers at once with the durable events after N.
package poll

import (
	"net/http"
	"strconv"
	"time"

	"github.com/chatgate/chatgate/core"
	"github.com/chatgate/chatgate/transports"
)

// Name is the protocol name of short polling.
const Name = "polling"

// New returns the short-polling endpoint.
func New(svc *core.Service) transports.Endpoint {
	return transports.Endpoint{Name: Name, Path: "/v1/poll", Handler: func(w http.ResponseWriter, r *http.Request, se core.Session) error {
		return Serve(w, r, svc, se, Name, 0)
	}}
}

// Serve answers a polling request, holding it up to wait (0: answer at
// once). Short and long polling differ only in wait, and in the transport
// name the request counts under (connection limits, metrics).
func Serve(w http.ResponseWriter, r *http.Request, svc *core.Service, se core.Session, transport string, wait time.Duration) error {
	cursor, err := transports.Cursor(r)
	if err != nil {
		return err
	}
	limit, err := transports.Uint(r, "limit", "invalid_limit")
	if err != nil {
		return err
	}
	release, err := svc.AdmitConn(se, transport)
	if err != nil {
		return err
	}
	defer release()
	page, err := svc.Poll(r.Context(), se, cursor, int(min(limit, core.MaxSyncEvents)), wait)
	if err != nil {
		return err
	}
	svc.Observer().Delivered(transport, len(page.Events))
	return WritePage(w, page)
}

// WritePage writes {"events":[...],"cursor":N,"has_more":bool}, the answer
// shape shared by short and long polling.
func WritePage(w http.ResponseWriter, p core.Page) error {
	n := 64
	for _, e := range p.Events {
		n += e.Len() + 1
	}
	b := make([]byte, 0, n)
	b = append(b, `{"events":`...)
	b = core.AppendEvents(b, p.Events)
	b = append(b, `,"cursor":`...)
	b = strconv.AppendUint(b, p.Cursor, 10)
	b = append(b, `,"has_more":`...)
	b = strconv.AppendBool(b, p.HasMore)
	b = append(b, "}\n"...)
	h := w.Header()
	h.Set("Content-Type", "application/json")
	h.Set("Cache-Control", "no-store")
	_, err := w.Write(b)
	return err
}
