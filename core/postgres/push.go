package postgres

import (
	"cmp"
	"context"
	"slices"

	"github.com/chatgate/chatgate/core"
)

// The push outbox is shared by every store on the database, and each
// entry must reach one pusher at a time. PendingPushes therefore claims
// what it returns: in one statement it picks entries that are unclaimed,
// already this store's, or whose lease ran out (FOR UPDATE SKIP LOCKED,
// so two stores paging at once never pick the same row) and stamps them
// with this store's claimant id and now() + Options.PushLease. Other
// stores skip an entry while its lease holds. The pusher pages through
// the outbox every few seconds, which renews the leases of the entries it
// still holds (those waiting out a retry backoff included). DeletePush
// removes an entry for good; Close hands this store's claims back at once;
// a store that dies without closing keeps its claims only until they run
// out, and then another store's pusher takes them over. Delivery stays at
// least once (a lease may run out under a stalled pusher), which the
// Notification id lets receivers absorb.

// PendingPushes implements core.PushOutbox: up to limit entries with a key
// above after, oldest message first, that no other store holds; they are
// held by this store for Options.PushLease.
func (s *Store) PendingPushes(ctx context.Context, after string, limit int) ([]core.Push, error) {
	var am, au int64
	if after != "" {
		m, u, err := core.ParsePushKey(after)
		if err != nil {
			return nil, err
		}
		am, au = i64(m), i64(u)
	}
	if limit <= 0 {
		return nil, nil
	}
	type entry struct {
		msg core.Message
		uid int64
	}
	rows, err := s.pool.Query(ctx, `WITH c AS (
			SELECT message_id, user_id FROM push_outbox
			WHERE (message_id, user_id) > ($1, $2)
				AND (claimed_by IS NULL OR claimed_by = $3 OR claimed_until < now())
			ORDER BY message_id, user_id LIMIT $4
			FOR UPDATE SKIP LOCKED)
		UPDATE push_outbox p SET claimed_by = $3, claimed_until = now() + $5 * interval '1 millisecond'
		FROM c, messages m
		WHERE p.message_id = c.message_id AND p.user_id = c.user_id
			AND m.conversation_id = p.conversation_id AND m.id = p.message_id
		RETURNING p.user_id, `+msgCols, am, au, s.claimant, limit, s.opts.PushLease.Milliseconds())
	if err != nil {
		return nil, s.fail("claim pushes", err)
	}
	defer rows.Close()
	var es []entry
	for rows.Next() {
		var e entry
		if e.msg, err = scanMessage(rows, &e.uid); err != nil {
			return nil, s.fail("claim pushes", err)
		}
		es = append(es, e)
	}
	if err := rows.Err(); err != nil {
		return nil, s.fail("claim pushes", err)
	}
	slices.SortFunc(es, func(a, b entry) int {
		if a.msg.ID != b.msg.ID {
			return cmp.Compare(a.msg.ID, b.msg.ID)
		}
		return cmp.Compare(a.uid, b.uid)
	})
	out := make([]core.Push, len(es))
	for i := range es {
		e := &es[i]
		out[i] = core.Push{Key: core.PushKey(e.msg.ID, core.ID(e.uid)), UserID: core.ID(e.uid), Message: messageJSON(&e.msg)}
	}
	return out, nil
}

// DeletePush implements core.PushOutbox.
func (s *Store) DeletePush(ctx context.Context, key string) error {
	msg, uid, err := core.ParsePushKey(key)
	if err != nil {
		return err
	}
	_, err = s.pool.Exec(ctx, `DELETE FROM push_outbox WHERE message_id = $1 AND user_id = $2`, i64(msg), i64(uid))
	return s.fail("delete push", err)
}
