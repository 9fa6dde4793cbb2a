// Package storetest is the conformance suite of core.Store: one set of tests
// that every store adapter (embedded, PostgreSQL, …) runs unchanged, so that
// the core behaves the same whichever store holds its state.
//
// It checks each promise of the contract written on core.Store and its parts:
// accounts and device tokens, friendships, groups and their limits,
// presence, message append with per-user inbox seqs (gap-free, also under
// concurrent sends), client_msg_id idempotency, inbox paging, history,
// conversations with unread counts and read markers, the durable push
// outbox, the Err* values of package core for every condition the contract
// names, and that everything written survives a close and reopen. Where
// the contract's words leave a choice that clients can see, the suite
// follows docs/protocol.md (only conversations with a message are listed,
// history pages hold the newest messages of their interval) and says so at
// the check; where nothing decides, it accepts either answer.
//
// An adapter runs it from its own tests with a Factory:
//
//	func TestStoreConformance(t *testing.T) {
//		storetest.Run(t, func(t *testing.T) func(*testing.T) core.Store {
//			dir := t.TempDir()
//			return func(t *testing.T) core.Store {
//				ids, _ := core.NewSnowflake(1)
//				s, err := mystore.Open(dir, ids)
//				require.NoError(t, err)
//				return s
//			}
//		})
//	}
//
// The suite uses only core.Store and package core, never an adapter's
// internals. It takes user, device and group ids from its own Snowflake of
// node core.MaxNodeID; give the store's Snowflake another node. Every subtest
// gets a fresh store from the factory and closes the stores it opens.
package storetest

import (
	"context"
	"encoding/json"
	"fmt"
	"strconv"
	"sync"
	"sync/atomic"
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/chatgate/chatgate/core"
)

// Factory makes a new, empty backing store for one test (a temporary
// directory, a fresh database schema) and returns a function that opens it.
// open may be called again after the store it returned was closed: it opens
// the same data again, as a restart does. The factory registers its own
// cleanups with t.
type Factory func(t *testing.T) (open func(t *testing.T) core.Store)

type test struct {
	name string
	fn   func(t *testing.T, e *env)
}

// Run runs the whole suite against the stores f makes.
func Run(t *testing.T, f Factory) {
	groups := []struct {
		name  string
		tests []test
	}{
		{"Users", userTests},
		{"Social", socialTests},
		{"Messages", messageTests},
		{"Concurrency", concurrencyTests},
		{"Inbox", inboxTests},
		{"History", historyTests},
		{"Conversations", conversationTests},
		{"MarkRead", markReadTests},
		{"Push", pushTests},
		{"Find", findTests},
		{"Restart", restartTests},
	}
	for _, g := range groups {
		t.Run(g.name, func(t *testing.T) {
			for _, tc := range g.tests {
				t.Run(tc.name, func(t *testing.T) { tc.fn(t, newEnv(t, f)) })
			}
		})
	}
}

// env is one subtest's store and the helpers that fill it.
type env struct {
	t     *testing.T
	ctx   context.Context
	open  func(*testing.T) core.Store
	s     core.Store
	close func() error // closes s once
	ids   *core.Snowflake
	n     atomic.Int64 // makes client_msg_ids and names unique
}

func newEnv(t *testing.T, f Factory) *env {
	open := f(t)
	ids, err := core.NewSnowflake(core.MaxNodeID)
	require.NoError(t, err)
	e := &env{t: t, ctx: context.Background(), open: open, ids: ids}
	e.s = e.openStore()
	return e
}

func (e *env) openStore() core.Store {
	s := e.open(e.t)
	require.NotNil(e.t, s, "the factory's open returned no store")
	var once sync.Once
	var err error
	e.close = func() error {
		once.Do(func() { err = s.Close() })
		return err
	}
	closeIt := e.close
	// Registered after open's own cleanups so that it runs before them:
	// the store is closed before its directory or schema goes away.
	e.t.Cleanup(func() {
		if err := closeIt(); err != nil {
			e.t.Errorf("close store: %v", err)
		}
	})
	return s
}

// restart closes the store and opens the same data again.
func (e *env) restart() {
	e.t.Helper()
	require.NoError(e.t, e.close(), "close before restart")
	e.s = e.openStore()
}

func (e *env) seq() int64 { return e.n.Add(1) }

// ---- accounts and groups ----

// account is a user as the suite created it, with its first device.
type account struct {
	core.UserRecord
	Device    core.Device
	TokenHash []byte
}

// mkAccount builds an account without storing it.
func (e *env) mkAccount(username, display string) account {
	u := core.User{ID: e.ids.Next(), Username: username, DisplayName: display, CreatedAt: core.Now()}
	return account{
		UserRecord: core.UserRecord{User: u, PasswordHash: []byte("hash of " + username)},
		Device:     e.mkDevice(u.ID),
		TokenHash:  core.TokenHash("token " + strconv.FormatInt(e.seq(), 10) + " of " + username),
	}
}

func (e *env) mkDevice(uid core.ID) core.Device {
	return core.Device{ID: e.ids.Next(), UserID: uid, Name: "device", CreatedAt: core.Now()}
}

func (e *env) newAccount(username, display string) account {
	e.t.Helper()
	a := e.mkAccount(username, display)
	require.NoError(e.t, e.s.CreateUser(e.ctx, a.UserRecord, a.Device, a.TokenHash), "create user %s", username)
	return a
}

// user creates a user whose display name is its username.
func (e *env) user(name string) core.ID {
	e.t.Helper()
	return e.newAccount(name, name).ID
}

// users creates n users at once; concurrent creates let a store with group
// commit share its syncs, which keeps the 100-member tests fast.
func (e *env) users(prefix string, n int) []core.ID {
	e.t.Helper()
	out := make([]core.ID, n)
	errs := make([]error, n)
	var wg sync.WaitGroup
	for i := range n {
		a := e.mkAccount(fmt.Sprintf("%s%03d", prefix, i), fmt.Sprintf("%s %d", prefix, i))
		out[i] = a.ID
		wg.Go(func() { errs[i] = e.s.CreateUser(e.ctx, a.UserRecord, a.Device, a.TokenHash) })
	}
	wg.Wait()
	for i, err := range errs {
		require.NoError(e.t, err, "create user %d", i)
	}
	return out
}

// unknownID is an id no record holds.
func (e *env) unknownID() core.ID { return e.ids.Next() }

func (e *env) mkGroup(owner core.ID, others ...core.ID) core.Group {
	return core.Group{
		ID: e.ids.Next(), Name: "group " + strconv.FormatInt(e.seq(), 10), OwnerID: owner,
		Members: append([]core.ID{owner}, others...), CreatedAt: core.Now(),
	}
}

func (e *env) group(owner core.ID, others ...core.ID) core.Group {
	e.t.Helper()
	g := e.mkGroup(owner, others...)
	require.NoError(e.t, e.s.CreateGroup(e.ctx, g))
	return g
}

// ---- messages ----

func noPush(core.ID) bool  { return false }
func allPush(core.ID) bool { return true }

// req is a send with a client_msg_id never used before.
func (e *env) req(from, to, gid core.ID, content string) core.SendRequest {
	return core.SendRequest{
		From: from, To: to, GroupID: gid, Content: content,
		ClientMsgID: "cm-" + strconv.FormatInt(e.seq(), 10), CreatedAt: core.Now(), NeedsPush: noPush,
	}
}

func (e *env) append(req core.SendRequest) core.SendResult {
	e.t.Helper()
	res, err := e.s.Append(e.ctx, req)
	require.NoError(e.t, err, "append %+v", req)
	return res
}

func (e *env) send(from, to core.ID, content string) core.Message {
	e.t.Helper()
	return e.append(e.req(from, to, 0, content)).Message
}

func (e *env) sendGroup(from, gid core.ID, content string) core.Message {
	e.t.Helper()
	return e.append(e.req(from, 0, gid, content)).Message
}

func (e *env) head(uid core.ID) uint64 {
	e.t.Helper()
	h, err := e.s.InboxHead(e.ctx, uid)
	require.NoError(e.t, err)
	return h
}

// inbox reads uid's whole inbox after a cursor, page by page as a device does.
func (e *env) inbox(uid core.ID, after uint64) []core.InboxEntry {
	e.t.Helper()
	var all []core.InboxEntry
	for {
		page, err := e.s.Inbox(e.ctx, uid, after, 100, 1<<20)
		require.NoError(e.t, err)
		if len(page) == 0 {
			return all
		}
		all = append(all, page...)
		after = page[len(page)-1].Seq
	}
}

// history returns the ids of a History page.
func (e *env) history(uid core.ID, conv string, before, after core.ID, limit int) []core.ID {
	e.t.Helper()
	raws, err := e.s.History(e.ctx, uid, conv, before, after, limit)
	require.NoError(e.t, err, "history of %s for %d", conv, uid)
	return msgIDs(e.t, raws)
}

func (e *env) convs(uid core.ID) []core.Conversation {
	e.t.Helper()
	cs, err := e.s.Conversations(e.ctx, uid, 100)
	require.NoError(e.t, err)
	return cs
}

// conv returns uid's entry for conversation id; ok is false if not listed.
func (e *env) conv(uid core.ID, id string) (c core.Conversation, ok bool) {
	e.t.Helper()
	for _, c := range e.convs(uid) {
		if c.ID == id {
			return c, true
		}
	}
	return c, false
}

func (e *env) unread(uid core.ID, id string) int {
	e.t.Helper()
	c, ok := e.conv(uid, id)
	require.True(e.t, ok, "user %d does not list conversation %s", uid, id)
	return c.Unread
}

// pushes reads the whole outbox page by page, checking the paging promises
// on the way: keys strictly increase and never repeat across pages.
func (e *env) pushes() []core.Push {
	e.t.Helper()
	var all []core.Push
	after := ""
	for {
		page, err := e.s.PendingPushes(e.ctx, after, 2)
		require.NoError(e.t, err)
		require.LessOrEqual(e.t, len(page), 2, "PendingPushes returned more than limit")
		if len(page) == 0 {
			return all
		}
		for _, p := range page {
			require.Greater(e.t, p.Key, after, "push keys must increase strictly")
			after = p.Key
		}
		all = append(all, page...)
	}
}

// snapshot is what a refused write must leave unchanged.
type snapshot struct {
	Heads  map[core.ID]uint64
	Convs  map[core.ID][]string
	Pushes []string
}

func (e *env) snapshot(users ...core.ID) snapshot {
	e.t.Helper()
	s := snapshot{Heads: map[core.ID]uint64{}, Convs: map[core.ID][]string{}}
	for _, u := range users {
		s.Heads[u] = e.head(u)
		for _, c := range e.convs(u) {
			s.Convs[u] = append(s.Convs[u], convString(e.t, c))
		}
	}
	for _, p := range e.pushes() {
		s.Pushes = append(s.Pushes, fmt.Sprintf("%s user=%d msg=%d", p.Key, p.UserID, decode(e.t, p.Message).ID))
	}
	return s
}

func convString(t *testing.T, c core.Conversation) string {
	var last core.ID
	if len(c.LastMessage) > 0 {
		last = decode(t, c.LastMessage).ID
	}
	return fmt.Sprintf("%s kind=%s peer=%d group=%d last=%d read=%d unread=%d",
		c.ID, c.Kind, c.PeerID, c.GroupID, last, c.ReadUpTo, c.Unread)
}

// ---- comparing ----

func decode(t *testing.T, raw json.RawMessage) core.Message {
	t.Helper()
	var m core.Message
	require.NoError(t, json.Unmarshal(raw, &m), "stored message is not a message's JSON: %s", raw)
	return m
}

func msgIDs(t *testing.T, raws []json.RawMessage) []core.ID {
	t.Helper()
	ids := make([]core.ID, 0, len(raws))
	for _, r := range raws {
		ids = append(ids, decode(t, r).ID)
	}
	return ids
}

// Times are compared in UTC: a value decoded from JSON and one made by
// core.Now are the same instant with possibly different representations.
func utc(t core.Time) core.Time { return core.Time{Time: t.UTC()} }

func requireMessage(t *testing.T, want, got core.Message, msgAndArgs ...any) {
	t.Helper()
	want.CreatedAt, got.CreatedAt = utc(want.CreatedAt), utc(got.CreatedAt)
	require.Equal(t, want, got, msgAndArgs...)
}

func requireUser(t *testing.T, want, got core.User, msgAndArgs ...any) {
	t.Helper()
	want.CreatedAt, got.CreatedAt = utc(want.CreatedAt), utc(got.CreatedAt)
	require.Equal(t, want, got, msgAndArgs...)
}

func requireDevice(t *testing.T, want, got core.Device, msgAndArgs ...any) {
	t.Helper()
	want.CreatedAt, got.CreatedAt = utc(want.CreatedAt), utc(got.CreatedAt)
	require.Equal(t, want, got, msgAndArgs...)
}

func requireGroup(t *testing.T, want, got core.Group, msgAndArgs ...any) {
	t.Helper()
	// Members are compared as a set: the contract promises no order, only
	// who is longest-standing, which OwnerLeavingPassesOwnership checks.
	require.ElementsMatch(t, want.Members, got.Members, msgAndArgs...)
	want.Members, got.Members = nil, nil
	want.CreatedAt, got.CreatedAt = utc(want.CreatedAt), utc(got.CreatedAt)
	require.Equal(t, want, got, msgAndArgs...)
}

// deliveredTo maps each delivery's user to its seq; a user delivered to
// twice by one append fails the test.
func deliveredTo(t *testing.T, ds []core.Delivery) map[core.ID]uint64 {
	t.Helper()
	m := make(map[core.ID]uint64, len(ds))
	for _, d := range ds {
		_, dup := m[d.UserID]
		require.False(t, dup, "user %d got two deliveries of one message: %v", d.UserID, ds)
		m[d.UserID] = d.Seq
	}
	return m
}
