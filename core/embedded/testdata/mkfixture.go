//go:build ignore

// mkfixture builds the on-disk fixture of a chatgate release: it runs the
// given chatgate binary on a temporary data directory, builds a small but
// complete dataset through the HTTP API only, records the API answers an
// upgraded node must reproduce, stops the node cleanly (SIGTERM) and copies
// its data file next to the expectation:
//
//	go run core/embedded/testdata/mkfixture.go -bin /tmp/chatgate-v1 -out core/embedded/testdata/buntdb-v1
//
// writes OUT/chatgate.db and OUT/expect.json. node/upgrade_test.go starts
// the current code on a copy of OUT and checks every recorded answer.
//
// Ids and times differ on each run; the order of operations does not, and
// the committed expect.json always matches the committed chatgate.db.
// Unless -verify=false, the generator then starts the same binary on a copy
// of the output and checks that it reproduces the expectation.
package main

import (
	"bytes"
	"crypto/hmac"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"flag"
	"fmt"
	"io"
	"log"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"os/exec"
	"path/filepath"
	"reflect"
	"slices"
	"sort"
	"strings"
	"sync"
	"syscall"
	"time"
	"unicode/utf8"
)

const (
	pushSecret = "x"
	fixtureFmt = "chatgate-upgrade-fixture/1"
)

// ---- the expectation file (node/upgrade_test.go reads the same shape) ----

// Expect is expect.json.
type Expect struct {
	Format       string            `json:"format"`
	Release      string            `json:"release"`       // the release that wrote chatgate.db
	BinarySHA256 string            `json:"binary_sha256"` // of the binary that ran
	DBSHA256     string            `json:"db_sha256"`     // of chatgate.db: tests refuse a changed fixture
	GeneratedAt  string            `json:"generated_at"`
	PushSecret   string            `json:"push_secret"`
	GroupID      string            `json:"group_id"`
	Users        []User            `json:"users"`
	Answers      []Answer          `json:"answers,omitempty"` // written last, one a line
	Presence     Presence          `json:"presence"`
	Idempotency  []IdemCase        `json:"idempotency,omitempty"` // written last, one a line
	PendingPush  []Push            `json:"pending_pushes"`
	Delivered    []string          `json:"delivered_pushes"`
	Counts       map[string]int    `json:"counts"`
	Notes        map[string]string `json:"notes"`
}

// User is an account of the fixture.
type User struct {
	Name        string   `json:"username"`
	ID          string   `json:"id"`
	Password    string   `json:"password"`
	DisplayName string   `json:"display_name"`
	Tokens      []string `json:"tokens"`         // still valid
	Revoked     []string `json:"revoked_tokens"` // logged out: 401
	Head        uint64   `json:"inbox_head"`     // the last seq of the inbox
}

// Answer is one API answer an upgraded node must give again, byte for byte
// after decoding. Presence fields (status, last_active_at) of friends and
// group members are left out of Body: they change with every request.
type Answer struct {
	User   string          `json:"user"`
	Method string          `json:"method"`
	Path   string          `json:"path"`
	Status int             `json:"status"`
	Body   json.RawMessage `json:"body"`
}

// Presence is what the store holds for each user once the node stopped, as
// the first request after a start sees it: Observer's GET /v1/groups/{id}
// shows the others' stored status and last_active_at.
type Presence struct {
	Observer string                      `json:"observer"`
	Users    map[string]PresenceSnapshot `json:"users"` // by username; the observer excluded
}

// PresenceSnapshot is one user's stored presence.
type PresenceSnapshot struct {
	Status       string `json:"status"`
	LastActiveAt any    `json:"last_active_at"`
}

// IdemCase is a send that must be answered from the stored idempotency key
// and change nothing: a replay (201, Idempotent-Replayed, the original
// message) or a conflict (409).
type IdemCase struct {
	User    string          `json:"user"`
	Body    map[string]any  `json:"body"`
	Status  int             `json:"status"`
	Replay  bool            `json:"replayed"`
	Message json.RawMessage `json:"message,omitempty"` // for a replay
	Code    string          `json:"code,omitempty"`    // for a refusal
}

// Push is a notification left in the outbox: the webhook refused it.
type Push struct {
	ID      string          `json:"id"` // <message id>-<user id>
	Payload json.RawMessage `json:"payload"`
}

// ---- plumbing ----

var (
	cleanups []func()           // run by fatalf and at the end
	servers  []*httptest.Server // closed at the end
)

func fatalf(format string, args ...any) {
	for i := len(cleanups) - 1; i >= 0; i-- {
		cleanups[i]()
	}
	log.Fatalf(format, args...)
}

func check(err error, what string) {
	if err != nil {
		fatalf("%s: %v", what, err)
	}
}

type client struct {
	base, token string
	hc          *http.Client
}

type reply struct {
	status int
	header http.Header
	body   []byte
}

func (r reply) obj() map[string]any {
	var m map[string]any
	if err := json.Unmarshal(r.body, &m); err != nil {
		fatalf("decode %q: %v", r.body, err)
	}
	return m
}

func (c *client) do(method, path string, body any) reply {
	var rd io.Reader
	if body != nil {
		b, err := json.Marshal(body)
		check(err, "encode body")
		rd = bytes.NewReader(b)
	}
	req, err := http.NewRequest(method, c.base+path, rd)
	check(err, "request")
	if rd != nil {
		req.Header.Set("Content-Type", "application/json")
	}
	if c.token != "" {
		req.Header.Set("Authorization", "Bearer "+c.token)
	}
	resp, err := c.hc.Do(req)
	check(err, method+" "+path)
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	check(err, "read "+method+" "+path)
	return reply{resp.StatusCode, resp.Header, b}
}

func (c *client) must(method, path string, body any, status int) reply {
	r := c.do(method, path, body)
	if r.status != status {
		fatalf("%s %s: status %d, want %d: %s", method, path, r.status, status, r.body)
	}
	return r
}

// ---- the node under the generator ----

type proc struct {
	cmd  *exec.Cmd
	done chan error
	base string
}

func freeAddr() string {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	check(err, "find a free port")
	defer ln.Close()
	return ln.Addr().String()
}

func startNode(bin, dir, webhook string) *proc {
	addr := freeAddr()
	cmd := exec.Command(bin,
		"-addr", addr, "-data", dir,
		"-push-webhook", webhook, "-push-secret", pushSecret,
		// Nobody goes offline by silence while the dataset is built: only a
		// logout of a user's last device does, so who gets a push is
		// decided by the script, not by timing.
		"-offline-after", "30m",
		"-log-level", "warn")
	cmd.Env = cleanEnv()
	cmd.Stdout, cmd.Stderr = os.Stderr, os.Stderr
	check(cmd.Start(), "start "+bin)
	p := &proc{cmd: cmd, done: make(chan error, 1), base: "http://" + addr}
	go func() { p.done <- cmd.Wait() }()
	cleanups = append(cleanups, func() { _ = cmd.Process.Kill() })
	hc := &http.Client{Timeout: time.Second}
	deadline := time.Now().Add(30 * time.Second)
	for {
		select {
		case err := <-p.done:
			fatalf("chatgate exited before serving: %v", err)
		default:
		}
		if resp, err := hc.Get(p.base + "/healthz"); err == nil {
			resp.Body.Close()
			if resp.StatusCode == http.StatusOK {
				return p
			}
		}
		if time.Now().After(deadline) {
			fatalf("chatgate not healthy after 30s")
		}
		time.Sleep(50 * time.Millisecond) // polling for readiness
	}
}

// cleanEnv drops CHATGATE_* variables so that only our flags configure the
// node.
func cleanEnv() []string {
	var out []string
	for _, kv := range os.Environ() {
		if !strings.HasPrefix(kv, "CHATGATE_") {
			out = append(out, kv)
		}
	}
	return out
}

// stop sends SIGTERM and waits for a clean exit.
func (p *proc) stop() {
	check(p.cmd.Process.Signal(syscall.SIGTERM), "SIGTERM")
	select {
	case err := <-p.done:
		if err != nil {
			fatalf("chatgate did not stop cleanly: %v", err)
		}
	case <-time.After(60 * time.Second):
		fatalf("chatgate did not stop within 60s of SIGTERM")
	}
}

// ---- the push receiver ----

type delivery struct {
	user     string
	statuses []int
	payload  json.RawMessage
}

type webhook struct {
	srv    *httptest.Server
	refuse func(userID string) bool

	mu      sync.Mutex
	got     map[string]*delivery
	order   []string
	bad     []string
	changed chan struct{} // closed and replaced on every request
}

func newWebhook(refuse func(string) bool) *webhook {
	w := &webhook{refuse: refuse, got: map[string]*delivery{}, changed: make(chan struct{})}
	w.srv = httptest.NewServer(http.HandlerFunc(w.serve))
	// Closed at the end of a successful run only: fatalf may run under w.mu,
	// and Close waits for handlers that take it.
	servers = append(servers, w.srv)
	return w
}

func (w *webhook) url() string { return w.srv.URL + "/push" }

func (w *webhook) serve(rw http.ResponseWriter, r *http.Request) {
	body, _ := io.ReadAll(r.Body)
	id := r.Header.Get("X-Chatgate-Delivery")
	ts := r.Header.Get("X-Chatgate-Timestamp")
	mac := hmac.New(sha256.New, []byte(pushSecret))
	mac.Write([]byte(ts + "."))
	mac.Write(body)
	sigOK := r.Header.Get("X-Chatgate-Signature") == "sha256="+hex.EncodeToString(mac.Sum(nil))
	var p struct {
		ID     string `json:"id"`
		UserID string `json:"user_id"`
	}
	perr := json.Unmarshal(body, &p)
	status := http.StatusOK
	w.mu.Lock()
	defer w.mu.Unlock()
	switch {
	case r.Method != http.MethodPost || r.URL.Path != "/push" || !sigOK || perr != nil || p.ID != id:
		w.bad = append(w.bad, fmt.Sprintf("%s %s delivery=%q sig=%v: %s", r.Method, r.URL.Path, id, sigOK, body))
		status = http.StatusUnauthorized
	case w.refuse(p.UserID):
		status = http.StatusInternalServerError
	}
	if status != http.StatusUnauthorized {
		d := w.got[id]
		if d == nil {
			d = &delivery{user: p.UserID, payload: append(json.RawMessage(nil), body...)}
			w.got[id] = d
			w.order = append(w.order, id)
		}
		d.statuses = append(d.statuses, status)
	}
	close(w.changed)
	w.changed = make(chan struct{})
	rw.WriteHeader(status)
}

// wait blocks until cond (called under the lock) holds.
func (w *webhook) wait(what string, timeout time.Duration, cond func() bool) {
	deadline := time.After(timeout)
	for {
		w.mu.Lock()
		ok, ch := cond(), w.changed
		w.mu.Unlock()
		if ok {
			return
		}
		select {
		case <-ch:
		case <-deadline:
			w.mu.Lock()
			defer w.mu.Unlock()
			fatalf("webhook: %s: not within %v; got %v, bad %v", what, timeout, w.order, w.bad)
		}
	}
}

// ---- the dataset ----

type user struct {
	name, password, display string
	id                      string
	c                       *client // the current valid device
	extra                   []*client
	revoked                 []string
}

type gen struct {
	base  string
	hc    *http.Client
	users map[string]*user
	order []string
	gid   string
	conv  map[string]string // name -> conversation id
	wh    *webhook

	onSignup func(*user)

	msgs      map[string]map[string]any // by label
	labels    []string                  // in the order sent
	pushCarol []string                  // expected notification ids
	pushBob   []string
	idem      []IdemCase
	counts    map[string]int
}

func (g *gen) signup(name, password, display, device string) *user {
	c := &client{base: g.base, hc: g.hc}
	in := map[string]any{"username": name, "password": password}
	if display != "" {
		in["display_name"] = display
	}
	if device != "" {
		in["device"] = device
	}
	m := c.must("POST", "/v1/auth/signup", in, http.StatusCreated).obj()
	c.token = m["token"].(string)
	u := &user{name: name, password: password, c: c, id: m["user"].(map[string]any)["id"].(string), revoked: []string{}}
	u.display = m["user"].(map[string]any)["display_name"].(string)
	g.users[name] = u
	g.order = append(g.order, name)
	if g.onSignup != nil {
		g.onSignup(u)
	}
	return u
}

func (g *gen) login(u *user, device string) *client {
	c := &client{base: g.base, hc: g.hc}
	m := c.must("POST", "/v1/auth/login", map[string]any{"username": u.name, "password": u.password, "device": device}, http.StatusOK).obj()
	c.token = m["token"].(string)
	return c
}

func (g *gen) logout(u *user, c *client) {
	c.must("POST", "/v1/auth/logout", nil, http.StatusNoContent)
	u.revoked = append(u.revoked, c.token)
}

func (g *gen) heartbeat(names ...string) {
	for _, n := range names {
		g.users[n].c.must("POST", "/v1/heartbeat", nil, http.StatusNoContent)
	}
}

func (g *gen) befriend(from, to string, want string) {
	m := g.users[from].c.must("PUT", "/v1/friends/"+g.users[to].id, nil, http.StatusOK).obj()
	if m["status"] != want {
		fatalf("PUT friends %s->%s: %v, want %s", from, to, m, want)
	}
}

// send posts a message as c; to is a username or "" for the group.
func (g *gen) send(label string, c *client, to, content, cmid string) map[string]any {
	body := map[string]any{"content": content}
	if to == "" {
		body["group_id"] = g.gid
	} else {
		body["to"] = g.users[to].id
	}
	if cmid != "" {
		body["client_msg_id"] = cmid
	}
	r := c.must("POST", "/v1/messages", body, http.StatusCreated)
	if r.header.Get("Idempotent-Replayed") != "" {
		fatalf("send %s: unexpectedly replayed", label)
	}
	m := r.obj()["message"].(map[string]any)
	if _, dup := g.msgs[label]; dup {
		fatalf("label %s used twice", label)
	}
	g.msgs[label] = m
	g.labels = append(g.labels, label)
	if to == "" {
		g.counts["group_messages"]++
	} else {
		g.counts["direct_messages"]++
	}
	if cmid != "" {
		g.counts["with_client_msg_id"]++
	}
	return m
}

func (g *gen) markRead(name, conv, label string) {
	g.users[name].c.must("POST", "/v1/conversations/"+conv+"/read", map[string]any{"message_id": g.msgs[label]["id"]}, http.StatusNoContent)
}

func pushID(m map[string]any, uid string) string { return m["id"].(string) + "-" + uid }

// longText is exactly n code points of mixed scripts, ASCII and astral.
func longText(n int) string {
	unit := "The quick brown fox jumps over the lazy dog, again and again and again; " +
		"Lorem ipsum dolor sit amet, consectetur adipiscing elit (ünïcödé, 다람쥐, いろは, 🦊, \"q\", \\, <p>)\n"
	var b strings.Builder
	for i := 0; b.Len() < 8*n; i++ {
		fmt.Fprintf(&b, "%05d ", i)
		b.WriteString(unit)
	}
	r := []rune(b.String())[:n]
	return string(r)
}

func (g *gen) build() {
	// Accounts: passwords are ASCII, non-ASCII, with quotes and spaces.
	alice := g.signup("alice", "correct horse battery staple", "Alice Liddell", "alice-laptop")
	bob := g.signup("bob", "b0b-the-builder!", "Bob", "bob-desktop")
	carol := g.signup("carol", "pässwörd-캐럴-✓", "캐럴 Carol", "carol-phone")
	dave := g.signup("dave", "dave password 1234", "", "")
	erin := g.signup("erin", `erin "quoted" \pw`, "Erin ☕ O'Neil", "erin-laptop")
	g.counts["users"] = len(g.order)

	aliceLaptop := alice.c
	alice.c = g.login(alice, "alice-phone") // her second device
	m := bob.c.must("PATCH", "/v1/me", map[string]any{"display_name": "  Bob the Builder 🔨  "}, http.StatusOK).obj()
	bob.display = m["display_name"].(string)
	g.heartbeat(g.order...)

	// Friends: alice–bob and alice–carol mutual, dave→alice pending,
	// bob–carol mutual and later removed.
	g.befriend("alice", "bob", "requested")
	g.befriend("bob", "alice", "friends")
	g.befriend("carol", "alice", "requested")
	g.befriend("alice", "carol", "friends")
	g.befriend("dave", "alice", "requested")
	g.befriend("bob", "carol", "requested")
	g.befriend("carol", "bob", "friends")

	// alice↔bob, part 1: 20 messages, alternating, from both of alice's
	// devices.
	ab := []string{
		"hi bob",
		"hi alice! 👋",
		"안녕하세요, 밥! 오늘 어때요?",
		"こんにちは、アリス。元気です！今日は寿司を食べました 🍣",
		"emoji soup: 👨‍👩‍👧‍👦 🏳️‍🌈 👍🏽 🇰🇷 🇯🇵 ❤️‍🔥",
		"مرحبا! هذا نص من اليمين إلى اليسار. שלום עולם — mixed with English",
		`she said "hi" and 'left'`,
		`C:\Users\bob\Documents\new folder\ and a trailing backslash \`,
		"line one\nline two\n\nline four\ttabbed\r\nCRLF end\n",
		"<script>alert('xss')</script> & <b>bold</b> &amp; &lt;i&gt;",
		`{"type":"message","seq":1,"note":"this is content, not an event"}`,
		"   ",
		"e\u0301 vs \u00e9 (combining vs precomposed), zero\u200bwidth, \u2028LS \u2029PS, BOM\ufeff",
		"nul:\u0000 bell:\u0007 esc:\u001b[31mred\u001b[0m del:\u007f",
		"astral: 𝕳𝖊𝖑𝖑𝖔 𐍈 \U0010FFFD 🀄 and a lone-looking \\ud800 (escaped text, not a surrogate)",
		"percent %s %d %% and dollar $HOME ${x} `backtick` #hash @at",
		"Ünïcödé Ñandú Ærø — Größe straße",
		"1",
		"see you at 7? 🕖",
		"yes, at 7 👍",
	}
	for i, s := range ab {
		c, to := alice.c, "bob"
		if i%2 == 1 {
			c, to = bob.c, "alice"
		} else if i < 10 {
			c = aliceLaptop
		}
		cmid := fmt.Sprintf("ab-%02d", i)
		switch {
		case i%7 == 6:
			cmid = "" // no idempotency key
		case i == 3:
			cmid = "クライアント-ボブ-03"
		case i == 4:
			cmid = "k-" + strings.Repeat("0123456789", 12) + "-4-end" // 128 bytes
		}
		g.send(fmt.Sprintf("ab%02d", i), c, to, s, cmid)
	}
	g.conv["ab"] = g.msgs["ab00"]["conversation_id"].(string)

	// A retried send: the same client_msg_id and content answer the stored
	// message, stored once.
	retry := map[string]any{"to": bob.id, "content": ab[2], "client_msg_id": "ab-02"}
	r := aliceLaptop.must("POST", "/v1/messages", retry, http.StatusCreated)
	if r.header.Get("Idempotent-Replayed") != "true" {
		fatalf("retry not answered as a replay: %v", r.header)
	}
	orig, _ := json.Marshal(g.msgs["ab02"])
	got := r.obj()["message"]
	if gb, _ := json.Marshal(got); !bytes.Equal(gb, orig) {
		fatalf("replay answered %s, want %s", gb, orig)
	}
	g.counts["retried_sends"]++
	conflict := map[string]any{"to": bob.id, "content": "a different text", "client_msg_id": "ab-02"}
	aliceLaptop.must("POST", "/v1/messages", conflict, http.StatusConflict)
	g.idem = append(g.idem, IdemCase{User: "alice", Body: conflict, Status: http.StatusConflict, Code: "client_msg_id_conflict"})
	conflict = map[string]any{"group_id": "1", "content": ab[2], "client_msg_id": "ab-02"}
	aliceLaptop.must("POST", "/v1/messages", conflict, http.StatusConflict)
	g.idem = append(g.idem, IdemCase{User: "alice", Body: conflict, Status: http.StatusConflict, Code: "client_msg_id_conflict"})

	// The group "team": alice owns it with bob and carol.
	m = alice.c.must("POST", "/v1/groups", map[string]any{"name": "team", "members": []string{bob.id, carol.id}}, http.StatusCreated).obj()
	g.gid = m["id"].(string)
	g.conv["team"] = m["conversation_id"].(string)
	gm := func(label string, u *user, content, cmid string) map[string]any {
		return g.send(label, u.c, "", content, cmid)
	}
	gm("g01", alice, "welcome to the team 🎉", "g-01")
	gm("g02", bob, "thanks! チームへようこそ", "g-02")
	gm("g03", carol, "반가워요 모두들", "g-03")
	gm("g04", alice, "agenda:\n1. fixtures\n2. migration\n3. \"done\"", "g-04")
	gm("g05", bob, "<img src=x onerror=alert(1)>", "")

	// dave joins, talks and is removed again.
	alice.c.must("POST", "/v1/groups/"+g.gid+"/members", map[string]any{"user_id": dave.id}, http.StatusOK)
	gm("g06", dave, "hi all, dave here", "g-06")
	gm("g07", alice, "hi dave", "g-07")
	gm("g08", dave, "I'll leave soon → bye", "g-08")
	gm("g09", carol, "مع السلامة دايف", "g-09")
	alice.c.must("DELETE", "/v1/groups/"+g.gid+"/members/"+dave.id, nil, http.StatusNoContent)

	// Notes to self.
	g.send("n-a1", alice.c, "alice", "note to self: buy milk 🥛", "note-1")
	g.send("n-a2", alice.c, "alice", "TODO: reply to carol\n- [ ] fixtures\n- [x] coffee", "note-2")
	g.send("n-a3", alice.c, "alice", "パスワードのヒント: なし", "")
	g.send("n-d1", dave.c, "dave", "dave's scratchpad \\o/", "dave-note-1")

	// bob–carol end their friendship; alice's laptop logs out (she stays
	// online on her phone).
	bob.c.must("DELETE", "/v1/friends/"+carol.id, nil, http.StatusNoContent)
	g.logout(alice, aliceLaptop)

	// bob goes offline (his only device logs out): what reaches him now is
	// pushed, and the webhook accepts his pushes.
	g.logout(bob, bob.c)
	for i := 20; i < 26; i++ {
		content := fmt.Sprintf("while you were away #%d", i)
		if i == 23 {
			content = longText(20000)
			if n := utf8.RuneCountInString(content); n != 20000 {
				fatalf("long message has %d code points", n)
			}
		}
		m := g.send(fmt.Sprintf("ab%02d", i), alice.c, "bob", content, fmt.Sprintf("ab-%02d", i))
		g.pushBob = append(g.pushBob, pushID(m, bob.id))
	}
	for _, x := range []struct {
		label string
		u     *user
		text  string
	}{{"g10", alice, "bob is away, let's wait"}, {"g11", carol, "ok 👌"}, {"g12", alice, "מחר נמשיך"}} {
		m := gm(x.label, x.u, x.text, "g-"+x.label[1:])
		g.pushBob = append(g.pushBob, pushID(m, bob.id))
	}
	bob.c = g.login(bob, "bob-phone")
	g.wh.wait("bob's pushes accepted", 30*time.Second, func() bool {
		for _, id := range g.pushBob {
			if d := g.wh.got[id]; d == nil || !slices.Contains(d.statuses, http.StatusOK) {
				return false
			}
		}
		return true
	})

	// alice↔bob, part 2.
	for i := 26; i < 40; i++ {
		c, to, text := alice.c, "bob", fmt.Sprintf("[%02d] alice: still here", i)
		if i%2 == 1 {
			c, to, text = bob.c, "alice", fmt.Sprintf("[%02d] bob: 読みました ✔", i)
		}
		cmid := fmt.Sprintf("ab-%02d", i)
		if i%7 == 6 {
			cmid = ""
		}
		g.send(fmt.Sprintf("ab%02d", i), c, to, text, cmid)
	}

	// erin joins after some messages (bob adds her: any member may add).
	bob.c.must("POST", "/v1/groups/"+g.gid+"/members", map[string]any{"user_id": erin.id}, http.StatusOK)
	gm("g13", erin, "hello! erin here 🙋‍♀️", "g-13")
	gm("g14", alice, "welcome erin", "g-14")
	gm("g15", bob, "👋", "g-15")
	gm("g16", erin, "Ω≈ç√∫˜µ≤≥÷ åß∂ƒ©˙∆˚¬…æ", "")
	gm("g17", carol, "line\\nnot a newline, and a real one:\nhere", "g-17")

	// Read markers: bob reads alice↔bob up to a middle message, carol reads
	// part of the group.
	g.markRead("bob", g.conv["ab"], "ab18")
	g.markRead("carol", g.conv["team"], "g12")

	// carol goes offline (her only device logs out): what reaches her now
	// is pushed, and the webhook refuses her pushes, which stay pending.
	g.logout(carol, carol.c)
	for i, text := range []string{"carol, are you there?", "ping 🔔", "call me when you're back: +49 30 123456"} {
		m := g.send(fmt.Sprintf("ac%d", i+1), alice.c, "carol", text, fmt.Sprintf("ac-%d", i+1))
		g.pushCarol = append(g.pushCarol, pushID(m, carol.id))
	}
	for _, x := range []struct {
		label string
		u     *user
		text  string
	}{{"g18", alice, "carol is away"}, {"g19", bob, "we'll fill her in"}, {"g20", erin, "✍️ notes: 決定事項なし"}, {"g21", alice, "done for today"}} {
		m := gm(x.label, x.u, x.text, "g-"+x.label[1:])
		g.pushCarol = append(g.pushCarol, pushID(m, carol.id))
	}
	carol.c = g.login(carol, "carol-tablet")
	g.wh.wait("carol's pushes tried", 30*time.Second, func() bool {
		for _, id := range g.pushCarol {
			if d := g.wh.got[id]; d == nil || len(d.statuses) == 0 {
				return false
			}
		}
		return true
	})
	g.send("ca1", carol.c, "alice", "back now, sorry! 🙏", "ca-1")
	gm("g22", carol, "I'm back — 다시 왔어요", "g-22")
	gm("g23", bob, "welcome back", "")
	gm("g24", alice, "last one: ✅", "g-24")
	gm("g25", erin, "good night 🌙", "g-25")
	g.send("ea1", erin.c, "alice", "hi alice, thanks for having me in the team", "ea-1")
	erin.extra = append(erin.extra, g.login(erin, "erin-phone")) // a second valid device
	g.replayAll()
	g.heartbeat(g.order...)
}

// replayAll sends every message that has a client_msg_id again, as its
// sender (on the sender's current device: keys belong to the user): each
// is answered from the stored key and stores nothing. The answers are
// recorded for the upgrade test.
func (g *gen) replayAll() {
	byID := map[string]*user{}
	for _, u := range g.users {
		byID[u.id] = u
	}
	for _, label := range g.labels {
		m := g.msgs[label]
		cmid := m["client_msg_id"].(string)
		if cmid == "" {
			continue
		}
		u := byID[m["from"].(string)]
		body := map[string]any{"content": m["content"], "client_msg_id": cmid}
		if to, ok := m["to"]; ok {
			body["to"] = to
		} else {
			body["group_id"] = m["group_id"]
		}
		r := u.c.do("POST", "/v1/messages", body)
		ic := IdemCase{User: u.name, Body: body, Status: r.status}
		if r.status == http.StatusCreated {
			if r.header.Get("Idempotent-Replayed") != "true" {
				fatalf("replay of %s stored a new message: %s", label, r.body)
			}
			orig, _ := json.Marshal(m)
			got, _ := json.Marshal(r.obj()["message"])
			if !bytes.Equal(orig, got) {
				fatalf("replay of %s: %s, want %s", label, got, orig)
			}
			ic.Replay, ic.Message = true, orig
			g.counts["replays_answered"]++
		} else {
			// A sender no longer in the group: refused, and nothing stored.
			e, _ := r.obj()["error"].(map[string]any)
			ic.Code, _ = e["code"].(string)
			if r.status < 400 || ic.Code == "" {
				fatalf("replay of %s: %d %s", label, r.status, r.body)
			}
			g.counts["replays_refused"]++
		}
		g.idem = append(g.idem, ic)
	}
}

// ---- recording ----

// stripPresence removes from a decoded answer what changes with every
// request: the presence fields of friends and group members, and the
// ephemeral events (no seq) that polls return besides the inbox.
func stripPresence(path string, v any) any {
	m, ok := v.(map[string]any)
	if !ok {
		return v
	}
	var list string
	switch {
	case strings.HasPrefix(path, "/v1/poll?"):
		if evs, ok := m["events"].([]any); ok {
			durable := []any{}
			for _, e := range evs {
				if _, ok := e.(map[string]any)["seq"]; ok {
					durable = append(durable, e)
				}
			}
			m["events"] = durable
		}
		return m
	case path == "/v1/friends":
		list = "friends"
	case strings.HasPrefix(path, "/v1/groups/") && !strings.Contains(path[len("/v1/groups/"):], "/"):
		list = "members"
	default:
		return v
	}
	if xs, ok := m[list].([]any); ok {
		for _, x := range xs {
			if o, ok := x.(map[string]any); ok {
				delete(o, "status")
				delete(o, "last_active_at")
			}
		}
	}
	return m
}

type recorder struct {
	g       *gen
	answers []Answer
}

func (rc *recorder) get(name, path string) map[string]any {
	r := rc.g.users[name].c.do("GET", path, nil)
	var v any
	if err := json.Unmarshal(r.body, &v); err != nil {
		fatalf("GET %s as %s: %v: %s", path, name, err, r.body)
	}
	b, err := json.Marshal(stripPresence(path, v))
	check(err, "encode answer")
	rc.answers = append(rc.answers, Answer{User: name, Method: "GET", Path: path, Status: r.status, Body: b})
	var m map[string]any
	_ = json.Unmarshal(r.body, &m)
	if r.status != http.StatusOK {
		return nil
	}
	return m
}

// poll records the chain of pages from cursor 0 and returns the head.
func (rc *recorder) poll(name, extra string) uint64 {
	cursor := uint64(0)
	for pages := 0; ; pages++ {
		m := rc.get(name, fmt.Sprintf("/v1/poll?cursor=%d%s", cursor, extra))
		if m == nil {
			fatalf("poll as %s failed", name)
		}
		cursor = uint64(m["cursor"].(float64))
		if m["has_more"] != true {
			return cursor
		}
	}
}

// history records every page of a conversation, newest first.
func (rc *recorder) history(name, conv string, limit int, after string) {
	before := ""
	for {
		q := fmt.Sprintf("?limit=%d", limit)
		if after != "" {
			q += "&after=" + after
		}
		if before != "" {
			q += "&before=" + before
		}
		m := rc.get(name, "/v1/conversations/"+conv+"/messages"+q)
		if m == nil {
			return // not a member (recorded as such)
		}
		ms := m["messages"].([]any)
		if m["has_more"] != true || len(ms) == 0 {
			return
		}
		before = ms[len(ms)-1].(map[string]any)["id"].(string)
	}
}

func (g *gen) record() (answers []Answer, heads map[string]uint64) {
	rc := &recorder{g: g}
	heads = map[string]uint64{}
	for _, name := range g.order {
		rc.get(name, "/v1/me")
		heads[name] = rc.poll(name, "")
		// A cursor beyond the head: an empty page pulled back to the head.
		rc.get(name, fmt.Sprintf("/v1/poll?cursor=%d", heads[name]+1000))
		if name == "alice" || name == "bob" {
			rc.poll(name, "&limit=20") // the same inbox in smaller pages
		}
		cl := rc.get(name, "/v1/conversations")
		for _, c := range cl["conversations"].([]any) {
			rc.history(name, c.(map[string]any)["id"].(string), 200, "")
		}
		if name == "alice" {
			rc.history(name, g.conv["ab"], 7, "")                            // scrolling back in small pages
			rc.history(name, g.conv["ab"], 5, g.msgs["ab18"]["id"].(string)) // catching up after a gap
		}
		rc.get(name, "/v1/friends")
		rc.get(name, "/v1/groups")
		rc.get(name, "/v1/groups/"+g.gid)
	}
	for _, name := range g.order {
		rc.get("alice", "/v1/users/"+g.users[name].id)
	}
	for _, q := range []string{"a", "BOB", "Bob%20the", "%EC%BA%90", "erin", "e", "zzz"} {
		rc.get("alice", "/v1/users?q="+q)
	}
	return rc.answers, heads
}

// presence reads the final presence of every group member other than the
// observer, after everyone's last request: alice sees the others, then the
// observer (erin) sees alice. Nobody makes a request afterwards, so these
// are the values the node stores at shutdown.
func (g *gen) presence(observer string) Presence {
	out := Presence{Observer: observer, Users: map[string]PresenceSnapshot{}}
	read := func(as string) map[string]PresenceSnapshot {
		m := g.users[as].c.must("GET", "/v1/groups/"+g.gid, nil, http.StatusOK).obj()
		res := map[string]PresenceSnapshot{}
		for _, x := range m["members"].([]any) {
			o := x.(map[string]any)
			res[o["username"].(string)] = PresenceSnapshot{Status: "offline", LastActiveAt: o["last_active_at"]}
		}
		return res
	}
	byAlice := read("alice")
	byObs := read(observer)
	for name, p := range byObs {
		if name == observer {
			continue
		}
		if name != "alice" && !reflect.DeepEqual(p, byAlice[name]) {
			fatalf("presence of %s moved between two reads: %v, %v", name, p, byAlice[name])
		}
		if p.LastActiveAt == nil {
			fatalf("%s has no last_active_at", name)
		}
		out.Users[name] = p
	}
	return out
}

// ---- main ----

func main() {
	bin := flag.String("bin", "", "the chatgate binary of the release (required)")
	out := flag.String("out", "", "output directory for chatgate.db and expect.json (required)")
	release := flag.String("release", "f94359d", "the release (commit) the binary was built from, recorded in expect.json")
	verify := flag.Bool("verify", true, "start the binary again on a copy of the output and check it reproduces the expectation")
	flag.Parse()
	if *bin == "" || *out == "" {
		flag.Usage()
		os.Exit(2)
	}
	log.SetFlags(0)
	log.SetPrefix("mkfixture: ")
	start := time.Now()
	binSum := fileSHA256(*bin)

	tmp, err := os.MkdirTemp("", "mkfixture-*")
	check(err, "temp dir")
	cleanups = append(cleanups, func() { os.RemoveAll(tmp) })
	data := filepath.Join(tmp, "data")

	g := &gen{
		hc:    &http.Client{Timeout: 30 * time.Second},
		users: map[string]*user{}, conv: map[string]string{},
		msgs: map[string]map[string]any{}, counts: map[string]int{},
	}
	var carolID string
	var idMu sync.Mutex
	g.wh = newWebhook(func(uid string) bool {
		idMu.Lock()
		defer idMu.Unlock()
		return uid == carolID
	})
	p := startNode(*bin, data, g.wh.url())
	g.base = p.base
	// The webhook learns carol's id when she signs up; nobody is pushed to
	// before (a push needs a logged-out user).
	g.onSignup = func(u *user) {
		if u.name == "carol" {
			idMu.Lock()
			carolID = u.id
			idMu.Unlock()
		}
	}
	g.build()

	answers, heads := g.record()
	pres := g.presence("erin")

	// Every push the node made is one the script expects: bob's accepted,
	// carol's refused (and retried) until the node stops.
	g.wh.mu.Lock()
	want := append(append([]string(nil), g.pushBob...), g.pushCarol...)
	sort.Strings(want)
	gotIDs := append([]string(nil), g.wh.order...)
	sort.Strings(gotIDs)
	g.wh.mu.Unlock()
	if !slices.Equal(want, gotIDs) {
		fatalf("pushes: got %v, want %v", gotIDs, want)
	}
	p.stop()

	g.wh.mu.Lock()
	if len(g.wh.bad) > 0 {
		fatalf("bad webhook requests: %v", g.wh.bad)
	}
	if len(g.wh.order) != len(want) {
		fatalf("pushes after the last check: %v", g.wh.order)
	}
	var pending []Push
	for _, id := range g.pushCarol {
		d := g.wh.got[id]
		if slices.Contains(d.statuses, http.StatusOK) {
			fatalf("carol's push %s was accepted", id)
		}
		pending = append(pending, Push{ID: id, Payload: d.payload})
	}
	var delivered []string
	for _, id := range g.pushBob {
		if d := g.wh.got[id]; !slices.Contains(d.statuses, http.StatusOK) {
			fatalf("bob's push %s was never accepted", id)
		}
		delivered = append(delivered, id)
	}
	g.wh.mu.Unlock()

	ex := Expect{
		Format: fixtureFmt, Release: *release, BinarySHA256: binSum,
		GeneratedAt: time.Now().UTC().Format(time.RFC3339),
		PushSecret:  pushSecret, GroupID: g.gid,
		Answers: answers, Presence: pres, Idempotency: g.idem,
		PendingPush: pending, Delivered: delivered, Counts: g.counts,
		Notes: map[string]string{
			"generator":   "go run core/embedded/testdata/mkfixture.go -bin <chatgate of the release> -out <this directory>",
			"answers":     "GET answers of the release, asked again with users[].tokens[0] of the user; what changes with every request is left out: the presence fields (status, last_active_at) of friends and group members, and ephemeral events (no seq) in polls",
			"presence":    "the stored presence: the observer's first GET /v1/groups/{group_id} after a start shows the others offline with these last_active_at",
			"pushes":      "pending_pushes were refused by the webhook (500) and are still in the outbox; delivered_pushes were accepted and must never be sent again",
			"idempotency": "sends answered from the stored client_msg_id: they change nothing",
		},
	}
	for _, name := range g.order {
		u := g.users[name]
		toks := []string{u.c.token}
		for _, c := range u.extra {
			toks = append(toks, c.token)
		}
		ex.Users = append(ex.Users, User{Name: name, ID: u.id, Password: u.password, DisplayName: u.display,
			Tokens: toks, Revoked: u.revoked, Head: heads[name]})
		ex.Counts["inbox_events_"+name] = int(heads[name])
	}
	ex.Counts["answers"] = len(answers)
	ex.Counts["pending_pushes"] = len(pending)
	ex.Counts["delivered_pushes"] = len(delivered)

	// The data directory holds the one file.
	ents, err := os.ReadDir(data)
	check(err, "read data dir")
	for _, e := range ents {
		if e.Name() != "chatgate.db" {
			fatalf("unexpected file in the data directory: %s", e.Name())
		}
	}
	// Written to a staging directory, verified there, and only then
	// copied to -out: a failed run never leaves a mismatched pair.
	stage := filepath.Join(tmp, "out")
	check(os.MkdirAll(stage, 0o755), "create staging dir")
	dbOut := filepath.Join(stage, "chatgate.db")
	copyFile(filepath.Join(data, "chatgate.db"), dbOut)
	fi, err := os.Stat(dbOut)
	check(err, "stat output")
	if fi.Size() >= 1<<20 {
		fatalf("chatgate.db is %d bytes; the fixture must stay well under 1 MB", fi.Size())
	}
	ex.DBSHA256 = fileSHA256(dbOut)
	js := encodeExpect(ex)
	check(os.WriteFile(filepath.Join(stage, "expect.json"), js, 0o644), "write expect.json")
	log.Printf("built chatgate.db (%d bytes) and expect.json (%d bytes, %d answers) in %v", fi.Size(), len(js), len(answers), time.Since(start).Round(time.Millisecond))
	if *verify {
		verifyFixture(*bin, stage)
		log.Printf("verified: the release reproduces expect.json from a copy of chatgate.db (%v in all)", time.Since(start).Round(time.Millisecond))
	}
	check(os.MkdirAll(*out, 0o755), "create -out")
	for _, f := range []string{"chatgate.db", "expect.json"} {
		copyFile(filepath.Join(stage, f), filepath.Join(*out, f))
	}
	log.Printf("wrote %s", *out)
	for _, srv := range servers {
		srv.Close()
	}
	for i := len(cleanups) - 1; i >= 0; i-- {
		cleanups[i]()
	}
}

// encodeExpect writes expect.json indented, except that each answer and
// each idempotency case is one line: they hold large, deeply nested bodies.
func encodeExpect(ex Expect) []byte {
	answers, idem := ex.Answers, ex.Idempotency
	ex.Answers, ex.Idempotency = nil, nil
	head, err := json.MarshalIndent(ex, "", " ")
	check(err, "encode expect.json")
	var b bytes.Buffer
	b.Write(bytes.TrimSuffix(head, []byte("\n}")))
	writeLines(&b, "idempotency", idem)
	writeLines(&b, "answers", answers)
	b.WriteString("\n}\n")
	if !json.Valid(b.Bytes()) {
		fatalf("expect.json is not valid JSON")
	}
	return b.Bytes()
}

// writeLines appends `,\n "name": [` and the items, one a line.
func writeLines[T any](b *bytes.Buffer, name string, items []T) {
	fmt.Fprintf(b, ",\n %q: [", name)
	for i, it := range items {
		var line bytes.Buffer
		enc := json.NewEncoder(&line)
		enc.SetEscapeHTML(false)
		check(enc.Encode(it), "encode "+name)
		if i > 0 {
			b.WriteString(",")
		}
		b.WriteString("\n  ")
		b.Write(bytes.TrimSuffix(line.Bytes(), []byte("\n")))
	}
	b.WriteString("\n ]")
}

func fileSHA256(path string) string {
	f, err := os.Open(path)
	check(err, "open "+path)
	defer f.Close()
	h := sha256.New()
	_, err = io.Copy(h, f)
	check(err, "hash "+path)
	return hex.EncodeToString(h.Sum(nil))
}

func copyFile(from, to string) {
	b, err := os.ReadFile(from)
	check(err, "read "+from)
	check(os.WriteFile(to, b, 0o644), "write "+to)
}

// ---- verification: the release reads back what it wrote ----

func verifyFixture(bin, dir string) {
	raw, err := os.ReadFile(filepath.Join(dir, "expect.json"))
	check(err, "read expect.json")
	var ex Expect
	check(json.Unmarshal(raw, &ex), "decode expect.json")
	tmp, err := os.MkdirTemp("", "mkfixture-verify-*")
	check(err, "temp dir")
	cleanups = append(cleanups, func() { os.RemoveAll(tmp) })
	copyFile(filepath.Join(dir, "chatgate.db"), filepath.Join(tmp, "chatgate.db"))
	wh := newWebhook(func(string) bool { return false })
	p := startNode(bin, tmp, wh.url())
	hc := &http.Client{Timeout: 30 * time.Second}
	clients := map[string]*client{}
	for _, u := range ex.Users {
		clients[u.Name] = &client{base: p.base, token: u.Tokens[0], hc: hc}
	}

	// First request: the stored presence.
	m := clients[ex.Presence.Observer].must("GET", "/v1/groups/"+ex.GroupID, nil, http.StatusOK).obj()
	for _, x := range m["members"].([]any) {
		o := x.(map[string]any)
		want, ok := ex.Presence.Users[o["username"].(string)]
		if !ok {
			continue
		}
		if o["status"] != want.Status || o["last_active_at"] != want.LastActiveAt {
			fatalf("verify: stored presence of %s: %v %v, want %+v", o["username"], o["status"], o["last_active_at"], want)
		}
	}
	var wantIDs []string
	for _, pp := range ex.PendingPush {
		wantIDs = append(wantIDs, pp.ID)
	}
	wh.wait("pending pushes delivered", 30*time.Second, func() bool {
		for _, id := range wantIDs {
			if wh.got[id] == nil {
				return false
			}
		}
		return true
	})
	for _, a := range ex.Answers {
		r := clients[a.User].do(a.Method, a.Path, nil)
		var got, want any
		if err := json.Unmarshal(r.body, &got); err != nil {
			fatalf("verify: %s %s as %s: %v", a.Method, a.Path, a.User, err)
		}
		check(json.Unmarshal(a.Body, &want), "decode recorded answer")
		if r.status != a.Status || !reflect.DeepEqual(stripPresence(a.Path, got), want) {
			fatalf("verify: %s %s as %s: %d %s, want %d %s", a.Method, a.Path, a.User, r.status, r.body, a.Status, a.Body)
		}
	}
	for _, u := range ex.Users {
		for _, tok := range u.Revoked {
			c := &client{base: p.base, token: tok, hc: hc}
			c.must("GET", "/v1/me", nil, http.StatusUnauthorized)
		}
		c := &client{base: p.base, hc: hc}
		lm := c.must("POST", "/v1/auth/login", map[string]any{"username": u.Name, "password": u.Password}, http.StatusOK).obj()
		if lm["user"].(map[string]any)["id"] != u.ID || uint64(lm["cursor"].(float64)) != u.Head {
			fatalf("verify: login of %s: %v", u.Name, lm)
		}
	}
	p.stop()
	wh.mu.Lock()
	defer wh.mu.Unlock()
	got := append([]string(nil), wh.order...)
	sort.Strings(got)
	sort.Strings(wantIDs)
	if !slices.Equal(got, wantIDs) || len(wh.bad) > 0 {
		fatalf("verify: pushes after restart: got %v, want %v (bad %v)", got, wantIDs, wh.bad)
	}
	for _, pp := range ex.PendingPush {
		var a, b any
		_ = json.Unmarshal(pp.Payload, &a)
		_ = json.Unmarshal(wh.got[pp.ID].payload, &b)
		if !reflect.DeepEqual(a, b) {
			fatalf("verify: push %s: payload %s, want %s", pp.ID, wh.got[pp.ID].payload, pp.Payload)
		}
	}
}
