package postgres_test

import (
	"context"
	"slices"
	"strconv"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/chatgate/chatgate/core"
	"github.com/chatgate/chatgate/core/postgres"
	"github.com/chatgate/chatgate/internal/pgtest"
)

// pushes appends n messages from a to b, each needing a push.
func pushes(t *testing.T, s core.Store, a, b core.ID, n int) {
	t.Helper()
	for i := range n {
		_, err := s.Append(context.Background(), core.SendRequest{
			From: a, To: b, Content: "push " + strconv.Itoa(i), CreatedAt: core.Now(),
			NeedsPush: func(core.ID) bool { return true },
		})
		require.NoError(t, err)
	}
}

// drain pages through the outbox as the pusher does and returns the keys
// it was handed.
func drain(t *testing.T, s core.Store) []string {
	t.Helper()
	var keys []string
	after := ""
	for {
		page, err := s.PendingPushes(context.Background(), after, 3)
		require.NoError(t, err)
		if len(page) == 0 {
			return keys
		}
		for _, p := range page {
			require.Greater(t, p.Key, after)
			keys = append(keys, p.Key)
			after = p.Key
		}
	}
}

// TestPushClaimedByOneStore has two stores page through one outbox at
// the same time: each entry is handed to exactly one of them, and stays
// theirs while the claim holds.
func TestPushClaimedByOneStore(t *testing.T) {
	url := pgtest.NewDB(t)
	o := postgres.Options{PushLease: time.Hour}
	nodes := []*postgres.Store{open(t, url, 1, o), open(t, url, 2, o)}
	for _, s := range nodes {
		t.Cleanup(func() { require.NoError(t, s.Close()) })
	}
	f := newFixture(t)
	us := f.users(nodes[0], 2)
	const n = 60
	pushes(t, nodes[0], us[0], us[1], n)

	got := make([][]string, 2)
	var wg sync.WaitGroup
	for i, s := range nodes {
		wg.Go(func() { got[i] = drain(t, s) })
	}
	wg.Wait()
	for _, k := range got[0] {
		require.NotContains(t, got[1], k, "an entry handed to both stores")
	}
	all := append(slices.Clone(got[0]), got[1]...)
	require.Len(t, all, n, "every entry is handed out")

	// Paging again renews one's own claims and still skips the other's.
	for i, s := range nodes {
		require.Equal(t, got[i], drain(t, s), "store %d", i)
	}
	// Deleting is for good.
	if len(got[0]) > 0 {
		require.NoError(t, nodes[0].DeletePush(context.Background(), got[0][0]))
		require.Equal(t, got[0][1:], drain(t, nodes[0]))
	}
}

// TestPushLeaseOfADeadStore: the entries of a store that dies without
// closing pass to another store once the lease runs out, not before; a
// store that closes hands its entries over at once.
func TestPushLeaseOfADeadStore(t *testing.T) {
	url := pgtest.NewDB(t)
	const lease = 2 * time.Second
	o := postgres.Options{PushLease: lease}
	dead, closing, survivor := open(t, url, 1, o), open(t, url, 2, o), open(t, url, 3, o)
	t.Cleanup(func() { require.NoError(t, survivor.Close()) })
	f := newFixture(t)
	us := f.users(survivor, 2)
	ctx := context.Background()

	pushes(t, survivor, us[0], us[1], 5)
	claimed := time.Now()
	keys := drain(t, dead)
	require.Len(t, keys, 5)
	require.NoError(t, dead.DeletePush(ctx, keys[0])) // delivered before dying
	require.NoError(t, dead.Crash())

	if time.Since(claimed) < lease {
		require.Empty(t, drain(t, survivor), "the dead store's claims still hold")
	}
	require.Eventually(t, func() bool { return len(drain(t, survivor)) == 4 }, lease+10*time.Second, 20*time.Millisecond,
		"the survivor takes the entries over once the lease runs out")
	require.GreaterOrEqual(t, time.Since(claimed), lease, "not before the lease ran out")
	require.Equal(t, keys[1:], drain(t, survivor))

	// A store that closes hands back what it holds at once.
	pushes(t, survivor, us[0], us[1], 3)
	mine := drain(t, closing)
	require.Len(t, mine, 3, "the survivor's claims are not the closing store's")
	require.NoError(t, closing.Close())
	require.Equal(t, append(keys[1:], mine...), drain(t, survivor))
}
