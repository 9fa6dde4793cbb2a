// Package embedded is the single-node core.Store: buntdb for the small,
// mutable state (accounts, devices, friends, groups, presence) and Pebble
// for the append-only history (messages, inboxes, client_msg_id keys, read
// markers, conversation listings, the push outbox), both in one data
// directory:
//
//	DIR/chatgate.db   buntdb (core/buntdb)
//	DIR/history/      Pebble (core/pebble)
//
// A directory written by a release that kept everything in chatgate.db is
// migrated at Open (migrate.go).
package embedded

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"path/filepath"
	"time"

	"github.com/chatgate/chatgate/core"
	"github.com/chatgate/chatgate/core/buntdb"
	"github.com/chatgate/chatgate/core/pebble"
)

// Options tune the store; the zero value is the default.
type Options struct {
	// CacheBytes bounds the history's block cache (pebble.DefaultCacheBytes
	// if zero).
	CacheBytes int64
	// OnCommit is told of every durable group commit of the history.
	OnCommit func(requests int, d time.Duration)
	// OnIndex is told of every batch of messages indexed for search.
	OnIndex func(messages int)
}

// Store is the embedded core.Store. Users and social calls go to buntdb,
// history calls to Pebble. The two calls that change both (a member
// joining or leaving a group) write buntdb first: a crash between the two
// writes leaves at worst a new member whose unread count starts at the
// group's first message, or a former member's listing key, which
// Conversations skips because it checks membership.
type Store struct {
	*buntdb.Store
	history *pebble.Store
}

var _ core.Store = (*Store)(nil)

// Open opens the store in dir, creating or migrating it as needed.
func Open(dir string, ids *core.Snowflake, log *slog.Logger, o Options) (*Store, error) {
	social, err := buntdb.Open(dir, ids, log)
	if err != nil {
		return nil, err
	}
	history, err := pebble.Open(filepath.Join(dir, "history"), social, ids, log, pebble.Options{CacheBytes: o.CacheBytes, OnCommit: o.OnCommit, OnIndex: o.OnIndex})
	if err != nil {
		social.Close()
		return nil, err
	}
	s := &Store{Store: social, history: history}
	moved, err := migrate(context.Background(), social, history, log)
	if err != nil {
		s.Close()
		return nil, fmt.Errorf("migrate history to %s: %w", filepath.Join(dir, "history"), err)
	}
	if moved {
		// Reopening compacts chatgate.db, which still holds every migrated
		// record followed by its delete.
		if err := social.Close(); err != nil {
			history.Close()
			return nil, err
		}
		if s.Store, err = buntdb.Open(dir, ids, log); err != nil {
			history.Close()
			return nil, err
		}
		history.SetDirectory(s.Store)
	}
	return s, nil
}

// Close closes both engines.
func (s *Store) Close() error { return errors.Join(s.history.Close(), s.Store.Close()) }

// AddMember implements core.Social; the new member's unread count starts
// at joining.
func (s *Store) AddMember(ctx context.Context, gid, by, uid core.ID) (core.Group, error) {
	g, err := s.Store.AddMember(ctx, gid, by, uid)
	if err != nil {
		return g, err
	}
	if err := s.history.JoinedGroup(ctx, uid, gid); err != nil {
		return g, fmt.Errorf("start read marker of %d in group %d: %w", uid, gid, err)
	}
	return g, nil
}

// RemoveMember implements core.Social; the former member no longer lists
// the group among its conversations.
func (s *Store) RemoveMember(ctx context.Context, gid, by, uid core.ID) (core.Group, error) {
	g, err := s.Store.RemoveMember(ctx, gid, by, uid)
	if err != nil {
		return g, err
	}
	if err := s.history.LeftGroup(ctx, uid, gid); err != nil {
		return g, fmt.Errorf("forget group %d for %d: %w", gid, uid, err)
	}
	return g, nil
}

// Append implements core.Messages.
func (s *Store) Append(ctx context.Context, req core.SendRequest) (core.SendResult, error) {
	return s.history.Append(ctx, req)
}

// Inbox implements core.Messages.
func (s *Store) Inbox(ctx context.Context, uid core.ID, after uint64, limit, maxBytes int) ([]core.InboxEntry, error) {
	return s.history.Inbox(ctx, uid, after, limit, maxBytes)
}

// InboxHead implements core.Messages.
func (s *Store) InboxHead(ctx context.Context, uid core.ID) (uint64, error) {
	return s.history.InboxHead(ctx, uid)
}

// History implements core.Messages.
func (s *Store) History(ctx context.Context, uid core.ID, conv string, before, after core.ID, limit int) ([]json.RawMessage, error) {
	return s.history.History(ctx, uid, conv, before, after, limit)
}

// HistoryAfter implements core.Finder.
func (s *Store) HistoryAfter(ctx context.Context, uid core.ID, conv string, after core.ID, limit int) ([]json.RawMessage, error) {
	return s.history.HistoryAfter(ctx, uid, conv, after, limit)
}

// Search implements core.Finder.
func (s *Store) Search(ctx context.Context, uid core.ID, q core.SearchQuery) ([]core.Found, error) {
	return s.history.Search(ctx, uid, q)
}

// Mentions implements core.Finder.
func (s *Store) Mentions(ctx context.Context, uid core.ID, before core.ID, limit int) ([]json.RawMessage, error) {
	return s.history.Mentions(ctx, uid, before, limit)
}

// HistoryStore is the Pebble half, for tools and benchmarks that read its
// figures (disk usage of the index, say).
func (s *Store) HistoryStore() *pebble.Store { return s.history }

// WaitIndexed implements core.IndexWaiter.
func (s *Store) WaitIndexed(ctx context.Context, upTo core.ID) error {
	return s.history.WaitIndexed(ctx, upTo)
}

// Conversations implements core.Messages.
func (s *Store) Conversations(ctx context.Context, uid core.ID, limit int) ([]core.Conversation, error) {
	return s.history.Conversations(ctx, uid, limit)
}

// MarkRead implements core.Messages.
func (s *Store) MarkRead(ctx context.Context, uid core.ID, conv string, msg core.ID) error {
	return s.history.MarkRead(ctx, uid, conv, msg)
}

// PendingPushes implements core.PushOutbox.
func (s *Store) PendingPushes(ctx context.Context, after string, limit int) ([]core.Push, error) {
	return s.history.PendingPushes(ctx, after, limit)
}

// DeletePush implements core.PushOutbox.
func (s *Store) DeletePush(ctx context.Context, key string) error {
	return s.history.DeletePush(ctx, key)
}
