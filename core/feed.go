package core

import (
	"context"
	"errors"
	"sync"
	"time"
)

// ErrSlowConsumer ends a stream whose client could not keep up: its queue
// of live events filled up. Nothing is lost: the client reconnects with its
// cursor and the resume path reads the missed durable events from the store.
var ErrSlowConsumer = Errorf(KindUnavailable, "slow_consumer", "the connection fell too far behind; reconnect with your cursor")

// ErrDraining ends streams of a server that is shutting down.
var ErrDraining = Errorf(KindUnavailable, "server_draining", "the server is shutting down; reconnect with your cursor")

// Feed limits.
const (
	// StreamQueueEvents bounds the live events waiting for a streaming
	// connection (SSE, WebSocket) before it is cut as a slow consumer.
	StreamQueueEvents = 1024
	// StreamQueueBytes bounds the same queue in bytes: 1,024 of the
	// largest messages would be a gigabyte held for one stuck client.
	StreamQueueBytes = 8 << 20
	// PollQueueEvents bounds the ephemeral events (presence, typing) kept
	// for a polling device between its requests; older ones are dropped.
	PollQueueEvents = 64
)

// Stream is the one resume path shared by every streaming transport: it
// delivers every durable event after the cursor it was opened with, in seq
// order, then live events, with no gap and no duplicate. It subscribes to
// the bus before reading the backlog, and drops live durable events the
// backlog already covered; a live event that would leave a gap (events of
// concurrent sends can be published out of seq order) makes it read the
// store again instead of delivering out of order.
//
// A Stream is used by one goroutine (the connection's writer); the bus
// fills its bounded queue from others.
type Stream struct {
	svc    *Service
	se     Session
	cursor uint64 // last durable seq delivered
	catch  bool   // the store holds events not yet delivered
	q      queue
	cancel func()
	done   bool
	// transport is reported with the events delivered.
	transport string
}

// StreamHooks connect a stream to its transport. Both are called from the
// publishing goroutine, so they must not block.
type StreamHooks struct {
	// Cut is called once when the queue overflows: the transport should
	// close its connection at once (a writer blocked on a stuck client would
	// otherwise notice only at its next write); Next and TryNext then return
	// ErrSlowConsumer.
	Cut func()
	// Ready, if set, is called after every live event is queued. A
	// transport that writes from short-lived goroutines (WebSocket) starts
	// one from it and reads with TryNext, so an idle connection holds no
	// writer goroutine.
	// It may be called before OpenStream has returned (an event can come
	// as soon as the stream subscribes), so it must cope with a stream it
	// does not hold yet; what it missed is read by the first TryNext.
	Ready func()
	// Transport names the connection's transport in metrics.
	Transport string
}

// OpenStream starts a device's stream after cursor. The device counts as
// connected (online) until Close.
func (s *Service) OpenStream(se Session, cursor uint64, h StreamHooks) *Stream {
	st := &Stream{svc: s, se: se, cursor: cursor, catch: true}
	st.q.init(StreamQueueEvents, true)
	st.q.onCut = func() {
		s.obs.SlowConsumer()
		if h.Cut != nil {
			h.Cut()
		}
	}
	st.q.onPush, st.transport = h.Ready, h.Transport
	st.cancel = s.bus.Subscribe(se.UserID, st.q.push)
	s.presence.Connect(se.UserID, se.DeviceID)
	s.streams.Add(1)
	return st
}

// AdmitConn counts a transport connection of the caller's account for as
// long as it lasts (call release when it ends), or refuses it with 429
// too_many_connections past Limits.ConnsPerUser. Streaming transports call
// it before they upgrade or answer, so a refusal is a plain HTTP error.
func (s *Service) AdmitConn(se Session, transport string) (release func(), err error) {
	rel, err := s.limits.admitConn(se.UserID)
	if err != nil {
		s.obs.RateLimited("conns_per_user")
		return nil, err
	}
	s.obs.Connected(transport, 1)
	var once sync.Once
	return func() {
		once.Do(func() {
			rel()
			s.obs.Connected(transport, -1)
		})
	}, nil
}

// Draining is closed when the server starts shutting down (see Drain).
// Transports that do not wait in Next watch it to end their streams.
func (s *Service) Draining() <-chan struct{} { return s.draining }

// Cursor is the seq of the last durable event delivered.
func (st *Stream) Cursor() uint64 { return st.cursor }

// Next returns the next events, at most limit durable ones from the
// backlog at a time, blocking until there is at least one or ctx ends.
func (st *Stream) Next(ctx context.Context, limit int) ([]Event, error) {
	for {
		evs, err := st.next(ctx, limit)
		if len(evs) > 0 {
			st.svc.obs.Delivered(st.transport, len(evs))
		}
		if err != nil || len(evs) > 0 {
			return evs, err
		}
		select {
		case <-ctx.Done():
			return nil, ctx.Err()
		case <-st.svc.draining:
			return nil, ErrDraining
		case <-st.q.ready:
		}
	}
}

// TryNext is Next without the wait: with nothing to deliver it returns no
// events and no error. It is for writers started by StreamHooks.Ready.
func (st *Stream) TryNext(ctx context.Context, limit int) ([]Event, error) {
	select {
	case <-st.svc.draining:
		return nil, ErrDraining
	default:
	}
	evs, err := st.next(ctx, limit)
	if len(evs) > 0 {
		st.svc.obs.Delivered(st.transport, len(evs))
	}
	return evs, err
}

// next delivers what is ready: the backlog first, then the live queue.
func (st *Stream) next(ctx context.Context, limit int) ([]Event, error) {
	for {
		if st.catch {
			p, err := st.svc.Sync(ctx, st.se, st.cursor, limit)
			if err != nil {
				return nil, err
			}
			st.catch = p.HasMore
			if p.Cursor < st.cursor { // Sync pulled a cursor beyond the head back
				st.cursor = p.Cursor
				return []Event{CursorEvent(p.Cursor)}, nil
			}
			if len(p.Events) > 0 {
				st.cursor = p.Cursor
				return p.Events, nil
			}
		}
		evs, overflow := st.q.take()
		if overflow {
			return nil, ErrSlowConsumer
		}
		out := evs[:0]
		for _, e := range evs {
			switch {
			case e.Type == eventRevoke:
				if string(e.data) == st.se.DeviceID.String() {
					return nil, ErrUnauthorized
				}
			case e.Type == eventResync:
				st.catch = true
			case !e.Durable():
				out = append(out, e)
			case e.Seq <= st.cursor || st.catch:
				// Already delivered, or the store read will bring it.
			case e.Seq == st.cursor+1:
				st.cursor = e.Seq
				out = append(out, e)
			default:
				st.catch = true // a gap: the store has what is missing
			}
		}
		if len(out) > 0 {
			return out, nil
		}
		if !st.catch {
			return nil, nil
		}
	}
}

// Close unsubscribes and records the disconnect.
func (st *Stream) Close() {
	if st.done {
		return
	}
	st.done = true
	st.svc.streams.Add(-1)
	st.cancel()
	st.svc.presence.Disconnect(st.se.UserID, st.se.DeviceID)
}

// queue is a bounded multi-producer queue with a wake-up channel.
type queue struct {
	mu       sync.Mutex
	evs      []Event
	max      int
	bytes    int // of evs, counted only for queues that cut
	overflow bool
	// cut: a full queue is an overflow (streams); otherwise the oldest
	// event is dropped (ephemeral events of polling devices).
	cut   bool
	onCut func()
	// onPush, if set, is told of every queued event.
	onPush func()
	ready  chan struct{}
}

func (q *queue) init(max int, cut bool) {
	q.max, q.cut, q.ready = max, cut, make(chan struct{}, 1)
}

func (q *queue) push(e Event) {
	q.mu.Lock()
	cutNow := false
	switch {
	case q.overflow:
	case len(q.evs) < q.max && (!q.cut || q.bytes+e.Len() <= StreamQueueBytes || len(q.evs) == 0):
		q.evs = append(q.evs, e)
		if q.cut {
			q.bytes += e.Len()
		}
	case q.cut:
		q.overflow, q.evs, q.bytes, cutNow = true, nil, 0, true
	default:
		copy(q.evs, q.evs[1:])
		q.evs[len(q.evs)-1] = e
	}
	q.mu.Unlock()
	if cutNow && q.onCut != nil {
		q.onCut()
	}
	q.wake()
	if q.onPush != nil {
		q.onPush()
	}
}

func (q *queue) wake() {
	select {
	case q.ready <- struct{}{}:
	default:
	}
}

func (q *queue) take() ([]Event, bool) {
	q.mu.Lock()
	defer q.mu.Unlock()
	evs, of := q.evs, q.overflow
	q.evs, q.bytes = nil, 0
	return evs, of
}

// mailbox keeps a polling device's ephemeral events between its requests
// and wakes its long polls on any event. Durable events are not queued:
// polls read them from the store, so they only wake.
type mailbox struct {
	q        queue
	cancel   func()
	lastUsed time.Time // guarded by Service.mbMu
	holders  int       // requests using it, guarded by Service.mbMu
}

func (m *mailbox) push(e Event) {
	if e.Type == eventRevoke {
		return
	}
	if e.Durable() || e.Type == eventResync {
		m.q.wake()
		return
	}
	m.q.push(e)
}

// Stats are live gauges of the node's connections.
type Stats struct {
	Streams   int64 `json:"streams"`   // open streaming connections (SSE, WebSocket)
	Polls     int64 `json:"polls"`     // polling requests in progress (held long polls among them)
	Mailboxes int   `json:"mailboxes"` // polling devices with a live mailbox
}

// Stats returns the current gauges.
func (s *Service) Stats() Stats {
	s.mbMu.Lock()
	n := len(s.mailboxes)
	s.mbMu.Unlock()
	return Stats{Streams: s.streams.Load(), Polls: s.polls.Load(), Mailboxes: n}
}

// MaxPollWait bounds a long poll's wait.
const MaxPollWait = 60 * time.Second

// Poll answers one polling request: the durable events after cursor (the
// same resume path as every transport) followed by the ephemeral events
// queued for this device since its last poll. With wait > 0 it holds the
// request until there is an event or wait passes (long polling), woken by
// the live event itself.
// The transport has admitted the request (AdmitConn).
func (s *Service) Poll(ctx context.Context, se Session, cursor uint64, limit int, wait time.Duration) (Page, error) {
	mb := s.acquireMailbox(se)
	defer s.releaseMailbox(se, mb)
	s.polls.Add(1)
	defer s.polls.Add(-1)
	var deadline <-chan time.Time
	if wait > 0 {
		t := time.NewTimer(min(wait, MaxPollWait))
		defer t.Stop()
		deadline = t.C
		// A held request is a connection: the device stays online for as
		// long as it waits, even past the offline window.
		s.presence.Connect(se.UserID, se.DeviceID)
		defer s.presence.Disconnect(se.UserID, se.DeviceID)
	}
	for {
		p, err := s.Sync(ctx, se, cursor, limit)
		if err != nil {
			return Page{}, err
		}
		if eph, _ := mb.q.take(); len(eph) > 0 {
			p.Events = append(p.Events, eph...)
		}
		// A cursor past the inbox's head (a client that kept one from
		// another account or a restored backup) answers at once with the
		// head: held, it would come back with a head that has meanwhile
		// grown, and the client would skip the messages in between.
		if len(p.Events) > 0 || deadline == nil || p.Cursor < cursor {
			return p, nil
		}
		select {
		case <-mb.q.ready:
		case <-deadline:
			return p, nil
		case <-s.draining:
			return p, nil
		case <-ctx.Done():
			return Page{}, ctx.Err()
		}
	}
}

func (s *Service) acquireMailbox(se Session) *mailbox {
	s.mbMu.Lock()
	defer s.mbMu.Unlock()
	mb := s.mailboxes[se.DeviceID]
	if mb == nil {
		mb = &mailbox{}
		mb.q.init(PollQueueEvents, false)
		mb.cancel = s.bus.Subscribe(se.UserID, mb.push)
		s.mailboxes[se.DeviceID] = mb
	}
	mb.holders++
	return mb
}

func (s *Service) releaseMailbox(se Session, mb *mailbox) {
	s.mbMu.Lock()
	defer s.mbMu.Unlock()
	mb.holders--
	mb.lastUsed = time.Now()
}

// expireMailboxes drops the mailboxes of devices that stopped polling: no
// request for longer than the offline window.
func (s *Service) expireMailboxes(all bool) {
	s.mbMu.Lock()
	defer s.mbMu.Unlock()
	for id, mb := range s.mailboxes {
		if all || (mb.holders == 0 && time.Since(mb.lastUsed) > s.cfg.OfflineAfter) {
			mb.cancel()
			delete(s.mailboxes, id)
		}
	}
}

// Typing tells the other members of conv that the caller is typing. It is
// ephemeral: never stored, no seq, only for devices connected now.
func (s *Service) Typing(ctx context.Context, se Session, conv string) error {
	p, ok := ParseConv(conv)
	if !ok {
		return ErrConvNotFound
	}
	var to []ID
	if p.Group == 0 {
		if !p.HasUser(se.UserID) {
			return ErrConvNotFound
		}
		to = []ID{p.Peer(se.UserID)}
	} else {
		g, err := s.store.Group(ctx, p.Group)
		if errors.Is(err, ErrGroupNotFound) || (err == nil && !g.Has(se.UserID)) {
			return ErrConvNotFound
		}
		if err != nil {
			return err
		}
		to = g.Members
	}
	ev := TypingEvent(conv, se.UserID)
	for _, uid := range to {
		if uid != se.UserID {
			s.bus.Publish(uid, ev)
		}
	}
	return nil
}
