package postgres

import (
	"context"
	"crypto/rand"
	"encoding/binary"
	"errors"
	"fmt"
	"log/slog"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"
	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/chatgate/chatgate/core"
	"github.com/chatgate/chatgate/internal/writeq"
)

// Options tune the store; the zero value is the default.
type Options struct {
	// OnCommit, if set, is told of every append batch committed: its
	// requests and how long the transaction took.
	OnCommit func(requests int, d time.Duration)
	// MaxConns bounds the connection pool (default 16, unless the URL
	// sets pool_max_conns).
	MaxConns int32
	// Committers is how many append batches one store runs at once, each
	// on its own connection (default 2): while one batch waits for its
	// commit to be flushed, the next is being built.
	Committers int
	// MaxBatch bounds how many appends share one transaction (default 256).
	MaxBatch int
	// PushLease is how long an entry handed out by PendingPushes stays
	// claimed by this store (default 30 s): other stores on the database
	// skip it until the lease runs out or this one closes. The pusher
	// renews it by paging through the outbox every few seconds.
	PushLease time.Duration
}

// Defaults.
const (
	DefaultMaxConns   = 16
	DefaultCommitters = 2
	DefaultMaxBatch   = 256
	DefaultPushLease  = 30 * time.Second
)

func (o Options) withDefaults() Options {
	if o.Committers <= 0 {
		o.Committers = DefaultCommitters
	}
	if o.MaxBatch <= 0 {
		o.MaxBatch = DefaultMaxBatch
	}
	if o.PushLease <= 0 {
		o.PushLease = DefaultPushLease
	}
	return o
}

// Store is the PostgreSQL core.Store. Any number of stores (chatgate
// nodes) may share one database.
type Store struct {
	pool *pgxpool.Pool
	ids  *core.Snowflake
	log  *slog.Logger
	opts Options

	// claimant names this store in push_outbox.claimed_by; it is random
	// per Open, so a restarted node is a new claimant.
	claimant int64

	reqs       *writeq.Queue[*appendReq]
	committers sync.WaitGroup

	// The search-term backfill (backfill.go): indexed is closed once the
	// messages of earlier releases are searchable; stopBackfill ends the
	// goroutine, which backfillDone waits for.
	indexed      chan struct{}
	stopBackfill context.CancelFunc
	backfillDone sync.WaitGroup
	stopped      chan struct{} // closed by Close

	stats searchStats // term frequencies for choosing search plans (find.go)

	closed    atomic.Bool
	closeOnce sync.Once
	closeErr  error
}

var _ core.Store = (*Store)(nil)

// Open connects to the database at url (a postgres:// URL or DSN that
// pgx understands), applies the schema migrations it has not seen yet and
// starts the append committers. ids assigns message ids; give every
// store on the database its own snowflake node id.
func Open(ctx context.Context, url string, ids *core.Snowflake, log *slog.Logger, opts Options) (*Store, error) {
	opts = opts.withDefaults()
	cfg, err := pgxpool.ParseConfig(url)
	if err != nil {
		return nil, fmt.Errorf("parse database url: %w", err)
	}
	if opts.MaxConns > 0 {
		cfg.MaxConns = opts.MaxConns
	} else if !strings.Contains(url, "pool_max_conns") {
		cfg.MaxConns = DefaultMaxConns
	}
	if cfg.MaxConns < int32(opts.Committers)+2 {
		cfg.MaxConns = int32(opts.Committers) + 2 // readers must not wait for committers
	}
	// Acknowledged means flushed: whatever the server, database or role
	// says, this store's sessions commit synchronously.
	cfg.ConnConfig.RuntimeParams["synchronous_commit"] = "on"
	// Compiling a query costs tens of milliseconds, more than any query
	// of this store runs; a search's estimated cost can pass jit_above_cost.
	cfg.ConnConfig.RuntimeParams["jit"] = "off"
	if cfg.ConnConfig.RuntimeParams["application_name"] == "" {
		cfg.ConnConfig.RuntimeParams["application_name"] = "chatgate"
	}
	pool, err := pgxpool.NewWithConfig(ctx, cfg)
	if err != nil {
		return nil, fmt.Errorf("connect to database: %w", err)
	}
	if err := migrate(ctx, pool, log); err != nil {
		pool.Close()
		return nil, err
	}
	if err := observeIDs(ctx, pool, ids); err != nil {
		pool.Close()
		return nil, err
	}
	var b [8]byte
	_, _ = rand.Read(b[:])
	s := &Store{
		pool: pool, ids: ids, log: log, opts: opts,
		claimant: int64(binary.LittleEndian.Uint64(b[:]) >> 1),
		reqs:     writeq.New[*appendReq](4 * opts.MaxBatch),
		indexed:  make(chan struct{}),
		stopped:  make(chan struct{}),
	}
	if err := s.startBackfill(ctx); err != nil {
		pool.Close()
		return nil, err
	}
	for range opts.Committers {
		s.committers.Go(s.committer)
	}
	return s, nil
}

// observeIDs makes ids issue only ids above the newest stored user and
// group, so a node restarted with a slow clock never reissues one.
// Message ids are kept in order per user as they are given out (see
// append.go).
func observeIDs(ctx context.Context, pool *pgxpool.Pool, ids *core.Snowflake) error {
	var users, groups int64
	err := pool.QueryRow(ctx, `SELECT coalesce((SELECT max(id) FROM users), 0), coalesce((SELECT max(id) FROM groups), 0)`).Scan(&users, &groups)
	if err != nil {
		return fmt.Errorf("read newest ids: %w", err)
	}
	ids.Observe(core.ID(users))
	ids.Observe(core.ID(groups))
	return nil
}

// Close stops the search backfill, finishes the appends already queued,
// gives up this store's push claims (so another store takes them over at
// once) and closes the pool.
func (s *Store) Close() error { return s.close(true) }

func (s *Store) close(release bool) error {
	s.closeOnce.Do(func() {
		close(s.stopped)
		s.stopBackfill()
		s.backfillDone.Wait()
		s.reqs.Close()
		s.committers.Wait()
		s.closed.Store(true)
		if release {
			ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
			defer cancel()
			if _, err := s.pool.Exec(ctx, `UPDATE push_outbox SET claimed_by = NULL, claimed_until = NULL WHERE claimed_by = $1`, s.claimant); err != nil {
				s.closeErr = fmt.Errorf("release push claims: %w", err)
			}
		}
		s.pool.Close()
	})
	return s.closeErr
}

// fail gives an error its operation's context. The core's Err* values
// are returned as they are; anything after Close is core.ErrUnavailable.
func (s *Store) fail(op string, err error) error {
	if err == nil {
		return nil
	}
	var ce *core.Error
	if errors.As(err, &ce) {
		return err
	}
	if s.closed.Load() {
		return fmt.Errorf("%s: %w (%w)", op, core.ErrUnavailable, err)
	}
	return fmt.Errorf("%s: %w", op, err)
}

// PostgreSQL error codes this store reacts to.
const (
	codeUniqueViolation      = "23505"
	codeSerializationFailure = "40001"
	codeDeadlockDetected     = "40P01"
)

// pgError returns the server's error inside err, or nil.
func pgError(err error) *pgconn.PgError {
	var pe *pgconn.PgError
	if errors.As(err, &pe) {
		return pe
	}
	return nil
}

// isUnique reports a unique violation of constraint.
func isUnique(err error, constraint string) bool {
	pe := pgError(err)
	return pe != nil && pe.Code == codeUniqueViolation && pe.ConstraintName == constraint
}

// retryable reports an error after which the whole transaction may simply
// run again.
func retryable(err error) bool {
	pe := pgError(err)
	return pe != nil && (pe.Code == codeSerializationFailure || pe.Code == codeDeadlockDetected)
}

// tx runs fn in a transaction, again if the server asks for a retry.
func (s *Store) tx(ctx context.Context, fn func(pgx.Tx) error) error {
	for attempt := 0; ; attempt++ {
		err := pgx.BeginFunc(ctx, s.pool, fn)
		if err == nil || attempt >= 3 || !retryable(err) {
			return err
		}
	}
}

// i64 is an id as stored. Stored ids are snowflakes, below 2^63; a larger
// id from a client becomes negative and so matches no row.
func i64(id core.ID) int64 { return int64(id) }

// ids64 converts a list of ids.
func ids64(ids []core.ID) []int64 {
	out := make([]int64, len(ids))
	for i, id := range ids {
		out[i] = int64(id)
	}
	return out
}

// utc returns a stored time as the core keeps it.
func utc(t time.Time) core.Time { return core.Time{Time: t.UTC()} }
