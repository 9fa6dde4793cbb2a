package core_test

import (
	"encoding/json"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/chatgate/chatgate/core"
)

// reference is what encoding/json makes of a Message without its
// MarshalJSON method: the bytes stored before the hand-written encoder.
type reference struct {
	ID             core.ID   `json:"id"`
	ConversationID string    `json:"conversation_id"`
	From           core.ID   `json:"from"`
	To             core.ID   `json:"to,omitempty"`
	GroupID        core.ID   `json:"group_id,omitempty"`
	Content        string    `json:"content"`
	CreatedAt      core.Time `json:"created_at"`
	ClientMsgID    string    `json:"client_msg_id"`
	Mentions       []core.ID `json:"mentions,omitempty"`
}

func checkSame(t *testing.T, m core.Message) {
	t.Helper()
	want, err := json.Marshal(reference(m))
	require.NoError(t, err)
	got, err := json.Marshal(m)
	require.NoError(t, err)
	require.Equal(t, string(want), string(got))
	require.Equal(t, string(want), string(m.AppendJSON(nil)))
}

var encodeCases = []string{
	"", "hello", `quote " backslash \ slash /`, "<script>&amp;</script>",
	"\x00\x01\b\f\n\r\t\x1f\x7f", "héllo wörld 😀", "\u2028\u2029", "bad \xff utf8 \xc3",
	"\ufffd", "\xed\xa0\x80", "tab\tend",
}

func TestMessageJSONMatchesEncodingJSON(t *testing.T) {
	for _, s := range encodeCases {
		checkSame(t, core.Message{ID: 1, ConversationID: "d_1_2", From: 1, To: 2, Content: s, CreatedAt: core.Now(), ClientMsgID: s})
	}
	checkSame(t, core.Message{ID: 383911507987009536, ConversationID: "g_9", From: 7, GroupID: 9, Content: "x"})
	checkSame(t, core.Message{ID: 2, ConversationID: "g_9", From: 7, GroupID: 9, Content: "@a @b", Mentions: []core.ID{7}})
	checkSame(t, core.Message{ID: 3, ConversationID: "g_9", From: 7, GroupID: 9, Content: "@a @b", Mentions: []core.ID{7, 383911454543187968}})
	checkSame(t, core.Message{CreatedAt: core.Time{Time: time.Date(2030, 1, 2, 3, 4, 5, 6e6, time.FixedZone("x", 3600))}})
	for _, y := range []int{-1, 0, 1, 999, 9999, 10000} {
		checkSame(t, core.Message{CreatedAt: core.Time{Time: time.Date(y, 12, 31, 23, 59, 59, 999999999, time.UTC)}})
	}
}

func FuzzMessageJSON(f *testing.F) {
	for _, s := range encodeCases {
		f.Add(s, s, uint64(1), int64(0))
	}
	f.Fuzz(func(t *testing.T, content, cmid string, to uint64, ms int64) {
		checkSame(t, core.Message{ID: core.ID(to + 1), ConversationID: cmid, From: 3, To: core.ID(to),
			Content: content, CreatedAt: core.Time{Time: time.UnixMicro(ms)}, ClientMsgID: cmid})
	})
}

func BenchmarkMessageJSON(b *testing.B) {
	m := core.Message{ID: 383911507987009536, ConversationID: "d_383911454543187968_383911454958424064",
		From: 383911454543187968, To: 383911454958424064, Content: "hello, this is a benchmark message",
		CreatedAt: core.Now(), ClientMsgID: "7f3c2a9e-1"}
	b.Run("encoding/json", func(b *testing.B) {
		b.ReportAllocs()
		for i := 0; i < b.N; i++ {
			_, _ = json.Marshal(reference(m))
		}
	})
	b.Run("AppendJSON", func(b *testing.B) {
		b.ReportAllocs()
		for i := 0; i < b.N; i++ {
			_ = m.AppendJSON(make([]byte, 0, 256))
		}
	})
}

func BenchmarkTimeJSON(b *testing.B) {
	t := core.Now()
	b.ReportAllocs()
	for i := 0; i < b.N; i++ {
		_, _ = t.MarshalJSON()
	}
}
