package pebble

import (
	"encoding/json"
	"sync"

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
	first uint64 // seq of entries[0]
	evs   []json.RawMessage
}

func newRecent(budget int) *recent {
	return &recent{users: make(map[core.ID]*ring), budget: budget}
}

// add records durable deliveries of one message, whose JSON is raw.
func (r *recent) add(ds []core.Delivery, raw json.RawMessage) {
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.bytes > r.budget {
		clear(r.users)
		r.bytes = 0
	}
	r.bytes += len(raw) + 16 // the message once (recipients share it) and a slot each
	for _, d := range ds {
		rg := r.users[d.UserID]
		if rg == nil || rg.first+uint64(len(rg.evs)) != d.Seq {
			if rg != nil {
				r.bytes -= 16 * len(rg.evs)
			}
			rg = &ring{first: d.Seq}
			r.users[d.UserID] = rg
		}
		if len(rg.evs) == ringLen {
			rg.evs = append(rg.evs[:0:0], rg.evs[1:]...)
			rg.first++
		} else {
			r.bytes += 16
		}
		rg.evs = append(rg.evs, raw)
	}
}

// head returns uid's durable inbox head if a ring knows it.
func (r *recent) head(uid core.ID) (uint64, bool) {
	r.mu.Lock()
	defer r.mu.Unlock()
	rg := r.users[uid]
	if rg == nil {
		return 0, false
	}
	return rg.first + uint64(len(rg.evs)) - 1, true
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
	for seq := after + 1; seq < rg.first+uint64(len(rg.evs)) && len(out) < limit && size < maxBytes; seq++ {
		raw := rg.evs[seq-rg.first]
		out = append(out, core.InboxEntry{Seq: seq, Message: raw})
		size += len(raw)
	}
	return out, true
}
