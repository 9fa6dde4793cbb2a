package pebble

import (
	"encoding/json"
	"sync"
	"unsafe"

	"github.com/chatgate/chatgate/core"
)

// recent keeps the newest durable inbox entries of the users written to
// lately, so that the resume path's most frequent read — a stream that saw
// a gap in its live events (concurrent sends publish in any order) reading
// the one or two entries after its cursor, and the inbox head — is served
// from memory instead of seeking through the LSM. It is a cache: bounded in
// bytes, emptied whole when full, and a read it cannot answer in full goes
// to disk.
//
// A user's ring is created at a delivery and then gets every later one, in
// seq order, when it becomes durable (the syncer adds each batch's entries
// after its fsync, batches in order): so a ring's newest entry is the
// user's durable inbox head, and its entries are consecutive seqs.
type recent struct {
	mu     sync.Mutex
	users  map[core.ID]*ring
	bytes  int
	budget int
}

// ringLen is how many entries a user's ring keeps.
const ringLen = 16

type ring struct {
	first uint64                   // seq of the oldest entry held
	n     int                      // entries held
	evs   [ringLen]json.RawMessage // seq s at evs[s%ringLen]
}

func (rg *ring) last() uint64 { return rg.first + uint64(rg.n) - 1 }

func newRecent(budget int) *recent {
	return &recent{users: make(map[core.ID]*ring), budget: budget}
}

// add records durable deliveries of one message, whose JSON is raw.
func (r *recent) add(ds []core.Delivery, raw json.RawMessage) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.addLocked(ds, raw)
}

// addBatch calls publish (which shows a durable batch to disk readers) and
// records the batch's messages under one hold of the lock, so that no
// reader is answered by the cache with less than it read from disk.
func (r *recent) addBatch(msgs []stored, publish func()) {
	r.mu.Lock()
	defer r.mu.Unlock()
	publish()
	for _, m := range msgs {
		r.addLocked(m.ds, m.raw)
	}
}

func (r *recent) addLocked(ds []core.Delivery, raw json.RawMessage) {
	if r.bytes > r.budget {
		clear(r.users)
		r.bytes = 0
	}
	r.bytes += len(raw) // the message once: its recipients share it
	for _, d := range ds {
		rg := r.users[d.UserID]
		if rg == nil || rg.last()+1 != d.Seq {
			if rg == nil {
				r.bytes += ringBytes
			}
			rg = &ring{first: d.Seq}
			r.users[d.UserID] = rg
		}
		rg.evs[d.Seq%ringLen] = raw
		if rg.n == ringLen {
			rg.first++
		} else {
			rg.n++
		}
	}
}

// ringBytes is what a ring costs besides the messages it points to.
const ringBytes = int(unsafe.Sizeof(ring{})) + 48

// head returns uid's durable inbox head if a ring knows it.
func (r *recent) head(uid core.ID) (uint64, bool) {
	r.mu.Lock()
	defer r.mu.Unlock()
	rg := r.users[uid]
	if rg == nil {
		return 0, false
	}
	return rg.last(), true
}

// inbox answers Inbox(uid, after, limit, maxBytes) if the ring holds every
// entry after after.
func (r *recent) inbox(uid core.ID, after uint64, limit, maxBytes int) ([]core.InboxEntry, bool) {
	r.mu.Lock()
	defer r.mu.Unlock()
	rg := r.users[uid]
	if rg == nil || after+1 < rg.first {
		return nil, false
	}
	var out []core.InboxEntry
	size := 0
	for seq := after + 1; seq <= rg.last() && len(out) < limit && size < maxBytes; seq++ {
		raw := rg.evs[seq%ringLen]
		out = append(out, core.InboxEntry{Seq: seq, Message: raw})
		size += len(raw)
	}
	return out, true
}
