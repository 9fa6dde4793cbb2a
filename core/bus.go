package core

import "sync"

// Bus carries live events to the devices of a user wherever they are
// connected. Publish never blocks on a slow receiver: a Subscriber must only
// queue the event (and cut its connection when its queue is full). Live
// delivery is best effort; the inbox is the durable path that resume reads.
type Bus interface {
	Publish(to ID, ev Event)
	// Subscribe registers fn for uid's events until the returned cancel is
	// called.
	Subscribe(uid ID, fn func(Event)) (cancel func())
}

// LocalBus is the in-process Bus of a single node.
type LocalBus struct {
	shards [64]busShard
}

type busShard struct {
	mu   sync.RWMutex
	subs map[ID]map[*subscription]struct{}
}

type subscription struct{ fn func(Event) }

var _ Bus = (*LocalBus)(nil)

// NewLocalBus returns an empty in-process bus.
func NewLocalBus() *LocalBus {
	b := &LocalBus{}
	for i := range b.shards {
		b.shards[i].subs = make(map[ID]map[*subscription]struct{})
	}
	return b
}

func (b *LocalBus) shard(uid ID) *busShard { return &b.shards[uint64(uid)%uint64(len(b.shards))] }

// Publish implements Bus.
func (b *LocalBus) Publish(to ID, ev Event) {
	sh := b.shard(to)
	sh.mu.RLock()
	defer sh.mu.RUnlock()
	for s := range sh.subs[to] {
		s.fn(ev)
	}
}

// Subscribe implements Bus.
func (b *LocalBus) Subscribe(uid ID, fn func(Event)) func() {
	s := &subscription{fn: fn}
	sh := b.shard(uid)
	sh.mu.Lock()
	m := sh.subs[uid]
	if m == nil {
		m = make(map[*subscription]struct{})
		sh.subs[uid] = m
	}
	m[s] = struct{}{}
	sh.mu.Unlock()
	var once sync.Once
	return func() {
		once.Do(func() {
			sh.mu.Lock()
			delete(sh.subs[uid], s)
			if len(sh.subs[uid]) == 0 {
				delete(sh.subs, uid)
			}
			sh.mu.Unlock()
		})
	}
}

// PublishAll delivers ev to every subscriber of this bus (a cluster bus
// adapter uses it for ResyncEvent).
func (b *LocalBus) PublishAll(ev Event) {
	for i := range b.shards {
		sh := &b.shards[i]
		sh.mu.RLock()
		for _, m := range sh.subs {
			for s := range m {
				s.fn(ev)
			}
		}
		sh.mu.RUnlock()
	}
}

// HasSubscribers reports whether uid has a subscriber on this bus.
func (b *LocalBus) HasSubscribers(uid ID) bool {
	sh := b.shard(uid)
	sh.mu.RLock()
	defer sh.mu.RUnlock()
	return len(sh.subs[uid]) > 0
}
