package postgres

import (
	"context"
	"errors"
	"slices"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/chatgate/chatgate/core"
)

// SetFriend implements core.Social.
func (s *Store) SetFriend(ctx context.Context, from, to core.ID, on bool) (bool, error) {
	b := &pgx.Batch{}
	if on {
		b.Queue(`INSERT INTO friends (user_id, friend_id) SELECT $1, $2 WHERE EXISTS (SELECT 1 FROM users WHERE id = $2)
			ON CONFLICT DO NOTHING`, i64(from), i64(to))
	} else {
		b.Queue(`DELETE FROM friends WHERE (user_id, friend_id) IN (($1, $2), ($2, $1))
			AND EXISTS (SELECT 1 FROM users WHERE id = $2)`, i64(from), i64(to))
	}
	var exists, mutual bool
	b.Queue(`SELECT EXISTS (SELECT 1 FROM users WHERE id = $2),
			EXISTS (SELECT 1 FROM friends WHERE user_id = $1 AND friend_id = $2)
			AND EXISTS (SELECT 1 FROM friends WHERE user_id = $2 AND friend_id = $1)`,
		i64(from), i64(to)).QueryRow(func(r pgx.Row) error { return r.Scan(&exists, &mutual) })
	if err := s.pool.SendBatch(ctx, b).Close(); err != nil {
		return false, s.fail("set friend", err)
	}
	if !exists {
		return false, core.ErrUserNotFound
	}
	return mutual, nil
}

// FriendEdges implements core.Social.
func (s *Store) FriendEdges(ctx context.Context, uid core.ID) (mutual, incoming, outgoing []core.ID, err error) {
	rows, err := s.pool.Query(ctx, `SELECT coalesce(o.friend_id, i.user_id), o.friend_id IS NOT NULL, i.user_id IS NOT NULL
		FROM (SELECT friend_id FROM friends WHERE user_id = $1) o
		FULL JOIN (SELECT user_id FROM friends WHERE friend_id = $1) i ON i.user_id = o.friend_id
		ORDER BY 1`, i64(uid))
	if err != nil {
		return nil, nil, nil, s.fail("read friends", err)
	}
	defer rows.Close()
	for rows.Next() {
		var (
			id      int64
			out, in bool
		)
		if err := rows.Scan(&id, &out, &in); err != nil {
			return nil, nil, nil, s.fail("read friends", err)
		}
		switch {
		case out && in:
			mutual = append(mutual, core.ID(id))
		case in:
			incoming = append(incoming, core.ID(id))
		default:
			outgoing = append(outgoing, core.ID(id))
		}
	}
	return mutual, incoming, outgoing, s.fail("read friends", rows.Err())
}

// groupCols reads a group with its members in joining order.
const groupCols = `g.id, g.name, g.owner_id, g.created_at,
	array(SELECT m.user_id FROM group_members m WHERE m.group_id = g.id ORDER BY m.pos)`

func scanGroup(row pgx.Row) (core.Group, error) {
	var (
		g         core.Group
		id, owner int64
		created   time.Time
		members   []int64
	)
	if err := row.Scan(&id, &g.Name, &owner, &created, &members); err != nil {
		return core.Group{}, err
	}
	g.ID, g.OwnerID, g.CreatedAt = core.ID(id), core.ID(owner), utc(created)
	if len(members) > 0 {
		g.Members = make([]core.ID, len(members))
		for i, m := range members {
			g.Members[i] = core.ID(m)
		}
	}
	return g, nil
}

// CreateGroup implements core.Social: ErrGroupFull above
// core.MaxGroupMembers, ErrUserNotFound if a member does not exist.
func (s *Store) CreateGroup(ctx context.Context, g core.Group) error {
	var members []core.ID
	for _, m := range g.Members {
		if !slices.Contains(members, m) {
			members = append(members, m)
		}
	}
	if len(members) > core.MaxGroupMembers {
		return core.ErrGroupFull
	}
	pos := make([]int64, len(members))
	for i := range pos {
		pos[i] = int64(i)
	}
	err := s.tx(ctx, func(tx pgx.Tx) error {
		var n int
		if err := tx.QueryRow(ctx, `SELECT count(*) FROM users WHERE id = ANY($1)`, ids64(members)).Scan(&n); err != nil {
			return err
		}
		if n != len(members) {
			return core.ErrUserNotFound
		}
		b := &pgx.Batch{}
		b.Queue(`INSERT INTO groups (id, name, owner_id, created_at) VALUES ($1, $2, $3, $4)`,
			i64(g.ID), g.Name, i64(g.OwnerID), g.CreatedAt.Time)
		b.Queue(`INSERT INTO group_members (group_id, user_id, pos) SELECT $1, * FROM unnest($2::bigint[], $3::bigint[])`,
			i64(g.ID), ids64(members), pos)
		return tx.SendBatch(ctx, b).Close()
	})
	return s.fail("create group", err)
}

// Group implements core.Social.
func (s *Store) Group(ctx context.Context, id core.ID) (core.Group, error) {
	g, err := scanGroup(s.pool.QueryRow(ctx, `SELECT `+groupCols+` FROM groups g WHERE g.id = $1`, i64(id)))
	if errors.Is(err, pgx.ErrNoRows) {
		return core.Group{}, core.ErrGroupNotFound
	}
	return g, s.fail("read group", err)
}

// GroupsOf implements core.Social.
func (s *Store) GroupsOf(ctx context.Context, uid core.ID) ([]core.Group, error) {
	rows, err := s.pool.Query(ctx, `SELECT `+groupCols+` FROM group_members gm JOIN groups g ON g.id = gm.group_id
		WHERE gm.user_id = $1 ORDER BY g.id`, i64(uid))
	if err != nil {
		return nil, s.fail("read groups", err)
	}
	defer rows.Close()
	var out []core.Group
	for rows.Next() {
		g, err := scanGroup(rows)
		if err != nil {
			return nil, s.fail("read groups", err)
		}
		out = append(out, g)
	}
	return out, s.fail("read groups", rows.Err())
}

// changeGroup runs fn on group gid, locked against other membership
// changes and against appends to it, if by is a member.
func (s *Store) changeGroup(ctx context.Context, op string, gid, by core.ID, fn func(tx pgx.Tx, g *core.Group) error) (core.Group, error) {
	var out core.Group
	err := s.tx(ctx, func(tx pgx.Tx) error {
		// Lock, then read: a statement that waited for the lock would
		// still see the members as they were before the wait.
		b := &pgx.Batch{}
		b.Queue(`SELECT 1 FROM groups WHERE id = $1 FOR UPDATE`, i64(gid))
		var g core.Group
		b.Queue(`SELECT `+groupCols+` FROM groups g WHERE g.id = $1`, i64(gid)).QueryRow(func(r pgx.Row) (err error) {
			g, err = scanGroup(r)
			return err
		})
		err := tx.SendBatch(ctx, b).Close()
		if errors.Is(err, pgx.ErrNoRows) || (err == nil && !g.Has(by)) {
			return core.ErrGroupNotFound
		}
		if err != nil {
			return err
		}
		if err := fn(tx, &g); err != nil {
			return err
		}
		out = g
		return nil
	})
	if err != nil {
		return core.Group{}, s.fail(op, err)
	}
	return out, nil
}

// AddMember implements core.Social. The new member's read marker starts
// at the group's newest message, so what was said before is not unread;
// the group is listed among its conversations from the next message on.
func (s *Store) AddMember(ctx context.Context, gid, by, uid core.ID) (core.Group, error) {
	return s.changeGroup(ctx, "add member", gid, by, func(tx pgx.Tx, g *core.Group) error {
		var exists bool
		if err := tx.QueryRow(ctx, `SELECT EXISTS (SELECT 1 FROM users WHERE id = $1)`, i64(uid)).Scan(&exists); err != nil {
			return err
		}
		switch {
		case !exists:
			return core.ErrUserNotFound
		case g.Has(uid):
			return core.ErrAlreadyMember
		case len(g.Members) >= core.MaxGroupMembers:
			return core.ErrGroupFull
		}
		conv := core.GroupConv(gid)
		b := &pgx.Batch{}
		b.Queue(`INSERT INTO group_members (group_id, user_id, pos)
			SELECT $1, $2, coalesce(max(pos), -1) + 1 FROM group_members WHERE group_id = $1`, i64(gid), i64(uid))
		// Appends to the group wait for this transaction (they share-lock
		// the group row), so the newest message cannot change under it.
		b.Queue(`INSERT INTO user_conversations (user_id, conversation_id, group_id, last_id, read_up_to)
			VALUES ($1, $2, $3, 0, coalesce((SELECT max(id) FROM messages WHERE conversation_id = $2), 0))
			ON CONFLICT (user_id, conversation_id) DO UPDATE SET last_id = 0, read_up_to = EXCLUDED.read_up_to`,
			i64(uid), conv, i64(gid))
		if err := tx.SendBatch(ctx, b).Close(); err != nil {
			return err
		}
		g.Members = append(g.Members, uid)
		return nil
	})
}

// RemoveMember implements core.Social. The former member no longer lists
// the group; when the owner leaves, the longest-standing member owns it.
func (s *Store) RemoveMember(ctx context.Context, gid, by, uid core.ID) (core.Group, error) {
	return s.changeGroup(ctx, "remove member", gid, by, func(tx pgx.Tx, g *core.Group) error {
		if !g.Has(uid) {
			return core.ErrNotMember
		}
		if uid != by && by != g.OwnerID {
			return core.ErrForbidden
		}
		g.Members = slices.DeleteFunc(g.Members, func(m core.ID) bool { return m == uid })
		if uid == g.OwnerID && len(g.Members) > 0 {
			g.OwnerID = g.Members[0] // in joining order
		}
		b := &pgx.Batch{}
		b.Queue(`DELETE FROM group_members WHERE group_id = $1 AND user_id = $2`, i64(gid), i64(uid))
		b.Queue(`DELETE FROM user_conversations WHERE user_id = $1 AND conversation_id = $2`, i64(uid), core.GroupConv(gid))
		b.Queue(`UPDATE groups SET owner_id = $2 WHERE id = $1 AND owner_id <> $2`, i64(gid), i64(g.OwnerID))
		return tx.SendBatch(ctx, b).Close()
	})
}

// SavePresence implements core.Social.
func (s *Store) SavePresence(ctx context.Context, uid core.ID, p core.Presence) error {
	var last *time.Time
	if !p.LastActiveAt.IsZero() {
		last = &p.LastActiveAt.Time
	}
	_, err := s.pool.Exec(ctx, `INSERT INTO presence (user_id, status, last_active_at) VALUES ($1, $2, $3)
		ON CONFLICT (user_id) DO UPDATE SET status = EXCLUDED.status, last_active_at = EXCLUDED.last_active_at`,
		i64(uid), p.Status, last)
	return s.fail("save presence", err)
}

// Presences implements core.Social; users never seen are offline with no
// last_active_at.
func (s *Store) Presences(ctx context.Context, ids []core.ID) (map[core.ID]core.Presence, error) {
	out := make(map[core.ID]core.Presence, len(ids))
	for _, id := range ids {
		out[id] = core.Presence{Status: core.Offline}
	}
	if len(ids) == 0 {
		return out, nil
	}
	rows, err := s.pool.Query(ctx, `SELECT user_id, status, last_active_at FROM presence WHERE user_id = ANY($1)`, ids64(ids))
	if err != nil {
		return nil, s.fail("read presence", err)
	}
	defer rows.Close()
	for rows.Next() {
		var (
			id     int64
			status string
			last   *time.Time
		)
		if err := rows.Scan(&id, &status, &last); err != nil {
			return nil, s.fail("read presence", err)
		}
		p := core.Presence{Status: status}
		if last != nil {
			p.LastActiveAt = utc(*last)
		}
		out[core.ID(id)] = p
	}
	return out, s.fail("read presence", rows.Err())
}
