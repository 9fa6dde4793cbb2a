package buntdb

import (
	"context"
	"encoding/json"
	"fmt"
	"sort"
	"strconv"
	"strings"

	"github.com/tidwall/buntdb"

	"github.com/chatgate/chatgate/core"
)

// Append implements core.Messages.
func (s *Store) Append(ctx context.Context, req core.SendRequest) (core.SendResult, error) {
	var res core.SendResult
	err := s.write(ctx, len(req.Content), func(w *wtx) error {
		var ck string
		if req.ClientMsgID != "" {
			ck = kClientMsg(req.From, req.ClientMsgID)
		}
		if ck != "" && s.cmids.mayHave(ck) {
			if idv, ok := w.get(ck); ok {
				raw, _ := w.get("m:" + idv)
				var m core.Message
				if err := json.Unmarshal([]byte(raw), &m); err != nil {
					return fmt.Errorf("decode message %s: %w", idv, err)
				}
				if m.To != req.To || m.GroupID != req.GroupID || m.Content != req.Content {
					return core.ErrClientMsgIDReuse
				}
				res = core.SendResult{Message: m, Raw: json.RawMessage(raw), Replayed: true}
				return nil
			}
		}
		var recipients []core.ID
		var conv string
		if req.GroupID != 0 {
			g, ok, err := getJSON[groupRec](w.get, kGroup(req.GroupID))
			if err != nil {
				return err
			}
			if !ok || !fromRec(g).Has(req.From) {
				return core.ErrGroupNotFound
			}
			recipients, conv = g.Members, core.GroupConv(req.GroupID)
		} else {
			if !w.exists(kUser(req.To)) {
				return core.ErrUserNotFound
			}
			recipients, conv = []core.ID{req.From, req.To}, core.DirectConv(req.From, req.To)
			if req.To == req.From {
				recipients = recipients[:1]
			}
		}
		m := core.Message{
			ID: s.ids.Next(), ConversationID: conv, From: req.From, To: req.To, GroupID: req.GroupID,
			Content: req.Content, CreatedAt: req.CreatedAt, ClientMsgID: req.ClientMsgID,
		}
		raw := m.AppendJSON(make([]byte, 0, 200+len(m.Content)+len(m.ClientMsgID)))
		mid := pid(m.ID)
		w.set(kMessage(m.ID), string(raw))
		if ck != "" {
			w.set(ck, mid)
			s.cmids.add(ck)
		}
		w.set(kConvMsg(conv, m.ID), req.From.String())
		res = core.SendResult{Message: m, Raw: raw, Deliveries: make([]core.Delivery, 0, len(recipients))}
		for _, r := range recipients {
			seq := w.head(r) + 1
			w.setHead(r, seq)
			w.set(kInbox(r, seq), mid)
			// The key only lists the conversation; its newest message is
			// read from the conversation index, so the key is written once
			// and not on every message.
			if k := kUserConv(r, conv); !w.exists(k) {
				w.set(k, "")
			}
			if r != req.From && req.NeedsPush != nil && req.NeedsPush(r) {
				w.set(kPush(m.ID, r), "")
				res.Pushes++
			}
			res.Deliveries = append(res.Deliveries, core.Delivery{UserID: r, Seq: seq})
		}
		return nil
	})
	return res, err
}

// Inbox implements core.Messages.
func (s *Store) Inbox(ctx context.Context, uid core.ID, after uint64, limit, maxBytes int) ([]core.InboxEntry, error) {
	var out []core.InboxEntry
	err := s.view(func(tx *buntdb.Tx) error {
		p := "i:" + pid(uid) + ":"
		size := 0
		var ferr error
		err := tx.AscendGreaterOrEqual("", p+pad(after+1), func(k, v string) bool {
			if !strings.HasPrefix(k, p) {
				return false
			}
			raw, err := tx.Get("m:" + v)
			if err != nil {
				ferr = fmt.Errorf("inbox %s points to missing message %s", k, v)
				return false
			}
			seq, _ := strconv.ParseUint(k[len(p):], 10, 64)
			out = append(out, core.InboxEntry{Seq: seq, Message: json.RawMessage(raw)})
			size += len(raw)
			return len(out) < limit && size < maxBytes
		})
		if ferr != nil {
			return ferr
		}
		return err
	})
	return out, err
}

// InboxHead implements core.Messages.
func (s *Store) InboxHead(ctx context.Context, uid core.ID) (uint64, error) {
	var head uint64
	err := s.view(func(tx *buntdb.Tx) error {
		head = inboxHead(tx, uid)
		return nil
	})
	return head, err
}

// inboxHead returns the seq of uid's newest inbox key, or 0. Data files
// written before this rule also hold h:<uid> keys, which nothing reads.
func inboxHead(tx *buntdb.Tx, uid core.ID) uint64 {
	p := "i:" + pid(uid) + ":"
	var head uint64
	_ = tx.DescendLessOrEqual("", p+"~", func(k, _ string) bool {
		if strings.HasPrefix(k, p) {
			head, _ = strconv.ParseUint(k[len(p):], 10, 64)
		}
		return false
	})
	return head
}

// lastConvMsg returns the id of the newest message of conv, or 0.
func lastConvMsg(tx *buntdb.Tx, conv string) core.ID {
	p := "cm:" + conv + ":"
	var last core.ID
	_ = tx.DescendLessOrEqual("", p+"~", func(k, _ string) bool {
		if strings.HasPrefix(k, p) {
			last = idAfter(k, p)
		}
		return false
	})
	return last
}

// member reports whether uid belongs to conv; for a group it reads the
// group inside the same view.
func member(tx *buntdb.Tx, uid core.ID, conv string) (bool, error) {
	p, ok := core.ParseConv(conv)
	if !ok {
		return false, nil
	}
	if p.Group == 0 {
		return p.HasUser(uid), nil
	}
	g, ok, err := getJSON[groupRec](txGet(tx), kGroup(p.Group))
	if err != nil || !ok {
		return false, err
	}
	return fromRec(g).Has(uid), nil
}

// History implements core.Messages.
func (s *Store) History(ctx context.Context, uid core.ID, conv string, before, after core.ID, limit int) ([]json.RawMessage, error) {
	var out []json.RawMessage
	err := s.view(func(tx *buntdb.Tx) error {
		ok, err := member(tx, uid, conv)
		if err != nil {
			return err
		}
		if !ok {
			return core.ErrConvNotFound
		}
		p := "cm:" + conv + ":"
		hi := p + "~" // above every padded id
		if before != 0 {
			hi = kConvMsg(conv, before)
		}
		lo := p
		if after != 0 {
			lo = kConvMsg(conv, after)
		}
		// DescendRange visits keys in (lo, hi): both ends exclusive, as the
		// protocol's before/after are.
		var ferr error
		err = tx.DescendRange("", hi, lo, func(k, _ string) bool {
			if k == hi {
				return true
			}
			raw, err := tx.Get("m:" + k[len(p):])
			if err != nil {
				ferr = fmt.Errorf("conversation index %s points to a missing message", k)
				return false
			}
			out = append(out, json.RawMessage(raw))
			return len(out) < limit
		})
		if ferr != nil {
			return ferr
		}
		return err
	})
	return out, err
}

// Conversations implements core.Messages.
func (s *Store) Conversations(ctx context.Context, uid core.ID, limit int) ([]core.Conversation, error) {
	var out []core.Conversation
	err := s.view(func(tx *buntdb.Tx) error {
		p := "uc:" + pid(uid) + ":"
		if err := prefixScan(tx, p, func(k, _ string) bool {
			out = append(out, core.Conversation{ID: k[len(p):]})
			return true
		}); err != nil {
			return err
		}
		for i := range out {
			out[i].SetLastID(lastConvMsg(tx, out[i].ID))
		}
		sort.Slice(out, func(i, j int) bool { return out[i].LastID() > out[j].LastID() })
		if len(out) > limit {
			out = out[:limit]
		}
		for i := range out {
			c := &out[i]
			pc, _ := core.ParseConv(c.ID)
			if pc.Group != 0 {
				c.Kind, c.GroupID = "group", pc.Group
			} else {
				c.Kind, c.PeerID = "direct", pc.Peer(uid)
			}
			if raw, err := tx.Get(kMessage(c.LastID())); err == nil {
				c.LastMessage = json.RawMessage(raw)
			}
			var marker core.ID
			if r, err := tx.Get(kRead(uid, c.ID)); err == nil {
				v, _ := strconv.ParseUint(r, 10, 64)
				marker = core.ID(v)
			}
			c.ReadUpTo = marker
			me := uid.String()
			cp := "cm:" + c.ID + ":"
			if err := tx.AscendGreaterOrEqual("", kConvMsg(c.ID, marker+1), func(k, from string) bool {
				if !strings.HasPrefix(k, cp) {
					return false
				}
				if from != me {
					c.Unread++
				}
				return c.Unread < maxUnreadCount
			}); err != nil {
				return err
			}
		}
		return nil
	})
	return out, err
}

// MarkRead implements core.Messages.
func (s *Store) MarkRead(ctx context.Context, uid core.ID, conv string, msg core.ID) error {
	return s.write(ctx, 0, func(w *wtx) error {
		ok, err := member(w.tx, uid, conv)
		if err != nil {
			return err
		}
		if !ok {
			return core.ErrConvNotFound
		}
		if _, ok := w.get(kConvMsg(conv, msg)); !ok {
			return core.ErrMessageNotFound
		}
		if cur, ok := w.get(kRead(uid, conv)); ok {
			if v, _ := strconv.ParseUint(cur, 10, 64); core.ID(v) >= msg {
				return nil
			}
		}
		w.set(kRead(uid, conv), pid(msg))
		return nil
	})
}

// ---- push outbox ----

// PendingPushes implements core.PushOutbox, oldest message first.
func (s *Store) PendingPushes(ctx context.Context, after string, limit int) ([]core.Push, error) {
	var out []core.Push
	err := s.view(func(tx *buntdb.Tx) error {
		start := "po:"
		if after >= start {
			start = after + "\x00"
		}
		return tx.AscendGreaterOrEqual("", start, func(k, _ string) bool {
			if !strings.HasPrefix(k, "po:") {
				return false
			}
			parts := strings.Split(k, ":")
			mid, _ := strconv.ParseUint(parts[1], 10, 64)
			uid, _ := strconv.ParseUint(parts[2], 10, 64)
			raw, err := tx.Get(kMessage(core.ID(mid)))
			if err == nil {
				out = append(out, core.Push{Key: k, UserID: core.ID(uid), Message: json.RawMessage(raw)})
			}
			return len(out) < limit
		})
	})
	return out, err
}

// DeletePush implements core.PushOutbox.
func (s *Store) DeletePush(ctx context.Context, key string) error {
	if !strings.HasPrefix(key, "po:") {
		return fmt.Errorf("not a push key: %q", key)
	}
	return s.write(ctx, 0, func(w *wtx) error {
		w.del(key)
		return nil
	})
}
