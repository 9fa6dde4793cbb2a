package main

import (
	"bytes"
	"context"
	"encoding/json"
	"math/rand/v2"
	"os"
	"path/filepath"
	"runtime"
	"testing"
	"time"
	"unicode/utf8"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/chatgate/chatgate/core"
)

// TestSearchProbe runs the search probe small (20,000 messages, short
// windows) against a chatgate child process and checks that every figure
// was measured and every answer was right: each query's first page holds
// exactly the searcher's matching messages the fill counted (up to the
// limit), nothing from another conversation. Times are not judged.
func TestSearchProbe(t *testing.T) {
	if runtime.GOOS != "linux" {
		t.Fatal("the bench reads /proc: it runs on Linux only")
	}
	if testing.Short() {
		t.Skip("-short: the search probe takes about 20 s")
	}
	_, chatgateBin := binaries(t)
	sc := searchConfig{n: 20_000, users: 300, appenders: 64, samples: 20, warmup: 3, senders: 8, searchers: 2, window: 2 * time.Second,
		data: filepath.Join(t.TempDir(), "kept")}
	require.NoError(t, sc.validate())
	out := t.TempDir()
	var progLog bytes.Buffer
	prog := newProgress(&progLog, searchEstimate(sc, false))
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	defer cancel()
	rep, err := searchRun(ctx, sc, chatgateBin, out, "go test -run TestSearchProbe ./bench/", prog)
	prog.finish()
	t.Logf("progress:\n%s", progLog.String())
	require.NoError(t, err)
	require.NotNil(t, rep)
	assert.Empty(t, rep.Meta.Errors)

	fl, ix := rep.Fill, rep.Index
	assert.Equal(t, sc.n, fl.Messages)
	assert.Equal(t, sc.n, fl.Direct+fl.Group)
	assert.Positive(t, fl.Group)
	assert.Positive(t, fl.English)
	assert.Positive(t, fl.Korean)
	assert.Positive(t, fl.Japanese)
	assert.Positive(t, fl.AppendsPerS)
	assert.Positive(t, ix.WholeFillPerS)
	assert.Positive(t, ix.IndexBytes)
	assert.Positive(t, ix.MessageBytes)
	assert.Positive(t, ix.IndexBytesCompacted)
	assert.Positive(t, ix.DataBytes)
	assert.NotEmpty(t, ix.LSM)

	w := rep.World
	assert.Equal(t, 50, w.Conversations)
	share := float64(w.SearcherMessages) / float64(fl.Messages)
	assert.True(t, share > 0.05 && share < 0.10, "the searcher's share of the messages: %.3f", share)

	require.Len(t, rep.Queries, 2*len(searchQueries))
	for _, r := range rep.Queries {
		assert.Zero(t, r.Errors, "%s: errors", r.Name)
		assert.Zero(t, r.Bad, "%s: results not the searcher's or without the query", r.Name)
		assert.Equal(t, sc.samples, r.Lat.N, "%s: timed requests", r.Name)
		if r.Conv == "" {
			// The first page is the searcher's matches, newest first, up to 20.
			assert.Equal(t, min(r.Matches, 20), r.Results, "%s: results on the page vs matches", r.Name)
			assert.Equal(t, r.Matches > 20, r.HasMore, "%s: has_more", r.Name)
			if r.Q != "zeppelin" {
				assert.Greater(t, r.Matches, 20, "%s: a common query matches many messages", r.Name)
			}
		}
	}

	s := rep.Sends
	require.NotNil(t, s)
	require.Len(t, s.Windows, 3)
	for _, win := range s.Windows {
		assert.Positive(t, win.SendsPerS, win.Label)
		assert.Zero(t, win.Errors, win.Label)
	}
	assert.Positive(t, s.Windows[1].Searches)
	assert.Positive(t, s.SearchAll.N)
	assert.Positive(t, s.Ratio)

	md, err := os.ReadFile(filepath.Join(out, "search.md"))
	require.NoError(t, err)
	assert.Contains(t, string(md), "## Targets")
	var back SearchReport
	b, err := os.ReadFile(filepath.Join(out, "search.json"))
	require.NoError(t, err)
	require.NoError(t, json.Unmarshal(b, &back))
	assert.Equal(t, rep.Fill.Messages, back.Fill.Messages)

	// The kept fill is found again, and a different one refused.
	again, err := loadSearchWorld(sc)
	require.NoError(t, err)
	require.NotNil(t, again)
	assert.Equal(t, rep.World.Matches, again.Matches)
	assert.Equal(t, rep.Index.IndexBytes, again.Index.IndexBytes)
	sc.n++
	_, err = loadSearchWorld(sc)
	assert.Error(t, err)
}

// TestSearchText checks the contents' shape: 20–200 characters, and the
// probe's queries as frequent as the docs say.
func TestSearchText(t *testing.T) {
	g := newTextGen()
	r := rand.New(rand.NewPCG(1, 2))
	const n = 20_000
	share := func(lang int, q string) float64 {
		terms := core.QueryTerms(q)
		k := 0
		for range n {
			c := g.content(r, lang)
			if l := utf8.RuneCountInString(c); l < 20 || l > 200 {
				t.Fatalf("content of %d characters: %q", l, c)
			}
			if holds(c, terms) {
				k++
			}
		}
		return float64(k) / n
	}
	for _, c := range []struct {
		lang   int
		q      string
		lo, hi float64
	}{
		{langEnglish, "the", 0.7, 0.95},
		{langEnglish, "meeting", 0.03, 0.12},
		{langEnglish, "meeting tomorrow", 0.01, 0.05},
		{langEnglish, "zeppelin", 0.00005, 0.001},
		{langKorean, "채팅", 0.04, 0.15},
		{langJapanese, "東京", 0.05, 0.18},
	} {
		got := share(c.lang, c.q)
		assert.True(t, got >= c.lo && got <= c.hi, "%q in %.4f of the messages, want %g..%g", c.q, got, c.lo, c.hi)
	}
}
