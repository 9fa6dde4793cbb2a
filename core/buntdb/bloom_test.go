package buntdb

import (
	"context"
	"log/slog"
	"strconv"
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/chatgate/chatgate/core"
)

func TestSeenHasNoFalseNegatives(t *testing.T) {
	s := newSeen()
	const n = 5 * bloomFirstCap // several layers
	for i := 0; i < n; i++ {
		s.add("c:" + strconv.Itoa(i))
	}
	require.Greater(t, len(s.layers), 2)
	for i := 0; i < n; i++ {
		require.True(t, s.mayHave("c:"+strconv.Itoa(i)), "key %d", i)
	}
	fp := 0
	for i := n; i < 2*n; i++ {
		if s.mayHave("c:" + strconv.Itoa(i)) {
			fp++
		}
	}
	require.Less(t, fp, n/20, "false positives above 5%%")
}

// The filter is memory only: a client_msg_id stored before a restart must
// still be recognised after it.
func TestClientMsgIDIdempotentAcrossReopen(t *testing.T) {
	dir := t.TempDir()
	ids, _ := core.NewSnowflake(1)
	s, err := Open(dir, ids, slog.New(slog.DiscardHandler))
	require.NoError(t, err)
	ctx := context.Background()
	a, b := ids.Next(), ids.Next()
	for i, u := range []core.ID{a, b} {
		require.NoError(t, s.CreateUser(ctx, core.UserRecord{User: core.User{ID: u, Username: "user" + string(rune('a'+i))}}, core.Device{ID: ids.Next(), UserID: u}, []byte{byte(i)}))
	}
	req := core.SendRequest{From: a, To: b, Content: "x", ClientMsgID: "k1", CreatedAt: core.Now()}
	first, err := s.Append(ctx, req)
	require.NoError(t, err)
	again, err := s.Append(ctx, req)
	require.NoError(t, err)
	require.True(t, again.Replayed)
	require.NoError(t, s.Close())

	s, err = Open(dir, ids, slog.New(slog.DiscardHandler))
	require.NoError(t, err)
	defer s.Close()
	after, err := s.Append(ctx, req)
	require.NoError(t, err)
	require.True(t, after.Replayed)
	require.Equal(t, first.Message.ID, after.Message.ID)
	other := req
	other.Content = "y"
	_, err = s.Append(ctx, other)
	require.ErrorIs(t, err, core.ErrClientMsgIDReuse)
}
