package main

// The search probe (-search N): what finding things in history costs a
// node that holds N messages (SPEC §4, "Finding things in history").
//
//	go run ./bench -search 1M -out docs/bench/search
//	go run ./bench -search 1M -search-data /var/tmp/sb -out DIR  # keep the fill, reuse it next time
//
// It has three parts:
//
//  1. The fill. The probe opens core/embedded in its own process on a new
//     data directory, creates the users, devices and groups through the
//     store, and appends N messages from many goroutines (the store
//     group-commits them), as the node would store them, without HTTP in
//     between: a million messages in a minute or two rather than the
//     history probe's ten. One user, the searcher, belongs to exactly 50
//     conversations (40 direct, 10 groups of 20–100 members) which hold
//     about 7 % of the messages; the rest is traffic among the others.
//     Contents are chat-like English (Zipf-distributed words and common
//     phrases), Korean and Japanese (sentences built from a few hundred
//     words and endings), 20–200 characters, each conversation mostly in
//     one language. The store's OnIndex hook counts the messages indexed,
//     so the indexer's rate is measured while it competes with the
//     appends, and alone on what is left when they end, until
//     WaitIndexed returns.
//     The store is then closed (its memtables flushed) and reopened to read
//     IndexBytes; a copy of the history is compacted to the last level for
//     the same figure without the LSM's overhead.
//  2. Search latency. The chatgate binary is started on the data directory
//     (-limit-send off -limit-search off) and the searcher's GET /v1/search is timed, one
//     request at a time, for each query: a 2-character Korean query, a
//     common, the most common and a rare English word, a 2-character
//     Japanese query and a two-word query, across all 50 conversations and
//     within one (conversation_id). Every answer is checked: each result
//     is in one of the searcher's conversations and holds every term.
//  3. Sends with and without searches. -search-senders HTTP senders
//     (other users, 1:1) send as fast as they are answered for
//     -search-window alone, then with -search-searchers searchers looping
//     over the queries, then alone again; the ratio compares the middle
//     window with the mean of the two around it.
//
// It writes search.json and search.md into -out and prints search.md.

import (
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"math"
	"math/rand/v2"
	"net/http"
	"net/url"
	"os"
	"path/filepath"
	"runtime"
	"runtime/pprof"
	"slices"
	"sort"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"
	"unicode/utf8"

	cpebble "github.com/cockroachdb/pebble/v2"
	"github.com/cockroachdb/pebble/v2/bloom"

	"github.com/chatgate/chatgate/core"
	"github.com/chatgate/chatgate/core/embedded"
	hpebble "github.com/chatgate/chatgate/core/pebble"
)

// searchConfig is the probe's parameters (-search-* flags).
type searchConfig struct {
	n         int64  // messages to store; 0: the probe is off
	data      string // keep the filled data directory here, and reuse it
	users     int
	appenders int           // goroutines appending during the fill
	samples   int           // timed requests per query
	warmup    int           // requests per query before timing
	senders   int           // concurrent HTTP senders in the send windows
	searchers int           // concurrent searchers in the middle window
	window    time.Duration // length of each send window
	pause     time.Duration // each searcher's pause between searches
	cacheMB   int           // the node's -cache-mb; 0: its default
	profile   bool          // save CPU profiles
}

func registerSearchFlags(fs *flag.FlagSet, s *searchConfig) {
	fs.Var(countFlag{&s.n}, "search", "run the search probe instead: fill a data directory with `N` messages (1M) in process, start chatgate on it and time GET /v1/search, then sends with and without searches; writes search.json and search.md")
	fs.StringVar(&s.data, "search-data", "", "search probe: keep the filled data directory in `DIR` (DIR/data and DIR/world.json) and reuse it when it holds the same fill (the node then runs on a copy)")
	fs.IntVar(&s.users, "search-users", 2000, "search probe: users (the searcher is in 40 direct conversations and 10 groups; the others talk among themselves)")
	fs.IntVar(&s.appenders, "search-appenders", 256, "search probe: goroutines appending to the store during the fill")
	fs.IntVar(&s.samples, "search-samples", 500, "search probe: requests timed per query, one at a time")
	fs.IntVar(&s.warmup, "search-warmup", 50, "search probe: requests per query before the timed ones")
	fs.IntVar(&s.senders, "search-senders", 64, "search probe: concurrent HTTP senders (1:1, other users) in the send windows")
	fs.IntVar(&s.searchers, "search-searchers", 4, "search probe: searchers looping over the queries during the middle send window")
	fs.DurationVar(&s.window, "search-window", 20*time.Second, "search probe: length of each send window (alone, with searchers, alone)")
	fs.IntVar(&s.cacheMB, "search-cache-mb", 0, "search probe: the node's -cache-mb (its block cache; 0: the node's default)")
	fs.DurationVar(&s.pause, "search-pause", 0, "search probe: each searcher's pause between two searches in the middle send window (0: they loop)")
	fs.BoolVar(&s.profile, "search-profile", false, "search probe: save CPU profiles into -out: the probe's own during the fill (cpu-fill.pprof), the node's (pprof over -debug-addr) of the query loop and of each send window")
}

func (s *searchConfig) validate() error {
	switch {
	case s.users < 200:
		return errors.New("-search-users must be at least 200 (the searcher's groups take up to 99 others)")
	case s.n < 1000:
		return errors.New("-search needs at least 1000 messages")
	case s.appenders < 1 || s.samples < 1 || s.warmup < 0 || s.senders < 1 || s.searchers < 0:
		return errors.New("-search-appenders, -search-samples and -search-senders must be positive, -search-warmup and -search-searchers not negative")
	case s.window < time.Second:
		return errors.New("-search-window must be at least 1s")
	case s.pause < 0:
		return errors.New("-search-pause must not be negative")
	}
	return nil
}

// ---- text ----

// The contents. English words are drawn by a Zipf law over a chat
// vocabulary (rank 1 "the" is in 86 % of English messages, "meeting" in
// 7 %, "zeppelin" in one in 4,000), with common phrases mixed in; Korean
// and Japanese sentences are a time word, nouns with particles and an
// ending, the nouns Zipf-distributed too (채팅 in 8 % of Korean messages,
// 東京 in 11 % of Japanese ones). TestSearchText holds these shares.

const searchEnglishWords = `the i you to a and it is that in for of me my we on have be this just so are not do can what
with at was your but get if know like all no will up out about go one there how now good time they yeah think see
today when then too right really here want some need going would more tomorrow an from got back lol he she as well why
them been did our sure thanks much who let come work still make had could us day him her were home last take tonight way
again morning night thing people new call week soon any should guys great hey something off also next send done over
lunch after before which other into where love nice yes maybe by or check please sorry said later weekend first because
even probably told long anyone team project already those doing thought wait problem fine pretty help made little down
actually only place give start office phone tell try find same free mean than pick many around file always keep email
best away hope friday monday meeting party dinner coffee update plan hour minutes read feel looks every while year found
ask use review report deadline client code schedule room train late early car bus book ticket movie game music photo
picture link video share slides document draft budget invoice contract sales numbers data server bug fix test release
version feature design issue ticket sprint standup demo call zoom calendar invite agenda notes summary question answer
idea reason point part side kind sort lot bit few both each own such most least less enough quite almost sometimes often
never ever yet once twice birthday holiday vacation trip flight hotel airport beach city street station store market
restaurant menu pizza burger salad beer wine tea water cake breakfast snack kids school class teacher homework exam
grade doctor dentist appointment gym run walk rain snow sun weather cold hot warm busy tired happy sad excited sorry
sick better worse fun funny crazy weird cool awesome amazing perfect terrible boring quick slow easy hard simple ready
open closed full empty big small old young short tall`

// searchEnglishPhrases are mixed into English sentences; several hold
// "meeting" and "tomorrow" together, as chat does.
var searchEnglishPhrases = []string{
	"let me know", "sounds good", "see you tomorrow", "on my way", "thanks a lot", "good morning", "talk later",
	"how are you", "what time works", "i'll send the file", "did you see the email", "lunch today", "running late",
	"check the report", "no worries", "got it", "happy birthday", "project update", "call me when you can",
	"are you free tomorrow", "the meeting is at 3", "see you at the office", "the deadline is friday",
	"can you review the draft", "can we move the meeting", "the build is broken", "ship it", "good night",
	"have a nice weekend", "meeting tomorrow at 10", "any update on this", "i'm in a meeting", "after the meeting",
	"the meeting tomorrow",
}

// searchRareWords: one of them is added to one English sentence in 2,000,
// so each is in about one English message in 4,000 and still has a few
// matches in the searcher's history.
var searchRareWords = []string{"zeppelin", "quasar", "marmalade", "kaleidoscope", "origami"}

var (
	koTimes = strings.Fields("오늘 내일 어제 아까 지금 모레 주말에 저녁에 아침에 오후에 점심에 이따가")
	koNouns = strings.Fields(`회의 점심 사진 일정 프로젝트 자료 메일 시간 친구 주말 커피 저녁 보고서 발표 회사 고객 영화 여행 생일 선물 게임
운동 숙제 계약 채팅 서울 부산 날씨 비행기 기차 파일 링크 문서 예약 택배 음식 식당 공지 휴가 회의실 마감 일정표 가족 강아지 노래
채팅방 버스 지하철 병원 약속 카페 학교 수업 시험 월급 회식 출장 면접 이사 쇼핑 드라마 축구 야구 사무실`)
	koVerbs = []string{"했어요", "할까요?", "확인해 주세요", "보냈습니다", "시작합니다", "끝났어요", "준비했어요", "잊지 마세요", "어때요?", "좋아요",
		"알려 주세요", "봤어요", "필요해요", "바뀌었어요", "괜찮아요?", "정리했습니다", "공유할게요", "취소됐어요", "올렸어요", "기다릴게요",
		"부탁드립니다", "있어요", "없어요", "재밌었어요"}
	koSolo = []string{"네", "네 알겠습니다", "감사합니다!", "ㅋㅋㅋ", "수고하셨습니다", "잠시만요", "좋아요!", "아니요", "진짜요?", "대박", "고마워요", "미안해요", "그럼요", "화이팅!"}

	jaTimes = strings.Fields("今日 明日 昨日 今週 来週 さっき 今 週末 夜 朝 午後 来月")
	jaNouns = strings.Fields(`会議 資料 写真 ランチ 予定 メール 仕事 友達 週末 電車 駅 会社 プロジェクト 映画 旅行 コーヒー 天気 東京 大阪
誕生日 報告書 発表 新幹線 ホテル 予約 店 飲み会 お土産 打ち合わせ 締め切り 宿題 ゲーム 音楽 京都 病院 学校 授業 試験
出張 面接 引っ越し 買い物 ドラマ サッカー 野球 事務所 東京駅 カフェ 約束`)
	jaParticles = []string{"を", "が", "は", "に", "で", "も", "の件", ""}
	jaVerbs     = strings.Fields(`確認しました 送ります 行きます どうですか？ 楽しみです 終わりました お願いします 大丈夫です 見ました 始まります
変更になりました 共有します 準備できました 忘れないでください 遅れます 決まりました ありますか？ 良かったです`)
	jaSolo = []string{"はい", "ありがとうございます！", "お疲れさまです", "了解です", "すみません", "なるほど", "いいですね！", "www", "そうですね", "よろしくお願いします"}
)

// zipf draws ranks 0..n-1 with weight 1/(rank+1)^s.
type zipf struct{ cdf []float64 }

func newZipf(n int, s float64) zipf {
	z := zipf{cdf: make([]float64, n)}
	sum := 0.0
	for i := range n {
		sum += 1 / math.Pow(float64(i+1), s)
		z.cdf[i] = sum
	}
	for i := range z.cdf {
		z.cdf[i] /= sum
	}
	return z
}

func (z zipf) draw(r *rand.Rand) int {
	return min(sort.SearchFloat64s(z.cdf, r.Float64()), len(z.cdf)-1)
}

// Languages of a conversation or a message.
const (
	langEnglish = iota
	langKorean
	langJapanese
)

// textGen makes message contents.
type textGen struct {
	en                  []string
	enZ, phraseZ, nounZ zipf
	koNounZ, jaNounZ    zipf
}

func newTextGen() *textGen {
	var en []string
	seen := map[string]bool{}
	for _, w := range strings.Fields(searchEnglishWords) {
		if !seen[w] {
			seen[w] = true
			en = append(en, w)
		}
	}
	return &textGen{
		en: en, enZ: newZipf(len(en), 1.0), phraseZ: newZipf(len(searchEnglishPhrases), 0.8),
		koNounZ: newZipf(len(koNouns), 0.9), jaNounZ: newZipf(len(jaNouns), 0.9),
	}
}

// content makes one message in lang.
func (g *textGen) content(r *rand.Rand, lang int) string {
	// 20–200 characters, mostly short: about 65 on average for English,
	// 50 for Korean and Japanese, which say more per character.
	u := r.Float64()
	want := 20 + int(180*u*u*u)
	if lang != langEnglish {
		want = 20 + int(180*u*u*u*u*u)
	}
	var b strings.Builder
	n := 0 // characters so far
	for n < want {
		if n > 0 {
			if lang == langJapanese {
				// no space between Japanese sentences
			} else {
				b.WriteByte(' ')
				n++
			}
		}
		var s string
		switch lang {
		case langKorean:
			s = g.korean(r)
		case langJapanese:
			s = g.japanese(r)
		default:
			s = g.english(r)
		}
		if n+utf8.RuneCountInString(s) > 200 && n >= 20 {
			break
		}
		b.WriteString(s)
		n += utf8.RuneCountInString(s)
	}
	out := b.String()
	for utf8.RuneCountInString(out) > 200 { // one long sentence
		_, sz := utf8.DecodeLastRuneInString(out)
		out = out[:len(out)-sz]
	}
	return strings.TrimSpace(out)
}

func (g *textGen) english(r *rand.Rand) string {
	var words []string
	n := 2 + r.IntN(10)
	for len(words) < n {
		switch x := r.Float64(); {
		case x < 0.05:
			words = append(words, searchEnglishPhrases[g.phraseZ.draw(r)])
		case x < 0.07:
			words = append(words, strconv.Itoa(1+r.IntN(12)))
		default:
			words = append(words, g.en[g.enZ.draw(r)])
		}
	}
	if r.IntN(10_000/len(searchRareWords)) == 0 {
		words = slices.Insert(words, r.IntN(len(words)+1), searchRareWords[r.IntN(len(searchRareWords))])
	}
	s := strings.Join(words, " ")
	s = strings.ToUpper(s[:1]) + s[1:]
	switch x := r.IntN(10); {
	case x < 5:
		s += "."
	case x < 8:
		s += "?"
	case x < 9:
		s += "!"
	}
	return s
}

// batchim reports whether a Hangul syllable ends in a consonant (it
// decides the particle: 회의를 but 일정을).
func batchim(w string) bool {
	r, _ := utf8.DecodeLastRuneInString(w)
	return r >= 0xAC00 && r <= 0xD7A3 && (r-0xAC00)%28 != 0
}

func (g *textGen) korean(r *rand.Rand) string {
	if r.IntN(6) == 0 {
		return koSolo[r.IntN(len(koSolo))]
	}
	var parts []string
	if r.IntN(2) == 0 {
		parts = append(parts, koTimes[r.IntN(len(koTimes))])
	}
	for k := 1 + r.IntN(2); k > 0; k-- {
		noun := koNouns[g.koNounZ.draw(r)]
		var p string
		switch r.IntN(6) {
		case 0, 1:
			p = map[bool]string{true: "을", false: "를"}[batchim(noun)]
		case 2:
			p = map[bool]string{true: "이", false: "가"}[batchim(noun)]
		case 3:
			p = map[bool]string{true: "은", false: "는"}[batchim(noun)]
		case 4:
			p = "에"
		}
		parts = append(parts, noun+p)
	}
	parts = append(parts, koVerbs[r.IntN(len(koVerbs))])
	return strings.Join(parts, " ")
}

func (g *textGen) japanese(r *rand.Rand) string {
	if r.IntN(6) == 0 {
		return jaSolo[r.IntN(len(jaSolo))]
	}
	var b strings.Builder
	if r.IntN(2) == 0 {
		b.WriteString(jaTimes[r.IntN(len(jaTimes))])
		b.WriteString("は")
	}
	for k := 1 + r.IntN(2); k > 0; k-- {
		b.WriteString(jaNouns[g.jaNounZ.draw(r)])
		b.WriteString(jaParticles[r.IntN(len(jaParticles))])
	}
	b.WriteString(jaVerbs[r.IntN(len(jaVerbs))])
	if r.IntN(3) > 0 {
		b.WriteString("。")
	}
	return b.String()
}

// ---- the world: users, groups, who talks to whom ----

// searchQuery is one query the probe times.
type searchQuery struct {
	Name string `json:"name"`
	Q    string `json:"q"`
}

var searchQueries = []searchQuery{
	{"Korean, 2 characters", "채팅"},
	{"English, common word", "meeting"},
	{"English, most common word", "the"},
	{"English, rare word", "zeppelin"},
	{"Japanese, 2 characters", "東京"},
	{"English, two words", "meeting tomorrow"},
}

// The searcher's conversations and the shares of the messages.
const (
	searcherDirect = 40
	searcherGroups = 10
	// shares of all messages: the searcher's 1:1 conversations, the
	// searcher's groups, other groups; the rest is 1:1 among the others.
	shareSearcherDirect = 0.035
	shareSearcherGroups = 0.035
	shareOtherGroups    = 0.18
	otherPartners       = 8 // user i ≥ 1 writes 1:1 to the next 8 others
	searchSeed          = 0x5ea4c4
)

// searchWorld is who exists and what the fill stored; world.json.
type searchWorld struct {
	Version  int           `json:"version"`
	Messages int64         `json:"messages"`
	Users    []searchUser  `json:"users"` // users[0] is the searcher
	Groups   []searchGroup `json:"groups"`
	// The searcher's direct partners (user indices) and groups (indices
	// into Groups); the searcher's conversation ids.
	Partners      []int    `json:"searcher_partners"`
	SearcherGrps  []int    `json:"searcher_groups"`
	SearcherConvs []string `json:"searcher_conversations"`
	// Matches per query: messages of the searcher's conversations holding
	// every term of the query.
	Matches map[string]int `json:"matches"`
	// SearcherMessages is how many messages the searcher's conversations
	// hold.
	SearcherMessages int64       `json:"searcher_messages"`
	Fill             SearchFill  `json:"fill"`
	Index            SearchIndex `json:"index"`

	langs   map[string]int // conversation id → language
	text    *textGen
	others  zipf // the other groups, by activity
	sDirect zipf
	sGroup  zipf
	partner zipf
}

type searchUser struct {
	ID    core.ID `json:"id"`
	Token string  `json:"token"`
}

type searchGroup struct {
	ID      core.ID `json:"id"`
	Members []int   `json:"members"` // user indices, owner first
}

const searchWorldVersion = 2

// newSearchWorld draws the users and groups (ids from ids).
func newSearchWorld(users int, ids *core.Snowflake) *searchWorld {
	r := rand.New(rand.NewPCG(searchSeed, 1))
	w := &searchWorld{Version: searchWorldVersion}
	for i := range users {
		w.Users = append(w.Users, searchUser{ID: ids.Next(), Token: fmt.Sprintf("search-bench-%d-%s", i, strconv.FormatUint(r.Uint64(), 36))})
	}
	for i := 1; i <= searcherDirect; i++ {
		w.Partners = append(w.Partners, i)
	}
	// The searcher's groups: 20..100 members, the others drawn from
	// everyone but the searcher.
	sample := func(k int) []int {
		out := make([]int, 0, k)
		seen := map[int]bool{}
		for len(out) < k {
			u := 1 + r.IntN(users-1)
			if !seen[u] {
				seen[u] = true
				out = append(out, u)
			}
		}
		return out
	}
	for g := range searcherGroups {
		size := 20 + g*80/(searcherGroups-1)
		m := append([]int{0}, sample(size-1)...)
		r.Shuffle(len(m), func(i, j int) { m[i], m[j] = m[j], m[i] })
		w.SearcherGrps = append(w.SearcherGrps, len(w.Groups))
		w.Groups = append(w.Groups, searchGroup{ID: ids.Next(), Members: m})
	}
	// Other groups: one per ten users, mostly small (3..100, mean ≈ 27).
	for range users / 10 {
		u := r.Float64()
		w.Groups = append(w.Groups, searchGroup{ID: ids.Next(), Members: sample(3 + int(97*u*u*u))})
	}
	w.init()
	return w
}

// init derives what is not stored in world.json.
func (w *searchWorld) init() {
	w.text = newTextGen()
	w.others = newZipf(len(w.Groups)-len(w.SearcherGrps), 0.7)
	w.sDirect = newZipf(len(w.Partners), 0.8)
	w.sGroup = newZipf(len(w.SearcherGrps), 0.5)
	w.partner = newZipf(otherPartners, 0.8)
	w.langs = map[string]int{}
	if len(w.SearcherConvs) == 0 {
		for _, p := range w.Partners {
			w.SearcherConvs = append(w.SearcherConvs, core.DirectConv(w.Users[0].ID, w.Users[p].ID))
		}
		for _, g := range w.SearcherGrps {
			w.SearcherConvs = append(w.SearcherConvs, core.GroupConv(w.Groups[g].ID))
		}
	}
}

// convLang is a conversation's main language: 60 % English, 25 %
// Korean, 15 % Japanese. key names the conversation by user or group
// indices (not ids), so every fill of the same size stores the same text.
func convLang(key uint64) int {
	switch x := splitmix64(key^searchSeed) % 100; {
	case x < 60:
		return langEnglish
	case x < 85:
		return langKorean
	}
	return langJapanese
}

// searchMsg is one message of the fill or of the senders.
type searchMsg struct {
	from, to int // user indices; to = -1 for a group message
	group    int // index into Groups, or -1
	content  string
	searcher bool // in one of the searcher's conversations
}

// lang picks a message's language: its conversation's, or one in ten
// another.
func (w *searchWorld) lang(r *rand.Rand, key uint64) int {
	l := convLang(key)
	if r.IntN(10) == 0 {
		l = (l + 1 + r.IntN(2)) % 3
	}
	return l
}

func (w *searchWorld) direct(r *rand.Rand, a, b int, searcher bool) searchMsg {
	key := uint64(min(a, b))<<32 | uint64(max(a, b))
	if r.IntN(2) == 0 {
		a, b = b, a
	}
	return searchMsg{from: a, to: b, group: -1, content: w.text.content(r, w.lang(r, key)), searcher: searcher}
}

func (w *searchWorld) groupMsg(r *rand.Rand, g int, searcher bool) searchMsg {
	m := w.Groups[g].Members
	return searchMsg{from: m[r.IntN(len(m))], to: -1, group: g, content: w.text.content(r, w.lang(r, 1<<63|uint64(g))), searcher: searcher}
}

// otherDirect is a 1:1 message between two users other than the
// searcher: user from writes to one of its next otherPartners users.
func (w *searchWorld) otherDirect(r *rand.Rand, from int) searchMsg {
	n := len(w.Users) - 1
	to := 1 + (from-1+1+w.partner.draw(r))%n
	return w.direct(r, from, to, false)
}

// pick chooses message i of the fill, from i alone.
func (w *searchWorld) pick(i int64) searchMsg {
	r := rand.New(rand.NewPCG(searchSeed, uint64(i)+2))
	switch x := r.Float64(); {
	case x < shareSearcherDirect:
		return w.direct(r, 0, w.Partners[w.sDirect.draw(r)], true)
	case x < shareSearcherDirect+shareSearcherGroups:
		return w.groupMsg(r, w.SearcherGrps[w.sGroup.draw(r)], true)
	case x < shareSearcherDirect+shareSearcherGroups+shareOtherGroups:
		return w.groupMsg(r, len(w.SearcherGrps)+w.others.draw(r), false)
	}
	return w.otherDirect(r, 1+r.IntN(len(w.Users)-1))
}

// holds reports whether content holds every term of the query, the way
// the index matches.
func holds(content string, terms []string) bool {
	have := core.Terms(content)
	for _, t := range terms {
		if !slices.Contains(have, t) {
			return false
		}
	}
	return true
}

// ---- the fill ----

// SearchFill is what the fill measured.
type SearchFill struct {
	Messages      int64   `json:"messages"`
	Direct        int64   `json:"direct_messages"`
	Group         int64   `json:"group_messages"`
	Users         int     `json:"users"`
	Groups        int     `json:"groups"`
	Appenders     int     `json:"appenders"`
	UsersS        float64 `json:"users_s"` // creating users, devices and groups
	FillS         float64 `json:"fill_s"`
	AppendsPerS   float64 `json:"appends_per_s"`
	ContentBytes  int64   `json:"content_bytes"` // UTF-8 bytes of all contents
	ContentChars  int64   `json:"content_chars"`
	English       int64   `json:"english_messages"`
	Korean        int64   `json:"korean_messages"`
	Japanese      int64   `json:"japanese_messages"`
	InboxEntries  int64   `json:"inbox_entries"`
	LoadAvgBefore string  `json:"load_avg_before"`
	LoadAvgAfter  string  `json:"load_avg_after"`
	// Series: about once a second, messages appended and indexed.
	Series []SearchFillPoint `json:"series"`
}

// SearchFillPoint is one moment of the fill.
type SearchFillPoint struct {
	T        float64 `json:"t_s"`
	Appended int64   `json:"appended"`
	Indexed  int64   `json:"indexed"`
}

// SearchIndex is the indexer's rate and the index's size.
type SearchIndex struct {
	// While the appends ran: messages indexed per second over the middle
	// 60 % of the fill, and over the whole fill.
	DuringFillPerS float64 `json:"indexed_per_s_during_fill"`
	WholeFillPerS  float64 `json:"indexed_per_s_whole_fill"`
	// When the appends ended: messages not yet indexed, the time until
	// WaitIndexed returned, and the rate of that catch-up (the indexer
	// alone).
	BacklogAtEnd   int64   `json:"backlog_at_fill_end"`
	CatchUpS       float64 `json:"catch_up_s"`
	CatchUpPerS    float64 `json:"indexed_per_s_alone"`
	AppendToIdxS   float64 `json:"fill_start_to_all_indexed_s"`
	IndexedPerSAll float64 `json:"indexed_per_s_fill_start_to_all_indexed"`
	// IndexBytes after the store was closed (memtables flushed) and
	// reopened: the postings and mentions, and the messages; per message.
	IndexBytes     int64   `json:"index_bytes"`
	MessageBytes   int64   `json:"message_bytes"`
	IndexPerMsg    float64 `json:"index_bytes_per_msg"`
	MessagesPerMsg float64 `json:"message_bytes_per_msg"`
	// The same on a copy of the history compacted to one level.
	IndexBytesCompacted   int64   `json:"index_bytes_compacted"`
	MessageBytesCompacted int64   `json:"message_bytes_compacted"`
	IndexPerMsgCompacted  float64 `json:"index_bytes_per_msg_compacted"`
	MsgPerMsgCompacted    float64 `json:"message_bytes_per_msg_compacted"`
	HistoryBytesCompacted int64   `json:"history_dir_bytes_compacted"`
	CompactS              float64 `json:"compact_s"`
	// The data directory (file sizes, blocks allocated) and its history/.
	DataBytes    int64   `json:"data_dir_bytes"`
	DataAlloc    int64   `json:"data_dir_alloc_bytes"`
	HistoryBytes int64   `json:"history_dir_bytes"`
	DataPerMsg   float64 `json:"data_dir_bytes_per_msg"`
	LSM          string  `json:"lsm"` // levels as the node found them: tables and size
}

// openSearchStore opens the embedded store of a fill.
func openSearchStore(dir string, onIndex func(int)) (*embedded.Store, error) {
	ids, err := core.NewSnowflake(1)
	if err != nil {
		return nil, err
	}
	log := slog.New(slog.NewTextHandler(io.Discard, nil))
	return embedded.Open(dir, ids, log, embedded.Options{OnIndex: onIndex})
}

// searchFill creates the world in dir and stores n messages, measuring
// the appends and the indexer.
func searchFill(ctx context.Context, sc searchConfig, dir, out string, prog *progress) (*searchWorld, error) {
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return nil, err
	}
	var indexed atomic.Int64
	st, err := openSearchStore(dir, func(n int) { indexed.Add(int64(n)) })
	if err != nil {
		return nil, err
	}
	defer func() {
		if st != nil {
			st.Close()
		}
	}()
	ids, err := core.NewSnowflake(2) // user, device and group ids; the store's own Snowflake (node 1) makes message ids
	if err != nil {
		return nil, err
	}
	w := newSearchWorld(sc.users, ids)
	w.Messages = sc.n
	fl := SearchFill{Messages: sc.n, Users: sc.users, Groups: len(w.Groups), Appenders: sc.appenders}
	_, _, _, fl.LoadAvgBefore = machine()

	prog.stage(fmt.Sprintf("creating %d users and %d groups", sc.users, len(w.Groups)), float64(sc.users)/500+2)
	t0 := time.Now()
	pw, err := core.HashPassword(benchPassword)
	if err != nil {
		return nil, err
	}
	now := core.Now()
	err = parallel(ctx, len(w.Users), 32, func(i int) error {
		u := w.Users[i]
		rec := core.UserRecord{User: core.User{ID: u.ID, Username: fmt.Sprintf("sb%05d", i), DisplayName: fmt.Sprintf("Search bench %d", i), CreatedAt: now}, PasswordHash: pw}
		d := core.Device{ID: ids.Next(), UserID: u.ID, Name: "search bench", CreatedAt: now}
		return st.CreateUser(ctx, rec, d, core.TokenHash(u.Token))
	})
	if err != nil {
		return nil, fmt.Errorf("create users: %w", err)
	}
	for gi, g := range w.Groups {
		members := make([]core.ID, len(g.Members))
		for j, m := range g.Members {
			members[j] = w.Users[m].ID
		}
		grp := core.Group{ID: g.ID, Name: fmt.Sprintf("group %d", gi), OwnerID: members[0], Members: members, CreatedAt: now}
		if err := st.CreateGroup(ctx, grp); err != nil {
			return nil, fmt.Errorf("create group %d: %w", gi, err)
		}
	}
	fl.UsersS = round(time.Since(t0).Seconds(), 2)

	prog.stage(fmt.Sprintf("storing %s messages (%d appenders)", commas(sc.n), sc.appenders), float64(sc.n)/12000)
	terms := make([][]string, len(searchQueries))
	for i, q := range searchQueries {
		terms[i] = core.QueryTerms(q.Q)
	}
	var (
		next                    atomic.Int64
		appended, direct, group atomic.Int64
		cBytes, cChars, inbox   atomic.Int64
		langN                   [3]atomic.Int64
		searcherN               atomic.Int64
		matches                 = make([]atomic.Int64, len(searchQueries))
	)
	fctx, cancel := context.WithCancelCause(ctx)
	defer cancel(nil)
	profiling := false
	if sc.profile {
		// The fill's own CPU: the appends, the store's committer, the
		// indexer and Pebble's compactions, all in this process.
		pf, err := os.Create(filepath.Join(out, "cpu-fill.pprof"))
		if err != nil {
			return nil, err
		}
		defer pf.Close()
		if err := pprof.StartCPUProfile(pf); err != nil {
			return nil, err
		}
		profiling = true
		defer func() {
			if profiling {
				pprof.StopCPUProfile()
			}
		}()
	}
	start := time.Now()
	var wg sync.WaitGroup
	for range sc.appenders {
		wg.Go(func() {
			for fctx.Err() == nil {
				i := next.Add(1) - 1
				if i >= sc.n {
					return
				}
				m := w.pick(i)
				req := core.SendRequest{From: w.Users[m.from].ID, Content: m.content, ClientMsgID: "sb-" + strconv.FormatInt(i, 36), CreatedAt: core.Now()}
				if m.group >= 0 {
					req.GroupID = w.Groups[m.group].ID
				} else {
					req.To = w.Users[m.to].ID
				}
				res, err := st.Append(fctx, req)
				if err != nil {
					cancel(fmt.Errorf("append message %d: %w", i, err))
					return
				}
				appended.Add(1)
				inbox.Add(int64(len(res.Deliveries)))
				if m.group >= 0 {
					group.Add(1)
				} else {
					direct.Add(1)
				}
				cBytes.Add(int64(len(m.content)))
				cChars.Add(int64(utf8.RuneCountInString(m.content)))
				langN[convLangOf(m.content)].Add(1)
				if m.searcher {
					searcherN.Add(1)
					for qi, ts := range terms {
						if holds(m.content, ts) {
							matches[qi].Add(1)
						}
					}
				}
			}
		})
	}
	done := make(chan struct{})
	go func() { wg.Wait(); close(done) }()
	tick := time.NewTicker(250 * time.Millisecond)
	defer tick.Stop()
	var series []SearchFillPoint
	lastT, lastN := time.Duration(0), int64(0)
loop:
	for {
		select {
		case <-done:
			break loop
		case now := <-tick.C:
			at := now.Sub(start)
			a, x := appended.Load(), indexed.Load()
			series = append(series, SearchFillPoint{T: round(at.Seconds(), 2), Appended: a, Indexed: x})
			prog.advance(float64(a) / float64(sc.n))
			if at-lastT >= time.Second {
				prog.note(fmt.Sprintf("%s stored, %s indexed, %s appends/s", commas(a), commas(x), f(float64(a-lastN)/(at-lastT).Seconds())))
				lastT, lastN = at, a
			}
		}
	}
	if err := context.Cause(fctx); err != nil {
		return nil, err
	}
	fillDur := time.Since(start)
	if profiling {
		pprof.StopCPUProfile()
		profiling = false
	}
	series = append(series, SearchFillPoint{T: round(fillDur.Seconds(), 2), Appended: appended.Load(), Indexed: indexed.Load()})
	backlog := appended.Load() - indexed.Load()

	prog.stage(fmt.Sprintf("indexing the last %s messages", commas(max(backlog, 0))), float64(max(backlog, 0))/20000+1)
	t1 := time.Now()
	if err := st.WaitIndexed(ctx, 0); err != nil {
		return nil, fmt.Errorf("wait for the index: %w", err)
	}
	catchUp := time.Since(t1)
	allIdx := time.Since(start)
	series = append(series, SearchFillPoint{T: round(allIdx.Seconds(), 2), Appended: appended.Load(), Indexed: indexed.Load()})

	fl.Direct, fl.Group = direct.Load(), group.Load()
	fl.FillS = round(fillDur.Seconds(), 2)
	fl.AppendsPerS = round(float64(sc.n)/fillDur.Seconds(), 0)
	fl.ContentBytes, fl.ContentChars, fl.InboxEntries = cBytes.Load(), cChars.Load(), inbox.Load()
	fl.English, fl.Korean, fl.Japanese = langN[langEnglish].Load(), langN[langKorean].Load(), langN[langJapanese].Load()
	_, _, _, fl.LoadAvgAfter = machine()
	fl.Series = thinSeries(series, time.Second)
	w.Fill = fl
	w.SearcherMessages = searcherN.Load()
	w.Matches = map[string]int{}
	for qi, q := range searchQueries {
		w.Matches[q.Q] = int(matches[qi].Load())
	}

	ix := SearchIndex{BacklogAtEnd: backlog, CatchUpS: round(catchUp.Seconds(), 2), AppendToIdxS: round(allIdx.Seconds(), 2)}
	ix.WholeFillPerS = round(float64(series[len(series)-2].Indexed)/fillDur.Seconds(), 0)
	ix.DuringFillPerS = round(seriesRate(series[:len(series)-1], 0.2*fillDur.Seconds(), 0.8*fillDur.Seconds(), func(p SearchFillPoint) int64 { return p.Indexed }), 0)
	if catchUp > 0 && backlog > 0 {
		ix.CatchUpPerS = round(float64(backlog)/catchUp.Seconds(), 0)
	}
	ix.IndexedPerSAll = round(float64(sc.n)/allIdx.Seconds(), 0)

	prog.stage("closing the store (memtables flushed) and measuring the index", 5)
	if err := st.Close(); err != nil {
		st = nil
		return nil, err
	}
	st = nil
	if err := measureIndex(dir, sc.n, &ix); err != nil {
		return nil, err
	}
	w.Index = ix
	return w, nil
}

// convLangOf guesses a content's language from its first letter.
func convLangOf(content string) int {
	for _, r := range content {
		switch {
		case r >= 0xAC00 && r <= 0xD7A3 || r >= 0x3130 && r <= 0x318F:
			return langKorean
		case r >= 0x3040 && r <= 0x30FF || r >= 0x4E00 && r <= 0x9FFF:
			return langJapanese
		case r < 0x80 && (r >= 'a' && r <= 'z' || r >= 'A' && r <= 'Z'):
			return langEnglish
		}
	}
	return langEnglish
}

// thinSeries keeps about one point per every.
func thinSeries(s []SearchFillPoint, every time.Duration) []SearchFillPoint {
	var out []SearchFillPoint
	last := -math.MaxFloat64
	for i, p := range s {
		if p.T-last >= every.Seconds() || i == len(s)-1 {
			out = append(out, p)
			last = p.T
		}
	}
	return out
}

// seriesRate is the rate of v over [a, b] seconds of the series, between
// the samples nearest to a and b.
func seriesRate(s []SearchFillPoint, a, b float64, v func(SearchFillPoint) int64) float64 {
	var pa, pb *SearchFillPoint
	for i := range s {
		if pa == nil && s[i].T >= a {
			pa = &s[i]
		}
		if s[i].T <= b {
			pb = &s[i]
		}
	}
	if pa == nil || pb == nil || pb.T <= pa.T {
		return 0
	}
	return float64(v(*pb)-v(*pa)) / (pb.T - pa.T)
}

// measureIndex reads IndexBytes and the directory sizes of a closed
// fill, and the same on a compacted copy of its history.
func measureIndex(dir string, n int64, ix *SearchIndex) error {
	st, err := openSearchStore(dir, nil)
	if err != nil {
		return err
	}
	idx, msgs, err := st.HistoryStore().IndexBytes()
	if cerr := st.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		return err
	}
	ix.IndexBytes, ix.MessageBytes = int64(idx), int64(msgs)
	ix.IndexPerMsg, ix.MessagesPerMsg = round(float64(idx)/float64(n), 1), round(float64(msgs)/float64(n), 1)
	if ix.DataBytes, ix.DataAlloc, err = diskUsage(dir); err != nil {
		return err
	}
	if ix.HistoryBytes, _, err = diskUsage(filepath.Join(dir, "history")); err != nil {
		return err
	}
	ix.DataPerMsg = round(float64(ix.DataBytes)/float64(n), 1)
	if ix.LSM, err = lsmShape(filepath.Join(dir, "history")); err != nil {
		return err
	}

	// A compacted copy: every key in the last level, as BenchmarkBytesOnDisk
	// measures (the same Bloom filters as the store writes).
	tmp, err := os.MkdirTemp(filepath.Dir(dir), "compacted-")
	if err != nil {
		return err
	}
	defer os.RemoveAll(tmp)
	if err := copyDir(filepath.Join(dir, "history"), tmp); err != nil {
		return err
	}
	t0 := time.Now()
	opts := &cpebble.Options{FormatMajorVersion: cpebble.FormatNewest, Logger: quietPebble{}}
	for i := range opts.Levels {
		opts.Levels[i].FilterPolicy = bloom.FilterPolicy(10)
	}
	db, err := cpebble.Open(tmp, opts)
	if err != nil {
		return fmt.Errorf("open the copy to compact: %w", err)
	}
	err = db.Compact(context.Background(), []byte{0}, []byte{0xff, 0xff}, true)
	if cerr := db.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		return fmt.Errorf("compact the copy: %w", err)
	}
	ix.CompactS = round(time.Since(t0).Seconds(), 1)
	ids, _ := core.NewSnowflake(1)
	hs, err := hpebble.Open(tmp, nil, ids, slog.New(slog.NewTextHandler(io.Discard, nil)), hpebble.Options{})
	if err != nil {
		return err
	}
	idx, msgs, err = hs.IndexBytes()
	if cerr := hs.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		return err
	}
	ix.IndexBytesCompacted, ix.MessageBytesCompacted = int64(idx), int64(msgs)
	ix.IndexPerMsgCompacted, ix.MsgPerMsgCompacted = round(float64(idx)/float64(n), 1), round(float64(msgs)/float64(n), 1)
	ix.HistoryBytesCompacted, _, err = diskUsage(tmp)
	return err
}

type quietPebble struct{}

func (quietPebble) Infof(string, ...any)  {}
func (quietPebble) Errorf(string, ...any) {}
func (quietPebble) Fatalf(format string, args ...any) {
	panic(fmt.Sprintf(format, args...))
}

// lsmShape describes the levels of a closed Pebble directory: tables and
// size per non-empty level.
func lsmShape(dir string) (string, error) {
	db, err := cpebble.Open(dir, &cpebble.Options{ReadOnly: true, Logger: quietPebble{}})
	if err != nil {
		return "", err
	}
	defer db.Close()
	m := db.Metrics()
	var parts []string
	for l, lm := range m.Levels {
		if lm.TablesCount == 0 {
			continue
		}
		s := fmt.Sprintf("L%d: %d tables, %s MiB", l, lm.TablesCount, f(mib(lm.TablesSize)))
		parts = append(parts, s)
	}
	return strings.Join(parts, "; "), nil
}

// ---- the node ----

// SearchReport is search.json.
type SearchReport struct {
	Meta    SearchMeta   `json:"meta"`
	Fill    SearchFill   `json:"fill"`
	Index   SearchIndex  `json:"index"`
	World   SearchShape  `json:"world"`
	Queries []SearchRow  `json:"queries"`
	Sends   *SearchSends `json:"sends,omitempty"`
}

// SearchMeta describes the run.
type SearchMeta struct {
	Date      string   `json:"date"`
	Command   string   `json:"command"`
	CPU       string   `json:"cpu"`
	Cores     int      `json:"cores"`
	MemoryGiB float64  `json:"memory_gib"`
	Kernel    string   `json:"kernel"`
	GoVersion string   `json:"go_version"`
	LoadAvg   string   `json:"load_avg_at_start"`
	Reused    bool     `json:"fill_reused"` // the fill came from -search-data
	NodeArgs  string   `json:"node_args"`   // the node's flags beyond -addr and -data
	Samples   int      `json:"samples"`
	Warmup    int      `json:"warmup"`
	DurationS float64  `json:"duration_s"`
	Errors    []string `json:"errors,omitempty"`
}

// SearchShape is the searcher's share of the history.
type SearchShape struct {
	Conversations    int            `json:"searcher_conversations"`
	Direct           int            `json:"searcher_direct"`
	Groups           int            `json:"searcher_groups"`
	GroupSizes       []int          `json:"searcher_group_sizes"`
	SearcherMessages int64          `json:"searcher_messages"`
	Matches          map[string]int `json:"matches"`
}

// SearchRow is one query, timed one request at a time.
type SearchRow struct {
	Name    string  `json:"name"`
	Q       string  `json:"q"`
	Conv    string  `json:"conversation_id,omitempty"`
	ColdMs  float64 `json:"first_request_ms"` // the first request of this kind after the node started
	Lat     LatStat `json:"latency"`
	Results int     `json:"results"` // on the page (limit 20)
	HasMore bool    `json:"has_more"`
	Matches int     `json:"matches,omitempty"` // in the searcher's conversations (unscoped rows)
	Bad     int     `json:"bad_results"`       // results outside the searcher's conversations or without a term
	Errors  int     `json:"errors"`
}

// SearchSends is the send windows.
type SearchSends struct {
	Senders    int           `json:"senders"`
	Searchers  int           `json:"searchers"`
	PauseMs    float64       `json:"searcher_pause_ms"`
	WindowS    float64       `json:"window_s"`
	Windows    []SendWindow  `json:"windows"` // alone, with searchers, alone
	Ratio      float64       `json:"ratio"`   // with searchers / mean of the two alone
	Searches   []SearchUnder `json:"searches_under_load"`
	SearchAll  LatStat       `json:"search_latency_under_load"`
	SearchPerS float64       `json:"searches_per_s"`
}

// SendWindow is one window of sends.
type SendWindow struct {
	Label     string  `json:"label"`
	Sends     int64   `json:"sends"`
	SendsPerS float64 `json:"sends_per_s"`
	Lat       LatStat `json:"send_latency"`
	Errors    int64   `json:"errors"`
	ServerCPU float64 `json:"server_cpu_pct"`
	LoadCPU   float64 `json:"load_cpu_pct"`
	LoadAvg   string  `json:"load_avg_after"`
	Searches  int64   `json:"searches,omitempty"`
}

// SearchUnder is one query's latency during the searchers' window.
type SearchUnder struct {
	Q   string  `json:"q"`
	Lat LatStat `json:"latency"`
}

// runSearch is `bench -search N`.
func runSearch(ctx context.Context, cfg config, stdout, stderr io.Writer) error {
	sc := cfg.search
	if err := sc.validate(); err != nil {
		return err
	}
	if _, err := raiseNoFile(); err != nil {
		return fmt.Errorf("raise open-files limit: %w", err)
	}
	prog := newProgress(stderr, searchEstimate(sc, cfg.chatgateBin == ""))
	rep, err := searchRun(ctx, sc, cfg.chatgateBin, cfg.out, "go run ./bench "+strings.Join(os.Args[1:], " "), prog)
	prog.finish()
	if rep != nil {
		fmt.Fprint(stdout, searchMarkdown(*rep))
		fmt.Fprintf(stderr, "search.json and search.md in %s\n", cfg.out)
	}
	return err
}

func searchEstimate(sc searchConfig, build bool) float64 {
	total := float64(sc.users)/500 + 2 + float64(sc.n)/12000 + float64(sc.n)/20000 + 10
	total += float64(len(searchQueries)*2*(sc.samples+sc.warmup)) * 0.004
	total += 3*sc.window.Seconds() + 6
	if build {
		total += 20
	}
	return total
}

// searchRun fills (or reuses) a data directory, measures and writes the
// report into out.
func searchRun(ctx context.Context, sc searchConfig, bin, out, command string, prog *progress) (*SearchReport, error) {
	began := time.Now()
	rep := &SearchReport{Meta: SearchMeta{Date: time.Now().UTC().Format(time.RFC3339), Command: command, Cores: runtime.NumCPU(), GoVersion: runtime.Version(), Samples: sc.samples, Warmup: sc.warmup}}
	rep.Meta.CPU, rep.Meta.MemoryGiB, rep.Meta.Kernel, rep.Meta.LoadAvg = machine()
	if err := os.MkdirAll(out, 0o755); err != nil {
		return nil, err
	}
	work, err := os.MkdirTemp("", "chatgate-search-")
	if err != nil {
		return nil, err
	}
	defer os.RemoveAll(work)
	if bin == "" {
		prog.stage("building chatgate", 20)
		if bin, err = buildChatgate(ctx, work); err != nil {
			return nil, err
		}
	}

	// The fill, or the one kept in -search-data.
	var w *searchWorld
	nodeDir := filepath.Join(work, "data")
	if sc.data != "" {
		w, err = loadSearchWorld(sc)
		if err != nil {
			return nil, err
		}
		if w == nil {
			if w, err = searchFill(ctx, sc, filepath.Join(sc.data, "data"), out, prog); err != nil {
				return nil, err
			}
			if err := saveSearchWorld(sc.data, w); err != nil {
				return nil, err
			}
		} else {
			rep.Meta.Reused = true
			prog.log("reusing the fill in %s (%s messages)", sc.data, commas(w.Messages))
		}
		prog.stage("copying the data directory for the node", float64(sc.n)/200000+1)
		if err := copyDir(filepath.Join(sc.data, "data"), nodeDir); err != nil {
			return nil, err
		}
	} else if w, err = searchFill(ctx, sc, nodeDir, out, prog); err != nil {
		return nil, err
	}
	rep.Fill, rep.Index = w.Fill, w.Index
	rep.World = SearchShape{Conversations: len(w.SearcherConvs), Direct: len(w.Partners), Groups: len(w.SearcherGrps), SearcherMessages: w.SearcherMessages, Matches: w.Matches}
	for _, g := range w.SearcherGrps {
		rep.World.GroupSizes = append(rep.World.GroupSizes, len(w.Groups[g].Members))
	}
	finish := func(err error) (*SearchReport, error) {
		rep.Meta.DurationS = round(time.Since(began).Seconds(), 1)
		if err != nil {
			rep.Meta.Errors = append(rep.Meta.Errors, err.Error())
		}
		if werr := writeSearch(out, *rep); werr != nil && err == nil {
			err = werr
		}
		return rep, err
	}

	// The node.
	addr, err := freeAddr()
	if err != nil {
		return finish(err)
	}
	dbg, err := freeAddr()
	if err != nil {
		return finish(err)
	}
	prog.stage("starting chatgate on the filled directory", 2)
	serverWait = max(serverWait, 2*time.Minute)
	args := []string{"-addr", addr, "-data", nodeDir, "-node-id", "1", "-log-level", "warn", "-limit-send", "off", "-limit-search", "off", "-debug-addr", dbg}
	if sc.cacheMB > 0 {
		args = append(args, "-cache-mb", strconv.Itoa(sc.cacheMB))
	}
	rep.Meta.NodeArgs = strings.Join(args[4:], " ")
	srv, err := startProcess("chatgate", bin, args, "http://"+addr, "/healthz", "http://"+dbg, filepath.Join(out, "chatgate.log"))
	if err != nil {
		return finish(err)
	}
	defer srv.stop()

	hc := &http.Client{Transport: fillTransport(sc.senders + sc.searchers + 4), Timeout: time.Minute}
	defer hc.Transport.(*http.Transport).CloseIdleConnections()
	rows, err := searchLatency(ctx, sc, w, srv, hc, out, prog)
	rep.Queries = rows
	if err != nil {
		return finish(err)
	}
	sends, err := searchSends(ctx, sc, w, srv, hc, out, prog)
	rep.Sends = sends
	if err != nil {
		return finish(err)
	}
	prog.stage("stopping chatgate", 2)
	if err := srv.stop(); err != nil {
		return finish(err)
	}
	for _, r := range rep.Queries {
		if r.Errors > 0 || r.Bad > 0 {
			rep.Meta.Errors = append(rep.Meta.Errors, fmt.Sprintf("%q: %d errors, %d bad results", r.Q, r.Errors, r.Bad))
		}
	}
	return finish(nil)
}

// loadSearchWorld reads the fill kept in sc.data: nil if there is none
// yet, an error if it holds another fill.
func loadSearchWorld(sc searchConfig) (*searchWorld, error) {
	b, err := os.ReadFile(filepath.Join(sc.data, "world.json"))
	if errors.Is(err, os.ErrNotExist) {
		if ents, _ := os.ReadDir(sc.data); len(ents) > 0 {
			return nil, fmt.Errorf("-search-data %s is not empty and holds no world.json: not a kept fill", sc.data)
		}
		return nil, nil
	}
	if err != nil {
		return nil, err
	}
	var w searchWorld
	if err := json.Unmarshal(b, &w); err != nil {
		return nil, fmt.Errorf("%s/world.json: %w", sc.data, err)
	}
	if w.Version != searchWorldVersion || w.Messages != sc.n || len(w.Users) != sc.users {
		return nil, fmt.Errorf("-search-data %s holds a fill of %s messages and %d users (version %d); remove it to fill %s and %d",
			sc.data, commas(w.Messages), len(w.Users), w.Version, commas(sc.n), sc.users)
	}
	w.init()
	return &w, nil
}

func saveSearchWorld(dir string, w *searchWorld) error {
	b, err := json.MarshalIndent(w, "", " ")
	if err != nil {
		return err
	}
	return os.WriteFile(filepath.Join(dir, "world.json"), b, 0o644)
}

// searchAnswer is the body of GET /v1/search, as far as the probe reads it.
type searchAnswer struct {
	Results []struct {
		ConversationID string `json:"conversation_id"`
		Message        struct {
			ID             string `json:"id"`
			ConversationID string `json:"conversation_id"`
			Content        string `json:"content"`
		} `json:"message"`
	} `json:"results"`
	HasMore bool `json:"has_more"`
}

func searchURL(base, q, conv string) string {
	u := base + "/v1/search?limit=20&q=" + url.QueryEscape(q)
	if conv != "" {
		u += "&conversation_id=" + url.QueryEscape(conv)
	}
	return u
}

// check counts the results of a page that are not the searcher's or do
// not hold every term of q.
func (w *searchWorld) check(a searchAnswer, q, conv string) int {
	terms := core.QueryTerms(q)
	bad := 0
	for _, r := range a.Results {
		ok := slices.Contains(w.SearcherConvs, r.ConversationID) && holds(r.Message.Content, terms) && (conv == "" || r.ConversationID == conv)
		if !ok {
			bad++
		}
	}
	return bad
}

// timedSearch runs one search and returns its time, decoded answer.
func timedSearch(ctx context.Context, hc *http.Client, u, token string) (time.Duration, searchAnswer, error) {
	t0 := time.Now()
	b, err := getAuthed(ctx, hc, u, token)
	d := time.Since(t0)
	var a searchAnswer
	if err == nil {
		err = json.Unmarshal(b, &a)
	}
	return d, a, err
}

// searchLatency times each query, one request at a time, across the
// searcher's conversations and within one.
func searchLatency(ctx context.Context, sc searchConfig, w *searchWorld, srv *server, hc *http.Client, out string, prog *progress) ([]SearchRow, error) {
	token := w.Users[0].Token
	var rows []SearchRow
	var prof chan error
	if sc.profile {
		// The whole query loop, unscoped queries: about samples × queries
		// × a few ms.
		secs := max(5, int(float64(sc.samples*len(searchQueries))*0.005))
		prof = make(chan error, 1)
		go func() { prof <- saveProfile(ctx, srv.debug, secs, filepath.Join(out, "cpu-search.pprof")) }()
	}
	run := func(q searchQuery, conv string) (SearchRow, error) {
		row := SearchRow{Name: q.Name, Q: q.Q, Conv: conv}
		if conv == "" {
			row.Matches = w.Matches[q.Q]
		}
		u := searchURL(srv.base, q.Q, conv)
		var l []int64
		for i := 0; i < sc.warmup+sc.samples; i++ {
			if ctx.Err() != nil {
				return row, ctx.Err()
			}
			d, a, err := timedSearch(ctx, hc, u, token)
			if err != nil {
				row.Errors++
				if row.Errors > 10 {
					return row, fmt.Errorf("search %q: %w", q.Q, err)
				}
				continue
			}
			if i == 0 {
				row.ColdMs = ms(d)
			}
			if i >= sc.warmup {
				l = append(l, int64(d))
			}
			row.Results, row.HasMore = len(a.Results), a.HasMore
			if i == 0 || i == sc.warmup+sc.samples-1 {
				row.Bad += w.check(a, q.Q, conv)
			}
		}
		row.Lat = latStat(l)
		return row, nil
	}
	convOf := map[string]string{}
	for _, q := range searchQueries {
		prog.stage(fmt.Sprintf("timing %q, %d requests", q.Q, sc.warmup+sc.samples), float64(sc.warmup+sc.samples)*0.004)
		row, err := run(q, "")
		rows = append(rows, row)
		if err != nil {
			return rows, err
		}
		// The conversation of the newest match, for the scoped row.
		_, a, err := timedSearch(ctx, hc, searchURL(srv.base, q.Q, ""), token)
		if err == nil && len(a.Results) > 0 {
			convOf[q.Q] = a.Results[0].ConversationID
		}
		prog.log("%-28s %-18q p50 %s ms, p99 %s ms, max %s ms; %d results%s (first request %s ms)", q.Name, q.Q, f(row.Lat.P50ms), f(row.Lat.P99ms), f(row.Lat.MaxMs),
			row.Results, map[bool]string{true: ", more", false: ""}[row.HasMore], f(row.ColdMs))
	}
	if prof != nil {
		if err := <-prof; err != nil {
			prog.log("CPU profile of the query loop: %v", err)
		}
	}
	for _, q := range searchQueries {
		conv := convOf[q.Q]
		if conv == "" {
			conv = w.SearcherConvs[len(w.SearcherConvs)-1]
		}
		prog.stage(fmt.Sprintf("timing %q in one conversation", q.Q), float64(sc.warmup+sc.samples)*0.002)
		row, err := run(q, conv)
		row.Name += ", one conversation"
		rows = append(rows, row)
		if err != nil {
			return rows, err
		}
		prog.log("%-28s %-18q p50 %s ms, p99 %s ms, max %s ms; %d results (one conversation)", q.Name, q.Q, f(row.Lat.P50ms), f(row.Lat.P99ms), f(row.Lat.MaxMs), row.Results)
	}
	return rows, nil
}

// saveProfile fetches a CPU profile of secs seconds from a pprof endpoint.
func saveProfile(ctx context.Context, debug string, secs int, path string) error {
	if debug == "" {
		return errors.New("no debug endpoint")
	}
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, fmt.Sprintf("%s/debug/pprof/profile?seconds=%d", debug, secs), nil)
	if err != nil {
		return err
	}
	resp, err := (&http.Client{Timeout: time.Duration(secs+30) * time.Second}).Do(req)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return fmt.Errorf("profile: %s", resp.Status)
	}
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		return err
	}
	return os.WriteFile(path, b, 0o644)
}

// searchSends runs the send windows: alone, with searchers, alone.
func searchSends(ctx context.Context, sc searchConfig, w *searchWorld, srv *server, hc *http.Client, out string, prog *progress) (*SearchSends, error) {
	res := &SearchSends{Senders: sc.senders, Searchers: sc.searchers, PauseMs: float64(sc.pause.Milliseconds()), WindowS: sc.window.Seconds()}
	// Senders: distinct users outside the searcher's direct partners,
	// each writing 1:1 to its own partners.
	n := len(w.Users)
	if sc.senders > n-1-searcherDirect {
		return nil, fmt.Errorf("-search-senders %d: at most %d with %d users", sc.senders, n-1-searcherDirect, n)
	}
	type sample struct{ end, d int64 }
	var (
		mu       sync.Mutex
		sent     []sample
		sendErrs atomic.Int64
		count    atomic.Int64
	)
	sctx, stopSend := context.WithCancel(ctx)
	defer stopSend()
	stamp := strconv.FormatInt(time.Now().UnixNano(), 36)
	var wg sync.WaitGroup
	var firstErr atomic.Value
	for s := range sc.senders {
		from := 1 + searcherDirect + s*(n-1-searcherDirect)/sc.senders
		wg.Go(func() {
			r := rand.New(rand.NewPCG(searchSeed^0xabc, uint64(s)))
			auth := "Bearer " + w.Users[from].Token
			var local []sample
			defer func() { mu.Lock(); sent = append(sent, local...); mu.Unlock() }()
			for k := 0; sctx.Err() == nil; k++ {
				m := w.otherDirect(r, from)
				if m.from != from { // otherDirect may swap the sides; the sender is from
					m.from, m.to = m.to, m.from
				}
				body, _ := json.Marshal(map[string]string{"to": w.Users[m.to].ID.String(), "content": m.content, "client_msg_id": "ss-" + stamp + "-" + strconv.Itoa(s) + "-" + strconv.Itoa(k)})
				t0 := nowNanos()
				err := (&filler{}).send(sctx, hc, srv.base+"/v1/messages", auth, body)
				if err != nil {
					if sctx.Err() != nil {
						return
					}
					sendErrs.Add(1)
					firstErr.CompareAndSwap(nil, err)
					time.Sleep(100 * time.Millisecond)
					continue
				}
				t1 := nowNanos()
				count.Add(1)
				local = append(local, sample{t1, t1 - t0})
			}
		})
	}

	// Searchers, started for the middle window.
	type hit struct {
		q   int
		end int64
		d   int64
	}
	var (
		hits    []hit
		hmu     sync.Mutex
		searchN atomic.Int64
		swg     sync.WaitGroup
	)
	startSearchers := func(ctx context.Context) {
		for k := range sc.searchers {
			swg.Go(func() {
				var local []hit
				defer func() { hmu.Lock(); hits = append(hits, local...); hmu.Unlock() }()
				for i := k; ctx.Err() == nil; i++ {
					qi := i % len(searchQueries)
					t0 := nowNanos()
					_, _, err := timedSearch(ctx, hc, searchURL(srv.base, searchQueries[qi].Q, ""), w.Users[0].Token)
					if err != nil {
						if ctx.Err() != nil {
							return
						}
						firstErr.CompareAndSwap(nil, err)
						continue
					}
					t1 := nowNanos()
					searchN.Add(1)
					local = append(local, hit{qi, t1, t1 - t0})
					if sc.pause > 0 {
						select {
						case <-time.After(sc.pause):
						case <-ctx.Done():
						}
					}
				}
			})
		}
	}

	settle := min(2*time.Second, sc.window/4)
	type span struct{ from, to int64 }
	var spans []span
	measure := func(label string) (SendWindow, error) {
		prog.stage(fmt.Sprintf("sends, %s: %d senders for %s", label, sc.senders, sc.window), sc.window.Seconds()+settle.Seconds())
		select {
		case <-time.After(settle):
		case <-ctx.Done():
			return SendWindow{}, ctx.Err()
		}
		var prof chan error
		if sc.profile {
			prof = make(chan error, 1)
			name := "cpu-sends-" + strings.ReplaceAll(label, " ", "-") + ".pprof"
			go func() { prof <- saveProfile(ctx, srv.debug, int(sc.window.Seconds()), filepath.Join(out, name)) }()
		}
		p0, _ := sampleProc(srv.pid())
		c0, s0, e0, q0 := selfCPU(), count.Load(), sendErrs.Load(), searchN.Load()
		from := nowNanos()
		t0 := time.Now()
		select {
		case <-time.After(sc.window):
		case <-ctx.Done():
			return SendWindow{}, ctx.Err()
		}
		el := time.Since(t0)
		p1, _ := sampleProc(srv.pid())
		c1, s1, e1, q1 := selfCPU(), count.Load(), sendErrs.Load(), searchN.Load()
		spans = append(spans, span{from, nowNanos()})
		win := SendWindow{Label: label, Sends: s1 - s0, SendsPerS: round(float64(s1-s0)/el.Seconds(), 0), Errors: e1 - e0, Searches: q1 - q0,
			ServerCPU: round(100*(p1.cpu-p0.cpu).Seconds()/el.Seconds(), 1), LoadCPU: round(100*(c1-c0).Seconds()/el.Seconds(), 1)}
		_, _, _, win.LoadAvg = machine()
		if prof != nil {
			if err := <-prof; err != nil {
				prog.log("CPU profile of the %s window: %v", label, err)
			}
		}
		prog.log("sends %-16s %s sends/s (server CPU %s %%, load generator %s %%)%s", label, f(win.SendsPerS), f(win.ServerCPU), f(win.LoadCPU),
			map[bool]string{true: fmt.Sprintf(", %d searches", win.Searches), false: ""}[win.Searches > 0])
		return win, nil
	}
	var err error
	var win SendWindow
	if win, err = measure("alone"); err == nil {
		res.Windows = append(res.Windows, win)
		qctx, stopSearch := context.WithCancel(ctx)
		startSearchers(qctx)
		win, err = measure("with searches")
		stopSearch()
		swg.Wait()
		if err == nil {
			res.Windows = append(res.Windows, win)
			if win, err = measure("alone again"); err == nil {
				res.Windows = append(res.Windows, win)
			}
		}
	}
	stopSend()
	wg.Wait()
	if err != nil {
		return res, err
	}
	if e := firstErr.Load(); e != nil {
		prog.log("first error during the send windows: %v", e)
	}
	// Latencies per window, by the end time of each request.
	for i := range res.Windows {
		var l []int64
		for _, s := range sent {
			if s.end >= spans[i].from && s.end < spans[i].to {
				l = append(l, s.d)
			}
		}
		res.Windows[i].Lat = latStat(l)
	}
	var all []int64
	per := make([][]int64, len(searchQueries))
	for _, h := range hits {
		if h.end >= spans[1].from && h.end < spans[1].to {
			all = append(all, h.d)
			per[h.q] = append(per[h.q], h.d)
		}
	}
	res.SearchAll = latStat(all)
	res.SearchPerS = round(float64(len(all))/(float64(spans[1].to-spans[1].from)/1e9), 1)
	for i, q := range searchQueries {
		res.Searches = append(res.Searches, SearchUnder{Q: q.Q, Lat: latStat(per[i])})
	}
	alone := (res.Windows[0].SendsPerS + res.Windows[2].SendsPerS) / 2
	if alone > 0 {
		res.Ratio = round(res.Windows[1].SendsPerS/alone, 3)
	}
	return res, nil
}

// ---- the report ----

func writeSearch(dir string, rep SearchReport) error {
	b, err := json.MarshalIndent(rep, "", "  ")
	if err != nil {
		return err
	}
	if err := os.WriteFile(filepath.Join(dir, "search.json"), append(b, '\n'), 0o644); err != nil {
		return err
	}
	return os.WriteFile(filepath.Join(dir, "search.md"), []byte(searchMarkdown(rep)), 0o644)
}

// The targets.
const (
	searchP99Target   = 50.0 // ms
	searchSendsTarget = 0.9
)

func searchMarkdown(rep SearchReport) string {
	var b strings.Builder
	p := func(format string, args ...any) { fmt.Fprintf(&b, format, args...) }
	m, fl, ix, wd := rep.Meta, rep.Fill, rep.Index, rep.World
	p("# chatgate search probe\n\n")
	p("`%s`, %s, %s s. Machine: %s, %d cores, %s GiB RAM, Linux %s, %s; load average at start %s.\n\n",
		m.Command, m.Date, f(m.DurationS), m.CPU, m.Cores, f(m.MemoryGiB), m.Kernel, m.GoVersion, m.LoadAvg)
	if len(m.Errors) > 0 {
		p("**Errors:** %s\n\n", strings.Join(m.Errors, "; "))
	}
	p("## The history\n\n")
	p("%s messages (%s 1:1, %s group; %s English, %s Korean, %s Japanese; %s characters on average, %s inbox entries) among %d users and %d groups",
		commas(fl.Messages), commas(fl.Direct), commas(fl.Group), commas(fl.English), commas(fl.Korean), commas(fl.Japanese),
		f(float64(fl.ContentChars)/float64(max(fl.Messages, 1))), commas(fl.InboxEntries), fl.Users, fl.Groups)
	p(". The searcher belongs to %d conversations (%d direct, %d groups of %s members) holding %s messages (%s %%).",
		wd.Conversations, wd.Direct, wd.Groups, intsList(wd.GroupSizes), commas(wd.SearcherMessages), f(100*float64(wd.SearcherMessages)/float64(max(fl.Messages, 1))))
	if m.Reused {
		p(" The fill was kept from an earlier run (`-search-data`); its figures are that run's.")
	}
	if m.NodeArgs != "" {
		p(" The node ran with `%s`.", m.NodeArgs)
	}
	p("\n\n| | |\n|---|---:|\n")
	p("| fill: users, devices, groups | %s s |\n", f(fl.UsersS))
	p("| fill: messages appended (%d goroutines, in process, durable group commits) | %s s, **%s appends/s** |\n", fl.Appenders, f(fl.FillS), f(fl.AppendsPerS))
	p("| indexed while the appends ran (middle 60 %% of the fill) | **%s messages/s** |\n", f(ix.DuringFillPerS))
	p("| not yet indexed when the appends ended | %s messages |\n", commas(ix.BacklogAtEnd))
	if ix.BacklogAtEnd >= 10_000 {
		p("| indexer alone, catching up (until WaitIndexed returned) | %s s, **%s messages/s** |\n", f(ix.CatchUpS), f(ix.CatchUpPerS))
	} else {
		p("| indexer alone, catching up (until WaitIndexed returned) | %s s: the indexer kept pace with the appends, nothing to time alone |\n", strconv.FormatFloat(ix.CatchUpS, 'f', 2, 64))
	}
	p("| first append → everything indexed | %s s (%s messages/s) |\n", f(ix.AppendToIdxS), f(ix.IndexedPerSAll))
	p("| index on disk (postings + mentions, `IndexBytes` after close/reopen) | %s MiB, **%s B per message** |\n", f(mib(ix.IndexBytes)), f(ix.IndexPerMsg))
	p("| messages on disk (the same estimate) | %s MiB, %s B per message |\n", f(mib(ix.MessageBytes)), f(ix.MessagesPerMsg))
	p("| index compacted to the last level (a copy) | %s MiB, **%s B per message** (messages %s B) |\n", f(mib(ix.IndexBytesCompacted)), f(ix.IndexPerMsgCompacted), f(ix.MsgPerMsgCompacted))
	p("| data directory (`du`: file sizes; blocks) | %s MiB (%s B per message); %s MiB allocated |\n", f(mib(ix.DataBytes)), f(ix.DataPerMsg), f(mib(ix.DataAlloc)))
	p("| history/ as it stands; compacted | %s MiB; %s MiB (compaction %s s) |\n", f(mib(ix.HistoryBytes)), f(mib(ix.HistoryBytesCompacted)), f(ix.CompactS))
	p("\nLSM as the node found it: %s.\n\n", ix.LSM)

	p("## Search latency\n\nThe searcher's `GET /v1/search?q=…&limit=20`, one request at a time over keep-alive HTTP on loopback, %d timed after %d warm-up requests; "+
		"the first request is the first of its kind after the node started (the node's block cache empty for the first query, then holding what the queries before read; the kernel's page cache warm). "+
		"Matches: messages of the searcher's conversations that hold every term.\n\n", m.Samples, m.Warmup)
	p("| query | q | p50 ms | p99 ms | max ms | first request ms | results on the page | matches | bad results / errors |\n|---|---|---:|---:|---:|---:|---:|---:|---:|\n")
	for _, r := range rep.Queries {
		more := ""
		if r.HasMore {
			more = " + more"
		}
		mt := "–"
		if r.Conv == "" {
			mt = commas(int64(r.Matches))
		}
		p("| %s | `%s` | %s | %s | %s | %s | %d%s | %s | %d / %d |\n", r.Name, r.Q, f(r.Lat.P50ms), f(r.Lat.P99ms), f(r.Lat.MaxMs), f(r.ColdMs), r.Results, more, mt, r.Bad, r.Errors)
	}
	if s := rep.Sends; s != nil && len(s.Windows) == 3 {
		pace := "no pause"
		if s.PauseMs > 0 {
			pace = fmt.Sprintf("each pausing %s ms after each search", f(s.PauseMs))
		}
		p("\n## Sends with and without searches\n\n%d HTTP senders (`POST /v1/messages`, 1:1 among other users, as fast as answered) for %s s alone, then with %d searchers looping over the queries above (%s), then alone again.\n\n",
			s.Senders, f(s.WindowS), s.Searchers, pace)
		p("| window | sends/s | send p50 / p99 ms | searches/s | server CPU %% | load generator CPU %% | load average after |\n|---|---:|---:|---:|---:|---:|---|\n")
		for _, w := range s.Windows {
			sp := "–"
			if w.Searches > 0 {
				sp = f(float64(w.Searches) / s.WindowS)
			}
			p("| %s | %s | %s | %s | %s | %s | %s |\n", w.Label, f(w.SendsPerS), lat(w.Lat), sp, f(w.ServerCPU), f(w.LoadCPU), w.LoadAvg)
		}
		p("\nSends with searches: **%s %%** of the mean of the two windows alone. Search latency meanwhile (all queries): p50 %s ms, p99 %s ms, max %s ms, %s searches/s.\n\n",
			f(100*s.Ratio), f(s.SearchAll.P50ms), f(s.SearchAll.P99ms), f(s.SearchAll.MaxMs), f(s.SearchPerS))
		p("| query | p50 ms | p99 ms | max ms | n |\n|---|---:|---:|---:|---:|\n")
		for _, q := range s.Searches {
			p("| `%s` | %s | %s | %s | %d |\n", q.Q, f(q.Lat.P50ms), f(q.Lat.P99ms), f(q.Lat.MaxMs), q.Lat.N)
		}
	}
	p("\n## Targets\n\n| target | measured | met |\n|---|---|---|\n")
	for _, v := range searchTargets(rep) {
		p("| %s | %s | %s |\n", v.target, v.measured, v.met)
	}
	return b.String()
}

func searchTargets(rep SearchReport) []verdict {
	var v []verdict
	for _, r := range rep.Queries {
		if r.Conv != "" || (r.Q != "채팅" && r.Q != "meeting") {
			continue
		}
		v = append(v, verdict{fmt.Sprintf("p99 ≤ 50 ms, `%s` (%s), %s messages", r.Q, r.Name, commas(rep.Fill.Messages)),
			fmt.Sprintf("p99 %s ms (p50 %s ms), %d results per page", f(r.Lat.P99ms), f(r.Lat.P50ms), r.Results), yes(r.Lat.N > 0 && r.Lat.P99ms <= searchP99Target)})
	}
	if s := rep.Sends; s != nil && len(s.Windows) == 3 {
		v = append(v, verdict{"sends keep ≥ 90 % of their rate while searches run",
			fmt.Sprintf("%s sends/s with %d searchers vs %s and %s alone: %s %%", f(s.Windows[1].SendsPerS), s.Searchers, f(s.Windows[0].SendsPerS), f(s.Windows[2].SendsPerS), f(100*s.Ratio)),
			yes(s.Ratio >= searchSendsTarget)})
	}
	return v
}

func intsList(xs []int) string {
	var s []string
	for _, x := range xs {
		s = append(s, strconv.Itoa(x))
	}
	return strings.Join(s, ", ")
}
