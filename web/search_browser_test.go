package web_test

// Browser tests of finding things in history: message search, the jump to
// a found message (GET .../messages?around=), and mentions.

import (
	"flag"
	"fmt"
	"net/http"
	"os"
	"path/filepath"
	"testing"

	"github.com/chromedp/chromedp"
	"github.com/chromedp/chromedp/kb"
	"github.com/stretchr/testify/require"

	"github.com/chatgate/chatgate/internal/testkit"
)

var updateSearchScreenshot = flag.Bool("update-search-screenshot", false, "write ../docs/search.png from TestSearchScreenshot")

// search types q into the message search box and presses Enter, then
// waits until the results (or the error) for q are shown.
func (p *page) search(q string) {
	p.t.Helper()
	p.do(
		chromedp.Evaluate[chromedp.Void](`document.getElementById('find-input').value = ''`),
		chromedp.SendKeys(chromedp.ID("find-input"), q+kb.Enter),
	)
	p.wait("the results for "+q, `(q) => {
		const panel = document.getElementById('find-panel');
		return !panel.hidden && panel.dataset.q === q && (panel.dataset.state === 'done' || panel.dataset.state === 'error');
	}`, q)
}

// found is one shown search result or mention.
type found struct {
	ID     string   `json:"id"`
	ConvID string   `json:"convId"`
	Conv   string   `json:"conv"`
	Author string   `json:"author"`
	Text   string   `json:"text"`
	Marks  []string `json:"marks"`
}

// founds reads the items of a results list (#find-results, #mentions-list).
func (p *page) founds(list string) []found {
	p.t.Helper()
	return eval[[]found](p, fmt.Sprintf(`[...document.querySelectorAll('#%s li.found')].map((li) => ({
		id: li.dataset.id, convId: li.dataset.convId,
		conv: li.querySelector('.name').textContent, author: li.querySelector('.author').textContent,
		text: li.querySelector('.snippet').textContent,
		marks: [...li.querySelectorAll('.snippet mark, .snippet .mention')].map((m) => m.textContent),
	}))`, list))
}

// TestSearchJumpAndMentions: Alice searches her conversations (Korean,
// Japanese, English; never others' conversations), jumps from a result to
// a message far back in history (neighbours on both sides shown, live
// messages held back until she returns to the latest, paging both ways
// without gaps), gets a query that is too short refused, and sees Bob's
// @mention of her in her mentions and highlighted in the chat.
func TestSearchJumpAndMentions(t *testing.T) {
	n := testkit.Start(t)
	a := newPage(t, "alice", n.URL())
	an := testkit.UniqueName("alice")
	a.open("")
	a.signup(an, "Alice")
	alice := a.api()
	bob := testkit.Signup(t, n.URL(), "bob")
	carol := testkit.Signup(t, n.URL(), "carol")
	testkit.Befriend(t, alice, bob)

	// Alice and Bob's history, oldest first; the Korean message is far
	// behind the newest page (50), so the jump needs ?around=.
	var all []string
	ids := map[string]string{}
	say := func(from *testkit.Client, to *testkit.Client, text string) {
		m := from.Send(to.ID, text, fmt.Sprintf("s-%d", len(all)))
		all = append(all, text)
		ids[text] = m["id"].(string)
	}
	for i := 1; i <= 5; i++ {
		say(bob, alice, fmt.Sprintf("early %02d", i))
	}
	say(alice, bob, "채팅을 시작합니다")
	say(bob, alice, "東京に行きます")
	for i := 1; i <= 80; i++ {
		if i%2 == 0 {
			say(alice, bob, fmt.Sprintf("filler %03d", i))
		} else {
			say(bob, alice, fmt.Sprintf("filler %03d", i))
		}
	}
	say(bob, alice, "The Meeting moved to Friday")
	// Carol and Bob say the same words: Alice never finds them.
	carol.Send(bob.ID, "채팅을 시작합니다", "c-1")
	bob.Send(carol.ID, "東京に行きます, meeting at 채팅방", "c-2")
	carol.Send(bob.ID, "filler 030 meeting", "c-3")

	// Korean: a two-character substring finds the message, marked.
	a.search("채팅")
	got := a.founds("find-results")
	require.Len(t, got, 1, "only Alice's own conversation: %+v", got)
	require.Equal(t, ids["채팅을 시작합니다"], got[0].ID)
	require.Equal(t, "bob", got[0].Conv, "the conversation named as in the sidebar")
	require.Equal(t, "You", got[0].Author)
	require.Equal(t, "채팅을 시작합니다", got[0].Text)
	require.Equal(t, []string{"채팅"}, got[0].Marks)
	abConvID := got[0].ConvID

	// The jump: the conversation opens at the message, with its
	// neighbours on both sides; the newest messages are not loaded.
	a.click(`#find-results li.found[data-id="` + ids["채팅을 시작합니다"] + `"]`)
	a.do(chromedp.WaitVisible(chromedp.ID("composer")))
	a.wait("the found message marked", `(id) => document.querySelector('#messages li.msg.jumped[data-id="' + id + '"]') !== null`, ids["채팅을 시작합니다"])
	require.Equal(t, "bob", eval[string](a, `document.getElementById('chat-title').textContent`))
	shown := a.messages()
	require.Equal(t, all[:len(shown)], shown, "from the first message on, without gaps")
	require.Contains(t, shown, "early 05", "an older neighbour")
	require.Contains(t, shown, "東京に行きます", "a newer neighbour")
	require.Contains(t, shown, "filler 010", "newer neighbours")
	require.NotContains(t, shown, "The Meeting moved to Friday")
	require.Less(t, len(shown), 60)
	require.Equal(t, 1, eval[int](a, `document.querySelectorAll('#messages li.jumped').length`))
	require.True(t, eval[bool](a, `(() => {
		const box = document.getElementById('messages-box').getBoundingClientRect();
		const r = document.querySelector('#messages li.jumped').getBoundingClientRect();
		return r.top >= box.top && r.bottom <= box.bottom;
	})()`), "the found message is scrolled into view")
	a.do(chromedp.WaitVisible(chromedp.ID("jump-latest")), chromedp.WaitNotVisible(chromedp.ID("load-older")))

	// A live message while Alice looks at old history is not appended
	// there; the way back to the latest says one is new.
	bob.Send(alice.ID, "are you there?", "live-1")
	all = append(all, "are you there?")
	a.wait("one new message announced", `() => document.getElementById('jump-new').textContent === '1' && !document.getElementById('jump-new').hidden`)
	require.NotContains(t, a.messages(), "are you there?")
	require.Equal(t, all[:len(a.messages())], a.messages())

	// Paging forward reaches the newest message without gaps, and then
	// the held-back live message shows, once.
	a.wait("newer pages up to the latest", `(last) => {
		const texts = [...document.querySelectorAll('#messages li.msg[data-id] .text')].map((e) => e.textContent);
		if (texts.at(-1) === last && document.getElementById('jump-latest').hidden) return true;
		const more = document.getElementById('load-newer');
		if (!more.hidden && !chatgateApp.state.open.loading) more.click();
		return false;
	}`, "are you there?")
	require.Equal(t, all, a.messages())
	a.do(chromedp.WaitNotVisible(chromedp.ID("load-newer")))

	// Reopened, the conversation shows its newest page; a message older
	// than that, in the middle of the history: older pages load from there.
	a.openConversation("bob")
	a.wait("the newest page", `() => document.querySelectorAll('#messages li.msg[data-id]').length === 50`)
	a.search("Filler 030")
	got = a.founds("find-results")
	require.Len(t, got, 1, "%+v", got)
	require.Equal(t, []string{"filler", "030"}, got[0].Marks)
	a.click(`#find-results li.found[data-id="` + ids["filler 030"] + `"]`)
	a.wait("filler 030 marked", `(id) => document.querySelector('#messages li.msg.jumped[data-id="' + id + '"]') !== null`, ids["filler 030"])
	shown = a.messages()
	require.NotContains(t, shown, "early 01")
	require.NotContains(t, shown, "are you there?")
	a.do(chromedp.WaitVisible(chromedp.ID("load-older")), chromedp.WaitVisible(chromedp.ID("jump-latest")))
	a.wait("older pages down to the first message", `(first) => {
		const texts = [...document.querySelectorAll('#messages li.msg[data-id] .text')].map((e) => e.textContent);
		if (texts[0] === first && document.getElementById('load-older').hidden) return true;
		const older = document.getElementById('load-older');
		if (!older.hidden && !chatgateApp.state.open.loading) older.click();
		return false;
	}`, "early 01")
	shown = a.messages()
	require.Equal(t, all[:len(shown)], shown, "contiguous from the first message")
	require.Contains(t, shown, "filler 050")
	require.Equal(t, 1, eval[int](a, `document.querySelectorAll('#messages li.jumped').length`))
	// "Jump to latest" goes back to the newest page.
	a.click("#jump-latest")
	a.wait("the newest page", `(last) => {
		const texts = [...document.querySelectorAll('#messages li.msg[data-id] .text')].map((e) => e.textContent);
		return texts.length === 50 && texts.at(-1) === last;
	}`, "are you there?")
	require.Equal(t, all[len(all)-50:], a.messages())
	a.do(chromedp.WaitNotVisible(chromedp.ID("jump-latest")))

	// English, case-insensitive, whole words; Japanese.
	a.search("meeting")
	got = a.founds("find-results")
	require.Len(t, got, 1, "%+v", got)
	require.Equal(t, ids["The Meeting moved to Friday"], got[0].ID)
	require.Equal(t, []string{"Meeting"}, got[0].Marks)
	require.Equal(t, "bob", got[0].Author)
	require.Equal(t, abConvID, got[0].ConvID)
	a.search("meet")
	require.Empty(t, a.founds("find-results"))
	a.do(chromedp.WaitVisible(chromedp.CSS(`#find-results li.empty`)))
	a.search("東京")
	got = a.founds("find-results")
	require.Len(t, got, 1, "%+v", got)
	require.Equal(t, ids["東京に行きます"], got[0].ID)
	require.Equal(t, []string{"東京"}, got[0].Marks)

	// Many results come page by page.
	a.search("filler")
	got = a.founds("find-results")
	require.Len(t, got, 20)
	require.Equal(t, ids["filler 080"], got[0].ID, "newest first")
	a.click("#find-more")
	a.wait("a second page of results", `() => document.querySelectorAll('#find-results li.found').length === 40 && document.getElementById('find-panel').dataset.state === 'done'`)
	got = a.founds("find-results")
	for i, f := range got {
		require.Equal(t, ids[fmt.Sprintf("filler %03d", 80-i)], f.ID, "result %d", i)
	}
	a.do(chromedp.WaitVisible(chromedp.ID("find-more")))

	// One character is too short: the server's error is shown.
	r := alice.Do("GET", "/v1/search?q=%EC%B1%84", nil) // 채
	require.Equal(t, http.StatusBadRequest, r.Status)
	require.Equal(t, "query_too_short", r.ErrorCode())
	wantErr := r.JSON()["error"].(map[string]any)["message"].(string)
	a.search("채")
	a.wait("the error", `(m) => document.getElementById('find-error').textContent === m && document.getElementById('find-error').dataset.code === 'query_too_short'`, wantErr)
	require.Empty(t, a.founds("find-results"))
	a.do(chromedp.WaitNotVisible(chromedp.ID("find-more")))

	// Bob mentions Alice: the bubble marks it (the chat is open at the
	// latest), the mentions tab counts it and lists it.
	mention := "@" + an + " look at this"
	m := bob.Send(alice.ID, mention, "mention-1")
	all = append(all, mention)
	require.Equal(t, []any{alice.ID}, m["mentions"])
	a.waitMessage(mention)
	require.Equal(t, "@"+an, eval[string](a, `document.querySelector('#messages li.msg[data-id="`+m["id"].(string)+`"] .text .mention.me').textContent`))
	a.wait("the mentions count", `() => document.getElementById('mentions-count').textContent === '1' && !document.getElementById('mentions-count').hidden`)
	a.click("#show-mentions")
	a.wait("the mentions list", `() => document.getElementById('mentions-panel').dataset.state === 'done' && document.querySelectorAll('#mentions-list li.found').length === 1`)
	a.do(chromedp.WaitNotVisible(chromedp.ID("mentions-count")))
	got = a.founds("mentions-list")
	require.Equal(t, []found{{ID: m["id"].(string), ConvID: abConvID, Conv: "bob", Author: "bob", Text: mention, Marks: []string{"@" + an}}}, got)
	// Carol's mention of Bob is none of Alice's business; a mention of
	// someone outside the conversation is no mention.
	carol.Send(bob.ID, "@"+bob.User["username"].(string)+" hi", "c-4")
	bob.Send(alice.ID, "ask @"+carol.User["username"].(string)+" too", "no-mention")
	all = append(all, "ask @"+carol.User["username"].(string)+" too")
	a.waitMessage("ask @" + carol.User["username"].(string) + " too")
	require.Zero(t, eval[int](a, `document.querySelectorAll('#messages li.msg:last-child .mention').length`))

	// From older history, the mention jumps back to the latest.
	a.search("filler 030")
	a.click(`#find-results li.found[data-id="` + ids["filler 030"] + `"]`)
	a.wait("filler 030 marked", `(id) => document.querySelector('#messages li.msg.jumped[data-id="' + id + '"]') !== null`, ids["filler 030"])
	a.click("#show-mentions")
	a.click(`#mentions-list li.found[data-id="` + m["id"].(string) + `"]`)
	a.wait("the mention marked", `(id) => document.querySelector('#messages li.msg.jumped[data-id="' + id + '"] .text .mention.me') !== null`, m["id"].(string))
	shown = a.messages()
	require.Equal(t, all[len(all)-len(shown):], shown, "the mention with the messages before it, up to the latest")
	a.do(chromedp.WaitNotVisible(chromedp.ID("jump-latest")))

	// In a group: the result is named by the group, markup stays text.
	r = bob.Do("POST", "/v1/groups", map[string]any{"name": "Weekend hike", "members": []string{alice.ID}})
	require.Equal(t, http.StatusCreated, r.Status, "%s", r.Body)
	gid := r.JSON()["id"].(string)
	payload := `<img src=x onerror="document.title='pwned'"><b>Hike</b> plans, @` + an + `.`
	r = bob.Do("POST", "/v1/messages", map[string]any{"group_id": gid, "content": payload, "client_msg_id": "g-1"})
	require.Equal(t, http.StatusCreated, r.Status, "%s", r.Body)
	gm := r.JSON()["message"].(map[string]any)
	gmID := gm["id"].(string)
	a.search("hike")
	a.wait("the group's name", `() => document.querySelector('#find-results li.found .name')?.textContent === 'Weekend hike'`)
	want := found{ID: gmID, ConvID: gm["conversation_id"].(string), Conv: "Weekend hike", Author: "bob", Text: payload, Marks: []string{"Hike"}}
	require.Equal(t, []found{want}, a.founds("find-results"))
	a.click("#show-mentions")
	a.wait("two mentions", `() => document.getElementById('mentions-panel').dataset.state === 'done' && document.querySelectorAll('#mentions-list li.found').length === 2`)
	want.Marks = []string{"@" + an}
	require.Equal(t, want, a.founds("mentions-list")[0], "newest first")
	require.Zero(t, eval[int](a, `document.querySelectorAll('#find-results img, #find-results b, #mentions-list img, #mentions-list b').length`))
	a.click(`#mentions-list li.found[data-id="` + gmID + `"]`)
	a.wait("the group's mention marked", `(id) => document.querySelector('#messages li.msg.jumped[data-id="' + id + '"] .text .mention.me') !== null`, gmID)
	require.Equal(t, "Weekend hike", eval[string](a, `document.getElementById('chat-title').textContent`))
	require.Equal(t, []string{payload}, a.messages())
	require.Zero(t, eval[int](a, `document.querySelectorAll('#messages img, #messages b').length`))
	require.NotEqual(t, "pwned", eval[string](a, `document.title`))
}

// TestSearchPhoneLayout: on a phone-sized screen the search box and the
// results are in the list pane; a result opens the chat pane at the
// message, and back returns to the results.
func TestSearchPhoneLayout(t *testing.T) {
	n := testkit.Start(t)
	bob := testkit.Signup(t, n.URL(), "bob")
	a := newPage(t, "alice", n.URL())
	a.do(chromedp.EmulateViewport(390, 844, chromedp.EmulateMobile, chromedp.EmulateTouch))
	an := testkit.UniqueName("alice")
	a.open("")
	a.signup(an, "Alice")
	alice := a.api()
	first := bob.Send(alice.ID, "Where is the 会議室?", "p-0")
	for i := 1; i <= 60; i++ {
		bob.Send(alice.ID, fmt.Sprintf("line %02d", i), fmt.Sprintf("p-%d", i))
	}
	bob.Send(alice.ID, "@"+an+" ping", "p-mention")

	a.do(chromedp.WaitVisible(chromedp.ID("find-input")), chromedp.WaitNotVisible(chromedp.ID("chat")))
	a.search("会議")
	got := a.founds("find-results")
	require.Len(t, got, 1, "%+v", got)
	require.Equal(t, []string{"会議"}, got[0].Marks)
	a.click(`#find-results li.found[data-id="` + first["id"].(string) + `"]`)
	a.wait("the message marked", `(id) => document.querySelector('#messages li.msg.jumped[data-id="' + id + '"]') !== null`, first["id"].(string))
	a.do(chromedp.WaitNotVisible(chromedp.ID("sidebar")), chromedp.WaitVisible(chromedp.ID("jump-latest")))
	require.LessOrEqual(t, eval[int](a, `document.documentElement.scrollWidth`), 390, "no horizontal scrolling")
	a.do(chromedp.Click(chromedp.ID("back")), chromedp.WaitVisible(chromedp.ID("find-results")), chromedp.WaitNotVisible(chromedp.ID("chat")))
	require.LessOrEqual(t, eval[int](a, `document.documentElement.scrollWidth`), 390, "no horizontal scrolling")

	a.click("#show-mentions")
	a.wait("the mention", `() => document.querySelectorAll('#mentions-list li.found').length === 1`)
	a.click(`#mentions-list li.found`)
	a.wait("the mention in the chat", `() => document.querySelector('#messages li.msg.jumped .mention.me') !== null`)
	a.do(chromedp.WaitVisible(chromedp.ID("chat")), chromedp.WaitNotVisible(chromedp.ID("sidebar")))
}

// searchIn is search with the scope checked too: the results for q in
// conversation scope ("" for all of them).
func (p *page) searchIn(q, scope string) {
	p.t.Helper()
	p.do(
		chromedp.Evaluate[chromedp.Void](`document.getElementById('find-input').value = ''`),
		chromedp.SendKeys(chromedp.ID("find-input"), q+kb.Enter),
	)
	p.waitScope(q, scope)
}

// waitScope waits until the results for q in scope are shown.
func (p *page) waitScope(q, scope string) {
	p.t.Helper()
	// An empty string argument reaches the page as undefined (chromedp
	// omits it), hence scope || ''.
	p.wait("the results for "+q+" in "+scope, `(q, scope) => {
		const panel = document.getElementById('find-panel');
		return !panel.hidden && panel.dataset.q === q && panel.dataset.scope === (scope || '') && panel.dataset.state === 'done';
	}`, q, scope)
}

// convIDs is the conversation of every found item in list.
func convIDs(fs []found) map[string]int {
	n := map[string]int{}
	for _, f := range fs {
		n[f.ConvID]++
	}
	return n
}

// TestSearchInConversation: with a conversation open, Alice restricts the
// search to it (#find-here, named after the conversation, as text); paging
// keeps the scope; unchecking it searches everywhere again.
func TestSearchInConversation(t *testing.T) {
	n := testkit.Start(t)
	a := newPage(t, "alice", n.URL())
	a.open("")
	a.signup(testkit.UniqueName("alice"), "Alice")
	alice := a.api()
	bob := testkit.Signup(t, n.URL(), "bob")
	carol := testkit.Signup(t, n.URL(), "carol")
	testkit.Befriend(t, alice, bob)
	testkit.Befriend(t, alice, carol)
	testkit.Befriend(t, bob, carol)

	// "picnic" in Bob's chat (more than a page) and in a group's.
	m := bob.Send(alice.ID, "picnic on Sunday?", "b-0")
	bobConv := m["conversation_id"].(string)
	for i := 1; i <= 21; i++ {
		bob.Send(alice.ID, fmt.Sprintf("picnic plan %02d", i), fmt.Sprintf("b-%d", i))
	}
	const groupName = `<b>Picnic</b> crew`
	r := carol.Do("POST", "/v1/groups", map[string]any{"name": groupName, "members": []string{alice.ID, bob.ID}})
	require.Equal(t, http.StatusCreated, r.Status, "%s", r.Body)
	r = carol.Do("POST", "/v1/messages", map[string]any{"group_id": r.JSON()["id"].(string), "content": "Picnic photos are up", "client_msg_id": "g-1"})
	require.Equal(t, http.StatusCreated, r.Status, "%s", r.Body)
	groupMsg := r.JSON()["message"].(map[string]any)
	groupConv := groupMsg["conversation_id"].(string)
	// Bob and Carol's own chat is never Alice's to find.
	bob.Send(carol.ID, "picnic without Alice", "bc-1")

	// No conversation open: no scope to choose, everything is searched.
	require.True(t, eval[bool](a, `document.getElementById('find-here').disabled`))
	a.searchIn("picnic", "")
	got := a.founds("find-results")
	require.Len(t, got, 20)
	require.Equal(t, groupMsg["id"], got[0].ID, "newest first")
	require.Equal(t, groupName, got[0].Conv)
	require.Equal(t, 19, convIDs(got)[bobConv])
	require.Equal(t, `20+ results for “picnic” in all conversations`, eval[string](a, `document.getElementById('find-title').textContent`))

	// Bob's chat open: only there.
	a.openConversation("bob")
	a.wait("the scope named after bob", `() => !document.getElementById('find-here').disabled && document.getElementById('find-here-name').textContent === 'Only in “bob”'`)
	a.click("#find-here")
	a.searchIn("picnic", bobConv)
	got = a.founds("find-results")
	require.Len(t, got, 20)
	require.Equal(t, map[string]int{bobConv: 20}, convIDs(got))
	require.Equal(t, `20+ results for “picnic” in “bob”`, eval[string](a, `document.getElementById('find-title').textContent`))
	// The next page is Bob's chat's too.
	a.click("#find-more")
	a.wait("the second page", `() => document.querySelectorAll('#find-results li.found').length === 22 && document.getElementById('find-panel').dataset.state === 'done'`)
	got = a.founds("find-results")
	require.Equal(t, map[string]int{bobConv: 22}, convIDs(got))
	require.Equal(t, m["id"], got[21].ID)
	a.do(chromedp.WaitNotVisible(chromedp.ID("find-more")))
	require.Equal(t, bobConv, eval[string](a, `document.getElementById('find-panel').dataset.scope`))

	// Unchecked while the results show: searched again, everywhere.
	a.click("#find-here")
	a.waitScope("picnic", "")
	got = a.founds("find-results")
	require.Len(t, got, 20)
	require.Equal(t, map[string]int{groupConv: 1, bobConv: 19}, convIDs(got))

	// The group: its name is text, in the scope and the title.
	a.openConversation(groupName)
	a.wait("the scope named after the group", `(n) => !document.getElementById('find-here').disabled && document.getElementById('find-here-name').textContent === 'Only in “' + n + '”'`, groupName)
	a.click("#find-here")
	a.searchIn("picnic", groupConv)
	got = a.founds("find-results")
	require.Len(t, got, 1, "%+v", got)
	require.Equal(t, groupMsg["id"], got[0].ID)
	require.Equal(t, `1 result for “picnic” in “`+groupName+`”`, eval[string](a, `document.getElementById('find-title').textContent`))
	require.Zero(t, eval[int](a, `document.querySelectorAll('#find-form b, #find-panel b').length`))
}

// TestSearchScreenshot sets up a search for 채팅 across chats in Korean,
// Japanese and English and checks its five results; with
// -update-search-screenshot it writes the scene to docs/search.png (which
// needs CJK fonts to look right; the check does not).
func TestSearchScreenshot(t *testing.T) {
	n := testkit.Start(t)
	a := newPage(t, "alice", n.URL())
	a.do(chromedp.EmulateViewport(1200, 760))
	a.open("")
	a.signup(testkit.UniqueName("alice"), "Alice")
	alice := a.api()
	minji := testkit.Signup(t, n.URL(), "Minji")
	kenji := testkit.Signup(t, n.URL(), "Kenji")
	testkit.Befriend(t, alice, minji)
	testkit.Befriend(t, alice, kenji)
	kenji.Send(alice.ID, "채팅 테스트: 会議は金曜日の10時からです", "k-1")
	alice.Send(kenji.ID, "了解です。Friday 10 am works for me", "k-2")
	for i, s := range []struct {
		from, to *testkit.Client
		text     string
	}{
		{minji, alice, "안녕하세요! 새 채팅 앱 써 봤어요?"},
		{alice, minji, "Yes! Search finds 채팅 even inside longer words like 채팅방."},
		{minji, alice, "日本語も大丈夫？東京チームともチャットしてます"},
		{alice, minji, "はい、日本語も英語も検索できます。"},
		{minji, alice, "좋아요. 그럼 오늘 저녁에 채팅방에서 만나요"},
		{alice, minji, "See you in the 채팅방 at 7 pm"},
	} {
		s.from.Send(s.to.ID, s.text, fmt.Sprintf("m-%d", i))
	}
	a.openConversation("Minji")
	a.waitMessage("See you in the 채팅방 at 7 pm")
	a.searchIn("채팅", "")
	require.Len(t, a.founds("find-results"), 5)
	a.do(chromedp.Evaluate[chromedp.Void](`document.activeElement.blur()`))
	a.wait("layout", `() => document.getElementById('messages-box').clientWidth > 600`)
	// The scene is checked on every run; the picture is written on demand.
	if !*updateSearchScreenshot {
		return
	}
	png, err := chromedp.Run(a.ctx, chromedp.CaptureScreenshot())
	require.NoError(t, err)
	require.NoError(t, os.WriteFile(filepath.Join("..", "docs", "search.png"), png, 0o644))
}
