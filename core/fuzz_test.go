package core_test

import (
	"encoding/json"
	"testing"

	"github.com/chatgate/chatgate/core"
)

// The core's decoders of client- and bus-supplied text never panic, and
// what they accept they give back unchanged.

func FuzzParseWire(f *testing.F) {
	f.Add(core.MessageEvent(7, json.RawMessage(`{"id":"1"}`)).AppendWire(nil))
	f.Add(core.TypingEvent("d_1_2", 3).AppendWire(nil))
	f.Add(core.ResyncEvent().AppendWire(nil))
	f.Add([]byte("d\x00\x00"))
	f.Add([]byte("m\xff\xff\xff\xff\xff\xff\xff\xff\xff\x01"))
	f.Fuzz(func(t *testing.T, b []byte) {
		e, err := core.ParseWire(append([]byte(nil), b...))
		if err != nil {
			return
		}
		again, err := core.ParseWire(e.AppendWire(nil))
		if err != nil || again.Type != e.Type || again.Seq != e.Seq || string(again.Data()) != string(e.Data()) {
			t.Fatalf("round trip of %q: %+v vs %+v (%v)", b, e, again, err)
		}
	})
}

func FuzzParseConv(f *testing.F) {
	for _, s := range []string{"d_1_2", "g_5", "d_2_1", "d_1_1", "g_0", "d__", "x", "g_18446744073709551615", "d_01_2"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		p, ok := core.ParseConv(s)
		if !ok {
			return
		}
		want := core.GroupConv(p.Group)
		if p.Group == 0 {
			want = core.DirectConv(p.A, p.B)
		}
		if want != s {
			t.Fatalf("ParseConv accepted %q, which is not canonical (%q)", s, want)
		}
	})
}

func FuzzParseID(f *testing.F) {
	for _, s := range []string{"1", "0", "-1", "18446744073709551615", "18446744073709551616", "01", " 1", "1e3", ""} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		id, err := core.ParseID(s)
		if err == nil && id == 0 {
			t.Fatalf("ParseID(%q) accepted zero", s)
		}
		var v core.ID
		_ = json.Unmarshal([]byte(s), &v)
	})
}

func FuzzParseRate(f *testing.F) {
	for _, s := range []string{"5/1m", "off", "0", "100/1h", "1/1ns", "5/", "/1m"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		r, err := core.ParseRate(s)
		if err != nil {
			return
		}
		if r.N < 0 || (r.N > 0 && r.Per <= 0) {
			t.Fatalf("ParseRate(%q) = %+v", s, r)
		}
	})
}

func FuzzParsePushKey(f *testing.F) {
	f.Add(core.PushKey(383911507987009536, 12))
	f.Add("po:")
	f.Add("po:00000000000000000001:0000000000000000000x")
	f.Fuzz(func(t *testing.T, k string) {
		m, u, err := core.ParsePushKey(k)
		if err == nil && core.PushKey(m, u) != k {
			t.Fatalf("ParsePushKey accepted %q, not what PushKey writes", k)
		}
	})
}
