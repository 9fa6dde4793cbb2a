//go:build ignore

// mkpebblefixture builds the on-disk fixture of the last release whose
// history (core/pebble) is format 1, before the search index: it runs that
// release's binary on a temporary data directory, builds a small dataset
// through the HTTP API only, stops the node cleanly (SIGTERM) and copies the
// whole data directory, byte for byte, next to an expectation:
//
//	git -C . worktree add /tmp/wt-f1 93ef752
//	(cd /tmp/wt-f1 && go build -o /tmp/chatgate-f1 ./cmd/chatgate)
//	git -C . worktree remove --force /tmp/wt-f1
//	go run core/embedded/testdata/mkpebblefixture.go -bin /tmp/chatgate-f1 -out core/embedded/testdata/pebble-v1
//
// writes OUT/data/ (chatgate.db and history/, as the release left them) and
// OUT/expect.json. node/upgrade_search_test.go starts the current code on a
// copy of OUT/data and checks the history is unchanged and every message
// is found by search once the format-2 backfill has run.
//
// The dataset: alice, bob and carol; a 1:1 conversation of alice and bob and
// a group of the three, with messages in English, Korean, Japanese and
// Chinese, some with @username text (the release stores no mentions); and
// carol's notes to self, enough short messages that the history holds more
// messages than one backfill batch (512, core/pebble/search.go indexChunk).
//
// Ids and times differ on each run; the order of operations does not, and
// the committed expect.json always matches the committed data/. Unless
// -verify=false, the generator then checks, on copies of the output, that
// the history is format 1 (read with Pebble, read-only) and that the release
// reads back every conversation.
package main

import (
	"bytes"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"flag"
	"fmt"
	"io"
	"io/fs"
	"log"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"reflect"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/cockroachdb/pebble/v2"
)

const (
	fixtureFmt = "chatgate-pebble-fixture/1"
	// notesCount notes to self make the history 518 messages: more than
	// one backfill batch of 512.
	notesCount = 490
	maxBytes   = 384 << 10 // the whole fixture, expect.json included
)

// ---- expect.json (node/upgrade_search_test.go reads the same shape) ----

// Expect is expect.json.
type Expect struct {
	Format        string            `json:"format"`
	Release       string            `json:"release"`        // the commit the binary was built from
	BinarySHA256  string            `json:"binary_sha256"`  // of the binary that ran
	HistoryFormat int               `json:"history_format"` // of data/history, checked with Pebble
	GeneratedAt   string            `json:"generated_at"`
	Files         map[string]string `json:"files"` // every file under data/ (slash path) → SHA-256
	Users         []User            `json:"users"`
	Conversations []Conversation    `json:"conversations"`
	Notes         map[string]string `json:"notes"`
	Searches      []Search          `json:"searches,omitempty"` // written last, one a line
	Messages      []Message         `json:"messages,omitempty"` // in send order; written last, one a line
}

// User is an account of the fixture.
type User struct {
	Name     string `json:"username"`
	Password string `json:"password"`
	ID       string `json:"id"`
}

// Conversation is one conversation and the usernames that belong to it.
type Conversation struct {
	Name    string   `json:"name"` // direct, group, notes
	ID      string   `json:"id"`
	GroupID string   `json:"group_id,omitempty"`
	Members []string `json:"members"`
}

// Message is one message as the release answered its send.
type Message struct {
	Label   string          `json:"label"`
	Sender  string          `json:"sender"`
	Conv    string          `json:"conv"` // Conversation.Name
	Message json.RawMessage `json:"message"`
}

// Search is what GET /v1/search?q=Q must answer User once the stored
// messages are indexed: the ids, newest first. Worked out here without the
// search code: an ASCII query matches a message holding it as a whole word,
// case-insensitively; a CJK query matches a message holding it as a
// substring.
type Search struct {
	User  string   `json:"user"`
	Query string   `json:"q"`
	IDs   []string `json:"ids"`
}

// ---- plumbing ----

var cleanups []func()

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

func (c *client) do(method, path string, body any) (int, []byte) {
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
	return resp.StatusCode, b
}

// must sends a request, checks the status and decodes the answer into out
// (if not nil).
func (c *client) must(method, path string, body any, status int, out any) {
	st, b := c.do(method, path, body)
	if st != status {
		fatalf("%s %s: status %d, want %d: %s", method, path, st, status, b)
	}
	if out != nil {
		check(json.Unmarshal(b, out), "decode "+method+" "+path)
	}
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

func startNode(bin, dir string) *proc {
	addr := freeAddr()
	cmd := exec.Command(bin, "-addr", addr, "-data", dir, "-limit-send", "off", "-log-level", "warn")
	// Only our flags configure the node.
	for _, kv := range os.Environ() {
		if !strings.HasPrefix(kv, "CHATGATE_") {
			cmd.Env = append(cmd.Env, kv)
		}
	}
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

// ---- the dataset ----

var users = []User{
	{Name: "alice", Password: "correct horse battery staple"},
	{Name: "bob", Password: "b0b-the-builder!"},
	{Name: "carol", Password: "비밀번호-캐럴-✓"},
}

// script is the conversation, in send order: label, sender, conversation,
// content. Several messages share a query's term across the 1:1 and the
// group, so a member and a non-member of the 1:1 find different sets.
var script = []struct{ label, from, conv, content string }{
	{"d01", "alice", "direct", "Hi Bob, are you free for lunch tomorrow?"},
	{"d02", "bob", "direct", "채팅을 시작합니다"},
	{"d03", "alice", "direct", "내일 회의는 취소되었습니다"},
	{"d04", "bob", "direct", "Okay, lunch then. @alice pick a place"},
	{"d05", "alice", "direct", "東京に行きます"},
	{"d06", "bob", "direct", "来週、東京で会いましょう"},
	{"d07", "alice", "direct", "我们明天去北京"},
	{"d08", "bob", "direct", "北京的天气很好"},
	{"d09", "alice", "direct", "The quarterly report is ready, @bob"},
	{"d10", "bob", "direct", "채팅 기록을 확인해 주세요"},
	{"d11", "alice", "direct", "See you tomorrow at noon"},
	{"d12", "bob", "direct", "京都と大阪にも行きたい"},
	{"g01", "alice", "group", "Welcome to the team chat!"},
	{"g02", "carol", "group", "팀 채팅을 시작합니다 @alice @bob"},
	{"g03", "bob", "group", "Hello @carol, welcome aboard"},
	{"g04", "carol", "group", "東京オフィスの会議室を予約しました"},
	{"g05", "alice", "group", "明天的会议改到下午三点"},
	{"g06", "bob", "group", "회의 자료는 공유 폴더에 있습니다"},
	{"g07", "carol", "group", "The report draft is in the shared folder"},
	{"g08", "alice", "group", "ありがとうございます"},
	{"g09", "bob", "group", "中文也可以搜索吗？"},
	{"g10", "carol", "group", "내일 회의는 취소되었습니다"},
	{"g11", "alice", "group", "REPORT: lunch budget approved"},
	{"g12", "bob", "group", "東京駅で待ち合わせ"},
	{"g13", "carol", "group", "好的，明天见"},
	{"g14", "alice", "group", "@carol can you share the 채팅 log?"},
	{"g15", "bob", "group", "Mixed 한국어 and English and 日本語 in one line"},
	{"g16", "carol", "group", "last message before the upgrade ✓"},
}

// queries are the searches recorded for every user.
var queries = []string{
	"채팅", "東京", "report", "lunch", "tomorrow", "北京", "明天", "내일 회의",
	"welcome", "日本語", "한국어", "会议", "note", "upgrade", "nothing-matches",
}

type gen struct {
	base  string
	hc    *http.Client
	c     map[string]*client // by username
	ids   map[string]string  // username → id
	convs []Conversation
	msgs  []Message
}

func (g *gen) conv(name string) Conversation {
	for _, c := range g.convs {
		if c.Name == name {
			return c
		}
	}
	fatalf("no conversation %s", name)
	return Conversation{}
}

func (g *gen) send(label, from, conv, content string) {
	cv := g.conv(conv)
	body := map[string]any{"content": content}
	switch {
	case cv.GroupID != "":
		body["group_id"] = cv.GroupID
	case conv == "notes":
		body["to"] = g.ids[from]
	default:
		for _, m := range cv.Members {
			if m != from {
				body["to"] = g.ids[m]
			}
		}
	}
	if conv != "notes" {
		body["client_msg_id"] = "fixture-" + label
	}
	var out struct {
		Message json.RawMessage `json:"message"`
	}
	g.c[from].must("POST", "/v1/messages", body, http.StatusCreated, &out)
	var m struct {
		Conv    string `json:"conversation_id"`
		Content string `json:"content"`
	}
	check(json.Unmarshal(out.Message, &m), "decode message")
	if m.Conv != cv.ID || m.Content != content {
		fatalf("send %s: answered %s", label, out.Message)
	}
	g.msgs = append(g.msgs, Message{Label: label, Sender: from, Conv: conv, Message: out.Message})
}

func (g *gen) build() {
	for i, u := range users {
		c := &client{base: g.base, hc: g.hc}
		var out struct {
			User  struct{ ID string } `json:"user"`
			Token string              `json:"token"`
		}
		c.must("POST", "/v1/auth/signup", map[string]any{"username": u.Name, "password": u.Password, "device": "fixture"}, http.StatusCreated, &out)
		c.token = out.Token
		g.c[u.Name], g.ids[u.Name] = c, out.User.ID
		users[i].ID = out.User.ID
	}
	a, b, c := g.ids["alice"], g.ids["bob"], g.ids["carol"]
	lo, hi := a, b
	if x, y := mustID(a), mustID(b); x > y {
		lo, hi = b, a
	}
	g.convs = append(g.convs, Conversation{Name: "direct", ID: "d_" + lo + "_" + hi, Members: []string{"alice", "bob"}})
	var grp struct {
		ID   string `json:"id"`
		Conv string `json:"conversation_id"`
	}
	g.c["alice"].must("POST", "/v1/groups", map[string]any{"name": "team 팀 チーム", "members": []string{b, c}}, http.StatusCreated, &grp)
	g.convs = append(g.convs,
		Conversation{Name: "group", ID: grp.Conv, GroupID: grp.ID, Members: []string{"alice", "bob", "carol"}},
		Conversation{Name: "notes", ID: "d_" + c + "_" + c, Members: []string{"carol"}})
	for _, s := range script {
		g.send(s.label, s.from, s.conv, s.content)
	}
	for i := 1; i <= notesCount; i++ {
		g.send(fmt.Sprintf("n%03d", i), "carol", "notes", fmt.Sprintf("note %04d", i))
	}
}

// history reads a whole conversation as name, newest first.
func (g *gen) history(name, conv string) []json.RawMessage {
	var all []json.RawMessage
	before := ""
	for {
		path := "/v1/conversations/" + conv + "/messages?limit=200"
		if before != "" {
			path += "&before=" + before
		}
		var page struct {
			Messages []json.RawMessage `json:"messages"`
			HasMore  bool              `json:"has_more"`
		}
		g.c[name].must("GET", path, nil, http.StatusOK, &page)
		all = append(all, page.Messages...)
		if !page.HasMore || len(page.Messages) == 0 {
			return all
		}
		var last struct{ ID string }
		check(json.Unmarshal(page.Messages[len(page.Messages)-1], &last), "decode message")
		before = last.ID
	}
}

// requireHistories checks that every member reads each conversation as
// the messages sent to it, newest first, as the release answered them.
func (g *gen) requireHistories(what string) {
	for _, cv := range g.convs {
		var want []any
		for i := len(g.msgs) - 1; i >= 0; i-- {
			if g.msgs[i].Conv == cv.Name {
				want = append(want, decode(g.msgs[i].Message))
			}
		}
		for _, name := range cv.Members {
			var got []any
			for _, raw := range g.history(name, cv.ID) {
				got = append(got, decode(raw))
			}
			if !reflect.DeepEqual(got, want) {
				fatalf("%s: history of %s read by %s: %d messages, want %d", what, cv.Name, name, len(got), len(want))
			}
		}
	}
}

func mustID(s string) uint64 {
	n, err := strconv.ParseUint(s, 10, 64)
	check(err, "user id "+s)
	return n
}

func decode(raw json.RawMessage) any {
	var v any
	check(json.Unmarshal(raw, &v), "decode")
	return v
}

// searches works out what each user must find for each query.
func (g *gen) searches() []Search {
	var out []Search
	for _, u := range users {
		in := map[string]bool{}
		for _, cv := range g.convs {
			if slices.Contains(cv.Members, u.Name) {
				in[cv.Name] = true
			}
		}
		for _, q := range queries {
			match := matcher(q)
			s := Search{User: u.Name, Query: q, IDs: []string{}}
			for i := len(g.msgs) - 1; i >= 0; i-- { // newest first
				m := g.msgs[i]
				var v struct{ ID, Content string }
				check(json.Unmarshal(m.Message, &v), "decode message")
				if in[m.Conv] && match(v.Content) {
					s.IDs = append(s.IDs, v.ID)
				}
			}
			out = append(out, s)
		}
	}
	return out
}

// matcher: every ASCII word of q as a whole word, case-insensitively, and
// every other run of q as a substring.
func matcher(q string) func(string) bool {
	var res []*regexp.Regexp
	var subs []string
	for _, part := range strings.Fields(q) {
		ascii := true
		for _, r := range part {
			ascii = ascii && r < 0x80
		}
		if ascii {
			res = append(res, regexp.MustCompile(`(?i)(^|[^\pL\pN])`+regexp.QuoteMeta(part)+`($|[^\pL\pN])`))
		} else {
			subs = append(subs, part)
		}
	}
	return func(s string) bool {
		for _, re := range res {
			if !re.MatchString(s) {
				return false
			}
		}
		for _, sub := range subs {
			if !strings.Contains(s, sub) {
				return false
			}
		}
		return true
	}
}

// ---- files ----

// hashTree returns every regular file under dir (slash paths) with its
// SHA-256, and the total size.
func hashTree(dir string) (map[string]string, int64) {
	out := map[string]string{}
	var total int64
	err := filepath.WalkDir(dir, func(path string, d fs.DirEntry, err error) error {
		if err != nil || d.IsDir() {
			return err
		}
		if !d.Type().IsRegular() {
			return fmt.Errorf("%s is not a regular file", path)
		}
		b, err := os.ReadFile(path)
		if err != nil {
			return err
		}
		rel, err := filepath.Rel(dir, path)
		if err != nil {
			return err
		}
		sum := sha256.Sum256(b)
		out[filepath.ToSlash(rel)] = hex.EncodeToString(sum[:])
		total += int64(len(b))
		return nil
	})
	check(err, "hash "+dir)
	return out, total
}

// copyTree copies the regular files under from (their bytes: a file
// preallocated on disk copies as what was written) into to.
func copyTree(from, to string) {
	check(os.CopyFS(to, os.DirFS(from)), "copy "+from)
}

func fileSHA256(path string) string {
	b, err := os.ReadFile(path)
	check(err, "read "+path)
	sum := sha256.Sum256(b)
	return hex.EncodeToString(sum[:])
}

// encodeExpect writes expect.json indented, except that each search and
// each message is one line.
func encodeExpect(ex Expect) []byte {
	searches, msgs := ex.Searches, ex.Messages
	ex.Searches, ex.Messages = nil, nil
	head, err := json.MarshalIndent(ex, "", " ")
	check(err, "encode expect.json")
	var b bytes.Buffer
	b.Write(bytes.TrimSuffix(head, []byte("\n}")))
	writeLines(&b, "searches", searches)
	writeLines(&b, "messages", msgs)
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

// ---- verification ----

// historyFormat opens a copy of the history read-only and returns its
// format byte and the number of keys of each kind (the first key byte).
func historyFormat(dir string) (int, map[byte]int) {
	db, err := pebble.Open(dir, &pebble.Options{ReadOnly: true})
	check(err, "open history read-only")
	defer db.Close()
	v, closer, err := db.Get([]byte("xformat"))
	check(err, "read the format")
	if len(v) != 1 {
		fatalf("format value %x", v)
	}
	f := int(v[0])
	closer.Close()
	it, err := db.NewIter(nil)
	check(err, "iterate history")
	defer it.Close()
	kinds := map[byte]int{}
	for ok := it.First(); ok; ok = it.Next() {
		kinds[it.Key()[0]]++
	}
	check(it.Error(), "iterate history")
	return f, kinds
}

// verify checks a staged output on copies: the history is format 1 with
// exactly the messages sent and no index, and the release reads every
// conversation back.
func verify(bin, stage string, g *gen) {
	tmp, err := os.MkdirTemp("", "mkpebblefixture-verify-*")
	check(err, "temp dir")
	cleanups = append(cleanups, func() { os.RemoveAll(tmp) })

	ro := filepath.Join(tmp, "ro")
	copyTree(filepath.Join(stage, "data", "history"), ro)
	f, kinds := historyFormat(ro)
	if f != 1 {
		fatalf("verify: the release wrote history format %d, want 1", f)
	}
	if kinds['m'] != len(g.msgs) {
		fatalf("verify: %d message keys, want %d (%v)", kinds['m'], len(g.msgs), kinds)
	}
	for _, k := range []byte{'s', 'q', 'n'} { // format 2's index, queue, mentions
		if kinds[k] != 0 {
			fatalf("verify: a format-1 history with %d %q keys", kinds[k], k)
		}
	}

	data := filepath.Join(tmp, "data")
	copyTree(filepath.Join(stage, "data"), data)
	p := startNode(bin, data)
	v := &gen{base: p.base, hc: g.hc, c: map[string]*client{}, ids: g.ids, convs: g.convs, msgs: g.msgs}
	for _, u := range users {
		c := &client{base: p.base, hc: g.hc}
		var out struct {
			User  struct{ ID string } `json:"user"`
			Token string              `json:"token"`
		}
		c.must("POST", "/v1/auth/login", map[string]any{"username": u.Name, "password": u.Password}, http.StatusOK, &out)
		if out.User.ID != u.ID {
			fatalf("verify: login of %s: id %s, want %s", u.Name, out.User.ID, u.ID)
		}
		c.token = out.Token
		v.c[u.Name] = c
	}
	v.requireHistories("verify")
	p.stop()
}

// ---- main ----

func main() {
	bin := flag.String("bin", "", "the chatgate binary of the release (required)")
	out := flag.String("out", "", "output directory for data/ and expect.json (required)")
	release := flag.String("release", "93ef752", "the release (commit) the binary was built from, recorded in expect.json")
	doVerify := flag.Bool("verify", true, "check the output on copies: history format 1, and the release reads it back")
	flag.Parse()
	if *bin == "" || *out == "" {
		flag.Usage()
		os.Exit(2)
	}
	log.SetFlags(0)
	log.SetPrefix("mkpebblefixture: ")
	start := time.Now()

	tmp, err := os.MkdirTemp("", "mkpebblefixture-*")
	check(err, "temp dir")
	cleanups = append(cleanups, func() { os.RemoveAll(tmp) })
	data := filepath.Join(tmp, "data")

	p := startNode(*bin, data)
	g := &gen{base: p.base, hc: &http.Client{Timeout: 30 * time.Second}, c: map[string]*client{}, ids: map[string]string{}}
	g.build()
	g.requireHistories("build")
	p.stop()

	// What the release left: chatgate.db and history/, nothing else.
	ents, err := os.ReadDir(data)
	check(err, "read data dir")
	for _, e := range ents {
		if e.Name() != "chatgate.db" && e.Name() != "history" {
			fatalf("unexpected entry in the data directory: %s", e.Name())
		}
	}

	// Staged, verified there, and only then copied to -out: a failed run
	// never leaves a mismatched pair.
	stage := filepath.Join(tmp, "out")
	copyTree(data, filepath.Join(stage, "data"))
	files, size := hashTree(filepath.Join(stage, "data"))
	ex := Expect{
		Format: fixtureFmt, Release: *release, BinarySHA256: fileSHA256(*bin), HistoryFormat: 1,
		GeneratedAt: time.Now().UTC().Format(time.RFC3339),
		Files:       files, Users: users, Conversations: g.convs, Searches: g.searches(), Messages: g.msgs,
		Notes: map[string]string{
			"generator": "go run core/embedded/testdata/mkpebblefixture.go -bin BINARY_BUILT_AT_RELEASE -out THIS_DIRECTORY",
			"data":      "the data directory as the release left it after SIGTERM, byte for byte; tests copy it and never open it in place",
			"searches":  "ids newest first: an ASCII query matches whole words case-insensitively, a CJK one substrings; only conversations the user belongs to",
			"mentions":  "the release stored no mentions: @username text in these messages lists nobody in /v1/mentions",
			"notes":     fmt.Sprintf("carol's %d notes to self make the history %d messages, more than one backfill batch (512)", notesCount, len(g.msgs)),
		},
	}
	js := encodeExpect(ex)
	check(os.WriteFile(filepath.Join(stage, "expect.json"), js, 0o644), "write expect.json")
	if total := size + int64(len(js)); total > maxBytes {
		fatalf("the fixture is %d bytes; keep it under %d", total, maxBytes)
	}
	log.Printf("built data/ (%d files, %d bytes) and expect.json (%d bytes, %d messages) in %v",
		len(files), size, len(js), len(g.msgs), time.Since(start).Round(time.Millisecond))
	if *doVerify {
		verify(*bin, stage, g)
		if again, _ := hashTree(filepath.Join(stage, "data")); !reflect.DeepEqual(again, files) {
			fatalf("verify changed the staged files")
		}
		log.Printf("verified: history format 1, read back by the release (%v in all)", time.Since(start).Round(time.Millisecond))
	}

	// The output replaces what was there.
	check(os.RemoveAll(filepath.Join(*out, "data")), "remove old data")
	check(os.MkdirAll(*out, 0o755), "create -out")
	copyTree(filepath.Join(stage, "data"), filepath.Join(*out, "data"))
	check(os.WriteFile(filepath.Join(*out, "expect.json"), js, 0o644), "write expect.json")
	if got, _ := hashTree(filepath.Join(*out, "data")); !reflect.DeepEqual(got, files) {
		fatalf("%s/data does not hold what expect.json describes", *out)
	}
	log.Printf("wrote %s", *out)
	for i := len(cleanups) - 1; i >= 0; i-- {
		cleanups[i]()
	}
}
