package storetest

import (
	"errors"
	"fmt"
	"maps"
	"math/rand/v2"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/chatgate/chatgate/core"
)

var concurrencyTests = []test{
	{"InboxSeqsUnderConcurrentSends", testConcurrentSends},
	{"SameClientMsgIDAtOnce", testConcurrentReplay},
	{"SameUsernameAtOnce", testConcurrentUsername},
	{"AddMembersAtOnceStopAtLimit", testConcurrentAddMember},
}

const (
	senders        = 16
	sendsPerSender = 40
)

// testConcurrentSends sends 1:1 and group messages among overlapping users
// from many goroutines while readers follow the inboxes by cursor, as
// devices do. Resume without gap or duplicate rests on this: each user's
// seqs are 1..head with no hole, each seq holds the message whose Append
// reported it, and no reader ever sees a seq before an earlier one exists.
func testConcurrentSends(t *testing.T, e *env) {
	us := e.users("user", 8)
	groups := []core.Group{
		e.group(us[0], us[1], us[2], us[3]),
		e.group(us[2], us[3], us[4], us[5], us[6]),
		e.group(us[7], us[0], us[5]),
	}
	var groupsOf [8][]core.Group
	for _, g := range groups {
		for _, m := range g.Members {
			i := slices.Index(us, m)
			groupsOf[i] = append(groupsOf[i], g)
		}
	}

	var mu sync.Mutex
	delivered := map[core.ID]map[uint64]core.ID{} // user → seq → message
	for _, u := range us {
		delivered[u] = map[uint64]core.ID{}
	}
	var p problems

	done := make(chan struct{})
	var readers sync.WaitGroup
	for _, u := range us {
		readers.Go(func() {
			var cursor uint64
			for {
				select {
				case <-done:
					return
				default:
				}
				page, err := e.s.Inbox(e.ctx, u, cursor, 50, 1<<20)
				if err != nil {
					p.add("reader of %d: %v", u, err)
					return
				}
				if len(page) == 0 {
					time.Sleep(100 * time.Microsecond) // let the writers run
				}
				for _, en := range page {
					if en.Seq != cursor+1 {
						p.add("reader of %d after seq %d got seq %d: a device resuming from its cursor would skip messages", u, cursor, en.Seq)
						return
					}
					cursor = en.Seq
				}
			}
		})
	}

	var writers sync.WaitGroup
	for w := range senders {
		writers.Go(func() {
			rng := rand.New(rand.NewPCG(uint64(w), 42))
			from := us[w%len(us)]
			mine := groupsOf[w%len(us)]
			for i := range sendsPerSender {
				req := e.req(from, 0, 0, fmt.Sprintf("%d/%d", w, i))
				want := map[core.ID]bool{from: true}
				if len(mine) > 0 && rng.IntN(2) == 0 {
					g := mine[rng.IntN(len(mine))]
					req.GroupID = g.ID
					for _, m := range g.Members {
						want[m] = true
					}
				} else {
					req.To = us[rng.IntN(len(us))]
					want[req.To] = true
				}
				res, err := e.s.Append(e.ctx, req)
				if err != nil {
					p.add("append %s: %v", req.Content, err)
					return
				}
				got := map[core.ID]bool{}
				mu.Lock()
				for _, d := range res.Deliveries {
					if got[d.UserID] {
						p.add("%s delivered twice to %d", req.Content, d.UserID)
					}
					got[d.UserID] = true
					if prev, dup := delivered[d.UserID][d.Seq]; dup {
						p.add("user %d seq %d given to messages %d and %d", d.UserID, d.Seq, prev, res.Message.ID)
					}
					delivered[d.UserID][d.Seq] = res.Message.ID
				}
				if !maps.Equal(got, want) {
					p.add("%s delivered to %v, want %v", req.Content, got, want)
				}
				mu.Unlock()
			}
		})
	}
	writers.Wait()
	close(done)
	readers.Wait()
	p.check(t)

	total := 0
	for _, u := range us {
		head := e.head(u)
		in := e.inbox(u, 0)
		require.Len(t, in, int(head), "user %d: inbox length and head", u)
		require.Len(t, delivered[u], int(head), "user %d: deliveries reported and head", u)
		var prev core.ID
		for i, en := range in {
			require.Equal(t, uint64(i+1), en.Seq, "user %d: seqs are 1..head", u)
			id := decode(t, en.Message).ID
			require.Equal(t, delivered[u][en.Seq], id, "user %d seq %d holds the message Append reported there", u, en.Seq)
			require.Greater(t, id, prev, "user %d: message ids grow with seq", u)
			prev = id
		}
		total += len(in)
	}
	require.Positive(t, total)
}

// testConcurrentReplay is a client retrying while its first send is still
// in flight: exactly one of the sends stores the message.
func testConcurrentReplay(t *testing.T, e *env) {
	a, b := e.user("alice"), e.user("bob")
	req := e.req(a, b, 0, "only once")
	req.NeedsPush = allPush
	const n = 8
	results := make([]core.SendResult, n)
	errs := make([]error, n)
	var wg sync.WaitGroup
	for i := range n {
		wg.Go(func() { results[i], errs[i] = e.s.Append(e.ctx, req) })
	}
	wg.Wait()
	stored := 0
	for i := range n {
		require.NoError(t, errs[i])
		require.Equal(t, results[0].Message.ID, results[i].Message.ID, "every send returns the one message")
		if !results[i].Replayed {
			stored++
			require.Len(t, results[i].Deliveries, 2)
			require.Equal(t, 1, results[i].Pushes)
		} else {
			require.Empty(t, results[i].Deliveries)
			require.Zero(t, results[i].Pushes)
		}
	}
	require.Equal(t, 1, stored, "exactly one send is not a replay")
	require.Equal(t, uint64(1), e.head(a))
	require.Equal(t, uint64(1), e.head(b))
	require.Len(t, e.history(a, core.DirectConv(a, b), 0, 0, 10), 1)
	require.Len(t, e.pushes(), 1)
}

func testConcurrentUsername(t *testing.T, e *env) {
	names := []string{"racer", "Racer", "RACER", "rAcEr", "racer", "RaCeR"}
	accounts := make([]account, len(names))
	errs := make([]error, len(names))
	var wg sync.WaitGroup
	for i, name := range names {
		accounts[i] = e.mkAccount(name, "Racer")
		wg.Go(func() {
			a := accounts[i]
			errs[i] = e.s.CreateUser(e.ctx, a.UserRecord, a.Device, a.TokenHash)
		})
	}
	wg.Wait()
	var winner core.ID
	for i, err := range errs {
		if err == nil {
			require.Zero(t, winner, "two users got the name %q", names[i])
			winner = accounts[i].ID
			continue
		}
		require.ErrorIs(t, err, core.ErrUsernameTaken)
	}
	require.NotZero(t, winner)
	rec, err := e.s.UserByName(e.ctx, "racer")
	require.NoError(t, err)
	require.Equal(t, winner, rec.ID)
}

func testConcurrentAddMember(t *testing.T, e *env) {
	const room = 5
	us := e.users("member", core.MaxGroupMembers+room)
	g := e.group(us[0], us[1:core.MaxGroupMembers-room]...)
	joiners := us[core.MaxGroupMembers-room:]
	errs := make([]error, len(joiners))
	var wg sync.WaitGroup
	for i, u := range joiners {
		wg.Go(func() { _, errs[i] = e.s.AddMember(e.ctx, g.ID, us[0], u) })
	}
	wg.Wait()
	added := 0
	for _, err := range errs {
		switch {
		case err == nil:
			added++
		case errors.Is(err, core.ErrGroupFull):
		default:
			require.NoError(t, err)
		}
	}
	require.Equal(t, room, added, "exactly the room left is filled")
	got, err := e.s.Group(e.ctx, g.ID)
	require.NoError(t, err)
	require.Len(t, got.Members, core.MaxGroupMembers)
}

// problems collects what goroutines find, for the test goroutine to report;
// a broken store finds thousands, so only the first few are kept.
type problems struct {
	mu    sync.Mutex
	first []string
	n     int
}

func (p *problems) add(format string, args ...any) {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.n++
	if len(p.first) < 10 {
		p.first = append(p.first, fmt.Sprintf(format, args...))
	}
}

func (p *problems) check(t *testing.T) {
	t.Helper()
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.n > 0 {
		t.Fatalf("%d problems, the first %d:\n%s", p.n, len(p.first), strings.Join(p.first, "\n"))
	}
}
