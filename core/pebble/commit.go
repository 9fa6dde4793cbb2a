package pebble

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"time"

	"github.com/cockroachdb/pebble/v2"

	"github.com/chatgate/chatgate/core"
	"github.com/chatgate/chatgate/internal/writeq"
)

// Write path. Every change is a function run by one committer goroutine,
// which owns the inbox heads and the other read-modify-write state, so
// concurrent sends need no locks and get gap-free seqs. The committer
// takes every request waiting, runs them one after the other into ONE
// Pebble batch, and applies it without waiting for its fsync
// (ApplyNoSyncWait): the batch is then visible to the next one's reads.
// A syncer goroutine waits for each batch's fsync in order and answers its
// callers; meanwhile the committer builds the next batch. Pebble logs
// batches in the order they are applied and one fsync covers all logged
// before it, so seqs become durable in order, and one fsync covers many
// sends (group commit) — every caller still returns only once its write
// is durable.

const (
	maxBatchReqs  = 1024
	maxBatchBytes = 8 << 20
)

// wtx is what a write function sees: it reads through its own writes,
// those of the batch being built and the store; its writes are kept apart
// until it returns without error, so a failed write leaves nothing.
type wtx struct {
	s     *Store
	batch *batch
	mine  map[string]op
	ops   []op
	heads map[core.ID]uint64
	convs []userConv
	ds    []core.Delivery
	// raw is the JSON of the message it stored, for the recent cache.
	raw json.RawMessage
	// newest is the id of the message it stored.
	newest core.ID
	// pushes are the push-outbox keys it wrote.
	pushes [][]byte
	// durable asks that the caller be answered only once every batch
	// before this one is durable, although this write wrote nothing (a
	// replayed send whose first send may still be waiting for its fsync).
	durable bool
}

type op struct {
	key, val []byte
	del      bool
	// single: the key was set once and never overwritten, so Pebble's
	// SingleDelete may drop the set and itself as soon as the two meet (in
	// the memtable's flush, usually) instead of carrying a tombstone down
	// every level.
	single bool
	// blind: no write function reads the key back (see wtx.put).
	blind bool
}

func (w *wtx) get(key []byte) ([]byte, bool, error) {
	if o, ok := w.mine[string(key)]; ok {
		return o.val, !o.del, nil
	}
	if o, ok := w.batch.overlay[string(key)]; ok {
		return o.val, !o.del, nil
	}
	return w.s.get(key)
}

func (w *wtx) set(key, val []byte) {
	o := op{key: key, val: val}
	w.mine[string(key)] = o
	w.ops = append(w.ops, o)
}

// put writes a key that no write function reads back: inbox entries and
// conversation listings are found by range scans of applied batches and
// through the committer's caches. It skips the per-key maps that let a
// write read its batch's earlier writes, which a message to a 100-member
// group would otherwise fill with two hundred keys.
func (w *wtx) put(key, val []byte) {
	w.ops = append(w.ops, op{key: key, val: val, blind: true})
}

func (w *wtx) del(key []byte) {
	o := op{key: key, del: true}
	w.mine[string(key)] = o
	w.ops = append(w.ops, o)
}

// delOnce deletes a key that was set exactly once (see op.single).
func (w *wtx) delOnce(key []byte) {
	o := op{key: key, del: true, single: true}
	w.mine[string(key)] = o
	w.ops = append(w.ops, o)
}

// head returns uid's newest inbox seq, as of every write before this one.
func (w *wtx) head(uid core.ID) (uint64, error) {
	if h, ok := w.heads[uid]; ok {
		return h, nil
	}
	if h, ok := w.s.heads[uid]; ok {
		return h, nil
	}
	h, err := w.s.storedHead(uid)
	if err != nil {
		return 0, fmt.Errorf("read inbox head of %d: %w", uid, err)
	}
	w.s.heads[uid] = h // true whatever this write does
	return h, nil
}

// deliver appends message ref to uid's inbox and lists the conversation
// for uid.
func (w *wtx) deliver(uid core.ID, c conv, ref []byte) (uint64, error) {
	h, err := w.head(uid)
	if err != nil {
		return 0, err
	}
	seq := h + 1
	if w.heads == nil {
		w.heads = make(map[core.ID]uint64, 2)
	}
	w.heads[uid] = seq
	w.put(inboxKey(uid, seq), ref)
	uc := userConv{uid, c}
	if _, ok := w.s.convs[uc]; !ok {
		w.put(convKey(uid, c), nil)
		w.convs = append(w.convs, uc)
	}
	w.ds = append(w.ds, core.Delivery{UserID: uid, Seq: seq})
	return seq, nil
}

// forgetConv drops a listing key and its cache entry.
func (w *wtx) forgetConv(uid core.ID, c conv) {
	delete(w.s.convs, userConv{uid, c}) // forgetting is always safe
	w.del(convKey(uid, c))
}

type writeReq struct {
	fn   func(*wtx) error
	done chan error
	size int
}

// write runs fn in the next batch and returns once its writes are durable.
func (s *Store) write(ctx context.Context, size int, fn func(*wtx) error) error {
	req := &writeReq{fn: fn, done: make(chan error, 1), size: size}
	err := s.reqs.Do(ctx, req, req.done)
	if errors.Is(err, writeq.ErrClosed) {
		return core.ErrUnavailable
	}
	return err
}

// stored is a message a batch stored and who got it.
type stored struct {
	ds  []core.Delivery
	raw json.RawMessage
}

// batch is one group commit.
type batch struct {
	pb      *pebble.Batch
	overlay map[string]op
	ok      []*writeReq // requests to answer once the batch is durable
	ds      []core.Delivery
	newest  core.ID // the newest message id stored by the batch
	msgs    []stored
	pushes  [][]byte
	ticket  uint64
	reqs    int
	size    int
	durable bool // some request needs the fsync although it wrote nothing
	start   time.Time
}

func (b *batch) full() bool { return b.reqs >= maxBatchReqs || b.size >= maxBatchBytes }

// committer builds and applies batches; syncer answers them.
func (s *Store) committer() {
	defer close(s.stopped)
	toSyncer := make(chan *batch, 64)
	syncerDone := make(chan struct{})
	go s.syncer(toSyncer, syncerDone)
	defer func() { close(toSyncer); <-syncerDone }()
	for {
		var first *writeReq
		select {
		case first = <-s.reqs.C():
		case <-s.reqs.Closing():
			// Close admits no request once closing is closed: what is
			// queued now is all that is left to write.
			for len(s.reqs.C()) > 0 {
				s.commit(s.take(<-s.reqs.C()), toSyncer)
			}
			return
		}
		s.commit(s.take(first), toSyncer)
	}
}

// take starts a batch with first and adds every request already waiting.
func (s *Store) take(first *writeReq) *batch {
	if len(s.heads) > maxHeads {
		// Only here, where every batch built is applied: the stored
		// inbox keys then hold every head the cache did.
		clear(s.heads)
	}
	b := &batch{pb: s.db.NewBatch(), overlay: make(map[string]op), start: time.Now()}
	s.add(b, first)
	for !b.full() {
		select {
		case r := <-s.reqs.C():
			s.add(b, r)
			continue
		default:
		}
		break
	}
	return b
}

// add runs one write function and adds its writes to b.
func (s *Store) add(b *batch, r *writeReq) {
	b.reqs++
	b.size += r.size
	if err := s.fail(); err != nil {
		r.done <- err
		return
	}
	w := &wtx{s: s, batch: b, mine: make(map[string]op)}
	if err := r.fn(w); err != nil {
		r.done <- err // nothing of it was written
		return
	}
	for _, o := range w.ops {
		if o.single {
			_ = b.pb.SingleDelete(o.key, nil)
		} else if o.del {
			_ = b.pb.Delete(o.key, nil)
		} else {
			_ = b.pb.Set(o.key, o.val, nil)
		}
		if !o.blind {
			b.overlay[string(o.key)] = o
		}
	}
	for u, h := range w.heads {
		s.heads[u] = h
	}
	if len(s.convs)+len(w.convs) > maxConvs {
		clear(s.convs)
	}
	for _, uc := range w.convs {
		s.convs[uc] = struct{}{}
	}
	b.ds = append(b.ds, w.ds...)
	b.newest = max(b.newest, w.newest)
	if w.raw != nil {
		b.msgs = append(b.msgs, stored{ds: w.ds, raw: w.raw})
	}
	b.pushes = append(b.pushes, w.pushes...)
	b.durable = b.durable || w.durable
	b.ok = append(b.ok, r)
}

// commit applies b (visible at once, durable later) and hands it to the
// syncer. The caches already describe b as applied: if applying fails the
// store refuses every write from then on, so they are never read wrong.
func (s *Store) commit(b *batch, toSyncer chan<- *batch) {
	if len(b.ok) == 0 {
		b.pb.Close()
		return
	}
	if b.newest != 0 {
		// Once per batch, not per message: Open tells the id generator.
		_ = b.pb.Set(metaKey("newest_id"), appendU64(nil, uint64(b.newest)), nil)
	}
	if b.pb.Empty() && b.durable {
		// A log record of its own, so the fsync the answer waits for
		// covers every batch before.
		_ = b.pb.LogData([]byte{0}, nil)
	}
	if !b.pb.Empty() {
		s.ticket++
		b.ticket = s.ticket
		if len(b.ds) > 0 {
			s.pmu.Lock()
			for _, d := range b.ds {
				s.pending[d.UserID] = append(s.pending[d.UserID], d.Seq)
			}
			s.queue = append(s.queue, inflight{ticket: b.ticket, ds: b.ds})
			s.pmu.Unlock()
		}
		if err := s.db.ApplyNoSyncWait(b.pb, pebble.Sync); err != nil {
			s.setFailed(fmt.Errorf("apply batch %d: %w", b.ticket, err))
			s.synced(b.ticket)
			for _, r := range b.ok {
				r.done <- core.ErrUnavailable
			}
			return
		}
		s.pushed(b.pushes)
	}
	toSyncer <- b
}

// syncer waits for each batch's fsync, in order, and answers its callers.
func (s *Store) syncer(in <-chan *batch, done chan<- struct{}) {
	defer close(done)
	for b := range in {
		var err error
		if b.ticket != 0 {
			if err = b.pb.SyncWait(); err != nil {
				err = s.setFailed(fmt.Errorf("fsync batch %d: %w", b.ticket, err))
			}
		}
		err = errors.Join(err, b.pb.Close())
		if err == nil && s.onCommit != nil {
			s.onCommit(len(b.ok), time.Since(b.start))
		}
		var msgs []stored
		if err == nil {
			msgs = b.msgs
			s.idx.durableUpTo(b.newest)
		}
		// Readers see the batch on disk (the durable limit lifts) and in
		// the recent cache in one step: one that read an entry from disk
		// must not then be answered by a cache that lacks it, or the inbox
		// head would go back below what a client has seen.
		s.recent.addBatch(msgs, func() {
			if b.ticket != 0 {
				s.synced(b.ticket)
			}
		})
		for _, r := range b.ok {
			if err != nil {
				r.done <- core.ErrUnavailable
			} else {
				r.done <- nil
			}
		}
	}
}

// pushed records the push-outbox keys of a batch just applied (visible).
func (s *Store) pushed(keys [][]byte) {
	if len(keys) == 0 {
		return
	}
	s.pushMu.Lock()
	defer s.pushMu.Unlock()
	for _, k := range keys {
		if bytes.Compare(k, s.pushHigh) > 0 {
			s.pushHigh = k
		}
		if s.pushLow != nil && bytes.Compare(k, s.pushLow) < 0 {
			s.pushLow = k // never on one node (ids grow), but then safe
		}
	}
}
