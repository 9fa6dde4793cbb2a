package core

import (
	"strings"
)

// DirectConv is the conversation id of the 1:1 chat between a and b; it is
// the same whichever of the two asks.
func DirectConv(a, b ID) string {
	if a > b {
		a, b = b, a
	}
	return "d_" + a.String() + "_" + b.String()
}

// GroupConv is the conversation id of a group.
func GroupConv(g ID) string { return "g_" + g.String() }

// ParsedConv is a conversation id taken apart.
type ParsedConv struct {
	A, B  ID // a 1:1 conversation's two users, A < B (or A == B for notes to self)
	Group ID // a group conversation's group
}

// ParseConv takes a conversation id apart; ok is false for anything that is
// not exactly the form DirectConv or GroupConv produce.
func ParseConv(s string) (p ParsedConv, ok bool) {
	switch {
	case strings.HasPrefix(s, "g_"):
		g, err := ParseID(s[2:])
		if err != nil || GroupConv(g) != s {
			return p, false
		}
		return ParsedConv{Group: g}, true
	case strings.HasPrefix(s, "d_"):
		a, b, found := strings.Cut(s[2:], "_")
		if !found {
			return p, false
		}
		x, err1 := ParseID(a)
		y, err2 := ParseID(b)
		if err1 != nil || err2 != nil || DirectConv(x, y) != s {
			return p, false
		}
		return ParsedConv{A: x, B: y}, true
	}
	return p, false
}

// Peer returns the other user of a 1:1 conversation seen by uid.
func (p ParsedConv) Peer(uid ID) ID {
	if p.A == uid {
		return p.B
	}
	return p.A
}

// HasUser reports whether uid is one of a 1:1 conversation's users.
func (p ParsedConv) HasUser(uid ID) bool { return p.Group == 0 && (p.A == uid || p.B == uid) }
