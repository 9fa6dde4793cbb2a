package core

import (
	"context"
	"fmt"
	"math"
	"net/netip"
	"strconv"
	"strings"
	"sync"
	"time"
)

// Rate is a token bucket: up to N events at once, refilled at N per Per.
// The zero Rate means no limit.
type Rate struct {
	N   int
	Per time.Duration
}

// ParseRate reads "N/DURATION" (5/1m, 100/1h) or "off".
func ParseRate(s string) (Rate, error) {
	if s == "off" || s == "0" {
		return Rate{}, nil
	}
	n, per, ok := strings.Cut(s, "/")
	v, err1 := strconv.Atoi(n)
	d, err2 := time.ParseDuration(per)
	if !ok || err1 != nil || err2 != nil || v < 1 || d <= 0 {
		return Rate{}, fmt.Errorf("want N/DURATION (e.g. 5/1m) or off, got %q", s)
	}
	return Rate{N: v, Per: d}, nil
}

func (r Rate) String() string {
	if r.N == 0 {
		return "off"
	}
	return strconv.Itoa(r.N) + "/" + r.Per.String()
}

// Limits are the rate limits of the service (each flag-settable). Failed
// logins are limited by account first — guessing one password is slowed
// to a few tries a minute, and the owner waits at most one refill — and
// generously by address, so a hundred people behind one office NAT can
// still mistype in the same morning. Limits hold per node.
type Limits struct {
	LoginFailuresPerAccount Rate
	LoginFailuresPerAddress Rate
	SignupsPerAddress       Rate
	// SendsPerUser bounds one account's messages (HTTP and WebSocket
	// together): a person sends a few a second, an integration or the
	// bench's fan-out sender hundreds; what it stops is one account
	// taking the whole node (tens of thousands of sends a second).
	SendsPerUser Rate
	// SearchesPerUser bounds one account's searches: a search costs the
	// CPU of several sends, and a person searches a few times a minute
	// (a search box that searches as one types, a few a second).
	SearchesPerUser Rate
	// FramesPerSocket bounds the frames a WebSocket client sends (sends,
	// typing, heartbeats, pings); past it the socket is closed (1008).
	FramesPerSocket Rate
	// BytesPerSocket bounds what a WebSocket client sends in bytes, which
	// also bounds what no frame count sees: endless empty fragments of one
	// message, each costing the server a frame to parse.
	BytesPerSocket Rate
	// ConnsPerUser bounds one account's concurrent transport connections
	// (WebSocket, SSE, polls, held or not); 0: no limit.
	ConnsPerUser int
	// Loopback applies the limits by address to loopback peers too. They
	// are exempt by default: the bench, local tools and a local reverse
	// proxy not named by -trusted-proxies would otherwise be one client.
	Loopback bool
}

// DefaultLimits never trouble a person, the web client or the bench.
func DefaultLimits() Limits {
	return Limits{
		LoginFailuresPerAccount: Rate{5, time.Minute},
		LoginFailuresPerAddress: Rate{100, time.Minute},
		SignupsPerAddress:       Rate{100, time.Hour},
		SendsPerUser:            Rate{500, time.Second},
		SearchesPerUser:         Rate{10, time.Second},
		FramesPerSocket:         Rate{1000, time.Second},
		BytesPerSocket:          Rate{4 << 20, 4 * time.Second},
		ConnsPerUser:            64,
	}
}

// refuse counts a refusal by limit and returns its error.
func (s *Service) refuse(limit string, wait time.Duration) *Error {
	s.obs.RateLimited(limit)
	return rateLimited(wait)
}

// rateLimited is the error of a refused request: 429 rate_limited, with
// RetryAfter saying when to try again.
func rateLimited(wait time.Duration) *Error {
	e := Errorf(KindRateLimited, "rate_limited", "too many requests; retry in %d s", int(math.Ceil(wait.Seconds())))
	e.RetryAfter = wait
	return e
}

// buckets is a keyed set of token buckets. A full bucket is the same as no
// bucket, so those are swept away: memory holds only keys that were busy
// lately, and at most max of them (beyond that a key starts full).
type buckets struct {
	rate Rate
	max  int
	now  func() time.Time

	mu    sync.Mutex
	m     map[string]*bucket
	swept time.Time
}

type bucket struct {
	tokens float64
	last   time.Time
}

func newBuckets(r Rate) *buckets {
	return &buckets{rate: r, max: 1 << 20, now: time.Now, m: make(map[string]*bucket)}
}

// level refills b to now and returns it (nil: full, no entry).
func (bs *buckets) level(key string, now time.Time) *bucket {
	b := bs.m[key]
	if b == nil {
		return nil
	}
	per := float64(bs.rate.Per) / float64(bs.rate.N)
	b.tokens = math.Min(float64(bs.rate.N), b.tokens+float64(now.Sub(b.last))/per)
	b.last = now
	return b
}

// take spends a token of key at once, or reports how long until one is
// there (and spends nothing). Taking before the work, not after it, is
// what holds against many concurrent attempts: each one past the bucket's
// size is refused before it costs anything.
func (bs *buckets) take(key string) (wait time.Duration) {
	if bs == nil || bs.rate.N == 0 || key == "" {
		return 0
	}
	now := bs.now()
	bs.mu.Lock()
	defer bs.mu.Unlock()
	b := bs.level(key, now)
	if b == nil {
		if len(bs.m) >= bs.max {
			bs.sweepLocked(now)
			if len(bs.m) >= bs.max {
				return 0
			}
		}
		b = &bucket{tokens: float64(bs.rate.N), last: now}
		bs.m[key] = b
	}
	if b.tokens < 1 {
		per := float64(bs.rate.Per) / float64(bs.rate.N)
		return time.Duration((1 - b.tokens) * per)
	}
	b.tokens--
	if now.Sub(bs.swept) > bs.rate.Per {
		bs.sweepLocked(now)
	}
	return 0
}

// refund gives back a token taken for an attempt that turned out fine (a
// successful login does not count as a failure).
func (bs *buckets) refund(key string) {
	if bs == nil || bs.rate.N == 0 || key == "" {
		return
	}
	now := bs.now()
	bs.mu.Lock()
	defer bs.mu.Unlock()
	if b := bs.level(key, now); b != nil {
		b.tokens = math.Min(float64(bs.rate.N), b.tokens+1)
	}
}

func (bs *buckets) sweepLocked(now time.Time) {
	bs.swept = now
	for k := range bs.m {
		if b := bs.level(k, now); b.tokens >= float64(bs.rate.N) {
			delete(bs.m, k)
		}
	}
}

// limiter applies Limits.
type limiter struct {
	loginAccount, loginAddr, signupAddr, sendUser, searchUser *buckets
	loopback                                                  bool

	connsMax int
	connsMu  sync.Mutex
	conns    map[ID]int
}

// byAddr is the key of addr's bucket, or "" for an address that is not
// limited: loopback (unless Limits.Loopback), where the bench, local tools
// and a local reverse proxy (not named by -trusted-proxies) would otherwise
// all be one client. Limits by account still apply there.
func (l *limiter) byAddr(addr string) string {
	a, err := netip.ParseAddr(addr)
	if err != nil || (a.IsLoopback() && !l.loopback) {
		return ""
	}
	return addr
}

func newLimiter(l Limits) *limiter {
	return &limiter{loginAccount: newBuckets(l.LoginFailuresPerAccount),
		loginAddr: newBuckets(l.LoginFailuresPerAddress), signupAddr: newBuckets(l.SignupsPerAddress),
		sendUser: newBuckets(l.SendsPerUser), searchUser: newBuckets(l.SearchesPerUser), loopback: l.Loopback,
		connsMax: l.ConnsPerUser, conns: make(map[ID]int)}
}

// ErrTooManyConnections refuses a connection past a per-user or
// per-address connection limit.
func ErrTooManyConnections(max int) *Error {
	e := Errorf(KindRateLimited, "too_many_connections", "too many connections (at most %d); close some and retry", max)
	e.RetryAfter = time.Second
	return e
}

// admitConn counts a connection of uid, or refuses it past ConnsPerUser;
// release must be called once.
func (l *limiter) admitConn(uid ID) (release func(), err error) {
	if l.connsMax <= 0 {
		return func() {}, nil
	}
	l.connsMu.Lock()
	defer l.connsMu.Unlock()
	if l.conns[uid] >= l.connsMax {
		return nil, ErrTooManyConnections(l.connsMax)
	}
	l.conns[uid]++
	return func() {
		l.connsMu.Lock()
		defer l.connsMu.Unlock()
		if l.conns[uid]--; l.conns[uid] <= 0 {
			delete(l.conns, uid)
		}
	}, nil
}

// Allowance is one token bucket with no key, for a limit held by a single
// owner (a socket's frames or bytes).
type Allowance struct {
	rate   Rate
	mu     sync.Mutex
	tokens float64
	last   time.Time
}

// NewAllowance returns a full bucket of r; the zero Rate allows everything.
func NewAllowance(r Rate) *Allowance {
	return &Allowance{rate: r, tokens: float64(r.N), last: time.Now()}
}

// Take spends a token, or says how long until one is there.
func (a *Allowance) Take() time.Duration { return a.TakeN(1) }

// TakeN spends n tokens, or says how long until they are there. More than
// the bucket holds is allowed from a full bucket, which then owes the rest.
func (a *Allowance) TakeN(n int) time.Duration {
	if a.rate.N == 0 {
		return 0
	}
	a.mu.Lock()
	defer a.mu.Unlock()
	now := time.Now()
	per := float64(a.rate.Per) / float64(a.rate.N)
	a.tokens = math.Min(float64(a.rate.N), a.tokens+float64(now.Sub(a.last))/per)
	a.last = now
	need := math.Min(float64(n), float64(a.rate.N))
	if a.tokens < need {
		return time.Duration((need - a.tokens) * per)
	}
	a.tokens -= float64(n)
	return 0
}

type addrKey struct{}

// WithClientAddr returns a context carrying the client's address (the
// gateway sets it: the peer, or a trusted proxy's forwarded address).
func WithClientAddr(ctx context.Context, addr string) context.Context {
	return context.WithValue(ctx, addrKey{}, addr)
}

// ClientAddr is the address WithClientAddr set, or "".
func ClientAddr(ctx context.Context) string {
	s, _ := ctx.Value(addrKey{}).(string)
	return s
}
