package buntdb

import (
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"os"
	"strings"

	"github.com/tidwall/buntdb"

	"github.com/chatgate/chatgate/core"
	"github.com/chatgate/chatgate/internal/writeq"
)

// Durability design. buntdb appends each transaction to an append-only file
// but writes its keys in map order, so a crash in the middle of a write can
// leave half a transaction on disk; and its own fsync ignores errors. So
// every change goes through one committer goroutine that
//
//  1. runs the waiting write functions against a read view plus an overlay
//     of the batch's earlier writes (so they see each other, as in one
//     serial transaction),
//  2. writes the whole batch as ONE journal key j:<n> (one append-file
//     record: on disk entirely or not at all),
//  3. fsyncs the file once for the whole batch (group commit), checking the
//     error, and only then
//  4. applies the batch's keys and deletes the previous journal key, and
//     replies to the callers.
//
// Steps 3 and 4 of one batch overlap with step 1 of the next, which takes
// every request arriving meanwhile.
// Step 4 needs no fsync of its own: until the next batch's fsync covers it,
// the journal key replays it after a crash (Open applies every journal key
// left, in order; the writes are plain sets and deletes, so replay is
// idempotent). A failed fsync stops all writes: the file's state is unknown.

type op struct {
	key, val string
	del      bool
}

// wtx is what a write function sees: reads through its own writes, the
// batch's earlier writes and the stored state; writes are buffered.
type wtx struct {
	tx       *buntdb.Tx
	batch    *batch
	inflight *batch // the previous batch, possibly not yet applied
	mine     map[string]*op
	ops      []*op
}

func (w *wtx) get(key string) (string, bool) {
	if o, ok := w.mine[key]; ok {
		return o.val, !o.del
	}
	if o, ok := w.batch.overlay[key]; ok {
		return o.val, !o.del
	}
	if w.inflight != nil {
		if o, ok := w.inflight.overlay[key]; ok {
			return o.val, !o.del
		}
	}
	v, err := w.tx.Get(key)
	if err != nil {
		return "", false
	}
	return v, true
}

func (w *wtx) set(key, val string) {
	o := &op{key: key, val: val}
	w.mine[key] = o
	w.ops = append(w.ops, o)
}

func (w *wtx) del(key string) {
	o := &op{key: key, del: true}
	w.mine[key] = o
	w.ops = append(w.ops, o)
}

type writeReq struct {
	fn   func(*wtx) error
	done chan error
	size int
}

const (
	maxBatchReqs  = 1024
	maxBatchBytes = 8 << 20
)

// write runs fn in the next batch and returns once its writes are durable.
func (s *Store) write(ctx context.Context, size int, fn func(*wtx) error) error {
	req := &writeReq{fn: fn, done: make(chan error, 1), size: size}
	err := s.reqs.Do(ctx, req, req.done)
	if errors.Is(err, writeq.ErrClosed) {
		return core.ErrUnavailable
	}
	return err
}

// batch is one group commit.
type batch struct {
	journal uint64 // its journal key number; 0 when it wrote nothing
	prev    uint64 // the journal number of the batch before it that wrote
	ops     []*op
	overlay map[string]*op
	ok      []*writeReq // requests whose writes are in ops
	reqs    int         // requests taken, failed ones included
	size    int
}

func newBatch() *batch { return &batch{overlay: make(map[string]*op)} }

func (b *batch) full() bool { return b.reqs >= maxBatchReqs || b.size >= maxBatchBytes }

// committer builds batches; a syncer goroutine makes them durable. The two
// overlap: while batch N is being fsynced and applied, every request that
// arrives runs at once on top of N's overlay and joins batch N+1, which is
// closed and its journal key written when N is done. An fsync costs tens
// of microseconds of CPU whatever it covers, so a batch should hold all
// that arrived during the previous one's; closing it earlier (at its first
// request, as this did before) split the same requests over more fsyncs.
func (s *Store) committer() {
	defer close(s.stopped)
	toSyncer := make(chan *batch)
	synced := make(chan error, 1)
	go s.syncer(toSyncer, synced)
	defer close(toSyncer)
	var inflight *batch
	finished := func(err error) {
		inflight = nil
		if err != nil && s.failed == nil {
			s.failed = fmt.Errorf("%w (%v)", core.ErrUnavailable, err)
			s.log.Error("store write failed; refusing further writes", "err", err)
		}
	}
	closing := s.reqs.Closing()
	for {
		b := newBatch()
		for {
			if inflight == nil && (b.reqs > 0 || closing == nil) {
				// Nothing to wait for: take what is queued and go.
				if b.full() {
					break
				}
				select {
				case r := <-s.reqs.C():
					s.add(b, r, nil)
					continue
				default:
				}
				break
			}
			var syncing <-chan error
			if inflight != nil {
				syncing = synced
				if b.full() {
					finished(<-synced)
					continue
				}
			}
			select {
			case r := <-s.reqs.C():
				s.add(b, r, inflight)
			case err := <-syncing:
				finished(err)
			case <-closing:
				// Close admits no new request once closing is closed, so
				// what is queued now is all that is left to write.
				closing = nil
			}
		}
		if len(b.ok) > 0 && s.ship(b, toSyncer) {
			inflight = b
		}
		if closing == nil && len(s.reqs.C()) == 0 {
			if inflight != nil {
				finished(<-synced)
			}
			return
		}
	}
}

// ship writes b's journal key and hands b to the syncer, or fails its
// requests if the store has failed; it reports whether b went to the syncer.
func (s *Store) ship(b *batch, toSyncer chan<- *batch) bool {
	if s.failed == nil && len(b.ops) > 0 {
		s.journalN++
		b.journal, b.prev = s.journalN, s.lastJournal
		s.lastJournal = b.journal
		err := s.db.Update(func(tx *buntdb.Tx) error {
			_, _, err := tx.Set(journalKey(b.journal), encodeOps(b.ops), nil)
			return err
		})
		if err != nil {
			s.failed = fmt.Errorf("%w (%v)", core.ErrUnavailable, fmt.Errorf("write journal %d: %w", b.journal, err))
			s.log.Error("store write failed; refusing further writes", "err", err)
		}
	}
	if s.failed != nil {
		for _, r := range b.ok {
			r.done <- core.ErrUnavailable
		}
		return false
	}
	toSyncer <- b
	return true
}

// add runs one write function against the stored state, the unapplied
// batch in flight and b's earlier writes, and adds its writes to b.
func (s *Store) add(b *batch, r *writeReq, inflight *batch) {
	b.reqs++
	b.size += r.size
	if s.failed != nil {
		r.done <- s.failed
		return
	}
	_ = s.db.View(func(tx *buntdb.Tx) error {
		w := &wtx{tx: tx, batch: b, inflight: inflight, mine: make(map[string]*op)}
		if err := r.fn(w); err != nil {
			r.done <- err // nothing of it was written
			return nil
		}
		for k, o := range w.mine {
			b.overlay[k] = o
		}
		b.ops = append(b.ops, w.ops...)
		b.ok = append(b.ok, r)
		return nil
	})
}

// syncer makes each batch durable in order: fsync (covering its journal
// key and everything written before it), then apply its keys and drop the
// previous batch's journal key, whose applied keys that fsync just made
// durable. Then it answers the batch's callers.
func (s *Store) syncer(in <-chan *batch, synced chan<- error) {
	for b := range in {
		var err error
		if b.journal != 0 {
			if err = s.sync.Sync(); err != nil {
				err = fmt.Errorf("fsync journal %d: %w", b.journal, err)
			} else if err = s.db.Update(func(tx *buntdb.Tx) error {
				if err := applyOps(tx, b.ops); err != nil {
					return err
				}
				if b.prev != 0 {
					if _, err := tx.Delete(journalKey(b.prev)); err != nil && !errors.Is(err, buntdb.ErrNotFound) {
						return err
					}
				}
				return nil
			}); err != nil {
				err = fmt.Errorf("apply journal %d: %w", b.journal, err)
			}
		}
		for _, r := range b.ok {
			if err != nil {
				r.done <- core.ErrUnavailable
			} else {
				r.done <- nil
			}
		}
		synced <- err
	}
}

func applyOps(tx *buntdb.Tx, ops []*op) error {
	for _, o := range ops {
		if o.del {
			if _, err := tx.Delete(o.key); err != nil && !errors.Is(err, buntdb.ErrNotFound) {
				return err
			}
			continue
		}
		if _, _, err := tx.Set(o.key, o.val, nil); err != nil {
			return err
		}
	}
	return nil
}

func journalKey(n uint64) string { return "j:" + pad(n) }

func encodeOps(ops []*op) string {
	n := 0
	for _, o := range ops {
		n += len(o.key) + len(o.val) + 2*binary.MaxVarintLen64 + 1
	}
	b := make([]byte, 0, n)
	for _, o := range ops {
		if o.del {
			b = append(b, 'D')
		} else {
			b = append(b, 'S')
		}
		b = binary.AppendUvarint(b, uint64(len(o.key)))
		b = append(b, o.key...)
		b = binary.AppendUvarint(b, uint64(len(o.val)))
		b = append(b, o.val...)
	}
	return string(b)
}

func decodeOps(s string) ([]*op, error) {
	b := []byte(s)
	var ops []*op
	next := func() (string, error) {
		n, k := binary.Uvarint(b)
		if k <= 0 || uint64(len(b)-k) < n {
			return "", errors.New("corrupt journal")
		}
		v := string(b[k : k+int(n)])
		b = b[k+int(n):]
		return v, nil
	}
	for len(b) > 0 {
		kind := b[0]
		b = b[1:]
		key, err := next()
		if err != nil {
			return nil, err
		}
		val, err := next()
		if err != nil {
			return nil, err
		}
		ops = append(ops, &op{key: key, val: val, del: kind == 'D'})
	}
	return ops, nil
}

// replay applies the journal keys a crash left behind, oldest first.
func (s *Store) replay() error {
	var keys, vals []string
	if err := s.db.View(func(tx *buntdb.Tx) error {
		return tx.AscendGreaterOrEqual("", "j:", func(k, v string) bool {
			if !strings.HasPrefix(k, "j:") {
				return false
			}
			keys, vals = append(keys, k), append(vals, v)
			return true
		})
	}); err != nil {
		return err
	}
	for i, k := range keys {
		ops, err := decodeOps(vals[i])
		if err != nil {
			return fmt.Errorf("replay %s: %w", k, err)
		}
		if err := s.db.Update(func(tx *buntdb.Tx) error {
			if err := applyOps(tx, ops); err != nil {
				return err
			}
			_, err := tx.Delete(k)
			return err
		}); err != nil {
			return fmt.Errorf("replay %s: %w", k, err)
		}
	}
	if len(keys) > 0 {
		s.log.Info("replayed journal", "batches", len(keys))
	}
	return s.sync.Sync()
}

// openSync opens a descriptor of the database file of its own, used only
// for fsync: fsync flushes the file, whichever descriptor wrote to it.
func openSync(path string) (*os.File, error) {
	return os.OpenFile(path, os.O_RDONLY, 0)
}
