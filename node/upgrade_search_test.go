package node_test

import (
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"io/fs"
	"net/http"
	"net/url"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"
	"unicode/utf8"

	"github.com/cockroachdb/pebble/v2"
	"github.com/stretchr/testify/require"

	"github.com/chatgate/chatgate/core"
	"github.com/chatgate/chatgate/internal/testkit"
)

// pebbleV1Fixture is a data directory written by release 93ef752, the last
// whose history (core/pebble) is format 1, without the search index, and
// what that release answered: core/embedded/testdata/mkpebblefixture.go
// made both. A node started on a copy must upgrade it to format 2, keep
// every message as it was and find each one by search once the background
// backfill has indexed them.
const pebbleV1Fixture = "../core/embedded/testdata/pebble-v1"

// pvExpect is the fixture's expect.json (the fields the test uses).
type pvExpect struct {
	Format        string            `json:"format"`
	Release       string            `json:"release"`
	HistoryFormat int               `json:"history_format"`
	Files         map[string]string `json:"files"`
	Users         []struct {
		Name     string `json:"username"`
		Password string `json:"password"`
		ID       string `json:"id"`
	} `json:"users"`
	Conversations []struct {
		Name    string   `json:"name"`
		ID      string   `json:"id"`
		GroupID string   `json:"group_id"`
		Members []string `json:"members"`
	} `json:"conversations"`
	Searches []struct {
		User  string   `json:"user"`
		Query string   `json:"q"`
		IDs   []string `json:"ids"`
	} `json:"searches"`
	Messages []struct {
		Label   string         `json:"label"`
		Sender  string         `json:"sender"`
		Conv    string         `json:"conv"`
		Message map[string]any `json:"message"`
	} `json:"messages"`
}

// pvLoad reads expect.json and checks that the fixture's data directory
// holds exactly the files it describes, byte for byte: the fixture is
// never opened in place or edited, only regenerated.
func pvLoad(t *testing.T) pvExpect {
	t.Helper()
	raw, err := os.ReadFile(filepath.Join(pebbleV1Fixture, "expect.json"))
	require.NoError(t, err)
	var ex pvExpect
	require.NoError(t, json.Unmarshal(raw, &ex))
	require.Equal(t, "chatgate-pebble-fixture/1", ex.Format)
	require.Equal(t, 1, ex.HistoryFormat)
	require.Len(t, ex.Users, 3)
	require.NotEmpty(t, ex.Conversations)
	require.NotEmpty(t, ex.Searches)
	require.Greater(t, len(ex.Messages), 512, "the fixture holds more messages than one backfill batch")
	got := map[string]string{}
	err = filepath.WalkDir(filepath.Join(pebbleV1Fixture, "data"), func(path string, d fs.DirEntry, err error) error {
		if err != nil || d.IsDir() {
			return err
		}
		b, err := os.ReadFile(path)
		if err != nil {
			return err
		}
		rel, err := filepath.Rel(filepath.Join(pebbleV1Fixture, "data"), path)
		if err != nil {
			return err
		}
		sum := sha256.Sum256(b)
		got[filepath.ToSlash(rel)] = hex.EncodeToString(sum[:])
		return nil
	})
	require.NoError(t, err)
	require.Equal(t, ex.Files, got,
		"%s/data is not what expect.json describes: regenerate both with mkpebblefixture.go, never edit them", pebbleV1Fixture)
	return ex
}

// pvCopy copies the fixture's data directory into a fresh one.
func pvCopy(t *testing.T) string {
	t.Helper()
	to := t.TempDir()
	require.NoError(t, os.CopyFS(to, os.DirFS(filepath.Join(pebbleV1Fixture, "data"))))
	return to
}

// ---- the model: what every user must read and find ----

type pvMsg struct {
	conv  string // conversation name (direct, group, notes)
	id    uint64
	m     map[string]any // as the API answers it
	terms map[string]bool
}

type pvModel struct {
	conv    map[string]string   // name → conversation id
	members map[string][]string // name → usernames
	msgs    []pvMsg             // in send order
	byID    map[string]int      // message id → index in msgs
}

func pvNewModel(t *testing.T, ex pvExpect) *pvModel {
	md := &pvModel{conv: map[string]string{}, members: map[string][]string{}, byID: map[string]int{}}
	for _, c := range ex.Conversations {
		md.conv[c.Name], md.members[c.Name] = c.ID, c.Members
	}
	for _, m := range ex.Messages {
		require.Equal(t, md.conv[m.Conv], m.Message["conversation_id"], "message %s", m.Label)
		md.add(t, m.Conv, m.Message)
	}
	return md
}

func (md *pvModel) add(t *testing.T, conv string, m map[string]any) {
	t.Helper()
	id := durID(t, m["id"])
	if n := len(md.msgs); n > 0 {
		require.Greater(t, id, md.msgs[n-1].id, "ids follow send order")
	}
	terms := map[string]bool{}
	for _, w := range core.Terms(m["content"].(string)) {
		terms[w] = true
	}
	md.byID[m["id"].(string)] = len(md.msgs)
	md.msgs = append(md.msgs, pvMsg{conv: conv, id: id, m: m, terms: terms})
}

// msg returns the message with id, or nil.
func (md *pvModel) msg(id string) *pvMsg {
	if i, ok := md.byID[id]; ok {
		return &md.msgs[i]
	}
	return nil
}

func (md *pvModel) member(user, conv string) bool { return slices.Contains(md.members[conv], user) }

// history is conv's messages, newest first.
func (md *pvModel) history(conv string) []map[string]any {
	var out []map[string]any
	for i := len(md.msgs) - 1; i >= 0; i-- {
		if md.msgs[i].conv == conv {
			out = append(out, md.msgs[i].m)
		}
	}
	return out
}

// search is what user must find for q: the messages of user's
// conversations holding every query term, newest first. (The terms are the
// core's, which core/search_test.go checks; here they judge the index.)
func (md *pvModel) search(user, q string) []string {
	out := []string{}
	qt := core.QueryTerms(q)
	for i := len(md.msgs) - 1; i >= 0; i-- {
		m := &md.msgs[i]
		if !md.member(user, m.conv) || len(qt) == 0 {
			continue
		}
		all := true
		for _, w := range qt {
			all = all && m.terms[w]
		}
		if all {
			out = append(out, m.m["id"].(string))
		}
	}
	return out
}

// sweep is every term of the messages other than carol's notes, as a
// query, and a few queries of two terms.
func (md *pvModel) sweep() []string {
	seen := map[string]bool{}
	var out []string
	for _, m := range md.msgs {
		if m.conv == "notes" {
			continue
		}
		for _, w := range core.Terms(m.m["content"].(string)) {
			if utf8.RuneCountInString(w) >= core.MinQueryChars && !seen[w] {
				seen[w] = true
				out = append(out, w)
			}
		}
	}
	return append(out, "lunch report", "채팅 log", "東京 駅", "내일 회의는", "note 0490", "Ｒｅｐｏｒｔ")
}

// ---- talking to the node ----

type pvSide struct {
	t  *testing.T
	md *pvModel
	by map[string]*testkit.Client // by username
}

// pvLogin logs every fixture user in with the password the release stored.
func pvLogin(t *testing.T, base string, ex pvExpect, md *pvModel) *pvSide {
	t.Helper()
	s := &pvSide{t: t, md: md, by: map[string]*testkit.Client{}}
	for _, u := range ex.Users {
		c := testkit.NewClient(t, base)
		in := map[string]any{"username": u.Name, "password": u.Password, "device": "after-upgrade"}
		m := requireStatus(t, c.Do("POST", "/v1/auth/login", in), http.StatusOK)
		require.Equal(t, u.ID, m["user"].(map[string]any)["id"], "login of %s", u.Name)
		c.Token, c.ID = m["token"].(string), u.ID
		s.by[u.Name] = c
	}
	return s
}

// rebase returns the same devices talking to another node.
func (s *pvSide) rebase(base string) *pvSide {
	out := &pvSide{t: s.t, md: s.md, by: map[string]*testkit.Client{}}
	for name, c := range s.by {
		cc := testkit.NewClient(s.t, base)
		cc.Token, cc.ID = c.Token, c.ID
		out.by[name] = cc
	}
	return out
}

// requireHistory checks every conversation, read by each member, is the
// model's, newest first, and that a non-member reads nothing.
func (s *pvSide) requireHistory() {
	t := s.t
	t.Helper()
	for conv, id := range s.md.conv {
		want := s.md.history(conv)
		for name, c := range s.by {
			if !s.md.member(name, conv) {
				requireError(t, c.Do("GET", "/v1/conversations/"+id+"/messages", nil), http.StatusNotFound, "conversation_not_found")
				continue
			}
			require.Equal(t, want, durHistory(t, c, id), "history of %s read by %s", conv, name)
		}
	}
}

type pvFound struct {
	Conv    string         `json:"conversation_id"`
	Message map[string]any `json:"message"`
}

// search asks GET /v1/search for every page of q (in conv, if set) and
// returns the ids found, checking each result is the message as stored.
func (s *pvSide) search(user, q, conv string) []string {
	t := s.t
	t.Helper()
	out := []string{}
	before := ""
	for pages := 0; ; pages++ {
		require.Less(t, pages, 20, "search %q as %s: too many pages", q, user)
		path := "/v1/search?limit=100&q=" + url.QueryEscape(q)
		if conv != "" {
			path += "&conversation_id=" + conv
		}
		if before != "" {
			path += "&before=" + before
		}
		r := s.by[user].Do("GET", path, nil)
		require.Equal(t, http.StatusOK, r.Status, "search %q as %s: %s", q, user, r.Body)
		var page struct {
			Results []pvFound `json:"results"`
			HasMore *bool     `json:"has_more"`
		}
		r.Decode(t, &page)
		require.NotNil(t, page.Results, "results must be an array: %s", r.Body)
		require.NotNil(t, page.HasMore, "has_more missing: %s", r.Body)
		for _, f := range page.Results {
			id, _ := f.Message["id"].(string)
			out = append(out, id)
			m := s.md.msg(id)
			if m == nil {
				continue // reported by the caller's comparison
			}
			require.Equal(t, m.m["conversation_id"], f.Conv, "search %q as %s: conversation of %s", q, user, id)
			require.Equal(t, m.m, f.Message, "search %q as %s: message %s as stored", q, user, id)
		}
		if !*page.HasMore {
			return out
		}
		require.NotEmpty(t, page.Results, "has_more with an empty page")
		before = out[len(out)-1]
	}
}

// requireSearch checks user finds exactly want for q.
func (s *pvSide) requireSearch(user, q string, want []string) {
	s.t.Helper()
	got := s.search(user, q, "")
	require.Equal(s.t, want, got, "search %q as %s: %s", q, user, s.diff(want, got))
}

// diff names the messages missing from got and those found in excess.
func (s *pvSide) diff(want, got []string) string {
	var missing, extra []string
	for _, id := range want {
		if !slices.Contains(got, id) {
			missing = append(missing, s.describe(id))
		}
	}
	for _, id := range got {
		if !slices.Contains(want, id) {
			extra = append(extra, s.describe(id))
		}
	}
	return fmt.Sprintf("missing %v, unexpected %v", missing, extra)
}

func (s *pvSide) describe(id string) string {
	if m := s.md.msg(id); m != nil {
		return fmt.Sprintf("%s in %s %q", id, m.conv, m.m["content"])
	}
	return id + " (no such message)"
}

// requireSweep checks every query of the sweep for every user, and that a
// user in no conversation finds nothing.
func (s *pvSide) requireSweep(outsider *testkit.Client) {
	t := s.t
	t.Helper()
	qs := s.md.sweep()
	for name := range s.by {
		for _, q := range qs {
			s.requireSearch(name, q, s.md.search(name, q))
		}
	}
	t.Logf("sweep: %d queries as each of %d users and an outsider", len(qs), len(s.by))
	for _, q := range qs {
		r := outsider.Do("GET", "/v1/search?q="+url.QueryEscape(q), nil)
		m := requireStatus(t, r, http.StatusOK)
		require.Empty(t, m["results"], "search %q by a user in no conversation", q)
	}
}

// requireRecorded checks each search recorded with the fixture finds
// exactly the recorded ids, and the matching messages sent since the
// upgrade; the model must agree with the generator's record.
func (s *pvSide) requireRecorded(ex pvExpect) {
	s.t.Helper()
	for _, sr := range ex.Searches {
		want := s.md.search(sr.User, sr.Query)
		var old []string
		for _, id := range want {
			if s.md.msg(id).id <= pvNewest(s.t, ex) {
				old = append(old, id)
			}
		}
		if old == nil {
			old = []string{}
		}
		require.Equal(s.t, sr.IDs, old, "search %q as %s: the recorded answer and the model disagree", sr.Query, sr.User)
		s.requireSearch(sr.User, sr.Query, want)
	}
}

// pvNewest is the newest id the release stored.
func pvNewest(t *testing.T, ex pvExpect) uint64 {
	return durID(t, ex.Messages[len(ex.Messages)-1].Message["id"])
}

// awaitBackfill polls the recorded searches until every one finds at
// least what it recorded: the backfill that indexes the messages stored
// before the index runs in the background after the upgrade. (A search
// waits for the index to take in new messages, not for the backfill.)
func (s *pvSide) awaitBackfill(ex pvExpect, timeout time.Duration) {
	t := s.t
	t.Helper()
	deadline := time.Now().Add(timeout)
	for {
		var lacking []string
		for _, sr := range ex.Searches {
			got := s.search(sr.User, sr.Query, "")
			for _, id := range sr.IDs {
				if !slices.Contains(got, id) {
					lacking = append(lacking, fmt.Sprintf("%q as %s: %s", sr.Query, sr.User, s.describe(id)))
				}
			}
		}
		if len(lacking) == 0 {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("the stored messages are not all found %v after the upgrade; still missing:\n%s", timeout, strings.Join(lacking, "\n"))
		}
		time.Sleep(20 * time.Millisecond) // polling for the background backfill, an event with no API
	}
}

// send posts content to a conversation of the model as user, checks the
// mentions the current code finds, and adds the message to the model.
func (s *pvSide) send(user, conv, content string, mentions ...string) map[string]any {
	t := s.t
	t.Helper()
	body := map[string]any{"content": content, "client_msg_id": fmt.Sprintf("after-upgrade-%d", len(s.md.msgs))}
	if rest, ok := strings.CutPrefix(s.md.conv[conv], "g_"); ok {
		body["group_id"] = rest
	} else {
		for _, m := range s.md.members[conv] {
			if m != user || len(s.md.members[conv]) == 1 {
				body["to"] = s.by[m].ID
			}
		}
	}
	m := requireStatus(t, s.by[user].Do("POST", "/v1/messages", body), http.StatusCreated)["message"].(map[string]any)
	require.Equal(t, s.md.conv[conv], m["conversation_id"])
	var want []any
	for _, name := range mentions {
		want = append(want, s.by[name].ID)
	}
	require.Equal(t, want, m["mentions"], "mentions of %q", content)
	s.md.add(t, conv, m) // its id follows every stored one
	return m
}

// requireMentions checks GET /v1/mentions lists, for every user, the
// messages naming them, newest first: only those sent since the upgrade,
// as the release stored no mentions and the backfill derives none from
// the @username text of the messages it indexes.
func (s *pvSide) requireMentions() {
	t := s.t
	t.Helper()
	for name, c := range s.by {
		var want []string
		for i := len(s.md.msgs) - 1; i >= 0; i-- {
			m := s.md.msgs[i]
			if ms, ok := m.m["mentions"].([]any); ok && slices.Contains(ms, any(c.ID)) && s.md.member(name, m.conv) {
				want = append(want, m.m["id"].(string))
			}
		}
		r := requireStatus(t, c.Do("GET", "/v1/mentions?limit=200", nil), http.StatusOK)
		var got []string
		for _, x := range r["messages"].([]any) {
			m := x.(map[string]any)
			got = append(got, m["id"].(string))
			stored := s.md.msg(m["id"].(string))
			require.NotNil(t, stored, "mention of %s: %v", name, m)
			require.Equal(t, stored.m, m, "mention of %s as stored", name)
		}
		require.Equal(t, want, got, "mentions of %s: %s", name, s.diff(want, got))
	}
}

// pvHistoryMeta reads the history's format byte and whether a backfill
// is pending, with the node stopped.
func pvHistoryMeta(t *testing.T, dir string) (format []byte, backfilling bool) {
	t.Helper()
	db, err := pebble.Open(filepath.Join(dir, "history"), &pebble.Options{ReadOnly: true, Logger: pvLog{t}})
	require.NoError(t, err)
	defer func() { require.NoError(t, db.Close()) }()
	v, closer, err := db.Get([]byte("xformat"))
	require.NoError(t, err)
	format = slices.Clone(v)
	require.NoError(t, closer.Close())
	_, closer, err = db.Get([]byte("xsearch_backfill"))
	if err == nil {
		require.NoError(t, closer.Close())
		return format, true
	}
	require.ErrorIs(t, err, pebble.ErrNotFound)
	return format, false
}

// pvLog keeps Pebble's routine reports out of the test output.
type pvLog struct{ t *testing.T }

func (pvLog) Infof(string, ...any)             {}
func (l pvLog) Errorf(format string, a ...any) { l.t.Errorf("pebble: "+format, a...) }
func (pvLog) Fatalf(format string, a ...any)   { panic(fmt.Sprintf("pebble: "+format, a...)) }

// TestUpgradePebbleV1Search starts the current code on a copy of what
// release 93ef752 wrote (history format 1, no search index) and checks:
// every conversation's history is what the release answered; once the
// background backfill has run, search finds exactly the stored messages
// (Korean, Japanese and Chinese substrings, English words; only in the
// searcher's conversations), the release's @username text mentions nobody,
// and messages sent after the upgrade are found at once and mention whom
// they name; and the upgraded directory (format 2, backfill done) reopens
// with the same answers.
func TestUpgradePebbleV1Search(t *testing.T) {
	durLeakCheck(t)
	ex := pvLoad(t)
	md := pvNewModel(t, ex)
	dir := pvCopy(t)
	n := testkit.Start(t, testkit.WithDir(dir), noSearchLimit)
	s := pvLogin(t, n.URL(), ex, md)

	// The history does not wait for the index.
	s.requireHistory()

	s.awaitBackfill(ex, 10*time.Second)
	s.requireRecorded(ex)
	outsider := testkit.Signup(t, n.URL(), "outsider")
	s.requireSweep(outsider)
	// Within one conversation; carol is not in the 1:1.
	direct := md.conv["direct"]
	got := s.search("alice", "채팅", direct)
	want := []string{}
	for _, id := range md.search("alice", "채팅") {
		if md.msg(id).conv == "direct" {
			want = append(want, id)
		}
	}
	require.Equal(t, want, got, "search in the 1:1 only")
	requireError(t, s.by["carol"].Do("GET", "/v1/search?q=%EC%B1%84%ED%8C%85&conversation_id="+direct, nil), http.StatusNotFound, "conversation_not_found")
	s.requireMentions()

	// Sent after the upgrade: found at once (the search waits for the
	// index to take them in), with the mentions the current code finds.
	g1 := s.send("alice", "group", "채팅 after the upgrade: 東京 report for @carol", "carol")
	s.send("bob", "direct", "새 채팅: tomorrow in 東京, @alice", "alice")
	require.Equal(t, g1["id"], s.search("carol", "채팅", "")[0], "the newest match first")
	s.requireRecorded(ex)
	s.requireMentions()
	s.requireHistory()

	// The upgraded directory reopens: format 2, no backfill left, and the
	// same answers at once, without waiting for any index.
	n.Stop(t)
	format, backfilling := pvHistoryMeta(t, dir)
	require.Equal(t, []byte{2}, format, "history format after the upgrade")
	require.False(t, backfilling, "the backfill is done and recorded as done")
	n2 := testkit.Start(t, testkit.WithDir(dir), noSearchLimit)
	s2 := s.rebase(n2.URL())
	s2.requireHistory()
	s2.requireRecorded(ex)
	outsider2 := testkit.NewClient(t, n2.URL())
	outsider2.Token = outsider.Token
	s2.requireSweep(outsider2)
	s2.requireMentions()
	g2 := s2.send("carol", "group", "再起動の後も東京で채팅, @bob", "bob")
	require.Equal(t, g2["id"], s2.search("bob", "東京", "")[0], "the newest match first")
	s2.requireRecorded(ex)
	s2.requireMentions()
	s2.requireHistory()
	n2.Stop(t)
	format, backfilling = pvHistoryMeta(t, dir)
	require.Equal(t, []byte{2}, format)
	require.False(t, backfilling)
}
