package main

import (
	"bytes"
	"context"
	"encoding/csv"
	"encoding/xml"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"runtime"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"go.uber.org/goleak"
)

// The CI run is short and small; a real soak is the same test, longer:
//
//	go test -run TestSoak ./bench/ -soak.duration 10m -soak.users 200 -timeout 0
var (
	soakDuration = flag.Duration("soak.duration", 20*time.Second, "TestSoak: how long the traffic runs")
	soakUsers    = flag.Int("soak.users", 24, "TestSoak: users, spread over the four transports")
)

// TestSoak runs the soak probe in this process against a chatgate child
// process: a small population chatting over all four transports,
// dropping and resuming connections (some as new devices) every few
// seconds. The server's memory, goroutines and open files must level
// off and fall back once the clients leave, no acknowledged message may
// be lost or duplicated, and the probe must stop every goroutine it
// started. Figures are not judged against the clock: the verdict
// compares the run with itself.
func TestSoak(t *testing.T) {
	if runtime.GOOS != "linux" {
		t.Fatal("the soak probe reads /proc: it runs on Linux only")
	}
	if testing.Short() {
		t.Skip("-short: the soak takes about 30 s")
	}
	_, chatgateBin := binaries(t)
	defer goleak.VerifyNone(t, goleak.IgnoreCurrent())

	sc := soakConfig{
		dur: *soakDuration, users: *soakUsers, group: 8, groupShare: 0.2,
		sendEvery: 2 * time.Second, session: 4 * time.Second, away: 3 * time.Second,
		relogin: 0.25, warmup: 0.2, poll: 500 * time.Millisecond,
	}
	out := t.TempDir()
	var progLog bytes.Buffer
	prog := newProgress(&progLog, soakEstimate(sc, false))
	ctx, cancel := context.WithTimeout(context.Background(), sc.dur+3*time.Minute)
	defer cancel()
	rep, err := soakRun(ctx, sc, chatgateBin, out, "go test -run TestSoak ./bench/", prog)
	prog.finish()
	t.Logf("progress:\n%s", progLog.String())
	require.NoError(t, err)
	md, err := os.ReadFile(filepath.Join(out, "soak.md"))
	require.NoError(t, err)
	require.True(t, rep.Pass, "soak failed: %s\n\n%s", rep.failure(), md)

	c := rep.Counts
	assert.Positive(t, c.Acked, "messages acknowledged")
	assert.Equal(t, c.Sends, c.Acked+c.SendErrors)
	assert.Zero(t, c.Lost, "acknowledged messages missing from inboxes")
	assert.Zero(t, c.DupInbox, "messages twice in an inbox")
	assert.Zero(t, c.MissingLive, "messages that never reached a recipient's connection")
	assert.Zero(t, c.DupLive, "messages received twice")
	assert.Zero(t, c.EarlyEvents, "durable events at or below the cursor")
	assert.Positive(t, c.Expected)
	assert.GreaterOrEqual(t, c.InboxEntries, c.Expected)
	assert.GreaterOrEqual(t, c.Delivered+c.Echoes, c.Expected, "each expected delivery arrived live")
	assert.Positive(t, c.Reconnects, "reconnects")
	assert.Positive(t, c.Switches, "reconnects to another transport")
	assert.Positive(t, c.Relogins, "log-outs and log-ins as a new device")
	assert.Positive(t, c.TypingEvents, "typing events received")
	assert.Positive(t, c.Reads, "history reads")
	for i, n := range c.Sessions {
		assert.Positive(t, n, "connections over %s", []string{"websocket", "sse", "longpolling", "polling"}[i])
	}
	assert.Zero(t, rep.ExitCode, "the server's exit status after SIGTERM")

	// Every phase was sampled, with goroutine counts.
	phases := map[string]int{}
	for _, s := range rep.Samples {
		phases[s.Phase]++
		assert.GreaterOrEqual(t, s.Goroutines, 0, "goroutines at %.1f s", s.T)
		assert.Positive(t, s.RSS)
		assert.Positive(t, s.FDs)
	}
	for _, p := range []string{phaseIdle, phaseWarmup, phaseTraffic, phaseDrain} {
		assert.Positive(t, phases[p], "samples in phase %s", p)
	}
	assert.GreaterOrEqual(t, phases[phaseTraffic], 6)
	require.Len(t, rep.Checks, 5, "RSS, goroutines, open files, sockets, heap")
	assert.Positive(t, rep.LiveHeap[0], "live heap before the traffic")
	assert.Positive(t, rep.LiveHeap[1], "live heap after the clients left")
	require.Len(t, rep.Drain, 2)

	// The three files.
	for _, s := range []string{"# chatgate soak", "levels off: pass", "## Levels", "## No message lost", "| goroutines |", "soak.svg", "Live Go heap"} {
		assert.Contains(t, string(md), s)
	}
	f, err := os.Open(filepath.Join(out, "soak.csv"))
	require.NoError(t, err)
	defer f.Close()
	rows, err := csv.NewReader(f).ReadAll()
	require.NoError(t, err)
	require.Len(t, rows, len(rep.Samples)+1)
	assert.Equal(t, "t_s", rows[0][0])
	assert.Contains(t, rows[0], "rss_mib")
	assert.Contains(t, rows[0], "goroutines")
	assert.Contains(t, rows[0], "open_fds")
	svg, err := os.ReadFile(filepath.Join(out, "soak.svg"))
	require.NoError(t, err)
	requireXML(t, svg)
	assert.Equal(t, 7, strings.Count(string(svg), "<polyline"), "RSS, heap, goroutines, fds, sockets, devices, msgs/s")
}

// requireXML checks that b is well-formed XML.
func requireXML(t *testing.T, b []byte) {
	t.Helper()
	d := xml.NewDecoder(bytes.NewReader(b))
	for {
		_, err := d.Token()
		if errors.Is(err, io.EOF) {
			return
		}
		require.NoError(t, err)
	}
}

// TestJudgeSoak checks the verdict on made-up runs: flat levels with
// noise pass; steady growth of any judged series fails; so does a server
// that holds goroutines or sockets once every client has gone.
func TestJudgeSoak(t *testing.T) {
	// A run: 3 idle samples, 10 warm-up, 40 judged, 3 drain; level(i, s)
	// may change a sample.
	mk := func(level func(i int, s *soakSample)) []soakSample {
		var l []soakSample
		add := func(phase string, n int, busy bool) {
			for range n {
				i := len(l)
				s := soakSample{T: float64(i), Phase: phase, RSS: 60 << 20, Heap: 20 << 20, Goroutines: 30, Threads: 8, FDs: 25, Sockets: 5}
				if busy {
					noise := []int{0, 3, -2, 5, 1, -4, 2}[i%7]
					s.RSS, s.Heap = int64(120+noise)<<20, int64(50+noise)<<20
					s.Goroutines, s.FDs, s.Sockets = 400+noise, 230+noise, 210+noise
				}
				if level != nil {
					level(i, &s)
				}
				l = append(l, s)
			}
		}
		add(phaseIdle, 3, false)
		add(phaseWarmup, 10, true)
		add(phaseTraffic, 40, true)
		add(phaseDrain, 3, false)
		return l
	}
	checks, drain, pass, err := judgeSoak(mk(nil))
	require.NoError(t, err)
	assert.True(t, pass)
	require.Len(t, checks, 5)
	assert.Equal(t, "RSS", checks[0].Name)
	assert.InDelta(t, 60, checks[0].Idle, 0.01)
	assert.InDelta(t, 0, checks[0].growth(), 1.01)
	assert.InDelta(t, 0.2*checks[0].Med1+16, checks[0].Tolerance, 0.1)
	assert.InDelta(t, 121, checks[0].Med1, 2)
	assert.Equal(t, 30.0, drain[0].Idle)
	assert.Equal(t, 30.0, drain[0].After)

	// Three goroutines more every sample: 60 from the first half's median
	// to the second's, over 5 % + 10.
	_, _, pass, err = judgeSoak(mk(func(i int, s *soakSample) {
		if s.Phase == phaseWarmup || s.Phase == phaseTraffic {
			s.Goroutines += 3 * i
		}
	}))
	require.NoError(t, err)
	assert.False(t, pass, "goroutines grow")

	// Two file descriptors more every sample.
	checks, _, pass, err = judgeSoak(mk(func(i int, s *soakSample) {
		if s.Phase == phaseTraffic {
			s.FDs += 2 * i
		}
	}))
	require.NoError(t, err)
	assert.False(t, pass, "open files grow")
	assert.False(t, checks[2].Pass)
	assert.True(t, checks[1].Pass)

	// RSS up 4 MiB a sample during the judged window: 80 MiB from the
	// first half's median to the second's, over 20 % + 16 MiB.
	_, _, pass, err = judgeSoak(mk(func(i int, s *soakSample) {
		if s.Phase == phaseTraffic {
			s.RSS += int64(i) << 20 * 4
		}
	}))
	require.NoError(t, err)
	assert.False(t, pass, "RSS grows")

	// Bursts in the second half (logins hashing passwords at once, a
	// reconnect storm) lift peaks, not the level.
	checks, _, pass, err = judgeSoak(mk(func(i int, s *soakSample) {
		if s.Phase == phaseTraffic && i%9 == 0 && i > 35 {
			s.RSS += 150 << 20
			s.Goroutines += 100
			s.FDs += 60
		}
	}))
	require.NoError(t, err)
	assert.True(t, pass, "bursts")
	assert.InDelta(t, 275, checks[0].Peak, 5)

	// The heap is shown, not judged.
	_, _, pass, err = judgeSoak(mk(func(i int, s *soakSample) {
		if s.Phase == phaseTraffic {
			s.Heap += int64(i) << 20 * 2
		}
	}))
	require.NoError(t, err)
	assert.True(t, pass, "heap alone")

	// Goroutines held after the clients left.
	_, drain, pass, err = judgeSoak(mk(func(i int, s *soakSample) {
		if s.Phase == phaseDrain {
			s.Goroutines = 90
		}
	}))
	require.NoError(t, err)
	assert.False(t, pass, "goroutines held")
	assert.False(t, drain[0].Pass)

	// No goroutine count: threads are judged instead.
	checks, _, pass, err = judgeSoak(mk(func(i int, s *soakSample) { s.Goroutines, s.Heap = -1, -1 }))
	require.NoError(t, err)
	assert.True(t, pass)
	assert.Len(t, checks, 4, "no heap row")
	assert.Contains(t, checks[1].Name, "threads")

	// Too short to judge.
	_, _, _, err = judgeSoak(mk(nil)[:16])
	assert.Error(t, err)

	// The chart draws any of these.
	rep := &soakReport{Date: "2026-01-01T00:00:00Z", Samples: mk(nil), Cfg: soakConfig{users: 10, sample: time.Second}}
	rep.Checks, rep.Drain, rep.Pass, _ = judgeSoak(rep.Samples)
	requireXML(t, []byte(rep.chart()))
	assert.Contains(t, rep.markdown(), "levels off: pass")
	assert.Contains(t, fmt.Sprint(niceStep(0.3), niceStep(7), niceStep(120)), "0.5 10 200")
}
