package node_test

import (
	"bufio"
	"bytes"
	"context"
	"crypto/rand"
	"encoding/base64"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"runtime"
	"slices"
	"sort"
	"strings"
	"testing"
	"time"

	"github.com/gorilla/websocket"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/chatgate/chatgate/internal/testkit"
	"github.com/chatgate/chatgate/web"
)

// The authorisation table: for every route the router knows, a second
// user (carol) tries the ids of others (alice, bob, dave): conversations,
// groups, messages, devices, cursors, read markers, history and search
// filters. Each attempt must be refused (404 where the protocol hides
// existence, 403 where it does not), leak nothing the request did not
// itself carry, and change nothing: the victims' inboxes, conversation
// lists (with their read markers), friends, groups, profiles and the
// histories are compared before and after each row. Where existence
// matters (conversations, groups, messages) a foreign id and an id that
// exists nowhere must be refused alike.
//
// TestAuthzEveryRouteHasARow makes the table complete: a route without a
// row fails it, and so does a row whose route is gone.

// authzExempt are the routes that serve no user data and take no ids, so
// they need no row: the web client's static files, health and metrics.
func authzExempt(route string) bool {
	_, path, _ := strings.Cut(route, " ")
	if slices.Contains(web.Paths, path) {
		return true
	}
	switch path {
	case "/healthz", "/readyz", "/metrics":
		return true
	}
	return false
}

// authzRow is one route of the table.
type authzRow struct {
	route string // "METHOD PATH", the path as echo registers it
	// why is set on routes that name nobody's ids: why there is little
	// to try there. The row still runs what can be tried.
	why string
	// spec marks a route the SPEC documents that the server may not
	// route yet: until it does, the row is skipped, not failed; once it
	// does, the row runs like any other.
	spec bool
	// try makes carol's attempts; the victims' state must be the same
	// afterwards.
	try func(t *testing.T, w *world)
	// live, for the realtime transports, runs after the state check:
	// carol holds a connection while the victims talk, and must receive
	// none of it.
	live func(t *testing.T, w *world)
}

func authzRows() []authzRow {
	return []authzRow{
		// ---- unauthenticated ----
		{route: "GET /v1/negotiate", why: "no token and no ids: the same public answer for everyone", try: tryNegotiate},
		{route: "POST /v1/auth/signup", why: "creates a new account; it can name nobody else's ids", try: trySignup},
		{route: "POST /v1/auth/login", why: "takes a username and a password, no ids", try: tryLogin},
		// ---- the caller's own device and profile ----
		{route: "POST /v1/auth/logout", why: "revokes the calling device only; a device id in the body or query is ignored", try: tryLogout},
		{route: "POST /v1/heartbeat", why: "marks the calling device active; takes no ids", try: tryHeartbeat},
		{route: "GET /v1/me", why: "answers the caller; takes no ids", try: tryMe},
		{route: "PATCH /v1/me", why: "changes the caller's display name only", try: tryPatchMe},
		// ---- users and friends ----
		{route: "GET /v1/users", try: trySearchUsers},
		{route: "GET /v1/users/:id", try: tryUser},
		{route: "GET /v1/friends", why: "lists the caller's own edges", try: tryFriends},
		{route: "PUT /v1/friends/:id", try: tryAddFriend},
		{route: "DELETE /v1/friends/:id", try: tryRemoveFriend},
		// ---- groups ----
		{route: "GET /v1/groups", why: "lists the caller's own groups", try: tryGroups},
		{route: "POST /v1/groups", try: tryCreateGroup},
		{route: "GET /v1/groups/:id", try: tryGroup},
		{route: "POST /v1/groups/:id/members", try: tryAddMember},
		{route: "DELETE /v1/groups/:id/members/:uid", try: tryRemoveMember},
		// ---- messages, conversations, read markers, typing ----
		{route: "POST /v1/messages", try: trySend},
		{route: "GET /v1/conversations", why: "lists the caller's own conversations", try: tryConversations},
		{route: "GET /v1/conversations/:id/messages", try: tryHistory},
		{route: "POST /v1/conversations/:id/read", try: tryMarkRead},
		{route: "POST /v1/typing", try: tryTyping},
		// ---- realtime transports ----
		{route: "GET /v1/poll", try: tryPoll, live: livePoll},
		{route: "GET /v1/longpoll", try: tryLongPoll, live: liveLongPoll},
		{route: "GET /v1/sse", try: trySSE, live: liveSSE},
		{route: "GET /v1/ws", try: tryWS, live: liveWS},
		// ---- documented in SPEC §4, routed once built ----
		{route: "GET /v1/search", spec: true, try: trySearch},
		{route: "GET /v1/mentions", spec: true, try: tryMentions},
	}
}

func TestAuthzEveryRouteHasARow(t *testing.T) {
	n := testkit.Start(t, noSearchLimit)
	routes := n.Routes()
	require.NotEmpty(t, routes, "node.Routes() found no routes: is the server's handler still the gateway?")
	known := map[string]bool{}
	for _, r := range routes {
		known[r] = true
	}
	rows := map[string]authzRow{}
	for _, row := range authzRows() {
		require.NotContains(t, rows, row.route, "two rows for one route")
		rows[row.route] = row
	}
	var missing, stale []string
	for _, r := range routes {
		if _, ok := rows[r]; !ok && !authzExempt(r) {
			missing = append(missing, r)
		}
	}
	for r, row := range rows {
		if !known[r] {
			if row.spec {
				t.Logf("%s: documented, not routed yet; its row runs once it is", r)
				continue
			}
			stale = append(stale, r)
		}
	}
	sort.Strings(stale)
	assert.Empty(t, missing, "routes without a row in authzRows (node/authz_test.go): add one that tries other users' ids there")
	assert.Empty(t, stale, "rows whose route the router no longer knows: remove or rename them")
}

// TestAuthzTable runs every row against one set of victims.
func TestAuthzTable(t *testing.T) {
	w := newWorld(t)
	known := map[string]bool{}
	for _, r := range w.n.Routes() {
		known[r] = true
	}
	ran := 0
	for _, row := range authzRows() {
		if !known[row.route] && row.spec {
			// SPEC §4 routes the server does not have yet: their rows run
			// once the router knows them.
			t.Logf("%s: not routed yet", row.route)
			continue
		}
		t.Run(row.route, func(t *testing.T) {
			if !known[row.route] {
				t.Fatalf("the router has no %s (TestAuthzEveryRouteHasARow says more)", row.route)
			}
			w.route = row.route
			before := w.attempts
			st := w.state(t)
			row.try(t, w)
			w.requireState(t, st)
			if row.live != nil {
				row.live(t, w)
			}
			require.Greater(t, w.attempts, before, "a row must make at least one attempt")
			ran++
		})
	}
	rowAttempts := w.attempts
	t.Run("revoked token on every route", func(t *testing.T) { w.badTokens(t, true) })
	t.Run("malformed Authorization on every route", func(t *testing.T) { w.badTokens(t, false) })
	t.Logf("authz table: %d routes in the router (%d exempt), %d rows run with %d attempts; %d requests with bad tokens",
		len(known), countExempt(known), ran, rowAttempts, w.attempts-rowAttempts)
}

func countExempt(routes map[string]bool) int {
	n := 0
	for r := range routes {
		if authzExempt(r) {
			n++
		}
	}
	return n
}

// ---- the world: victims, attacker and what must never leak ----

type world struct {
	n     *testkit.Node
	route string // the row being run, for messages

	// alice and bob are friends with a 1:1 conversation (dab). alice owns
	// group G (gid, with dave; bob is not a member) and group G2, which
	// carol was in and was removed from.
	alice, bob, dave *testkit.Client
	// carol, the attacker, is alice's friend and has a conversation with
	// her (dac), so she knows alice's and bob's ids; she is a stranger to
	// bob and dave.
	carol *testkit.Client

	aliceDevice, bobDevice, daveDevice, carolDevice string
	dab, dac, gid, gconv, gid2, gconv2              string
	msgAB, msgBA, msgG, msgG2                       string // victims' message ids
	clientMsgID                                     string // one of alice's idempotency keys

	// Ids that exist nowhere: a foreign id must be refused like these.
	ghostUser, ghostGroup, ghostMsg string

	secrets  []string // what carol must never read unless she sent it
	tag      string
	attempts int
}

func newWorld(t *testing.T) *world {
	n := testkit.Start(t, noSearchLimit)
	w := &world{n: n, tag: randHex(t)}
	w.alice, w.aliceDevice = signupDevice(t, n.URL(), "azal")
	w.bob, w.bobDevice = signupDevice(t, n.URL(), "azbo")
	w.carol, w.carolDevice = signupDevice(t, n.URL(), "azca")
	w.dave, w.daveDevice = signupDevice(t, n.URL(), "azda")
	const ghost = uint64(1) << 62 // a snowflake of the 2050s: never issued
	w.ghostUser, w.ghostGroup, w.ghostMsg = fmt.Sprint(ghost+1), fmt.Sprint(ghost+2), fmt.Sprint(ghost+3)

	testkit.Befriend(t, w.alice, w.bob)
	testkit.Befriend(t, w.alice, w.carol)

	// The 1:1 conversation of alice and bob; the first message mentions
	// carol, who is not in it.
	w.clientMsgID = "alice-1-" + w.tag
	m := send(t, w.alice, map[string]any{"to": w.bob.ID, "content": w.secret("ab first") + " @" + username(w.carol), "client_msg_id": w.clientMsgID})
	w.msgAB, w.dab = m["id"].(string), m["conversation_id"].(string)
	w.msgBA = send(t, w.bob, map[string]any{"to": w.alice.ID, "content": w.secret("ba reply")})["id"].(string)
	requireStatus(t, w.alice.Do("POST", "/v1/conversations/"+w.dab+"/read", map[string]any{"message_id": w.msgBA}), http.StatusNoContent)

	// Group G: alice and dave.
	g := createGroup(t, w.alice, w.secret("alice group"), w.dave.ID)
	w.gid, w.gconv = g["id"].(string), g["conversation_id"].(string)
	w.msgG = send(t, w.alice, map[string]any{"group_id": w.gid, "content": w.secret("g first") + " @" + username(w.carol)})["id"].(string)
	send(t, w.dave, map[string]any{"group_id": w.gid, "content": w.secret("g reply")})
	requireStatus(t, w.dave.Do("POST", "/v1/conversations/"+w.gconv+"/read", map[string]any{"message_id": w.msgG}), http.StatusNoContent)

	// Group G2: carol was a member, then alice removed her; what was said
	// after that is not hers to read.
	g2 := createGroup(t, w.alice, "g2 "+w.tag, w.carol.ID)
	w.gid2, w.gconv2 = g2["id"].(string), g2["conversation_id"].(string)
	send(t, w.alice, map[string]any{"group_id": w.gid2, "content": "g2 while carol was in " + w.tag})
	requireStatus(t, w.alice.Do("DELETE", "/v1/groups/"+w.gid2+"/members/"+w.carol.ID, nil), http.StatusNoContent)
	w.msgG2 = send(t, w.alice, map[string]any{"group_id": w.gid2, "content": w.secret("g2 after carol left")})["id"].(string)

	// carol's own conversation with alice.
	w.dac = send(t, w.carol, map[string]any{"to": w.alice.ID, "content": "hello alice " + w.tag})["conversation_id"].(string)
	send(t, w.alice, map[string]any{"to": w.carol.ID, "content": "hello carol " + w.tag})

	w.secrets = append(w.secrets, w.dab, w.gid, w.gconv, w.msgAB, w.msgBA, w.msgG, w.msgG2,
		w.aliceDevice, w.bobDevice, w.daveDevice, w.alice.Token, w.bob.Token, w.dave.Token)
	return w
}

// secret returns a distinctive text that carol must never read.
func (w *world) secret(s string) string {
	v := s + " " + w.tag
	w.secrets = append(w.secrets, v)
	return v
}

func randHex(t testing.TB) string {
	b := make([]byte, 6)
	_, err := rand.Read(b)
	require.NoError(t, err)
	return hex.EncodeToString(b)
}

// signupDevice signs a new user up and also returns its device id.
func signupDevice(t testing.TB, base, prefix string) (*testkit.Client, string) {
	t.Helper()
	c := testkit.NewClient(t, base)
	m := requireStatus(t, c.Do("POST", "/v1/auth/signup", map[string]any{
		"username": testkit.UniqueName(prefix), "password": password, "display_name": prefix}), http.StatusCreated)
	c.Token, c.User = m["token"].(string), m["user"].(map[string]any)
	c.ID = c.User["id"].(string)
	return c, m["device_id"].(string)
}

// loginDevice logs c's user in as a new device; it returns the device's
// client and id.
func loginDevice(t testing.TB, c *testkit.Client) (*testkit.Client, string) {
	t.Helper()
	d := testkit.NewClient(t, c.Base)
	m := requireStatus(t, d.Do("POST", "/v1/auth/login", map[string]any{"username": username(c), "password": password}), http.StatusOK)
	d.Token, d.User, d.ID = m["token"].(string), m["user"].(map[string]any), c.ID
	return d, m["device_id"].(string)
}

// ---- what must not change ----

// state is the victims' state as canonical JSON by what it is: inboxes
// (durable events), conversation lists with read markers and unread
// counts, friends, groups, profiles, group details and histories.
// Presence fields are left out: they move with time, not with requests.
func (w *world) state(t *testing.T) map[string]string {
	t.Helper()
	out := map[string]string{}
	for name, c := range map[string]*testkit.Client{"alice": w.alice, "bob": w.bob, "dave": w.dave} {
		evs, _ := c.PollAll(0)
		var durable []map[string]any
		for _, e := range evs {
			if _, ok := e["seq"]; ok {
				durable = append(durable, e)
			}
		}
		out[name+" inbox"] = canonJSON(t, durable)
		for _, p := range []string{"/v1/conversations?limit=500", "/v1/friends", "/v1/groups", "/v1/me"} {
			out[name+" "+p] = canonJSON(t, getOK(t, c, p))
		}
	}
	for _, gid := range []string{w.gid, w.gid2} {
		out["group "+gid] = canonJSON(t, getOK(t, w.alice, "/v1/groups/"+gid))
	}
	for _, conv := range []string{w.dab, w.gconv, w.gconv2} {
		out["history "+conv] = canonJSON(t, getOK(t, w.alice, "/v1/conversations/"+conv+"/messages?limit=200"))
	}
	return out
}

func (w *world) requireState(t *testing.T, before map[string]string) {
	t.Helper()
	after := w.state(t)
	for k, v := range before {
		require.JSONEq(t, v, after[k], "%s: %s changed", w.route, k)
	}
}

func getOK(t testing.TB, c *testkit.Client, path string) any {
	t.Helper()
	r := c.Do("GET", path, nil)
	require.Equal(t, http.StatusOK, r.Status, "GET %s: %s", path, r.Body)
	var v any
	require.NoError(t, json.Unmarshal(r.Body, &v))
	return v
}

// canonJSON encodes v with sorted keys and without presence fields.
func canonJSON(t testing.TB, v any) string {
	t.Helper()
	var strip func(any) any
	strip = func(v any) any {
		switch x := v.(type) {
		case map[string]any:
			delete(x, "status")
			delete(x, "last_active_at")
			for k, e := range x {
				x[k] = strip(e)
			}
		case []any:
			for i, e := range x {
				x[i] = strip(e)
			}
		case []map[string]any:
			for _, e := range x {
				strip(e)
			}
		}
		return v
	}
	b, err := json.Marshal(strip(v))
	require.NoError(t, err)
	return string(b)
}

// ---- attempts ----

// noLeak fails if b holds a secret that the request (req) did not carry.
func (w *world) noLeak(t testing.TB, req string, b []byte) {
	t.Helper()
	for _, s := range w.secrets {
		if bytes.Contains(b, []byte(s)) && !strings.Contains(req, s) {
			t.Fatalf("%s: %s leaks %q in %s", w.route, req, s, b)
		}
	}
}

// do is one attempt: c's request, whose answer (body and headers) must
// leak nothing.
func (w *world) do(t testing.TB, c *testkit.Client, method, path string, body any) testkit.Response {
	t.Helper()
	w.attempts++
	r := c.Do(method, path, body)
	req := method + " " + path + " " + asText(body)
	w.noLeak(t, req, r.Body)
	hdr, _ := json.Marshal(r.Header)
	w.noLeak(t, req, hdr)
	return r
}

func asText(body any) string {
	switch b := body.(type) {
	case nil:
		return ""
	case string:
		return b
	case []byte:
		return string(b)
	}
	j, _ := json.Marshal(body)
	return string(j)
}

// refused is an attempt that must fail with status and code in the
// protocol's error shape.
func (w *world) refused(t testing.TB, c *testkit.Client, method, path string, body any, status int, code string) testkit.Response {
	t.Helper()
	r := w.do(t, c, method, path, body)
	requireError(t, r, status, code)
	return r
}

// alike checks that a foreign id and an id that exists nowhere are
// refused identically (status, code and message): no existence oracle.
// mk builds the request for an id.
func (w *world) alike(t testing.TB, c *testkit.Client, status int, code string, mk func(id string) (method, path string, body any), foreign []string, ghost string) {
	t.Helper()
	m, p, b := mk(ghost)
	want := w.refused(t, c, m, p, b, status, code)
	for _, id := range foreign {
		m, p, b := mk(id)
		got := w.refused(t, c, m, p, b, status, code)
		require.Equal(t, errorObject(t, want), errorObject(t, got), "%s %s: a foreign id must be refused like one that does not exist", m, p)
	}
}

func errorObject(t testing.TB, r testkit.Response) any {
	t.Helper()
	var m map[string]any
	require.NoError(t, json.Unmarshal(r.Body, &m))
	return m["error"]
}

// head is the user's inbox head.
func head(t testing.TB, c *testkit.Client) uint64 {
	t.Helper()
	_, cur := c.PollAll(0)
	return cur
}

// ---- unauthenticated routes ----

func tryNegotiate(t *testing.T, w *world) {
	anon := testkit.NewClient(t, w.n.URL())
	requireStatus(t, w.do(t, anon, "GET", "/v1/negotiate", nil), http.StatusOK)
	requireStatus(t, w.do(t, w.carol, "GET", "/v1/negotiate?user_id="+w.alice.ID, nil), http.StatusOK)
}

func trySignup(t *testing.T, w *world) {
	anon := testkit.NewClient(t, w.n.URL())
	// alice's name in another case: taken (usernames are public anyway),
	// and alice's account is left as it was.
	w.refused(t, anon, "POST", "/v1/auth/signup", map[string]any{"username": strings.ToUpper(username(w.alice)), "password": "another password"},
		http.StatusConflict, "username_taken")
	// No id can be chosen or smuggled in.
	for _, f := range []string{"id", "user_id", "device_id"} {
		w.refused(t, anon, "POST", "/v1/auth/signup", map[string]any{"username": testkit.UniqueName("azx"), "password": "another password", f: w.alice.ID},
			http.StatusBadRequest, "unknown_field")
	}
}

func tryLogin(t *testing.T, w *world) {
	anon := testkit.NewClient(t, w.n.URL())
	// A wrong password for alice is refused like an account that does not
	// exist.
	got := w.refused(t, anon, "POST", "/v1/auth/login", map[string]any{"username": username(w.alice), "password": "not alices password"},
		http.StatusUnauthorized, "invalid_credentials")
	want := w.refused(t, anon, "POST", "/v1/auth/login", map[string]any{"username": "nobody_" + w.tag, "password": "not alices password"},
		http.StatusUnauthorized, "invalid_credentials")
	require.Equal(t, errorObject(t, want), errorObject(t, got))
	// Nobody logs in as a device or user of their choosing.
	w.refused(t, anon, "POST", "/v1/auth/login", map[string]any{"username": username(w.carol), "password": password, "device_id": w.aliceDevice},
		http.StatusBadRequest, "unknown_field")
}

// ---- the caller's own device and profile ----

func tryLogout(t *testing.T, w *world) {
	// carol logs a second device out, naming alice's device and user in
	// the body and the query: only her own device ends.
	c2, _ := loginDevice(t, w.carol)
	q := "?device_id=" + w.aliceDevice + "&user_id=" + w.alice.ID
	requireStatus(t, w.do(t, c2, "POST", "/v1/auth/logout"+q, map[string]any{"device_id": w.aliceDevice, "user_id": w.alice.ID}), http.StatusNoContent)
	w.refused(t, c2, "GET", "/v1/me", nil, http.StatusUnauthorized, "unauthorized")
	for _, c := range []*testkit.Client{w.alice, w.bob, w.dave, w.carol} {
		requireStatus(t, c.Do("GET", "/v1/me", nil), http.StatusOK)
	}
}

func tryHeartbeat(t *testing.T, w *world) {
	requireStatus(t, w.do(t, w.carol, "POST", "/v1/heartbeat?device_id="+w.aliceDevice, map[string]any{"device_id": w.aliceDevice}), http.StatusNoContent)
}

func tryMe(t *testing.T, w *world) {
	for _, q := range []string{"?id=" + w.alice.ID, "?user_id=" + w.alice.ID, "?access_token=" + w.alice.Token} {
		m := requireStatus(t, w.do(t, w.carol, "GET", "/v1/me"+q, nil), http.StatusOK)
		require.Equal(t, w.carol.ID, m["id"], "the header's token wins: /v1/me is always the caller")
	}
}

func tryPatchMe(t *testing.T, w *world) {
	for _, f := range []string{"id", "user_id", "username"} {
		w.refused(t, w.carol, "PATCH", "/v1/me", map[string]any{"display_name": "pwned", f: w.alice.ID}, http.StatusBadRequest, "unknown_field")
	}
	// With alice's id in the query only carol's own name changes (and is
	// put back).
	m := requireStatus(t, w.do(t, w.carol, "PATCH", "/v1/me?id="+w.alice.ID+"&user_id="+w.alice.ID, map[string]any{"display_name": "carol renamed"}), http.StatusOK)
	require.Equal(t, w.carol.ID, m["id"])
	requireStatus(t, w.carol.Do("PATCH", "/v1/me", map[string]any{"display_name": "azca"}), http.StatusOK)
}

// ---- users and friends ----

// requirePublicUser checks u is a public profile: no presence, nothing
// private.
func requirePublicUser(t testing.TB, u any) {
	t.Helper()
	m, ok := u.(map[string]any)
	require.True(t, ok, "user object: %v", u)
	require.ElementsMatch(t, []string{"id", "username", "display_name", "created_at"}, keys(m), "a stranger sees the public profile only: %v", m)
}

func trySearchUsers(t *testing.T, w *world) {
	// Profiles are public by design, presence is not.
	for _, c := range []*testkit.Client{w.bob, w.dave} {
		m := requireStatus(t, w.do(t, w.carol, "GET", "/v1/users?q="+username(c), nil), http.StatusOK)
		us := m["users"].([]any)
		require.Len(t, us, 1)
		requirePublicUser(t, us[0])
	}
	// What people wrote is not searchable through user search.
	for _, q := range []string{"ab first", "alice group", "g2 after", w.tag} {
		m := requireStatus(t, w.do(t, w.carol, "GET", "/v1/users?q="+urlQuery(q), nil), http.StatusOK)
		require.Empty(t, m["users"], "q=%s", q)
	}
}

func urlQuery(s string) string { return strings.ReplaceAll(s, " ", "+") }

func tryUser(t *testing.T, w *world) {
	for _, c := range []*testkit.Client{w.bob, w.dave} {
		requirePublicUser(t, requireStatus(t, w.do(t, w.carol, "GET", "/v1/users/"+c.ID, nil), http.StatusOK))
	}
	// Ids of other kinds are no users, whether they exist or not.
	w.alike(t, w.carol, http.StatusNotFound, "user_not_found", func(id string) (string, string, any) {
		return "GET", "/v1/users/" + id, nil
	}, []string{w.gid, w.msgAB, w.aliceDevice}, w.ghostUser)
}

func tryFriends(t *testing.T, w *world) {
	fl := friendList{}
	r := w.do(t, w.carol, "GET", "/v1/friends?user_id="+w.bob.ID+"&id="+w.alice.ID, nil)
	require.Equal(t, http.StatusOK, r.Status)
	r.Decode(t, &fl)
	require.Equal(t, []string{w.alice.ID}, ids(fl.Friends), "carol's own friends only")
	require.Empty(t, fl.Incoming)
	require.Empty(t, fl.Outgoing)
}

func tryAddFriend(t *testing.T, w *world) {
	// A request to bob is carol's own side: it shows bob without presence
	// and leaves alice and bob as they are; then carol withdraws it.
	m := requireStatus(t, w.do(t, w.carol, "PUT", "/v1/friends/"+w.bob.ID, nil), http.StatusOK)
	require.Equal(t, "requested", m["status"])
	fl := friendsOf(t, w.carol)
	require.Len(t, fl.Outgoing, 1)
	requirePublicUser(t, fl.Outgoing[0])
	requireStatus(t, w.carol.Do("DELETE", "/v1/friends/"+w.bob.ID, nil), http.StatusNoContent)
	// Ids of groups, messages and devices are no users.
	w.alike(t, w.carol, http.StatusNotFound, "user_not_found", func(id string) (string, string, any) {
		return "PUT", "/v1/friends/" + id, nil
	}, []string{w.gid, w.msgAB, w.bobDevice}, w.ghostUser)
}

func tryRemoveFriend(t *testing.T, w *world) {
	// carol can only end her own edges: naming bob ends nothing of
	// alice's and bob's.
	requireStatus(t, w.do(t, w.carol, "DELETE", "/v1/friends/"+w.bob.ID+"?user_id="+w.alice.ID, nil), http.StatusNoContent)
	requireStatus(t, w.do(t, w.carol, "DELETE", "/v1/friends/"+w.dave.ID, nil), http.StatusNoContent)
	w.alike(t, w.carol, http.StatusNotFound, "user_not_found", func(id string) (string, string, any) {
		return "DELETE", "/v1/friends/" + id, nil
	}, []string{w.gid, w.msgAB}, w.ghostUser)
}

// ---- groups ----

func tryGroups(t *testing.T, w *world) {
	m := requireStatus(t, w.do(t, w.carol, "GET", "/v1/groups?user_id="+w.alice.ID, nil), http.StatusOK)
	for _, g := range m["groups"].([]any) {
		id := g.(map[string]any)["id"]
		require.NotContains(t, []string{w.gid, w.gid2}, id)
	}
}

func tryCreateGroup(t *testing.T, w *world) {
	for _, f := range []string{"id", "owner_id", "conversation_id"} {
		v := w.gid
		if f == "owner_id" {
			v = w.alice.ID
		}
		w.refused(t, w.carol, "POST", "/v1/groups", map[string]any{"name": "mine", f: v}, http.StatusBadRequest, "unknown_field")
	}
	// Ids that are no users are refused, and no group is made.
	w.alike(t, w.carol, http.StatusNotFound, "user_not_found", func(id string) (string, string, any) {
		return "POST", "/v1/groups", map[string]any{"name": "mine", "members": []string{id}}
	}, []string{w.gid, w.msgG}, w.ghostUser)
	// A group of her own is a new group, not G.
	g := requireStatus(t, w.do(t, w.carol, "POST", "/v1/groups", map[string]any{"name": "carol's own"}), http.StatusCreated)
	require.NotEqual(t, w.gid, g["id"])
	require.Equal(t, []string{w.carol.ID}, memberIDs(t, g))
}

func tryGroup(t *testing.T, w *world) {
	w.alike(t, w.carol, http.StatusNotFound, "group_not_found", func(id string) (string, string, any) {
		return "GET", "/v1/groups/" + id, nil
	}, []string{w.gid, w.gid2, w.alice.ID, w.msgG}, w.ghostGroup)
}

func tryAddMember(t *testing.T, w *world) {
	// Whoever carol names, and whether or not they are members or exist,
	// the answer is the one for a group that does not exist.
	for _, uid := range []string{w.carol.ID, w.bob.ID, w.dave.ID, w.alice.ID, w.ghostUser} {
		w.alike(t, w.carol, http.StatusNotFound, "group_not_found", func(id string) (string, string, any) {
			return "POST", "/v1/groups/" + id + "/members", map[string]any{"user_id": uid}
		}, []string{w.gid, w.gid2}, w.ghostGroup)
	}
}

func tryRemoveMember(t *testing.T, w *world) {
	for _, uid := range []string{w.alice.ID, w.dave.ID, w.carol.ID, w.ghostUser} {
		w.alike(t, w.carol, http.StatusNotFound, "group_not_found", func(id string) (string, string, any) {
			return "DELETE", "/v1/groups/" + id + "/members/" + uid, nil
		}, []string{w.gid, w.gid2}, w.ghostGroup)
	}
	// A member who is not the owner may not remove others: 403, the one
	// refusal that does not hide the group (dave is in it).
	w.refused(t, w.dave, "DELETE", "/v1/groups/"+w.gid+"/members/"+w.alice.ID, nil, http.StatusForbidden, "forbidden")
}

// ---- messages, conversations, read markers, typing ----

func trySend(t *testing.T, w *world) {
	w.alike(t, w.carol, http.StatusNotFound, "group_not_found", func(id string) (string, string, any) {
		return "POST", "/v1/messages", map[string]any{"group_id": id, "content": "let me in", "client_msg_id": "c-g-" + id}
	}, []string{w.gid, w.gid2, w.alice.ID}, w.ghostGroup)
	w.alike(t, w.carol, http.StatusNotFound, "user_not_found", func(id string) (string, string, any) {
		return "POST", "/v1/messages", map[string]any{"to": id, "content": "hi"}
	}, []string{w.gid, w.msgAB, w.aliceDevice}, w.ghostUser)
	// Nobody writes as someone else or into a conversation of their
	// choosing.
	for f, v := range map[string]string{"from": w.alice.ID, "conversation_id": w.dab, "id": w.msgAB, "sender": w.bob.ID} {
		w.refused(t, w.carol, "POST", "/v1/messages", map[string]any{"to": w.bob.ID, "content": "spoof", f: v}, http.StatusBadRequest, "unknown_field")
	}
	// Idempotency keys are the sender's: alice's key gives carol a new
	// message of her own, never alice's, and no conflict that would say
	// the key was used.
	r := w.do(t, w.carol, "POST", "/v1/messages", map[string]any{"to": w.carol.ID, "content": "note to self", "client_msg_id": w.clientMsgID})
	m := requireStatus(t, r, http.StatusCreated)["message"].(map[string]any)
	require.Empty(t, r.Header.Get("Idempotent-Replayed"))
	require.NotEqual(t, w.msgAB, m["id"])
	require.Equal(t, w.carol.ID, m["from"])
}

func tryConversations(t *testing.T, w *world) {
	cs := conversations(t, w.carol)
	r := w.do(t, w.carol, "GET", "/v1/conversations?user_id="+w.alice.ID, nil)
	requireStatus(t, r, http.StatusOK)
	for _, c := range cs {
		require.NotContains(t, []string{w.dab, w.gconv, w.gconv2}, c["id"], "carol lists a conversation she is not in")
	}
	require.NotNil(t, findConv(cs, w.dac))
}

// foreignConvs are conversation ids carol does not belong to, in every
// spelling: the real ones, and others that name the same conversation.
func (w *world) foreignConvs() []string {
	a, b := w.alice.ID, w.bob.ID
	return []string{w.dab, w.gconv, w.gconv2,
		"d_" + b + "_" + a, "d_0" + a + "_" + b, "D_" + a + "_" + b, "d_" + a + "_" + b + "_", "g_0" + w.gid, "g_" + w.gid + "x",
		"d_" + a + "_" + w.ghostUser, "g_" + w.alice.ID, "g_" + w.msgG}
}

func (w *world) ghostConv() string { return "d_" + w.ghostUser + "_" + w.ghostGroup }

func tryHistory(t *testing.T, w *world) {
	for _, q := range []string{"", "?limit=200", "?before=" + w.ghostMsg, "?after=" + w.msgAB, "?before=" + w.msgBA + "&after=1", "?around=" + w.msgAB + "&limit=10"} {
		w.alike(t, w.carol, http.StatusNotFound, "conversation_not_found", func(id string) (string, string, any) {
			return "GET", "/v1/conversations/" + id + "/messages" + q, nil
		}, w.foreignConvs(), w.ghostConv())
	}
	// Filters of carol's own conversation that name others' messages
	// bound the page and show nothing else.
	for _, q := range []string{"?before=" + w.msgAB, "?after=" + w.msgAB, "?before=" + w.msgG2 + "&after=" + w.msgAB, "?after=1&limit=200"} {
		requireStatus(t, w.do(t, w.carol, "GET", "/v1/conversations/"+w.dac+"/messages"+q, nil), http.StatusOK)
	}
	// Jumping to another conversation's message from carol's own: 404
	// message_not_found as for a message that does not exist (SPEC §4).
	for _, id := range []string{w.msgAB, w.msgG, w.msgG2, w.ghostMsg} {
		r := w.do(t, w.carol, "GET", "/v1/conversations/"+w.dac+"/messages?around="+id+"&limit=5", nil)
		requireError(t, r, http.StatusNotFound, "message_not_found")
	}
}

func readUpTo(t testing.TB, c *testkit.Client, conv string) any {
	t.Helper()
	cv := findConv(conversations(t, c), conv)
	require.NotNil(t, cv)
	return cv["read_up_to"]
}

func tryMarkRead(t *testing.T, w *world) {
	for _, msg := range []string{w.msgAB, w.msgG, w.msgG2, w.ghostMsg} {
		w.alike(t, w.carol, http.StatusNotFound, "conversation_not_found", func(id string) (string, string, any) {
			return "POST", "/v1/conversations/" + id + "/read", map[string]any{"message_id": msg}
		}, w.foreignConvs(), w.ghostConv())
	}
	// carol's own read marker cannot be pointed at others' messages:
	// refused like a message that does not exist, and left where it was.
	before := readUpTo(t, w.carol, w.dac)
	w.alike(t, w.carol, http.StatusNotFound, "message_not_found", func(id string) (string, string, any) {
		return "POST", "/v1/conversations/" + w.dac + "/read", map[string]any{"message_id": id}
	}, []string{w.msgAB, w.msgBA, w.msgG, w.msgG2, w.gid}, w.ghostMsg)
	require.Equal(t, before, readUpTo(t, w.carol, w.dac))
	// No marker of someone else's can be named.
	w.refused(t, w.carol, "POST", "/v1/conversations/"+w.dac+"/read", map[string]any{"message_id": w.msgAB, "user_id": w.alice.ID},
		http.StatusBadRequest, "unknown_field")
}

// typingFrom returns the typing events of evs by user uid.
func typingFrom(evs []map[string]any, uid string) []map[string]any {
	var out []map[string]any
	for _, e := range evs {
		if e["type"] == "typing" && e["user_id"] == uid {
			out = append(out, e)
		}
	}
	return out
}

func tryTyping(t *testing.T, w *world) {
	// alice and dave poll, so typing reaches their devices' mailboxes.
	ha, hd := head(t, w.alice), head(t, w.dave)
	w.alike(t, w.carol, http.StatusNotFound, "conversation_not_found", func(id string) (string, string, any) {
		return "POST", "/v1/typing", map[string]any{"conversation_id": id}
	}, w.foreignConvs(), w.ghostConv())
	// Controls: members' typing arrives after carol's attempts; carol's
	// attempts, published first if at all, never do.
	requireStatus(t, w.bob.Do("POST", "/v1/typing", map[string]any{"conversation_id": w.dab}), http.StatusNoContent)
	requireStatus(t, w.alice.Do("POST", "/v1/typing", map[string]any{"conversation_id": w.gconv}), http.StatusNoContent)
	pa, pd := w.alice.Poll(ha), w.dave.Poll(hd)
	require.Len(t, typingFrom(pa.Events, w.bob.ID), 1, "control: bob's typing reaches alice")
	require.Len(t, typingFrom(pd.Events, w.alice.ID), 1, "control: alice's typing reaches dave")
	require.Empty(t, typingFrom(pa.Events, w.carol.ID))
	require.Empty(t, typingFrom(pd.Events, w.carol.ID))
}

// ---- realtime transports ----

// sentinel is a note carol writes to herself: once her connection has
// it, anything published before it would have arrived too.
func (w *world) sentinel(t testing.TB) string {
	t.Helper()
	s := "sentinel " + randHex(t)
	send(t, w.carol, map[string]any{"to": w.carol.ID, "content": s})
	return s
}

// victimTraffic makes the victims produce events carol must not see: a
// new message to alice, typing in alice's conversations, a group post.
func (w *world) victimTraffic(t testing.TB) {
	t.Helper()
	send(t, w.bob, map[string]any{"to": w.alice.ID, "content": w.secret("live to alice")})
	send(t, w.dave, map[string]any{"group_id": w.gid, "content": w.secret("live in group")})
	requireStatus(t, w.bob.Do("POST", "/v1/typing", map[string]any{"conversation_id": w.dab}), http.StatusNoContent)
	requireStatus(t, w.dave.Do("POST", "/v1/typing", map[string]any{"conversation_id": w.gconv}), http.StatusNoContent)
}

// checkEvent fails on an event carol must not get: any secret, typing in
// a conversation that is not hers, presence of someone who is not her
// friend, a message of a conversation that is not hers.
func (w *world) checkEvent(t testing.TB, how string, ev map[string]any, raw []byte) {
	t.Helper()
	w.noLeak(t, how, raw)
	switch ev["type"] {
	case "typing":
		require.NotContains(t, []string{w.dab, w.gconv, w.gconv2}, ev["conversation_id"], "%s: %s", how, raw)
	case "presence":
		require.Equal(t, w.alice.ID, ev["user_id"], "%s: presence of someone who is not carol's friend: %s", how, raw)
	case "message":
		conv := ev["message"].(map[string]any)["conversation_id"]
		require.NotContains(t, []string{w.dab, w.gconv}, conv, "%s: %s", how, raw)
	}
}

// pollAttempts are what carol tries on both polling transports: her own
// inbox whatever cursor or ids she names, and a cursor beyond her head
// pulled back to her head (not alice's, which is further).
func (w *world) pollAttempts(t *testing.T, path, extra string) {
	hc, ha := head(t, w.carol), head(t, w.alice)
	require.Less(t, hc, ha, "alice's inbox must be the longer one for this check to mean something")
	for _, q := range []string{"cursor=0", "cursor=0&user_id=" + w.alice.ID + "&device_id=" + w.aliceDevice, fmt.Sprintf("cursor=%d", ha), fmt.Sprintf("cursor=%d", ha+1_000_000)} {
		r := w.do(t, w.carol, "GET", path+"?"+q+extra, nil)
		var p testkit.PollPage
		requireStatus(t, r, http.StatusOK)
		r.Decode(t, &p)
		for _, e := range p.Events {
			raw, _ := json.Marshal(e)
			w.checkEvent(t, path+"?"+q, e, raw)
		}
		require.Equal(t, hc, p.Cursor, "%s?%s: carol's own head (a cursor beyond it is pulled back to it), not alice's (%d)", path, q, ha)
	}
	// Cursors are numbers of the caller's own inbox; nothing else parses.
	w.refused(t, w.carol, "GET", path+"?cursor="+w.dab+extra, nil, http.StatusBadRequest, "invalid_cursor")
}

func tryPoll(t *testing.T, w *world) { w.pollAttempts(t, "/v1/poll", "") }

func tryLongPoll(t *testing.T, w *world) { w.pollAttempts(t, "/v1/longpoll", "&wait=0") }

func livePoll(t *testing.T, w *world) {
	hc := head(t, w.carol)
	w.carol.Poll(hc) // carol's polling device is known before the traffic
	w.attempts++
	w.victimTraffic(t)
	s := w.sentinel(t)
	w.attempts++
	seen := false
	for !seen {
		p := w.carol.Poll(hc)
		for _, e := range p.Events {
			raw, _ := json.Marshal(e)
			w.checkEvent(t, "poll", e, raw)
			seen = seen || bytes.Contains(raw, []byte(s))
		}
		hc = p.Cursor
	}
}

// waitFor waits until cond holds (it watches a gauge; no time bound but
// the test's).
func waitFor(cond func() bool) {
	for !cond() {
		runtime.Gosched()
		time.Sleep(time.Millisecond)
	}
}

func liveLongPoll(t *testing.T, w *world) {
	hc := head(t, w.carol)
	type answer struct {
		r   testkit.Response
		err error
	}
	ch := make(chan answer, 1)
	go func() {
		r, err := w.carol.TryDo("GET", fmt.Sprintf("/v1/longpoll?cursor=%d&wait=60", hc), nil)
		ch <- answer{r, err}
	}()
	w.attempts++
	// Held (its mailbox subscribed) before the victims talk.
	waitFor(func() bool { return w.n.Service().Stats().Polls > 0 })
	w.victimTraffic(t)
	s := w.sentinel(t)
	for seen := false; !seen; {
		a := <-ch
		require.NoError(t, a.err)
		var p testkit.PollPage
		requireStatus(t, a.r, http.StatusOK)
		a.r.Decode(t, &p)
		for _, e := range p.Events {
			raw, _ := json.Marshal(e)
			w.checkEvent(t, "longpoll", e, raw)
			seen = seen || bytes.Contains(raw, []byte(s))
		}
		if !seen { // woken by something of carol's own: poll on
			hc = p.Cursor
			go func() {
				r, err := w.carol.TryDo("GET", fmt.Sprintf("/v1/longpoll?cursor=%d&wait=60", hc), nil)
				ch <- answer{r, err}
			}()
		}
	}
}

// sseStream is an open SSE response read by a goroutine.
type sseStream struct {
	events chan []byte // each event's data
	cancel context.CancelFunc
}

func (w *world) openSSE(t *testing.T, c *testkit.Client, query string) *sseStream {
	t.Helper()
	w.attempts++
	ctx, cancel := context.WithCancel(context.Background())
	req, err := http.NewRequestWithContext(ctx, "GET", w.n.URL()+"/v1/sse?"+query, nil)
	require.NoError(t, err)
	req.Header.Set("Authorization", "Bearer "+c.Token)
	resp, err := http.DefaultClient.Do(req)
	require.NoError(t, err)
	require.Equal(t, http.StatusOK, resp.StatusCode)
	require.Equal(t, "text/event-stream", resp.Header.Get("Content-Type"))
	s := &sseStream{events: make(chan []byte, 1024), cancel: cancel}
	go func() {
		defer close(s.events)
		defer resp.Body.Close()
		sc := bufio.NewScanner(resp.Body)
		sc.Buffer(make([]byte, 1<<20), 4<<20)
		for sc.Scan() {
			if d, ok := strings.CutPrefix(sc.Text(), "data: "); ok {
				s.events <- []byte(d)
			}
		}
	}()
	t.Cleanup(func() {
		cancel()
		for range s.events {
		}
	})
	return s
}

// next is the stream's next event; the guard only stops a hung test.
func (s *sseStream) next(t testing.TB) (map[string]any, []byte) {
	t.Helper()
	select {
	case raw, ok := <-s.events:
		require.True(t, ok, "the stream ended")
		var ev map[string]any
		require.NoError(t, json.Unmarshal(raw, &ev))
		return ev, raw
	case <-time.After(time.Minute):
		t.Fatal("no event on the stream")
		return nil, nil
	}
}

func trySSE(t *testing.T, w *world) {
	hc, ha := head(t, w.carol), head(t, w.alice)
	// A cursor beyond carol's head (alice's head, and far beyond) comes
	// back as carol's head, with ids in the query ignored.
	for _, q := range []string{fmt.Sprintf("cursor=%d&user_id=%s", ha, w.alice.ID), fmt.Sprintf("cursor=%d", ha+1_000_000)} {
		s := w.openSSE(t, w.carol, q)
		ev, raw := s.next(t)
		w.checkEvent(t, "sse?"+q, ev, raw)
		require.Equal(t, "cursor", ev["type"], "%s", raw)
		require.EqualValues(t, hc, ev["cursor"], "carol's head, not alice's (%d)", ha)
		s.cancel()
	}
	w.refused(t, w.carol, "GET", "/v1/sse?cursor="+w.dab, nil, http.StatusBadRequest, "invalid_cursor")
}

func liveSSE(t *testing.T, w *world) {
	s := w.openSSE(t, w.carol, fmt.Sprintf("cursor=%d&user_id=%s", head(t, w.carol), w.alice.ID))
	readUntil := func(sentinel string) {
		for {
			ev, raw := s.next(t)
			w.checkEvent(t, "sse", ev, raw)
			if bytes.Contains(raw, []byte(sentinel)) {
				return
			}
		}
	}
	readUntil(w.sentinel(t)) // the stream is live
	w.victimTraffic(t)
	readUntil(w.sentinel(t))
}

// wsConn is carol's socket.
type wsConn struct {
	w *world
	c *websocket.Conn
}

func (w *world) dialWS(t *testing.T, c *testkit.Client, query string) *wsConn {
	t.Helper()
	w.attempts++
	u := "ws://" + w.n.Addr() + "/v1/ws?" + query
	conn, resp, err := websocket.DefaultDialer.Dial(u, http.Header{"Authorization": {"Bearer " + c.Token}})
	require.NoError(t, err)
	resp.Body.Close()
	t.Cleanup(func() { conn.Close() })
	return &wsConn{w: w, c: conn}
}

// next reads a frame; the deadline only stops a hung test. Events are
// checked; error frames are left to the caller, which knows the frame
// they answer (they echo its client_msg_id).
func (s *wsConn) next(t testing.TB) (map[string]any, []byte) {
	t.Helper()
	_ = s.c.SetReadDeadline(time.Now().Add(time.Minute))
	_, raw, err := s.c.ReadMessage()
	require.NoError(t, err)
	var ev map[string]any
	require.NoError(t, json.Unmarshal(raw, &ev))
	if ev["type"] != "error" {
		s.w.checkEvent(t, "ws", ev, raw)
	}
	return ev, raw
}

// refused writes a frame and returns the error frame that answers it. A
// probe (an unknown frame type, whose error echoes its client_msg_id)
// follows each frame: frames are answered in order, so a frame that was
// wrongly accepted, which gets no answer, shows as the probe's error
// coming first.
func (s *wsConn) refused(t testing.TB, frame map[string]any, code string) map[string]any {
	t.Helper()
	s.w.attempts++
	b, _ := json.Marshal(frame)
	require.NoError(t, s.c.WriteMessage(websocket.TextMessage, b))
	probe := "probe-" + randHex(t)
	require.NoError(t, s.c.WriteJSON(map[string]any{"type": "probe", "client_msg_id": probe}))
	var answer map[string]any
	for {
		ev, raw := s.next(t)
		if ev["type"] != "error" {
			continue
		}
		if ev["client_msg_id"] == probe {
			require.NotNil(t, answer, "frame %s was accepted: no error answered it", b)
			return answer
		}
		require.Nil(t, answer, "two answers to frame %s", b)
		s.w.noLeak(t, "ws frame "+string(b), raw)
		e := ev["error"].(map[string]any)
		require.Equal(t, code, e["code"], "frame %s: %s", b, raw)
		require.NotEmpty(t, e["message"])
		answer = e
	}
}

// alike is world.alike for frames.
func (s *wsConn) alike(t testing.TB, code string, mk func(id string) map[string]any, foreign []string, ghost string) {
	t.Helper()
	want := s.refused(t, mk(ghost), code)
	for _, id := range foreign {
		require.Equal(t, want, s.refused(t, mk(id), code), "frame naming %s: a foreign id must be refused like one that does not exist", id)
	}
}

func tryWS(t *testing.T, w *world) {
	hc, ha := head(t, w.carol), head(t, w.alice)
	s := w.dialWS(t, w.carol, fmt.Sprintf("cursor=%d&user_id=%s&device_id=%s", ha+1_000_000, w.alice.ID, w.aliceDevice))
	ev, raw := s.next(t)
	require.Equal(t, "cursor", ev["type"], "%s", raw)
	require.EqualValues(t, hc, ev["cursor"], "carol's head, not alice's (%d)", ha)

	s.alike(t, "group_not_found", func(id string) map[string]any {
		return map[string]any{"type": "send", "group_id": id, "content": "let me in", "client_msg_id": "ws-" + id}
	}, []string{w.gid, w.gid2, w.alice.ID}, w.ghostGroup)
	s.alike(t, "conversation_not_found", func(id string) map[string]any {
		return map[string]any{"type": "typing", "conversation_id": id}
	}, w.foreignConvs(), w.ghostConv())
	// (conversation_id is not tried: frames share one field set, and a
	// send frame ignores the typing frame's conversation_id.)
	for f, v := range map[string]string{"from": w.alice.ID, "user_id": w.alice.ID, "id": w.msgAB} {
		s.refused(t, map[string]any{"type": "send", "to": w.bob.ID, "content": "spoof", f: v}, "unknown_field")
	}
	// There is no read-marker frame: one naming alice's conversation is
	// an unknown frame (its type is read first, then the frame strictly
	// as that type) and moves nothing.
	s.refused(t, map[string]any{"type": "read", "conversation_id": w.dab}, "unknown_frame_type")
	s.refused(t, map[string]any{"type": "read", "conversation_id": w.dab, "message_id": w.msgBA}, "unknown_frame_type")
	s.refused(t, map[string]any{"type": "mark_read", "conversation_id": w.gconv, "message_id": w.msgG}, "unknown_frame_type")
}

func liveWS(t *testing.T, w *world) {
	s := w.dialWS(t, w.carol, fmt.Sprintf("cursor=%d", head(t, w.carol)))
	readUntil := func(sentinel string) {
		for {
			_, raw := s.next(t)
			if bytes.Contains(raw, []byte(sentinel)) {
				return
			}
		}
	}
	readUntil(w.sentinel(t)) // the socket is live
	w.victimTraffic(t)
	readUntil(w.sentinel(t))
}

// ---- finding things in history ----

func trySearch(t *testing.T, w *world) {
	// Never another conversation's messages, whatever the filters.
	for _, q := range []string{"ab+first", "alice+group", "g2+after", "live+to", w.tag} {
		for _, f := range []string{"", "&before=" + w.ghostMsg, "&limit=100"} {
			r := w.do(t, w.carol, "GET", "/v1/search?q="+q+f, nil)
			requireStatus(t, r, http.StatusOK)
		}
	}
	// A conversation filter naming another's conversation is refused
	// like one that does not exist.
	for _, conv := range append(w.foreignConvs(), w.ghostConv()) {
		r := w.do(t, w.carol, "GET", "/v1/search?q="+w.tag+"&conversation_id="+conv, nil)
		requireError(t, r, http.StatusNotFound, "conversation_not_found")
	}
}

func tryMentions(t *testing.T, w *world) {
	// alice wrote @carol in conversations carol is not in: no mention.
	for _, q := range []string{"", "?before=" + w.ghostMsg, "?limit=100&user_id=" + w.alice.ID} {
		m := requireStatus(t, w.do(t, w.carol, "GET", "/v1/mentions"+q, nil), http.StatusOK)
		require.Empty(t, m["messages"])
	}
}

// ---- bad tokens on every authenticated route ----

// concretePath fills a route pattern with the victims' real ids, so a
// request that got past authentication would act on them.
func (w *world) concretePath(route string) string {
	_, p, _ := strings.Cut(route, " ")
	parts := strings.Split(p, "/")
	for i, s := range parts {
		switch {
		case s == ":uid":
			parts[i] = w.dave.ID
		case strings.HasPrefix(s, ":") && strings.HasPrefix(p, "/v1/groups/"):
			parts[i] = w.gid
		case strings.HasPrefix(s, ":") && strings.HasPrefix(p, "/v1/conversations/"):
			parts[i] = w.dab
		case strings.HasPrefix(s, ":") && (strings.HasPrefix(p, "/v1/users/") || strings.HasPrefix(p, "/v1/friends/")):
			parts[i] = w.bob.ID
		case strings.HasPrefix(s, ":"):
			parts[i] = w.ghostUser
		case s == "*":
			parts[i] = "x"
		}
	}
	return strings.Join(parts, "/")
}

// badTokenBody is a body that would change the victims' state if the
// request were let through.
func (w *world) badTokenBody(route string) any {
	switch route {
	case "POST /v1/messages":
		return map[string]any{"to": w.bob.ID, "content": "forged"}
	case "POST /v1/groups":
		return map[string]any{"name": "forged", "members": []string{w.bob.ID}}
	case "POST /v1/groups/:id/members":
		return map[string]any{"user_id": w.carol.ID}
	case "POST /v1/conversations/:id/read":
		return map[string]any{"message_id": w.msgAB}
	case "PATCH /v1/me":
		return map[string]any{"display_name": "forged"}
	case "POST /v1/typing":
		return map[string]any{"conversation_id": w.dab}
	case "POST /v1/auth/signup", "POST /v1/auth/login":
		return nil
	}
	return map[string]any{}
}

// rawDo sends a request with exactly the Authorization header given
// (none if empty).
func (w *world) rawDo(t testing.TB, method, path, auth string, body any) testkit.Response {
	t.Helper()
	w.attempts++
	var rd io.Reader
	if body != nil {
		b, _ := json.Marshal(body)
		rd = bytes.NewReader(b)
	}
	req, err := http.NewRequest(method, w.n.URL()+path, rd)
	require.NoError(t, err)
	if auth != "" {
		req.Header.Set("Authorization", auth)
	}
	req.Header.Set("Content-Type", "application/json")
	resp, err := http.DefaultClient.Do(req)
	require.NoError(t, err)
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	require.NoError(t, err)
	return testkit.Response{Status: resp.StatusCode, Header: resp.Header, Body: b}
}

// badTokens sends every authenticated route a token of a device that has
// logged out (revoked) or a malformed Authorization header carrying
// alice's valid token: each is 401 and changes nothing.
func (w *world) badTokens(t *testing.T, revoked bool) {
	w.route = "bad tokens"
	open := map[string]bool{"GET /v1/negotiate": true, "POST /v1/auth/signup": true, "POST /v1/auth/login": true}
	var routes []string
	for _, r := range w.n.Routes() {
		if !authzExempt(r) && !open[r] {
			routes = append(routes, r)
		}
	}
	require.NotEmpty(t, routes)
	type cred struct{ auth, query string }
	var creds []cred
	if revoked {
		old, _ := loginDevice(t, w.alice)
		requireStatus(t, old.Do("POST", "/v1/auth/logout", nil), http.StatusNoContent)
		w.secrets = append(w.secrets, old.Token)
		creds = []cred{{auth: "Bearer " + old.Token}, {query: "access_token=" + old.Token}, {auth: "bearer " + old.Token}}
	} else {
		tok := w.alice.Token
		basic := base64.StdEncoding.EncodeToString([]byte(username(w.alice) + ":" + password))
		creds = []cred{
			{auth: "Bearer"}, {auth: "Bearer "}, {auth: tok}, {auth: "Bearer" + tok}, {auth: "Token " + tok},
			{auth: "Basic " + basic}, {auth: "Bearer " + tok + "x"}, {auth: "Bearer " + tok[:len(tok)-1]},
			{auth: "Bearer " + tok + " " + tok}, {auth: "Bearer " + strings.ToUpper(tok)},
			// A header that is not Bearer is refused even with a valid
			// token in the query (docs/protocol.md, Authentication).
			{auth: "Basic " + basic, query: "access_token=" + tok}, {auth: "Bearer x", query: "access_token=" + tok},
			{query: "access_token=" + tok + "x"}, {query: "access_token="},
		}
	}
	st := w.state(t)
	for _, route := range routes {
		method, _, _ := strings.Cut(route, " ")
		path := w.concretePath(route)
		for _, c := range creds {
			p := path
			if c.query != "" {
				p += "?" + c.query
			}
			r := w.rawDo(t, method, p, c.auth, w.badTokenBody(route))
			requireError(t, r, http.StatusUnauthorized, "unauthorized")
			require.Equal(t, `Bearer realm="chatgate"`, r.Header.Get("WWW-Authenticate"), "%s %s", method, p)
			w.noLeak(t, method+" "+path, r.Body)
		}
	}
	w.requireState(t, st)
	t.Logf("%d routes × %d credentials refused", len(routes), len(creds))
}
