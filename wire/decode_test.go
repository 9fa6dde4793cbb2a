package wire

import (
	"net/http"
	"net/http/httptest"
	"net/url"
	"strings"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/chatgate/chatgate/core"
)

func TestHasLoneSurrogate(t *testing.T) {
	cases := []struct {
		name string
		in   string
		lone bool
	}{
		{"no escapes", `{"content":"hello"}`, false},
		{"plain escapes", `{"content":"a\n\t\"\\\/b"}`, false},
		{"bmp escape", `{"content":"\u00e9\u0041"}`, false},
		{"just below the surrogates", `"\ud7ff"`, false},
		{"just above the surrogates", `"\ue000"`, false},
		{"valid pair", `"\ud83d\ude00"`, false},
		{"valid pair upper case", `"\uD83D\uDE00"`, false},
		{"edge pairs", `"\ud800\udc00\udbff\udfff"`, false},
		{"pairs back to back", `"\ud83d\ude00\ud83d\ude01x"`, false},
		{"raw utf-8 emoji", `"😀"`, false},
		{"escaped backslash then u", `"\\ud800"`, false},
		{"escaped backslashes then u", `"\\\\ud800"`, false},
		{"short escape at the end", `"\ud8`, false},
		{"lone high", `"\ud800"`, true},
		{"lone high mid string", `"a\ud83db"`, true},
		{"lone high at end of input", `\ud800`, true},
		{"lone low", `"\udc00"`, true},
		{"lone low upper case", `"\uDFFF"`, true},
		{"reversed pair", `"\ude00\ud83d"`, true},
		{"high then high", `"\ud83d\ud83d"`, true},
		{"high then bmp escape", `"\ud83d\u0041"`, true},
		{"high then other escape", `"\ud83d\n"`, true},
		{"high then truncated escape", `"\ud83d\ude"`, true},
		{"high then non-hex escape", `"\ud83d\uzzzz"`, true},
		{"backslash escape then lone", `"\\\ud800"`, true},
		{"valid pair then lone low", `"\ud83d\ude00\ude00"`, true},
		{"lone in a key", `{"\udc00":1}`, true},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			assert.Equal(t, tc.lone, hasLoneSurrogate([]byte(tc.in)), "%s", tc.in)
		})
	}
}

func TestDecodeBytes(t *testing.T) {
	type body struct {
		To      *core.ID `json:"to"`
		Content string   `json:"content"`
		Members []core.ID
	}
	var ok body
	require.NoError(t, Decode([]byte(` {"to":"42","content":"\ud83d\ude00"} `), &ok))
	assert.Equal(t, core.ID(42), *ok.To)
	assert.Equal(t, "😀", ok.Content)

	cases := []struct {
		name, in, code string
	}{
		{"empty", ``, "invalid_json"},
		{"spaces", "  \n ", "invalid_json"},
		{"syntax", `{"to":}`, "invalid_json"},
		{"truncated", `{"to":"1"`, "invalid_json"},
		{"trailing value", `{"content":"a"} {}`, "invalid_json"},
		{"trailing garbage", `{"content":"a"}x`, "invalid_json"},
		{"not an object", `"text"`, "invalid_json"},
		{"invalid utf-8", "{\"content\":\"\xff\"}", "invalid_utf8"},
		{"lone surrogate", `{"content":"\ud800"}`, "invalid_utf8"},
		{"wrong type", `{"content":1}`, "invalid_field"},
		{"id as number", `{"to":42}`, "invalid_field"},
		{"id zero", `{"to":"0"}`, "invalid_field"},
		{"id list with a number", `{"Members":["1",2]}`, "invalid_field"},
		{"unknown field", `{"content":"a","extra":1}`, "unknown_field"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			var v body
			err := Decode([]byte(tc.in), &v)
			require.Error(t, err)
			e := core.AsError(err)
			assert.Equal(t, tc.code, e.Code, "%v", err)
			assert.Equal(t, core.KindInvalid, e.Kind)
		})
	}
}

func TestMaxBodyBytesHoldsTheLargestMessage(t *testing.T) {
	// 100,000 emoji, each escaped as a surrogate pair, plus the other fields.
	content := strings.Repeat(`\ud83d\ude00`, core.MaxMessageChars)
	body := `{"to":"18446744073709551615","client_msg_id":"` + strings.Repeat("k", core.MaxClientMsgID) + `","content":"` + content + `"}`
	assert.LessOrEqual(t, len(body), MaxBodyBytes)
	var v struct {
		To          *core.ID `json:"to"`
		Content     string   `json:"content"`
		ClientMsgID string   `json:"client_msg_id"`
	}
	require.NoError(t, Decode([]byte(body), &v))
	assert.NoError(t, core.ValidContent(v.Content))
}

func TestToken(t *testing.T) {
	cases := []struct{ header, query, want string }{
		{"Bearer abc", "", "abc"},
		{"bearer abc", "", "abc"},
		{"Bearer  abc ", "", "abc"},
		{"Basic abc", "", ""},
		{"Bearer", "", ""},
		{"", "qtok", "qtok"},
		{"Bearer hdr", "qtok", "hdr"},
		{"Basic x", "qtok", ""}, // an explicit header wins, even a wrong one
	}
	for _, tc := range cases {
		r := httptestRequest(tc.header, tc.query)
		assert.Equal(t, tc.want, Token(r), "header %q query %q", tc.header, tc.query)
	}
}

func httptestRequest(header, query string) *http.Request {
	target := "/v1/me"
	if query != "" {
		target += "?access_token=" + url.QueryEscape(query)
	}
	r := httptest.NewRequest("GET", target, nil)
	if header != "" {
		r.Header.Set("Authorization", header)
	}
	return r
}
