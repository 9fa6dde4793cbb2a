package postgres

import (
	"context"
	"encoding/json"
	"math"
	"strings"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/chatgate/chatgate/core"
)

// maxUnreadCount bounds the work of counting unread messages; clients show
// larger counts as "9999+".
const maxUnreadCount = 9999

// msgCols are the columns scanMessage reads, of messages aliased m.
const msgCols = `m.id, m.conversation_id, m.sender_id, m.recipient_id, m.group_id, m.content, m.created_at, m.client_msg_id, m.mentions`

// scanMessage scans extra destinations, then msgCols.
func scanMessage(row pgx.Row, extra ...any) (core.Message, error) {
	var (
		m                   core.Message
		id, from, to, group int64
		content             []byte
		created             time.Time
		mentions            []int64
	)
	dest := append(extra, &id, &m.ConversationID, &from, &to, &group, &content, &created, &m.ClientMsgID, &mentions)
	if err := row.Scan(dest...); err != nil {
		return core.Message{}, err
	}
	m.ID, m.From, m.To, m.GroupID = core.ID(id), core.ID(from), core.ID(to), core.ID(group)
	m.Content, m.CreatedAt = string(content), utc(created)
	if len(mentions) > 0 {
		m.Mentions = make([]core.ID, len(mentions))
		for i, u := range mentions {
			m.Mentions[i] = core.ID(u)
		}
	}
	return m, nil
}

// inboxCols are msgCols as Inbox's subquery names them.
var inboxCols = strings.ReplaceAll(msgCols, "m.", "")

func messageJSON(m *core.Message) json.RawMessage {
	return m.AppendJSON(make([]byte, 0, 200+len(m.Content)+len(m.ClientMsgID)))
}

// Inbox implements core.Messages. The server stops sending once the
// contents of the entries sent reach maxBytes (each entry's JSON is longer
// than its content, so that is never too early); the exact cut, on the
// JSON, is made here.
func (s *Store) Inbox(ctx context.Context, uid core.ID, after uint64, limit, maxBytes int) ([]core.InboxEntry, error) {
	if limit <= 0 || after >= math.MaxInt64 {
		return nil, nil
	}
	maxBytes = max(maxBytes, 1) // at least one entry, if there is one
	rows, err := s.pool.Query(ctx, `SELECT seq, `+inboxCols+` FROM (
			SELECT i.seq, `+msgCols+`, coalesce(sum(octet_length(m.content)) OVER (ORDER BY i.seq
				ROWS BETWEEN UNBOUNDED PRECEDING AND 1 PRECEDING), 0) AS before
			FROM inbox i JOIN messages m ON m.conversation_id = i.conversation_id AND m.id = i.message_id
			WHERE i.user_id = $1 AND i.seq > $2 ORDER BY i.seq LIMIT $3) e
		WHERE before < $4 ORDER BY seq`, i64(uid), int64(after), limit, maxBytes)
	if err != nil {
		return nil, s.fail("read inbox", err)
	}
	defer rows.Close()
	var out []core.InboxEntry
	size := 0
	for size < maxBytes && rows.Next() {
		var seq int64
		m, err := scanMessage(rows, &seq)
		if err != nil {
			return nil, s.fail("read inbox", err)
		}
		raw := messageJSON(&m)
		out = append(out, core.InboxEntry{Seq: uint64(seq), Message: raw})
		size += len(raw)
	}
	rows.Close()
	return out, s.fail("read inbox", rows.Err())
}

// InboxHead implements core.Messages.
func (s *Store) InboxHead(ctx context.Context, uid core.ID) (uint64, error) {
	var h int64
	err := s.pool.QueryRow(ctx, `SELECT coalesce((SELECT head FROM inbox_heads WHERE user_id = $1), 0)`, i64(uid)).Scan(&h)
	return uint64(h), s.fail("read inbox head", err)
}

// memberCheck queues the check that uid belongs to conversation p and
// reports it in *ok; a 1:1 is checked without the database.
func memberCheck(b *pgx.Batch, uid core.ID, p core.ParsedConv, ok *bool) {
	if p.Group == 0 {
		*ok = p.HasUser(uid)
		return
	}
	b.Queue(`SELECT EXISTS (SELECT 1 FROM group_members WHERE group_id = $1 AND user_id = $2)`, i64(p.Group), i64(uid)).
		QueryRow(func(r pgx.Row) error { return r.Scan(ok) })
}

// History implements core.Messages.
func (s *Store) History(ctx context.Context, uid core.ID, conv string, before, after core.ID, limit int) ([]json.RawMessage, error) {
	hi := int64(math.MaxInt64) // every stored id is below it
	if before != 0 && uint64(before) < math.MaxInt64 {
		hi = int64(before)
	}
	if uint64(after) >= math.MaxInt64 {
		limit = 0 // no stored id is above it
	}
	return s.page(ctx, uid, conv, limit, `SELECT `+msgCols+` FROM messages m WHERE m.conversation_id = $1 AND m.id > $2 AND m.id < $3
		ORDER BY m.id DESC LIMIT $4`, int64(after), hi)
}

// page reads messages of conv with query ($1 conv, then args, then the
// limit), in the batch that checks the caller belongs to conv.
func (s *Store) page(ctx context.Context, uid core.ID, conv string, limit int, query string, args ...any) ([]json.RawMessage, error) {
	p, ok := core.ParseConv(conv)
	if !ok {
		return nil, core.ErrConvNotFound
	}
	b := &pgx.Batch{}
	var member bool
	memberCheck(b, uid, p, &member)
	var out []json.RawMessage
	if limit > 0 {
		args = append(append([]any{conv}, args...), limit)
		b.Queue(query, args...).Query(func(rows pgx.Rows) error {
			for rows.Next() {
				m, err := scanMessage(rows)
				if err != nil {
					return err
				}
				out = append(out, messageJSON(&m))
			}
			return rows.Err()
		})
	}
	if b.Len() > 0 {
		if err := s.pool.SendBatch(ctx, b).Close(); err != nil {
			return nil, s.fail("read history", err)
		}
	}
	if !member {
		return nil, core.ErrConvNotFound
	}
	return out, nil
}

// Conversations implements core.Messages: the conversations in which the
// caller received a message (since joining, for a group), newest first,
// with the unread messages of others after its read marker.
func (s *Store) Conversations(ctx context.Context, uid core.ID, limit int) ([]core.Conversation, error) {
	if limit <= 0 {
		return nil, nil
	}
	rows, err := s.pool.Query(ctx, `SELECT uc.read_up_to, u.n, `+msgCols+`
		FROM (SELECT conversation_id, last_id, read_up_to FROM user_conversations c
			WHERE c.user_id = $1 AND c.last_id > 0
				AND (c.group_id = 0 OR EXISTS (SELECT 1 FROM group_members gm WHERE gm.group_id = c.group_id AND gm.user_id = $1))
			ORDER BY c.last_id DESC LIMIT $2) uc
		JOIN messages m ON m.conversation_id = uc.conversation_id AND m.id = uc.last_id
		CROSS JOIN LATERAL (SELECT count(*) AS n FROM (SELECT 1 FROM messages x
			WHERE x.conversation_id = uc.conversation_id AND x.id > uc.read_up_to AND x.sender_id <> $1
			LIMIT $3) y) u
		ORDER BY uc.last_id DESC`, i64(uid), limit, maxUnreadCount)
	if err != nil {
		return nil, s.fail("read conversations", err)
	}
	defer rows.Close()
	var out []core.Conversation
	for rows.Next() {
		var read, unread int64
		m, err := scanMessage(rows, &read, &unread)
		if err != nil {
			return nil, s.fail("read conversations", err)
		}
		c := core.Conversation{ID: m.ConversationID, LastMessage: messageJSON(&m), ReadUpTo: core.ID(read), Unread: int(unread)}
		c.SetLastID(m.ID)
		if m.GroupID != 0 {
			c.Kind, c.GroupID = "group", m.GroupID
		} else {
			p, _ := core.ParseConv(m.ConversationID)
			c.Kind, c.PeerID = "direct", p.Peer(uid)
		}
		out = append(out, c)
	}
	return out, s.fail("read conversations", rows.Err())
}

// MarkRead implements core.Messages.
func (s *Store) MarkRead(ctx context.Context, uid core.ID, conv string, msg core.ID) error {
	p, ok := core.ParseConv(conv)
	if !ok || (p.Group == 0 && !p.HasUser(uid)) {
		return core.ErrConvNotFound
	}
	var member, found bool
	err := s.pool.QueryRow(ctx, `WITH chk AS (
			SELECT ($4::bigint = 0 OR EXISTS (SELECT 1 FROM group_members WHERE group_id = $4 AND user_id = $1)) AS member,
				EXISTS (SELECT 1 FROM messages WHERE conversation_id = $2 AND id = $3) AS found),
		up AS (
			INSERT INTO user_conversations (user_id, conversation_id, group_id, last_id, read_up_to)
			SELECT $1, $2, $4, 0, $3 FROM chk WHERE member AND found
			ON CONFLICT (user_id, conversation_id) DO UPDATE SET read_up_to = EXCLUDED.read_up_to
				WHERE user_conversations.read_up_to < EXCLUDED.read_up_to)
		SELECT member, found FROM chk`, i64(uid), conv, i64(msg), i64(p.Group)).Scan(&member, &found)
	switch {
	case err != nil:
		return s.fail("mark read", err)
	case !member:
		return core.ErrConvNotFound
	case !found:
		return core.ErrMessageNotFound
	}
	return nil
}
