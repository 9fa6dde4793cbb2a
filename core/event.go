package core

import (
	"encoding/binary"
	"encoding/json"
	"errors"
	"strconv"
)

// Event types of protocol v1. Clients ignore types they do not know.
const (
	EventMessage  = "message"
	EventPresence = "presence"
	EventTyping   = "typing"
)

// Event is one encoded event for a user, ready for every transport to send
// as is. A message event is encoded once for all its recipients: the stored
// message bytes are shared and only the few bytes that carry the user's seq
// are per recipient (see Head, Body and Tail, which a transport can write
// without joining them). Seq is the inbox position of a durable event and 0
// for an ephemeral one.
type Event struct {
	Type string
	Seq  uint64
	data []byte          // the whole JSON of an event that is not a message
	msg  json.RawMessage // a message event's stored message, shared
}

// Data returns the event's JSON as one slice. For a message event it joins
// the parts into a new slice; transports use AppendTo or the parts instead.
func (e Event) Data() []byte {
	if e.msg == nil {
		return e.data
	}
	return e.AppendTo(make([]byte, 0, e.Len()))
}

// Len is the length of the event's JSON.
func (e Event) Len() int {
	if e.msg == nil {
		return len(e.data)
	}
	digits := 1
	for n := e.Seq; n >= 10; n /= 10 {
		digits++
	}
	return len(messageHead) + digits + len(messageMid) + len(e.msg) + len(messageTail)
}

// AppendTo appends the event's JSON to b.
func (e Event) AppendTo(b []byte) []byte {
	b = e.AppendHead(b)
	b = append(b, e.Body()...)
	return append(b, e.Tail()...)
}

// AppendHead appends the bytes that come before Body: for a message event
// {"type":"message","seq":N,"message":, for any other event nothing.
func (e Event) AppendHead(b []byte) []byte {
	if e.msg == nil {
		return b
	}
	b = append(b, messageHead...)
	b = strconv.AppendUint(b, e.Seq, 10)
	return append(b, messageMid...)
}

// Body is the bulk of the event's JSON, shared by every recipient: treat
// it as read-only.
func (e Event) Body() []byte {
	if e.msg == nil {
		return e.data
	}
	return e.msg
}

// Tail is what follows Body (read-only).
func (e Event) Tail() []byte {
	if e.msg == nil {
		return nil
	}
	return messageTail
}

var messageTail = []byte("}")

const messageHead, messageMid = `{"type":"message","seq":`, `,"message":`

// CursorEvent encodes {"type":"cursor","cursor":N}: sent by a stream
// opened with a cursor beyond the user's inbox head (a client bug, or a
// server restored from an older backup), telling the client to continue
// from N. Without it the client would drop every new event up to its stale
// cursor as already delivered.
func CursorEvent(cursor uint64) Event {
	b := append([]byte(`{"type":"cursor","cursor":`), strconv.FormatUint(cursor, 10)...)
	return Event{Type: "cursor", data: append(b, '}')}
}

// eventRevoke is internal: it travels on the bus to end the streams of a
// logged-out device and is never sent to a client.
const eventRevoke = "_revoke"

func revokeEvent(device ID) Event {
	return Event{Type: eventRevoke, data: []byte(device.String())}
}

// Durable reports whether the event is an inbox entry (carries a seq).
func (e Event) Durable() bool { return e.Seq != 0 }

// MessageEvent is {"type":"message","seq":N,"message":RAW}. RAW is the
// stored message, shared, not copied: building an event for each recipient
// of a group message allocates nothing.
func MessageEvent(seq uint64, msg json.RawMessage) Event {
	return Event{Type: EventMessage, Seq: seq, msg: msg}
}

// PresenceEvent encodes a presence change of uid.
func PresenceEvent(uid ID, p Presence) Event {
	b, _ := json.Marshal(struct {
		Type   string `json:"type"`
		UserID ID     `json:"user_id"`
		Presence
	}{EventPresence, uid, p})
	return Event{Type: EventPresence, data: b}
}

// TypingEvent encodes "uid is typing in conv".
func TypingEvent(conv string, uid ID) Event {
	b, _ := json.Marshal(struct {
		Type           string `json:"type"`
		ConversationID string `json:"conversation_id"`
		UserID         ID     `json:"user_id"`
	}{EventTyping, conv, uid})
	return Event{Type: EventTyping, data: b}
}

// SentEvent encodes {"type":"sent","client_msg_id":ID,"message":RAW}, the
// answer to a send over a socket. RAW is the stored message, copied as is.
func SentEvent(clientMsgID string, msg json.RawMessage) []byte {
	b := make([]byte, 0, len(msg)+len(clientMsgID)+48)
	b = append(b, `{"type":"sent","client_msg_id":`...)
	b = AppendJSONString(b, clientMsgID)
	b = append(b, `,"message":`...)
	b = append(b, msg...)
	return append(b, '}')
}

// AppendEvents writes events as a JSON array into b.
func AppendEvents(b []byte, evs []Event) []byte {
	b = append(b, '[')
	for i, e := range evs {
		if i > 0 {
			b = append(b, ',')
		}
		b = e.AppendTo(b)
	}
	return append(b, ']')
}

// AppendWire appends the event in the form a cluster bus carries between
// nodes (internal events included): a kind byte, the seq, the type and the
// JSON. ParseWire reads it back.
func (e Event) AppendWire(b []byte) []byte {
	kind, body := byte('d'), e.data
	if e.msg != nil {
		kind, body = 'm', e.msg
	}
	b = append(b, kind)
	b = binary.AppendUvarint(b, e.Seq)
	b = binary.AppendUvarint(b, uint64(len(e.Type)))
	b = append(b, e.Type...)
	return append(b, body...)
}

// ParseWire decodes what AppendWire wrote. The event keeps b: the caller
// must not reuse it.
func ParseWire(b []byte) (Event, error) {
	if len(b) < 1 || (b[0] != 'd' && b[0] != 'm') {
		return Event{}, errors.New("bus event: bad kind")
	}
	kind := b[0]
	b = b[1:]
	seq, n := binary.Uvarint(b)
	if n <= 0 {
		return Event{}, errors.New("bus event: bad seq")
	}
	b = b[n:]
	tl, n := binary.Uvarint(b)
	if n <= 0 || tl > uint64(len(b)-n) {
		return Event{}, errors.New("bus event: bad type")
	}
	b = b[n:]
	e := Event{Type: string(b[:tl]), Seq: seq}
	body := b[tl:]
	if kind == 'm' {
		e.msg = json.RawMessage(body)
	} else {
		e.data = body
	}
	return e, nil
}
