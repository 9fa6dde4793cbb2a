package core

import (
	"testing"
	"time"

	"github.com/stretchr/testify/require"
)

func TestParseRate(t *testing.T) {
	r, err := ParseRate("5/1m")
	require.NoError(t, err)
	require.Equal(t, Rate{5, time.Minute}, r)
	r, err = ParseRate(r.String())
	require.NoError(t, err)
	require.Equal(t, Rate{5, time.Minute}, r)
	off, err := ParseRate("off")
	require.NoError(t, err)
	require.Zero(t, off)
	for _, bad := range []string{"", "5", "x/1m", "0/1m", "-1/1m", "5/0s", "5/-1s", "5/soon"} {
		_, err := ParseRate(bad)
		require.Error(t, err, "%q", bad)
	}
}

func TestBuckets(t *testing.T) {
	now := time.Unix(0, 0)
	bs := newBuckets(Rate{N: 2, Per: 2 * time.Second}) // a token a second
	bs.now = func() time.Time { return now }
	require.Zero(t, bs.take("k"))
	require.Zero(t, bs.take("k"))
	require.Equal(t, time.Second, bs.take("k"), "empty: wait for the next token")
	require.Zero(t, bs.take("other"), "keys are separate")
	now = now.Add(500 * time.Millisecond)
	require.Equal(t, 500*time.Millisecond, bs.take("k"))
	bs.refund("k")
	require.Zero(t, bs.take("k"), "a refund gives the token back")
	now = now.Add(10 * time.Second)
	require.Zero(t, bs.take("k"))
	require.Zero(t, bs.take(""), "an unlimited key")
	bs.sweepLocked(now.Add(time.Hour))
	require.Empty(t, bs.m, "full buckets are forgotten")
	var off *buckets = newBuckets(Rate{})
	for range 100 {
		require.Zero(t, off.take("k"))
	}
}
