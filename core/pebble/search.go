package pebble

import (
	"bytes"
	"context"
	"encoding/binary"
	"encoding/json"
	"errors"
	"fmt"
	"slices"
	"sync"
	"sync/atomic"
	"time"

	"github.com/cockroachdb/pebble/v2"

	"github.com/chatgate/chatgate/core"
)

// Search index. Why the history engine's own sorted keys rather than a
// search library (Bleve was the candidate):
//
//   - A chat search is "newest first, in my conversations", not "best
//     scored": a posting list per (conversation, term), newest id last, is
//     read backwards, and a page costs a few seeks per conversation however
//     common the term is. A scored engine collects every hit to sort it.
//   - One engine, one crash story: postings are Pebble keys in the same log
//     as the messages, so the ordering argument below holds, and backups,
//     compaction and the block cache are the ones the history already has.
//   - The terms are core.Terms, which the PostgreSQL store indexes too, so
//     both stores find the same messages.
//
// Layout (keys.go has the rest):
//
//	q id conv            → (empty)   a message not yet indexed
//	s conv term 0x00 id  → (empty)   posting: conv's message id holds term
//	n uid id             → conv      uid is mentioned by message id
//
// Append writes the q key in the message's own batch (one small key: the
// durable send path pays nothing else). An indexer goroutine, poked after
// each fsync, turns the q keys of durable messages (ids up to the newest
// one fsynced: one node's ids grow in commit order) into postings and
// deletes them in one batch,
// written without its own fsync: Pebble logs batches in order, so if a crash
// keeps the index batch it kept the message batch before it, and if it
// loses it, the q keys are back and the indexer does the work again (a
// posting is the same key both times). A crash therefore never leaves a
// message unindexed; the indexer catches up at start.
//
// A history written before the index (format 1) is indexed by a backfill
// that walks every message key, with its position kept in x search_backfill
// so a restart resumes it.
const (
	kindIndexQueue = 'q'
	kindPosting    = 's'
	kindMention    = 'n'

	indexChunk = 512 // messages per index batch
)

func queueKey(id core.ID, c conv) []byte {
	b := make([]byte, 0, 1+8+c.n)
	return append(appendU64(append(b, kindIndexQueue), uint64(id)), c.bytes()...)
}

// termPrefix is the range of conv's postings of term.
func termPrefix(c conv, term string) []byte {
	b := make([]byte, 0, 1+c.n+len(term)+1+8)
	return append(append(append(append(b, kindPosting), c.bytes()...), term...), 0)
}

func mentionKey(uid, id core.ID) []byte {
	return appendU64(userPrefix(kindMention, uid), uint64(id))
}

// indexer owns the index-writing goroutine and the waits on it.
type indexer struct {
	// durable is the newest message id known durable; the indexer takes
	// only messages up to it, so a search never shows a message that a
	// crash could take back.
	durable atomic.Uint64

	poke chan struct{}
	stop chan struct{}
	done chan struct{}

	// cursor is the indexer's own: the smallest queue key that may still
	// be queued (nil: the start of the queue). rewind, set by an import of
	// older messages, sends it back to the start.
	cursor []byte
	rewind atomic.Bool

	// indexed: every message up to this id is indexed (the durable id
	// the last complete pass started with).
	indexed atomic.Uint64

	mu      sync.Mutex
	asked   uint64 // WaitIndexed calls so far
	waiters []idxWaiter
}

type idxWaiter struct {
	ticket uint64
	upTo   core.ID
	ch     chan struct{}
}

func newIndexer() *indexer {
	return &indexer{poke: make(chan struct{}, 1), stop: make(chan struct{}), done: make(chan struct{})}
}

// durableUpTo records that every message up to id is durable and wakes the
// indexer.
func (x *indexer) durableUpTo(id core.ID) {
	for {
		cur := x.durable.Load()
		if uint64(id) <= cur {
			return
		}
		if x.durable.CompareAndSwap(cur, uint64(id)) {
			x.wake()
			return
		}
	}
}

func (x *indexer) wake() {
	select {
	case x.poke <- struct{}{}:
	default:
	}
}

// WaitIndexed implements core.IndexWaiter: it returns at once if every
// message up to upTo is indexed, else once a pass of the indexer that
// started after the call has indexed every durable message (or one that
// covered upTo). Every message committed before the call was durable when
// that pass started. A pass ends: it takes the messages up to the durable
// id it started with, never those committed while it runs.
func (s *Store) WaitIndexed(ctx context.Context, upTo core.ID) error {
	x := s.idx
	if upTo != 0 && x.indexed.Load() >= uint64(upTo) {
		return nil
	}
	x.mu.Lock()
	x.asked++
	w := idxWaiter{ticket: x.asked, upTo: upTo, ch: make(chan struct{})}
	x.waiters = append(x.waiters, w)
	x.mu.Unlock()
	x.wake()
	select {
	case <-w.ch:
		return nil
	case <-ctx.Done():
		return ctx.Err()
	case <-x.done:
		return core.ErrUnavailable
	}
}

// runIndexer indexes until Close stops it.
func (s *Store) runIndexer() {
	x := s.idx
	defer close(x.done)
	backoff := time.Duration(0)
	for {
		x.mu.Lock()
		ticket := x.asked
		x.mu.Unlock()
		bound, err := s.indexQueue(x.stop)
		if err == nil {
			x.indexed.Store(bound)
			x.mu.Lock()
			kept := x.waiters[:0]
			for _, w := range x.waiters {
				if w.ticket <= ticket || (w.upTo != 0 && uint64(w.upTo) <= bound) {
					close(w.ch)
				} else {
					kept = append(kept, w)
				}
			}
			x.waiters = kept
			x.mu.Unlock()
			// One backfill batch a pass: the messages sent meanwhile,
			// and the searches waiting for them, go first.
			var more bool
			if more, err = s.backfillStep(); err == nil && more {
				x.wake()
			}
		}
		if errors.Is(err, errStopped) {
			return
		}
		if err != nil {
			backoff = min(max(2*backoff, 100*time.Millisecond), 10*time.Second)
			s.log.Error("search index", "err", err, "retry_in", backoff)
			select {
			case <-x.stop:
				return
			case <-time.After(backoff):
			}
			continue
		}
		backoff = 0
		select {
		case <-x.stop:
			return
		case <-x.poke:
		}
	}
}

var errStopped = errors.New("indexer stopped")

// indexQueue indexes every queued message that is durable now, a chunk per
// batch, and returns the durable id it went up to.
func (s *Store) indexQueue(stop <-chan struct{}) (uint64, error) {
	d := s.idx.durable.Load()
	upper := []byte{kindIndexQueue + 1}
	if d < 1<<64-1 {
		upper = appendU64([]byte{kindIndexQueue}, d+1)
	}
	for {
		select {
		case <-stop:
			return 0, errStopped
		default:
		}
		n, err := s.indexQueueChunk(upper)
		if err != nil || n < indexChunk {
			return d, err
		}
	}
}

func (s *Store) indexQueueChunk(upper []byte) (int, error) {
	// Every queue key below the cursor has been indexed and deleted (ids
	// are issued in commit order): starting there skips their tombstones.
	lower := []byte{kindIndexQueue}
	if s.idx.rewind.Swap(false) {
		s.idx.cursor = nil
	}
	if s.idx.cursor != nil {
		lower = s.idx.cursor
	}
	it, err := s.db.NewIter(&pebble.IterOptions{LowerBound: lower, UpperBound: upper})
	if err != nil {
		return 0, err
	}
	defer it.Close()
	b := s.db.NewBatch()
	defer b.Close()
	n := 0
	var last []byte
	for ok := it.First(); ok && n < indexChunk; ok = it.Next() {
		k := it.Key()
		if len(k) < 9 {
			return n, fmt.Errorf("corrupt index queue key %x", k)
		}
		id := core.ID(binary.BigEndian.Uint64(k[1:9]))
		c, _, err := decodeConv(k[9:])
		if err != nil {
			return n, fmt.Errorf("index queue key of message %d: %w", id, err)
		}
		if err := s.indexMessage(b, c, id); err != nil {
			return n, err
		}
		_ = b.SingleDelete(k, nil)
		// A copy: the loop's last Next may reuse the key's bytes.
		last = append(last[:0], k...)
		n++
	}
	if err := it.Error(); err != nil {
		return n, err
	}
	if n == 0 {
		return 0, nil
	}
	if err := s.applyIndex(b); err != nil {
		return 0, err
	}
	s.idx.cursor = append(slices.Clone(last), 0)
	if s.onIndex != nil {
		s.onIndex(n)
	}
	return n, nil
}

// applyIndex writes an index batch while the store is open.
func (s *Store) applyIndex(b *pebble.Batch) error {
	return s.read(func() error { return s.db.Apply(b, pebble.NoSync) })
}

// indexMessage adds the postings of message (c, id) to b. A point Get:
// the message was just committed, so it is found in the memtable and no
// sstable is read (an iterator's SeekGE positions every level).
func (s *Store) indexMessage(b *pebble.Batch, c conv, id core.ID) error {
	v, closer, err := s.db.Get(msgKey(c, id))
	if errors.Is(err, pebble.ErrNotFound) {
		return nil
	}
	if err != nil {
		return err
	}
	defer closer.Close()
	m, err := decodeRecord(c, id, v)
	if err != nil {
		return err
	}
	return indexContent(b, c, id, m.Content)
}

func indexContent(b *pebble.Batch, c conv, id core.ID, content string) error {
	for _, t := range core.Terms(content) {
		if err := b.Set(appendU64(termPrefix(c, t), uint64(id)), nil, nil); err != nil {
			return err
		}
	}
	return nil
}

var backfillKey = metaKey("search_backfill")

// backfillStep indexes the next chunk of the messages of a history written
// before the index, in one batch with its position, and reports whether
// chunks remain.
func (s *Store) backfillStep() (more bool, err error) {
	pos, ok, err := s.get(backfillKey)
	if err != nil || !ok {
		return false, err
	}
	done, err := s.backfillChunk(pos)
	return err == nil && !done, err
}

func (s *Store) backfillChunk(pos []byte) (done bool, err error) {
	lo := []byte{kindMessage}
	if len(pos) > 0 {
		lo = append(slices.Clone(pos), 0)
	}
	it, err := s.db.NewIter(&pebble.IterOptions{LowerBound: lo, UpperBound: []byte{kindMessage + 1}})
	if err != nil {
		return false, err
	}
	defer it.Close()
	b := s.db.NewBatch()
	defer b.Close()
	n := 0
	var last []byte
	for ok := it.First(); ok && n < indexChunk; ok = it.Next() {
		k := it.Key()
		c, rest, err := decodeConv(k[1:])
		if err != nil || len(rest) != 8 {
			return false, fmt.Errorf("corrupt message key %x", k)
		}
		id := core.ID(binary.BigEndian.Uint64(rest))
		// A message sent since the upgrade may not be durable yet; its
		// queue key has it indexed once it is.
		if uint64(id) <= s.idx.durable.Load() {
			v, err := it.ValueAndErr()
			if err != nil {
				return false, err
			}
			m, err := decodeRecord(c, id, v)
			if err != nil {
				return false, err
			}
			if err := indexContent(b, c, id, m.Content); err != nil {
				return false, err
			}
		}
		// The iterator may reuse Key's bytes on the next Next, which
		// the loop calls before it stops at indexChunk: keep a copy.
		last = append(last[:0], k...)
		n++
	}
	if err := it.Error(); err != nil {
		return false, err
	}
	if n < indexChunk {
		_ = b.Delete(backfillKey, nil)
		done = true
		s.log.Info("search index built for the messages stored before it")
	} else {
		_ = b.Set(backfillKey, last, nil)
	}
	if err := s.applyIndex(b); err != nil {
		return false, err
	}
	if s.onIndex != nil && n > 0 {
		s.onIndex(n)
	}
	return done, nil
}

// Backfilling reports whether messages stored before the index are still
// being indexed.
func (s *Store) Backfilling() (bool, error) {
	_, ok, err := s.get(backfillKey)
	return ok, err
}

// convsOf returns the conversations uid belongs to now.
func (s *Store) convsOf(ctx context.Context, uid core.ID) ([]conv, error) {
	p := userPrefix(kindConv, uid)
	it, err := s.db.NewIter(&pebble.IterOptions{LowerBound: p, UpperBound: prefixEnd(p)})
	if err != nil {
		return nil, err
	}
	var out []conv
	for ok := it.First(); ok; ok = it.Next() {
		c, _, err := decodeConv(it.Key()[len(p):])
		if err != nil {
			it.Close()
			return nil, err
		}
		out = append(out, c)
	}
	if err := errors.Join(it.Error(), it.Close()); err != nil {
		return nil, err
	}
	kept := out[:0]
	for _, c := range out {
		if g := c.group(); g != 0 {
			// A former member's listing key may outlive its membership
			// (removal writes the group first, then this key's delete).
			if ok, err := s.member(ctx, uid, core.ParsedConv{Group: g}); err != nil {
				return nil, err
			} else if !ok {
				continue
			}
		}
		kept = append(kept, c)
	}
	return kept, nil
}

// Search implements core.Finder: per conversation, the newest ids below
// Before held by every term (a leapfrog join of the terms' posting lists,
// read backwards), merged newest first.
func (s *Store) Search(ctx context.Context, uid core.ID, q core.SearchQuery) ([]core.Found, error) {
	if err := s.enter(); err != nil {
		return nil, err
	}
	defer s.leave()
	var convs []conv
	if q.Conv != "" {
		c, err := s.memberConv(ctx, uid, q.Conv)
		if err != nil {
			return nil, err
		}
		convs = []conv{c}
	} else {
		var err error
		if convs, err = s.convsOf(ctx, uid); err != nil {
			return nil, err
		}
	}
	if len(q.Terms) == 0 || q.Limit <= 0 {
		return nil, nil
	}
	its := make([]*pebble.Iterator, len(q.Terms))
	for i := range its {
		it, err := s.db.NewIter(&pebble.IterOptions{LowerBound: []byte{kindPosting}, UpperBound: []byte{kindPosting + 1}})
		if err != nil {
			return nil, err
		}
		defer it.Close()
		its[i] = it
	}
	type hit struct {
		c  conv
		id core.ID
	}
	var hits []hit
	prefixes := make([][]byte, len(q.Terms))
	for _, c := range convs {
		for i, t := range q.Terms {
			prefixes[i] = termPrefix(c, t)
		}
		// Once the page is full, only ids above its oldest can make it.
		var floor core.ID
		if len(hits) >= q.Limit {
			floor = hits[q.Limit-1].id
		}
		upper := q.Before
		for n := 0; n < q.Limit; n++ {
			id, err := leapfrog(its, prefixes, upper)
			if err != nil {
				return nil, err
			}
			if id == 0 || id <= floor {
				break
			}
			hits = append(hits, hit{c, id})
			upper = id
		}
		if len(hits) >= q.Limit {
			slices.SortFunc(hits, func(a, b hit) int { return -cmpID(a.id, b.id) })
			hits = hits[:q.Limit]
		}
	}
	slices.SortFunc(hits, func(a, b hit) int { return -cmpID(a.id, b.id) })
	out := make([]core.Found, 0, len(hits))
	for _, h := range hits {
		raw, err := s.messageJSON(h.c, h.id)
		if err != nil {
			return nil, err
		}
		out = append(out, core.Found{ConversationID: h.c.String(), Message: raw})
	}
	return out, nil
}

// messageJSON reads message (c, id) with a point lookup, which stops at
// the first level holding the key (an iterator's seek positions every
// level), and encodes it for the wire.
func (s *Store) messageJSON(c conv, id core.ID) (json.RawMessage, error) {
	v, closer, err := s.db.Get(msgKey(c, id))
	if err != nil {
		return nil, fmt.Errorf("message %d: %w", id, err)
	}
	defer closer.Close()
	m, err := decodeRecord(c, id, v)
	if err != nil {
		return nil, err
	}
	return m.AppendJSON(make([]byte, 0, 200+len(m.Content)+len(m.ClientMsgID))), nil
}

func cmpID(a, b core.ID) int {
	switch {
	case a < b:
		return -1
	case a > b:
		return 1
	}
	return 0
}

// leapfrog returns the greatest id below upper (0: no bound) present in
// every posting list, or 0 if there is none. The first list proposes a
// candidate; a list whose newest id not above it is older proposes that
// one instead, until every list holds the candidate.
func leapfrog(its []*pebble.Iterator, prefixes [][]byte, upper core.ID) (core.ID, error) {
	bound := uint64(upper) // exclusive
	if upper == 0 {
		bound = 1<<64 - 1
	}
next:
	for {
		cand, ok := seekBelow(its[0], prefixes[0], bound)
		if !ok {
			return 0, its[0].Error()
		}
		for i := 1; i < len(its); i++ {
			id, ok := seekBelow(its[i], prefixes[i], cand+1)
			if !ok {
				return 0, its[i].Error()
			}
			if id < cand {
				bound = id + 1
				continue next
			}
		}
		return core.ID(cand), nil
	}
}

// seekBelow finds the greatest id < bound in the posting list at prefix.
func seekBelow(it *pebble.Iterator, prefix []byte, bound uint64) (uint64, bool) {
	if !it.SeekLT(appendU64(slices.Clip(prefix), bound)) {
		return 0, false
	}
	k := it.Key()
	if len(k) != len(prefix)+8 || !bytes.HasPrefix(k, prefix) {
		return 0, false
	}
	return binary.BigEndian.Uint64(k[len(prefix):]), true
}

// Mentions implements core.Finder.
func (s *Store) Mentions(ctx context.Context, uid core.ID, before core.ID, limit int) ([]json.RawMessage, error) {
	if err := s.enter(); err != nil {
		return nil, err
	}
	defer s.leave()
	p := userPrefix(kindMention, uid)
	hi := prefixEnd(p)
	if before != 0 {
		hi = mentionKey(uid, before)
	}
	it, err := s.db.NewIter(&pebble.IterOptions{LowerBound: p, UpperBound: hi})
	if err != nil {
		return nil, err
	}
	defer it.Close()
	member := map[core.ID]bool{}
	var out []json.RawMessage
	for ok := it.Last(); ok && len(out) < limit; ok = it.Prev() {
		k := it.Key()
		id := core.ID(binary.BigEndian.Uint64(k[len(k)-8:]))
		v, err := it.ValueAndErr()
		if err != nil {
			return nil, err
		}
		c, _, err := decodeConv(v)
		if err != nil {
			return nil, fmt.Errorf("mention %d of user %d: %w", id, uid, err)
		}
		if g := c.group(); g != 0 {
			in, seen := member[g]
			if !seen {
				if in, err = s.member(ctx, uid, core.ParsedConv{Group: g}); err != nil {
					return nil, err
				}
				member[g] = in
			}
			if !in {
				continue
			}
		}
		raw, err := s.messageJSON(c, id)
		if err != nil {
			return nil, fmt.Errorf("mention of user %d: %w", uid, err)
		}
		out = append(out, raw)
	}
	return out, it.Error()
}

// HistoryAfter implements core.Finder.
func (s *Store) HistoryAfter(ctx context.Context, uid core.ID, convID string, after core.ID, limit int) ([]json.RawMessage, error) {
	return s.page(ctx, uid, convID, 0, after, limit, true)
}

// IndexBytes estimates the disk space of the search index (postings and
// mentions) and of the messages themselves, for the benchmarks' figures.
func (s *Store) IndexBytes() (index, messages uint64, err error) {
	err = s.read(func() error {
		p, err := s.db.EstimateDiskUsage([]byte{kindPosting}, []byte{kindPosting + 1})
		if err != nil {
			return err
		}
		n, err := s.db.EstimateDiskUsage([]byte{kindMention}, []byte{kindMention + 1})
		if err != nil {
			return err
		}
		m, err := s.db.EstimateDiskUsage([]byte{kindMessage}, []byte{kindMessage + 1})
		index, messages = p+n, m
		return err
	})
	return index, messages, err
}
