package main

import (
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"
)

// epoch is the bench's clock: message contents carry nanoseconds since it
// (monotonic, same process), so send→receive latency needs no clock sync.
var epoch = time.Now()

func nowNanos() int64 { return int64(time.Since(epoch)) }

// stamp makes a message content of exactly size bytes (at least the stamp
// itself) that starts with the send time.
func stamp(size int) string {
	s := strconv.FormatInt(nowNanos(), 10) + "|"
	if len(s) >= size {
		return s
	}
	return s + strings.Repeat("x", size-len(s))
}

// unstamp reads the send time back; ok is false for contents the bench
// did not make.
func unstamp(content string) (int64, bool) {
	i := strings.IndexByte(content, '|')
	if i <= 0 {
		return 0, false
	}
	t, err := strconv.ParseInt(content[:i], 10, 64)
	return t, err == nil
}

// recorder collects one step's deliveries. Latencies count for messages
// sent inside the window [from, to) (after a warm-up); delivery counts
// while the window is open give the rate.
type recorder struct {
	from, to atomic.Int64 // send-time window, nanos since epoch; to=0: open-ended
	open     atomic.Bool  // counting deliveries by receive time

	mu        sync.Mutex
	lat       []int64 // nanos, messages sent in the window
	delivered atomic.Int64
	inWindow  atomic.Int64 // deliveries received while open
	evBytes   atomic.Int64 // event JSON bytes received while open
	early     atomic.Int64 // messages sent before the step (stragglers)
}

func newRecorder() *recorder {
	r := &recorder{}
	r.from.Store(1<<62 - 1)
	return r
}

// deliver records one delivered message sent at sent with an event of
// evLen bytes.
func (r *recorder) deliver(sent int64, evLen int) {
	now := nowNanos()
	if r.open.Load() {
		r.inWindow.Add(1)
		r.evBytes.Add(int64(evLen))
	}
	from, to := r.from.Load(), r.to.Load()
	if sent < from || (to != 0 && sent >= to) {
		if sent < from {
			r.early.Add(1)
		}
		return
	}
	r.delivered.Add(1)
	r.mu.Lock()
	r.lat = append(r.lat, now-sent)
	r.mu.Unlock()
}

// latency is a summary of send→receive times.
type latency struct {
	n                  int
	p50, p95, p99, max time.Duration
}

func (r *recorder) summary() latency {
	r.mu.Lock()
	l := slices.Clone(r.lat)
	r.mu.Unlock()
	return summarize(l)
}

// summarize sorts l (nanoseconds) and takes its percentiles.
func summarize(l []int64) latency {
	slices.Sort(l)
	if len(l) == 0 {
		return latency{}
	}
	q := func(p float64) time.Duration {
		i := int(p*float64(len(l))+0.5) - 1
		return time.Duration(l[min(max(i, 0), len(l)-1)])
	}
	return latency{n: len(l), p50: q(0.50), p95: q(0.95), p99: q(0.99), max: time.Duration(l[len(l)-1])}
}

// current holds the recorder of the running step; receivers hand every
// delivery to it.
type current struct{ p atomic.Pointer[recorder] }

func (c *current) deliver(content string, evLen int) {
	r := c.p.Load()
	if r == nil {
		return
	}
	if t, ok := unstamp(content); ok {
		r.deliver(t, evLen)
	}
}
