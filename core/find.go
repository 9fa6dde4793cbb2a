package core

import (
	"context"
	"encoding/json"
	"errors"
	"slices"
	"strings"
	"time"
	"unicode/utf8"
)

// Search pages: smaller than history pages, as each result names its
// conversation and a person reads them one by one.
const (
	DefaultSearchLimit = 20
	MaxSearchLimit     = 100
	// indexWait bounds how long a search waits for the index to take in
	// the messages committed before it (read-your-writes: a message one
	// just sent is found). Past it the search answers from what is indexed.
	indexWait = 2 * time.Second
)

// Search finds messages holding every term of q in the caller's
// conversations (or only conv), newest first, with id < before.
func (s *Service) Search(ctx context.Context, se Session, q, conv string, before ID, limit int) ([]Found, bool, error) {
	if !utf8.ValidString(q) {
		return nil, false, invalid("invalid_query", "q must be valid UTF-8")
	}
	q = strings.TrimSpace(q)
	switch n := utf8.RuneCountInString(q); {
	case n < MinQueryChars:
		return nil, false, invalid("query_too_short", "q must hold at least %d characters", MinQueryChars)
	case n > MaxQueryChars:
		return nil, false, invalid("query_too_long", "q must hold at most %d characters", MaxQueryChars)
	}
	if conv != "" {
		if _, ok := ParseConv(conv); !ok {
			return nil, false, ErrConvNotFound
		}
	}
	if wait := s.limits.searchUser.take(se.UserID.String()); wait > 0 {
		return nil, false, s.refuse("search", wait)
	}
	limit = clampLimit(limit, DefaultSearchLimit, MaxSearchLimit)
	terms := QueryTerms(q)
	if len(terms) == 0 {
		// Punctuation only: it matches nothing, and that is no error; the
		// store still refuses a conversation the caller is not in.
		if conv != "" {
			if _, err := s.store.Search(ctx, se.UserID, SearchQuery{Conv: conv}); err != nil {
				return nil, false, err
			}
		}
		return []Found{}, false, nil
	}
	if err := s.waitIndexed(ctx, se.UserID); err != nil {
		return nil, false, err
	}
	found, err := s.store.Search(ctx, se.UserID, SearchQuery{Terms: terms, Conv: conv, Before: before, Limit: limit + 1})
	if err != nil {
		return nil, false, err
	}
	more := false
	if len(found) > limit {
		found, more = found[:limit], true
	}
	size := 0
	for i, f := range found {
		if size += len(f.Message); size > MaxSyncBytes && i > 0 {
			found, more = found[:i], true
			break
		}
	}
	if found == nil {
		found = []Found{}
	}
	return found, more, nil
}

// waitIndexed makes a search read its caller's writes: it waits (at most
// indexWait) until the index holds the newest message of the caller's inbox
// — every message the caller sent or received, each of which went through
// the inbox. A caller whose newest message is indexed already, however busy
// the node, does not wait.
func (s *Service) waitIndexed(ctx context.Context, uid ID) error {
	w, ok := s.store.(IndexWaiter)
	if !ok {
		return nil
	}
	head, err := s.store.InboxHead(ctx, uid)
	if err != nil || head == 0 {
		return err
	}
	es, err := s.store.Inbox(ctx, uid, head-1, 1, MaxSyncBytes)
	if err != nil || len(es) == 0 {
		return err
	}
	newest := messageID(es[0].Message)
	if newest == 0 {
		return nil
	}
	wctx, cancel := context.WithTimeout(ctx, indexWait)
	defer cancel()
	if err := w.WaitIndexed(wctx, newest); err != nil && ctx.Err() != nil {
		return ctx.Err()
	}
	return nil
}

// Mentions lists the messages that mention the caller, newest first.
func (s *Service) Mentions(ctx context.Context, se Session, before ID, limit int) ([]json.RawMessage, bool, error) {
	limit = clampLimit(limit, DefaultPageLimit, MaxPageLimit)
	msgs, err := s.store.Mentions(ctx, se.UserID, before, limit+1)
	if err != nil {
		return nil, false, err
	}
	msgs, more := capPage(msgs, limit)
	return msgs, more, nil
}

// capPage cuts a newest-first page at limit messages and at MaxSyncBytes
// (at least one message stays): 200 of the longest messages would be
// 240 MB to build and hold for a client that may never read it.
func capPage(msgs []json.RawMessage, limit int) ([]json.RawMessage, bool) {
	more := false
	if len(msgs) > limit {
		msgs, more = msgs[:limit], true
	}
	size := 0
	for i, m := range msgs {
		if size += len(m); size > MaxSyncBytes && i > 0 {
			msgs, more = msgs[:i], true
			break
		}
	}
	if msgs == nil {
		msgs = []json.RawMessage{}
	}
	return msgs, more
}

// Around is a page of history centred on one message: the jump to a
// search result or a mention.
type Around struct {
	Messages []json.RawMessage `json:"messages"`  // newest first
	HasMore  bool              `json:"has_more"`  // older messages remain
	HasNewer bool              `json:"has_newer"` // newer messages remain
}

// HistoryAround returns message around of conv with the messages just
// before and after it, about limit in all; ErrMessageNotFound if around is
// not a message of conv.
func (s *Service) HistoryAround(ctx context.Context, se Session, conv string, around ID, limit int) (Around, error) {
	if _, ok := ParseConv(conv); !ok {
		return Around{}, ErrConvNotFound
	}
	limit = clampLimit(limit, DefaultPageLimit, MaxPageLimit)
	nOlder := limit/2 + 1 // around itself and the older half
	nNewer := limit - nOlder
	older, err := s.store.History(ctx, se.UserID, conv, around+1, 0, nOlder+1)
	if err != nil {
		return Around{}, err
	}
	if len(older) == 0 || messageID(older[0]) != around {
		return Around{}, ErrMessageNotFound
	}
	var a Around
	if len(older) > nOlder {
		older, a.HasMore = older[:nOlder], true
	}
	var newer []json.RawMessage
	if nNewer > 0 {
		if newer, err = s.store.HistoryAfter(ctx, se.UserID, conv, around, nNewer+1); err != nil {
			return Around{}, err
		}
		if len(newer) > nNewer {
			newer, a.HasNewer = newer[:nNewer], true
		}
	} else if probe, err := s.store.HistoryAfter(ctx, se.UserID, conv, around, 1); err != nil {
		return Around{}, err
	} else {
		a.HasNewer = len(probe) > 0
	}
	// Cut to the byte cap from the far ends, keeping around itself.
	size := len(older[0])
	keepOld, keepNew := 1, 0
	for keepOld < len(older) || keepNew < len(newer) {
		grew := false
		if keepNew < len(newer) && size+len(newer[keepNew]) <= MaxSyncBytes {
			size += len(newer[keepNew])
			keepNew++
			grew = true
		}
		if keepOld < len(older) && size+len(older[keepOld]) <= MaxSyncBytes {
			size += len(older[keepOld])
			keepOld++
			grew = true
		}
		if !grew {
			break
		}
	}
	if keepOld < len(older) {
		older, a.HasMore = older[:keepOld], true
	}
	if keepNew < len(newer) {
		newer, a.HasNewer = newer[:keepNew], true
	}
	slices.Reverse(newer)
	a.Messages = append(newer, older...)
	return a, nil
}

// messageID reads the id of an encoded message (0 if it has none).
func messageID(raw json.RawMessage) ID {
	var m struct {
		ID ID `json:"id"`
	}
	if json.Unmarshal(raw, &m) != nil {
		return 0
	}
	return m.ID
}

// mentions resolves the @names of a send to the conversation's members.
// A failure to read them is not the send's failure: the store checks the
// recipient itself, and a message without mentions is still a message.
func (s *Service) mentions(ctx context.Context, req *SendRequest) {
	names := MentionNames(req.Content)
	if len(names) == 0 {
		return
	}
	// The sender is never mentioned: "@me" would list one's own messages
	// among one's mentions.
	var candidates []ID
	if req.GroupID != 0 {
		g, err := s.store.Group(ctx, req.GroupID)
		if err != nil {
			if !errors.Is(err, ErrGroupNotFound) {
				s.log.Warn("read group for mentions", "group", req.GroupID, "err", err)
			}
			return
		}
		candidates = g.Members
	} else {
		candidates = []ID{req.To}
	}
	users, err := s.store.UsersByID(ctx, candidates)
	if err != nil {
		if !errors.Is(err, ErrUserNotFound) {
			s.log.Warn("read members for mentions", "err", err)
		}
		return
	}
	for _, id := range candidates {
		if u, ok := users[id]; ok && id != req.From && slices.Contains(names, strings.ToLower(u.Username)) && !slices.Contains(req.Mentions, id) {
			req.Mentions = append(req.Mentions, id)
		}
	}
}
