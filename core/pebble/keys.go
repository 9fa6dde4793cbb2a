package pebble

import (
	"encoding/binary"
	"errors"
	"fmt"
	"time"

	"github.com/chatgate/chatgate/core"
)

// On-disk layout. Keys are binary and big-endian so that byte order is
// numeric order; each starts with one byte naming its kind, so every kind
// is one contiguous range and a range scan is a resume or a history page.
//
//	m conv id          → message record      a conversation's messages in id order
//	i uid seq          → conv id             a user's inbox: the resume path
//	c uid client_msg_id → conv id            idempotency of sends
//	u uid conv         → (empty)             the conversations a user has
//	r uid conv         → id                  read marker
//	p id uid           → conv                push outbox, oldest message first
//	x name             → value               store metadata (format, newest id)
//
// conv is 'd' lo hi for a 1:1 conversation (the two user ids, lo ≤ hi) and
// 'g' gid for a group. Messages are keyed by conversation so that a history
// page is one sequential read; an inbox entry points at its message.
const (
	kindMessage = 'm'
	kindInbox   = 'i'
	kindCMID    = 'c'
	kindConv    = 'u'
	kindRead    = 'r'
	kindPush    = 'p'
	kindMeta    = 'x'

	convDirect = 'd'
	convGroup  = 'g'
)

// conv is a conversation in its binary key form.
type conv struct {
	b [17]byte
	n int
}

func (c conv) bytes() []byte { return c.b[:c.n] }

func directConv(a, b core.ID) conv {
	if a > b {
		a, b = b, a
	}
	var c conv
	c.b[0] = convDirect
	binary.BigEndian.PutUint64(c.b[1:], uint64(a))
	binary.BigEndian.PutUint64(c.b[9:], uint64(b))
	c.n = 17
	return c
}

func groupConv(g core.ID) conv {
	var c conv
	c.b[0] = convGroup
	binary.BigEndian.PutUint64(c.b[1:], uint64(g))
	c.n = 9
	return c
}

// convOf encodes a protocol conversation id; ok is false if it is malformed.
func convOf(id string) (conv, core.ParsedConv, bool) {
	p, ok := core.ParseConv(id)
	if !ok {
		return conv{}, p, false
	}
	if p.Group != 0 {
		return groupConv(p.Group), p, true
	}
	return directConv(p.A, p.B), p, true
}

// decodeConv reads a conversation at the start of b and returns the rest.
func decodeConv(b []byte) (conv, []byte, error) {
	var c conv
	switch {
	case len(b) >= 17 && b[0] == convDirect:
		c.n = 17
	case len(b) >= 9 && b[0] == convGroup:
		c.n = 9
	default:
		return c, nil, errors.New("corrupt conversation key")
	}
	copy(c.b[:], b[:c.n])
	return c, b[c.n:], nil
}

func (c conv) group() core.ID {
	if c.b[0] != convGroup {
		return 0
	}
	return core.ID(binary.BigEndian.Uint64(c.b[1:]))
}

func (c conv) users() (lo, hi core.ID) {
	return core.ID(binary.BigEndian.Uint64(c.b[1:])), core.ID(binary.BigEndian.Uint64(c.b[9:]))
}

// String is the protocol conversation id.
func (c conv) String() string {
	if g := c.group(); g != 0 {
		return core.GroupConv(g)
	}
	lo, hi := c.users()
	return core.DirectConv(lo, hi)
}

func appendU64(b []byte, v uint64) []byte { return binary.BigEndian.AppendUint64(b, v) }

func msgKey(c conv, id core.ID) []byte {
	b := make([]byte, 0, 1+c.n+8)
	return appendU64(append(append(b, kindMessage), c.bytes()...), uint64(id))
}

// msgPrefix is the range of a conversation's messages.
func msgPrefix(c conv) []byte { return append([]byte{kindMessage}, c.bytes()...) }

func inboxKey(uid core.ID, seq uint64) []byte {
	b := make([]byte, 0, 17)
	return appendU64(appendU64(append(b, kindInbox), uint64(uid)), seq)
}

func userPrefix(kind byte, uid core.ID) []byte {
	return appendU64(append(make([]byte, 0, 1+8+17), kind), uint64(uid))
}

func cmidKey(uid core.ID, cmid string) []byte {
	return append(userPrefix(kindCMID, uid), cmid...)
}

func convKey(uid core.ID, c conv) []byte { return append(userPrefix(kindConv, uid), c.bytes()...) }
func readKey(uid core.ID, c conv) []byte { return append(userPrefix(kindRead, uid), c.bytes()...) }

func pushKey(id, uid core.ID) []byte {
	b := make([]byte, 0, 17)
	return appendU64(appendU64(append(b, kindPush), uint64(id)), uint64(uid))
}

func metaKey(name string) []byte { return append([]byte{kindMeta}, name...) }

// prefixEnd is the first key after every key starting with p.
func prefixEnd(p []byte) []byte {
	end := append([]byte(nil), p...)
	for i := len(end) - 1; i >= 0; i-- {
		end[i]++
		if end[i] != 0 {
			return end[:i+1]
		}
	}
	return nil // p is all 0xff: no upper bound
}

// msgRef is an inbox or client_msg_id value: where the message lives.
func msgRef(c conv, id core.ID) []byte {
	return appendU64(append(make([]byte, 0, c.n+8), c.bytes()...), uint64(id))
}

func decodeRef(v []byte) (conv, core.ID, error) {
	c, rest, err := decodeConv(v)
	if err != nil || len(rest) != 8 {
		return c, 0, errors.New("corrupt message reference")
	}
	return c, core.ID(binary.BigEndian.Uint64(rest)), nil
}

// Message records. A record holds what the key does not: the sender, the
// time, the client_msg_id and the content. The recipient of a 1:1 message
// is the other user of its conversation; the id and conversation are in
// the key. Binary, because JSON field names and ids as text made a 100-byte
// message cost about 850 bytes on disk.
//
//	version byte (1) | flags byte | uvarint from | varint created_at − id time (ms)
//	| [flagMentions: uvarint count | uvarint id …]
//	| uvarint len(client_msg_id) | client_msg_id | content
//
// flagMentions came with format 2; a format-1 record never has it.
const (
	recordV1 = 1

	flagNoTime   = 1 << 0 // created_at is the zero time
	flagMentions = 1 << 1 // the mentioned user ids follow the time
)

// encodeRecord appends m's record to b.
func encodeRecord(b []byte, m *core.Message) []byte {
	var flags byte
	if m.CreatedAt.IsZero() {
		flags |= flagNoTime
	}
	if len(m.Mentions) > 0 {
		flags |= flagMentions
	}
	b = append(b, recordV1, flags)
	b = binary.AppendUvarint(b, uint64(m.From))
	var delta int64
	if flags&flagNoTime == 0 {
		delta = m.CreatedAt.UnixMilli() - core.IDTime(m.ID).UnixMilli()
	}
	b = binary.AppendVarint(b, delta)
	if flags&flagMentions != 0 {
		b = binary.AppendUvarint(b, uint64(len(m.Mentions)))
		for _, id := range m.Mentions {
			b = binary.AppendUvarint(b, uint64(id))
		}
	}
	b = binary.AppendUvarint(b, uint64(len(m.ClientMsgID)))
	b = append(b, m.ClientMsgID...)
	return append(b, m.Content...)
}

// recordFrom reads only the sender, for counting unread messages.
func recordFrom(v []byte) (core.ID, error) {
	if len(v) < 3 || v[0] != recordV1 {
		return 0, errors.New("corrupt message record")
	}
	from, n := binary.Uvarint(v[2:])
	if n <= 0 {
		return 0, errors.New("corrupt message record")
	}
	return core.ID(from), nil
}

// decodeRecord rebuilds the message stored under (c, id).
func decodeRecord(c conv, id core.ID, v []byte) (core.Message, error) {
	m := core.Message{ID: id, ConversationID: c.String()}
	bad := fmt.Errorf("corrupt record of message %d", id)
	if len(v) < 2 || v[0] != recordV1 {
		return m, bad
	}
	flags := v[1]
	v = v[2:]
	from, n := binary.Uvarint(v)
	if n <= 0 {
		return m, bad
	}
	v = v[n:]
	delta, n := binary.Varint(v)
	if n <= 0 {
		return m, bad
	}
	v = v[n:]
	if flags&flagMentions != 0 {
		count, n := binary.Uvarint(v)
		if n <= 0 || count == 0 || count > uint64(len(v)-n) {
			return m, bad
		}
		v = v[n:]
		m.Mentions = make([]core.ID, count)
		for i := range m.Mentions {
			id, n := binary.Uvarint(v)
			if n <= 0 {
				return m, bad
			}
			m.Mentions[i] = core.ID(id)
			v = v[n:]
		}
	}
	l, n := binary.Uvarint(v)
	if n <= 0 || uint64(len(v)-n) < l {
		return m, bad
	}
	m.ClientMsgID = string(v[n : n+int(l)])
	m.Content = string(v[n+int(l):])
	m.From = core.ID(from)
	if flags&flagNoTime == 0 {
		m.CreatedAt = core.Time{Time: time.UnixMilli(core.IDTime(id).UnixMilli() + delta).UTC()}
	}
	if g := c.group(); g != 0 {
		m.GroupID = g
	} else {
		lo, hi := c.users()
		m.To = lo
		if lo == m.From {
			m.To = hi
		}
	}
	return m, nil
}
