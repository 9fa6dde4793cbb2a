package postgres

import (
	"cmp"
	"context"
	"fmt"
	"slices"
	"strconv"
	"strings"

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

// pushKey is the opaque outbox key: it has the embedded store's form, and
// sorts as (message id, user id) does.
func pushKey(msg, uid int64) string {
	return fmt.Sprintf("po:%020d:%020d", msg, uid)
}

func parsePushKey(k string) (msg, uid int64, err error) {
	rest, ok := strings.CutPrefix(k, "po:")
	a, b, ok2 := strings.Cut(rest, ":")
	if !ok || !ok2 || len(a) != 20 || len(b) != 20 {
		return 0, 0, fmt.Errorf("not a push key: %q", k)
	}
	x, err1 := strconv.ParseUint(a, 10, 64)
	y, err2 := strconv.ParseUint(b, 10, 64)
	if err1 != nil || err2 != nil {
		return 0, 0, fmt.Errorf("not a push key: %q", k)
	}
	return int64(x), int64(y), nil
}

// PendingPushes implements core.PushOutbox: up to limit entries with a key
// above after, oldest message first, that no other store holds; they are
// held by this store for Options.PushLease.
func (s *Store) PendingPushes(ctx context.Context, after string, limit int) ([]core.Push, error) {
	var am, au int64
	if after != "" {
		var err error
		if am, au, err = parsePushKey(after); err != nil {
			return nil, err
		}
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
		out[i] = core.Push{Key: pushKey(i64(e.msg.ID), e.uid), UserID: core.ID(e.uid), Message: messageJSON(&e.msg)}
	}
	return out, nil
}

// DeletePush implements core.PushOutbox.
func (s *Store) DeletePush(ctx context.Context, key string) error {
	msg, uid, err := parsePushKey(key)
	if err != nil {
		return err
	}
	_, err = s.pool.Exec(ctx, `DELETE FROM push_outbox WHERE message_id = $1 AND user_id = $2`, msg, uid)
	return s.fail("delete push", err)
}
