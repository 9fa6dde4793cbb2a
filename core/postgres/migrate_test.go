package postgres_test

import (
	"context"
	"sync"
	"testing"

	"github.com/jackc/pgx/v5"
	"github.com/stretchr/testify/require"

	"github.com/chatgate/chatgate/core/postgres"
	"github.com/chatgate/chatgate/internal/pgtest"
)

// TestNodesStartingTogether opens several stores on an empty database at
// once: the migrations run once, under their lock, and every store opens.
func TestNodesStartingTogether(t *testing.T) {
	url := pgtest.NewDB(t)
	const n = 6
	stores := make([]*postgres.Store, n)
	var wg sync.WaitGroup
	for i := range n {
		wg.Go(func() { stores[i] = open(t, url, i+1, postgres.Options{MaxConns: 4}) })
	}
	wg.Wait()
	for _, s := range stores {
		require.NotNil(t, s)
		require.NoError(t, s.Close())
	}

	ctx := context.Background()
	conn, err := pgx.Connect(ctx, url)
	require.NoError(t, err)
	defer conn.Close(ctx)
	rows, err := conn.Query(ctx, `SELECT version FROM schema_migrations ORDER BY version`)
	require.NoError(t, err)
	versions, err := pgx.CollectRows(rows, pgx.RowTo[int])
	require.NoError(t, err)
	require.Equal(t, []int{1, 2}, versions, "each migration applied once")

	// Opening an up-to-date database again changes nothing and works.
	s := open(t, url, 1, postgres.Options{})
	f := newFixture(t)
	f.users(s, 1)
	require.NoError(t, s.Close())
	var count int
	require.NoError(t, conn.QueryRow(ctx, `SELECT count(*) FROM schema_migrations`).Scan(&count))
	require.Equal(t, 2, count)
}
