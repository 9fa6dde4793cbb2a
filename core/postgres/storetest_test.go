package postgres_test

import (
	"context"
	"log/slog"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/chatgate/chatgate/core"
	"github.com/chatgate/chatgate/core/postgres"
	"github.com/chatgate/chatgate/core/storetest"
	"github.com/chatgate/chatgate/internal/pgtest"
)

// The PostgreSQL store keeps every promise of core.Store: it runs the
// same suite as the embedded store, each test on a fresh database.
func TestStoreConformance(t *testing.T) {
	storetest.Run(t, func(t *testing.T) func(*testing.T) core.Store {
		url := pgtest.NewDB(t)
		return func(t *testing.T) core.Store {
			return open(t, url, 1, postgres.Options{})
		}
	})
}

// open opens a store on url with snowflake node (never core.MaxNodeID,
// which the suite uses for its own ids). The caller closes it.
func open(t testing.TB, url string, node int, o postgres.Options) *postgres.Store {
	t.Helper()
	ids, err := core.NewSnowflake(node)
	require.NoError(t, err)
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	s, err := postgres.Open(ctx, url, ids, slog.New(slog.DiscardHandler), o)
	require.NoError(t, err)
	return s
}
