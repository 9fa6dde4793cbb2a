// Package nats is the cluster bus: core.ClusterBus over NATS core subjects
// (github.com/nats-io/nats.go), at most once, as Centrifugo's NATS broker.
//
// Each user has a subject, chatgate.user.<id>; a node subscribes to it while
// one of the user's devices is connected to it and unsubscribes with the
// last, so NATS routes an event only to the nodes that hold its recipients.
// Presence messages between nodes go on chatgate.presence. Events for local
// devices are delivered in process, never through the server (the
// connection is NoEcho).
//
// Nothing here is durable, and nothing needs to be: every durable event is
// in the store before it is published, and a device resumes from the store
// by cursor. A message lost on the bus (a reconnect, a slow consumer, a
// server restart) only delays a live device until its next event shows the
// gap, or until ResyncEvent, which the bus delivers to every local stream
// after a reconnect or a drop so they read the store at once.
package nats

import (
	"errors"
	"fmt"
	"log/slog"
	"strconv"
	"sync"
	"sync/atomic"
	"time"

	natsgo "github.com/nats-io/nats.go"

	"github.com/chatgate/chatgate/core"
)

const (
	userPrefix      = "chatgate.user."
	presenceSubject = "chatgate.presence"
	// inboxSize bounds the messages received and not yet dispatched; past
	// it NATS drops (a slow consumer) and the bus resyncs its streams.
	inboxSize = 1 << 16
)

// Options configure the bus.
type Options struct {
	URL  string // nats://host:port[,nats://...]
	Name string // connection name shown by the server, e.g. the node id
	Log  *slog.Logger
	// ConnectTimeout bounds the first connection; after it the bus
	// reconnects forever. Default 5 s.
	ConnectTimeout time.Duration
}

// Bus implements core.ClusterBus.
type Bus struct {
	nc    *natsgo.Conn
	local *core.LocalBus
	log   *slog.Logger
	msgs  chan *natsgo.Msg
	stop  chan struct{}
	done  chan struct{}

	mu   sync.Mutex
	subs map[core.ID]*userSub

	onBroadcast atomic.Pointer[func([]byte)]
	presence    *natsgo.Subscription
	resyncs     atomic.Int64
	closeOnce   sync.Once
}

type userSub struct {
	n     int
	sub   *natsgo.Subscription
	ready chan struct{} // closed once the server has the subscription
}

var _ core.ClusterBus = (*Bus)(nil)

// Connect connects to NATS and starts the bus's dispatcher, which Close
// stops.
func Connect(o Options) (*Bus, error) {
	if o.Log == nil {
		o.Log = slog.Default()
	}
	if o.ConnectTimeout <= 0 {
		o.ConnectTimeout = 5 * time.Second
	}
	b := &Bus{
		local: core.NewLocalBus(),
		log:   o.Log,
		msgs:  make(chan *natsgo.Msg, inboxSize),
		stop:  make(chan struct{}),
		done:  make(chan struct{}),
		subs:  make(map[core.ID]*userSub),
	}
	nc, err := natsgo.Connect(o.URL,
		natsgo.Name(o.Name),
		natsgo.NoEcho(),
		natsgo.Timeout(o.ConnectTimeout),
		natsgo.MaxReconnects(-1),
		natsgo.ReconnectWait(250*time.Millisecond),
		natsgo.ReconnectJitter(250*time.Millisecond, time.Second),
		natsgo.DisconnectErrHandler(func(_ *natsgo.Conn, err error) {
			b.log.Warn("nats disconnected; live events between nodes pause, resume reads the store", "err", err)
		}),
		natsgo.ReconnectHandler(func(nc *natsgo.Conn) {
			b.log.Info("nats reconnected", "server", nc.ConnectedUrlRedacted())
			// Events published while we were away are lost to us.
			b.resync()
		}),
		natsgo.ErrorHandler(func(_ *natsgo.Conn, _ *natsgo.Subscription, err error) {
			if errors.Is(err, natsgo.ErrSlowConsumer) {
				b.resync()
				return
			}
			b.log.Warn("nats", "err", err)
		}),
	)
	if err != nil {
		return nil, fmt.Errorf("connect to nats %s: %w", o.URL, err)
	}
	b.nc = nc
	if b.presence, err = nc.ChanSubscribe(presenceSubject, b.msgs); err != nil {
		nc.Close()
		return nil, fmt.Errorf("subscribe %s: %w", presenceSubject, err)
	}
	// The server has the subscription once Connect returns: the other
	// nodes' presence from then on reaches this one.
	if err := nc.FlushTimeout(o.ConnectTimeout); err != nil {
		nc.Close()
		return nil, fmt.Errorf("subscribe %s: %w", presenceSubject, err)
	}
	go b.dispatch()
	return b, nil
}

// resync tells every local stream to read the store.
func (b *Bus) resync() {
	b.resyncs.Add(1)
	b.local.PublishAll(core.ResyncEvent())
}

// Resyncs counts the times the bus told its streams to read the store.
func (b *Bus) Resyncs() int64 { return b.resyncs.Load() }

// dispatch hands received messages to local subscribers in arrival order.
// One goroutine for every subscription: NATS starts one per asynchronous
// subscription otherwise, one per connected user.
func (b *Bus) dispatch() {
	defer close(b.done)
	for {
		select {
		case <-b.stop:
			return
		case m := <-b.msgs:
			b.handle(m)
		}
	}
}

func (b *Bus) handle(m *natsgo.Msg) {
	if m.Subject == presenceSubject {
		if fn := b.onBroadcast.Load(); fn != nil {
			(*fn)(m.Data)
		}
		return
	}
	uid, err := core.ParseID(m.Subject[len(userPrefix):])
	if err != nil {
		return
	}
	ev, err := core.ParseWire(m.Data)
	if err != nil {
		b.log.Warn("nats: undecodable event", "subject", m.Subject, "err", err)
		return
	}
	b.local.Publish(uid, ev)
}

func subject(uid core.ID) string { return userPrefix + strconv.FormatUint(uint64(uid), 10) }

// Publish implements core.Bus: local subscribers at once, other nodes'
// through NATS (which drops it when no node is interested).
func (b *Bus) Publish(to core.ID, ev core.Event) {
	b.local.Publish(to, ev)
	if err := b.nc.Publish(subject(to), ev.AppendWire(nil)); err != nil && !errors.Is(err, natsgo.ErrConnectionClosed) {
		b.log.Debug("nats publish", "user", to, "err", err)
	}
}

// PublishLocal implements core.ClusterBus.
func (b *Bus) PublishLocal(to core.ID, ev core.Event) { b.local.Publish(to, ev) }

// Subscribe implements core.Bus; the first local subscriber of a user
// subscribes the node to the user's subject, the last one's cancel
// unsubscribes it.
func (b *Bus) Subscribe(uid core.ID, fn func(core.Event)) func() {
	cancel := b.local.Subscribe(uid, fn)
	b.mu.Lock()
	us := b.subs[uid]
	first := us == nil
	if first {
		us = &userSub{ready: make(chan struct{})}
		b.subs[uid] = us
		sub, err := b.nc.ChanSubscribe(subject(uid), b.msgs)
		if err != nil {
			// Live events from other nodes will not come; the stream
			// still resumes from the store on its next gap or reconnect.
			b.log.Warn("nats subscribe", "user", uid, "err", err)
		}
		us.sub = sub
	}
	us.n++
	b.mu.Unlock()
	// A stream reads its backlog once Subscribe returns: the server must
	// have the subscription by then, or an event another node publishes
	// in between would reach nobody here until the next one.
	if first {
		// (Disconnected, a flush would only wait: the reconnect resyncs.)
		if b.nc.IsConnected() {
			if err := b.nc.FlushTimeout(2 * time.Second); err != nil {
				b.log.Debug("nats flush after subscribe", "user", uid, "err", err)
			}
		}
		close(us.ready)
	} else {
		<-us.ready
	}
	var once sync.Once
	return func() {
		once.Do(func() {
			cancel()
			b.mu.Lock()
			defer b.mu.Unlock()
			if us.n--; us.n == 0 {
				delete(b.subs, uid)
				if us.sub != nil {
					_ = us.sub.Unsubscribe()
				}
			}
		})
	}
}

// Broadcast implements core.ClusterBus.
func (b *Bus) Broadcast(msg []byte) {
	if err := b.nc.Publish(presenceSubject, msg); err != nil && !errors.Is(err, natsgo.ErrConnectionClosed) {
		b.log.Debug("nats broadcast", "err", err)
	}
}

// OnBroadcast implements core.ClusterBus.
func (b *Bus) OnBroadcast(fn func([]byte)) { b.onBroadcast.Store(&fn) }

// Connected reports whether the bus reaches the NATS server now (what
// /readyz asks).
func (b *Bus) Connected() bool { return b.nc.IsConnected() }

// Close flushes what was published, closes the connection and stops the
// dispatcher.
func (b *Bus) Close() error {
	b.closeOnce.Do(func() {
		if b.nc.IsConnected() {
			_ = b.nc.FlushTimeout(time.Second)
		}
		b.nc.Close()
		close(b.stop)
		<-b.done
	})
	return nil
}
