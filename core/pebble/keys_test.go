package pebble

import (
	"bytes"
	"encoding/json"
	"log/slog"
	"strings"
	"testing"
	"time"

	"github.com/cockroachdb/pebble/v2"
	"github.com/stretchr/testify/require"

	"github.com/chatgate/chatgate/core"
)

// A message read back is the message stored, byte for byte in its JSON:
// clients compare what they sent with what they sync.
func TestRecordRoundTrip(t *testing.T) {
	ids, _ := core.NewSnowflake(3)
	a, b, g := ids.Next(), ids.Next(), ids.Next()
	id := ids.Next()
	at := core.Time{Time: core.IDTime(id).Add(-1500 * time.Millisecond)}
	for _, m := range []core.Message{
		{From: a, To: b, Content: "hi", CreatedAt: at, ClientMsgID: "c-1"},
		{From: b, To: a, Content: "답장 🙂 \"quoted\" \\ <b>", CreatedAt: core.Now()},
		{From: a, To: a, Content: "note to self", CreatedAt: core.Now(), ClientMsgID: strings.Repeat("x", core.MaxClientMsgID)},
		{From: a, GroupID: g, Content: strings.Repeat("가", core.MaxMessageChars), CreatedAt: at},
		{From: a, To: b, Content: "no time"},
	} {
		m.ID = id
		c := directConv(m.From, m.To)
		if m.GroupID != 0 {
			c = groupConv(m.GroupID)
		}
		m.ConversationID = c.String()
		got, err := decodeRecord(c, id, encodeRecord(nil, &m))
		require.NoError(t, err)
		require.Equal(t, m, got)
		want, _ := json.Marshal(m)
		require.Equal(t, string(want), string(got.AppendJSON(nil)))
		from, err := recordFrom(encodeRecord(nil, &m))
		require.NoError(t, err)
		require.Equal(t, m.From, from)
	}
	_, err := decodeRecord(directConv(a, b), id, []byte{9, 0, 1})
	require.Error(t, err, "an unknown record version is refused, not misread")
}

// Keys sort as the range scans need: a conversation's messages by id, an
// inbox by seq, and one user's keys before the next user's.
func TestKeysSortNumerically(t *testing.T) {
	c := directConv(5, 3)
	require.Equal(t, "d_3_5", c.String())
	require.Negative(t, bytes.Compare(msgKey(c, 255), msgKey(c, 256)))
	require.Negative(t, bytes.Compare(inboxKey(7, 255), inboxKey(7, 256)))
	require.Negative(t, bytes.Compare(inboxKey(7, ^uint64(0)), inboxKey(8, 0)))
	require.Negative(t, bytes.Compare(msgKey(c, ^core.ID(0)), prefixEnd(msgPrefix(c))))
	require.True(t, bytes.HasPrefix(msgKey(c, 1), msgPrefix(c)))
	for _, s := range []string{"d_3_5", "g_42"} {
		cv, _, ok := convOf(s)
		require.True(t, ok)
		require.Equal(t, s, cv.String())
		back, rest, err := decodeConv(append(cv.bytes(), 1, 2))
		require.NoError(t, err)
		require.Equal(t, cv, back)
		require.Equal(t, []byte{1, 2}, rest)
	}
	for _, s := range []string{"d_5_3", "g_0", "x_1", "d_1", ""} {
		_, _, ok := convOf(s)
		require.False(t, ok, s)
	}
}

func TestPushKeyKeepsTheOldForm(t *testing.T) {
	k := core.PushKey(383911507987009536, 12)
	require.Equal(t, "po:00383911507987009536:00000000000000000012", k)
	id, uid, err := core.ParsePushKey(k)
	require.NoError(t, err)
	require.Equal(t, core.ID(383911507987009536), id)
	require.Equal(t, core.ID(12), uid)
	for _, bad := range []string{"", "po:1:2", "m:00383911507987009536:00000000000000000012", "po:0038391150798700953x:00000000000000000012"} {
		_, _, err := core.ParsePushKey(bad)
		require.Error(t, err, bad)
	}
}

// A history written by a newer chatgate is refused rather than misread.
func TestOpenRefusesANewerFormat(t *testing.T) {
	dir := t.TempDir()
	db, err := pebble.Open(dir, &pebble.Options{})
	require.NoError(t, err)
	require.NoError(t, db.Set(metaKey("format"), []byte{FormatVersion + 1}, pebble.Sync))
	require.NoError(t, db.Close())
	ids, _ := core.NewSnowflake(1)
	_, err = Open(dir, &dirStub{}, ids, slog.New(slog.DiscardHandler), Options{})
	require.ErrorContains(t, err, "newer chatgate")
}

// The id generator never reissues a stored message id, even when the
// clock of the restarted node is behind the one that wrote it.
func TestOpenObservesTheNewestMessageID(t *testing.T) {
	dir := t.TempDir()
	ids, _ := core.NewSnowflake(1)
	d := &dirStub{users: map[core.ID]bool{1: true, 2: true}}
	s, err := Open(dir, d, ids, slog.New(slog.DiscardHandler), Options{})
	require.NoError(t, err)
	_, err = s.Append(t.Context(), core.SendRequest{From: 1, To: 2, Content: "x", CreatedAt: core.Now()})
	require.NoError(t, err)
	require.NoError(t, s.Close())
	// As if a node whose clock ran an hour fast had written the last one.
	future := core.ID(uint64((time.Since(core.Epoch)+time.Hour).Milliseconds())<<22 | 1<<12)
	db, err := pebble.Open(dir, &pebble.Options{})
	require.NoError(t, err)
	require.NoError(t, db.Set(metaKey("newest_id"), appendU64(nil, uint64(future)), pebble.Sync))
	require.NoError(t, db.Close())

	ids, _ = core.NewSnowflake(1)
	s, err = Open(dir, d, ids, slog.New(slog.DiscardHandler), Options{})
	require.NoError(t, err)
	defer s.Close()
	res, err := s.Append(t.Context(), core.SendRequest{From: 1, To: 2, Content: "y", CreatedAt: core.Now()})
	require.NoError(t, err)
	require.Greater(t, res.Message.ID, future)
}
