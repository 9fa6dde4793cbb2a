// Package buntdb keeps the embedded node's small, mutable state in one
// buntdb append-only file on local disk: accounts, devices and token hashes,
// friendships, groups and presence (core.Users and core.Social). Writes go
// through group commit and a redo journal (see commit.go), so every
// acknowledged write survives kill -9. History lives elsewhere (core/pebble);
// data files of releases that kept it here are read by legacy.go, which the
// embedded store's migration empties.
package buntdb

import (
	"context"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"sort"
	"strconv"
	"strings"

	"github.com/tidwall/buntdb"

	"github.com/chatgate/chatgate/core"
	"github.com/chatgate/chatgate/internal/writeq"
)

// Store holds users and the social graph on buntdb.
type Store struct {
	db          *buntdb.DB
	sync        *os.File
	ids         *core.Snowflake
	log         *slog.Logger
	reqs        *writeq.Queue[*writeReq]
	stopped     chan struct{}
	journalN    uint64 // owned by the committer
	lastJournal uint64 // owned by the committer
	failed      error  // owned by the committer
}

var (
	_ core.Users  = (*Store)(nil)
	_ core.Social = (*Store)(nil)
)

// CompactAbove is the file size above which Open compacts the file when
// that at least halves it.
var CompactAbove int64 = 64 << 20

// Open opens (creating if needed) the store in dir. ids assigns message ids.
func Open(dir string, ids *core.Snowflake, log *slog.Logger) (*Store, error) {
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return nil, fmt.Errorf("create data dir: %w", err)
	}
	path := filepath.Join(dir, "chatgate.db")
	s := &Store{
		ids: ids, log: log,
		reqs:    writeq.New[*writeReq](maxBatchReqs),
		stopped: make(chan struct{}),
	}
	if err := s.open(path); err != nil {
		return nil, err
	}
	if err := s.replay(); err != nil {
		s.closeFiles()
		return nil, fmt.Errorf("replay journal: %w", err)
	}
	if err := s.compact(path); err != nil {
		s.closeFiles()
		return nil, fmt.Errorf("compact %s: %w", path, err)
	}
	if err := s.observeLastID(); err != nil {
		s.closeFiles()
		return nil, err
	}
	go s.committer()
	return s, nil
}

func (s *Store) open(path string) error {
	db, err := buntdb.Open(path)
	if err != nil {
		return fmt.Errorf("open %s: %w", path, err)
	}
	// Durability is ours (commit.go): buntdb must neither fsync on its own
	// schedule nor rewrite the file behind our sync descriptor (its shrink
	// renames a file it never fsyncs).
	if err := db.SetConfig(buntdb.Config{SyncPolicy: buntdb.Never, AutoShrinkDisabled: true}); err != nil {
		db.Close()
		return err
	}
	f, err := openSync(path)
	if err != nil {
		db.Close()
		return fmt.Errorf("open %s for sync: %w", path, err)
	}
	if err := syncDir(filepath.Dir(path)); err != nil {
		db.Close()
		f.Close()
		return err
	}
	s.db, s.sync = db, f
	return nil
}

func (s *Store) closeFiles() { s.sync.Close(); s.db.Close() }

// syncDir makes a directory's entries (a new or renamed file) durable.
func syncDir(dir string) error {
	d, err := os.Open(dir)
	if err != nil {
		return err
	}
	defer d.Close()
	return d.Sync()
}

// compact rewrites the append-only file with only the live keys when it is
// big and mostly garbage (every write is written twice, journal and keys,
// and presence is rewritten on every change). Unlike buntdb's own shrink it fsyncs the new file before renaming
// it over the old one, and the directory after, so a crash at any point
// leaves one complete file. It runs at start, before any write.
func (s *Store) compact(path string) error {
	fi, err := os.Stat(path)
	if err != nil || fi.Size() < CompactAbove {
		return err
	}
	tmp := path + ".compact"
	f, err := os.Create(tmp)
	if err != nil {
		return err
	}
	defer os.Remove(tmp) // a no-op once renamed
	err = s.db.Save(f)
	if err == nil {
		err = f.Sync()
	}
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		return err
	}
	nfi, err := os.Stat(tmp)
	if err != nil || nfi.Size()*2 > fi.Size() {
		return err // not worth it
	}
	s.closeFiles()
	if err := os.Rename(tmp, path); err != nil {
		return err
	}
	if err := syncDir(filepath.Dir(path)); err != nil {
		return err
	}
	s.log.Info("compacted data file", "from_bytes", fi.Size(), "to_bytes", nfi.Size())
	return s.open(path)
}

// Close finishes queued writes, makes them durable and closes the file.
func (s *Store) Close() error {
	if !s.reqs.Close() {
		return nil
	}
	<-s.stopped
	err := s.sync.Sync()
	if s.lastJournal > 0 && s.failed == nil {
		// The last batch is durable: its journal key is no longer needed.
		_ = s.db.Update(func(tx *buntdb.Tx) error {
			_, err := tx.Delete(journalKey(s.lastJournal))
			return err
		})
		err = errors.Join(err, s.sync.Sync())
	}
	return errors.Join(err, s.sync.Close(), s.db.Close())
}

// observeLastID makes the id generator issue only ids above the newest
// stored user, group and message id (all three come from it), so a node
// restarted with a slow clock never reissues one and overwrites a record.
// Messages are here only in a data file not yet migrated.
func (s *Store) observeLastID() error {
	return s.db.View(func(tx *buntdb.Tx) error {
		for _, p := range []string{"u:", "g:", "m:"} {
			if err := tx.DescendLessOrEqual("", p+"~", func(k, _ string) bool {
				if strings.HasPrefix(k, p) {
					if id, err := strconv.ParseUint(k[len(p):], 10, 64); err == nil {
						s.ids.Observe(core.ID(id))
					}
				}
				return false
			}); err != nil {
				return err
			}
		}
		return nil
	})
}

// Keys. Numbers are zero-padded to 20 digits so keys sort numerically.
// They are built in one stack buffer and copied once: a send builds a dozen
// keys, and concatenating padded parts cost several allocations each.
func appendPad(b []byte, n uint64) []byte {
	var d [20]byte
	for i := len(d) - 1; i >= 0; i-- {
		d[i] = byte('0' + n%10)
		n /= 10
	}
	return append(b, d[:]...)
}

func pad(n uint64) string {
	var a [20]byte
	return string(appendPad(a[:0], n))
}

func pid(id core.ID) string { return pad(uint64(id)) }

// keyN is prefix + pad(a).
func keyN(prefix string, a uint64) string {
	var buf [64]byte
	return string(appendPad(append(buf[:0], prefix...), a))
}

// keyNN is prefix + pad(a) + ":" + pad(b).
func keyNN(prefix string, a, b uint64) string {
	var buf [64]byte
	k := appendPad(append(buf[:0], prefix...), a)
	return string(appendPad(append(k, ':'), b))
}

// keyNS is prefix + pad(a) + ":" + s.
func keyNS(prefix string, a uint64, s string) string {
	var buf [128]byte
	k := appendPad(append(buf[:0], prefix...), a)
	return string(append(append(k, ':'), s...))
}

func kUser(id core.ID) string      { return keyN("u:", uint64(id)) }
func kUsername(name string) string { return "un:" + strings.ToLower(name) }
func kDisplay(name string, id core.ID) string {
	return "dn:" + strings.ToLower(name) + "\x00" + pid(id)
}
func kToken(hash []byte) string           { return "t:" + hex.EncodeToString(hash) }
func kUserDevice(uid, did core.ID) string { return keyNN("ud:", uint64(uid), uint64(did)) }
func kFriend(a, b core.ID) string         { return keyNN("f:", uint64(a), uint64(b)) }
func kFriendIn(b, a core.ID) string       { return keyNN("fi:", uint64(b), uint64(a)) }
func kGroup(id core.ID) string            { return keyN("g:", uint64(id)) }
func kUserGroup(uid, gid core.ID) string  { return keyNN("ug:", uint64(uid), uint64(gid)) }
func kPresence(uid core.ID) string        { return keyN("p:", uint64(uid)) }

// prefixScan calls fn for each key with prefix, in order, until fn says stop.
func prefixScan(tx *buntdb.Tx, prefix string, fn func(k, v string) bool) error {
	return tx.AscendGreaterOrEqual("", prefix, func(k, v string) bool {
		if !strings.HasPrefix(k, prefix) {
			return false
		}
		return fn(k, v)
	})
}

func idAfter(k, prefix string) core.ID {
	v, _ := strconv.ParseUint(k[len(prefix):], 10, 64)
	return core.ID(v)
}

func getJSON[T any](get func(string) (string, bool), key string) (T, bool, error) {
	var v T
	raw, ok := get(key)
	if !ok {
		return v, false, nil
	}
	if err := json.Unmarshal([]byte(raw), &v); err != nil {
		return v, false, fmt.Errorf("decode %s: %w", key, err)
	}
	return v, true, nil
}

func mustJSON(v any) string {
	b, err := json.Marshal(v)
	if err != nil {
		panic(err) // only our own plain structs are marshalled
	}
	return string(b)
}

func txGet(tx *buntdb.Tx) func(string) (string, bool) {
	return func(k string) (string, bool) {
		v, err := tx.Get(k)
		return v, err == nil
	}
}

func (s *Store) view(fn func(tx *buntdb.Tx) error) error {
	if err := s.db.View(fn); err != nil {
		if errors.Is(err, buntdb.ErrDatabaseClosed) {
			return core.ErrUnavailable
		}
		return err
	}
	return nil
}

// ---- users and devices ----

// CreateUser implements core.Users.
func (s *Store) CreateUser(ctx context.Context, u core.UserRecord, d core.Device, tokenHash []byte) error {
	return s.write(ctx, 0, func(w *wtx) error {
		if _, taken := w.get(kUsername(u.Username)); taken {
			return core.ErrUsernameTaken
		}
		w.set(kUser(u.ID), mustJSON(u))
		w.set(kUsername(u.Username), pid(u.ID))
		w.set(kDisplay(u.DisplayName, u.ID), "")
		w.set(kToken(tokenHash), mustJSON(d))
		w.set(kUserDevice(u.ID, d.ID), hex.EncodeToString(tokenHash))
		return nil
	})
}

// viewJSON reads one JSON record, or notFound.
func viewJSON[T any](s *Store, key string, notFound error) (T, error) {
	var out T
	err := s.view(func(tx *buntdb.Tx) error {
		v, ok, err := getJSON[T](txGet(tx), key)
		if err != nil {
			return err
		}
		if !ok {
			return notFound
		}
		out = v
		return nil
	})
	return out, err
}

// UserByID implements core.Users.
func (s *Store) UserByID(ctx context.Context, id core.ID) (core.User, error) {
	u, err := viewJSON[core.UserRecord](s, kUser(id), core.ErrUserNotFound)
	return u.User, err
}

// UserExists reports whether a user exists, without decoding its record.
func (s *Store) UserExists(ctx context.Context, id core.ID) (bool, error) {
	found := false
	err := s.view(func(tx *buntdb.Tx) error {
		_, err := tx.Get(kUser(id))
		found = err == nil
		return nil
	})
	return found, err
}

// UsersByID implements core.Users; unknown ids are left out.
func (s *Store) UsersByID(ctx context.Context, ids []core.ID) (map[core.ID]core.User, error) {
	out := make(map[core.ID]core.User, len(ids))
	err := s.view(func(tx *buntdb.Tx) error {
		for _, id := range ids {
			v, ok, err := getJSON[core.UserRecord](txGet(tx), kUser(id))
			if err != nil {
				return err
			}
			if ok {
				out[id] = v.User
			}
		}
		return nil
	})
	return out, err
}

// UserByName implements core.Users.
func (s *Store) UserByName(ctx context.Context, username string) (core.UserRecord, error) {
	var u core.UserRecord
	err := s.view(func(tx *buntdb.Tx) error {
		idv, err := tx.Get(kUsername(username))
		if err != nil {
			return core.ErrUserNotFound
		}
		v, ok, err := getJSON[core.UserRecord](txGet(tx), "u:"+idv)
		if err != nil {
			return err
		}
		if !ok {
			return core.ErrUserNotFound
		}
		u = v
		return nil
	})
	return u, err
}

// SearchUsers implements core.Users.
func (s *Store) SearchUsers(ctx context.Context, prefix string, limit int) ([]core.User, error) {
	prefix = strings.ToLower(prefix)
	seen := map[string]bool{}
	var ids []string
	err := s.view(func(tx *buntdb.Tx) error {
		if err := prefixScan(tx, "un:"+prefix, func(_, v string) bool {
			if !seen[v] {
				seen[v] = true
				ids = append(ids, v)
			}
			return len(ids) < limit
		}); err != nil {
			return err
		}
		return prefixScan(tx, "dn:"+prefix, func(k, _ string) bool {
			if len(ids) >= limit {
				return false
			}
			v := k[strings.LastIndexByte(k, 0)+1:]
			if !seen[v] {
				seen[v] = true
				ids = append(ids, v)
			}
			return len(ids) < limit
		})
	})
	if err != nil {
		return nil, err
	}
	users := make([]core.User, 0, len(ids))
	err = s.view(func(tx *buntdb.Tx) error {
		for _, id := range ids {
			u, ok, err := getJSON[core.UserRecord](txGet(tx), "u:"+id)
			if err != nil {
				return err
			}
			if ok {
				users = append(users, u.User)
			}
		}
		return nil
	})
	return users, err
}

// UpdateDisplayName implements core.Users.
func (s *Store) UpdateDisplayName(ctx context.Context, id core.ID, name string) (core.User, error) {
	var out core.User
	err := s.write(ctx, 0, func(w *wtx) error {
		u, ok, err := getJSON[core.UserRecord](w.get, kUser(id))
		if err != nil {
			return err
		}
		if !ok {
			return core.ErrUserNotFound
		}
		w.del(kDisplay(u.DisplayName, id))
		u.DisplayName = name
		w.set(kUser(id), mustJSON(u))
		w.set(kDisplay(name, id), "")
		out = u.User
		return nil
	})
	return out, err
}

// CreateDevice implements core.Users.
func (s *Store) CreateDevice(ctx context.Context, d core.Device, tokenHash []byte) error {
	return s.write(ctx, 0, func(w *wtx) error {
		if _, ok := w.get(kUser(d.UserID)); !ok {
			return core.ErrUserNotFound
		}
		w.set(kToken(tokenHash), mustJSON(d))
		w.set(kUserDevice(d.UserID, d.ID), hex.EncodeToString(tokenHash))
		return nil
	})
}

// DeviceByToken implements core.Users.
func (s *Store) DeviceByToken(ctx context.Context, tokenHash []byte) (core.Device, error) {
	return viewJSON[core.Device](s, kToken(tokenHash), core.ErrUnauthorized)
}

// DeleteDevice implements core.Users.
func (s *Store) DeleteDevice(ctx context.Context, uid, did core.ID) (int, error) {
	err := s.write(ctx, 0, func(w *wtx) error {
		h, ok := w.get(kUserDevice(uid, did))
		if !ok {
			return core.ErrUnauthorized
		}
		w.del(kUserDevice(uid, did))
		w.del("t:" + h)
		return nil
	})
	if err != nil {
		return 0, err
	}
	n := 0
	err = s.view(func(tx *buntdb.Tx) error {
		return prefixScan(tx, "ud:"+pid(uid)+":", func(string, string) bool { n++; return true })
	})
	return n, err
}

// ---- friends, groups, presence ----

// SetFriend implements core.Social.
func (s *Store) SetFriend(ctx context.Context, from, to core.ID, on bool) (bool, error) {
	var mutual bool
	err := s.write(ctx, 0, func(w *wtx) error {
		if _, ok := w.get(kUser(to)); !ok {
			return core.ErrUserNotFound
		}
		if !on {
			w.del(kFriend(from, to))
			w.del(kFriendIn(to, from))
			w.del(kFriend(to, from))
			w.del(kFriendIn(from, to))
			return nil
		}
		w.set(kFriend(from, to), "")
		w.set(kFriendIn(to, from), "")
		_, mutual = w.get(kFriend(to, from))
		return nil
	})
	return mutual, err
}

// FriendEdges implements core.Social.
func (s *Store) FriendEdges(ctx context.Context, uid core.ID) (mutual, incoming, outgoing []core.ID, err error) {
	out := map[core.ID]bool{}
	err = s.view(func(tx *buntdb.Tx) error {
		p := "f:" + pid(uid) + ":"
		if err := prefixScan(tx, p, func(k, _ string) bool {
			out[idAfter(k, p)] = true
			return true
		}); err != nil {
			return err
		}
		p2 := "fi:" + pid(uid) + ":"
		return prefixScan(tx, p2, func(k, _ string) bool {
			id := idAfter(k, p2)
			if out[id] {
				mutual = append(mutual, id)
				delete(out, id)
			} else {
				incoming = append(incoming, id)
			}
			return true
		})
	})
	for id := range out {
		outgoing = append(outgoing, id)
	}
	sort.Slice(outgoing, func(i, j int) bool { return outgoing[i] < outgoing[j] })
	return mutual, incoming, outgoing, err
}

// groupRec is a group as stored: Group hides its members from JSON.
type groupRec struct {
	core.Group
	Members []core.ID `json:"members"`
}

func toRec(g core.Group) groupRec   { return groupRec{Group: g, Members: g.Members} }
func fromRec(r groupRec) core.Group { g := r.Group; g.Members = r.Members; return g }

// CreateGroup implements core.Social.
func (s *Store) CreateGroup(ctx context.Context, g core.Group) error {
	if len(g.Members) > core.MaxGroupMembers {
		return core.ErrGroupFull
	}
	return s.write(ctx, 0, func(w *wtx) error {
		for _, m := range g.Members {
			if _, ok := w.get(kUser(m)); !ok {
				return core.ErrUserNotFound
			}
		}
		w.set(kGroup(g.ID), mustJSON(toRec(g)))
		for _, m := range g.Members {
			w.set(kUserGroup(m, g.ID), "")
		}
		return nil
	})
}

// Group implements core.Social.
func (s *Store) Group(ctx context.Context, id core.ID) (core.Group, error) {
	r, err := viewJSON[groupRec](s, kGroup(id), core.ErrGroupNotFound)
	return fromRec(r), err
}

// GroupsOf implements core.Social.
func (s *Store) GroupsOf(ctx context.Context, uid core.ID) ([]core.Group, error) {
	var gs []core.Group
	err := s.view(func(tx *buntdb.Tx) error {
		p := "ug:" + pid(uid) + ":"
		var ids []core.ID
		if err := prefixScan(tx, p, func(k, _ string) bool {
			ids = append(ids, idAfter(k, p))
			return true
		}); err != nil {
			return err
		}
		for _, id := range ids {
			r, ok, err := getJSON[groupRec](txGet(tx), kGroup(id))
			if err != nil {
				return err
			}
			if ok {
				gs = append(gs, fromRec(r))
			}
		}
		return nil
	})
	return gs, err
}

func (s *Store) changeGroup(ctx context.Context, gid, by core.ID, fn func(w *wtx, g *core.Group) error) (core.Group, error) {
	var out core.Group
	err := s.write(ctx, 0, func(w *wtx) error {
		r, ok, err := getJSON[groupRec](w.get, kGroup(gid))
		if err != nil {
			return err
		}
		g := fromRec(r)
		if !ok || !g.Has(by) {
			return core.ErrGroupNotFound
		}
		if err := fn(w, &g); err != nil {
			return err
		}
		w.set(kGroup(gid), mustJSON(toRec(g)))
		out = g
		return nil
	})
	return out, err
}

// AddMember implements core.Social.
func (s *Store) AddMember(ctx context.Context, gid, by, uid core.ID) (core.Group, error) {
	return s.changeGroup(ctx, gid, by, func(w *wtx, g *core.Group) error {
		if _, ok := w.get(kUser(uid)); !ok {
			return core.ErrUserNotFound
		}
		if g.Has(uid) {
			return core.ErrAlreadyMember
		}
		if len(g.Members) >= core.MaxGroupMembers {
			return core.ErrGroupFull
		}
		g.Members = append(g.Members, uid)
		w.set(kUserGroup(uid, gid), "")
		return nil
	})
}

// RemoveMember implements core.Social.
func (s *Store) RemoveMember(ctx context.Context, gid, by, uid core.ID) (core.Group, error) {
	return s.changeGroup(ctx, gid, by, func(w *wtx, g *core.Group) error {
		if !g.Has(uid) {
			return core.ErrNotMember
		}
		if uid != by && by != g.OwnerID {
			return core.ErrForbidden
		}
		ms := make([]core.ID, 0, len(g.Members))
		for _, m := range g.Members {
			if m != uid {
				ms = append(ms, m)
			}
		}
		g.Members = ms
		if uid == g.OwnerID && len(ms) > 0 {
			g.OwnerID = ms[0] // members are kept in joining order
		}
		w.del(kUserGroup(uid, gid))
		return nil
	})
}

// SavePresence implements core.Social.
func (s *Store) SavePresence(ctx context.Context, uid core.ID, p core.Presence) error {
	return s.write(ctx, 0, func(w *wtx) error {
		w.set(kPresence(uid), mustJSON(p))
		return nil
	})
}

// Presences implements core.Social; users never seen are offline with no
// last_active_at.
func (s *Store) Presences(ctx context.Context, ids []core.ID) (map[core.ID]core.Presence, error) {
	out := make(map[core.ID]core.Presence, len(ids))
	err := s.view(func(tx *buntdb.Tx) error {
		for _, id := range ids {
			p, ok, err := getJSON[core.Presence](txGet(tx), kPresence(id))
			if err != nil {
				return err
			}
			if !ok {
				p = core.Presence{Status: core.Offline}
			}
			out[id] = p
		}
		return nil
	})
	return out, err
}
