package core_test

import (
	"encoding/json"
	"math"
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/chatgate/chatgate/core"
)

// A message event's parts, however a transport writes them, make the
// protocol's envelope, and Len is exact (WebSocket frame headers carry it).
func TestMessageEventParts(t *testing.T) {
	for _, seq := range []uint64{1, 9, 10, 99, 100, 123456789, math.MaxUint64} {
		ev := core.MessageEvent(seq, sampleMessage)
		joined := ev.AppendTo([]byte("prefix"))[len("prefix"):]
		require.Len(t, joined, ev.Len(), "seq %d", seq)
		require.Equal(t, joined, ev.Data())
		parts := append(ev.AppendHead(nil), ev.Body()...)
		require.Equal(t, joined, append(parts, ev.Tail()...))
		var got struct {
			Type    string          `json:"type"`
			Seq     uint64          `json:"seq"`
			Message json.RawMessage `json:"message"`
		}
		require.NoError(t, json.Unmarshal(joined, &got))
		require.Equal(t, core.EventMessage, got.Type)
		require.Equal(t, seq, got.Seq)
		require.JSONEq(t, string(sampleMessage), string(got.Message))
	}
	// Other events are one slice: no head, no tail.
	ev := core.CursorEvent(7)
	require.Equal(t, `{"type":"cursor","cursor":7}`, string(ev.Data()))
	require.Empty(t, ev.AppendHead(nil))
	require.Empty(t, ev.Tail())
	require.Equal(t, len(ev.Body()), ev.Len())
}

// The hand-written JSON string encoder agrees with encoding/json on every
// byte that matters, and SentEvent is valid JSON.
func TestAppendJSONString(t *testing.T) {
	for _, s := range []string{"", "plain", `q"uote`, `back\slash`, "nl\nret\rtab\t", "bell\x07\x1f", "héllo 😀 <&> \u2028", "\"\\\"\\"} {
		b := core.AppendJSONString(nil, s)
		var got string
		require.NoError(t, json.Unmarshal(b, &got), string(b))
		require.Equal(t, s, got)
		ev := core.SentEvent(s, sampleMessage)
		var sent struct {
			Type        string          `json:"type"`
			ClientMsgID string          `json:"client_msg_id"`
			Message     json.RawMessage `json:"message"`
		}
		require.NoError(t, json.Unmarshal(ev, &sent), string(ev))
		require.Equal(t, "sent", sent.Type)
		require.Equal(t, s, sent.ClientMsgID)
		require.JSONEq(t, string(sampleMessage), string(sent.Message))
	}
}

func TestWireRoundTrip(t *testing.T) {
	for _, e := range []core.Event{
		core.MessageEvent(12345, json.RawMessage(`{"id":"1","content":"é"}`)),
		core.TypingEvent("c", 7),
		core.ResyncEvent(),
	} {
		got, err := core.ParseWire(e.AppendWire(nil))
		require.NoError(t, err)
		require.Equal(t, e.Type, got.Type)
		require.Equal(t, e.Seq, got.Seq)
		require.Equal(t, string(e.Data()), string(got.Data()))
	}
	for _, bad := range []string{"", "x", "m", "d\x01", "d\x00\x09ab"} {
		_, err := core.ParseWire([]byte(bad))
		require.Error(t, err, "%q", bad)
	}
}
