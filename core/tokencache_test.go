package core

import (
	"testing"
	"time"

	"github.com/stretchr/testify/require"
)

func TestTokenCache(t *testing.T) {
	now := time.Unix(1000, 0)
	c := newTokenCache(5*time.Second, 4)
	c.now = func() time.Time { return now }
	d := Device{ID: 7, UserID: 1}
	c.put([]byte("h7"), d)
	got, ok := c.get([]byte("h7"))
	require.True(t, ok)
	require.Equal(t, d, got)

	now = now.Add(6 * time.Second) // past the TTL: the store is asked again
	_, ok = c.get([]byte("h7"))
	require.False(t, ok)

	c.put([]byte("h7"), d)
	c.revoke(7)
	_, ok = c.get([]byte("h7"))
	require.False(t, ok, "revoked")
	c.put([]byte("h7"), d) // a lookup that raced the logout
	_, ok = c.get([]byte("h7"))
	require.False(t, ok, "a revoked device is not cached again within the TTL")

	for i := range 10 { // bounded
		c.put([]byte{byte(i)}, Device{ID: ID(100 + i)})
	}
	require.LessOrEqual(t, len(c.byHash), 4)
}
