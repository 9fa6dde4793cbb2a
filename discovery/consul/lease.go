package consul

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/hashicorp/consul/api"
)

// DefaultNodeIDPrefix is where node-id locks live: one key per id,
// chatgate/node-ids/<n>, held by the session of the node using it.
const DefaultNodeIDPrefix = "chatgate/node-ids/"

const defaultLeaseTTL = 15 * time.Second

// MaxNodeID is the largest snowflake node id (core.MaxNodeID: 10 bits).
// Repeated rather than imported so discovery stays independent of the core.
const MaxNodeID = 1023

// LeaseOptions configures AcquireNodeID.
type LeaseOptions struct {
	// Prefix of the lock keys; default DefaultNodeIDPrefix.
	Prefix string
	// TTL of the Consul session; default 15 s. Consul refuses TTLs under
	// its session_ttl_min (10 s unless configured lower).
	TTL time.Duration
	// LockDelay is how long Consul keeps an id from being taken again after
	// its session was invalidated (not after Release); zero: Consul's
	// default, 15 s. The TTL arithmetic does not need it, but a session can
	// also end without its TTL running out (an operator destroys it, the
	// agent's node leaves the cluster), which the lease notices only at its
	// next renewal, up to TTL/3 later: keep LockDelay above TTL/3 so no one
	// takes the id in between.
	LockDelay time.Duration
	// IDs limits the ids tried to 0..IDs-1; default all of 0..MaxNodeID.
	IDs int
	// Holder is stored as the lock key's value so an operator can see who
	// holds an id; default "<hostname> pid <pid>".
	Holder string
	Logger *slog.Logger
}

// ErrNoFreeNodeID is returned when every id is held (or in its lock delay).
var ErrNoFreeNodeID = errors.New("no free node id in consul")

// Lease is a snowflake node id held under a Consul session lock. While the
// lease is not Lost, no other node holds the same id.
type Lease struct {
	client  *api.Client
	id      int
	key     string
	session string
	ttl     time.Duration
	log     *slog.Logger

	lost     chan struct{}
	lostOnce sync.Once
	ctx      context.Context
	cancel   context.CancelFunc // stops run
	done     chan struct{}      // closed when run has returned
	paused   atomic.Bool        // test hook: renewals are skipped
}

// AcquireNodeID creates a session with a TTL and takes the lowest free id
// 0..1023 by acquiring its key under that session. The Lease renews the
// session from its own goroutine until Release; Lost tells when the id may
// no longer be used.
//
// The session has no health checks (not even the agent's serfHealth, which
// Consul adds by default): its life is governed by the TTL alone, the one
// thing the lease can reason about on its own clock. Its behaviour is
// "delete", so a dead node's key disappears instead of piling up.
func AcquireNodeID(ctx context.Context, client *api.Client, opts LeaseOptions) (*Lease, error) {
	if opts.Prefix == "" {
		opts.Prefix = DefaultNodeIDPrefix
	}
	if !strings.HasSuffix(opts.Prefix, "/") {
		opts.Prefix += "/"
	}
	if opts.TTL <= 0 {
		opts.TTL = defaultLeaseTTL
	}
	if opts.IDs <= 0 || opts.IDs > MaxNodeID+1 {
		opts.IDs = MaxNodeID + 1
	}
	if opts.Holder == "" {
		host, _ := os.Hostname()
		opts.Holder = host + " pid " + strconv.Itoa(os.Getpid())
	}
	if opts.Logger == nil {
		opts.Logger = slog.Default()
	}
	// The session's TTL clock starts, at the latest, when Consul handles
	// the create; measuring from before the request is the safe side.
	start := time.Now()
	sid, _, err := client.Session().CreateNoChecks(&api.SessionEntry{
		Name: "chatgate node id", TTL: opts.TTL.String(), LockDelay: opts.LockDelay,
		Behavior: api.SessionBehaviorDelete,
	}, (&api.WriteOptions{}).WithContext(ctx))
	if err != nil {
		return nil, fmt.Errorf("acquire node id: create consul session: %w", err)
	}
	id, err := acquireFree(ctx, client, opts, sid)
	if err == nil && time.Since(start) >= opts.TTL {
		// Taking the id took a whole TTL without renewing the session: it
		// may already have been invalidated. Start over rather than hand
		// out an id that is not surely ours.
		err = errors.New("acquire node id: took longer than the session TTL")
	}
	if err != nil {
		// Destroying the session releases whatever it may hold.
		dctx, cancel := context.WithTimeout(context.Background(), callTimeout)
		_, _ = client.Session().Destroy(sid, (&api.WriteOptions{}).WithContext(dctx))
		cancel()
		return nil, err
	}
	l := &Lease{
		client: client, id: id, key: opts.Prefix + strconv.Itoa(id), session: sid, ttl: opts.TTL,
		log:  opts.Logger.With("component", "consul-node-id", "node_id", id),
		lost: make(chan struct{}), done: make(chan struct{}),
	}
	l.ctx, l.cancel = context.WithCancel(context.Background())
	go l.run(start)
	l.log.Info("took node id from consul", "key", l.key, "session", sid)
	return l, nil
}

// acquireFree tries the free ids lowest first. Acquire fails when another
// node took the id since the listing (or it is in its lock delay); the
// next one is tried then, so n nodes starting together need at most n
// attempts each.
func acquireFree(ctx context.Context, client *api.Client, opts LeaseOptions, sid string) (int, error) {
	pairs, _, err := client.KV().List(opts.Prefix, (&api.QueryOptions{}).WithContext(ctx))
	if err != nil {
		return 0, fmt.Errorf("acquire node id: list %s: %w", opts.Prefix, err)
	}
	held := make(map[int]bool, len(pairs))
	for _, p := range pairs {
		if p.Session == "" {
			continue // released: free
		}
		if n, err := strconv.Atoi(strings.TrimPrefix(p.Key, opts.Prefix)); err == nil {
			held[n] = true
		}
	}
	free := make([]int, 0, opts.IDs-len(held))
	for n := 0; n < opts.IDs; n++ {
		if !held[n] {
			free = append(free, n)
		}
	}
	for _, n := range free {
		ok, _, err := client.KV().Acquire(&api.KVPair{
			Key: opts.Prefix + strconv.Itoa(n), Value: []byte(opts.Holder), Session: sid,
		}, (&api.WriteOptions{}).WithContext(ctx))
		if err != nil {
			return 0, fmt.Errorf("acquire node id %d: %w", n, err)
		}
		if ok {
			return n, nil
		}
	}
	return 0, ErrNoFreeNodeID
}

// ID is the node id, 0..1023.
func (l *Lease) ID() int { return l.id }

// Lost is closed when the node can no longer be sure it holds the id: it
// must then stop issuing ids with it (and should stop serving). It is
// closed before any other node could have taken the id; see run.
func (l *Lease) Lost() <-chan struct{} { return l.lost }

// Release gives the id up at once: it stops the renewals, releases the key
// (so another node can take the id without waiting for a lock delay) and
// destroys the session. Call it after Lost too: the session may still be
// alive on the servers.
func (l *Lease) Release(ctx context.Context) error {
	l.cancel()
	<-l.done
	l.lose()
	var errs []error
	if _, _, err := l.client.KV().Release(&api.KVPair{Key: l.key, Session: l.session},
		(&api.WriteOptions{}).WithContext(ctx)); err != nil {
		errs = append(errs, fmt.Errorf("release node id %d: %w", l.id, err))
	}
	if _, err := l.client.Session().Destroy(l.session, (&api.WriteOptions{}).WithContext(ctx)); err != nil {
		errs = append(errs, fmt.Errorf("destroy node-id session: %w", err))
	}
	return errors.Join(errs...)
}

func (l *Lease) lose() { l.lostOnce.Do(func() { close(l.lost) }) }

type renewal struct {
	start time.Time
	gone  bool // Consul no longer knows the session
	err   error
}

// run renews the session every TTL/3 and closes Lost when the id can no
// longer be trusted.
//
// Why TTL after the START of the last successful renewal is the deadline:
// Consul's leader resets the session's timer when it handles a renewal,
// which happens after the node sent it (time s on the node's clock) and
// before the reply came back. From then on it invalidates the session no
// sooner than TTL later (it actually waits 2×TTL; only TTL is promised),
// and only after the invalidation (plus the lock delay) can another session
// acquire the key. So the earliest moment another node can hold the id is
// after s + TTL (+ the rest of the TTL, + lock delay), and closing Lost at
// s + TTL is always in time. Measuring from the end of the request instead
// would be wrong by the request's latency, which is unbounded (a renewal
// stuck in a queue for 10 s and then answered). Only durations on each
// machine's own monotonic clock are involved, not synchronised wall clocks;
// clock rate differences are parts per million of TTL, covered many times
// by the TTL Consul adds on top.
//
// Renewing every TTL/3 (retrying every TTL/10 after a failure) gives two to
// three chances before the deadline, so one slow or failed request does not
// lose the id. A renewal answered "no such session" (destroyed by an
// operator, or expired) closes Lost at once.
func (l *Lease) run(start time.Time) {
	defer close(l.done)
	ctx := l.ctx
	deadline := time.NewTimer(time.Until(start.Add(l.ttl)))
	defer deadline.Stop()
	next := time.NewTimer(time.Until(start.Add(l.ttl / 3)))
	defer next.Stop()
	results := make(chan renewal, 1)
	inflight := false
	for {
		select {
		case <-ctx.Done():
			return
		case <-deadline.C:
			l.log.Error("node id lease lost: no successful renewal within the session TTL", "ttl", l.ttl)
			l.lose()
			return
		case <-next.C:
			if inflight || l.paused.Load() {
				next.Reset(l.ttl / 10)
				continue
			}
			inflight = true
			// The request may run until the deadline; after that its answer
			// no longer matters.
			go func(start time.Time) {
				rctx, cancel := context.WithDeadline(ctx, start.Add(l.ttl))
				defer cancel()
				e, _, err := l.client.Session().Renew(l.session, (&api.WriteOptions{}).WithContext(rctx))
				results <- renewal{start: start, gone: err == nil && e == nil, err: err}
			}(time.Now())
		case r := <-results:
			inflight = false
			switch {
			case r.gone:
				l.log.Error("node id lease lost: consul no longer knows its session")
				l.lose()
				return
			case r.err != nil:
				if ctx.Err() != nil {
					return
				}
				l.log.Warn("renewing node id session failed; retrying", "err", r.err)
				next.Reset(l.ttl / 10)
			default:
				deadline.Reset(time.Until(r.start.Add(l.ttl)))
				next.Reset(l.ttl / 3)
			}
		}
	}
}
