package pebble

import (
	"bytes"
	"reflect"
	"testing"
	"time"

	"github.com/chatgate/chatgate/core"
)

// The history's value decoders meet whatever is on disk, including a
// record torn or corrupted under them: they return an error, never panic,
// and what they accept is exactly what the encoders write.

func FuzzDecodeConv(f *testing.F) {
	f.Add(directConv(1, 2).bytes())
	f.Add(append(groupConv(7).bytes(), 1, 2, 3))
	f.Add([]byte{convDirect, 1})
	f.Add([]byte{})
	f.Fuzz(func(t *testing.T, b []byte) {
		c, rest, err := decodeConv(b)
		if err != nil {
			return
		}
		if !bytes.Equal(append(c.bytes(), rest...), b) {
			t.Fatalf("decodeConv(%x) = %x + %x", b, c.bytes(), rest)
		}
		_ = c.String() // any accepted conversation has a protocol id
	})
}

func FuzzDecodeRef(f *testing.F) {
	f.Add(msgRef(directConv(3, 9), 12345))
	f.Add(msgRef(groupConv(5), 1))
	f.Add([]byte{convGroup, 0, 0, 0, 0, 0, 0, 0, 5, 1})
	f.Fuzz(func(t *testing.T, v []byte) {
		c, id, err := decodeRef(v)
		if err != nil {
			return
		}
		if got := msgRef(c, id); !bytes.Equal(got, v) {
			t.Fatalf("decodeRef(%x) re-encodes as %x", v, got)
		}
	})
}

func FuzzDecodeRecord(f *testing.F) {
	id := core.ID(1 << 40)
	m := core.Message{ID: id, From: 3, To: 9, CreatedAt: core.Time{Time: core.IDTime(id).Add(5 * time.Millisecond)},
		ClientMsgID: "c1", Content: "안녕하세요, hello"}
	f.Add(encodeRecord(nil, &m), uint64(id), false)
	f.Add(encodeRecord(nil, &core.Message{ID: id, From: 4, GroupID: 7}), uint64(id), true)
	f.Add(encodeRecord(nil, &core.Message{ID: id, From: 4, GroupID: 7, Content: "@bob @amy", Mentions: []core.ID{5, 1 << 40}}), uint64(id), true)
	f.Add([]byte{recordV1, 0, 0x80}, uint64(1), false)
	f.Add([]byte{recordV1, 0xff, 3, 0, 0xff, 0xff, 0xff, 0xff, 0x0f}, uint64(1), true)
	f.Fuzz(func(t *testing.T, v []byte, rawID uint64, group bool) {
		c := directConv(3, 9)
		if group {
			c = groupConv(7)
		}
		id := core.ID(rawID)
		got, err := decodeRecord(c, id, v)
		from, ferr := recordFrom(v)
		if err != nil {
			return
		}
		if ferr != nil || from != got.From {
			t.Fatalf("decodeRecord accepted %x (from %d) but recordFrom says %d, %v", v, got.From, from, ferr)
		}
		// What decodes encodes to a record that decodes the same.
		again, err := decodeRecord(c, id, encodeRecord(nil, &got))
		if err != nil || !reflect.DeepEqual(again, got) {
			t.Fatalf("record %x: %+v re-decodes as %+v, %v", v, got, again, err)
		}
	})
}
