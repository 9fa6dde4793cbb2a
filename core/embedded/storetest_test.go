package embedded_test

import (
	"log/slog"
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/chatgate/chatgate/core"
	"github.com/chatgate/chatgate/core/embedded"
	"github.com/chatgate/chatgate/core/storetest"
)

// The embedded store keeps every promise of core.Store; the PostgreSQL
// store runs the same suite.
func TestStoreConformance(t *testing.T) {
	storetest.Run(t, func(t *testing.T) func(*testing.T) core.Store {
		dir := t.TempDir()
		return func(t *testing.T) core.Store {
			ids, err := core.NewSnowflake(1)
			require.NoError(t, err)
			s, err := embedded.Open(dir, ids, slog.New(slog.DiscardHandler), embedded.Options{})
			require.NoError(t, err)
			return s
		}
	})
}
