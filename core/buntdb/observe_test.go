package buntdb

import (
	"log/slog"
	"path/filepath"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
	"github.com/tidwall/buntdb"

	"github.com/chatgate/chatgate/core"
)

// Users, groups and messages all take their ids from the node's snowflake.
// A node restarted with a clock behind the newest stored id of any of them
// must not issue that id again: CreateUser and CreateGroup would overwrite
// the record that holds it.
func TestOpenObservesEveryStoredIDKind(t *testing.T) {
	ahead := time.Since(core.Epoch) + time.Hour // ids from a clock an hour fast
	future := core.ID(uint64(ahead.Milliseconds())<<22 | 1<<12)
	for _, key := range []string{kUser(future), kGroup(future), kMessage(future)} {
		t.Run(key[:2], func(t *testing.T) {
			dir := t.TempDir()
			raw, err := buntdb.Open(filepath.Join(dir, "chatgate.db"))
			require.NoError(t, err)
			require.NoError(t, raw.Update(func(tx *buntdb.Tx) error {
				_, _, err := tx.Set(key, "{}", nil)
				return err
			}))
			require.NoError(t, raw.Close())

			ids, err := core.NewSnowflake(1)
			require.NoError(t, err)
			s, err := Open(dir, ids, slog.New(slog.DiscardHandler))
			require.NoError(t, err)
			defer s.Close()
			require.Greater(t, ids.Next(), future)
		})
	}
}
