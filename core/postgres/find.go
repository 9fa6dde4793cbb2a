package postgres

import (
	"cmp"
	"context"
	"encoding/json"
	"math"
	"slices"
	"strings"
	"sync/atomic"
	"time"
	"unicode/utf8"

	"github.com/jackc/pgx/v5"

	"github.com/chatgate/chatgate/core"
)

// Search. messages.terms holds the message's conversation id followed by
// core.Terms of its content (made in Go, so both stores index the same
// terms; no term of core.Terms holds the '_' of a conversation id). One
// GIN index on terms serves two ways of finding the newest messages of a
// conversation that hold every term of a query:
//
//   - ordered: read the conversation newest first through the primary key
//     (conversation_id, id), testing each message, until the page is full.
//     That reads about limit/f messages, f being the fraction of messages
//     that match: few for a common term, the whole conversation for a rare
//     one.
//   - indexed: ask the GIN index for the messages holding every term and
//     the conversation's id (an intersection of posting lists), then sort
//     them. That fetches all f×size matches of the conversation: few for a
//     rare term, many for a common one in a long conversation.
//
// PostgreSQL's planner does not choose well between them by itself: in a
// join over the caller's conversations it plans one inner scan for all of
// them, sized for the average conversation, and for a rare term it ANDs the
// GIN bitmap with the primary key's range of the conversation, which reads
// every key of a long one (30 ms for fifty conversations of a million
// messages, against 1.5 ms here). So Search picks, per conversation, the
// cheaper way (see termFreqs.plan),
// estimating f and the conversations' sizes from the element statistics
// PostgreSQL keeps for terms (the most common elements and their
// frequencies, conversation ids among them), read at most once a minute.
// The ordered conversations are read by one statement (a lateral join over
// them, bitmap scans off, so that each is an index scan that stops at the
// page), the indexed ones by another (one GIN scan for the terms and any of
// their conversation ids); both run in one round trip after the one that
// lists the caller's conversations.

// termSep joins the terms of one message in a single text, as the batched
// insert passes them; core.Terms never makes a term holding it.
const termSep = "\x1f"

// joinTerms returns core.Terms of content joined by termSep.
func joinTerms(content string) string { return strings.Join(core.Terms(content), termSep) }

// statsMaxAge is how long Search uses the statistics it read.
const statsMaxAge = time.Minute

// searchStats holds the newest termFreqs; one search at a time reads them
// again once they are older than statsMaxAge.
type searchStats struct {
	cur     atomic.Pointer[termFreqs]
	reading atomic.Bool
}

// termFreqs are the planner's statistics of messages.terms: rows is the
// table's estimated row count, freq the fraction of rows holding each of
// the most common elements, other the fraction assumed for any element not
// listed (half the least listed one, as the planner assumes).
type termFreqs struct {
	at    time.Time
	rows  float64
	freq  map[string]float64
	other float64
}

func (t *termFreqs) of(elem string) float64 {
	if f, ok := t.freq[elem]; ok {
		return f
	}
	return t.other
}

// The costs of plan, in microseconds as measured on a small server with
// the data cached.
const (
	costScanRow = 0.5 // a message read newest first and tested
	costHeapRow = 1   // a message fetched for a GIN bitmap
	costPosting = 0.5 // a message checked against one term's posting list
)

// plan splits convs into those read newest first (ordered) and those read
// through the GIN index (indexed), for a page of limit messages holding
// every one of terms. Reading conversation c newest first costs about
// min(size_c, limit/f) messages, f being the fraction of messages that
// match (the terms are assumed independent, as the planner does). The GIN
// scan of the indexed conversations G checks the postings of each term for
// min(Σ_G size, the rarest term's count) messages and fetches the f×Σ_G
// size that match. The ordered way wins for the largest conversations, so
// plan tries each size threshold and keeps the cheapest. Without
// statistics every conversation is indexed: that costs at most the
// matches.
func (t *termFreqs) plan(convs, terms []string, limit int) (ordered, indexed []string) {
	if t == nil || t.rows <= 0 || len(t.freq) == 0 {
		return nil, convs
	}
	f, rarest := 1.0, 1.0
	for _, term := range terms {
		tf := t.of(term)
		f *= tf
		rarest = min(rarest, tf)
	}
	keys := float64(max(len(terms), 1))
	scan := math.Inf(1) // messages read newest first to fill the page
	if f > 0 {
		scan = float64(limit) / f
	}
	type conv struct {
		id   string
		size float64
	}
	cs := make([]conv, len(convs))
	var rest float64 // Σ size of the conversations not yet ordered
	for i, c := range convs {
		cs[i] = conv{c, t.of(c) * t.rows}
		rest += cs[i].size
	}
	slices.SortFunc(cs, func(a, b conv) int { return cmp.Compare(b.size, a.size) })
	indexedCost := func(size float64) float64 {
		return costHeapRow*f*size + costPosting*keys*min(size, rarest*t.rows)
	}
	best, bestK := indexedCost(rest), 0
	var orderedCost float64
	for k, c := range cs {
		orderedCost += costScanRow * min(c.size, scan)
		rest -= c.size
		cost := orderedCost
		if k+1 < len(cs) {
			cost += indexedCost(max(rest, 0))
		}
		if cost < best {
			best, bestK = cost, k+1
		}
	}
	for k, c := range cs {
		if k < bestK {
			ordered = append(ordered, c.id)
		} else {
			indexed = append(indexed, c.id)
		}
	}
	return ordered, indexed
}

// termFreqs returns the statistics, reading them if they are stale; nil if
// there are none.
func (s *Store) termFreqs(ctx context.Context) *termFreqs {
	cur := s.stats.cur.Load()
	if cur != nil && time.Since(cur.at) < statsMaxAge {
		return cur
	}
	if !s.stats.reading.CompareAndSwap(false, true) {
		return cur // another search is reading them
	}
	defer s.stats.reading.Store(false)
	t := &termFreqs{at: time.Now(), freq: map[string]float64{}}
	var (
		elems []string
		freqs []float32
	)
	err := s.pool.QueryRow(ctx, `SELECT c.reltuples::float8, s.most_common_elems::text::text[], s.most_common_elem_freqs
		FROM pg_class c
		JOIN pg_namespace n ON n.oid = c.relnamespace
		LEFT JOIN pg_stats s ON s.schemaname = n.nspname AND s.tablename = c.relname AND s.attname = 'terms'
		WHERE c.oid = 'messages'::regclass`).Scan(&t.rows, &elems, &freqs)
	if err != nil {
		s.log.Warn("read search statistics", "err", err)
		if cur == nil {
			s.stats.cur.Store(t) // none: try again in a minute
		}
		return cur
	}
	// most_common_elem_freqs lists one frequency per element, then the
	// least and the greatest of them and the frequency of NULL elements.
	if len(elems) > 0 && len(freqs) >= len(elems)+1 {
		for i, e := range elems {
			t.freq[e] = float64(freqs[i])
		}
		t.other = float64(freqs[len(elems)]) / 2
	}
	s.stats.cur.Store(t)
	return t
}

// searchable reports whether terms can match a message: no terms, or a
// term core.Terms never makes (empty, or holding NUL, which a text cannot,
// or the '_' of a conversation id), matches nothing.
func searchable(terms []string) bool {
	if len(terms) == 0 {
		return false
	}
	for _, t := range terms {
		if t == "" || !utf8.ValidString(t) || strings.ContainsAny(t, "\x00_"+termSep) {
			return false
		}
	}
	return true
}

// Search implements core.Finder.
func (s *Store) Search(ctx context.Context, uid core.ID, q core.SearchQuery) ([]core.Found, error) {
	b := &pgx.Batch{}
	member := true
	var convs []string
	if q.Conv != "" {
		p, ok := core.ParseConv(q.Conv)
		if !ok {
			return nil, core.ErrConvNotFound
		}
		memberCheck(b, uid, p, &member) // a group's is answered with the search
		if p.Group == 0 && !member {
			return nil, core.ErrConvNotFound
		}
		convs = []string{q.Conv}
	} else if q.Limit > 0 && searchable(q.Terms) {
		// The conversations the caller belongs to now: the 1:1s with a
		// message, the groups it is a member of.
		rows, err := s.pool.Query(ctx, `SELECT conversation_id FROM user_conversations c
			WHERE c.user_id = $1
				AND (c.group_id = 0 OR EXISTS (SELECT 1 FROM group_members gm WHERE gm.group_id = c.group_id AND gm.user_id = $1))`,
			i64(uid))
		if err != nil {
			return nil, s.fail("search", err)
		}
		if convs, err = pgx.CollectRows(rows, pgx.RowTo[string]); err != nil {
			return nil, s.fail("search", err)
		}
	}
	hi := int64(math.MaxInt64) // every stored id is below it
	if q.Before != 0 && uint64(q.Before) < math.MaxInt64 {
		hi = int64(q.Before)
	}
	var found []core.Message
	if q.Limit > 0 && len(convs) > 0 && searchable(q.Terms) {
		terms := q.Terms
		ordered, indexed := s.termFreqs(ctx).plan(convs, terms, q.Limit)
		collect := func(rows pgx.Rows) error {
			for rows.Next() {
				m, err := scanMessage(rows)
				if err != nil {
					return err
				}
				found = append(found, m)
			}
			return rows.Err()
		}
		if len(ordered) > 0 {
			b.Queue("BEGIN READ ONLY")
			// GIN serves only bitmap scans: with them off, each ordered
			// conversation is an index scan that stops at the page.
			b.Queue("SET LOCAL enable_bitmapscan = off")
			b.Queue(`SELECT `+msgCols+` FROM unnest($1::text[]) AS c(conv)
				CROSS JOIN LATERAL (SELECT `+msgCols+` FROM messages m
					WHERE m.conversation_id = c.conv AND m.id < $2 AND m.terms @> $3::text[]
					ORDER BY m.id DESC LIMIT $4) m
				ORDER BY m.id DESC LIMIT $4`, ordered, hi, terms, q.Limit).Query(collect)
			b.Queue("COMMIT")
		}
		if len(indexed) > 0 {
			b.Queue(`SELECT `+msgCols+` FROM messages m
				WHERE m.terms @> $1::text[] AND m.terms && $2::text[] AND m.id < $3
				ORDER BY m.id DESC LIMIT $4`, terms, indexed, hi, q.Limit).Query(collect)
		}
	}
	if b.Len() > 0 {
		if err := s.pool.SendBatch(ctx, b).Close(); err != nil {
			return nil, s.fail("search", err)
		}
	}
	if !member {
		return nil, core.ErrConvNotFound
	}
	slices.SortFunc(found, func(a, b core.Message) int { return cmp.Compare(b.ID, a.ID) })
	found = found[:min(len(found), max(q.Limit, 0))]
	out := make([]core.Found, len(found))
	for i := range found {
		out[i] = core.Found{ConversationID: found[i].ConversationID, Message: messageJSON(&found[i])}
	}
	return out, nil
}

// Mentions implements core.Finder. A mention is listed under the members
// it names when it is stored; one of a group the user has since left is
// skipped.
func (s *Store) Mentions(ctx context.Context, uid core.ID, before core.ID, limit int) ([]json.RawMessage, error) {
	if limit <= 0 {
		return nil, nil
	}
	hi := int64(math.MaxInt64)
	if before != 0 && uint64(before) < math.MaxInt64 {
		hi = int64(before)
	}
	rows, err := s.pool.Query(ctx, `SELECT `+msgCols+` FROM mentions x
		JOIN messages m ON m.conversation_id = x.conversation_id AND m.id = x.message_id
		WHERE x.user_id = $1 AND x.message_id < $2
			AND (x.group_id = 0 OR EXISTS (SELECT 1 FROM group_members gm WHERE gm.group_id = x.group_id AND gm.user_id = $1))
		ORDER BY x.message_id DESC LIMIT $3`, i64(uid), hi, limit)
	if err != nil {
		return nil, s.fail("read mentions", err)
	}
	defer rows.Close()
	var out []json.RawMessage
	for rows.Next() {
		m, err := scanMessage(rows)
		if err != nil {
			return nil, s.fail("read mentions", err)
		}
		out = append(out, messageJSON(&m))
	}
	return out, s.fail("read mentions", rows.Err())
}

// HistoryAfter implements core.Finder.
func (s *Store) HistoryAfter(ctx context.Context, uid core.ID, conv string, after core.ID, limit int) ([]json.RawMessage, error) {
	if uint64(after) >= math.MaxInt64 {
		limit = 0 // no stored id is above it
	}
	return s.page(ctx, uid, conv, limit, `SELECT `+msgCols+` FROM messages m WHERE m.conversation_id = $1 AND m.id > $2
		ORDER BY m.id LIMIT $3`, int64(after))
}
