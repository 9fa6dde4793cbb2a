package client

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"time"
)

// pollLimit is the page size asked of /v1/poll and /v1/longpoll.
const pollLimit = 100

type pageJSON struct {
	Events  []json.RawMessage `json:"events"`
	Cursor  uint64            `json:"cursor"`
	HasMore bool              `json:"has_more"`
}

// pollSession runs short polling (GET /v1/poll) or long polling (GET
// /v1/longpoll) until a request fails. Every answered page proves the
// transport works. The first long poll does not wait, so Connect learns
// at once whether long polling is served.
func (cn *Conn) pollSession(s *session, long bool) error {
	path := "/v1/poll"
	if long {
		path = "/v1/longpoll"
	}
	timer := time.NewTimer(0)
	defer timer.Stop()
	for first := true; ; first = false {
		cur := cn.cursor.Load()
		q := fmt.Sprintf("%s?cursor=%d&limit=%d", path, cur, pollLimit)
		var wait time.Duration
		if long {
			if !first {
				wait = cn.opts.LongPollWait
			}
			q += fmt.Sprintf("&wait=%d", int(wait/time.Second))
		}
		ctx, cancel := context.WithTimeout(cn.ctx, wait+cn.opts.ConnectTimeout)
		start := time.Now()
		var page pageJSON
		err := cn.c.do(ctx, cn.serverURL(), http.MethodGet, q, true, nil, &page)
		cancel()
		if err != nil {
			return httpSessionError(err)
		}
		s.markUp()
		s.progress = true
		for _, raw := range page.Events {
			if err := s.deliver(raw); err != nil {
				return err
			}
		}
		if len(page.Events) == 0 && page.Cursor < cur {
			// The server pulls a cursor beyond its inbox head back to the
			// head (restored from an older backup, or a cursor of another
			// account): follow it, or every message until the inbox grows
			// past the old cursor would be dropped as already delivered.
			cn.report(fmt.Errorf("chatgate: server moved the cursor back from %d to %d", cur, page.Cursor))
			cn.cursor.Store(page.Cursor)
		}
		if page.HasMore {
			continue
		}
		var pause time.Duration
		switch {
		case !long:
			pause = cn.opts.PollInterval
		case len(page.Events) == 0 && wait > 0 && time.Since(start) < wait/10:
			// An empty answer long before the wait: do not spin.
			pause = cn.c.minBackoff
		default:
			continue
		}
		timer.Reset(pause)
		select {
		case <-cn.ctx.Done():
			return cn.ctx.Err()
		case <-cn.kick:
			timer.Stop() // Go 1.23 timers: no stale tick survives Stop/Reset
		case <-timer.C:
		}
	}
}

// httpSessionError classifies a failed transport request: a 4xx other
// than 401 means the server (or a proxy) does not serve this transport.
func httpSessionError(err error) error {
	var ae *APIError
	if errors.As(err, &ae) && !ae.Temporary() && ae.Status != http.StatusUnauthorized {
		return &refusedError{err}
	}
	return err
}
