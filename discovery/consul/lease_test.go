package consul_test

import (
	"context"
	"errors"
	"strconv"
	"sync"
	"testing"
	"time"

	"github.com/hashicorp/consul/api"
	"github.com/stretchr/testify/require"

	"github.com/chatgate/chatgate/discovery/consul"
	"github.com/chatgate/chatgate/internal/consultest"
)

// leaseTTL is short so the tests are fast; the harness lowers Consul's
// session_ttl_min to allow it.
const leaseTTL = 2 * time.Second

func acquire(t *testing.T, c *api.Client, opts consul.LeaseOptions) *consul.Lease {
	t.Helper()
	opts.Logger = testLogger(t)
	l, err := consul.AcquireNodeID(context.Background(), c, opts)
	require.NoError(t, err)
	t.Cleanup(func() { _ = l.Release(context.Background()) })
	return l
}

// sessionOf reads which session holds the lock key of lease l.
func sessionOf(t *testing.T, c *api.Client, prefix string, l *consul.Lease) string {
	t.Helper()
	kv, _, err := c.KV().Get(prefix+strconv.Itoa(l.ID()), nil)
	require.NoError(t, err)
	require.NotNil(t, kv)
	require.NotEmpty(t, kv.Session)
	return kv.Session
}

func isLost(l *consul.Lease) bool {
	select {
	case <-l.Lost():
		return true
	default:
		return false
	}
}

func TestNodeIDLease(t *testing.T) {
	// Each starts its own agent (a few seconds); run them side by side.
	t.Parallel()
	agent := consultest.Start(t)
	c := agent.Client()

	t.Run("ConcurrentAcquirersGetDistinctIDs", func(t *testing.T) {
		t.Parallel()
		const n = 8
		opts := consul.LeaseOptions{Prefix: "test/distinct/", TTL: leaseTTL, Logger: testLogger(t)}
		leases := make([]*consul.Lease, n)
		errs := make([]error, n)
		var wg sync.WaitGroup
		for i := range leases {
			wg.Add(1)
			go func() {
				defer wg.Done()
				leases[i], errs[i] = consul.AcquireNodeID(context.Background(), c, opts)
			}()
		}
		wg.Wait()
		ids := map[int]bool{}
		for i, l := range leases {
			require.NoError(t, errs[i])
			t.Cleanup(func() { _ = l.Release(context.Background()) })
			require.False(t, ids[l.ID()], "id %d handed out twice", l.ID())
			require.True(t, l.ID() >= 0 && l.ID() < n, "lowest free ids first, got %d", l.ID())
			ids[l.ID()] = true
		}
		// Held ids stay held across renewals.
		time.Sleep(leaseTTL) // let every lease renew at least twice
		for _, l := range leases {
			require.False(t, isLost(l))
		}
	})

	t.Run("ReleasedIDIsFreeAtOnce", func(t *testing.T) {
		t.Parallel()
		// Consul's default lock delay (15 s) applies: only a proper release
		// lets the id be taken again at once.
		opts := consul.LeaseOptions{Prefix: "test/release/", TTL: leaseTTL, IDs: 1}
		a := acquire(t, c, opts)
		require.Equal(t, 0, a.ID())
		_, err := consul.AcquireNodeID(context.Background(), c, opts)
		require.True(t, errors.Is(err, consul.ErrNoFreeNodeID), "held id given out again: %v", err)

		require.NoError(t, a.Release(context.Background()))
		require.True(t, isLost(a), "a released lease is no longer held")
		require.NoError(t, a.Release(context.Background()), "a second Release does nothing")
		b := acquire(t, c, opts)
		require.Equal(t, 0, b.ID())
	})

	t.Run("DestroyedSessionClosesLost", func(t *testing.T) {
		t.Parallel()
		const prefix = "test/destroy/"
		l := acquire(t, c, consul.LeaseOptions{Prefix: prefix, TTL: leaseTTL})
		sid := sessionOf(t, c, prefix, l)
		_, err := c.Session().Destroy(sid, nil)
		require.NoError(t, err)
		destroyed := time.Now()
		select {
		case <-l.Lost():
			t.Logf("lost %s after the session was destroyed", time.Since(destroyed))
		case <-time.After(leaseTTL):
			t.Fatal("Lost not closed within the TTL of the session being destroyed")
		}
	})

	t.Run("StoppedRenewalsLoseBeforeAnotherCanAcquire", func(t *testing.T) {
		t.Parallel()
		// A tiny lock delay makes the id free as soon as Consul invalidates
		// the session, the tightest case for the lease's arithmetic.
		opts := consul.LeaseOptions{Prefix: "test/expire/", TTL: leaseTTL, LockDelay: time.Millisecond, IDs: 1}
		a := acquire(t, c, opts)
		consul.PauseRenewals(a)
		paused := time.Now()

		lost := make(chan time.Time, 1)
		go func() {
			<-a.Lost()
			lost <- time.Now()
		}()
		var b *consul.Lease
		deadline := paused.Add(2*leaseTTL + 5*time.Second)
		for b == nil {
			l, err := consul.AcquireNodeID(context.Background(), c, opts)
			switch {
			case err == nil:
				b = l
				t.Cleanup(func() { _ = b.Release(context.Background()) })
			case errors.Is(err, consul.ErrNoFreeNodeID):
				require.True(t, time.Now().Before(deadline), "Consul never freed the expired id")
				time.Sleep(20 * time.Millisecond)
			default:
				require.NoError(t, err)
			}
		}
		acquiredAt := time.Now()
		require.True(t, isLost(a), "second node got id %d while the first still held it", b.ID())
		lostAt := <-lost
		require.True(t, lostAt.Before(acquiredAt))
		require.LessOrEqual(t, lostAt.Sub(paused), leaseTTL+500*time.Millisecond, "Lost later than TTL after the last renewal")
		t.Logf("renewals paused; lost after %s, id taken by another after %s", lostAt.Sub(paused), acquiredAt.Sub(paused))
		require.False(t, isLost(b))
	})
}

func TestNodeIDLease_AgentStopped(t *testing.T) {
	// Each starts its own agent (a few seconds); run them side by side.
	t.Parallel()
	agent := consultest.Start(t)
	l := acquire(t, agent.Client(), consul.LeaseOptions{TTL: leaseTTL})
	require.Equal(t, 0, l.ID())
	stopped := time.Now()
	agent.Stop()
	select {
	case <-l.Lost():
		t.Logf("lost %s after the agent stopped", time.Since(stopped))
	case <-time.After(leaseTTL + 500*time.Millisecond):
		t.Fatal("Lost not closed within the TTL after Consul went away")
	}
}
