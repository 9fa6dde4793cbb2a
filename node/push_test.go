package node_test

import (
	"crypto/hmac"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/chatgate/chatgate/internal/testkit"
)

// whDelivery is one webhook request as the receiver saw it.
type whDelivery struct {
	At        time.Time
	Delivery  string // X-Chatgate-Delivery
	Timestamp string // X-Chatgate-Timestamp
	SigOK     bool   // X-Chatgate-Signature checked against the secret
	SigErr    string
	Payload   map[string]any
	Answered  int // the status the receiver answered
}

// whReceiver is a real HTTP server standing in for a push provider: it
// checks each request's signature the way a receiver must, records it, and
// answers with the status respond picks (given how many earlier requests
// the receiver got in all).
type whReceiver struct {
	srv     *httptest.Server
	secret  []byte
	respond func(prior int) int

	mu  sync.Mutex
	got []whDelivery
}

func whStart(t *testing.T, secret string, respond func(prior int) int) *whReceiver {
	r := &whReceiver{secret: []byte(secret), respond: respond}
	r.srv = httptest.NewServer(http.HandlerFunc(r.serve))
	t.Cleanup(r.srv.Close)
	return r
}

func (r *whReceiver) URL() string { return r.srv.URL + "/push" }

func (r *whReceiver) serve(w http.ResponseWriter, req *http.Request) {
	d := whDelivery{At: time.Now(), Delivery: req.Header.Get("X-Chatgate-Delivery"), Timestamp: req.Header.Get("X-Chatgate-Timestamp")}
	body, err := io.ReadAll(req.Body)
	switch {
	case err != nil:
		d.SigErr = "read body: " + err.Error()
	case req.Method != http.MethodPost || req.URL.Path != "/push":
		d.SigErr = "unexpected request " + req.Method + " " + req.URL.Path
	case !strings.HasPrefix(req.Header.Get("Content-Type"), "application/json"):
		d.SigErr = "content type " + req.Header.Get("Content-Type")
	default:
		d.SigOK, d.SigErr = whVerify(r.secret, d.Timestamp, req.Header.Get("X-Chatgate-Signature"), body)
	}
	_ = json.Unmarshal(body, &d.Payload)
	r.mu.Lock()
	d.Answered = r.respond(len(r.got))
	if !d.SigOK {
		d.Answered = http.StatusUnauthorized // what a real receiver does
	}
	r.got = append(r.got, d)
	r.mu.Unlock()
	w.WriteHeader(d.Answered)
}

// whVerify checks a signature independently of push.Sign:
// sha256=hex(HMAC-SHA256(secret, timestamp + "." + body)), with a fresh
// timestamp.
func whVerify(secret []byte, ts, sig string, body []byte) (bool, string) {
	sec, err := strconv.ParseInt(ts, 10, 64)
	if err != nil {
		return false, "bad timestamp " + ts
	}
	if d := time.Since(time.Unix(sec, 0)); d > time.Minute || d < -time.Minute {
		return false, "stale timestamp " + ts
	}
	hexSig, ok := strings.CutPrefix(sig, "sha256=")
	if !ok {
		return false, "signature without sha256= prefix: " + sig
	}
	got, err := hex.DecodeString(hexSig)
	if err != nil {
		return false, "signature not hex: " + sig
	}
	mac := hmac.New(sha256.New, secret)
	mac.Write([]byte(ts + "." + string(body)))
	if !hmac.Equal(got, mac.Sum(nil)) {
		return false, "signature mismatch"
	}
	return true, ""
}

func (r *whReceiver) all() []whDelivery {
	r.mu.Lock()
	defer r.mu.Unlock()
	return append([]whDelivery(nil), r.got...)
}

// accepted returns the deliveries answered 2xx, by delivery id, in order.
func (r *whReceiver) accepted() map[string][]whDelivery {
	out := map[string][]whDelivery{}
	for _, d := range r.all() {
		if d.Answered/100 == 2 {
			out[d.Delivery] = append(out[d.Delivery], d)
		}
	}
	return out
}

// waitAccepted waits until a push to each (user, message) pair was accepted
// and returns the accepted deliveries of each pair, keyed "user/message".
func (r *whReceiver) waitAccepted(t *testing.T, want []whWant, timeout time.Duration) map[string][]whDelivery {
	t.Helper()
	var by map[string][]whDelivery
	require.Eventually(t, func() bool {
		by = map[string][]whDelivery{}
		for _, ds := range r.accepted() {
			for _, d := range ds {
				k := fmt.Sprint(d.Payload["user_id"], "/", d.Payload["message_id"])
				by[k] = append(by[k], d)
			}
		}
		for _, w := range want {
			if len(by[w.key()]) == 0 {
				return false
			}
		}
		return true
	}, timeout, 10*time.Millisecond, "pushes never accepted; got %d requests", len(r.all()))
	return by
}

// whWant is a push a test expects.
type whWant struct {
	User    string
	Msg     map[string]any // the stored message, as POST /v1/messages answered
	Preview string
}

func (w whWant) key() string { return w.User + "/" + w.Msg["id"].(string) }

// whCheck asserts a delivery's payload describes w.
func whCheck(t *testing.T, d whDelivery, w whWant) {
	t.Helper()
	require.True(t, d.SigOK, "signature: %s", d.SigErr)
	p := d.Payload
	require.Equal(t, w.User, p["user_id"])
	require.Equal(t, w.Msg["id"], p["message_id"])
	require.Equal(t, w.Msg["conversation_id"], p["conversation_id"])
	require.Equal(t, w.Msg["from"], p["from"])
	require.Equal(t, w.Msg["created_at"], p["created_at"])
	if g, ok := w.Msg["group_id"]; ok {
		require.Equal(t, g, p["group_id"])
	} else {
		require.NotContains(t, p, "group_id")
	}
	require.Equal(t, w.Preview, p["preview"])
	require.NotEmpty(t, p["id"])
	require.Equal(t, d.Delivery, p["id"], "the payload id is the X-Chatgate-Delivery header")
}

func whSendGroup(t *testing.T, c *testkit.Client, gid, content string) map[string]any {
	t.Helper()
	r := c.Do("POST", "/v1/messages", map[string]any{"group_id": gid, "content": content, "client_msg_id": testkit.UniqueName("g")})
	require.Equal(t, http.StatusCreated, r.Status, "%s", r.Body)
	return r.JSON()["message"].(map[string]any)
}

func whOK(int) int { return http.StatusOK }

// TestPushWebhookOfflineUsers checks who gets a push: users whose devices
// are all offline (logged out, or silent past the window) get one per
// message, 1:1 and group alike; online users and the sender get none. Each
// request is signed, and the payload carries the message's identity and a
// preview of at most 200 characters.
func TestPushWebhookOfflineUsers(t *testing.T) {
	durLeakCheck(t)
	const secret = "s3cret-for-tests"
	rcv := whStart(t, secret, whOK)
	const window = 2 * time.Second
	n := testkit.Start(t, testkit.WithPushWebhook(rcv.URL(), secret), testkit.WithOfflineAfter(window))
	us := testkit.SignupMany(t, n.URL(), "push", 4)
	a, b, c, d := us[0], us[1], us[2], us[3]
	testkit.Befriend(t, a, c) // so a can watch c's presence
	r := a.Do("POST", "/v1/groups", map[string]any{"name": "push group", "members": []string{b.ID, c.ID, d.ID}})
	require.Equal(t, http.StatusCreated, r.Status, "%s", r.Body)
	gid := r.JSON()["id"].(string)

	// b logs out: offline at once.
	require.Equal(t, http.StatusNoContent, b.Do("POST", "/v1/auth/logout", nil).Status)

	var want []whWant
	online := func() { require.Equal(t, http.StatusNoContent, d.Do("POST", "/v1/heartbeat", nil).Status) }

	online()
	toD := a.Send(d.ID, "hi d, you are online", "to-d-1")
	m := a.Send(b.ID, "hello b", "to-b-1")
	want = append(want, whWant{b.ID, m, "hello b"})
	long := strings.Repeat("é", 150) + strings.Repeat("🙂", 100) // 250 code points, multi-byte
	m = a.Send(b.ID, long, "to-b-long")
	want = append(want, whWant{b.ID, m, strings.Repeat("é", 150) + strings.Repeat("🙂", 50) + "…"})
	exact := strings.Repeat("ü", 200)
	m = a.Send(b.ID, exact, "to-b-exact")
	want = append(want, whWant{b.ID, m, exact})

	// c goes offline by silence: wait until a sees it so.
	require.Eventually(t, func() bool {
		var fl struct {
			Friends []struct {
				ID     string `json:"id"`
				Status string `json:"status"`
			} `json:"friends"`
		}
		a.Do("GET", "/v1/friends", nil).Decode(t, &fl)
		return len(fl.Friends) == 1 && fl.Friends[0].ID == c.ID && fl.Friends[0].Status == "offline"
	}, 5*window, 20*time.Millisecond, "c never went offline")

	online()
	g1 := whSendGroup(t, a, gid, "group hello")
	want = append(want, whWant{b.ID, g1, "group hello"}, whWant{c.ID, g1, "group hello"})
	m = a.Send(c.ID, "hello c", "to-c-1")
	want = append(want, whWant{c.ID, m, "hello c"})
	online()
	g2 := whSendGroup(t, d, gid, "d says hi to the group")
	want = append(want, whWant{b.ID, g2, "d says hi to the group"}, whWant{c.ID, g2, "d says hi to the group"})
	online()
	toD2 := a.Send(d.ID, "still online?", "to-d-2")

	by := rcv.waitAccepted(t, want, 10*time.Second)
	for _, w := range want {
		require.Len(t, by[w.key()], 1, "push %s", w.key())
		whCheck(t, by[w.key()][0], w)
	}
	// A barrier: a push sent after all of the above were accepted is
	// delivered in a later round of the outbox, so any push wrongly queued
	// for an online user or the sender would have arrived before it.
	barrier := a.Send(b.ID, "barrier", "barrier")
	bw := whWant{b.ID, barrier, "barrier"}
	rcv.waitAccepted(t, []whWant{bw}, 10*time.Second)

	all := rcv.all()
	require.Len(t, all, len(want)+1, "one request per push, no more")
	ids := map[string]bool{}
	for _, dl := range all {
		require.True(t, dl.SigOK, dl.SigErr)
		require.Equal(t, http.StatusOK, dl.Answered)
		require.NotEqual(t, a.ID, dl.Payload["user_id"], "the sender gets no push")
		require.NotEqual(t, d.ID, dl.Payload["user_id"], "an online user gets no push")
		require.NotEqual(t, toD["id"], dl.Payload["message_id"])
		require.NotEqual(t, toD2["id"], dl.Payload["message_id"])
		require.False(t, ids[dl.Delivery], "delivery id %s used for two pushes", dl.Delivery)
		ids[dl.Delivery] = true
	}
}

// TestPushWebhookRetry makes the receiver fail twice: the push is retried
// with backoff (0.5 s, then 1 s), under the same delivery id, and accepted
// exactly once.
func TestPushWebhookRetry(t *testing.T) {
	durLeakCheck(t)
	const secret = "retry-secret"
	rcv := whStart(t, secret, func(prior int) int {
		if prior < 2 {
			return http.StatusInternalServerError
		}
		return http.StatusOK
	})
	n := testkit.Start(t, testkit.WithPushWebhook(rcv.URL(), secret))
	us := testkit.SignupMany(t, n.URL(), "retry", 2)
	a, b := us[0], us[1]
	require.Equal(t, http.StatusNoContent, b.Do("POST", "/v1/auth/logout", nil).Status)

	m := a.Send(b.ID, "are you there?", "retry-1")
	w := whWant{b.ID, m, "are you there?"}
	rcv.waitAccepted(t, []whWant{w}, 15*time.Second)

	tries := rcv.all()
	require.Len(t, tries, 3)
	for i, d := range tries {
		require.True(t, d.SigOK, "attempt %d: %s", i, d.SigErr)
		whCheck(t, d, w)
		require.Equal(t, tries[0].Delivery, d.Delivery, "a retry keeps its delivery id")
	}
	require.Equal(t, []int{500, 500, 200}, []int{tries[0].Answered, tries[1].Answered, tries[2].Answered})
	require.GreaterOrEqual(t, tries[1].At.Sub(tries[0].At), 500*time.Millisecond, "first backoff")
	require.GreaterOrEqual(t, tries[2].At.Sub(tries[1].At), time.Second, "second backoff doubles")

	// Once accepted it is never sent again: a later push goes through
	// alone.
	m2 := a.Send(b.ID, "second", "retry-2")
	rcv.waitAccepted(t, []whWant{{b.ID, m2, "second"}}, 10*time.Second)
	acc := rcv.accepted()
	require.Len(t, acc, 2)
	require.Len(t, acc[tries[0].Delivery], 1, "accepted exactly once")
	require.Len(t, rcv.all(), 4)
}

// TestPushOutboxSurvivesRestart queues pushes while the receiver is down,
// stops the node, and starts it again on the same data with a working
// receiver: every pending push is delivered, once. A user who has not been
// active since the restart counts as offline and gets pushes too.
func TestPushOutboxSurvivesRestart(t *testing.T) {
	for _, down := range []string{"answers 503", "refuses connections"} {
		t.Run(down, func(t *testing.T) {
			durLeakCheck(t)
			const secret = "outbox-secret"
			up := whStart(t, secret, whOK)
			var deadURL string
			var dead *whReceiver
			if down == "answers 503" {
				dead = whStart(t, secret, func(int) int { return http.StatusServiceUnavailable })
				deadURL = dead.URL()
			} else {
				closed := httptest.NewServer(http.NotFoundHandler())
				deadURL = closed.URL + "/push"
				closed.Close()
			}
			n1 := testkit.Start(t, testkit.WithPushWebhook(deadURL, secret))
			us := testkit.SignupMany(t, n1.URL(), "outbox", 3)
			a, b, c := us[0], us[1], us[2]
			r := a.Do("POST", "/v1/groups", map[string]any{"name": "outbox", "members": []string{b.ID, c.ID}})
			require.Equal(t, http.StatusCreated, r.Status, "%s", r.Body)
			gid := r.JSON()["id"].(string)
			require.Equal(t, http.StatusNoContent, b.Do("POST", "/v1/auth/logout", nil).Status)
			require.Equal(t, http.StatusNoContent, c.Do("POST", "/v1/auth/logout", nil).Status)

			var want []whWant
			for i := 0; i < 3; i++ {
				txt := fmt.Sprintf("while down %d", i)
				m := a.Send(b.ID, txt, "down-"+strconv.Itoa(i))
				want = append(want, whWant{b.ID, m, txt})
			}
			for i := 0; i < 2; i++ {
				txt := fmt.Sprintf("group while down %d", i)
				g := whSendGroup(t, a, gid, txt)
				want = append(want, whWant{b.ID, g, txt}, whWant{c.ID, g, txt})
			}
			if dead != nil {
				// Each push was tried and refused before the node stops.
				require.Eventually(t, func() bool {
					seen := map[string]bool{}
					for _, d := range dead.all() {
						seen[fmt.Sprint(d.Payload["user_id"], "/", d.Payload["message_id"])] = true
					}
					for _, w := range want {
						if !seen[w.key()] {
							return false
						}
					}
					return true
				}, 10*time.Second, 10*time.Millisecond)
			}
			n1.Stop(t)
			var deadCount int
			if dead != nil {
				deadCount = len(dead.all())
			}
			require.Empty(t, up.all())

			n2 := testkit.Start(t, testkit.WithDir(n1.Dir), testkit.WithPushWebhook(up.URL(), secret))
			a.Base = n2.URL()
			// b has not been active on the restarted node: offline, pushed.
			m := a.Send(b.ID, "after restart", "after-1")
			want = append(want, whWant{b.ID, m, "after restart"})

			by := up.waitAccepted(t, want, 10*time.Second)
			barrier := a.Send(c.ID, "barrier", "barrier")
			bw := whWant{c.ID, barrier, "barrier"}
			up.waitAccepted(t, []whWant{bw}, 10*time.Second)
			for _, w := range want {
				require.Len(t, by[w.key()], 1, "push %s delivered once", w.key())
				whCheck(t, by[w.key()][0], w)
			}
			require.Len(t, up.all(), len(want)+1, "each pending push sent once")
			if dead != nil {
				require.Equal(t, deadCount, len(dead.all()), "the stopped node sends nothing more")
			}
		})
	}
}
