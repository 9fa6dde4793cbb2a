package postgres

import (
	"context"
	"embed"
	"fmt"
	"io/fs"
	"log/slog"
	"math"
	"slices"
	"sort"
	"strconv"
	"strings"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"
)

// Schema migrations are the files migrations/NNNN_name.sql, applied in
// number order. Applied versions are rows of schema_migrations. Open
// applies the missing ones in one transaction holding a transaction-level
// advisory lock, so nodes starting together wait for each other and the
// second finds the work done; a failed migration leaves nothing behind.
// Never edit an applied migration: add the next number.

//go:embed migrations/*.sql
var migrationFiles embed.FS

// migrationLock is the advisory lock key of schema changes ("chatgate"
// in ASCII).
const migrationLock int64 = 0x6368617467617465

type migration struct {
	version int
	name    string
	sql     string
}

func migrations() ([]migration, error) {
	names, err := fs.Glob(migrationFiles, "migrations/*.sql")
	if err != nil {
		return nil, err
	}
	var ms []migration
	for _, path := range names {
		base := strings.TrimSuffix(strings.TrimPrefix(path, "migrations/"), ".sql")
		num, _, _ := strings.Cut(base, "_")
		v, err := strconv.Atoi(num)
		if err != nil || v <= 0 {
			return nil, fmt.Errorf("migration %s: name must start with a positive number", path)
		}
		b, err := migrationFiles.ReadFile(path)
		if err != nil {
			return nil, err
		}
		ms = append(ms, migration{version: v, name: base, sql: string(b)})
	}
	sort.Slice(ms, func(i, j int) bool { return ms[i].version < ms[j].version })
	for i := 1; i < len(ms); i++ {
		if ms[i].version == ms[i-1].version {
			return nil, fmt.Errorf("two migrations numbered %d", ms[i].version)
		}
	}
	return ms, nil
}

// migrate brings the schema up to date.
func migrate(ctx context.Context, pool *pgxpool.Pool, log *slog.Logger) error {
	return migrateTo(ctx, pool, log, math.MaxInt)
}

// migrateTo applies the migrations up to version last (tests use it to
// make the database of an earlier release).
func migrateTo(ctx context.Context, pool *pgxpool.Pool, log *slog.Logger, last int) error {
	ms, err := migrations()
	if err != nil {
		return err
	}
	ms = slices.DeleteFunc(ms, func(m migration) bool { return m.version > last })
	err = pgx.BeginFunc(ctx, pool, func(tx pgx.Tx) error {
		if _, err := tx.Exec(ctx, `SELECT pg_advisory_xact_lock($1)`, migrationLock); err != nil {
			return fmt.Errorf("take migration lock: %w", err)
		}
		if _, err := tx.Exec(ctx, `CREATE TABLE IF NOT EXISTS schema_migrations (
			version    integer     PRIMARY KEY,
			name       text        NOT NULL,
			applied_at timestamptz NOT NULL DEFAULT now())`); err != nil {
			return fmt.Errorf("create schema_migrations: %w", err)
		}
		rows, err := tx.Query(ctx, `SELECT version FROM schema_migrations`)
		if err != nil {
			return err
		}
		applied, err := pgx.CollectRows(rows, pgx.RowTo[int])
		if err != nil {
			return fmt.Errorf("read schema_migrations: %w", err)
		}
		done := map[int]bool{}
		newest := 0
		for _, v := range applied {
			done[v] = true
			newest = max(newest, v)
		}
		if len(ms) > 0 && newest > ms[len(ms)-1].version {
			// A newer release migrated the database; migrations only
			// add, so this one keeps working with what it knows.
			log.Warn("database schema is newer than this release", "database", newest, "release", ms[len(ms)-1].version)
		}
		for _, m := range ms {
			if done[m.version] {
				continue
			}
			if _, err := tx.Exec(ctx, m.sql); err != nil {
				return fmt.Errorf("migration %s: %w", m.name, err)
			}
			if _, err := tx.Exec(ctx, `INSERT INTO schema_migrations (version, name) VALUES ($1, $2)`, m.version, m.name); err != nil {
				return fmt.Errorf("record migration %s: %w", m.name, err)
			}
			log.Info("applied schema migration", "migration", m.name)
		}
		return nil
	})
	if err != nil {
		return fmt.Errorf("migrate schema: %w", err)
	}
	return nil
}
