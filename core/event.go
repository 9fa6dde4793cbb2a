package core

import (
	"encoding/json"
	"strconv"
)

// Event types of protocol v1. Clients ignore types they do not know.
const (
	EventMessage  = "message"
	EventPresence = "presence"
	EventTyping   = "typing"
)

// Event is one encoded event for a user: Data is the complete JSON object
// that every transport sends as is, encoded once and shared by all the
// user's devices. Seq is the inbox position of a durable event and 0 for an
// ephemeral one.
type Event struct {
	Type string
	Seq  uint64
	Data []byte
}

// CursorEvent encodes {"type":"cursor","cursor":N}: sent by a stream
// opened with a cursor beyond the user's inbox head (a client bug, or a
// server restored from an older backup), telling the client to continue
// from N. Without it the client would drop every new event up to its stale
// cursor as already delivered.
func CursorEvent(cursor uint64) Event {
	b := append([]byte(`{"type":"cursor","cursor":`), strconv.FormatUint(cursor, 10)...)
	return Event{Type: "cursor", Data: append(b, '}')}
}

// eventRevoke is internal: it travels on the bus to end the streams of a
// logged-out device and is never sent to a client.
const eventRevoke = "_revoke"

func revokeEvent(device ID) Event {
	return Event{Type: eventRevoke, Data: []byte(device.String())}
}

// Durable reports whether the event is an inbox entry (carries a seq).
func (e Event) Durable() bool { return e.Seq != 0 }

// MessageEvent encodes {"type":"message","seq":N,"message":RAW}. The message
// JSON is the stored bytes, so building an event costs one copy, not an
// encoding.
func MessageEvent(seq uint64, msg json.RawMessage) Event {
	b := make([]byte, 0, len(msg)+48)
	b = append(b, `{"type":"message","seq":`...)
	b = strconv.AppendUint(b, seq, 10)
	b = append(b, `,"message":`...)
	b = append(b, msg...)
	b = append(b, '}')
	return Event{Type: EventMessage, Seq: seq, Data: b}
}

// PresenceEvent encodes a presence change of uid.
func PresenceEvent(uid ID, p Presence) Event {
	b, _ := json.Marshal(struct {
		Type   string `json:"type"`
		UserID ID     `json:"user_id"`
		Presence
	}{EventPresence, uid, p})
	return Event{Type: EventPresence, Data: b}
}

// TypingEvent encodes "uid is typing in conv".
func TypingEvent(conv string, uid ID) Event {
	b, _ := json.Marshal(struct {
		Type           string `json:"type"`
		ConversationID string `json:"conversation_id"`
		UserID         ID     `json:"user_id"`
	}{EventTyping, conv, uid})
	return Event{Type: EventTyping, Data: b}
}

// AppendEvents writes events as a JSON array into b.
func AppendEvents(b []byte, evs []Event) []byte {
	b = append(b, '[')
	for i, e := range evs {
		if i > 0 {
			b = append(b, ',')
		}
		b = append(b, e.Data...)
	}
	return append(b, ']')
}
