package node_test

import (
	"net/http"
	"net/url"
	"strings"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/chatgate/chatgate/internal/testkit"
)

func requireUserShape(t testing.TB, u map[string]any) {
	t.Helper()
	assert.ElementsMatch(t, []string{"id", "username", "display_name", "created_at"}, keys(u),
		"a public profile shows exactly these fields (never a password hash): %v", u)
	requireID(t, u["id"], "user.id")
	requireTime(t, u["created_at"], "user.created_at")
}

func TestAPISignupLoginShapes(t *testing.T) {
	n := testkit.Start(t)
	c := testkit.NewClient(t, n.URL())
	name := testkit.UniqueName("Alice")

	m := requireStatus(t, c.Do("POST", "/v1/auth/signup", map[string]any{
		"username": name, "password": password, "display_name": "Alice Liddell",
	}), http.StatusCreated)
	require.IsType(t, "", m["token"])
	require.NotEmpty(t, m["token"])
	u := m["user"].(map[string]any)
	requireUserShape(t, u)
	assert.Equal(t, name, u["username"])
	assert.Equal(t, "Alice Liddell", u["display_name"])
	uid := u["id"].(string)
	signupToken := m["token"].(string)

	// Login is a new device with its own token.
	r := c.Do("POST", "/v1/auth/login", map[string]any{"username": name, "password": password, "device": "phone"})
	lm := requireStatus(t, r, http.StatusOK)
	requireUserShape(t, lm["user"].(map[string]any))
	assert.Equal(t, uid, lm["user"].(map[string]any)["id"])
	requireID(t, lm["device_id"], "device_id")
	assert.Equal(t, float64(0), lm["cursor"], "login reports the inbox head (empty)")
	require.NotEmpty(t, lm["token"])
	assert.NotEqual(t, signupToken, lm["token"], "each login gets its own token")

	// Both tokens work; /v1/me answers the same profile.
	for _, tok := range []string{signupToken, lm["token"].(string)} {
		c.Token = tok
		me := requireStatus(t, c.Do("GET", "/v1/me", nil), http.StatusOK)
		requireUserShape(t, me)
		assert.Equal(t, uid, me["id"])
		assert.Equal(t, name, me["username"])
	}
}

func TestAPISignupUsernameTakenCaseInsensitive(t *testing.T) {
	n := testkit.Start(t)
	a := testkit.Signup(t, n.URL(), "Taken")
	name := username(a)
	anon := testkit.NewClient(t, n.URL())

	for _, variant := range []string{name, strings.ToUpper(name), strings.ToLower(name)} {
		r := anon.Do("POST", "/v1/auth/signup", map[string]any{
			"username": variant, "password": "another password", "display_name": "Impostor",
		})
		requireError(t, r, http.StatusConflict, "username_taken")
	}

	// Nothing changed: the original password still logs in, the other does
	// not, and the profile is the original one.
	l := login(t, n.URL(), name, "")
	assert.Equal(t, a.ID, l.ID)
	assert.Equal(t, "Taken", l.User["display_name"])
	r := anon.Do("POST", "/v1/auth/login", map[string]any{"username": name, "password": "another password"})
	requireError(t, r, http.StatusUnauthorized, "invalid_credentials")
	// Search finds exactly one account with that name.
	var out struct{ Users []map[string]any }
	a.Do("GET", "/v1/users?q="+url.QueryEscape(name), nil).Decode(t, &out)
	require.Len(t, out.Users, 1)
	assert.Equal(t, a.ID, out.Users[0]["id"])
}

func TestAPISignupRejectsBadInput(t *testing.T) {
	n := testkit.Start(t)
	pwName, ufName, dnName := testkit.UniqueName("pw"), testkit.UniqueName("uf"), testkit.UniqueName("dn")
	cases := []struct {
		name string
		body any
		code string
	}{
		{"short username", map[string]any{"username": "ab", "password": password}, "invalid_username"},
		{"bad username chars", map[string]any{"username": "a b c", "password": password}, "invalid_username"},
		{"short password", map[string]any{"username": pwName, "password": "short"}, "invalid_password"},
		{"control char in display name", map[string]any{"username": dnName, "password": password, "display_name": "a\u0007b"}, "invalid_display_name"},
		{"unknown field", map[string]any{"username": ufName, "password": password, "admin": true}, "unknown_field"},
		{"wrong type", map[string]any{"username": 42, "password": password}, "invalid_field"},
		{"malformed", `{"username":`, "invalid_json"},
		{"empty body", ``, "invalid_json"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			requireError(t, testkit.NewClient(t, n.URL()).Do("POST", "/v1/auth/signup", tc.body), http.StatusBadRequest, tc.code)
		})
	}
	// None of them created an account.
	anon := testkit.NewClient(t, n.URL())
	for _, name := range []string{pwName, ufName, dnName} {
		r := anon.Do("POST", "/v1/auth/login", map[string]any{"username": name, "password": password})
		requireError(t, r, http.StatusUnauthorized, "invalid_credentials")
	}
}

func TestAPILoginInvalidCredentials(t *testing.T) {
	n := testkit.Start(t)
	a := testkit.Signup(t, n.URL(), "cred")
	anon := testkit.NewClient(t, n.URL())

	r := anon.Do("POST", "/v1/auth/login", map[string]any{"username": username(a), "password": "wrong password"})
	requireError(t, r, http.StatusUnauthorized, "invalid_credentials")
	r = anon.Do("POST", "/v1/auth/login", map[string]any{"username": "nobody_" + username(a), "password": password})
	requireError(t, r, http.StatusUnauthorized, "invalid_credentials")
	// The answer for an unknown user is the same as for a wrong password.
	assert.Equal(t, http.StatusUnauthorized, r.Status)

	// The right password still works.
	login(t, n.URL(), username(a), "")
}

func TestAPIUnauthenticated(t *testing.T) {
	n := testkit.Start(t)
	anon := testkit.NewClient(t, n.URL())

	for _, path := range []string{"/v1/me", "/v1/friends", "/v1/conversations", "/v1/poll?cursor=0"} {
		r := anon.Do("GET", path, nil)
		requireError(t, r, http.StatusUnauthorized, "unauthorized")
		assert.Contains(t, r.Header.Get("WWW-Authenticate"), "Bearer", path)
	}
	anon.Token = "garbage-token"
	requireError(t, anon.Do("GET", "/v1/me", nil), http.StatusUnauthorized, "unauthorized")
	requireError(t, anon.Do("POST", "/v1/messages", map[string]any{"to": "1", "content": "x"}),
		http.StatusUnauthorized, "unauthorized")

	// A scheme other than Bearer does not authenticate, even with a valid token.
	a := testkit.Signup(t, n.URL(), "scheme")
	req, err := http.NewRequest("GET", n.URL()+"/v1/me", nil)
	require.NoError(t, err)
	req.Header.Set("Authorization", "Basic "+a.Token)
	resp, err := http.DefaultClient.Do(req)
	require.NoError(t, err)
	resp.Body.Close()
	assert.Equal(t, http.StatusUnauthorized, resp.StatusCode)
}

func TestAPIAccessTokenQueryParameter(t *testing.T) {
	n := testkit.Start(t)
	a := testkit.Signup(t, n.URL(), "qtok")
	anon := testkit.NewClient(t, n.URL())

	me := requireStatus(t, anon.Do("GET", "/v1/me?access_token="+url.QueryEscape(a.Token), nil), http.StatusOK)
	assert.Equal(t, a.ID, me["id"])
	p := requireStatus(t, anon.Do("GET", "/v1/poll?cursor=0&access_token="+url.QueryEscape(a.Token), nil), http.StatusOK)
	assert.Contains(t, p, "events")

	requireError(t, anon.Do("GET", "/v1/me?access_token=nope", nil), http.StatusUnauthorized, "unauthorized")

	// A revoked token is refused in the query as well.
	requireStatus(t, a.Do("POST", "/v1/auth/logout", nil), http.StatusNoContent)
	requireError(t, anon.Do("GET", "/v1/me?access_token="+url.QueryEscape(a.Token), nil), http.StatusUnauthorized, "unauthorized")
}

func TestAPILogoutRevokesOnlyThatDevice(t *testing.T) {
	n := testkit.Start(t)
	a := testkit.Signup(t, n.URL(), "logout")
	d1 := login(t, n.URL(), username(a), "laptop")
	d2 := login(t, n.URL(), username(a), "phone")

	requireStatus(t, d1.Do("POST", "/v1/auth/logout", nil), http.StatusNoContent)

	requireError(t, d1.Do("GET", "/v1/me", nil), http.StatusUnauthorized, "unauthorized")
	requireError(t, d1.Do("POST", "/v1/auth/logout", nil), http.StatusUnauthorized, "unauthorized")
	for _, c := range []*testkit.Client{a, d2} {
		me := requireStatus(t, c.Do("GET", "/v1/me", nil), http.StatusOK)
		assert.Equal(t, a.ID, me["id"])
	}
	// The user can still log in again.
	login(t, n.URL(), username(a), "")
}

func TestAPIProfiles(t *testing.T) {
	n := testkit.Start(t)
	a := testkit.Signup(t, n.URL(), "prof")
	b := testkit.Signup(t, n.URL(), "viewer")

	// PATCH /v1/me changes the display name, visible to others.
	u := requireStatus(t, a.Do("PATCH", "/v1/me", map[string]any{"display_name": "  Zoë Quux  "}), http.StatusOK)
	requireUserShape(t, u)
	assert.Equal(t, "Zoë Quux", u["display_name"], "display name is trimmed")
	assert.Equal(t, a.ID, u["id"])

	seen := requireStatus(t, b.Do("GET", "/v1/users/"+a.ID, nil), http.StatusOK)
	requireUserShape(t, seen)
	assert.Equal(t, "Zoë Quux", seen["display_name"])
	assert.Equal(t, username(a), seen["username"])
	assert.NotContains(t, seen, "status", "presence is shown only to friends")

	// Refused changes leave the profile as it was.
	requireError(t, a.Do("PATCH", "/v1/me", map[string]any{"display_name": "   "}), http.StatusBadRequest, "invalid_display_name")
	requireError(t, a.Do("PATCH", "/v1/me", map[string]any{}), http.StatusBadRequest, "invalid_display_name")
	requireError(t, a.Do("PATCH", "/v1/me", map[string]any{"display_name": strings.Repeat("x", 65)}), http.StatusBadRequest, "invalid_display_name")
	requireError(t, a.Do("PATCH", "/v1/me", map[string]any{"display_name": "x", "username": "root"}), http.StatusBadRequest, "unknown_field")
	requireError(t, a.Do("PATCH", "/v1/me", map[string]any{"display_name": 7}), http.StatusBadRequest, "invalid_field")
	me := requireStatus(t, a.Do("GET", "/v1/me", nil), http.StatusOK)
	assert.Equal(t, "Zoë Quux", me["display_name"])
	assert.Equal(t, username(a), me["username"])

	// Unknown and malformed user ids.
	requireError(t, b.Do("GET", "/v1/users/987654321987", nil), http.StatusNotFound, "user_not_found")
	requireError(t, b.Do("GET", "/v1/users/abc", nil), http.StatusBadRequest, "invalid_id")
	requireError(t, b.Do("GET", "/v1/users/0", nil), http.StatusBadRequest, "invalid_id")
}

func TestAPIUserSearch(t *testing.T) {
	n := testkit.Start(t)
	a := testkit.Signup(t, n.URL(), "Searchable")
	b := testkit.Signup(t, n.URL(), "other")
	requireStatus(t, b.Do("PATCH", "/v1/me", map[string]any{"display_name": "Marmalade Jones"}), http.StatusOK)

	search := func(q string) []string {
		t.Helper()
		r := a.Do("GET", "/v1/users?q="+url.QueryEscape(q), nil)
		m := requireStatus(t, r, http.StatusOK)
		us, ok := m["users"].([]any)
		require.True(t, ok, "users must be an array: %s", r.Body)
		var out []string
		for _, u := range us {
			requireUserShape(t, u.(map[string]any))
			out = append(out, u.(map[string]any)["id"].(string))
		}
		return out
	}

	// By username prefix, case-insensitively.
	assert.Contains(t, search(username(a)), a.ID)
	assert.Contains(t, search(strings.ToUpper(username(a)[:8])), a.ID)
	assert.NotContains(t, search(username(a)), b.ID)
	// By display-name prefix, case-insensitively.
	assert.Equal(t, []string{b.ID}, search("marmalade"))
	requireStatus(t, b.Do("PATCH", "/v1/me", map[string]any{"display_name": "Quentin Blake"}), http.StatusOK)
	assert.Equal(t, []string{b.ID}, search("quentin"))
	assert.Equal(t, []string{b.ID}, search("QUENTIN B"))
	// No match is an empty array, not null.
	assert.Empty(t, search("zzzz-no-such-user"))
	// The old display name no longer matches.
	assert.Empty(t, search("marmalade"))

	requireError(t, a.Do("GET", "/v1/users?q=", nil), http.StatusBadRequest, "invalid_query")
	requireError(t, a.Do("GET", "/v1/users?q=x&limit=abc", nil), http.StatusBadRequest, "invalid_limit")
}

func TestAPINegotiate(t *testing.T) {
	n := testkit.Start(t)
	anon := testkit.NewClient(t, n.URL())
	m := requireStatus(t, anon.Do("GET", "/v1/negotiate", nil), http.StatusOK)

	for _, k := range []string{"server", "transports", "heartbeat_interval_ms", "offline_after_ms", "max_message_chars"} {
		require.Contains(t, m, k)
	}
	srv, ok := m["server"].(string)
	require.True(t, ok)
	assert.Equal(t, n.URL(), srv, "single node recommends itself as reached")
	ts, ok := m["transports"].([]any)
	require.True(t, ok)
	require.NotEmpty(t, ts)
	assert.Contains(t, ts, "polling")
	assert.Equal(t, float64(5000), m["heartbeat_interval_ms"])
	assert.Equal(t, float64(30000), m["offline_after_ms"])
	assert.Equal(t, float64(100000), m["max_message_chars"])

	// The configured presence window is what clients are told.
	n2 := testkit.Start(t, testkit.WithOfflineAfter(1500e6))
	m2 := requireStatus(t, testkit.NewClient(t, n2.URL()).Do("GET", "/v1/negotiate", nil), http.StatusOK)
	assert.Equal(t, float64(1500), m2["offline_after_ms"])
	assert.Equal(t, float64(300), m2["heartbeat_interval_ms"])
	assert.Less(t, m2["heartbeat_interval_ms"].(float64), m2["offline_after_ms"].(float64))
}

func TestAPIUnknownEndpointAndMethod(t *testing.T) {
	n := testkit.Start(t)
	a := testkit.Signup(t, n.URL(), "routes")
	requireError(t, a.Do("GET", "/v1/nope", nil), http.StatusNotFound, "not_found")
	requireError(t, a.Do("DELETE", "/v1/me", nil), http.StatusMethodNotAllowed, "method_not_allowed")
	requireError(t, a.Do("PUT", "/v1/messages", nil), http.StatusMethodNotAllowed, "method_not_allowed")
	// An unknown path is unknown whoever asks; a known one still needs a token.
	anon := testkit.NewClient(t, n.URL())
	requireError(t, anon.Do("GET", "/v1/nope", nil), http.StatusNotFound, "not_found")
	requireError(t, anon.Do("GET", "/v1/me", nil), http.StatusUnauthorized, "unauthorized")
}

func TestAPICORS(t *testing.T) {
	n := testkit.Start(t)
	req, err := http.NewRequest("OPTIONS", n.URL()+"/v1/messages", nil)
	require.NoError(t, err)
	req.Header.Set("Origin", "https://app.example")
	req.Header.Set("Access-Control-Request-Method", "POST")
	req.Header.Set("Access-Control-Request-Headers", "authorization, content-type")
	resp, err := http.DefaultClient.Do(req)
	require.NoError(t, err)
	resp.Body.Close()
	assert.Less(t, resp.StatusCode, 300)
	assert.Equal(t, "*", resp.Header.Get("Access-Control-Allow-Origin"))
	assert.Contains(t, strings.ToLower(resp.Header.Get("Access-Control-Allow-Headers")), "authorization")
	assert.Contains(t, resp.Header.Get("Access-Control-Allow-Methods"), "POST")

	// Real answers carry the header too, and expose the replay marker.
	a := testkit.Signup(t, n.URL(), "cors")
	req, err = http.NewRequest("GET", n.URL()+"/v1/me", nil)
	require.NoError(t, err)
	req.Header.Set("Origin", "https://app.example")
	req.Header.Set("Authorization", "Bearer "+a.Token)
	resp, err = http.DefaultClient.Do(req)
	require.NoError(t, err)
	resp.Body.Close()
	assert.Equal(t, http.StatusOK, resp.StatusCode)
	assert.Equal(t, "*", resp.Header.Get("Access-Control-Allow-Origin"))
	assert.Contains(t, resp.Header.Get("Access-Control-Expose-Headers"), "Idempotent-Replayed")
}
