package pebble

import (
	"bytes"
	"context"
	"encoding/binary"
	"encoding/json"
	"errors"
	"fmt"
	"slices"

	"github.com/cockroachdb/pebble/v2"

	"github.com/chatgate/chatgate/core"
)

// maxUnreadCount bounds the work of counting unread messages; clients show
// larger counts as "9999+".
const maxUnreadCount = 9999

// Append implements core.Messages.
func (s *Store) Append(ctx context.Context, req core.SendRequest) (core.SendResult, error) {
	var ck []byte
	if req.ClientMsgID != "" {
		ck = cmidKey(req.From, req.ClientMsgID)
	}
	c, recipients, err := s.recipients(ctx, req)
	if err != nil {
		if ck == nil || errors.Is(err, core.ErrUnavailable) {
			return core.SendResult{}, err
		}
		// A retry is answered from its client_msg_id before anything else
		// is checked, as the stored send may predate a change (the sender
		// has left the group since, say).
		var res core.SendResult
		werr := s.write(ctx, 0, func(w *wtx) error {
			ref, found, rerr := w.get(ck)
			if rerr != nil || !found {
				return errors.Join(rerr, err)
			}
			res, rerr = s.replay(w, req, ref)
			return rerr
		})
		if werr != nil {
			return core.SendResult{}, werr
		}
		res.Raw = res.Message.AppendJSON(nil)
		return res, nil
	}
	// Asked before taking the lock: it reads presence, which has locks of
	// its own.
	push := make([]bool, len(recipients))
	for i, r := range recipients {
		push[i] = r != req.From && req.NeedsPush != nil && req.NeedsPush(r)
	}
	var res core.SendResult
	err = s.write(ctx, len(req.Content), func(w *wtx) error {
		if ck != nil {
			ref, found, err := w.get(ck)
			if err != nil {
				return fmt.Errorf("read client_msg_id: %w", err)
			}
			if found {
				res, err = s.replay(w, req, ref)
				return err
			}
		}
		m := core.Message{
			ID: s.ids.Next(), ConversationID: c.String(), From: req.From, To: req.To, GroupID: req.GroupID,
			Content: req.Content, CreatedAt: req.CreatedAt, ClientMsgID: req.ClientMsgID, Mentions: req.Mentions,
		}
		ref := msgRef(c, m.ID)
		w.set(msgKey(c, m.ID), encodeRecord(make([]byte, 0, 32+len(m.Content)+len(m.ClientMsgID)), &m))
		// Indexed for search after the commit (search.go).
		w.put(queueKey(m.ID, c), nil)
		for _, u := range m.Mentions {
			w.put(mentionKey(u, m.ID), c.bytes())
		}
		if ck != nil {
			w.set(ck, ref)
		}
		res = core.SendResult{Message: m, Deliveries: make([]core.Delivery, 0, len(recipients))}
		for i, r := range recipients {
			seq, err := w.deliver(r, c, ref)
			if err != nil {
				return err
			}
			if push[i] {
				k := pushKey(m.ID, r)
				w.set(k, c.bytes())
				w.pushes = append(w.pushes, k)
				res.Pushes++
			}
			res.Deliveries = append(res.Deliveries, core.Delivery{UserID: r, Seq: seq})
		}
		w.newest = m.ID
		res.Raw = m.AppendJSON(make([]byte, 0, 200+len(m.Content)+len(m.ClientMsgID)))
		w.raw = res.Raw
		return nil
	})
	if err != nil {
		return core.SendResult{}, err
	}
	if res.Raw == nil {
		res.Raw = res.Message.AppendJSON(make([]byte, 0, 200+len(res.Message.Content)+len(res.Message.ClientMsgID)))
	}
	return res, nil
}

// recipients checks the send against the directory and returns its
// conversation and who receives it (1:1: sender and recipient; group: every
// member once).
func (s *Store) recipients(ctx context.Context, req core.SendRequest) (conv, []core.ID, error) {
	if req.GroupID != 0 {
		g, err := s.dir.Group(ctx, req.GroupID)
		if errors.Is(err, core.ErrGroupNotFound) || (err == nil && !g.Has(req.From)) {
			return conv{}, nil, core.ErrGroupNotFound
		}
		if err != nil {
			return conv{}, nil, fmt.Errorf("read group %d: %w", req.GroupID, err)
		}
		return groupConv(req.GroupID), g.Members, nil
	}
	if ok, err := s.dir.UserExists(ctx, req.To); err != nil || !ok {
		if err == nil {
			err = core.ErrUserNotFound
		}
		return conv{}, nil, err
	}
	if req.To == req.From {
		return directConv(req.From, req.To), []core.ID{req.From}, nil
	}
	return directConv(req.From, req.To), []core.ID{req.From, req.To}, nil
}

// replay answers a send whose client_msg_id is already stored: the same
// message if the request is the same, ErrClientMsgIDReuse otherwise.
func (s *Store) replay(w *wtx, req core.SendRequest, ref []byte) (core.SendResult, error) {
	c, id, err := decodeRef(ref)
	if err != nil {
		return core.SendResult{}, err
	}
	v, ok, err := w.get(msgKey(c, id))
	if err != nil {
		return core.SendResult{}, err
	}
	if !ok {
		return core.SendResult{}, fmt.Errorf("client_msg_id %q points to missing message %d", req.ClientMsgID, id)
	}
	m, err := decodeRecord(c, id, v)
	if err != nil {
		return core.SendResult{}, err
	}
	if m.To != req.To || m.GroupID != req.GroupID || m.Content != req.Content {
		return core.SendResult{}, core.ErrClientMsgIDReuse
	}
	// The first send may still be waiting for its fsync; this answer must
	// not come before it is durable.
	w.durable = true
	return core.SendResult{Message: m, Replayed: true}, nil
}

// storedHead is the seq of uid's newest applied inbox key, or 0.
func (s *Store) storedHead(uid core.ID) (uint64, error) {
	p := userPrefix(kindInbox, uid)
	it, err := s.db.NewIter(&pebble.IterOptions{LowerBound: p, UpperBound: prefixEnd(p)})
	if err != nil {
		return 0, err
	}
	var h uint64
	if it.Last() {
		h = binary.BigEndian.Uint64(it.Key()[9:])
	}
	return h, errors.Join(it.Error(), it.Close())
}

// Inbox implements core.Messages. It shows only durable entries.
func (s *Store) Inbox(ctx context.Context, uid core.ID, after uint64, limit, maxBytes int) ([]core.InboxEntry, error) {
	if err := s.enter(); err != nil {
		return nil, err
	}
	defer s.leave()
	if out, ok := s.recent.inbox(uid, after, limit, maxBytes); ok {
		return out, nil
	}
	// The iterator first, the durable limit after: a batch the iterator
	// sees was applied, so its entries were pending before it was made,
	// and are still pending now unless they have become durable. Read the
	// other way round, a batch applied in between would show entries not
	// yet on disk (and a crash could give their seqs to other messages).
	it, err := s.db.NewIter(&pebble.IterOptions{LowerBound: inboxKey(uid, after+1), UpperBound: prefixEnd(userPrefix(kindInbox, uid))})
	if err != nil {
		return nil, err
	}
	defer it.Close()
	lim := s.durableLimit(uid)
	if lim <= after {
		return nil, nil
	}
	msgs, err := s.db.NewIter(&pebble.IterOptions{})
	if err != nil {
		return nil, err
	}
	defer msgs.Close()
	var out []core.InboxEntry
	size := 0
	for ok := it.First(); ok && len(out) < limit && size < maxBytes; ok = it.Next() {
		seq := binary.BigEndian.Uint64(it.Key()[9:])
		if seq > lim {
			break
		}
		ref, err := it.ValueAndErr()
		if err != nil {
			return nil, err
		}
		c, id, err := decodeRef(ref)
		if err != nil {
			return nil, fmt.Errorf("inbox %d of user %d: %w", seq, uid, err)
		}
		raw, err := readJSON(msgs, c, id)
		if err != nil {
			return nil, fmt.Errorf("inbox %d of user %d: %w", seq, uid, err)
		}
		out = append(out, core.InboxEntry{Seq: seq, Message: raw})
		size += len(raw)
	}
	return out, it.Error()
}

// readJSON reads message (c, id) through it and encodes it for the wire.
func readJSON(it *pebble.Iterator, c conv, id core.ID) (json.RawMessage, error) {
	k := msgKey(c, id)
	if !it.SeekGE(k) || !slices.Equal(it.Key(), k) {
		if err := it.Error(); err != nil {
			return nil, err
		}
		return nil, fmt.Errorf("missing message %d", id)
	}
	v, err := it.ValueAndErr()
	if err != nil {
		return nil, err
	}
	m, err := decodeRecord(c, id, v)
	if err != nil {
		return nil, err
	}
	return m.AppendJSON(make([]byte, 0, 200+len(m.Content)+len(m.ClientMsgID))), nil
}

// InboxHead implements core.Messages: the newest durable seq.
func (s *Store) InboxHead(ctx context.Context, uid core.ID) (uint64, error) {
	if err := s.enter(); err != nil {
		return 0, err
	}
	defer s.leave()
	if h, ok := s.recent.head(uid); ok {
		return h, nil
	}
	h, err := s.storedHead(uid)
	if err != nil {
		return 0, err
	}
	return min(h, s.durableLimit(uid)), nil
}

// member reports whether uid belongs to the conversation.
func (s *Store) member(ctx context.Context, uid core.ID, p core.ParsedConv) (bool, error) {
	if p.Group == 0 {
		return p.HasUser(uid), nil
	}
	g, err := s.dir.Group(ctx, p.Group)
	if errors.Is(err, core.ErrGroupNotFound) {
		return false, nil
	}
	if err != nil {
		return false, err
	}
	return g.Has(uid), nil
}

// memberConv decodes a conversation id the caller belongs to;
// ErrConvNotFound for a malformed id or one the caller is not in.
func (s *Store) memberConv(ctx context.Context, uid core.ID, convID string) (conv, error) {
	c, p, ok := convOf(convID)
	if !ok {
		return c, core.ErrConvNotFound
	}
	if ok, err := s.member(ctx, uid, p); err != nil || !ok {
		if err == nil {
			err = core.ErrConvNotFound
		}
		return c, err
	}
	return c, nil
}

// History implements core.Messages.
func (s *Store) History(ctx context.Context, uid core.ID, convID string, before, after core.ID, limit int) ([]json.RawMessage, error) {
	return s.page(ctx, uid, convID, before, after, limit, false)
}

// page reads up to limit messages of a conversation the caller belongs to,
// with after < id < before (0: unbounded), newest first or oldest first.
func (s *Store) page(ctx context.Context, uid core.ID, convID string, before, after core.ID, limit int, oldestFirst bool) ([]json.RawMessage, error) {
	if err := s.enter(); err != nil {
		return nil, err
	}
	defer s.leave()
	c, err := s.memberConv(ctx, uid, convID)
	if err != nil {
		return nil, err
	}
	// Both ends are exclusive, as the protocol's before and after are.
	lo, hi := msgKey(c, after+1), prefixEnd(msgPrefix(c))
	if after == 0 {
		lo = msgPrefix(c)
	}
	if before != 0 {
		hi = msgKey(c, before)
	}
	it, err := s.db.NewIter(&pebble.IterOptions{LowerBound: lo, UpperBound: hi})
	if err != nil {
		return nil, err
	}
	defer it.Close()
	first, next := it.Last, it.Prev
	if oldestFirst {
		first, next = it.First, it.Next
	}
	var out []json.RawMessage
	for ok := first(); ok && len(out) < limit; ok = next() {
		raw, err := entryJSON(it, c)
		if err != nil {
			return nil, err
		}
		out = append(out, raw)
	}
	return out, it.Error()
}

// entryJSON encodes the message under a message iterator.
func entryJSON(it *pebble.Iterator, c conv) (json.RawMessage, error) {
	k := it.Key()
	id := core.ID(binary.BigEndian.Uint64(k[len(k)-8:]))
	v, err := it.ValueAndErr()
	if err != nil {
		return nil, err
	}
	m, err := decodeRecord(c, id, v)
	if err != nil {
		return nil, err
	}
	return m.AppendJSON(make([]byte, 0, 200+len(m.Content)+len(m.ClientMsgID))), nil
}

// Conversations implements core.Messages.
func (s *Store) Conversations(ctx context.Context, uid core.ID, limit int) ([]core.Conversation, error) {
	if err := s.enter(); err != nil {
		return nil, err
	}
	defer s.leave()
	convs, err := s.convsOf(ctx, uid)
	if err != nil {
		return nil, err
	}
	msgs, err := s.db.NewIter(&pebble.IterOptions{})
	if err != nil {
		return nil, err
	}
	defer msgs.Close()
	out := make([]core.Conversation, 0, len(convs))
	byID := make(map[string]conv, len(convs))
	for _, c := range convs {
		cv := core.Conversation{ID: c.String()}
		pre := msgPrefix(c)
		if msgs.SeekLT(prefixEnd(pre)) && slices.Equal(msgs.Key()[:len(pre)], pre) {
			k := msgs.Key()
			cv.SetLastID(core.ID(binary.BigEndian.Uint64(k[len(k)-8:])))
		}
		byID[cv.ID] = c
		out = append(out, cv)
	}
	slices.SortFunc(out, func(a, b core.Conversation) int {
		switch {
		case a.LastID() > b.LastID():
			return -1
		case a.LastID() < b.LastID():
			return 1
		}
		return 0
	})
	if len(out) > limit {
		out = out[:limit]
	}
	for i := range out {
		cv := &out[i]
		c := byID[cv.ID]
		if g := c.group(); g != 0 {
			cv.Kind, cv.GroupID = "group", g
		} else {
			lo, hi := c.users()
			cv.Kind, cv.PeerID = "direct", lo
			if lo == uid {
				cv.PeerID = hi
			}
		}
		if cv.LastID() != 0 {
			raw, err := readJSON(msgs, c, cv.LastID())
			if err != nil {
				return nil, err
			}
			cv.LastMessage = raw
		}
		marker, err := s.marker(uid, c)
		if err != nil {
			return nil, err
		}
		cv.ReadUpTo = marker
		if cv.Unread, err = s.unread(uid, c, marker); err != nil {
			return nil, err
		}
	}
	return out, nil
}

func (s *Store) marker(uid core.ID, c conv) (core.ID, error) {
	v, ok, err := s.get(readKey(uid, c))
	if err != nil || !ok || len(v) != 8 {
		return 0, err
	}
	return core.ID(binary.BigEndian.Uint64(v)), nil
}

// unread counts the messages of others after marker, up to maxUnreadCount.
func (s *Store) unread(uid core.ID, c conv, marker core.ID) (int, error) {
	it, err := s.db.NewIter(&pebble.IterOptions{LowerBound: msgKey(c, marker+1), UpperBound: prefixEnd(msgPrefix(c))})
	if err != nil {
		return 0, err
	}
	defer it.Close()
	n := 0
	for ok := it.First(); ok && n < maxUnreadCount; ok = it.Next() {
		v, err := it.ValueAndErr()
		if err != nil {
			return 0, err
		}
		from, err := recordFrom(v)
		if err != nil {
			return 0, err
		}
		if from != uid {
			n++
		}
	}
	return n, it.Error()
}

// MarkRead implements core.Messages.
func (s *Store) MarkRead(ctx context.Context, uid core.ID, convID string, msg core.ID) error {
	c, err := s.memberConv(ctx, uid, convID)
	if err != nil {
		return err
	}
	if err := s.read(func() error {
		_, ok, err := s.get(msgKey(c, msg))
		if err == nil && !ok {
			err = core.ErrMessageNotFound
		}
		return err
	}); err != nil {
		return err
	}
	return s.write(ctx, 0, func(w *wtx) error {
		v, ok, err := w.get(readKey(uid, c))
		if err != nil {
			return err
		}
		if ok && len(v) == 8 && core.ID(binary.BigEndian.Uint64(v)) >= msg {
			return nil
		}
		w.set(readKey(uid, c), appendU64(nil, uint64(msg)))
		return nil
	})
}

// JoinedGroup starts a new member's read marker at the group's newest
// message, so its unread count starts at joining.
func (s *Store) JoinedGroup(ctx context.Context, uid, gid core.ID) error {
	c := groupConv(gid)
	return s.write(ctx, 0, func(w *wtx) error {
		last, err := s.lastMessage(c)
		if err != nil || last == 0 {
			return err
		}
		w.set(readKey(uid, c), appendU64(nil, uint64(last)))
		return nil
	})
}

// LeftGroup removes a former member's conversation listing and read marker.
func (s *Store) LeftGroup(ctx context.Context, uid, gid core.ID) error {
	c := groupConv(gid)
	return s.write(ctx, 0, func(w *wtx) error {
		w.forgetConv(uid, c)
		w.del(readKey(uid, c))
		return nil
	})
}

// lastMessage is the id of the conversation's newest message, or 0.
func (s *Store) lastMessage(c conv) (core.ID, error) {
	pre := msgPrefix(c)
	it, err := s.db.NewIter(&pebble.IterOptions{LowerBound: pre, UpperBound: prefixEnd(pre)})
	if err != nil {
		return 0, err
	}
	var last core.ID
	if it.Last() {
		k := it.Key()
		last = core.ID(binary.BigEndian.Uint64(k[len(k)-8:]))
	}
	return last, errors.Join(it.Error(), it.Close())
}

// PendingPushes implements core.PushOutbox, oldest message first.
func (s *Store) PendingPushes(ctx context.Context, after string, limit int) ([]core.Push, error) {
	if err := s.enter(); err != nil {
		return nil, err
	}
	defer s.leave()
	lo := []byte{kindPush}
	var high []byte
	if after != "" {
		id, uid, err := core.ParsePushKey(after)
		if err != nil {
			return nil, err
		}
		lo = append(pushKey(id, uid), 0)
	} else {
		s.pushMu.Lock()
		if s.pushLow != nil {
			lo = s.pushLow
		}
		high = s.pushHigh
		s.pushMu.Unlock()
	}
	it, err := s.db.NewIter(&pebble.IterOptions{LowerBound: lo, UpperBound: []byte{kindPush + 1}})
	if err != nil {
		return nil, err
	}
	defer it.Close()
	if after == "" {
		// Every key below the first entry found (or, with none, every key
		// written before this scan) has been deleted.
		low := high
		if it.First() {
			low = slices.Clone(it.Key())
		}
		if low != nil {
			s.pushMu.Lock()
			if bytes.Compare(low, s.pushLow) > 0 {
				s.pushLow = low
			}
			s.pushMu.Unlock()
		}
	}
	msgs, err := s.db.NewIter(&pebble.IterOptions{})
	if err != nil {
		return nil, err
	}
	defer msgs.Close()
	var out []core.Push
	for ok := it.First(); ok && len(out) < limit; ok = it.Next() {
		k := it.Key()
		id, uid := core.ID(binary.BigEndian.Uint64(k[1:9])), core.ID(binary.BigEndian.Uint64(k[9:17]))
		v, err := it.ValueAndErr()
		if err != nil {
			return nil, err
		}
		c, _, err := decodeConv(v)
		if err != nil {
			return nil, fmt.Errorf("push %d for %d: %w", id, uid, err)
		}
		raw, err := readJSON(msgs, c, id)
		if err != nil {
			return nil, fmt.Errorf("push %d for %d: %w", id, uid, err)
		}
		out = append(out, core.Push{Key: core.PushKey(id, uid), UserID: uid, Message: raw})
	}
	return out, it.Error()
}

// DeletePush implements core.PushOutbox.
func (s *Store) DeletePush(ctx context.Context, key string) error {
	id, uid, err := core.ParsePushKey(key)
	if err != nil {
		return err
	}
	return s.write(ctx, 0, func(w *wtx) error {
		// Written once by Append (an import commits each key once too),
		// and the outbox churns with every offline recipient: a single
		// delete leaves no tombstone behind once it meets its set.
		k := pushKey(id, uid)
		if _, ok, err := w.get(k); err != nil || !ok {
			return err // delivered already: deleting again would break the single-set rule
		}
		w.delOnce(k)
		return nil
	})
}
