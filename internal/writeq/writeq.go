// Package writeq carries write requests from any number of callers to the
// one committer goroutine of an embedded store (core/buntdb, core/pebble):
// callers queue, the committer takes what is waiting and commits it as one
// batch.
package writeq

import (
	"context"
	"errors"
	"sync"
)

// ErrClosed is what Put returns once Close has begun.
var ErrClosed = errors.New("writeq: closed")

// Queue is a bounded queue of requests. Close stops admitting requests and
// returns only when no caller is still putting one, so a committer told by
// Closing finds in C every request there will ever be.
type Queue[R any] struct {
	mu      sync.RWMutex
	closed  bool
	ch      chan R
	closing chan struct{}
}

// New returns a queue holding up to capacity waiting requests.
func New[R any](capacity int) *Queue[R] {
	return &Queue[R]{ch: make(chan R, capacity), closing: make(chan struct{})}
}

// Do queues r and then waits for the committer's answer on done. Once r
// is queued it waits even if ctx ends: the write may already be durable,
// and the caller must not be told otherwise. Before that, it returns
// ErrClosed after Close, or ctx's error.
func (q *Queue[R]) Do(ctx context.Context, r R, done <-chan error) error {
	if err := q.Put(ctx, r); err != nil {
		return err
	}
	return <-done
}

// Put queues r, waiting while the queue is full; it returns ErrClosed
// after Close, or ctx's error if ctx ends first (r is then not queued).
func (q *Queue[R]) Put(ctx context.Context, r R) error {
	q.mu.RLock()
	defer q.mu.RUnlock()
	if q.closed {
		return ErrClosed
	}
	select {
	case q.ch <- r:
		return nil
	case <-ctx.Done():
		return ctx.Err()
	}
}

// C is what the committer receives requests from.
func (q *Queue[R]) C() <-chan R { return q.ch }

// Closing is closed by Close, once no request can be added.
func (q *Queue[R]) Closing() <-chan struct{} { return q.closing }

// Close stops admitting requests; it reports false if it had already been
// called.
func (q *Queue[R]) Close() bool {
	q.mu.Lock()
	defer q.mu.Unlock()
	if q.closed {
		return false
	}
	q.closed = true
	close(q.closing)
	return true
}
