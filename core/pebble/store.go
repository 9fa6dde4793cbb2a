// Package pebble keeps chat history on disk in Pebble, CockroachDB's LSM
// engine: messages, inboxes, client_msg_id keys, read markers, the
// conversations each user has and the push outbox. Memory holds a bounded
// block cache and the memtables, never per-message state, and opening reads
// only the write-ahead log of the newest writes, so neither grows with
// history.
//
// It implements core.Messages and core.PushOutbox; who exists and who
// belongs to which group it asks a Directory (the embedded node's buntdb).
package pebble

import (
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"log/slog"
	"math"
	"os"
	"slices"
	"sync"
	"time"

	"github.com/cockroachdb/pebble/v2"
	"github.com/cockroachdb/pebble/v2/bloom"

	"github.com/chatgate/chatgate/core"
	"github.com/chatgate/chatgate/internal/writeq"
)

// Directory is what the history store asks about users and groups.
type Directory interface {
	// UserExists reports whether the user exists; every 1:1 send asks.
	UserExists(ctx context.Context, id core.ID) (bool, error)
	// Group returns core.ErrGroupNotFound for an unknown group.
	Group(ctx context.Context, id core.ID) (core.Group, error)
}

// Options tune the store; the zero value is the default.
type Options struct {
	// CacheBytes bounds Pebble's block cache (default 64 MiB).
	CacheBytes int64
	// MemTableBytes is the size of one memtable (default 32 MiB). Up to two
	// are held, and the write-ahead log replayed after a crash is at most
	// about this much, so it bounds restart time too.
	MemTableBytes uint64
	// OnCommit, if set, is told of every durable group commit: its write
	// requests and the time from its first request to the fsync.
	OnCommit func(requests int, d time.Duration)
	// OnIndex, if set, is told of every batch of messages indexed for
	// search.
	OnIndex func(messages int)
}

// DefaultCacheBytes is the block cache of a node that does not set one.
const DefaultCacheBytes = 64 << 20

// FormatVersion is the layout this package writes (keys.go); Open refuses
// a newer one rather than misread it. Format 2 added the search index and
// mentions (search.go); a format-1 history is upgraded in place by starting
// the index's backfill.
const FormatVersion = 2

// Store is the history half of the embedded store.
type Store struct {
	onCommit func(requests int, d time.Duration)
	onIndex  func(messages int)
	idx      *indexer
	db       *pebble.DB
	dir      Directory
	ids      *core.Snowflake
	log      *slog.Logger

	closeMu sync.RWMutex
	closed  bool
	reqs    *writeq.Queue[*writeReq]
	stopped chan struct{}

	// Owned by the committer (commit.go).
	heads  map[core.ID]uint64    // inbox heads; may be emptied at any time
	convs  map[userConv]struct{} // conversation-list keys known to be stored
	ticket uint64                // batches applied so far

	// A batch is visible to readers once applied, before it is durable.
	// pending holds, per user, the inbox seqs applied but not yet durable;
	// the inbox read path (resume) never shows them, so no device can see
	// an event that a power loss would then take back and reissue.
	pmu     sync.Mutex
	pending map[core.ID][]uint64
	recent  *recent
	queue   []inflight // applied batches not yet known durable, in ticket order
	durable uint64     // every ticket up to this one is durable

	// The push outbox is a queue: entries are written at its end (ids
	// grow) and deleted from its front, and an LSM keeps a deleted key as
	// a tombstone until compaction drops it, which every scan from the
	// front would step over. pushLow is a key below which no entry is
	// left, learned by the scans; pushHigh is the greatest key written.
	// Both under pushMu.
	pushMu   sync.Mutex
	pushLow  []byte
	pushHigh []byte

	failMu sync.Mutex
	failed error
}

type userConv struct {
	uid  core.ID
	conv conv
}

type inflight struct {
	ticket uint64
	ds     []core.Delivery
}

var (
	_ core.Messages   = (*Store)(nil)
	_ core.PushOutbox = (*Store)(nil)
)

// Bounds of the committer's caches and of the recent-entries cache; each
// is emptied when it grows past its bound.
const (
	maxHeads    = 1 << 18
	maxConvs    = 1 << 18
	recentBytes = 16 << 20
)

// Open opens (creating if needed) the history in dir.
func Open(dir string, d Directory, ids *core.Snowflake, log *slog.Logger, o Options) (*Store, error) {
	if o.CacheBytes <= 0 {
		o.CacheBytes = DefaultCacheBytes
	}
	if o.MemTableBytes == 0 {
		o.MemTableBytes = 32 << 20
	}
	cache := pebble.NewCache(o.CacheBytes)
	defer cache.Unref() // the DB holds its own reference
	opts := &pebble.Options{
		Cache:              cache,
		MemTableSize:       o.MemTableBytes,
		FormatMajorVersion: pebble.FormatNewest,
		Logger:             pebbleLogger{log},
	}
	// Bloom filters let a send learn that its client_msg_id is new, and a
	// resume find each inbox entry's message, without reading a block of
	// every level.
	for i := range opts.Levels {
		opts.Levels[i].FilterPolicy = bloom.FilterPolicy(10)
	}
	db, err := pebble.Open(dir, opts)
	if err != nil {
		return nil, fmt.Errorf("open history %s: %w", dir, err)
	}
	s := &Store{
		db: db, dir: d, ids: ids, log: log,
		reqs: writeq.New[*writeReq](maxBatchReqs), stopped: make(chan struct{}),
		heads: make(map[core.ID]uint64), convs: make(map[userConv]struct{}),
		pending: make(map[core.ID][]uint64),
		recent:  newRecent(recentBytes), onCommit: o.OnCommit, onIndex: o.OnIndex,
		idx: newIndexer(),
	}
	if err := s.checkFormat(); err != nil {
		db.Close()
		return nil, err
	}
	if v, ok, err := s.get(metaKey("newest_id")); err != nil {
		db.Close()
		return nil, err
	} else if ok && len(v) == 8 {
		// The generator must never reissue a stored id, even when the
		// clock is behind the one that issued it.
		ids.Observe(core.ID(binary.BigEndian.Uint64(v)))
		// Whatever the log replayed is durable: the indexer may take it.
		s.idx.durableUpTo(core.ID(binary.BigEndian.Uint64(v)))
	}
	go s.committer()
	go s.runIndexer()
	return s, nil
}

func (s *Store) checkFormat() error {
	v, ok, err := s.get(metaKey("format"))
	if err != nil {
		return err
	}
	if !ok {
		return s.db.Set(metaKey("format"), []byte{FormatVersion}, pebble.Sync)
	}
	if len(v) != 1 || v[0] > FormatVersion {
		return fmt.Errorf("history format %v was written by a newer chatgate; this one reads up to %d", v, FormatVersion)
	}
	if v[0] == 1 {
		// 1 → 2: the messages stored so far are indexed by the backfill,
		// which starts from the first message key. One batch, so a crash
		// leaves either format 1 (upgraded again next start) or both.
		b := s.db.NewBatch()
		_ = b.Set(backfillKey, nil, nil)
		_ = b.Set(metaKey("format"), []byte{FormatVersion}, nil)
		if err := b.Commit(pebble.Sync); err != nil {
			return fmt.Errorf("upgrade history format 1 to 2: %w", err)
		}
		s.log.Info("history upgraded to format 2; indexing stored messages for search in the background")
	}
	return nil
}

// Close finishes the writes queued, flushes the memtables, so the next
// start replays no log, and closes the engine. Calls after Close return
// core.ErrUnavailable.
func (s *Store) Close() error {
	if !s.reqs.Close() {
		return nil
	}
	<-s.stopped // every write queued is done
	close(s.idx.stop)
	<-s.idx.done
	// Taking the lock waits for every read in progress; none starts after.
	s.closeMu.Lock()
	s.closed = true
	s.closeMu.Unlock()
	var err error
	if s.fail() == nil {
		err = s.db.Flush()
	}
	return errors.Join(err, s.db.Close())
}

// enter admits one call while the store is open; leave ends it.
func (s *Store) enter() error {
	s.closeMu.RLock()
	if s.closed {
		s.closeMu.RUnlock()
		return core.ErrUnavailable
	}
	if err := s.fail(); err != nil {
		s.closeMu.RUnlock()
		return err
	}
	return nil
}

func (s *Store) leave() { s.closeMu.RUnlock() }

// read runs fn while the store is open. Write functions never call it:
// the committer runs them before Close closes the engine.
func (s *Store) read(fn func() error) error {
	if err := s.enter(); err != nil {
		return err
	}
	defer s.leave()
	return fn()
}

func (s *Store) fail() error {
	s.failMu.Lock()
	defer s.failMu.Unlock()
	return s.failed
}

// setFailed stops all further writes: after a failed fsync the log's state
// on disk is unknown (the kernel may have dropped the dirty pages).
func (s *Store) setFailed(err error) error {
	s.failMu.Lock()
	defer s.failMu.Unlock()
	if s.failed == nil {
		s.failed = fmt.Errorf("%w (%v)", core.ErrUnavailable, err)
		s.log.Error("history write failed; refusing further writes", "err", err)
	}
	return s.failed
}

// get reads one key; the value is a copy.
func (s *Store) get(key []byte) ([]byte, bool, error) {
	v, c, err := s.db.Get(key)
	if errors.Is(err, pebble.ErrNotFound) {
		return nil, false, nil
	}
	if err != nil {
		return nil, false, err
	}
	out := slices.Clone(v)
	return out, true, c.Close()
}

// synced records that the batch of ticket t is durable, and with it every
// batch applied before it (they precede it in the log its fsync covered).
func (s *Store) synced(t uint64) {
	s.pmu.Lock()
	defer s.pmu.Unlock()
	if t <= s.durable {
		return
	}
	s.durable = t
	n := 0
	for _, f := range s.queue {
		if f.ticket > t {
			break
		}
		n++
		for _, d := range f.ds {
			p := s.pending[d.UserID]
			if i := slices.Index(p, d.Seq); i >= 0 {
				p = slices.Delete(p, i, i+1)
			}
			if len(p) == 0 {
				delete(s.pending, d.UserID)
			} else {
				s.pending[d.UserID] = p
			}
		}
	}
	s.queue = slices.Delete(s.queue, 0, n)
	if len(s.queue) == 0 && cap(s.queue) > 1024 {
		s.queue = nil
	}
}

// durableLimit is the highest seq of uid's inbox that readers may see.
func (s *Store) durableLimit(uid core.ID) uint64 {
	s.pmu.Lock()
	defer s.pmu.Unlock()
	if p := s.pending[uid]; len(p) > 0 {
		return p[0] - 1 // seqs are applied, so queued, in order
	}
	return math.MaxUint64
}

// pebbleLogger sends Pebble's logs to slog: its routine reports (flushes,
// compactions) at debug level.
type pebbleLogger struct{ log *slog.Logger }

func (l pebbleLogger) Infof(format string, args ...any) {
	l.log.Debug(fmt.Sprintf(format, args...), "component", "pebble")
}

func (l pebbleLogger) Errorf(format string, args ...any) {
	l.log.Error(fmt.Sprintf(format, args...), "component", "pebble")
}

// Fatalf is called when Pebble cannot go on (its log could not be
// written): stopping the process is the only safe answer, and a restart
// recovers from the log.
func (l pebbleLogger) Fatalf(format string, args ...any) {
	l.log.Error(fmt.Sprintf(format, args...), "component", "pebble", "fatal", true)
	os.Exit(70)
}

// SetDirectory replaces the directory; only before the store is in use.
func (s *Store) SetDirectory(d Directory) { s.dir = d }
