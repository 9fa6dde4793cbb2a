package core_test

import (
	"encoding/json"
	"testing"

	"github.com/chatgate/chatgate/core"
)

var sampleMessage, _ = json.Marshal(core.Message{
	ID: 383911507987009536, ConversationID: "d_383911454543187968_383911454958424064",
	From: 383911454543187968, To: 383911454958424064, Content: "hello, this is a benchmark message",
	CreatedAt: core.Now(), ClientMsgID: "7f3c2a9e-1",
})

// BenchmarkMessageEvent is the per-recipient cost of the envelope: the
// stored message bytes are shared, not copied.
func BenchmarkMessageEvent(b *testing.B) {
	b.ReportAllocs()
	for i := 0; i < b.N; i++ {
		_ = core.MessageEvent(uint64(i), sampleMessage)
	}
}

// BenchmarkMessageEventAppend is what a buffering transport (SSE, polling)
// pays per recipient: the event written into its reused buffer.
func BenchmarkMessageEventAppend(b *testing.B) {
	buf := make([]byte, 0, 1024)
	b.ReportAllocs()
	for i := 0; i < b.N; i++ {
		buf = core.MessageEvent(uint64(i), sampleMessage).AppendTo(buf[:0])
	}
}

// BenchmarkLocalBusPublish is the live fan-out step: one publish to a user
// with one subscribed device.
func BenchmarkLocalBusPublish(b *testing.B) {
	bus := core.NewLocalBus()
	var n int
	cancel := bus.Subscribe(1, func(core.Event) { n++ })
	defer cancel()
	ev := core.MessageEvent(1, sampleMessage)
	b.ReportAllocs()
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		bus.Publish(1, ev)
	}
	if n != b.N {
		b.Fatal(n)
	}
}
