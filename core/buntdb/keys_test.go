package buntdb

import (
	"math"
	"strconv"
	"strings"
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/chatgate/chatgate/core"
)

// Keys are the on-disk format: the allocation-lean builders must make
// exactly the keys that plain concatenation made.
func TestKeysKeepTheirFormat(t *testing.T) {
	p := func(n uint64) string {
		s := strconv.FormatUint(n, 10)
		return strings.Repeat("0", 20-len(s)) + s
	}
	for _, n := range []uint64{0, 1, 9, 10, 383911507987009536, math.MaxUint64} {
		a, b := core.ID(n), core.ID(n/3+7)
		require.Equal(t, p(n), pad(n))
		require.Equal(t, "u:"+p(n), kUser(a))
		require.Equal(t, "ud:"+p(n)+":"+p(uint64(b)), kUserDevice(a, b))
		require.Equal(t, "f:"+p(n)+":"+p(uint64(b)), kFriend(a, b))
		require.Equal(t, "fi:"+p(n)+":"+p(uint64(b)), kFriendIn(a, b))
		require.Equal(t, "g:"+p(n), kGroup(a))
		require.Equal(t, "ug:"+p(n)+":"+p(uint64(b)), kUserGroup(a, b))
		require.Equal(t, "p:"+p(n), kPresence(a))
		require.Equal(t, "m:"+p(n), kMessage(a))
		require.Equal(t, "dn:bob\x00"+p(n), kDisplay("Bob", a))
	}
}
