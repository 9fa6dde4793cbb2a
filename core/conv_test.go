package core

import (
	"math"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

func TestDirectConvIsSymmetric(t *testing.T) {
	assert.Equal(t, "d_3_10", DirectConv(10, 3))
	assert.Equal(t, "d_3_10", DirectConv(3, 10), "numeric, not lexical, order")
	assert.Equal(t, "d_7_7", DirectConv(7, 7))
	assert.Equal(t, "g_42", GroupConv(42))
}

func TestParseConvRoundTrip(t *testing.T) {
	for _, pair := range [][2]ID{{1, 2}, {2, 1}, {9, 10}, {7, 7}, {1 << 62, math.MaxUint64}} {
		s := DirectConv(pair[0], pair[1])
		p, ok := ParseConv(s)
		require.True(t, ok, s)
		assert.Zero(t, p.Group)
		assert.Equal(t, min(pair[0], pair[1]), p.A)
		assert.Equal(t, max(pair[0], pair[1]), p.B)
		assert.Equal(t, s, DirectConv(p.A, p.B))
		assert.True(t, p.HasUser(pair[0]))
		assert.True(t, p.HasUser(pair[1]))
		assert.False(t, p.HasUser(12345))
		assert.Equal(t, pair[1], p.Peer(pair[0]))
		assert.Equal(t, pair[0], p.Peer(pair[1]))
	}
	for _, g := range []ID{1, 99, math.MaxUint64} {
		s := GroupConv(g)
		p, ok := ParseConv(s)
		require.True(t, ok, s)
		assert.Equal(t, g, p.Group)
		assert.Zero(t, p.A)
		assert.Equal(t, s, GroupConv(p.Group))
		assert.False(t, p.HasUser(0), "a group conversation has no direct users")
	}
}

func TestParseConvRejects(t *testing.T) {
	for _, s := range []string{
		"", "d_", "g_", "d_1", "d_1_", "d__2", "d_2_1", "d_01_2", "d_1_02", "d_0_1", "d_1_2_3",
		"d_-1_2", "d_+1_2", "d_1_18446744073709551616", "D_1_2", "d-1-2", " d_1_2", "d_1_2 ",
		"g_0", "g_01", "g_+1", "g_-1", "g_1x", "g_1_2", "g_18446744073709551616", "G_1",
		"x_1", "1", "d_1\x00_2", "g_١", // Arabic-Indic digit
	} {
		_, ok := ParseConv(s)
		assert.False(t, ok, "%q must be refused", s)
	}
}
