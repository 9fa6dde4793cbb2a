package pgtest_test

import (
	"context"
	"os"
	"path/filepath"
	"strconv"
	"syscall"
	"testing"

	"github.com/jackc/pgx/v5"
	"github.com/stretchr/testify/require"

	"github.com/chatgate/chatgate/internal/pgtest"
)

func TestMain(m *testing.M) { pgtest.Main(m) }

// TestStart checks a server of one's own: durable settings, the postgres
// user when run as root, and that Stop removes everything.
func TestStart(t *testing.T) {
	s := pgtest.Start(t)
	ctx := context.Background()
	conn, err := pgx.Connect(ctx, s.URL("postgres"))
	require.NoError(t, err)
	defer conn.Close(ctx)

	settings := map[string]string{}
	for _, name := range []string{"fsync", "synchronous_commit", "shared_buffers", "max_connections", "listen_addresses"} {
		var v string
		require.NoError(t, conn.QueryRow(ctx, "SELECT current_setting($1)", name).Scan(&v))
		settings[name] = v
	}
	require.Equal(t, map[string]string{
		"fsync": "on", "synchronous_commit": "on", "shared_buffers": "32MB",
		"max_connections": "200", "listen_addresses": "127.0.0.1",
	}, settings)

	fi, err := os.Stat(filepath.Join(s.Dir(), "data"))
	require.NoError(t, err)
	if os.Geteuid() == 0 {
		require.NotZero(t, fi.Sys().(*syscall.Stat_t).Uid, "as root, the data belong to the postgres user")
	}
	_, err = os.Stat(filepath.Join(s.Dir(), ".s.PGSQL."+strconv.Itoa(s.Port())))
	require.NoError(t, err, "the unix socket is in the server's directory")

	require.NoError(t, s.Stop())
	_, err = os.Stat(s.Dir())
	require.True(t, os.IsNotExist(err), "Stop removes the directory")
	_, err = pgx.Connect(ctx, s.URL("postgres"))
	require.Error(t, err, "the server is gone")
	require.NoError(t, s.Stop(), "a second Stop is harmless")
}

// TestNewDB checks that each test gets a database of its own on the shared
// server.
func TestNewDB(t *testing.T) {
	ctx := context.Background()
	var urls []string
	for range 2 {
		ok := t.Run("db", func(t *testing.T) {
			url := pgtest.NewDB(t)
			urls = append(urls, url)
			conn, err := pgx.Connect(ctx, url)
			require.NoError(t, err)
			defer conn.Close(ctx)
			_, err = conn.Exec(ctx, "CREATE TABLE t (x int)")
			require.NoError(t, err, "the database is empty")
		})
		if !ok {
			return
		}
	}
	require.NotEqual(t, urls[0], urls[1])
	conn, err := pgx.Connect(ctx, urls[0])
	if err == nil {
		conn.Close(ctx)
	}
	require.Error(t, err, "a test's database is dropped when it ends")
}
