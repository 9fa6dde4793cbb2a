package client

import (
	"encoding/json"
	"testing"

	"github.com/stretchr/testify/require"
)

// The fast event decoder reads every kind of server event exactly as
// encoding/json does.
func TestDecodeEventMatchesEncodingJSON(t *testing.T) {
	for _, raw := range []string{
		`{"type":"message","seq":1234,"message":{"id":"383911507987009536","conversation_id":"d_1_2","from":"1","to":"2","content":"h\u00e9llo \"you\" \ud83d\ude00","created_at":"2026-11-25T11:52:36.123Z","client_msg_id":"c-1"}}`,
		`{"type":"message","seq":7,"message":{"id":"9","conversation_id":"g_5","from":"1","group_id":"5","content":"x","created_at":"2026-11-25T11:52:36Z","client_msg_id":""}}`,
		`{"type":"presence","user_id":"42","status":"offline","last_active_at":"2026-11-25T11:52:36.5Z"}`,
		`{"type":"typing","conversation_id":"d_1_2","user_id":"1"}`,
		`{"type":"sent","client_msg_id":"c-1","message":{"id":"9","conversation_id":"d_1_2","from":"1","to":"2","content":"x","created_at":"2026-11-25T11:52:36Z","client_msg_id":"c-1"}}`,
		`{"type":"error","error":{"code":"content_too_long","message":"too long"},"client_msg_id":"c-2"}`,
		`{"type":"cursor","cursor":12}`,
		`{"type":"something_new","seq":0,"extra":{"nested":[1,2,3]}}`,
	} {
		var fast, std wireEvent
		require.NoError(t, decodeEvent([]byte(raw), &fast), raw)
		require.NoError(t, json.Unmarshal([]byte(raw), &std), raw)
		if fast.Error != nil || std.Error != nil {
			require.JSONEq(t, string(std.Error), string(fast.Error))
			fast.Error, std.Error = nil, nil
		}
		require.Equal(t, std, fast, raw)
	}
	for _, bad := range []string{`{"type":"message","seq":-1}`, `{"type":`, `[]`} {
		var w wireEvent
		require.Error(t, decodeEvent([]byte(bad), &w), bad)
	}
}

// BenchmarkDecodeEvent is what a receiving client spends per message event.
func BenchmarkDecodeEvent(b *testing.B) {
	raw := []byte(`{"type":"message","seq":1234,"message":{"id":"383911507987009536","conversation_id":"d_383911454543187968_383911454958424064","from":"383911454543187968","to":"383911454958424064","content":"hello, this is a benchmark message of about one hundred bytes, padded out to be long enough","created_at":"2026-11-25T11:52:36.123Z","client_msg_id":"7f3c2a9e-1"}}`)
	b.ReportAllocs()
	for i := 0; i < b.N; i++ {
		var w wireEvent
		if err := decodeEvent(raw, &w); err != nil {
			b.Fatal(err)
		}
	}
}
