package web_test

// End-to-end tests of the web client in a real headless Chromium, driven
// over the DevTools protocol with chromedp. One browser process serves the
// whole package; every simulated person gets a browser context of their
// own (separate localStorage, like separate browser profiles).

import (
	"context"
	"flag"
	"fmt"
	"net/http"
	"net/http/httptest"
	"net/http/httputil"
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/chromedp/cdproto/runtime"
	"github.com/chromedp/chromedp"
	"github.com/stretchr/testify/require"
	"go.uber.org/goleak"

	"github.com/chatgate/chatgate/client"
	"github.com/chatgate/chatgate/internal/clustertest"
	"github.com/chatgate/chatgate/internal/testkit"
)

var updateScreenshot = flag.Bool("update-screenshot", false, "write ../docs/screenshot.png from TestChat")

// chromiumPath is Debian's chromium unless CHATGATE_CHROMIUM names another.
func chromiumPath() string {
	if p := os.Getenv("CHATGATE_CHROMIUM"); p != "" {
		return p
	}
	return "/usr/bin/chromium"
}

var browser struct {
	once        sync.Once
	ctx         context.Context
	cancelAlloc context.CancelFunc
	cancelCtx   context.CancelFunc
	dir         string
	err         error
}

func TestMain(m *testing.M) {
	flag.Parse()
	code := m.Run()
	if browser.cancelCtx != nil {
		browser.cancelCtx() // closes the browser and waits for it
		browser.cancelAlloc()
		os.RemoveAll(browser.dir)
	}
	if code == 0 {
		if err := goleak.Find(goleak.IgnoreTopFunction("github.com/tidwall/buntdb.(*DB).backgroundManager")); err != nil {
			fmt.Fprintln(os.Stderr, "goleak:", err)
			code = 1
		}
	}
	os.Exit(code)
}

// startBrowser starts the package's Chromium once. A missing Chromium
// fails the test: CI installs it (scripts/test does).
func startBrowser(t *testing.T) context.Context {
	t.Helper()
	browser.once.Do(func() {
		path := chromiumPath()
		if _, err := os.Stat(path); err != nil {
			browser.err = fmt.Errorf("chromium is required for the browser tests (scripts/test installs it: apt-get install -y chromium): %w", err)
			return
		}
		dir, err := os.MkdirTemp("", "chatgate-chromium-")
		if err != nil {
			browser.err = err
			return
		}
		browser.dir = dir
		opts := append(chromedp.DefaultExecAllocatorOptions[:],
			chromedp.ExecPath(path),
			chromedp.UserDataDir(dir),
			chromedp.NoSandbox,
			chromedp.DisableGPU,
			chromedp.Flag("headless", true),
			chromedp.Flag("disable-quic", true),
			chromedp.Flag("no-first-run", true),
			chromedp.Flag("disable-background-networking", true),
			chromedp.Flag("disable-component-update", true),
			chromedp.Flag("disable-sync", true),
			chromedp.WindowSize(1280, 800),
		)
		alloc, cancelAlloc := chromedp.NewExecAllocator(context.Background(), opts...)
		ctx, cancelCtx := chromedp.NewContext(alloc)
		browser.ctx, browser.cancelAlloc, browser.cancelCtx = ctx, cancelAlloc, cancelCtx
		browser.err = chromedp.Do(ctx) // starts the browser
	})
	if browser.err != nil {
		t.Fatal(browser.err)
	}
	return browser.ctx
}

// page is one person's tab, in a browser context of its own.
type page struct {
	t    *testing.T
	name string
	ctx  context.Context
	base string
	logs *consoleLog
}

const waitFor = 20 * time.Second

func newPage(t *testing.T, name, base string) *page {
	t.Helper()
	logs := &consoleLog{}
	ctx, cancel := chromedp.NewContext(startBrowser(t), chromedp.WithNewBrowserContext(), chromedp.WithListener(logs.listen))
	t.Cleanup(func() {
		cancel()
		if t.Failed() {
			t.Logf("console of %s:\n%s", name, logs)
		}
	})
	if err := chromedp.Do(ctx); err != nil { // opens the tab, bound to ctx
		t.Fatalf("%s: opening a tab: %v", name, err)
	}
	return &page{t: t, name: name, ctx: ctx, base: base, logs: logs}
}

type consoleLog struct {
	mu    sync.Mutex
	lines []string
}

func (l *consoleLog) listen(ev any) {
	var line string
	switch ev := ev.(type) {
	case *runtime.EventConsoleAPICalled:
		var parts []string
		for _, a := range ev.Args {
			if len(a.Value) > 0 {
				parts = append(parts, string(a.Value))
			} else {
				parts = append(parts, a.Description)
			}
		}
		line = fmt.Sprintf("console.%s: %s", ev.Type, strings.Join(parts, " "))
	case *runtime.EventExceptionThrown:
		line = "exception: " + ev.ExceptionDetails.Text
		if ev.ExceptionDetails.Exception != nil {
			line += " " + ev.ExceptionDetails.Exception.Description
		}
	default:
		return
	}
	l.mu.Lock()
	l.lines = append(l.lines, line)
	l.mu.Unlock()
}

func (l *consoleLog) String() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return strings.Join(l.lines, "\n")
}

// do runs actions, failing the test on error.
func (p *page) do(actions ...chromedp.Action[chromedp.Void]) {
	p.t.Helper()
	ctx, cancel := context.WithTimeout(p.ctx, waitFor)
	defer cancel()
	for i, a := range actions {
		if err := chromedp.Do(ctx, a); err != nil {
			p.t.Fatalf("%s: action %d of %d: %v", p.name, i+1, len(actions), err)
		}
	}
}

// eval evaluates a JavaScript expression in the page.
func eval[T any](p *page, expr string) T {
	p.t.Helper()
	ctx, cancel := context.WithTimeout(p.ctx, waitFor)
	defer cancel()
	v, err := chromedp.Run(ctx, chromedp.Evaluate[T](expr))
	if err != nil {
		p.t.Fatalf("%s: evaluating %s: %v", p.name, expr, err)
	}
	return v
}

// wait polls fn (a JavaScript function of args) until it returns truthy.
func (p *page) wait(what, fn string, args ...any) {
	p.t.Helper()
	p.waitUpTo(waitFor, what, fn, args...)
}

func (p *page) waitUpTo(d time.Duration, what, fn string, args ...any) {
	p.t.Helper()
	ctx, cancel := context.WithTimeout(p.ctx, d+5*time.Second)
	defer cancel()
	_, err := chromedp.Run(ctx, chromedp.PollFunction[chromedp.Void](fn,
		chromedp.WithPollingArgs(args...), chromedp.WithPollingInterval(50*time.Millisecond), chromedp.WithPollingTimeout(d)))
	if err != nil {
		p.t.Fatalf("%s: waiting for %s: %v", p.name, what, err)
	}
}

// click clicks the element sel finds once it is there and visible, in one
// step in the page (lists are re-rendered on every refresh, so a node
// looked up first may be gone when a separate click arrives).
func (p *page) click(sel string) {
	p.t.Helper()
	p.wait("a visible "+sel+" to click", `(s) => {
		const e = document.querySelector(s);
		if (!e || e.offsetParent === null) return false;
		e.click();
		return true;
	}`, sel)
}

// open loads the app with the given query ("" or "?transport=sse").
func (p *page) open(query string) {
	p.t.Helper()
	p.do(chromedp.Navigate(p.base + "/" + query))
}

// signup signs up through the form and waits for the connection.
func (p *page) signup(username, display string) {
	p.t.Helper()
	p.do(
		chromedp.WaitVisible(chromedp.ID("auth")),
		chromedp.Click(chromedp.ID("tab-signup")),
		chromedp.SendKeys(chromedp.ID("auth-username"), username),
		chromedp.SendKeys(chromedp.ID("auth-display"), display),
		chromedp.SendKeys(chromedp.ID("auth-password"), "correct horse"),
		chromedp.Click(chromedp.ID("auth-submit")),
		chromedp.WaitVisible(chromedp.ID("main")),
	)
	p.waitConnected("")
}

// waitConnected waits until the badge shows a transport up (transport "" : any).
func (p *page) waitConnected(transport string) {
	p.t.Helper()
	p.wait("the transport badge to show "+transport+" up", `(t) => {
		const b = document.getElementById('transport-badge');
		return b.dataset.state === 'up' && (!t || b.dataset.transport === t);
	}`, transport)
}

// api is a testkit client acting as the page's user (with its token).
func (p *page) api() *testkit.Client {
	p.t.Helper()
	s := eval[struct {
		Token string `json:"token"`
		User  struct {
			ID string `json:"id"`
		} `json:"user"`
	}](p, `JSON.parse(localStorage.getItem('chatgate.session'))`)
	require.NotEmpty(p.t, s.Token, "%s is not logged in", p.name)
	c := testkit.NewClient(p.t, p.base)
	c.Token, c.ID = s.Token, s.User.ID
	return c
}

func (p *page) showFriends() {
	p.t.Helper()
	p.do(chromedp.Click(chromedp.ID("show-friends")))
}

// addFriend finds username by search and adds them.
func (p *page) addFriend(username string) {
	p.t.Helper()
	p.showFriends()
	p.do(
		chromedp.SetValue(chromedp.ID("user-search"), username),
		chromedp.Click(chromedp.CSS(`#search-form button[type="submit"]`)),
	)
	p.click(`#search-results li[data-username="` + username + `"] button.add-friend`)
	p.do(chromedp.WaitVisible(chromedp.CSS(`#outgoing li[data-username="` + username + `"]`)))
}

// acceptFriend accepts username's request (the list is refreshed first:
// no event announces requests).
func (p *page) acceptFriend(username string) {
	p.t.Helper()
	p.showFriends()
	p.do(chromedp.Click(chromedp.ID("refresh-friends")))
	p.click(`#incoming li[data-username="` + username + `"] button.accept`)
}

// waitFriend waits until username is a friend with the given status.
func (p *page) waitFriend(username, status string) {
	p.t.Helper()
	p.wait(username+" "+status+" in the friends list", `(u, s) => {
		const li = document.querySelector('#friends li[data-username="' + u + '"]');
		return li && li.dataset.status === s && li.querySelector('.dot.' + s) !== null;
	}`, username, status)
}

// chatWith opens the 1:1 chat with a friend from the friends list.
func (p *page) chatWith(username string) {
	p.t.Helper()
	p.showFriends()
	p.click(`#friends li[data-username="` + username + `"]`)
	p.do(chromedp.WaitVisible(chromedp.ID("composer")))
}

// send types text into the composer and sends it, then waits until the
// server stored it (the bubble is no longer pending).
func (p *page) send(text string) {
	p.t.Helper()
	p.do(
		chromedp.SendKeys(chromedp.ID("message-input"), text),
		chromedp.Click(chromedp.ID("send")),
	)
	p.waitMessage(text)
}

// waitMessage waits until a stored message with exactly this text shows.
func (p *page) waitMessage(text string) {
	p.t.Helper()
	p.wait(fmt.Sprintf("message %q", text), `(t) =>
		[...document.querySelectorAll('#messages li.msg[data-id] .text')].some((e) => e.textContent === t)`, text)
}

// messages is the text of every stored message shown, in order.
func (p *page) messages() []string {
	p.t.Helper()
	return eval[[]string](p, `[...document.querySelectorAll('#messages li.msg[data-id] .text')].map((e) => e.textContent)`)
}

// openConversation clicks the conversation whose title is title.
func (p *page) openConversation(title string) {
	p.t.Helper()
	p.do(chromedp.Click(chromedp.ID("show-chats")))
	p.wait("conversation "+title, `(t) => [...document.querySelectorAll('#conversations li.conv .name')].some((e) => e.textContent === t)`, title)
	p.do(chromedp.Evaluate[chromedp.Void](fmt.Sprintf(
		`[...document.querySelectorAll('#conversations li.conv')].find((li) => li.querySelector('.name').textContent === %q).click()`, title)))
	p.do(chromedp.WaitVisible(chromedp.ID("composer")))
}

// pair signs up two people in their own browser contexts and makes them
// friends through the API (the UI path is TestChat's).
func pair(t *testing.T, base, query string) (a, b *page, an, bn string) {
	t.Helper()
	a, b = newPage(t, "alice", base), newPage(t, "bob", base)
	an, bn = testkit.UniqueName("alice"), testkit.UniqueName("bob")
	a.open(query)
	a.signup(an, "Alice")
	b.open(query)
	b.signup(bn, "Bob")
	testkit.Befriend(t, a.api(), b.api())
	return a, b, an, bn
}

// chatBothWays: a opens the chat with b, they exchange messages, each sees
// the other's typing and presence.
func chatBothWays(t *testing.T, a, b *page, an, bn string) {
	t.Helper()
	a.chatWith(bn)
	a.waitFriend(bn, "online")
	a.send("hello " + bn)

	b.openConversation("Alice")
	b.waitMessage("hello " + bn)
	b.waitFriend(an, "online")
	b.send("hi alice, this is bob 👋")
	a.waitMessage("hi alice, this is bob 👋")

	// Typing, both ways.
	a.do(chromedp.SendKeys(chromedp.ID("message-input"), "I am typ"))
	b.wait("alice typing", `() => document.getElementById('typing').textContent === 'Alice is typing…'`)
	a.do(chromedp.Click(chromedp.ID("send")))
	b.waitMessage("I am typ")
	b.wait("the typing line to clear", `() => document.getElementById('typing').textContent === ''`)
	b.do(chromedp.SendKeys(chromedp.ID("message-input"), "me too"))
	a.wait("bob typing", `() => document.getElementById('typing').textContent === 'Bob is typing…'`)
	b.do(chromedp.Click(chromedp.ID("send")))
	a.waitMessage("me too")

	want := []string{"hello " + bn, "hi alice, this is bob 👋", "I am typ", "me too"}
	a.wait("alice's messages in order", `(w) => JSON.stringify([...document.querySelectorAll('#messages li.msg[data-id] .text')].map((e) => e.textContent)) === JSON.stringify(w)`, want)
	b.wait("bob's messages in order", `(w) => JSON.stringify([...document.querySelectorAll('#messages li.msg[data-id] .text')].map((e) => e.textContent)) === JSON.stringify(w)`, want)
	require.Equal(t, want, a.messages())
	require.Equal(t, want, b.messages())
}

// TestChat: two people sign up, find and befriend each other in the UI,
// chat both ways, see each other's presence, unread count and typing, and
// one sees the other go offline on logout.
func TestChat(t *testing.T) {
	n := testkit.Start(t)
	a, b := newPage(t, "alice", n.URL()), newPage(t, "bob", n.URL())
	an, bn := testkit.UniqueName("alice"), testkit.UniqueName("bob")
	a.open("")
	a.signup(an, "Alice")
	b.open("")
	b.signup(bn, "Bob")

	a.addFriend(bn)
	b.acceptFriend(an)
	b.waitFriend(an, "online")
	a.waitFriend(bn, "online") // by the presence event of the new friendship
	for _, p := range []*page{a, b} {
		p.waitConnected("websocket") // the first choice of negotiate
	}

	a.chatWith(bn)
	a.send("Hi Bob! Are we still on for tonight?")
	// Bob has no chat open: the conversation shows one unread message.
	b.do(chromedp.Click(chromedp.ID("show-chats")))
	b.wait("one unread", `() => document.querySelector('#conversations li.conv[data-unread="1"] .unread')?.textContent === '1'`)
	b.openConversation("Alice")
	b.waitMessage("Hi Bob! Are we still on for tonight?")
	b.wait("the unread count to clear", `() => document.querySelector('#conversations li.conv[data-unread="0"]') !== null`)
	b.send("Yes! 7 pm at the usual place?")
	a.waitMessage("Yes! 7 pm at the usual place?")

	a.do(chromedp.SendKeys(chromedp.ID("message-input"), "Perfect. I'll bring the board games"))
	b.wait("alice typing", `() => document.getElementById('typing').textContent === 'Alice is typing…'`)
	a.do(chromedp.Click(chromedp.ID("send")))
	b.waitMessage("Perfect. I'll bring the board games")
	b.send("See you there!")
	a.waitMessage("See you there!")
	b.do(chromedp.SendKeys(chromedp.ID("message-input"), "Don't forget"))
	a.wait("bob typing", `() => document.getElementById('typing').textContent === 'Bob is typing…'`)
	want := []string{"Hi Bob! Are we still on for tonight?", "Yes! 7 pm at the usual place?", "Perfect. I'll bring the board games", "See you there!"}
	require.Equal(t, want, a.messages())
	require.Equal(t, want, b.messages())
	// The chat header shows the friend's presence.
	a.wait("bob online in the header", `() => document.getElementById('chat-sub').dataset.status === 'online'`)

	if *updateScreenshot {
		a.do(chromedp.EmulateViewport(1280, 800))
		a.wait("layout", `() => document.getElementById('messages-box').clientWidth > 600`)
		png, err := chromedp.Run(a.ctx, chromedp.CaptureScreenshot())
		require.NoError(t, err)
		require.NoError(t, os.WriteFile(filepath.Join("..", "docs", "screenshot.png"), png, 0o644))
	}

	// Logging out the last device makes Bob offline at once.
	b.do(chromedp.Click(chromedp.ID("logout")), chromedp.WaitVisible(chromedp.ID("auth")))
	a.waitFriend(bn, "offline")
	a.wait("bob offline in the header", `() => document.getElementById('chat-sub').dataset.status === 'offline'`)
	require.Contains(t, eval[string](a, `document.querySelector('#friends li[data-username="`+bn+`"] .last-seen').textContent`), "last seen")
}

// TestTransports: the same chat, with each transport forced by ?transport=,
// heartbeats included: only a short-polling page needs them (an open stream
// or a held long poll keeps the device online by itself).
func TestTransports(t *testing.T) {
	// Heartbeats every second, offline after five without one.
	n := testkit.Start(t, testkit.WithOfflineAfter(5*time.Second))
	for _, tr := range []string{"websocket", "sse", "longpolling", "polling"} {
		t.Run(tr, func(t *testing.T) {
			a, b, an, bn := pair(t, n.URL(), "?transport="+tr)
			for _, p := range []*page{a, b} {
				p.waitConnected(tr)
				require.Equal(t, tr, eval[string](p, `chatgateApp.state.conn.transport`))
			}
			chatBothWays(t, a, b, an, bn)
			for _, p := range []*page{a, b} {
				require.Equal(t, tr, eval[string](p, `chatgateApp.state.conn.transport`), "%s changed transport", p.name)
				require.Equal(t, 1000, eval[int](p, `chatgateApp.state.conn.heartbeatMs`))
				if tr == "polling" {
					// At negotiate's interval when nothing else showed activity.
					p.wait("a heartbeat", `() => chatgateApp.state.conn.heartbeats > 0`)
				} else {
					// Several intervals passed during the chat: none was needed.
					require.Zero(t, eval[int](p, `chatgateApp.state.conn.heartbeats`), "%s sent heartbeats over %s", p.name, tr)
				}
			}
		})
	}
}

// TestReloadResumes: a reload, and a page closed while messages arrive,
// resume from the cursor kept in localStorage: every message exactly once,
// in order, and the library hands over exactly the events after the cursor.
func TestReloadResumes(t *testing.T) {
	n := testkit.Start(t)
	alice := testkit.Signup(t, n.URL(), "alice")
	b := newPage(t, "bob", n.URL())
	b.open("")
	b.signup(testkit.UniqueName("bob"), "Bob")
	bob := b.api()
	testkit.Befriend(t, alice, bob)

	for i := 1; i <= 3; i++ {
		alice.Send(bob.ID, fmt.Sprintf("m%d", i), fmt.Sprintf("r-%d", i))
	}
	b.openConversation("alice")
	b.waitMessage("m3")
	require.Equal(t, []string{"m1", "m2", "m3"}, b.messages())
	b.wait("cursor 3 saved", `() => chatgateApp.state.conn.cursor === 3 && chatgateApp.client.loadCursor() === 3`)

	// A reload starts from the saved cursor and gets nothing twice.
	b.do(chromedp.Reload(), chromedp.WaitVisible(chromedp.ID("main")))
	b.waitConnected("")
	require.Equal(t, 3, eval[int](b, `chatgateApp.state.conn.startCursor`))
	alice.Send(bob.ID, "m4", "r-4")
	b.openConversation("alice")
	b.waitMessage("m4")
	require.Equal(t, []string{"m1", "m2", "m3", "m4"}, b.messages())
	require.Equal(t, []int{4}, eval[[]int](b, `chatgateApp.state.conn.delivered`))
	// The open chat marks m4 read on the server.
	require.Eventually(t, func() bool {
		r, err := bob.TryDo("GET", "/v1/conversations", nil)
		if err != nil || r.Status != http.StatusOK {
			return false
		}
		cs, _ := r.JSON()["conversations"].([]any)
		return len(cs) == 1 && cs[0].(map[string]any)["unread_count"] == float64(0)
	}, waitFor, 20*time.Millisecond)

	// Closed while two more arrive: they come back once, and unread.
	b.do(chromedp.Navigate("about:blank"))
	alice.Send(bob.ID, "m5", "r-5")
	alice.Send(bob.ID, "m6", "r-6")
	b.open("")
	b.waitConnected("")
	b.wait("m5 and m6 delivered", `() => chatgateApp.state.conn.delivered.length === 2`)
	require.Equal(t, 4, eval[int](b, `chatgateApp.state.conn.startCursor`))
	require.Equal(t, []int{5, 6}, eval[[]int](b, `chatgateApp.state.conn.delivered`))
	b.wait("two unread", `() => document.querySelector('#conversations li.conv')?.dataset.unread === '2'`)
	b.openConversation("alice")
	b.waitMessage("m6")
	alice.Send(bob.ID, "m7", "r-7")
	b.waitMessage("m7")
	require.Equal(t, []string{"m1", "m2", "m3", "m4", "m5", "m6", "m7"}, b.messages())
	require.Equal(t, []int{5, 6, 7}, eval[[]int](b, `chatgateApp.state.conn.delivered`))
}

// TestGroupOfThree: Alice creates a group with Bob in the UI, adds Carol,
// and all three chat.
func TestGroupOfThree(t *testing.T) {
	n := testkit.Start(t)
	a, b, c := newPage(t, "alice", n.URL()), newPage(t, "bob", n.URL()), newPage(t, "carol", n.URL())
	names := map[*page]string{}
	for _, p := range []*page{a, b, c} {
		names[p] = testkit.UniqueName(p.name)
		p.open("")
		p.signup(names[p], strings.ToUpper(p.name[:1])+p.name[1:])
	}
	testkit.Befriend(t, a.api(), b.api())

	a.showFriends()
	a.waitFriend(names[b], "online")
	a.do(
		chromedp.Click(chromedp.ID("show-chats")),
		chromedp.Click(chromedp.ID("new-group")),
		chromedp.WaitVisible(chromedp.ID("people-dialog")),
		chromedp.SendKeys(chromedp.ID("group-name"), "Weekend hike"),
	)
	a.click(`#people-list li[data-username="` + names[b] + `"] input`)
	a.do(
		chromedp.Click(chromedp.ID("people-ok")),
		chromedp.WaitNotVisible(chromedp.ID("people-dialog")),
		chromedp.WaitVisible(chromedp.ID("add-member")),
	)
	// Carol is not a friend: found by search in the add-member dialog.
	a.do(
		chromedp.Click(chromedp.ID("add-member")),
		chromedp.WaitVisible(chromedp.ID("people-dialog")),
		chromedp.SendKeys(chromedp.ID("people-search"), names[c]),
		chromedp.Click(chromedp.ID("people-search-go")),
	)
	a.click(`#people-list li[data-username="` + names[c] + `"] input`)
	a.do(
		chromedp.Click(chromedp.ID("people-ok")),
		chromedp.WaitNotVisible(chromedp.ID("people-dialog")),
	)
	a.wait("three members in the header", `() => document.querySelectorAll('#chat-sub .member').length === 3`)
	a.send("welcome to the hike!")

	for _, p := range []*page{b, c} {
		p.openConversation("Weekend hike")
		p.waitMessage("welcome to the hike!")
	}
	b.send("count me in")
	c.send("me too, 9:00?")
	want := []string{"welcome to the hike!", "count me in", "me too, 9:00?"}
	for _, p := range []*page{a, b, c} {
		p.waitMessage("me too, 9:00?")
		p.waitMessage("count me in")
		require.Equal(t, want, p.messages(), p.name)
	}
	// Authors are named in a group.
	require.Equal(t, "Carol", eval[string](a, `[...document.querySelectorAll('#messages li.msg')].at(-1).querySelector('.author').textContent`))
}

// TestXSSStaysText: markup in messages and names is shown as text; no
// element is created from it.
func TestXSSStaysText(t *testing.T) {
	n := testkit.Start(t)
	a, b := newPage(t, "mallory", n.URL()), newPage(t, "bob", n.URL())
	an, bn := testkit.UniqueName("mallory"), testkit.UniqueName("bob")
	a.open("")
	a.signup(an, "<b>Mallory</b>")
	b.open("")
	b.signup(bn, "Bob")
	testkit.Befriend(t, a.api(), b.api())

	payloads := []string{
		`<img src=x onerror="document.title='pwned'">`,
		`<script>document.title='pwned'</script>`,
		`<a href="javascript:alert(1)">click</a> &amp; &lt;`,
	}
	a.chatWith(bn)
	for _, s := range payloads {
		a.send(s)
	}
	b.openConversation("<b>Mallory</b>")
	for _, s := range payloads {
		b.waitMessage(s)
	}
	for _, p := range []*page{a, b} {
		require.Equal(t, payloads, p.messages(), p.name)
		require.Zero(t, eval[int](p, `document.querySelectorAll('#messages img, #messages script, #messages a, #messages b, #conversations img, #conversations script, #conversations b, #friends b').length`), p.name)
		require.NotEqual(t, "pwned", eval[string](p, `document.title`), p.name)
	}
	require.Equal(t, "<b>Mallory</b>", eval[string](b, `document.getElementById('chat-title').textContent`))
	b.showFriends()
	b.wait("mallory in the friends list", `(u) => document.querySelector('#friends li[data-username="' + u + '"] .name')?.textContent === '<b>Mallory</b>'`, an)
	require.Contains(t, eval[string](b, `document.querySelector('#conversations li.conv .preview').textContent`), "&amp; &lt;")
}

// TestFallback: behind a proxy that strips WebSocket upgrades the page
// falls back to SSE; behind one that also refuses event streams, to long
// polling; and messages flow both ways.
func TestFallback(t *testing.T) {
	n := testkit.Start(t)
	for _, tc := range []struct {
		block []string
		want  string
	}{
		{[]string{"/v1/ws"}, "sse"},
		{[]string{"/v1/ws", "/v1/sse"}, "longpolling"},
	} {
		t.Run(tc.want, func(t *testing.T) {
			proxy := blockingProxy(t, n.URL(), tc.block...)
			alice := testkit.Signup(t, n.URL(), "alice")
			b := newPage(t, "bob", proxy)
			b.open("")
			b.signup(testkit.UniqueName("bob"), "Bob")
			bob := b.api()
			testkit.Befriend(t, alice, bob)
			b.waitConnected(tc.want)

			alice.Send(bob.ID, "through the proxy", "p-1")
			b.openConversation("alice")
			b.waitMessage("through the proxy")
			b.send("got it")
			evs, _ := alice.PollAll(0)
			require.Len(t, evs, 2)
			require.Equal(t, "got it", evs[1]["message"].(map[string]any)["content"])
			require.Equal(t, tc.want, eval[string](b, `chatgateApp.state.conn.transport`))
		})
	}
}

// blockingProxy is a reverse proxy to target that refuses the given paths
// the way unfriendly proxies do: WebSocket upgrades are stripped (the
// server then answers 400), other paths answer 502 with an HTML page.
func blockingProxy(t *testing.T, target string, block ...string) string {
	return proxy(t, target, func(w http.ResponseWriter, r *http.Request, next http.Handler) {
		for _, p := range block {
			if r.URL.Path != p {
				continue
			}
			if p == "/v1/ws" {
				r.Header.Del("Upgrade")
				r.Header.Del("Connection")
				break
			}
			w.Header().Set("Content-Type", "text/html")
			w.WriteHeader(http.StatusBadGateway)
			fmt.Fprint(w, "<html><body>502 Bad Gateway</body></html>")
			return
		}
		next.ServeHTTP(w, r)
	})
}

// proxy serves h in front of a reverse proxy to target and returns its URL.
func proxy(t *testing.T, target string, h func(w http.ResponseWriter, r *http.Request, next http.Handler)) string {
	t.Helper()
	u, err := url.Parse(target)
	require.NoError(t, err)
	rp := httputil.NewSingleHostReverseProxy(u)
	rp.FlushInterval = -1
	rp.ErrorHandler = func(w http.ResponseWriter, _ *http.Request, _ error) { w.WriteHeader(http.StatusBadGateway) }
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { h(w, r, rp) }))
	t.Cleanup(func() {
		srv.CloseClientConnections()
		srv.Close()
	})
	return srv.URL
}

// TestSendRetry: the answer to a send is lost (the proxy passes the
// request on but answers 502); the page retries with the same
// client_msg_id and the message is stored and shown once.
func TestSendRetry(t *testing.T) {
	n := testkit.Start(t)
	var lost atomic.Int32
	url := proxy(t, n.URL(), func(w http.ResponseWriter, r *http.Request, next http.Handler) {
		if r.Method == http.MethodPost && r.URL.Path == "/v1/messages" && lost.Add(1) == 1 {
			next.ServeHTTP(httptest.NewRecorder(), r) // stored, but the answer is lost
			w.WriteHeader(http.StatusBadGateway)
			return
		}
		next.ServeHTTP(w, r)
	})
	alice := testkit.Signup(t, n.URL(), "alice")
	b := newPage(t, "bob", url)
	b.open("?transport=longpolling") // sends go by POST /v1/messages
	b.signup(testkit.UniqueName("bob"), "Bob")
	bob := b.api()
	testkit.Befriend(t, alice, bob)
	alice.Send(bob.ID, "are you there?", "q-1")
	b.openConversation("alice")
	b.waitMessage("are you there?")
	b.send("yes, once") // shown as stored once the answer to the retry, or the echo, is in
	require.Eventually(t, func() bool { return lost.Load() == 2 }, waitFor, 10*time.Millisecond, "one lost answer, one retry")
	evs, _ := alice.PollAll(0)
	require.Len(t, evs, 2, "the retry stored nothing new")
	require.Equal(t, "yes, once", evs[1]["message"].(map[string]any)["content"])
	b.wait("the echo", `() => chatgateApp.state.conn.delivered.length === 2`)
	require.Equal(t, []string{"are you there?", "yes, once"}, b.messages())
}

// TestPhoneLayout: on a phone-sized screen the list and the chat take
// turns, with a back button.
func TestPhoneLayout(t *testing.T) {
	n := testkit.Start(t)
	alice := testkit.Signup(t, n.URL(), "alice")
	b := newPage(t, "bob", n.URL())
	b.do(chromedp.EmulateViewport(390, 844, chromedp.EmulateMobile, chromedp.EmulateTouch))
	b.open("")
	b.signup(testkit.UniqueName("bob"), "Bob")
	bob := b.api()
	testkit.Befriend(t, alice, bob)
	alice.Send(bob.ID, "hello from a desk", "d-1")

	b.do(chromedp.WaitVisible(chromedp.ID("sidebar")), chromedp.WaitNotVisible(chromedp.ID("chat")))
	b.openConversation("alice")
	b.waitMessage("hello from a desk")
	b.do(chromedp.WaitNotVisible(chromedp.ID("sidebar")), chromedp.WaitVisible(chromedp.ID("back")))
	require.LessOrEqual(t, eval[int](b, `document.documentElement.scrollWidth`), 390, "no horizontal scrolling")
	b.do(chromedp.Click(chromedp.ID("back")), chromedp.WaitVisible(chromedp.ID("sidebar")), chromedp.WaitNotVisible(chromedp.ID("chat")))
}

// TestHistoryPaging: older messages load page by page when scrolled back.
func TestHistoryPaging(t *testing.T) {
	n := testkit.Start(t)
	alice := testkit.Signup(t, n.URL(), "alice")
	b := newPage(t, "bob", n.URL())
	b.open("")
	b.signup(testkit.UniqueName("bob"), "Bob")
	bob := b.api()
	for i := 1; i <= 120; i++ {
		alice.Send(bob.ID, fmt.Sprintf("line %03d", i), fmt.Sprintf("h-%d", i))
	}
	b.openConversation("alice")
	b.waitMessage("line 120")
	require.Len(t, b.messages(), 50)
	b.do(chromedp.WaitVisible(chromedp.ID("load-older")))
	b.do(chromedp.Evaluate[chromedp.Void](`document.getElementById('messages-box').scrollTop = 0`))
	b.wait("a second page", `() => document.querySelectorAll('#messages li.msg[data-id]').length === 100`)
	b.do(chromedp.Evaluate[chromedp.Void](`document.getElementById('messages-box').scrollTop = 0`))
	b.wait("the last page", `() => document.querySelectorAll('#messages li.msg[data-id]').length === 120`)
	b.do(chromedp.WaitNotVisible(chromedp.ID("load-older")))
	got := b.messages()
	for i, s := range got {
		require.Equal(t, fmt.Sprintf("line %03d", i+1), s)
	}
}

// TestClusterPagesOnOtherNodes: on a real cluster (PostgreSQL, NATS,
// Consul), each page is served by one node and negotiation sends its
// realtime connection to the other (by zone): the Content-Security-Policy
// must let it reach that node, and the chat must be the single node's —
// messages, typing, presence — across nodes.
func TestClusterPagesOnOtherNodes(t *testing.T) {
	env := clustertest.Start(t)
	na := env.Node(t, testkit.WithZone("a"), testkit.WithCheckInterval(time.Second))
	nb := env.Node(t, testkit.WithZone("b"), testkit.WithCheckInterval(time.Second))
	for _, w := range []struct{ from, zone, want string }{{na.URL(), "b", nb.URL()}, {nb.URL(), "a", na.URL()}} {
		c := client.New(w.from, client.WithZone(w.zone))
		require.Eventually(t, func() bool {
			n, err := c.Negotiate(context.Background())
			return err == nil && n.Server == w.want
		}, 30*time.Second, 20*time.Millisecond, "%s recommends %s for zone %s", w.from, w.want, w.zone)
		c.CloseIdleConnections()
	}
	// Alice's page comes from node a and long-polls node b (fetch across
	// origins); Bob's comes from node b and streams from node a (SSE).
	a, b := newPage(t, "alice", na.URL()), newPage(t, "bob", nb.URL())
	an, bn := testkit.UniqueName("alice"), testkit.UniqueName("bob")
	a.open("?zone=b&transport=longpolling")
	a.signup(an, "Alice")
	b.open("?zone=a&transport=sse")
	b.signup(bn, "Bob")
	require.Equal(t, nb.URL(), eval[string](a, `chatgateApp.state.conn.server`))
	require.Equal(t, na.URL(), eval[string](b, `chatgateApp.state.conn.server`))
	testkit.Befriend(t, a.api(), b.api())
	chatBothWays(t, a, b, an, bn)
	require.NotContains(t, a.logs.String()+b.logs.String(), "Content Security Policy")
}
