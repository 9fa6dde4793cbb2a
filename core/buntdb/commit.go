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
	tx    *buntdb.Tx
	batch map[string]*op
	mine  map[string]*op
	ops   []*op
}

func (w *wtx) get(key string) (string, bool) {
	if o, ok := w.mine[key]; ok {
		return o.val, !o.del
	}
	if o, ok := w.batch[key]; ok {
		return o.val, !o.del
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
	select {
	case s.reqs <- req:
	case <-s.closing:
		return core.ErrUnavailable
	case <-ctx.Done():
		return ctx.Err()
	}
	// Once queued, wait for the outcome even if ctx ends: the write may
	// already be durable, and the caller must not be told otherwise.
	return <-req.done
}

func (s *Store) committer() {
	defer close(s.stopped)
	var batch []*writeReq
	for {
		batch = batch[:0]
		select {
		case r := <-s.reqs:
			batch = append(batch, r)
		case <-s.closing:
			// Drain what was queued before closing.
			for {
				select {
				case r := <-s.reqs:
					s.commit([]*writeReq{r})
					continue
				default:
				}
				return
			}
		}
		size := batch[0].size
	fill:
		for len(batch) < maxBatchReqs && size < maxBatchBytes {
			select {
			case r := <-s.reqs:
				batch = append(batch, r)
				size += r.size
			default:
				break fill
			}
		}
		s.commit(batch)
	}
}

func (s *Store) commit(batch []*writeReq) {
	if s.failed != nil {
		for _, r := range batch {
			r.done <- s.failed
		}
		return
	}
	overlay := make(map[string]*op)
	var ops []*op
	var ok []*writeReq
	err := s.db.View(func(tx *buntdb.Tx) error {
		for _, r := range batch {
			w := &wtx{tx: tx, batch: overlay, mine: make(map[string]*op)}
			if err := r.fn(w); err != nil {
				r.done <- err // nothing of it was written
				continue
			}
			for k, o := range w.mine {
				overlay[k] = o
			}
			ops = append(ops, w.ops...)
			ok = append(ok, r)
		}
		return nil
	})
	if err == nil && len(ops) > 0 {
		err = s.persist(ops)
	}
	if err != nil {
		s.failed = fmt.Errorf("store failed, writes stopped: %w", err)
		s.log.Error("store write failed; refusing further writes", "err", err)
		for _, r := range ok {
			r.done <- core.ErrUnavailable
		}
		return
	}
	for _, r := range ok {
		r.done <- nil
	}
}

func (s *Store) persist(ops []*op) error {
	s.journalN++
	jkey := journalKey(s.journalN)
	if err := s.db.Update(func(tx *buntdb.Tx) error {
		_, _, err := tx.Set(jkey, encodeOps(ops), nil)
		return err
	}); err != nil {
		return fmt.Errorf("write journal %d: %w", s.journalN, err)
	}
	if err := s.sync.Sync(); err != nil {
		return fmt.Errorf("fsync journal %d: %w", s.journalN, err)
	}
	if err := s.db.Update(func(tx *buntdb.Tx) error {
		if err := applyOps(tx, ops); err != nil {
			return err
		}
		if s.journalN > 1 {
			_, err := tx.Delete(journalKey(s.journalN - 1))
			if err != nil && !errors.Is(err, buntdb.ErrNotFound) {
				return err
			}
		}
		return nil
	}); err != nil {
		return fmt.Errorf("apply journal %d: %w", s.journalN, err)
	}
	return nil
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

