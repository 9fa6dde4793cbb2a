package core

import "time"

// Observer is told what the service does, for metrics. The core keeps its
// figures to these calls and knows nothing of how they are exported; the
// node plugs in Prometheus (package metrics). Calls must not block.
type Observer interface {
	// Connected: a connection of transport opened (+1) or closed (-1).
	Connected(transport string, delta int)
	// Delivered: n events handed to a client of transport.
	Delivered(transport string, n int)
	// Sent: one send finished, "ok" or with its error code, after d.
	Sent(result string, d time.Duration)
	// SlowConsumer: a stream was cut for falling behind.
	SlowConsumer()
	// RateLimited: a request was refused by limit.
	RateLimited(limit string)
	// PresenceChanged: a user went online or offline, as this node sees it.
	PresenceChanged(online bool)
}

// nopObserver is the Observer of a service given none.
type nopObserver struct{}

func (nopObserver) Connected(string, int)      {}
func (nopObserver) Delivered(string, int)      {}
func (nopObserver) Sent(string, time.Duration) {}
func (nopObserver) SlowConsumer()              {}
func (nopObserver) RateLimited(string)         {}
func (nopObserver) PresenceChanged(bool)       {}
