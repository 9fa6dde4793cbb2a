package core_test

import (
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/chatgate/chatgate/core"
)

func TestTerms(t *testing.T) {
	for _, c := range []struct {
		in   string
		want []string
	}{
		{"Hello, World! hello", []string{"hello", "world"}},
		{"채팅을 시작합니다", []string{"채팅", "팅을", "시작", "작합", "합니", "니다"}},
		{"東京に行きます", []string{"東京", "京に", "に行", "行き", "きま", "ます"}},
		{"我 是", []string{"我", "是"}},
		{"채팅app 2024年", []string{"채팅", "app", "2024", "年"}},
		{"ＡＢＣ ｄｅｆ", []string{"abc", "def"}},
		{"ÉCOLE école", []string{"école"}},
		{"...", nil},
		{"カレーライス", []string{"カレ", "レー", "ーラ", "ライ", "イス"}},
		{"สวัสดี", []string{"สว", "วั", "ัส", "สด", "ดี"}},
	} {
		require.Equal(t, c.want, core.Terms(c.in), c.in)
	}
	long := ""
	for range 100 {
		long += "é"
	}
	ts := core.Terms(long)
	require.Len(t, ts, 1)
	require.Equal(t, 64, len(ts[0]))
	require.Equal(t, ts, core.Terms(long+"é"), "a query's long word is cut as the message's was")
}

// Every substring of two or more characters of CJK text finds it: the
// query's terms are a subset of the text's.
func TestTermsSubstring(t *testing.T) {
	for _, text := range []string{"채팅을 시작합니다", "東京に行きます", "今日はいい天気ですね", "我们明天见", "ผมชอบกินข้าว"} {
		all := map[string]bool{}
		for _, x := range core.Terms(text) {
			all[x] = true
		}
		rs := []rune(text)
		for i := range rs {
			for j := i + 2; j <= len(rs); j++ {
				if len(core.QueryTerms(string(rs[i:j]))) == 0 || !hasBigram(core.QueryTerms(string(rs[i:j]))) {
					continue // only spaces and lone characters: see QueryTerms
				}
				for _, q := range core.QueryTerms(string(rs[i:j])) {
					require.True(t, all[q], "%q in %q: term %q", string(rs[i:j]), text, q)
				}
			}
		}
	}
}

func TestMentionNames(t *testing.T) {
	require.Equal(t, []string{"bob", "alice_1"}, core.MentionNames("hi @Bob and @alice_1!"))
	require.Equal(t, []string{"bob.", "bob"}, core.MentionNames("thanks @bob."))
	require.Empty(t, core.MentionNames("mail me: me@example.com, @x, @"))
	require.Empty(t, core.MentionNames("@보고"))
}

func hasBigram(ts []string) bool {
	for _, t := range ts {
		if len([]rune(t)) > 1 {
			return true
		}
	}
	return false
}

func TestQueryTerms(t *testing.T) {
	require.Equal(t, []string{"채팅", "팅을"}, core.QueryTerms("채팅을 시"))
	require.Equal(t, []string{"을", "시"}, core.QueryTerms("을 시"))
	require.Equal(t, []string{"채팅"}, core.QueryTerms("채팅"))
}
