package main

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"strconv"
	"sync"
	"sync/atomic"
	"time"

	"github.com/chatgate/chatgate/client"
)

// The fill stores history on a node over plain HTTP — POST /v1/messages
// from many concurrent keep-alive senders, the way devices send — so it
// measures any store behind the API. It serves the history probe
// (-history) and the protocol bench's -prefill.

// signupUsers signs up n users named prefix0000, prefix0001, … on the
// server at base (at most 4 at once: the server hashes at most 4 passwords
// at a time). progress, if set, is told how many are done.
func signupUsers(ctx context.Context, base, prefix string, n int, progress func(done int)) ([]account, error) {
	users := make([]account, n)
	var done atomic.Int64
	err := parallel(ctx, n, 4, func(i int) error {
		name := fmt.Sprintf("%s%04d", prefix, i)
		a, err := client.New(base).Signup(ctx, client.SignupInput{Username: name, Password: benchPassword})
		if err != nil {
			return fmt.Errorf("signup %s: %w", name, err)
		}
		users[i] = account{ID: a.User.ID, Token: a.Token, Name: name}
		if progress != nil {
			progress(int(done.Add(1)))
		}
		return nil
	})
	return users, err
}

// createGroup makes a group owned by members[0] holding members.
func createGroup(ctx context.Context, base, name string, members []account) (string, error) {
	c := client.New(base, client.WithToken(members[0].Token, members[0].ID))
	ids := make([]string, 0, len(members)-1)
	for _, u := range members[1:] {
		ids = append(ids, u.ID)
	}
	var g struct {
		ID string `json:"id"`
	}
	if err := c.Do(ctx, "POST", "/v1/groups", map[string]any{"name": name, "members": ids}, &g); err != nil {
		return "", fmt.Errorf("create group %s: %w", name, err)
	}
	return g.ID, nil
}

// fillPartners is how many partners each user writes 1:1 messages to:
// user s writes to users s+1 … s+fillPartners, so a fill spreads over
// users × fillPartners 1:1 conversations.
const fillPartners = 5

// fillPlan says what a fill sends.
type fillPlan struct {
	users []account
	// groups[g] has the members users[g*groupN : (g+1)*groupN].
	groups []string
	groupN int
	share  float64 // share of messages sent to a group
	// payload is the content size in bytes: lowercase words, generated
	// per message (a store that compresses sees text, not one repeated
	// byte).
	payload int
	senders int    // concurrent keep-alive senders
	tag     string // prefix of the client_msg_ids, unique per fill
}

// filler stores messages on a node, from message 0 up to a target, and
// can continue to a higher target later (after a restart, on another
// address). Message i is chosen from i alone, so two binaries filled by
// the same plan store the same sequence.
type filler struct {
	plan     fillPlan
	partners int
	auth     []string // "Bearer <token>" per user
	next     int64    // the next message to send, between fills
	stored   atomic.Int64
	direct   atomic.Int64 // 1:1 messages stored
	retries  atomic.Int64 // sends repeated after a network error or a 5xx
	// usedDirect[s*partners+k-1] is set once user s has written to user
	// s+k; usedGroup[g] once group g holds a message. The latency probes
	// draw conversations that hold history.
	usedDirect []atomic.Bool
	usedGroup  []atomic.Bool
}

func newFiller(p fillPlan) *filler {
	f := &filler{plan: p, partners: min(fillPartners, len(p.users)-1)}
	for _, u := range p.users {
		f.auth = append(f.auth, "Bearer "+u.Token)
	}
	f.usedDirect = make([]atomic.Bool, len(p.users)*f.partners)
	f.usedGroup = make([]atomic.Bool, len(p.groups))
	return f
}

// splitmix64 is a fast, well-mixed hash of a counter.
func splitmix64(x uint64) uint64 {
	x += 0x9e3779b97f4a7c15
	x = (x ^ (x >> 30)) * 0xbf58476d1ce4e5b9
	x = (x ^ (x >> 27)) * 0x94d049bb133111eb
	return x ^ (x >> 31)
}

// pick chooses message i: a group message from member from of group g,
// or (g = -1) a 1:1 message from user from to user from+k.
func (f *filler) pick(i int64) (from, k, g int) {
	r := splitmix64(uint64(i))
	n := len(f.plan.users)
	if len(f.plan.groups) > 0 && float64(r%1_000_000) < f.plan.share*1e6 {
		g = int((r >> 20) % uint64(len(f.plan.groups)))
		return g*f.plan.groupN + int((r>>40)%uint64(f.plan.groupN)), 0, g
	}
	return int((r >> 20) % uint64(n)), 1 + int((r>>50)%uint64(f.partners)), -1
}

const letters = "abcdefghijklmnopqrstuvwxyz"

// body appends the JSON of message i to b.
func (f *filler) body(b []byte, i int64) []byte {
	from, k, g := f.pick(i)
	if g >= 0 {
		b = append(append(append(b, `{"group_id":"`...), f.plan.groups[g]...), `","content":"`...)
	} else {
		to := f.plan.users[(from+k)%len(f.plan.users)].ID
		b = append(append(append(b, `{"to":"`...), to...), `","content":"`...)
	}
	// Lowercase words and spaces (no escaping), about as compressible
	// as text.
	r := uint64(i) ^ 0x5bd1e995
	for n := 0; n < f.plan.payload; n++ {
		if n%8 == 0 {
			r = splitmix64(r)
		}
		c := byte(r >> (8 * (n % 8)))
		if c < 40 && n > 0 && n < f.plan.payload-1 && b[len(b)-1] != ' ' {
			b = append(b, ' ')
		} else {
			b = append(b, letters[c%26])
		}
	}
	b = append(append(b, `","client_msg_id":"`...), f.plan.tag...)
	b = strconv.AppendInt(append(b, '-'), i, 10)
	return append(b, `"}`...)
}

// fillSample is how many messages were stored at a moment of a fill.
type fillSample struct {
	at     time.Duration // since the fill began
	stored int64         // by this fill
}

// fillSeg is one fill, from the filler's count to a target.
type fillSeg struct {
	from, to int64 // messages stored before and after
	dur      time.Duration
	samples  []fillSample // every 100 ms, and the end
}

// count is the number stored by the fill at t, linear between samples.
func (s fillSeg) count(t time.Duration) float64 {
	prev := fillSample{}
	for _, x := range s.samples {
		if x.at >= t {
			if x.at == prev.at {
				return float64(x.stored)
			}
			return float64(prev.stored) + float64(x.stored-prev.stored)*float64(t-prev.at)/float64(x.at-prev.at)
		}
		prev = x
	}
	return float64(prev.stored)
}

// rate is the send rate over [a, b] of the fill.
func (s fillSeg) rate(a, b time.Duration) float64 {
	if b <= a {
		return 0
	}
	return (s.count(b) - s.count(a)) / (b - a).Seconds()
}

// window is the length of the windows sends/s are measured over: window
// (10 s), or a third of a short fill.
func (s fillSeg) window(w time.Duration) time.Duration { return min(w, s.dur/3) }

// startRate is sends/s over the first window of the fill, after a warm-up
// (a second, less for short fills) in which the senders connect.
func (s fillSeg) startRate(w time.Duration) float64 {
	w = s.window(w)
	warm := min(time.Second, s.dur/10)
	return s.rate(warm, warm+w)
}

// endRate is sends/s over the last window before the target was reached.
func (s fillSeg) endRate(w time.Duration) float64 {
	w = s.window(w)
	return s.rate(s.dur-w, s.dur)
}

// fillTransport is the senders' HTTP client: keep-alive, a connection per
// sender, loopback only.
func fillTransport(conns int) *http.Transport {
	return &http.Transport{
		Proxy:               nil,
		DialContext:         (&net.Dialer{Timeout: 10 * time.Second}).DialContext,
		MaxIdleConns:        conns,
		MaxIdleConnsPerHost: conns,
		IdleConnTimeout:     time.Minute,
		DisableCompression:  true,
	}
}

// fill sends messages to the node at base until target are stored in
// all. tick is called about every 250 ms with the count stored so far
// and sends/s over the last 2 s. A send that fails on the network or
// with a 5xx is repeated with the same client_msg_id (the server stores
// it once); a 4xx, or a send that still fails after a minute, ends the
// fill with an error.
func (f *filler) fill(ctx context.Context, base string, target int64, tick func(stored int64, rate float64)) (fillSeg, error) {
	seg := fillSeg{from: f.stored.Load(), to: target}
	if target <= f.next {
		return seg, nil
	}
	ctx, cancel := context.WithCancelCause(ctx)
	defer cancel(nil)
	tr := fillTransport(f.plan.senders)
	defer tr.CloseIdleConnections()
	hc := &http.Client{Transport: tr, Timeout: time.Minute}
	url := base + "/v1/messages"

	var next atomic.Int64
	next.Store(f.next)
	start := time.Now()
	var wg sync.WaitGroup
	for range f.plan.senders {
		wg.Add(1)
		go func() {
			defer wg.Done()
			var buf []byte
			for ctx.Err() == nil {
				i := next.Add(1) - 1
				if i >= target {
					return
				}
				buf = f.body(buf[:0], i)
				from, k, g := f.pick(i)
				if err := f.send(ctx, hc, url, f.auth[from], buf); err != nil {
					cancel(fmt.Errorf("message %d: %w", i, err))
					return
				}
				f.stored.Add(1)
				if g >= 0 {
					f.usedGroup[g].Store(true)
				} else {
					f.direct.Add(1)
					f.usedDirect[from*f.partners+k-1].Store(true)
				}
			}
		}()
	}
	done := make(chan struct{})
	go func() { wg.Wait(); close(done) }()
	t := time.NewTicker(100 * time.Millisecond)
	defer t.Stop()
	lastTick := start
loop:
	for {
		select {
		case <-done:
			break loop
		case now := <-t.C:
			n := f.stored.Load() - seg.from
			seg.samples = append(seg.samples, fillSample{now.Sub(start), n})
			if tick != nil && now.Sub(lastTick) >= 250*time.Millisecond {
				lastTick = now
				at := now.Sub(start)
				tick(seg.from+n, seg.rate(max(at-2*time.Second, 0), at))
			}
		}
	}
	seg.dur = time.Since(start)
	seg.samples = append(seg.samples, fillSample{seg.dur, f.stored.Load() - seg.from})
	if err := context.Cause(ctx); err != nil {
		return seg, err
	}
	f.next = target
	if tick != nil {
		tick(target, seg.endRate(2*time.Second))
	}
	return seg, nil
}

// send POSTs one message, repeating it on network errors and 5xx answers
// for up to a minute.
func (f *filler) send(ctx context.Context, hc *http.Client, url, auth string, body []byte) error {
	deadline := time.Now().Add(time.Minute)
	for attempt := 0; ; attempt++ {
		req, err := http.NewRequestWithContext(ctx, http.MethodPost, url, bytes.NewReader(body))
		if err != nil {
			return err
		}
		req.Header.Set("Content-Type", "application/json")
		req.Header.Set("Authorization", auth)
		resp, err := hc.Do(req)
		if err == nil {
			_, _ = io.Copy(io.Discard, resp.Body)
			resp.Body.Close()
			switch {
			case resp.StatusCode == http.StatusCreated || resp.StatusCode == http.StatusOK:
				return nil
			case resp.StatusCode < 500:
				return fmt.Errorf("POST /v1/messages: %s", resp.Status)
			}
			err = fmt.Errorf("POST /v1/messages: %s", resp.Status)
		}
		if ctx.Err() != nil {
			return ctx.Err()
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("still failing after %d attempts: %w", attempt+1, err)
		}
		f.retries.Add(1)
		time.Sleep(min(50*time.Millisecond<<min(attempt, 4), time.Second))
	}
}

// headCursor asks the node for a user's inbox head: a poll from beyond
// the end answers an empty page whose cursor is the head.
func headCursor(ctx context.Context, hc *http.Client, base string, a account) (uint64, error) {
	var page struct {
		Cursor uint64 `json:"cursor"`
	}
	b, err := getAuthed(ctx, hc, base+"/v1/poll?cursor=9007199254740992&limit=1", a.Token)
	if err != nil {
		return 0, err
	}
	if err := json.Unmarshal(b, &page); err != nil {
		return 0, fmt.Errorf("poll answer: %w", err)
	}
	return page.Cursor, nil
}

// getAuthed GETs url as the user with token and returns the body of a
// 200.
func getAuthed(ctx context.Context, hc *http.Client, url, token string) ([]byte, error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
	if err != nil {
		return nil, err
	}
	req.Header.Set("Authorization", "Bearer "+token)
	resp, err := hc.Do(req)
	if err != nil {
		return nil, err
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		return nil, err
	}
	if resp.StatusCode != http.StatusOK {
		if len(b) > 200 {
			b = b[:200]
		}
		return nil, fmt.Errorf("GET %s: %s %s", url, resp.Status, bytes.TrimSpace(b))
	}
	return b, nil
}
