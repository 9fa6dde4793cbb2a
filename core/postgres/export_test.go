package postgres

import (
	"context"
	"log/slog"
	"time"

	"github.com/jackc/pgx/v5/pgxpool"
)

// Crash closes s the way a node that dies leaves it: its push claims are
// not handed back, so other stores must wait for the lease to run out.
func (s *Store) Crash() error { return s.close(false) }

// MigrateTo applies the schema migrations up to version last to the
// database at url, as a release that knew only those would.
func MigrateTo(ctx context.Context, url string, last int) error {
	pool, err := pgxpool.New(ctx, url)
	if err != nil {
		return err
	}
	defer pool.Close()
	return migrateTo(ctx, pool, slog.New(slog.DiscardHandler), last)
}

// ForceSearchPlan makes every search of s read each conversation newest
// first (ordered) or through the GIN index, whatever the statistics say.
func (s *Store) ForceSearchPlan(ordered bool) {
	t := &termFreqs{at: time.Now().Add(100 * 365 * 24 * time.Hour), freq: map[string]float64{"": 0}}
	if ordered {
		t.rows, t.other = 1e15, 1
	}
	s.stats.cur.Store(t)
}

// SearchPlan splits convs as a search of terms with limit would, under
// the statistics s holds now (reading them if stale).
func (s *Store) SearchPlan(ctx context.Context, convs, terms []string, limit int) (ordered, indexed []string) {
	return s.termFreqs(ctx).plan(convs, terms, limit)
}
