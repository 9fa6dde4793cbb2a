package core

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"strconv"
	"strings"
	"sync"
	"time"
)

// Notification asks a push provider to alert a user whose devices are all
// offline about a message.
type Notification struct {
	// ID is stable across retries of the same notification, so a receiver
	// can drop duplicates (delivery is at least once).
	ID      string
	UserID  ID
	Message json.RawMessage
}

// ErrPushRejected is wrapped by a Notifier whose provider refused a
// notification for good (a 4xx answer, say): it is dropped, not retried.
var ErrPushRejected = errors.New("push rejected")

// Notifier hands notifications to a push provider (APNs, FCM, a webhook).
// A nil error means the provider accepted it; any error is retried with
// backoff.
type Notifier interface {
	Notify(ctx context.Context, n Notification) error
}

// Push retry policy.
const (
	pushBatch       = 256
	pushWorkers     = 8
	pushBackoffMin  = 500 * time.Millisecond
	pushBackoffMax  = 5 * time.Minute
	pushMaxAge      = 24 * time.Hour // a notification older than this is dropped, with a log
	pushIdleRecheck = 5 * time.Second
)

// pusher drains the durable push outbox into a Notifier.
type pusher struct {
	outbox   PushOutbox
	notifier Notifier
	log      *slog.Logger
	wake     chan struct{}

	mu    sync.Mutex
	retry map[string]retryState
}

type retryState struct {
	attempts int
	next     time.Time
}

func newPusher(o PushOutbox, n Notifier, log *slog.Logger) *pusher {
	return &pusher{outbox: o, notifier: n, log: log, wake: make(chan struct{}, 1), retry: map[string]retryState{}}
}

// poke tells the pusher that new entries may be waiting.
func (p *pusher) poke() {
	select {
	case p.wake <- struct{}{}:
	default:
	}
}

func (p *pusher) run(ctx context.Context) {
	for {
		wait := p.round(ctx)
		t := time.NewTimer(wait)
		select {
		case <-ctx.Done():
			t.Stop()
			return
		case <-p.wake:
		case <-t.C:
		}
		t.Stop()
	}
}

// round sends what is due and returns how long to sleep before the next.
// It pages through the whole outbox, so entries waiting out a backoff never
// hold up newer ones.
func (p *pusher) round(ctx context.Context) time.Duration {
	now := time.Now()
	wait := pushIdleRecheck
	after := ""
	for {
		pending, err := p.outbox.PendingPushes(ctx, after, pushBatch)
		if err != nil {
			if ctx.Err() == nil {
				p.log.Error("read push outbox", "err", err)
			}
			return pushIdleRecheck
		}
		var due []Push
		p.mu.Lock()
		for _, e := range pending {
			r := p.retry[e.Key]
			if r.next.After(now) {
				wait = min(wait, r.next.Sub(now))
				continue
			}
			due = append(due, e)
		}
		p.mu.Unlock()
		p.deliverAll(ctx, due)
		if len(pending) < pushBatch || ctx.Err() != nil {
			break
		}
		after = pending[len(pending)-1].Key
	}
	p.mu.Lock()
	defer p.mu.Unlock()
	for _, r := range p.retry {
		wait = min(wait, max(time.Until(r.next), 0))
	}
	return wait
}

func (p *pusher) deliverAll(ctx context.Context, due []Push) {
	sem := make(chan struct{}, pushWorkers)
	var wg sync.WaitGroup
	for _, e := range due {
		sem <- struct{}{}
		wg.Add(1)
		go func(e Push) {
			defer func() { <-sem; wg.Done() }()
			p.deliver(ctx, e)
		}(e)
	}
	wg.Wait()
}

func (p *pusher) deliver(ctx context.Context, e Push) {
	var m struct {
		ID        ID   `json:"id"`
		CreatedAt Time `json:"created_at"`
	}
	_ = json.Unmarshal(e.Message, &m)
	err := p.notifier.Notify(ctx, Notification{ID: m.ID.String() + "-" + e.UserID.String(), UserID: e.UserID, Message: e.Message})
	if err != nil && ctx.Err() != nil {
		return // shutting down: it stays in the outbox for the next start
	}
	if err != nil && !errors.Is(err, ErrPushRejected) && time.Since(m.CreatedAt.Time) < pushMaxAge {
		p.mu.Lock()
		r := p.retry[e.Key]
		r.attempts++
		backoff := pushBackoffMin << min(r.attempts-1, 20)
		r.next = time.Now().Add(min(backoff, pushBackoffMax))
		p.retry[e.Key] = r
		p.mu.Unlock()
		p.log.Warn("push failed; will retry", "user", e.UserID, "message", m.ID, "attempt", r.attempts, "err", err)
		return
	}
	if err != nil {
		p.log.Error("push dropped: rejected, or retried for the maximum age", "user", e.UserID, "message", m.ID, "err", err)
	}
	if derr := p.outbox.DeletePush(ctx, e.Key); derr != nil {
		p.log.Error("delete delivered push", "key", e.Key, "err", derr)
		return
	}
	p.mu.Lock()
	delete(p.retry, e.Key)
	p.mu.Unlock()
}

// PushKey is the outbox key of a notification, Push.Key: opaque to the
// pusher, the same in every store, and sorting as (message id, user id)
// does. It keeps the text form of the first store, so a notification
// pending across an upgrade keeps its identity.
func PushKey(msg, uid ID) string {
	b := make([]byte, 0, 44)
	b = append(b, "po:"...)
	b = appendPad20(b, uint64(msg))
	b = append(b, ':')
	return string(appendPad20(b, uint64(uid)))
}

func appendPad20(b []byte, n uint64) []byte {
	s := strconv.FormatUint(n, 10)
	for range 20 - len(s) {
		b = append(b, '0')
	}
	return append(b, s...)
}

// ParsePushKey reads a key PushKey wrote.
func ParsePushKey(k string) (msg, uid ID, err error) {
	rest, ok := strings.CutPrefix(k, "po:")
	a, b, ok2 := strings.Cut(rest, ":")
	if !ok || !ok2 || len(a) != 20 || len(b) != 20 {
		return 0, 0, fmt.Errorf("not a push key: %q", k)
	}
	x, err1 := strconv.ParseUint(a, 10, 64)
	y, err2 := strconv.ParseUint(b, 10, 64)
	if err1 != nil || err2 != nil {
		return 0, 0, fmt.Errorf("not a push key: %q", k)
	}
	return ID(x), ID(y), nil
}
