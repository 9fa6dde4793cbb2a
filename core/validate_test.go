package core

import (
	"strings"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

func codeOf(err error) string {
	if err == nil {
		return ""
	}
	return AsError(err).Code
}

func TestValidContent(t *testing.T) {
	cases := []struct {
		name, content, code string
	}{
		{"one char", "x", ""},
		{"max ascii", strings.Repeat("x", MaxMessageChars), ""},
		{"max two-byte", strings.Repeat("é", MaxMessageChars), ""},
		{"max four-byte", strings.Repeat("😀", MaxMessageChars), ""},
		{"bytes over the limit, code points under", strings.Repeat("😀", MaxMessageChars/2), ""},
		{"combining marks count as code points", strings.Repeat("e\u0301", MaxMessageChars/2), ""},
		{"empty", "", "content_empty"},
		{"over ascii", strings.Repeat("x", MaxMessageChars+1), "content_too_long"},
		{"over two-byte", strings.Repeat("é", MaxMessageChars+1), "content_too_long"},
		{"over four-byte", strings.Repeat("😀", MaxMessageChars+1), "content_too_long"},
		{"over with combining marks", strings.Repeat("e\u0301", MaxMessageChars/2) + "x", "content_too_long"},
		{"invalid byte", "ab\xffcd", "invalid_utf8"},
		{"truncated sequence", "\xe2\x82", "invalid_utf8"},
		{"encoded surrogate", "\xed\xa0\x80", "invalid_utf8"},
		{"overlong encoding", "\xc0\xaf", "invalid_utf8"},
		{"invalid and too long", strings.Repeat("x", MaxMessageChars+1) + "\xff", "invalid_utf8"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			err := ValidContent(tc.content)
			assert.Equal(t, tc.code, codeOf(err))
			if err != nil {
				assert.Equal(t, KindInvalid, AsError(err).Kind)
				assert.NotEmpty(t, AsError(err).Message)
			}
		})
	}
}

func TestValidClientMsgID(t *testing.T) {
	assert.NoError(t, ValidClientMsgID(""))
	assert.NoError(t, ValidClientMsgID(strings.Repeat("k", MaxClientMsgID)))
	assert.NoError(t, ValidClientMsgID("uuid-ünïcode-✓"))
	for _, bad := range []string{strings.Repeat("k", MaxClientMsgID+1), "a\nb", "\x00", "\xff"} {
		assert.Equal(t, "invalid_client_msg_id", codeOf(ValidClientMsgID(bad)), "%q", bad)
	}
}

func TestCleanNameAndUsername(t *testing.T) {
	s, err := CleanName("  Zoë  ", "display_name", MaxDisplayName)
	require.NoError(t, err)
	assert.Equal(t, "Zoë", s)
	_, err = CleanName(strings.Repeat("é", MaxDisplayName), "display_name", MaxDisplayName)
	assert.NoError(t, err, "the limit counts code points")
	for _, bad := range []string{"", "   ", strings.Repeat("é", MaxDisplayName+1), "a\u0007b", "a\nb"} {
		_, err := CleanName(bad, "display_name", MaxDisplayName)
		assert.Equal(t, "invalid_display_name", codeOf(err), "%q", bad)
	}
	_, err = CleanName("a\xffb", "name", 10)
	assert.Equal(t, "invalid_utf8", codeOf(err))

	for _, ok := range []string{"abc", "Alice_B.c-9", strings.Repeat("a", MaxUsername)} {
		assert.NoError(t, ValidUsername(ok), ok)
	}
	for _, bad := range []string{"ab", strings.Repeat("a", MaxUsername+1), "a b", "zoë", "a/b", "ａｂｃ"} {
		assert.Equal(t, "invalid_username", codeOf(ValidUsername(bad)), "%q", bad)
	}
}

func TestAsError(t *testing.T) {
	assert.Equal(t, ErrGroupFull, AsError(ErrGroupFull))
	wrapped := errorsJoin(ErrUserNotFound)
	assert.Equal(t, "user_not_found", AsError(wrapped).Code)
	other := AsError(assertError("disk on fire"))
	assert.Equal(t, KindInternal, other.Kind)
	assert.Equal(t, "internal_error", other.Code)
	assert.NotContains(t, other.Message, "disk", "internal details are not shown to clients")
}

type assertError string

func (e assertError) Error() string { return string(e) }

type wrapErr struct{ err error }

func (w wrapErr) Error() string { return "wrapped: " + w.err.Error() }
func (w wrapErr) Unwrap() error { return w.err }

func errorsJoin(err error) error { return wrapErr{err} }
