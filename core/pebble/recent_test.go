package pebble

import (
	"encoding/json"
	"strconv"
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/chatgate/chatgate/core"
)

// The cache answers only what it holds in full: the newest ringLen
// entries, in seq order, and a seq that does not follow starts over.
func TestRecentAnswersOnlyWhatItHolds(t *testing.T) {
	r := newRecent(1 << 20)
	msg := func(i int) json.RawMessage { return json.RawMessage(strconv.Itoa(i)) }
	for seq := uint64(5); seq <= 40; seq++ {
		r.add([]core.Delivery{{UserID: 1, Seq: seq}, {UserID: 2, Seq: seq + 100}}, msg(int(seq)))
	}
	h, ok := r.head(1)
	require.True(t, ok)
	require.Equal(t, uint64(40), h)
	got, ok := r.inbox(1, 30, 100, 1<<20)
	require.True(t, ok)
	require.Len(t, got, 10)
	for i, e := range got {
		require.Equal(t, uint64(31+i), e.Seq)
		require.Equal(t, msg(31+i), e.Message)
	}
	_, ok = r.inbox(1, 40-ringLen-1, 100, 1<<20)
	require.False(t, ok, "older than the ring: read from disk")
	got, ok = r.inbox(1, 40-ringLen, 3, 1<<20)
	require.True(t, ok)
	require.Equal(t, uint64(40-ringLen+1), got[0].Seq)
	require.Len(t, got, 3)
	got, ok = r.inbox(1, 40, 100, 1<<20)
	require.True(t, ok)
	require.Empty(t, got)

	r.add([]core.Delivery{{UserID: 1, Seq: 50}}, msg(50)) // not 41: starts over
	_, ok = r.inbox(1, 45, 100, 1<<20)
	require.False(t, ok)
	h, _ = r.head(1)
	require.Equal(t, uint64(50), h)
	_, ok = r.head(3)
	require.False(t, ok)
}
