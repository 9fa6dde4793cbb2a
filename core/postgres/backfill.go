package postgres

import (
	"context"
	"fmt"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/chatgate/chatgate/core"
)

// The search backfill. Messages stored by a release before search have no
// terms (NULL; the partial index messages_unindexed lists them), so they
// are not found. Open starts a goroutine that gives them their terms,
// newest first, a batch per transaction: it locks up to backfillBatch of
// them (FOR UPDATE SKIP LOCKED, so stores opened together share the work
// rather than repeat it), computes core.Terms in Go and writes them.
// Writing terms is idempotent (the same message always gets the same
// terms, and only rows still NULL are written), so a store that dies
// halfway leaves nothing wrong behind. WaitBackfilled returns once the
// first pass found nothing left; messages appended by this release have
// their terms from their own transaction, so the store is not a
// core.IndexWaiter: a search never waits for the backfill (it would wait
// its full bound on every search while an upgrade is indexed). The goroutine then looks again
// every backfillRecheck, for messages that nodes still running the earlier
// release append during a rolling upgrade. Close stops it.

const (
	backfillBatch   = 1000
	backfillBytes   = 8 << 20 // content read per batch, at least one message
	backfillRecheck = time.Minute
	backfillLog     = 10 * time.Second // between progress lines
)

// WaitBackfilled returns once the messages of earlier releases found at
// Open are searchable.
func (s *Store) WaitBackfilled(ctx context.Context) error {
	select {
	case <-s.indexed:
		return nil
	default:
	}
	select {
	case <-s.indexed:
		return nil
	case <-s.stopped:
		return core.ErrUnavailable
	case <-ctx.Done():
		return ctx.Err()
	}
}

// startBackfill starts the backfill goroutine; s.indexed is closed at once
// if there is nothing to do.
func (s *Store) startBackfill(ctx context.Context) error {
	pending, err := s.unindexed(ctx)
	if err != nil {
		return fmt.Errorf("look for messages to index: %w", err)
	}
	if !pending {
		close(s.indexed)
	}
	bctx, cancel := context.WithCancel(context.Background())
	s.stopBackfill = cancel
	s.backfillDone.Go(func() { s.backfillLoop(bctx, pending) })
	return nil
}

func (s *Store) unindexed(ctx context.Context) (bool, error) {
	var pending bool
	err := s.pool.QueryRow(ctx, `SELECT EXISTS (SELECT 1 FROM messages WHERE terms IS NULL)`).Scan(&pending)
	return pending, err
}

// backfillLoop runs the backfill until ctx ends.
func (s *Store) backfillLoop(ctx context.Context, pending bool) {
	first := pending // s.indexed is still open
	retry := time.Second
	for {
		wait := backfillRecheck
		if pending {
			if err := s.backfill(ctx); err != nil {
				if ctx.Err() != nil {
					return
				}
				s.log.Warn("index messages for search; retrying", "err", err, "in", retry)
				wait, retry = retry, min(2*retry, 30*time.Second)
			} else {
				retry = time.Second
				if first {
					close(s.indexed)
					first = false
				}
			}
		}
		if !sleep(ctx, wait) {
			return
		}
		pending = true // a pass that finds nothing costs one index probe
	}
}

// sleep waits d, or less if ctx ends first; it reports whether ctx is
// still live.
func sleep(ctx context.Context, d time.Duration) bool {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-t.C:
		return true
	case <-ctx.Done():
		return false
	}
}

// backfill indexes messages until none is left without terms.
func (s *Store) backfill(ctx context.Context) error {
	var (
		start   = time.Now()
		logged  = start
		total   int
		pending int64
	)
	for {
		n, err := s.backfillOnce(ctx)
		if err != nil {
			return err
		}
		if n == 0 {
			left, err := s.unindexed(ctx)
			if err != nil {
				return err
			}
			if !left {
				break
			}
			// Another store holds the rest: wait for its commit.
			if !sleep(ctx, 100*time.Millisecond) {
				return ctx.Err()
			}
			continue
		}
		if total == 0 {
			if err := s.pool.QueryRow(ctx, `SELECT count(*) FROM messages WHERE terms IS NULL`).Scan(&pending); err != nil {
				return err
			}
			s.log.Info("indexing the messages of an earlier release for search", "messages", pending+int64(n))
		}
		total += n
		if time.Since(logged) >= backfillLog {
			logged = time.Now()
			s.log.Info("indexing messages for search", "indexed", total, "of", pending+int64(n),
				"per_second", int(float64(total)/time.Since(start).Seconds()))
		}
	}
	if total > 0 {
		s.log.Info("indexed messages for search", "indexed", total, "took", time.Since(start).Round(time.Millisecond))
		// The statistics Search chooses its plans by (find.go) describe
		// the terms only once they are analyzed again.
		if _, err := s.pool.Exec(ctx, `ANALYZE messages`); err != nil {
			s.log.Warn("analyze messages after indexing them", "err", err)
		}
	}
	return nil
}

// backfillOnce indexes one batch and returns its size; 0 when no message
// without terms is left unlocked.
func (s *Store) backfillOnce(ctx context.Context) (int, error) {
	var (
		convs []string
		ids   []int64
		terms []string
	)
	err := pgx.BeginFunc(ctx, s.pool, func(tx pgx.Tx) error {
		convs, ids, terms = convs[:0], ids[:0], terms[:0]
		rows, err := tx.Query(ctx, `WITH todo AS (
				SELECT conversation_id, id FROM messages WHERE terms IS NULL
				ORDER BY id DESC LIMIT $1 FOR UPDATE SKIP LOCKED)
			SELECT conversation_id, id, content FROM (
				SELECT m.conversation_id, m.id, m.content, coalesce(sum(octet_length(m.content)) OVER (ORDER BY m.id DESC
					ROWS BETWEEN UNBOUNDED PRECEDING AND 1 PRECEDING), 0) AS before
				FROM todo JOIN messages m ON m.conversation_id = todo.conversation_id AND m.id = todo.id) x
			WHERE before < $2`, backfillBatch, backfillBytes)
		if err != nil {
			return err
		}
		var (
			conv    string
			id      int64
			content []byte
		)
		_, err = pgx.ForEachRow(rows, []any{&conv, &id, &content}, func() error {
			convs, ids, terms = append(convs, conv), append(ids, id), append(terms, joinTerms(string(content)))
			return nil
		})
		if err != nil || len(ids) == 0 {
			return err
		}
		_, err = tx.Exec(ctx, `UPDATE messages m SET terms = array_prepend(m.conversation_id, string_to_array(v.terms, E'\x1f'))
			FROM unnest($1::text[], $2::bigint[], $3::text[]) AS v(conversation_id, id, terms)
			WHERE m.conversation_id = v.conversation_id AND m.id = v.id AND m.terms IS NULL`, convs, ids, terms)
		return err
	})
	if err != nil {
		return 0, err
	}
	return len(ids), nil
}
