package core

import (
	"context"
	"encoding/json"
	"slices"
	"strings"
	"unicode"
	"unicode/utf8"
)

// Search terms. Both stores index the same terms, made here, so a query
// finds the same messages whichever store holds them:
//
//   - Korean, Japanese and Chinese text has no spaces between words and
//     particles stick to words (채팅을 is 채팅 + 을), so a run of those
//     scripts is indexed as its overlapping pairs of characters (bigrams;
//     a lone character is its own term). A query made of such text then
//     matches any substring of two or more characters of a message. Thai,
//     Lao, Khmer and Myanmar, also written without spaces between words,
//     are indexed the same way.
//   - Every other run of letters and digits is a word.
//
// Terms are case-folded (and full-width Latin is folded to ASCII), so a
// search is case-insensitive. A message matches a query when it holds every
// term of the query: the usual meaning of a multi-word search, and for CJK
// text the bigrams of the query, which is what a substring search needs.
const (
	// MinQueryChars is the shortest query: one character would match
	// nearly every message of a CJK history.
	MinQueryChars = 2
	// MaxQueryChars bounds the work of one query.
	MaxQueryChars = 256
	// maxTermBytes cuts long words (URLs, hashes); the query's words are
	// cut the same way, so they still match.
	maxTermBytes = 64
)

// cjk reports whether r belongs to a script written without spaces
// between words (CJK, and the Brahmic scripts of South-East Asia).
func cjk(r rune) bool {
	return unicode.In(r, unicode.Han, unicode.Hangul, unicode.Hiragana, unicode.Katakana,
		unicode.Thai, unicode.Lao, unicode.Khmer, unicode.Myanmar) ||
		r == 'ー' || r == '々' || r == '〆'
}

// fold lowercases r and maps full-width ASCII (Ａ, ｂ, １) to ASCII.
func fold(r rune) rune {
	if r >= 0xFF01 && r <= 0xFF5E {
		r -= 0xFF01 - 0x21
	}
	return unicode.ToLower(r)
}

// Terms returns the distinct search terms of text, in first-seen order.
func Terms(text string) []string {
	var (
		out  []string
		seen = map[string]struct{}{}
		word []byte
		prev rune // the previous CJK character of the current run, or 0
		lone bool // prev has not yet been part of a bigram
	)
	add := func(t string) {
		if _, ok := seen[t]; !ok {
			seen[t] = struct{}{}
			out = append(out, t)
		}
	}
	endWord := func() {
		if len(word) > 0 {
			w := word
			if len(w) > maxTermBytes {
				w = w[:maxTermBytes]
				for !utf8.Valid(w) {
					w = w[:len(w)-1]
				}
			}
			add(string(w))
			word = word[:0]
		}
	}
	endRun := func() {
		if prev != 0 && lone {
			add(string(prev))
		}
		prev, lone = 0, false
	}
	for _, r := range text {
		r = fold(r)
		switch {
		case cjk(r):
			endWord()
			if prev != 0 {
				add(string([]rune{prev, r}))
				lone = false
			} else {
				lone = true
			}
			prev = r
		case unicode.IsLetter(r) || unicode.IsDigit(r) || unicode.Is(unicode.Mn, r):
			endRun()
			word = utf8.AppendRune(word, r)
		default:
			endWord()
			endRun()
		}
	}
	endWord()
	endRun()
	return out
}

// QueryTerms returns the terms a query must match. A lone CJK character
// of the query (a run cut by the query's edge or a space: the 시 of
// "채팅을 시") is indexed only where it stands alone in a message, so it is
// dropped when the query has other terms; a query of only such characters
// keeps them.
func QueryTerms(q string) []string {
	ts := Terms(q)
	out := ts[:0:0]
	for _, t := range ts {
		if r, n := utf8.DecodeRuneInString(t); n == len(t) && cjk(r) {
			continue
		}
		out = append(out, t)
	}
	if len(out) == 0 {
		return ts
	}
	return out
}

// SearchQuery asks a store for messages holding every one of Terms (no
// terms match nothing), in the caller's conversations (only Conv, if set),
// with id < Before (0: no bound), newest first.
type SearchQuery struct {
	Terms  []string
	Conv   string
	Before ID
	Limit  int
}

// Found is one search result.
type Found struct {
	ConversationID string          `json:"conversation_id"`
	Message        json.RawMessage `json:"message"`
}

// Finder is the random-access side of history: search, mentions and the
// oldest-first read a jump to a message needs.
type Finder interface {
	// Search returns up to q.Limit messages newest first. The caller must
	// belong to q.Conv (ErrConvNotFound otherwise); without q.Conv only the
	// conversations the caller belongs to now are searched.
	Search(ctx context.Context, uid ID, q SearchQuery) ([]Found, error)
	// Mentions returns up to limit messages whose Mentions hold uid, with
	// id < before (0: no bound), newest first, from conversations uid
	// still belongs to.
	Mentions(ctx context.Context, uid ID, before ID, limit int) ([]json.RawMessage, error)
	// HistoryAfter returns up to limit messages of conv with id > after,
	// oldest first (ErrConvNotFound if the caller does not belong to it).
	HistoryAfter(ctx context.Context, uid ID, conv string, after ID, limit int) ([]json.RawMessage, error)
}

// IndexWaiter is a store whose search index trails its commits (the
// embedded store indexes after the fsync). WaitIndexed returns once every
// message up to id upTo is searchable (0: every message committed before
// the call), or ctx ends.
type IndexWaiter interface {
	WaitIndexed(ctx context.Context, upTo ID) error
}

// MentionNames returns the usernames written as @name in content,
// case-folded and distinct. A name may end a sentence ("thanks @bob."), so
// trailing dots and dashes are dropped from each as well as kept: both
// spellings are returned and only a real username will match.
func MentionNames(content string) []string {
	var out []string
	for i := 0; i < len(content); i++ {
		if content[i] != '@' {
			continue
		}
		// "a@b" is an e-mail address, not a mention.
		if i > 0 {
			if r, _ := utf8.DecodeLastRuneInString(content[:i]); unicode.IsLetter(r) || unicode.IsDigit(r) {
				continue
			}
		}
		j := i + 1
		for j < len(content) && usernameByte(content[j]) {
			j++
		}
		name := strings.ToLower(content[i+1 : j])
		for _, n := range []string{name, strings.TrimRight(name, ".-")} {
			if len(n) >= MinUsername && len(n) <= MaxUsername && !slices.Contains(out, n) {
				out = append(out, n)
			}
		}
		i = j - 1
	}
	return out
}

func usernameByte(c byte) bool {
	return c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || c == '_' || c == '.' || c == '-'
}
