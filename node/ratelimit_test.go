package node_test

import (
	"bytes"
	"encoding/json"
	"net/http"
	"net/netip"
	"strconv"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/chatgate/chatgate/core"
	"github.com/chatgate/chatgate/internal/testkit"
)

// post sends a JSON body, with an X-Forwarded-For when xff is set.
func post(t *testing.T, url string, body any, xff string) (int, http.Header, string) {
	t.Helper()
	b, _ := json.Marshal(body)
	req, err := http.NewRequest("POST", url, bytes.NewReader(b))
	require.NoError(t, err)
	req.Header.Set("Content-Type", "application/json")
	if xff != "" {
		req.Header.Set("X-Forwarded-For", xff)
	}
	resp, err := http.DefaultClient.Do(req)
	require.NoError(t, err)
	defer resp.Body.Close()
	var e struct {
		Error struct {
			Code string `json:"code"`
		} `json:"error"`
	}
	_ = json.NewDecoder(resp.Body).Decode(&e)
	return resp.StatusCode, resp.Header, e.Error.Code
}

// Many clients guessing one account's password at once: only the
// account's allowance of wrong passwords is checked (each costs a password
// hash); every other attempt is refused at once with 429 and Retry-After.
// The owner is locked out only until one refill.
func TestLoginGuessingIsThrottled(t *testing.T) {
	n := testkit.Start(t, testkit.WithLimits(core.Limits{
		LoginFailuresPerAccount: core.Rate{N: 5, Per: 2 * time.Second},
		LoginFailuresPerAddress: core.Rate{N: 1000, Per: time.Minute},
	}))
	alice := testkit.Signup(t, n.URL(), "guessed")
	var mu sync.Mutex
	statuses := map[int]int{}
	var retryAfter []string
	var wg sync.WaitGroup
	start := time.Now()
	for range 64 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for range 5 {
				c := testkit.NewClient(t, n.URL())
				r, err := c.TryDo("POST", "/v1/auth/login", map[string]any{"username": alice.User["username"], "password": "wrong guess"})
				if err != nil {
					t.Error(err)
					return
				}
				mu.Lock()
				statuses[r.Status]++
				if r.Status == http.StatusTooManyRequests {
					retryAfter = append(retryAfter, r.Header.Get("Retry-After"))
					if r.ErrorCode() != "rate_limited" {
						t.Errorf("429 with code %q", r.ErrorCode())
					}
				}
				mu.Unlock()
			}
		}()
	}
	wg.Wait()
	took := time.Since(start)
	t.Logf("320 guesses in %v: %v", took, statuses)
	// The burst, plus at most what refilled while the guessing ran (one
	// token every 400 ms).
	require.GreaterOrEqual(t, statuses[http.StatusUnauthorized], 5)
	require.LessOrEqual(t, statuses[http.StatusUnauthorized], 5+int(took/(400*time.Millisecond))+1, "wrong passwords actually checked")
	require.Equal(t, 320, statuses[http.StatusUnauthorized]+statuses[http.StatusTooManyRequests])
	for _, ra := range retryAfter {
		s, err := strconv.Atoi(ra)
		require.NoError(t, err, "Retry-After %q", ra)
		require.True(t, s >= 1 && s <= 2, "Retry-After %d s", s)
	}
	// The owner gets in once a token has come back.
	require.Eventually(t, func() bool {
		r, err := testkit.NewClient(t, n.URL()).TryDo("POST", "/v1/auth/login",
			map[string]any{"username": alice.User["username"], "password": "correct horse"})
		return err == nil && r.Status == http.StatusOK
	}, 5*time.Second, 50*time.Millisecond)
}

// Behind a trusted proxy, failed logins and signups are limited per client
// address (X-Forwarded-For); other addresses are not affected, and from an
// untrusted peer the header is ignored.
func TestLimitsPerAddress(t *testing.T) {
	n := testkit.Start(t,
		testkit.WithTrustedProxies(netip.MustParsePrefix("127.0.0.0/8")),
		testkit.WithLimits(core.Limits{
			LoginFailuresPerAddress: core.Rate{N: 10, Per: time.Minute},
			SignupsPerAddress:       core.Rate{N: 3, Per: time.Hour},
		}))
	login := n.URL() + "/v1/auth/login"
	for i := range 10 {
		st, _, _ := post(t, login, map[string]any{"username": "nobody" + strconv.Itoa(i), "password": "x"}, "203.0.113.9")
		require.Equal(t, http.StatusUnauthorized, st)
	}
	st, h, code := post(t, login, map[string]any{"username": "someone", "password": "x"}, "203.0.113.9")
	require.Equal(t, http.StatusTooManyRequests, st)
	require.Equal(t, "rate_limited", code)
	require.NotEmpty(t, h.Get("Retry-After"))
	// Another client behind the same proxy, and a client that claims an
	// address the proxy did not add (the header's last entry is the proxy's).
	st, _, _ = post(t, login, map[string]any{"username": "someone", "password": "x"}, "203.0.113.10")
	require.Equal(t, http.StatusUnauthorized, st)
	st, _, _ = post(t, login, map[string]any{"username": "someone", "password": "x"}, "203.0.113.9, 198.51.100.4")
	require.Equal(t, http.StatusUnauthorized, st, "the nearest untrusted address is the client")

	signup := n.URL() + "/v1/auth/signup"
	for range 3 {
		st, _, _ := post(t, signup, map[string]any{"username": testkit.UniqueName("lim"), "password": "correct horse"}, "198.51.100.7")
		require.Equal(t, http.StatusCreated, st)
	}
	st, _, code = post(t, signup, map[string]any{"username": testkit.UniqueName("lim"), "password": "correct horse"}, "198.51.100.7")
	require.Equal(t, http.StatusTooManyRequests, st)
	require.Equal(t, "rate_limited", code)
	st, _, _ = post(t, signup, map[string]any{"username": testkit.UniqueName("lim"), "password": "correct horse"}, "198.51.100.8")
	require.Equal(t, http.StatusCreated, st)

	// A node that trusts no proxy ignores the header: the peer is
	// loopback, which is not limited by address.
	m := testkit.Start(t, testkit.WithLimits(core.Limits{SignupsPerAddress: core.Rate{N: 1, Per: time.Hour}}))
	for range 3 {
		st, _, _ := post(t, m.URL()+"/v1/auth/signup", map[string]any{"username": testkit.UniqueName("lim"), "password": "correct horse"}, "198.51.100.7")
		require.Equal(t, http.StatusCreated, st)
	}
}
