package node_test

import (
	"fmt"
	"math/rand/v2"
	"net"
	"net/http"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"sort"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"
	"unicode/utf8"

	"github.com/stretchr/testify/require"

	"github.com/chatgate/chatgate/core"
	"github.com/chatgate/chatgate/internal/testkit"
)

// ---- helpers shared by the durability and push tests ----

// durLeakCheck fails the test if goroutines of chatgate (the client package
// and the test's own included), buntdb, r3labs/sse, gorilla/websocket or
// httptest that were not running when the test started still run shortly
// after its cleanups (which it runs after, being registered first).
func durLeakCheck(t *testing.T) {
	t.Helper()
	before := map[string]bool{}
	for _, g := range durGoroutines() {
		before[goroutineID(g)] = true
	}
	t.Cleanup(func() {
		deadline := time.Now().Add(5 * time.Second)
		for {
			var leaked []string
			for _, g := range durGoroutines() {
				if !before[goroutineID(g)] {
					leaked = append(leaked, g)
				}
			}
			if len(leaked) == 0 {
				return
			}
			if time.Now().After(deadline) {
				sort.Strings(leaked)
				t.Errorf("%d goroutines leaked:\n\n%s", len(leaked), strings.Join(leaked, "\n\n"))
				return
			}
			time.Sleep(20 * time.Millisecond) // polling for a condition, not synchronising
		}
	})
}

// durGoroutines returns the stacks of the goroutines started by chatgate
// code or the libraries it runs on; test goroutines themselves are left out.
func durGoroutines() []string {
	buf := make([]byte, 1<<20)
	for {
		n := runtime.Stack(buf, true)
		if n < len(buf) {
			buf = buf[:n]
			break
		}
		buf = make([]byte, 2*len(buf))
	}
	var out []string
	for _, g := range strings.Split(string(buf), "\n\n") {
		if strings.Contains(g, "testing.tRunner(") || strings.Contains(g, "testing.(*M).") {
			continue
		}
		for _, pkg := range []string{"github.com/chatgate/chatgate/", "github.com/tidwall/buntdb", "github.com/r3labs/sse",
			"github.com/gorilla/websocket", "net/http/httptest"} {
			if strings.Contains(g, pkg) {
				out = append(out, g)
				break
			}
		}
	}
	return out
}

// goroutineID is the "goroutine N" of a stack.
func goroutineID(stack string) string {
	first, _, _ := strings.Cut(stack, "[")
	return strings.TrimSpace(first)
}

// durHTTP returns an HTTP client for many concurrent senders (keep-alive
// connections reused instead of one new connection per request), whose
// idle connections are closed when the test ends.
func durHTTP(t *testing.T) *http.Client {
	tr := &http.Transport{MaxIdleConnsPerHost: 64, MaxConnsPerHost: 64}
	t.Cleanup(tr.CloseIdleConnections)
	return &http.Client{Transport: tr, Timeout: 30 * time.Second}
}

// durAs returns a client acting as c's device over hc (for goroutines, which
// use TryDo).
func durAs(c *testkit.Client, hc *http.Client) *testkit.Client {
	cc := *c
	cc.HTTP = hc
	return &cc
}

func durID(t testing.TB, v any) uint64 {
	t.Helper()
	s, ok := v.(string)
	require.True(t, ok, "id %v is not a string", v)
	n, err := strconv.ParseUint(s, 10, 64)
	require.NoError(t, err)
	return n
}

// durInbox reads c's whole inbox from cursor 0 and checks the resume
// contract: every event is a message event, seqs are exactly 1..N, no
// message appears twice, and message ids grow with seq (a device's
// cur_max_message_id cursor never skips a message). It returns the events.
func durInbox(t *testing.T, c *testkit.Client) []map[string]any {
	t.Helper()
	evs, cursor := c.PollAll(0)
	seen := map[string]bool{}
	var lastID uint64
	for i, e := range evs {
		require.Equal(t, "message", e["type"], "event %d of %s: %v", i, c.ID, e)
		require.Equal(t, float64(i+1), e["seq"], "user %s: seq of event %d (gap or disorder)", c.ID, i)
		m := e["message"].(map[string]any)
		id := m["id"].(string)
		require.False(t, seen[id], "user %s: message %s twice in the inbox", c.ID, id)
		seen[id] = true
		n := durID(t, id)
		require.Greater(t, n, lastID, "user %s: message ids must grow with seq", c.ID)
		lastID = n
	}
	require.Equal(t, uint64(len(evs)), cursor, "final cursor of %s", c.ID)
	return evs
}

// durHistory reads a whole conversation as c, newest first, paging with
// before=, and checks ids strictly decrease.
func durHistory(t *testing.T, c *testkit.Client, conv string) []map[string]any {
	t.Helper()
	var all []map[string]any
	before := ""
	for {
		path := "/v1/conversations/" + conv + "/messages?limit=200"
		if before != "" {
			path += "&before=" + before
		}
		r := c.Do("GET", path, nil)
		require.Equal(t, http.StatusOK, r.Status, "history %s as %s: %s", conv, c.ID, r.Body)
		var page struct {
			Messages []map[string]any `json:"messages"`
			HasMore  bool             `json:"has_more"`
		}
		r.Decode(t, &page)
		all = append(all, page.Messages...)
		if !page.HasMore {
			break
		}
		require.NotEmpty(t, page.Messages, "has_more with an empty page")
		before = page.Messages[len(page.Messages)-1]["id"].(string)
	}
	for i := 1; i < len(all); i++ {
		require.Greater(t, durID(t, all[i-1]["id"]), durID(t, all[i]["id"]), "history of %s is not newest first", conv)
	}
	return all
}

// durIDs returns the set of message ids of events or messages.
func durIDs(items []map[string]any) map[string]bool {
	out := make(map[string]bool, len(items))
	for _, it := range items {
		if m, ok := it["message"].(map[string]any); ok {
			it = m
		}
		out[it["id"].(string)] = true
	}
	return out
}

// durSent is an acknowledged (or retried-then-acknowledged) message.
type durSent struct {
	ID, Conv, From, To, Group, Content, ClientMsgID string
}

// durExpect builds, from acknowledged messages and group members, the set
// of message ids each user's inbox and each conversation must hold.
func durExpect(sent []durSent, groups map[string][]string) (perUser, perConv map[string]map[string]bool) {
	perUser, perConv = map[string]map[string]bool{}, map[string]map[string]bool{}
	add := func(m map[string]map[string]bool, k, id string) {
		if m[k] == nil {
			m[k] = map[string]bool{}
		}
		m[k][id] = true
	}
	for _, s := range sent {
		add(perConv, s.Conv, s.ID)
		if s.Group != "" {
			for _, u := range groups[s.Group] {
				add(perUser, u, s.ID)
			}
			continue
		}
		add(perUser, s.From, s.ID)
		add(perUser, s.To, s.ID)
	}
	return perUser, perConv
}

// durDirectConv is the 1:1 conversation id of two users (smaller id first).
func durDirectConv(a, b string) string {
	x, _ := strconv.ParseUint(a, 10, 64)
	y, _ := strconv.ParseUint(b, 10, 64)
	if x > y {
		a, b = b, a
	}
	return "d_" + a + "_" + b
}

// durCheckSearch checks that every acknowledged message is found by its
// sender searching its own words in its conversation: the index lost
// nothing across the kills (it is rebuilt from a durable queue at start).
func durCheckSearch(t *testing.T, byUser map[string]*testkit.Client, sent []durSent) {
	t.Helper()
	for _, s := range sent {
		q := strings.TrimSpace(s.Content)
		if n := utf8.RuneCountInString(q); n < core.MinQueryChars || n > core.MaxQueryChars || len(core.QueryTerms(q)) == 0 {
			continue
		}
		found, before := false, ""
		for !found {
			r := byUser[s.From].Do("GET", "/v1/search?limit=100&q="+url.QueryEscape(q)+"&conversation_id="+s.Conv+before, nil)
			require.Equal(t, http.StatusOK, r.Status, "search: %s", r.Body)
			var page struct {
				Results []struct {
					Message struct {
						ID string `json:"id"`
					} `json:"message"`
				} `json:"results"`
				HasMore bool `json:"has_more"`
			}
			r.Decode(t, &page)
			for _, res := range page.Results {
				found = found || res.Message.ID == s.ID
			}
			if !page.HasMore || len(page.Results) == 0 {
				break
			}
			before = "&before=" + page.Results[len(page.Results)-1].Message.ID
		}
		require.True(t, found, "message %s (%q) is not found by searching its words", s.ID, s.Content)
	}
}

// durCheckAll verifies every user's inbox and every conversation's history
// (read by each member) against the acknowledged messages.
func durCheckAll(t *testing.T, users []*testkit.Client, sent []durSent, groups map[string][]string) {
	t.Helper()
	perUser, perConv := durExpect(sent, groups)
	byID := map[string]durSent{}
	for _, s := range sent {
		byID[s.ID] = s
	}
	byUser := map[string]*testkit.Client{}
	for _, u := range users {
		byUser[u.ID] = u
		evs := durInbox(t, u)
		got := durIDs(evs)
		want := perUser[u.ID]
		if want == nil {
			want = map[string]bool{}
		}
		require.Equal(t, len(want), len(got), "inbox size of %s", u.ID)
		require.Equal(t, want, got, "inbox of %s holds exactly the acknowledged messages", u.ID)
		for _, e := range evs {
			m := e["message"].(map[string]any)
			s := byID[m["id"].(string)]
			require.Equal(t, s.Content, m["content"])
			require.Equal(t, s.From, m["from"])
			require.Equal(t, s.ClientMsgID, m["client_msg_id"])
			require.Equal(t, s.Conv, m["conversation_id"])
		}
	}
	durCheckSearch(t, byUser, sent)
	for conv, want := range perConv {
		var readers []string
		if strings.HasPrefix(conv, "g_") {
			readers = groups[strings.TrimPrefix(conv, "g_")]
		} else {
			readers = strings.Split(strings.TrimPrefix(conv, "d_"), "_")
		}
		for _, uid := range readers {
			h := durHistory(t, byUser[uid], conv)
			require.Equal(t, want, durIDs(h), "history of %s read by %s", conv, uid)
			require.Len(t, h, len(want), "history of %s has duplicates", conv)
		}
	}
}

// ---- TestConcurrentSendsGapFree ----

// TestConcurrentSendsGapFree sends 1:1 and group messages from many
// goroutines at once and checks that every user's inbox is gap-free and
// holds exactly the acknowledged messages, and every conversation's history
// too. Some sends are retried with the same client_msg_id, which must
// return the same message.
func TestConcurrentSendsGapFree(t *testing.T) {
	durLeakCheck(t)
	n := testkit.Start(t, noSearchLimit)
	const nUsers, workers, perWorker = 12, 16, 40
	users := testkit.SignupMany(t, n.URL(), "gap", nUsers)
	members := []*testkit.Client{users[0], users[1], users[2], users[3], users[4], users[5]}
	var ids []string
	for _, m := range members[1:] {
		ids = append(ids, m.ID)
	}
	r := users[0].Do("POST", "/v1/groups", map[string]any{"name": "gap group", "members": ids})
	require.Equal(t, http.StatusCreated, r.Status, "%s", r.Body)
	gid := r.JSON()["id"].(string)
	groups := map[string][]string{gid: append([]string{users[0].ID}, ids...)}

	hc := durHTTP(t)
	var (
		mu    sync.Mutex
		sent  []durSent
		fails []string
		wg    sync.WaitGroup
	)
	fail := func(format string, args ...any) {
		mu.Lock()
		fails = append(fails, fmt.Sprintf(format, args...))
		mu.Unlock()
	}
	for w := 0; w < workers; w++ {
		wg.Add(1)
		go func(w int) {
			defer wg.Done()
			rng := rand.New(rand.NewPCG(uint64(w), 42))
			for i := 0; i < perWorker; i++ {
				var from *testkit.Client
				body := map[string]any{"content": fmt.Sprintf("w%d m%d ✓", w, i), "client_msg_id": fmt.Sprintf("w%d-%d", w, i)}
				s := durSent{Content: body["content"].(string), ClientMsgID: body["client_msg_id"].(string)}
				if i%4 == 0 {
					from = members[rng.IntN(len(members))]
					body["group_id"], s.Group, s.Conv = gid, gid, "g_"+gid
				} else {
					a := rng.IntN(nUsers)
					b := (a + 1 + rng.IntN(nUsers-1)) % nUsers
					from = users[a]
					body["to"], s.To, s.Conv = users[b].ID, users[b].ID, durDirectConv(users[a].ID, users[b].ID)
				}
				s.From = from.ID
				c := durAs(from, hc)
				resp, err := c.TryDo("POST", "/v1/messages", body)
				if err != nil || resp.Status != http.StatusCreated {
					fail("send %v: err=%v status=%d body=%s", body, err, resp.Status, resp.Body)
					return
				}
				m, _ := resp.JSON()["message"].(map[string]any)
				s.ID, _ = m["id"].(string)
				if m["from"] != s.From || m["content"] != s.Content || m["conversation_id"] != s.Conv || m["client_msg_id"] != s.ClientMsgID {
					fail("answer %v does not match the send %+v", m, s)
				}
				if i%7 == 3 {
					// A client that lost the answer retries: same message.
					again, err := c.TryDo("POST", "/v1/messages", body)
					switch {
					case err != nil || again.Status != http.StatusCreated:
						fail("retry %v: err=%v status=%d", body, err, again.Status)
					case again.JSON()["message"].(map[string]any)["id"] != s.ID:
						fail("retry of %s stored a new message: %s", s.ClientMsgID, again.Body)
					case again.Header.Get("Idempotent-Replayed") != "true":
						fail("retry of %s lacks Idempotent-Replayed", s.ClientMsgID)
					}
				}
				mu.Lock()
				sent = append(sent, s)
				mu.Unlock()
			}
		}(w)
	}
	wg.Wait()
	require.Empty(t, fails)
	require.Len(t, sent, workers*perWorker)
	unique := map[string]bool{}
	for _, s := range sent {
		require.False(t, unique[s.ID], "message id %s acknowledged twice", s.ID)
		unique[s.ID] = true
	}

	durCheckAll(t, users, sent, groups)

	// The conversation list agrees: one entry per conversation with the
	// newest acknowledged message last.
	_, perConv := durExpect(sent, groups)
	for _, u := range users {
		var out struct {
			Conversations []struct {
				ID          string         `json:"id"`
				LastMessage map[string]any `json:"last_message"`
			} `json:"conversations"`
		}
		r := u.Do("GET", "/v1/conversations?limit=500", nil)
		require.Equal(t, http.StatusOK, r.Status)
		r.Decode(t, &out)
		want := 0
		for conv := range perConv {
			if strings.Contains(conv+"_", "_"+u.ID+"_") || (conv == "g_"+gid && containsStr(groups[gid], u.ID)) {
				want++
			}
		}
		require.Len(t, out.Conversations, want, "conversations of %s", u.ID)
		for _, c := range out.Conversations {
			var newest uint64
			for id := range perConv[c.ID] {
				newest = max(newest, durID(t, id))
			}
			require.Equal(t, newest, durID(t, c.LastMessage["id"]), "last message of %s", c.ID)
		}
	}
}

func containsStr(xs []string, x string) bool {
	for _, v := range xs {
		if v == x {
			return true
		}
	}
	return false
}

// ---- TestRestartKeepsEverything ----

// durState is what a user sees through the API, minus presence (which a
// restart legitimately changes: online users are stored as offline).
type durState struct {
	Me            map[string]any
	Friends       map[string]any
	Groups        map[string]any
	Conversations map[string]any
	Events        []map[string]any
	Cursor        uint64
}

func durStrip(v any) any {
	switch x := v.(type) {
	case map[string]any:
		delete(x, "status")
		delete(x, "last_active_at")
		for _, e := range x {
			durStrip(e)
		}
	case []any:
		for _, e := range x {
			durStrip(e)
		}
	}
	return v
}

func durGet(t *testing.T, c *testkit.Client, path string) map[string]any {
	t.Helper()
	r := c.Do("GET", path, nil)
	require.Equal(t, http.StatusOK, r.Status, "GET %s: %s", path, r.Body)
	return durStrip(r.JSON()).(map[string]any)
}

func durStateOf(t *testing.T, c *testkit.Client) durState {
	t.Helper()
	s := durState{
		Me:            durGet(t, c, "/v1/me"),
		Friends:       durGet(t, c, "/v1/friends"),
		Groups:        durGet(t, c, "/v1/groups"),
		Conversations: durGet(t, c, "/v1/conversations"),
	}
	s.Events = durInbox(t, c)
	_, s.Cursor = c.PollAll(0)
	return s
}

// TestRestartKeepsEverything stops a node cleanly and starts it again on
// the same data: accounts, devices, friendships, groups, messages, inboxes,
// read markers and idempotency keys are all still there, and new messages
// continue the sequences.
func TestRestartKeepsEverything(t *testing.T) {
	durLeakCheck(t)
	n := testkit.Start(t, noSearchLimit)
	us := testkit.SignupMany(t, n.URL(), "rst", 4)
	a, b, c, d := us[0], us[1], us[2], us[3]

	login := func(u *testkit.Client, device string) *testkit.Client {
		cl := testkit.NewClient(t, n.URL())
		r := cl.Do("POST", "/v1/auth/login", map[string]any{"username": u.User["username"], "password": "correct horse", "device": device})
		require.Equal(t, http.StatusOK, r.Status, "%s", r.Body)
		cl.Token, cl.ID, cl.User = r.JSON()["token"].(string), u.ID, u.User
		return cl
	}
	a2 := login(a, "phone")
	c2 := login(c, "old laptop")
	require.Equal(t, http.StatusNoContent, c2.Do("POST", "/v1/auth/logout", nil).Status)
	require.Equal(t, http.StatusUnauthorized, c2.Do("GET", "/v1/me", nil).Status)

	testkit.Befriend(t, a, b)
	testkit.Befriend(t, a, c)
	require.Equal(t, http.StatusOK, d.Do("PUT", "/v1/friends/"+b.ID, nil).Status) // one-sided
	require.Equal(t, http.StatusOK, d.Do("PATCH", "/v1/me", map[string]any{"display_name": "Dee"}).Status)

	r := a.Do("POST", "/v1/groups", map[string]any{"name": "trip", "members": []string{b.ID, c.ID}})
	require.Equal(t, http.StatusCreated, r.Status, "%s", r.Body)
	gid := r.JSON()["id"].(string)
	gconv := "g_" + gid
	groups := map[string][]string{gid: {a.ID, b.ID, c.ID}}

	var sent []durSent
	send1 := func(from, to *testkit.Client, content string) durSent {
		cm := fmt.Sprintf("%s-%d", content, len(sent))
		m := from.Send(to.ID, content, cm)
		s := durSent{ID: m["id"].(string), Conv: m["conversation_id"].(string), From: from.ID, To: to.ID, Content: content, ClientMsgID: cm}
		sent = append(sent, s)
		return s
	}
	sendG := func(from *testkit.Client, content string) durSent {
		cm := fmt.Sprintf("%s-%d", content, len(sent))
		r := from.Do("POST", "/v1/messages", map[string]any{"group_id": gid, "content": content, "client_msg_id": cm})
		require.Equal(t, http.StatusCreated, r.Status, "%s", r.Body)
		m := r.JSON()["message"].(map[string]any)
		s := durSent{ID: m["id"].(string), Conv: gconv, From: from.ID, Group: gid, Content: content, ClientMsgID: cm}
		sent = append(sent, s)
		return s
	}
	var ab []durSent
	for i := 0; i < 5; i++ {
		ab = append(ab, send1(a, b, fmt.Sprintf("a to b %d", i)))
		if i < 3 {
			send1(b, a, fmt.Sprintf("b to a %d", i))
		}
	}
	send1(a2, c, "from a's phone")
	send1(a2, c, "from a's phone again 🎒")
	send1(d, a, "hello stranger")
	var gs []durSent
	for i := 0; i < 6; i++ {
		gs = append(gs, sendG(us[i%3], fmt.Sprintf("group %d", i)))
	}
	// Read markers: b has read a's first three messages, a the group up to 4.
	abConv := ab[0].Conv
	require.Equal(t, http.StatusNoContent, b.Do("POST", "/v1/conversations/"+abConv+"/read", map[string]any{"message_id": ab[2].ID}).Status)
	require.Equal(t, http.StatusNoContent, a.Do("POST", "/v1/conversations/"+gconv+"/read", map[string]any{"message_id": gs[3].ID}).Status)

	clients := []*testkit.Client{a, a2, b, c, d}
	before := map[*testkit.Client]durState{}
	for _, cl := range clients {
		before[cl] = durStateOf(t, cl)
	}
	// Sanity: the state is what was built, so comparing it after the
	// restart means something.
	require.Len(t, before[b].Friends["friends"], 1)
	require.Len(t, before[b].Friends["incoming"], 1)
	require.Len(t, before[d].Friends["outgoing"], 1)
	require.Equal(t, "Dee", before[d].Me["display_name"])
	unread := map[string]float64{}
	for _, cv := range before[b].Conversations["conversations"].([]any) {
		cm := cv.(map[string]any)
		unread[cm["id"].(string)] = cm["unread_count"].(float64)
	}
	require.Equal(t, map[string]float64{abConv: 2, gconv: 4}, unread, "b's unread counts before the restart")
	detail := durGet(t, a, "/v1/groups/"+gid)
	histories := map[string][]map[string]any{}
	_, perConv := durExpect(sent, groups)
	for conv := range perConv {
		histories[conv] = durHistory(t, a, conv)
	}
	var maxID uint64
	for _, s := range sent {
		maxID = max(maxID, durID(t, s.ID))
	}

	n.Restart(t)
	for _, cl := range append(clients, c2) {
		cl.Base = n.URL()
	}

	// Tokens still authenticate; the revoked one stays revoked; passwords
	// still check.
	for _, cl := range clients {
		require.Equal(t, http.StatusOK, cl.Do("GET", "/v1/me", nil).Status, "token of %s after restart", cl.ID)
	}
	require.Equal(t, http.StatusUnauthorized, c2.Do("GET", "/v1/me", nil).Status, "a revoked token must stay revoked")
	login(b, "tablet")

	for _, cl := range clients {
		require.Equal(t, before[cl], durStateOf(t, cl), "state of %s after restart", cl.ID)
	}
	require.Equal(t, detail, durGet(t, a, "/v1/groups/"+gid))
	for conv, h := range histories {
		require.Equal(t, h, durHistory(t, a, conv), "history of %s after restart", conv)
	}
	durCheckAll(t, us, sent, groups)

	// A cursor in the middle returns the rest.
	evs := before[a].Events
	mid := uint64(len(evs) / 2)
	rest, cur := a.PollAll(mid)
	require.Equal(t, evs[mid:], rest)
	require.Equal(t, before[a].Cursor, cur)

	// A retried send from before the restart is still recognised.
	rr := a.Do("POST", "/v1/messages", map[string]any{"to": b.ID, "content": ab[0].Content, "client_msg_id": ab[0].ClientMsgID})
	require.Equal(t, http.StatusCreated, rr.Status)
	require.Equal(t, "true", rr.Header.Get("Idempotent-Replayed"))
	require.Equal(t, ab[0].ID, rr.JSON()["message"].(map[string]any)["id"])

	// New messages continue every sequence: next seq, larger id.
	s1 := send1(a, b, "after restart")
	s2 := sendG(c, "group after restart")
	require.Greater(t, durID(t, s1.ID), maxID)
	require.Greater(t, durID(t, s2.ID), durID(t, s1.ID))
	for _, u := range us {
		evs := durInbox(t, u)
		old := before[u].Cursor
		var want []string
		if u == a || u == b {
			want = append(want, s1.ID)
		}
		if u != d {
			want = append(want, s2.ID)
		}
		require.Len(t, evs, int(old)+len(want), "inbox of %s", u.ID)
		for i, id := range want {
			e := evs[int(old)+i]
			require.Equal(t, float64(old+uint64(i)+1), e["seq"])
			require.Equal(t, id, e["message"].(map[string]any)["id"])
		}
	}
	durCheckAll(t, us, sent, groups)
}

// ---- TestCrashKill9 ----

// durProc is a chatgate binary running as a subprocess.
type durProc struct {
	cmd    *exec.Cmd
	addr   string
	base   string
	pid    int
	exited chan struct{}
	log    string
}

// kill sends SIGKILL and waits for the process to be gone (idempotent).
func (p *durProc) kill() {
	_ = p.cmd.Process.Signal(syscall.SIGKILL)
	<-p.exited
}

func durFreePort(t *testing.T) int {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	require.NoError(t, err)
	port := ln.Addr().(*net.TCPAddr).Port
	require.NoError(t, ln.Close())
	return port
}

// procSpec says how startProc runs the binary.
type procSpec struct {
	dir    string   // data directory; "" for a fresh one
	logDir string   // where its logs go; "" for a fresh one
	run    int      // names the log files and messages of a restart
	addr   string   // listen here at every attempt (restarts keep their port); "" for a free port each time
	args   []string // more flags
	// mustLive makes the process exiting by itself before the test ends
	// an error (a crash), for tests that never kill it.
	mustLive bool
}

// startProc starts the binary and waits until /readyz answers 200; it is
// killed when the test ends, whatever happens. A process that exits at
// start (most likely its port was taken for a moment) is started again,
// for up to 20 s.
func startProc(t *testing.T, bin string, s procSpec) *durProc {
	t.Helper()
	var env []string
	for _, kv := range os.Environ() {
		if !strings.HasPrefix(kv, "CHATGATE_") {
			env = append(env, kv)
		}
	}
	if s.dir == "" {
		s.dir = t.TempDir()
	}
	if s.logDir == "" {
		s.logDir = t.TempDir()
	}
	hc := &http.Client{Timeout: time.Second, Transport: &http.Transport{DisableKeepAlives: true, Proxy: nil}}
	deadline := time.Now().Add(20 * time.Second)
	for attempt := 0; ; attempt++ {
		addr := s.addr
		if addr == "" {
			addr = fmt.Sprintf("127.0.0.1:%d", durFreePort(t))
		}
		logPath := filepath.Join(s.logDir, fmt.Sprintf("chatgate-%d-%d.log", s.run, attempt))
		logf, err := os.Create(logPath)
		require.NoError(t, err)
		// The checks search for every acknowledged message: no search limit.
		cmd := exec.Command(bin, append([]string{"-addr", addr, "-data", s.dir, "-log-level", "warn", "-limit-search", "off"}, s.args...)...)
		cmd.Env = env
		cmd.Stdout, cmd.Stderr = logf, logf
		require.NoError(t, cmd.Start())
		logf.Close() // the child holds its own descriptor
		p := &durProc{cmd: cmd, addr: addr, base: "http://" + addr, pid: cmd.Process.Pid, exited: make(chan struct{}), log: logPath}
		go func() { _ = cmd.Wait(); close(p.exited) }()
		started := false
		t.Cleanup(func() {
			select {
			case <-p.exited:
				if started && s.mustLive {
					b, _ := os.ReadFile(logPath)
					t.Errorf("chatgate exited during the test: %s", b)
				}
			default:
				p.kill()
			}
			if t.Failed() {
				b, _ := os.ReadFile(logPath)
				t.Logf("log of run %d attempt %d (%s):\n%s", s.run, attempt, addr, b)
			}
		})
		for {
			select {
			case <-p.exited:
			default:
				resp, err := hc.Get(p.base + "/readyz")
				if err == nil {
					resp.Body.Close()
					if resp.StatusCode == http.StatusOK {
						started = true
						return p
					}
				}
				if time.Now().After(deadline) {
					p.kill()
					t.Fatalf("chatgate (run %d) was not ready within 20 s", s.run)
				}
				time.Sleep(10 * time.Millisecond) // polling for readiness
				continue
			}
			break
		}
		b, _ := os.ReadFile(logPath)
		if time.Now().After(deadline) {
			t.Fatalf("chatgate (run %d) did not start on %s: %s", s.run, addr, b)
		}
		t.Logf("chatgate exited at start (run %d, attempt %d): %s", s.run, attempt, b)
		time.Sleep(100 * time.Millisecond) // polling for the port to come free
	}
}

// durStart starts the binary on dir (see startProc).
func durStart(t *testing.T, bin, dir, logDir string, run int) *durProc {
	t.Helper()
	return startProc(t, bin, procSpec{dir: dir, logDir: logDir, run: run})
}

// durAttempt is one send of the crash test.
type durAttempt struct {
	from *testkit.Client
	body map[string]any
	s    durSent
}

// TestCrashKill9 runs the real binary, kills it with SIGKILL while senders
// are busy, and restarts it on the same data, three times: every
// acknowledged message survives in inboxes and history, inboxes stay
// gap-free, and a send whose outcome the crash hid is either found (a retry
// returns the stored message) or stored once by the retry, never twice.
func TestCrashKill9(t *testing.T) {
	if testing.Short() {
		t.Skip("-short: builds and kills the real binary") // CI runs without -short
	}
	durLeakCheck(t)
	start := time.Now()
	bin := testkit.Binary(t)
	t.Logf("built the binary in %v", time.Since(start).Round(time.Millisecond))
	dir, logDir := t.TempDir(), t.TempDir()
	p := durStart(t, bin, dir, logDir, 0)

	users := testkit.SignupMany(t, p.base, "crash", 6)
	var ids []string
	for _, u := range users[1:4] {
		ids = append(ids, u.ID)
	}
	r := users[0].Do("POST", "/v1/groups", map[string]any{"name": "crash group", "members": ids})
	require.Equal(t, http.StatusCreated, r.Status, "%s", r.Body)
	gid := r.JSON()["id"].(string)
	groups := map[string][]string{gid: append([]string{users[0].ID}, ids...)}

	const rounds, senders, ackTarget = 3, 8, 300
	var all []durSent
	var lastMax uint64
	for round := 0; round < rounds; round++ {
		hc := durHTTP(t)
		var (
			mu        sync.Mutex
			acked     []durSent
			unknown   []durAttempt
			fails     []string
			wg        sync.WaitGroup
			acks      atomic.Int64
			reached   = make(chan struct{})
			reachOnce sync.Once
		)
		for s := 0; s < senders; s++ {
			wg.Add(1)
			go func(s int) {
				defer wg.Done()
				rng := rand.New(rand.NewPCG(uint64(round), uint64(s)))
				from := users[s%len(users)]
				c := durAs(from, hc)
				c.Base = p.base
				for i := 0; ; i++ {
					a := durAttempt{from: from, body: map[string]any{
						"content": fmt.Sprintf("r%d s%d m%d", round, s, i), "client_msg_id": fmt.Sprintf("r%d-s%d-%d", round, s, i),
					}}
					a.s = durSent{From: from.ID, Content: a.body["content"].(string), ClientMsgID: a.body["client_msg_id"].(string)}
					if i%3 == 0 && containsStr(groups[gid], from.ID) {
						a.body["group_id"], a.s.Group, a.s.Conv = gid, gid, "g_"+gid
					} else {
						to := users[(s%len(users)+1+rng.IntN(len(users)-1))%len(users)]
						a.body["to"], a.s.To, a.s.Conv = to.ID, to.ID, durDirectConv(from.ID, to.ID)
					}
					resp, err := c.TryDo("POST", "/v1/messages", a.body)
					if err != nil {
						// No answer: the process died under this request.
						mu.Lock()
						unknown = append(unknown, a)
						mu.Unlock()
						return
					}
					if resp.Status != http.StatusCreated {
						mu.Lock()
						fails = append(fails, fmt.Sprintf("send %v: status %d: %s", a.body, resp.Status, resp.Body))
						mu.Unlock()
						return
					}
					m := resp.JSON()["message"].(map[string]any)
					a.s.ID = m["id"].(string)
					mu.Lock()
					acked = append(acked, a.s)
					mu.Unlock()
					if acks.Add(1) >= ackTarget {
						reachOnce.Do(func() { close(reached) })
					}
				}
			}(s)
		}
		allDone := make(chan struct{})
		go func() { wg.Wait(); close(allDone) }()
		select {
		case <-reached:
		case <-allDone:
			t.Fatalf("round %d: every sender stopped before %d acks: %v", round, ackTarget, fails)
		case <-time.After(20 * time.Second):
			p.kill()
			<-allDone
			t.Fatalf("round %d: only %d acks in 20 s", round, acks.Load())
		}
		p.kill() // SIGKILL while the senders are still sending
		<-allDone
		require.Empty(t, fails, "round %d", round)
		require.GreaterOrEqual(t, len(acked), ackTarget)

		p = durStart(t, bin, dir, logDir, round+1)
		for _, u := range users {
			u.Base = p.base
		}
		// Retry every send whose answer the crash swallowed, as a client
		// would: it was stored exactly once, either before the crash (the
		// retry returns it) or by the retry.
		found := 0
		for _, a := range unknown {
			c := durAs(a.from, hc)
			c.Base = p.base
			resp := c.Do("POST", "/v1/messages", a.body)
			require.Equal(t, http.StatusCreated, resp.Status, "retry %v: %s", a.body, resp.Body)
			m := resp.JSON()["message"].(map[string]any)
			require.Equal(t, a.s.Content, m["content"])
			require.Equal(t, a.s.ClientMsgID, m["client_msg_id"])
			a.s.ID = m["id"].(string)
			if resp.Header.Get("Idempotent-Replayed") == "true" {
				found++
			}
			acked = append(acked, a.s)
		}
		// Retries of acknowledged sends return the stored message.
		for i := 0; i < len(acked); i += 37 {
			s := acked[i]
			body := map[string]any{"content": s.Content, "client_msg_id": s.ClientMsgID}
			if s.Group != "" {
				body["group_id"] = s.Group
			} else {
				body["to"] = s.To
			}
			var from *testkit.Client
			for _, u := range users {
				if u.ID == s.From {
					from = u
				}
			}
			resp := from.Do("POST", "/v1/messages", body)
			require.Equal(t, http.StatusCreated, resp.Status)
			require.Equal(t, "true", resp.Header.Get("Idempotent-Replayed"))
			require.Equal(t, s.ID, resp.JSON()["message"].(map[string]any)["id"])
		}
		var roundMin uint64 = ^uint64(0)
		for _, s := range acked {
			roundMin = min(roundMin, durID(t, s.ID))
		}
		require.Greater(t, roundMin, lastMax, "ids after a crash must be above every id before it")
		all = append(all, acked...)
		for _, s := range all {
			lastMax = max(lastMax, durID(t, s.ID))
		}
		t.Logf("round %d: %d acknowledged, %d unanswered at the kill (%d of them had been stored)",
			round, len(acked)-len(unknown), len(unknown), found)
		durCheckAll(t, users, all, groups)
	}
	t.Logf("%d messages survived %d kills in %v", len(all), rounds, time.Since(start).Round(time.Millisecond))
}
