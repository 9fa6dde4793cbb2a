package wire_test

import (
	"errors"
	"testing"

	"github.com/chatgate/chatgate/core"
	"github.com/chatgate/chatgate/wire"
)

// Every body a client can send decodes, or fails with a 4xx *core.Error;
// never a panic, never a 5xx.
func FuzzDecode(f *testing.F) {
	for _, s := range []string{
		`{"username":"alice","password":"correct horse","display_name":"A"}`,
		`{"to":"1","content":"hi","client_msg_id":"x"}`,
		`{"group_id":"18446744073709551615","content":"\u0000","client_msg_id":""}`,
		`{"to":1}`, `{"to":"01"}`, `{"name":"g","members":["1","2"]}`, `{"message_id":"5"}`,
		`{"a":1}`, `[]`, `null`, `{} {}`, `{"content":"\ud800"}`, "\xff", ``, ` `, `{"to":"1"`,
	} {
		f.Add([]byte(s))
	}
	targets := []func() any{
		func() any { return &core.SignupInput{} },
		func() any { return &core.LoginInput{} },
		func() any { return &core.SendInput{} },
		func() any { return &core.CreateGroupInput{} },
		func() any {
			return &struct {
				MessageID core.ID `json:"message_id"`
			}{}
		},
	}
	f.Fuzz(func(t *testing.T, body []byte) {
		for _, newV := range targets {
			err := wire.Decode(body, newV())
			if err == nil {
				continue
			}
			var ce *core.Error
			if !errors.As(err, &ce) {
				t.Fatalf("%q: a non-core error %v", body, err)
			}
			if st := wire.Status(ce); st < 400 || st >= 500 {
				t.Fatalf("%q: status %d (%v)", body, st, ce)
			}
			if ce.Code == "" || ce.Message == "" {
				t.Fatalf("%q: an error without code or message", body)
			}
		}
	})
}
