package buntdb

import (
	"context"
	"encoding/json"
	"fmt"
	"strconv"
	"strings"

	"github.com/tidwall/buntdb"

	"github.com/chatgate/chatgate/core"
)

// Releases before the history moved to core/pebble kept it in this file,
// under these keys (numbers zero-padded to 20 digits):
//
//	m:<id>                → message JSON
//	cm:<conv>:<id>        → sender id          (conversation index)
//	i:<uid>:<seq>         → message id         (inbox)
//	c:<uid>:<cmid>        → message id         (client_msg_id)
//	uc:<uid>:<conv>       → ""                 (a user's conversations)
//	r:<uid>:<conv>        → message id         (read marker)
//	po:<id>:<uid>         → ""                 (push outbox)
//	h:<uid>               → seq                (inbox head, written by the oldest releases, never read)
//
// The embedded store's migration reads them through LegacyHistory and then
// removes them with DeleteLegacy.
var legacyPrefixes = []string{"m:", "cm:", "i:", "c:", "uc:", "r:", "po:", "h:"}

// LegacyKind says what a legacy history key held.
type LegacyKind int

// The kinds of legacy history keys.
const (
	LegacyMessage      LegacyKind = iota + 1 // Message
	LegacyConvIndex                          // nothing to carry over: messages are found by conversation now
	LegacyInbox                              // UserID, Seq, Conv, MessageID
	LegacyClientMsgID                        // UserID, ClientMsgID, Conv, MessageID
	LegacyConversation                       // UserID, Conv
	LegacyReadMarker                         // UserID, Conv, MessageID
	LegacyPush                               // MessageID, UserID, Conv
	LegacyHead                               // nothing to carry over
)

// LegacyEntry is one legacy history key, decoded. Conv is the conversation
// id of the message an inbox, client_msg_id or push entry points to.
type LegacyEntry struct {
	Key         string
	Kind        LegacyKind
	UserID      core.ID
	Seq         uint64
	MessageID   core.ID
	ClientMsgID string
	Conv        string
	Message     core.Message
}

func legacyKind(k string) (LegacyKind, string) {
	for i, p := range legacyPrefixes {
		if strings.HasPrefix(k, p) {
			return LegacyKind(i + 1), k[len(p):]
		}
	}
	return 0, ""
}

// HasLegacyHistory reports whether the file still holds history keys.
func (s *Store) HasLegacyHistory() (bool, error) {
	found := false
	err := s.view(func(tx *buntdb.Tx) error {
		for _, p := range legacyPrefixes {
			if err := prefixScan(tx, p, func(string, string) bool { found = true; return false }); err != nil || found {
				return err
			}
		}
		return nil
	})
	return found, err
}

// LegacyHistory returns up to n legacy history entries with keys after
// after, in key order, and the key to continue after ("" once done).
// Entries of a message whose record is missing are returned with MessageID
// set and Conv empty.
func (s *Store) LegacyHistory(after string, n int) ([]LegacyEntry, string, error) {
	var out []LegacyEntry
	next := ""
	err := s.view(func(tx *buntdb.Tx) error {
		var ferr error
		visit := func(k, v string) bool {
			if k == after {
				return true
			}
			kind, rest := legacyKind(k)
			if kind == 0 {
				return true
			}
			e, err := decodeLegacy(tx, k, kind, rest, v)
			if err != nil {
				ferr = err
				return false
			}
			out = append(out, e)
			if len(out) >= n {
				next = k
				return false
			}
			return true
		}
		if err := tx.AscendGreaterOrEqual("", after, visit); err != nil {
			return err
		}
		return ferr
	})
	return out, next, err
}

func decodeLegacy(tx *buntdb.Tx, k string, kind LegacyKind, rest, v string) (LegacyEntry, error) {
	e := LegacyEntry{Key: k, Kind: kind}
	bad := func() (LegacyEntry, error) { return e, fmt.Errorf("legacy key %q: unexpected form", k) }
	num := func(s string) (uint64, bool) {
		n, err := strconv.ParseUint(s, 10, 64)
		return n, err == nil
	}
	// user:rest, where rest is a number or a free string.
	split := func() (core.ID, string, bool) {
		a, b, ok := strings.Cut(rest, ":")
		u, ok2 := num(a)
		return core.ID(u), b, ok && ok2
	}
	convOfMsg := func() error {
		raw, err := tx.Get(kMessage(e.MessageID))
		if err != nil {
			return nil // a dangling entry: nothing to point to
		}
		var m struct {
			Conv string `json:"conversation_id"`
		}
		if err := json.Unmarshal([]byte(raw), &m); err != nil {
			return fmt.Errorf("legacy message %d: %w", e.MessageID, err)
		}
		e.Conv = m.Conv
		return nil
	}
	switch kind {
	case LegacyMessage:
		if err := json.Unmarshal([]byte(v), &e.Message); err != nil {
			return e, fmt.Errorf("legacy message %s: %w", k, err)
		}
		e.MessageID = e.Message.ID
	case LegacyConvIndex, LegacyHead:
	case LegacyInbox:
		u, s, ok := split()
		seq, ok2 := num(s)
		id, ok3 := num(v)
		if !ok || !ok2 || !ok3 {
			return bad()
		}
		e.UserID, e.Seq, e.MessageID = u, seq, core.ID(id)
		return e, convOfMsg()
	case LegacyClientMsgID:
		u, cmid, ok := split()
		id, ok2 := num(v)
		if !ok || !ok2 {
			return bad()
		}
		e.UserID, e.ClientMsgID, e.MessageID = u, cmid, core.ID(id)
		return e, convOfMsg()
	case LegacyConversation:
		u, conv, ok := split()
		if !ok {
			return bad()
		}
		e.UserID, e.Conv = u, conv
	case LegacyReadMarker:
		u, conv, ok := split()
		id, ok2 := num(v)
		if !ok || !ok2 {
			return bad()
		}
		e.UserID, e.Conv, e.MessageID = u, conv, core.ID(id)
	case LegacyPush:
		m, s, ok := strings.Cut(rest, ":")
		id, ok2 := num(m)
		u, ok3 := num(s)
		if !ok || !ok2 || !ok3 {
			return bad()
		}
		e.MessageID, e.UserID = core.ID(id), core.ID(u)
		return e, convOfMsg()
	}
	return e, nil
}

// DeleteLegacy removes up to n legacy history keys in one durable write
// and reports how many it removed (0 once none is left).
func (s *Store) DeleteLegacy(ctx context.Context, n int) (int, error) {
	var keys []string
	err := s.view(func(tx *buntdb.Tx) error {
		for _, p := range legacyPrefixes {
			if err := prefixScan(tx, p, func(k, _ string) bool {
				keys = append(keys, k)
				return len(keys) < n
			}); err != nil {
				return err
			}
			if len(keys) >= n {
				break
			}
		}
		return nil
	})
	if err != nil || len(keys) == 0 {
		return 0, err
	}
	err = s.write(ctx, 0, func(w *wtx) error {
		for _, k := range keys {
			w.del(k)
		}
		return nil
	})
	return len(keys), err
}

func kMessage(id core.ID) string { return keyN("m:", uint64(id)) }
