package core

import (
	"strconv"

	"unicode/utf8"
)

// Every stored message is encoded once per send; encoding/json's reflection
// and its re-validation of MarshalJSON output were a visible share of the
// send path. These appenders produce exactly the bytes encoding/json would
// (HTML-safe escaping included), which the tests check, so stored messages
// read the same whichever encoder wrote them.

// AppendJSON appends the JSON encoding of m, byte for byte what
// json.Marshal returns.
func (m *Message) AppendJSON(b []byte) []byte {
	b = append(b, `{"id":`...)
	b = appendIDJSON(b, m.ID)
	b = append(b, `,"conversation_id":`...)
	b = AppendJSONString(b, m.ConversationID)
	b = append(b, `,"from":`...)
	b = appendIDJSON(b, m.From)
	if m.To != 0 {
		b = append(b, `,"to":`...)
		b = appendIDJSON(b, m.To)
	}
	if m.GroupID != 0 {
		b = append(b, `,"group_id":`...)
		b = appendIDJSON(b, m.GroupID)
	}
	b = append(b, `,"content":`...)
	b = AppendJSONString(b, m.Content)
	b = append(b, `,"created_at":`...)
	b = m.CreatedAt.appendJSON(b)
	b = append(b, `,"client_msg_id":`...)
	b = AppendJSONString(b, m.ClientMsgID)
	if len(m.Mentions) > 0 {
		b = append(b, `,"mentions":[`...)
		for i, id := range m.Mentions {
			if i > 0 {
				b = append(b, ',')
			}
			b = appendIDJSON(b, id)
		}
		b = append(b, ']')
	}
	return append(b, '}')
}

// MarshalJSON implements json.Marshaler.
func (m Message) MarshalJSON() ([]byte, error) {
	return m.AppendJSON(make([]byte, 0, 160+len(m.Content)+len(m.ClientMsgID))), nil
}

func appendIDJSON(b []byte, id ID) []byte {
	b = append(b, '"')
	b = strconv.AppendUint(b, uint64(id), 10)
	return append(b, '"')
}

func (t Time) appendJSON(b []byte) []byte {
	if t.IsZero() {
		return append(b, "null"...)
	}
	u := t.UTC()
	year, month, day := u.Date()
	if year < 0 || year > 9999 {
		// TimeFormat's own rendering of years that are not four digits.
		return AppendJSONString(b, u.Format(TimeFormat))
	}
	hour, minute, sec := u.Clock()
	b = append(b, '"')
	b = appendDigits(b, year, 4)
	b = append(b, '-')
	b = appendDigits(b, int(month), 2)
	b = append(b, '-')
	b = appendDigits(b, day, 2)
	b = append(b, 'T')
	b = appendDigits(b, hour, 2)
	b = append(b, ':')
	b = appendDigits(b, minute, 2)
	b = append(b, ':')
	b = appendDigits(b, sec, 2)
	b = append(b, '.')
	b = appendDigits(b, u.Nanosecond()/1e6, 3)
	return append(b, 'Z', '"')
}

// appendDigits appends v zero-padded to width digits (v < 10^width).
func appendDigits(b []byte, v, width int) []byte {
	var d [4]byte
	for i := width - 1; i >= 0; i-- {
		d[i] = byte('0' + v%10)
		v /= 10
	}
	return append(b, d[:width]...)
}

const hexDigits = "0123456789abcdef"

// AppendJSONString appends s as a JSON string the way encoding/json does by
// default: <, > and & escaped for HTML, invalid UTF-8 replaced by U+FFFD,
// U+2028 and U+2029 escaped for JavaScript.
func AppendJSONString(b []byte, s string) []byte {
	b = append(b, '"')
	start := 0
	for i := 0; i < len(s); {
		if c := s[i]; c < utf8.RuneSelf {
			if c >= 0x20 && c != '"' && c != '\\' && c != '<' && c != '>' && c != '&' {
				i++
				continue
			}
			b = append(b, s[start:i]...)
			switch c {
			case '\\', '"':
				b = append(b, '\\', c)
			case '\b':
				b = append(b, '\\', 'b')
			case '\f':
				b = append(b, '\\', 'f')
			case '\n':
				b = append(b, '\\', 'n')
			case '\r':
				b = append(b, '\\', 'r')
			case '\t':
				b = append(b, '\\', 't')
			default:
				b = append(b, '\\', 'u', '0', '0', hexDigits[c>>4], hexDigits[c&0xF])
			}
			i++
			start = i
			continue
		}
		r, size := utf8.DecodeRuneInString(s[i:])
		if r == utf8.RuneError && size == 1 {
			b = append(b, s[start:i]...)
			b = append(b, `\ufffd`...)
			i += size
			start = i
			continue
		}
		if r == '\u2028' || r == '\u2029' {
			b = append(b, s[start:i]...)
			b = append(b, '\\', 'u', '2', '0', '2', hexDigits[r&0xF])
			i += size
			start = i
			continue
		}
		i += size
	}
	b = append(b, s[start:]...)
	return append(b, '"')
}
