package node_test

import (
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/chatgate/chatgate/internal/testkit"
)

// upgradeFixture is what release f94359d (buntdb, one chatgate.db) wrote,
// with the API answers it gave: core/embedded/testdata/mkfixture.go made
// both. Whatever the on-disk format becomes, a node started on a copy of
// this directory must migrate it and answer the same.
const upgradeFixture = "../core/embedded/testdata/buntdb-v1"

// upExpect is the fixture's expect.json (the fields the test uses).
type upExpect struct {
	Format     string `json:"format"`
	Release    string `json:"release"`
	DBSHA256   string `json:"db_sha256"`
	PushSecret string `json:"push_secret"`
	GroupID    string `json:"group_id"`
	Users      []struct {
		Name        string   `json:"username"`
		ID          string   `json:"id"`
		Password    string   `json:"password"`
		DisplayName string   `json:"display_name"`
		Tokens      []string `json:"tokens"`
		Revoked     []string `json:"revoked_tokens"`
		Head        uint64   `json:"inbox_head"`
	} `json:"users"`
	Answers  []upAnswer `json:"answers"`
	Presence struct {
		Observer string `json:"observer"`
		Users    map[string]struct {
			Status       string `json:"status"`
			LastActiveAt any    `json:"last_active_at"`
		} `json:"users"`
	} `json:"presence"`
	Idempotency []struct {
		User    string          `json:"user"`
		Body    map[string]any  `json:"body"`
		Status  int             `json:"status"`
		Replay  bool            `json:"replayed"`
		Message json.RawMessage `json:"message"`
		Code    string          `json:"code"`
	} `json:"idempotency"`
	PendingPushes []struct {
		ID      string          `json:"id"`
		Payload json.RawMessage `json:"payload"`
	} `json:"pending_pushes"`
	DeliveredPushes []string `json:"delivered_pushes"`
}

// upAnswer is one recorded API answer: Body lacks the presence fields of
// friends and group members.
type upAnswer struct {
	User   string          `json:"user"`
	Method string          `json:"method"`
	Path   string          `json:"path"`
	Status int             `json:"status"`
	Body   json.RawMessage `json:"body"`
}

func upLoad(t *testing.T) upExpect {
	t.Helper()
	raw, err := os.ReadFile(filepath.Join(upgradeFixture, "expect.json"))
	require.NoError(t, err)
	var ex upExpect
	require.NoError(t, json.Unmarshal(raw, &ex))
	require.Equal(t, "chatgate-upgrade-fixture/1", ex.Format)
	require.NotEmpty(t, ex.Users)
	require.NotEmpty(t, ex.Answers)
	require.NotEmpty(t, ex.PendingPushes)
	db, err := os.ReadFile(filepath.Join(upgradeFixture, "chatgate.db"))
	require.NoError(t, err)
	sum := sha256.Sum256(db)
	require.Equal(t, ex.DBSHA256, hex.EncodeToString(sum[:]),
		"%s/chatgate.db is not the file expect.json describes: the fixture is never opened in place or edited, only regenerated with mkfixture.go", upgradeFixture)
	return ex
}

// upCopyFixture copies the fixture's data files (everything but
// expect.json) into a fresh directory: the committed copy is never opened.
func upCopyFixture(t *testing.T) string {
	t.Helper()
	dir := t.TempDir()
	ents, err := os.ReadDir(upgradeFixture)
	require.NoError(t, err)
	for _, e := range ents {
		if e.Name() == "expect.json" || !e.Type().IsRegular() {
			continue
		}
		b, err := os.ReadFile(filepath.Join(upgradeFixture, e.Name()))
		require.NoError(t, err)
		require.NoError(t, os.WriteFile(filepath.Join(dir, e.Name()), b, 0o600))
	}
	return dir
}

// upWebhook accepts every push and reports each delivery id on a channel.
type upWebhook struct {
	srv    *httptest.Server
	secret []byte
	ids    chan string

	mu  sync.Mutex
	got []upPush
}

type upPush struct {
	ID      string // X-Chatgate-Delivery
	Payload json.RawMessage
	SigErr  string // "" when the signature checks out
}

func upWebhookStart(t *testing.T, secret string) *upWebhook {
	w := &upWebhook{secret: []byte(secret), ids: make(chan string, 1024)}
	w.srv = httptest.NewServer(http.HandlerFunc(func(rw http.ResponseWriter, r *http.Request) {
		body, err := io.ReadAll(r.Body)
		p := upPush{ID: r.Header.Get("X-Chatgate-Delivery"), Payload: body}
		if err != nil {
			p.SigErr = err.Error()
		} else if ok, why := whVerify(w.secret, r.Header.Get("X-Chatgate-Timestamp"), r.Header.Get("X-Chatgate-Signature"), body); !ok {
			p.SigErr = why
		}
		w.mu.Lock()
		w.got = append(w.got, p)
		w.mu.Unlock()
		select {
		case w.ids <- p.ID:
		default: // more than the buffer: the count check below fails anyway
		}
		rw.WriteHeader(http.StatusOK)
	}))
	t.Cleanup(w.srv.Close)
	return w
}

func (w *upWebhook) URL() string { return w.srv.URL + "/push" }

func (w *upWebhook) all() []upPush {
	w.mu.Lock()
	defer w.mu.Unlock()
	return slices.Clone(w.got)
}

// await waits until every id in want has been delivered.
func (w *upWebhook) await(t *testing.T, want []string, timeout time.Duration) {
	t.Helper()
	missing := map[string]bool{}
	for _, id := range want {
		missing[id] = true
	}
	for _, p := range w.all() {
		delete(missing, p.ID)
	}
	deadline := time.NewTimer(timeout)
	defer deadline.Stop()
	for len(missing) > 0 {
		select {
		case id := <-w.ids:
			delete(missing, id)
		case <-deadline.C:
			t.Fatalf("pending pushes not delivered within %v: missing %v, got %d deliveries", timeout, missing, len(w.all()))
		}
	}
}

// upStripPresence drops what changes with every request: the presence
// fields of friends (GET /v1/friends) and group members (GET
// /v1/groups/{id}), and the ephemeral events (presence, typing: no seq)
// that polls return besides the inbox.
func upStripPresence(path string, v any) any {
	m, ok := v.(map[string]any)
	if !ok {
		return v
	}
	list := ""
	switch rest, isGroup := strings.CutPrefix(path, "/v1/groups/"); {
	case strings.HasPrefix(path, "/v1/poll?"):
		if evs, ok := m["events"].([]any); ok {
			m["events"] = upDurable(evs)
		}
		return m
	case path == "/v1/friends":
		list = "friends"
	case isGroup && !strings.Contains(rest, "/"):
		list = "members"
	default:
		return v
	}
	xs, _ := m[list].([]any)
	for _, x := range xs {
		if o, ok := x.(map[string]any); ok {
			delete(o, "status")
			delete(o, "last_active_at")
		}
	}
	return m
}

// upDurable keeps the durable events (those with a seq).
func upDurable[E any](evs []E) []E {
	out := make([]E, 0, len(evs))
	for _, e := range evs {
		if o, ok := any(e).(map[string]any); ok {
			if _, durable := o["seq"]; !durable {
				continue
			}
		}
		out = append(out, e)
	}
	return out
}

// upSide is one running node and a client per fixture user, on the
// user's first still-valid token.
type upSide struct {
	t  *testing.T
	ex upExpect
	by map[string]*testkit.Client
}

func upClients(t *testing.T, base string, ex upExpect) *upSide {
	s := &upSide{t: t, ex: ex, by: map[string]*testkit.Client{}}
	for _, u := range ex.Users {
		c := testkit.NewClient(t, base)
		c.Token, c.ID = u.Tokens[0], u.ID
		s.by[u.Name] = c
	}
	return s
}

// answer asks what a recorded answer asked and returns the status and the
// body without presence fields, as JSON.
func (s *upSide) answer(a upAnswer) (int, string) {
	s.t.Helper()
	r := s.by[a.User].Do(a.Method, a.Path, nil)
	var v any
	require.NoError(s.t, json.Unmarshal(r.Body, &v), "%s %s as %s: %s", a.Method, a.Path, a.User, r.Body)
	b, err := json.Marshal(upStripPresence(a.Path, v))
	require.NoError(s.t, err)
	return r.Status, string(b)
}

type upResult struct {
	Status int
	Body   string
}

// snapshot asks every recorded question (and extra ones).
func (s *upSide) snapshot(extra ...upAnswer) []upResult {
	s.t.Helper()
	var out []upResult
	for _, a := range append(slices.Clone(s.ex.Answers), extra...) {
		st, body := s.answer(a)
		out = append(out, upResult{st, body})
	}
	return out
}

// requireRecorded checks that every recorded answer is given again.
func (s *upSide) requireRecorded() {
	s.t.Helper()
	for _, a := range s.ex.Answers {
		st, body := s.answer(a)
		require.Equal(s.t, a.Status, st, "%s %s as %s: %s", a.Method, a.Path, a.User, body)
		require.JSONEq(s.t, string(a.Body), body, "%s %s as %s", a.Method, a.Path, a.User)
	}
}

// requireAuth checks that every still-valid token authenticates as its
// user, every revoked one gets 401, and each old password logs in (the
// first user's with the username in upper case) with the inbox head in
// heads as cursor.
func (s *upSide) requireAuth(base string, heads map[string]uint64) {
	t := s.t
	t.Helper()
	for i, u := range s.ex.Users {
		for _, tok := range u.Tokens {
			c := testkit.NewClient(t, base)
			c.Token = tok
			me := requireStatus(t, c.Do("GET", "/v1/me", nil), http.StatusOK)
			require.Equal(t, u.ID, me["id"], "token of %s", u.Name)
		}
		for _, tok := range u.Revoked {
			c := testkit.NewClient(t, base)
			c.Token = tok
			requireError(t, c.Do("GET", "/v1/me", nil), http.StatusUnauthorized, "unauthorized")
		}
		name := u.Name
		if i == 0 {
			name = strings.ToUpper(name) // usernames log in case-insensitively
		}
		c := testkit.NewClient(t, base)
		in := map[string]any{"username": name, "password": u.Password, "device": "after-upgrade"}
		m := requireStatus(t, c.Do("POST", "/v1/auth/login", in), http.StatusOK)
		me := requireStatus(t, s.by[u.Name].Do("GET", "/v1/me", nil), http.StatusOK)
		require.Equal(t, me, m["user"], "login of %s", u.Name)
		require.Equal(t, float64(heads[u.Name]), m["cursor"], "login of %s answers the inbox head", u.Name)
		tok, _ := m["token"].(string)
		require.NotEmpty(t, tok)
		c.Token = tok
		require.Equal(t, http.StatusOK, c.Do("GET", "/v1/me", nil).Status)
		// A new device's logout leaves the old ones signed in.
		require.Equal(t, http.StatusNoContent, c.Do("POST", "/v1/auth/logout", nil).Status)
	}
	wrong := testkit.NewClient(t, base)
	requireError(t, wrong.Do("POST", "/v1/auth/login", map[string]any{"username": s.ex.Users[0].Name, "password": s.ex.Users[0].Password + "x"}),
		http.StatusUnauthorized, "invalid_credentials")
}

// requireIdempotent checks that every stored client_msg_id is kept: a
// replay answers the stored message, a conflict is refused, and neither
// stores anything (requireNext then finds the inboxes where they were).
func (s *upSide) requireIdempotent() {
	t := s.t
	t.Helper()
	for _, ic := range s.ex.Idempotency {
		r := s.by[ic.User].Do("POST", "/v1/messages", ic.Body)
		require.Equal(t, ic.Status, r.Status, "%v: %s", ic.Body, r.Body)
		if ic.Replay {
			require.Equal(t, "true", r.Header.Get("Idempotent-Replayed"), "%v", ic.Body)
			require.JSONEq(t, fmt.Sprintf(`{"message":%s}`, ic.Message), string(r.Body))
		} else {
			requireError(t, r, ic.Status, ic.Code)
		}
	}
}

// requireNext sends a message and checks it is the next event of both
// inboxes: seq head+1, and the only event after the old head.
func (s *upSide) requireNext(from, to string, heads map[string]uint64, maxOld uint64, content, cmid string) map[string]any {
	t := s.t
	t.Helper()
	// The recipient is active: no push for this message.
	require.Equal(t, http.StatusNoContent, s.by[to].Do("POST", "/v1/heartbeat", nil).Status)
	r := s.by[from].Do("POST", "/v1/messages", map[string]any{"to": s.by[to].ID, "content": content, "client_msg_id": cmid})
	m := requireStatus(t, r, http.StatusCreated)
	require.Empty(t, r.Header.Get("Idempotent-Replayed"), "a new client_msg_id is not a replay")
	msg := m["message"].(map[string]any)
	id, err := strconv.ParseUint(requireID(t, msg["id"], "message id"), 10, 64)
	require.NoError(t, err)
	require.Greater(t, id, maxOld, "a new message's id follows every stored one")
	for _, who := range []string{from, to} {
		p := s.by[who].Poll(heads[who])
		evs := upDurable(p.Events)
		require.Len(t, evs, 1, "%s: poll after the old head: %v", who, p.Events)
		require.False(t, p.HasMore)
		require.Equal(t, heads[who]+1, p.Cursor, "%s: the next seq", who)
		requireSeqs(t, evs, heads[who]+1)
		require.Equal(t, "message", evs[0]["type"])
		require.Equal(t, msg, evs[0]["message"], "%s", who)
		heads[who]++
	}
	return msg
}

// TestUpgradeFromBuntDBv1 starts the current code on a copy of what
// release f94359d wrote (buntdb) and checks it answers what that release
// answered: every inbox with its seqs, conversations, history, friends,
// groups and profiles; stored presence; passwords, valid and revoked
// tokens; idempotency keys; the push outbox (pending pushes go out once,
// delivered ones never again); and that new messages continue the seqs.
// Then the migrated directory must reopen with the same answers.
func TestUpgradeFromBuntDBv1(t *testing.T) {
	durLeakCheck(t)
	ex := upLoad(t)
	dir := upCopyFixture(t)
	wh := upWebhookStart(t, ex.PushSecret)
	n := testkit.Start(t, testkit.WithDir(dir), testkit.WithPushWebhook(wh.URL(), ex.PushSecret))
	s := upClients(t, n.URL(), ex)

	// The first request shows the presence the release stored at shutdown.
	d := groupDetail(t, s.by[ex.Presence.Observer], ex.GroupID)
	seen := 0
	for _, x := range d["members"].([]any) {
		mb := x.(map[string]any)
		want, ok := ex.Presence.Users[mb["username"].(string)]
		if !ok {
			continue
		}
		seen++
		require.Equal(t, want.Status, mb["status"], "stored presence of %s", mb["username"])
		require.Equal(t, want.LastActiveAt, mb["last_active_at"], "stored last_active_at of %s", mb["username"])
	}
	require.Equal(t, len(ex.Presence.Users), seen, "members with a recorded presence")

	// The pushes the release could not deliver go out now.
	var pending []string
	payloads := map[string]json.RawMessage{}
	for _, p := range ex.PendingPushes {
		pending = append(pending, p.ID)
		payloads[p.ID] = p.Payload
	}
	wh.await(t, pending, 30*time.Second)

	// Every recorded answer, as the release gave it.
	s.requireRecorded()

	heads := map[string]uint64{}
	var maxOld uint64
	for _, u := range ex.Users {
		heads[u.Name] = u.Head
	}
	for _, a := range ex.Answers {
		if !strings.HasPrefix(a.Path, "/v1/poll?") || a.Status != http.StatusOK {
			continue
		}
		var p testkit.PollPage
		require.NoError(t, json.Unmarshal(a.Body, &p))
		for _, e := range p.Events {
			id, err := strconv.ParseUint(e["message"].(map[string]any)["id"].(string), 10, 64)
			require.NoError(t, err)
			maxOld = max(maxOld, id)
		}
	}
	require.NotZero(t, maxOld)
	s.requireAuth(n.URL(), heads)

	s.requireIdempotent()

	// A device signed in before the upgrade can sign out: its token stops
	// working, the user's other devices keep theirs.
	var second *testkit.Client
	for i, u := range ex.Users {
		if len(u.Tokens) < 2 {
			continue
		}
		second = testkit.NewClient(t, n.URL())
		second.Token = u.Tokens[len(u.Tokens)-1]
		require.Equal(t, http.StatusNoContent, second.Do("POST", "/v1/auth/logout", nil).Status, "logout of an old device of %s", u.Name)
		requireError(t, second.Do("GET", "/v1/me", nil), http.StatusUnauthorized, "unauthorized")
		ex.Users[i].Revoked = append(slices.Clone(u.Revoked), second.Token)
		ex.Users[i].Tokens = u.Tokens[:len(u.Tokens)-1]
		require.Equal(t, http.StatusOK, s.by[u.Name].Do("GET", "/v1/me", nil).Status)
		break
	}
	require.NotNil(t, second, "the fixture has a user with two devices")

	// New messages continue every inbox: head+1, no seq reused.
	first := s.requireNext("alice", "bob", heads, maxOld, "after the upgrade ✓ — 업그레이드 후", "after-upgrade-1")
	conv := first["conversation_id"].(string)
	require.True(t, strings.HasPrefix(conv, "d_"), "%v", first)
	h, _ := historyOf(t, s.by["alice"], conv, "?limit=1")
	require.Equal(t, []map[string]any{first}, h, "the new message heads the history")

	// What the node answers now is what it must answer after a restart.
	extra := []upAnswer{
		{User: "alice", Method: "GET", Path: fmt.Sprintf("/v1/poll?cursor=%d", heads["alice"]-1)},
		{User: "bob", Method: "GET", Path: fmt.Sprintf("/v1/poll?cursor=%d", heads["bob"]-1)},
		{User: "bob", Method: "GET", Path: "/v1/conversations/" + conv + "/messages?limit=3"},
	}
	before := s.snapshot(extra...)
	for i, a := range ex.Answers {
		if a.User != "alice" && a.User != "bob" {
			require.Equal(t, a.Status, before[i].Status, "%s %s as %s", a.Method, a.Path, a.User)
			require.JSONEq(t, string(a.Body), before[i].Body, "%s %s as %s: a message between others changes nothing", a.Method, a.Path, a.User)
		}
	}

	// Stopped, the node has sent each pending push exactly once, signed,
	// with the payload the release would have sent, and nothing else: no
	// push that the release delivered, none for the new message.
	n.Stop(t)
	got := wh.all()
	var gotIDs []string
	for _, p := range got {
		gotIDs = append(gotIDs, p.ID)
	}
	slices.Sort(gotIDs)
	slices.Sort(pending)
	require.Equal(t, pending, gotIDs, "each pending push delivered once, and no other")
	for _, p := range got {
		require.Empty(t, p.SigErr, "push %s", p.ID)
		require.JSONEq(t, string(payloads[p.ID]), string(p.Payload), "payload of push %s", p.ID)
	}
	for _, id := range ex.DeliveredPushes {
		require.NotContains(t, gotIDs, id, "a push the release delivered")
	}

	// The migrated directory reopens: the same answers, and the seqs go on.
	n2 := testkit.Start(t, testkit.WithDir(dir), testkit.WithPushWebhook(wh.URL(), ex.PushSecret))
	s2 := upClients(t, n2.URL(), ex)
	after := s2.snapshot(extra...)
	all := append(slices.Clone(ex.Answers), extra...)
	for i, a := range all {
		require.Equal(t, before[i].Status, after[i].Status, "after restart: %s %s as %s", a.Method, a.Path, a.User)
		require.JSONEq(t, before[i].Body, after[i].Body, "after restart: %s %s as %s", a.Method, a.Path, a.User)
	}
	s2.requireAuth(n2.URL(), heads)
	s2.requireIdempotent()
	next := s2.requireNext("bob", "alice", heads, maxOld, "and after a restart", "after-restart-1")
	require.Equal(t, conv, next["conversation_id"])
	id1, err := strconv.ParseUint(first["id"].(string), 10, 64)
	require.NoError(t, err)
	id2, err := strconv.ParseUint(next["id"].(string), 10, 64)
	require.NoError(t, err)
	require.Greater(t, id2, id1, "ids keep following commit order after a restart")

	// Every device of before the upgrade can still sign out.
	for _, u := range s2.ex.Users {
		for _, tok := range u.Tokens {
			c := testkit.NewClient(t, n2.URL())
			c.Token = tok
			require.Equal(t, http.StatusNoContent, c.Do("POST", "/v1/auth/logout", nil).Status, "logout of %s", u.Name)
			requireError(t, c.Do("GET", "/v1/me", nil), http.StatusUnauthorized, "unauthorized")
		}
	}
	n2.Stop(t)
	require.Len(t, wh.all(), len(got), "the reopened node sends no push again")
}
