package postgres_test

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"math/rand/v2"
	"strconv"
	"sync"
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/chatgate/chatgate/core"
	"github.com/chatgate/chatgate/core/postgres"
	"github.com/chatgate/chatgate/internal/pgtest"
)

// fixture creates users and groups for tests of several stores; its ids
// come from a snowflake no store uses.
type fixture struct {
	t   *testing.T
	ctx context.Context
	ids *core.Snowflake
	n   int
}

func newFixture(t *testing.T) *fixture {
	ids, err := core.NewSnowflake(core.MaxNodeID)
	require.NoError(t, err)
	return &fixture{t: t, ctx: context.Background(), ids: ids}
}

func (f *fixture) users(s core.Store, n int) []core.ID {
	f.t.Helper()
	out := make([]core.ID, n)
	errs := make([]error, n)
	var wg sync.WaitGroup
	for i := range out {
		f.n++
		u := core.User{ID: f.ids.Next(), Username: fmt.Sprintf("user%d", f.n), DisplayName: "user", CreatedAt: core.Now()}
		d := core.Device{ID: f.ids.Next(), UserID: u.ID, Name: "device", CreatedAt: core.Now()}
		out[i] = u.ID
		wg.Go(func() {
			errs[i] = s.CreateUser(f.ctx, core.UserRecord{User: u, PasswordHash: []byte("x")}, d, []byte(u.Username))
		})
	}
	wg.Wait()
	for _, err := range errs {
		require.NoError(f.t, err)
	}
	return out
}

func (f *fixture) group(s core.Store, members ...core.ID) core.Group {
	f.t.Helper()
	g := core.Group{ID: f.ids.Next(), Name: "group", OwnerID: members[0], Members: members, CreatedAt: core.Now()}
	require.NoError(f.t, s.CreateGroup(f.ctx, g))
	return g
}

// TestSeveralStoresShareInboxes runs two stores (two nodes, different
// snowflake node ids) on one database, sending 1:1 and group messages
// among overlapping users through both at once while readers follow the
// inboxes through both: every user's seqs must be 1..head without gap or
// duplicate, each holding the message Append reported there, message ids
// growing with seq, and no message stored twice.
func TestSeveralStoresShareInboxes(t *testing.T) {
	url := pgtest.NewDB(t)
	nodes := []*postgres.Store{open(t, url, 1, postgres.Options{}), open(t, url, 2, postgres.Options{})}
	for _, s := range nodes {
		t.Cleanup(func() { require.NoError(t, s.Close()) })
	}
	f := newFixture(t)
	us := f.users(nodes[0], 10)
	groups := []core.Group{
		f.group(nodes[1], us[0], us[1], us[2], us[3]),
		f.group(nodes[0], us[2], us[3], us[4], us[5], us[6]),
		f.group(nodes[1], us[7], us[0], us[5], us[8], us[9]),
	}
	ctx := context.Background()

	var (
		mu        sync.Mutex
		delivered = map[core.ID]map[uint64]core.ID{} // user → seq → message
		messages  = map[core.ID]bool{}
		problems  []string
	)
	for _, u := range us {
		delivered[u] = map[uint64]core.ID{}
	}
	problem := func(format string, args ...any) {
		mu.Lock()
		defer mu.Unlock()
		problems = append(problems, fmt.Sprintf(format, args...))
	}

	done := make(chan struct{})
	var readers sync.WaitGroup
	for i, u := range us {
		readers.Go(func() {
			var cursor uint64
			for n := 0; ; n++ {
				select {
				case <-done:
					return
				default:
				}
				page, err := nodes[(i+n)%2].Inbox(ctx, u, cursor, 50, 1<<20)
				if err != nil {
					problem("reader of %d: %v", u, err)
					return
				}
				for _, e := range page {
					if e.Seq != cursor+1 {
						problem("reader of %d after seq %d got seq %d", u, cursor, e.Seq)
						return
					}
					cursor = e.Seq
				}
			}
		})
	}

	const writers, sends = 24, 30
	var wg sync.WaitGroup
	for w := range writers {
		wg.Go(func() {
			rng := rand.New(rand.NewPCG(uint64(w), 7))
			from := us[w%len(us)]
			var mine []core.Group
			for _, g := range groups {
				if g.Has(from) {
					mine = append(mine, g)
				}
			}
			for i := range sends {
				req := core.SendRequest{From: from, Content: fmt.Sprintf("%d/%d", w, i), ClientMsgID: fmt.Sprintf("w%d-%d", w, i), CreatedAt: core.Now()}
				if len(mine) > 0 && rng.IntN(2) == 0 {
					req.GroupID = mine[rng.IntN(len(mine))].ID
				} else {
					req.To = us[rng.IntN(len(us))]
				}
				res, err := nodes[rng.IntN(2)].Append(ctx, req)
				if err != nil {
					problem("append %s: %v", req.Content, err)
					return
				}
				mu.Lock()
				if messages[res.Message.ID] {
					problems = append(problems, fmt.Sprintf("message id %d given twice", res.Message.ID))
				}
				messages[res.Message.ID] = true
				for _, d := range res.Deliveries {
					if prev, dup := delivered[d.UserID][d.Seq]; dup {
						problems = append(problems, fmt.Sprintf("user %d seq %d given to %d and %d", d.UserID, d.Seq, prev, res.Message.ID))
					}
					delivered[d.UserID][d.Seq] = res.Message.ID
				}
				mu.Unlock()
			}
		})
	}
	wg.Wait()
	close(done)
	readers.Wait()
	require.Empty(t, problems)

	total := 0
	for _, u := range us {
		h0, err := nodes[0].InboxHead(ctx, u)
		require.NoError(t, err)
		h1, err := nodes[1].InboxHead(ctx, u)
		require.NoError(t, err)
		require.Equal(t, h0, h1, "both nodes see one head")
		require.Len(t, delivered[u], int(h0), "user %d: deliveries reported and head", u)
		in := readAll(t, nodes[1], u)
		require.Len(t, in, int(h0))
		var prev core.ID
		for i, e := range in {
			require.Equal(t, uint64(i+1), e.Seq, "user %d: seqs are 1..head", u)
			id := msgID(t, e.Message)
			require.Equal(t, delivered[u][e.Seq], id, "user %d seq %d holds the message Append reported", u, e.Seq)
			require.Greater(t, id, prev, "user %d: message ids grow with seq", u)
			prev = id
		}
		total += len(in)
	}
	require.Len(t, messages, writers*sends)
	require.Greater(t, total, writers*sends)
}

// TestRetryThroughAnotherStore sends each client_msg_id through both
// stores at once, as a client does that retries on another node while its
// first send is still in flight: exactly one send stores the message.
func TestRetryThroughAnotherStore(t *testing.T) {
	url := pgtest.NewDB(t)
	nodes := []*postgres.Store{open(t, url, 1, postgres.Options{}), open(t, url, 2, postgres.Options{})}
	for _, s := range nodes {
		t.Cleanup(func() { require.NoError(t, s.Close()) })
	}
	f := newFixture(t)
	us := f.users(nodes[0], 2)
	g := f.group(nodes[0], us[0], us[1])
	ctx := context.Background()

	const keys, tries = 20, 6
	for k := range keys {
		req := core.SendRequest{From: us[0], To: us[1], Content: "once", ClientMsgID: "retry-" + strconv.Itoa(k), CreatedAt: core.Now()}
		if k%2 == 1 {
			req.To, req.GroupID = 0, g.ID
		}
		results := make([]core.SendResult, tries)
		errs := make([]error, tries)
		var wg sync.WaitGroup
		for i := range tries {
			wg.Go(func() { results[i], errs[i] = nodes[i%2].Append(ctx, req) })
		}
		wg.Wait()
		stored := 0
		for i := range tries {
			require.NoError(t, errs[i])
			require.Equal(t, results[0].Message.ID, results[i].Message.ID, "key %d: every try returns the one message", k)
			if !results[i].Replayed {
				stored++
			}
		}
		require.Equal(t, 1, stored, "key %d: exactly one try stores", k)
	}
	for _, u := range us {
		h, err := nodes[1].InboxHead(ctx, u)
		require.NoError(t, err)
		require.Equal(t, uint64(keys), h)
	}
}

// TestBadRequestFailsAlone puts good and bad sends in the same batches
// (one committer, sends fired together): every bad one gets its own
// error and every good one is stored.
func TestBadRequestFailsAlone(t *testing.T) {
	s := open(t, pgtest.NewDB(t), 1, postgres.Options{Committers: 1})
	t.Cleanup(func() { require.NoError(t, s.Close()) })
	f := newFixture(t)
	us := f.users(s, 3)
	a, b, outsider := us[0], us[1], us[2]
	g := f.group(s, a, b)
	ctx := context.Background()

	type send struct {
		req  core.SendRequest
		want error // nil: stored; errAny: any error that is none of the core's
	}
	var sends []send
	for i := range 60 {
		req := core.SendRequest{From: a, To: b, Content: "m" + strconv.Itoa(i), ClientMsgID: "c" + strconv.Itoa(i), CreatedAt: core.Now()}
		var want error
		switch i % 6 {
		case 1:
			req.To = f.ids.Next()
			want = core.ErrUserNotFound
		case 2:
			req.From, req.To, req.GroupID = outsider, 0, g.ID
			want = core.ErrGroupNotFound
		case 3:
			req.ClientMsgID = "bad \xff utf-8" // refused by the server itself
			want = errAny
		case 4:
			req.To, req.GroupID = 0, g.ID
		}
		sends = append(sends, send{req, want})
	}
	errs := make([]error, len(sends))
	var wg sync.WaitGroup
	start := make(chan struct{})
	for i, sd := range sends {
		wg.Go(func() {
			<-start
			_, errs[i] = s.Append(ctx, sd.req)
		})
	}
	close(start)
	wg.Wait()
	stored := 0
	for i, sd := range sends {
		switch sd.want {
		case nil:
			require.NoError(t, errs[i], "send %d", i)
			stored++
		case errAny:
			require.Error(t, errs[i], "send %d", i)
			require.Equal(t, "internal_error", core.AsError(errs[i]).Code, "send %d: %v", i, errs[i])
		default:
			require.ErrorIs(t, errs[i], sd.want, "send %d", i)
		}
	}
	h, err := s.InboxHead(ctx, b)
	require.NoError(t, err)
	require.Equal(t, uint64(stored), h, "every good send reached b, no bad one did")
	require.Len(t, readAll(t, s, b), stored)
}

var errAny = errors.New("any error")

func readAll(t *testing.T, s core.Store, u core.ID) []core.InboxEntry {
	t.Helper()
	var all []core.InboxEntry
	var after uint64
	for {
		page, err := s.Inbox(context.Background(), u, after, 100, 1<<20)
		require.NoError(t, err)
		if len(page) == 0 {
			return all
		}
		all = append(all, page...)
		after = page[len(page)-1].Seq
	}
}

func msgID(t *testing.T, raw []byte) core.ID {
	t.Helper()
	var m core.Message
	require.NoError(t, json.Unmarshal(raw, &m))
	return m.ID
}
