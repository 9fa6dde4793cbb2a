package postgres

import (
	"context"
	"errors"
	"strings"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"

	"github.com/chatgate/chatgate/core"
)

// foldName is the case-folded form of a name under which it is unique
// (usernames) or found by prefix (both names), folded here rather than by
// the database so that it does not depend on the database's locale.
func foldName(s string) string { return strings.ToLower(s) }

// likePrefix is a LIKE pattern matching strings that start with p.
func likePrefix(p string) string {
	r := strings.NewReplacer(`\`, `\\`, `%`, `\%`, `_`, `\_`)
	return r.Replace(p) + "%"
}

// CreateUser implements core.Users: the user, its username, its first
// device and its empty inbox head, in one transaction.
func (s *Store) CreateUser(ctx context.Context, u core.UserRecord, d core.Device, tokenHash []byte) error {
	b := &pgx.Batch{}
	b.Queue(`INSERT INTO usernames (username_key, user_id) VALUES ($1, $2)`, foldName(u.Username), i64(u.ID))
	b.Queue(`INSERT INTO users (id, username, display_name, display_key, password_hash, created_at) VALUES ($1, $2, $3, $4, $5, $6)`,
		i64(u.ID), u.Username, u.DisplayName, foldName(u.DisplayName), nonNil(u.PasswordHash), u.CreatedAt.Time)
	b.Queue(`INSERT INTO devices (user_id, id, token_hash) VALUES ($1, $2, $3)`, i64(u.ID), i64(d.ID), tokenHash)
	b.Queue(`INSERT INTO device_tokens (token_hash, user_id, device_id, name, created_at) VALUES ($1, $2, $3, $4, $5)`,
		tokenHash, i64(u.ID), i64(d.ID), d.Name, d.CreatedAt.Time)
	b.Queue(`INSERT INTO inbox_heads (user_id, head, last_id) VALUES ($1, 0, 0)`, i64(u.ID))
	// A batch runs as one implicit transaction: all or nothing.
	err := s.pool.SendBatch(ctx, b).Close()
	if isUnique(err, "usernames_pkey") {
		return core.ErrUsernameTaken
	}
	return s.fail("create user", err)
}

func nonNil(b []byte) []byte {
	if b == nil {
		return []byte{}
	}
	return b
}

const userCols = `u.id, u.username, u.display_name, u.created_at`

func scanUser(row pgx.Row) (core.User, error) {
	var (
		id      int64
		u       core.User
		created time.Time
	)
	err := row.Scan(&id, &u.Username, &u.DisplayName, &created)
	u.ID, u.CreatedAt = core.ID(id), utc(created)
	return u, err
}

// UserByID implements core.Users.
func (s *Store) UserByID(ctx context.Context, id core.ID) (core.User, error) {
	u, err := scanUser(s.pool.QueryRow(ctx, `SELECT `+userCols+` FROM users u WHERE u.id = $1`, i64(id)))
	if errors.Is(err, pgx.ErrNoRows) {
		return core.User{}, core.ErrUserNotFound
	}
	return u, s.fail("read user", err)
}

// UsersByID implements core.Users; unknown ids are left out.
func (s *Store) UsersByID(ctx context.Context, ids []core.ID) (map[core.ID]core.User, error) {
	out := make(map[core.ID]core.User, len(ids))
	if len(ids) == 0 {
		return out, nil
	}
	rows, err := s.pool.Query(ctx, `SELECT `+userCols+` FROM users u WHERE u.id = ANY($1)`, ids64(ids))
	if err != nil {
		return nil, s.fail("read users", err)
	}
	defer rows.Close()
	for rows.Next() {
		u, err := scanUser(rows)
		if err != nil {
			return nil, s.fail("read users", err)
		}
		out[u.ID] = u
	}
	return out, s.fail("read users", rows.Err())
}

// UserByName implements core.Users; the name matches in any case.
func (s *Store) UserByName(ctx context.Context, username string) (core.UserRecord, error) {
	var (
		rec     core.UserRecord
		id      int64
		created time.Time
	)
	err := s.pool.QueryRow(ctx, `SELECT u.id, u.username, u.display_name, u.created_at, u.password_hash
		FROM usernames n JOIN users u ON u.id = n.user_id WHERE n.username_key = $1`, foldName(username)).
		Scan(&id, &rec.Username, &rec.DisplayName, &created, &rec.PasswordHash)
	if errors.Is(err, pgx.ErrNoRows) {
		return core.UserRecord{}, core.ErrUserNotFound
	}
	rec.ID, rec.CreatedAt = core.ID(id), utc(created)
	return rec, s.fail("read user by name", err)
}

// SearchUsers implements core.Users: users whose username or display name
// starts with prefix, in any case; each user once.
func (s *Store) SearchUsers(ctx context.Context, prefix string, limit int) ([]core.User, error) {
	if limit <= 0 {
		return nil, nil
	}
	rows, err := s.pool.Query(ctx, `SELECT `+userCols+` FROM users u WHERE u.id IN (
			(SELECT user_id FROM usernames WHERE username_key LIKE $1 ORDER BY username_key LIMIT $2)
			UNION
			(SELECT id FROM users WHERE display_key LIKE $1 ORDER BY display_key LIMIT $2))
		ORDER BY u.username LIMIT $2`, likePrefix(foldName(prefix)), limit)
	if err != nil {
		return nil, s.fail("search users", err)
	}
	defer rows.Close()
	var out []core.User
	for rows.Next() {
		u, err := scanUser(rows)
		if err != nil {
			return nil, s.fail("search users", err)
		}
		out = append(out, u)
	}
	return out, s.fail("search users", rows.Err())
}

// UpdateDisplayName implements core.Users.
func (s *Store) UpdateDisplayName(ctx context.Context, id core.ID, name string) (core.User, error) {
	u, err := scanUser(s.pool.QueryRow(ctx, `UPDATE users u SET display_name = $2, display_key = $3 WHERE u.id = $1
		RETURNING `+userCols, i64(id), name, foldName(name)))
	if errors.Is(err, pgx.ErrNoRows) {
		return core.User{}, core.ErrUserNotFound
	}
	return u, s.fail("update display name", err)
}

// CreateDevice implements core.Users.
func (s *Store) CreateDevice(ctx context.Context, d core.Device, tokenHash []byte) error {
	b := &pgx.Batch{}
	var added int64
	b.Queue(`INSERT INTO devices (user_id, id, token_hash) SELECT $1, $2, $3 WHERE EXISTS (SELECT 1 FROM users WHERE id = $1)`,
		i64(d.UserID), i64(d.ID), tokenHash).Exec(func(tag pgconn.CommandTag) error {
		added = tag.RowsAffected()
		return nil
	})
	b.Queue(`INSERT INTO device_tokens (token_hash, user_id, device_id, name, created_at)
		SELECT $1, $2, $3, $4, $5 WHERE EXISTS (SELECT 1 FROM users WHERE id = $2)`,
		tokenHash, i64(d.UserID), i64(d.ID), d.Name, d.CreatedAt.Time)
	if err := s.pool.SendBatch(ctx, b).Close(); err != nil {
		return s.fail("create device", err)
	}
	if added == 0 {
		return core.ErrUserNotFound
	}
	return nil
}

// DeviceByToken implements core.Users.
func (s *Store) DeviceByToken(ctx context.Context, tokenHash []byte) (core.Device, error) {
	var (
		uid, did int64
		d        core.Device
		created  time.Time
	)
	err := s.pool.QueryRow(ctx, `SELECT user_id, device_id, name, created_at FROM device_tokens WHERE token_hash = $1`, tokenHash).
		Scan(&uid, &did, &d.Name, &created)
	if errors.Is(err, pgx.ErrNoRows) {
		return core.Device{}, core.ErrUnauthorized
	}
	d.ID, d.UserID, d.CreatedAt = core.ID(did), core.ID(uid), utc(created)
	return d, s.fail("read device", err)
}

// DeleteDevice implements core.Users: the device and its token go
// together; ErrUnauthorized if uid has no such device.
func (s *Store) DeleteDevice(ctx context.Context, uid, did core.ID) (int, error) {
	b := &pgx.Batch{}
	var deleted, remaining int
	b.Queue(`WITH d AS (DELETE FROM devices WHERE user_id = $1 AND id = $2 RETURNING token_hash),
			t AS (DELETE FROM device_tokens WHERE token_hash IN (SELECT token_hash FROM d))
		SELECT count(*) FROM d`, i64(uid), i64(did)).QueryRow(func(r pgx.Row) error { return r.Scan(&deleted) })
	b.Queue(`SELECT count(*) FROM devices WHERE user_id = $1`, i64(uid)).QueryRow(func(r pgx.Row) error { return r.Scan(&remaining) })
	if err := s.pool.SendBatch(ctx, b).Close(); err != nil {
		return 0, s.fail("delete device", err)
	}
	if deleted == 0 {
		return 0, core.ErrUnauthorized
	}
	return remaining, nil
}
