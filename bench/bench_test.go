package main

import (
	"bytes"
	"context"
	"encoding/csv"
	"encoding/json"
	"encoding/xml"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// TestQuickBench runs `bench -quick` end to end into a temporary
// directory and checks that every file is there and sane, so the tool
// cannot rot. The bench and chatgate are built without -race and run as
// processes: the bench is a load generator, and under the race detector
// it would measure the detector. Figures are not judged here (the
// machine may be busy); shapes and invariants are.
func TestQuickBench(t *testing.T) {
	if runtime.GOOS != "linux" {
		t.Fatal("the bench reads /proc: it runs on Linux only")
	}
	if testing.Short() {
		t.Skip("-short: the quick bench takes about 30 s")
	}
	benchBin, chatgateBin := binaries(t)

	out := filepath.Join(t.TempDir(), "out")
	ctx, cancel := context.WithTimeout(context.Background(), 150*time.Second)
	defer cancel()
	// -prefill: the node holds history before the first measurement, and
	// every connection resumes from its user's inbox head.
	cmd := exec.CommandContext(ctx, benchBin, "-quick", "-prefill", "2000", "-out", out, "-chatgate", chatgateBin, "-centrifugo", "")
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	cmd.WaitDelay = 10 * time.Second
	start := time.Now()
	err := cmd.Run()
	t.Logf("bench -quick took %s", time.Since(start).Round(100*time.Millisecond))
	require.NoError(t, err, "bench -quick failed:\n%s", stderr.String())
	assert.Contains(t, stderr.String(), "done", "the progress output ends with done")

	// results.json: one object per transport × scenario.
	var rs []Result
	readJSON(t, filepath.Join(out, "results.json"), &rs)
	var raw []map[string]any
	readJSON(t, filepath.Join(out, "results.json"), &raw)
	for _, o := range raw {
		for _, k := range []string{"transport", "scenario", "p50_ms", "p99_ms", "msgs_per_s", "bytes_per_msg", "idle_bytes_per_conn", "cpu_us_per_msg"} {
			assert.Contains(t, o, k)
		}
	}
	scenarios := []string{"idle", "latency_100", "latency_1000", "throughput", "fanout", "wire", "cpu"}
	for _, tr := range []string{"websocket", "sse", "longpolling", "polling"} {
		for _, sc := range scenarios {
			r := find(rs, tr, sc)
			if !assert.NotNil(t, r, "%s %s row", tr, sc) {
				continue
			}
			assert.Equal(t, "chatgate", r.System)
			switch sc {
			case "idle":
				assert.Equal(t, 100, r.IdleConns, tr)
				assert.Greater(t, r.IdleBytesPerConn, 0.0, "%s: memory per idle connection", tr)
				assert.Greater(t, r.IdleGoroutinesPerConn, 0.0, "%s: goroutines per idle connection", tr)
			case "throughput", "fanout":
				assert.NotEmpty(t, r.Steps, "%s %s steps", tr, sc)
				fallthrough
			default:
				assert.Greater(t, r.MsgsPerS, 0.0, "%s %s msgs_per_s", tr, sc)
				assert.Greater(t, r.P50ms, 0.0, "%s %s p50", tr, sc)
				assert.GreaterOrEqual(t, r.P99ms, r.P50ms, "%s %s p99 ≥ p50", tr, sc)
				assert.GreaterOrEqual(t, r.MaxMs, r.P99ms, "%s %s max ≥ p99", tr, sc)
				assert.Greater(t, r.Delivered, int64(0), "%s %s delivered", tr, sc)
				assert.Greater(t, r.FloorP50ms, 0.0, "%s %s latency floor", tr, sc)
			}
			if sc == "wire" {
				// Every delivered message carries at least its content
				// down and up, and the floor is never above the measure
				// by much (the floor is a lower bound of what the
				// protocol itself needs).
				assert.Greater(t, r.DownBytesPerMsg, float64(r.PayloadBytes), tr)
				assert.Greater(t, r.UpBytesPerMsg, float64(r.PayloadBytes), tr)
				assert.Greater(t, r.EventBytes, float64(r.PayloadBytes), tr)
				assert.Greater(t, r.FloorBytesPerMsg, 0.0, tr)
				assert.Greater(t, r.BytesVsFloor, 0.8, "%s: bytes vs floor", tr)
			}
			if sc == "latency_100" {
				assert.Greater(t, r.CPUusPerMsg, 0.0, "%s cpu per message", tr)
			}
		}
	}
	// Short polling waits for its poll: p50 is near half the interval
	// (500 ms in -quick), far above the streams'.
	if r := find(rs, "polling", "latency_100"); r != nil {
		assert.Greater(t, r.P50ms, 50.0)
		assert.Less(t, r.P99ms, 5000.0)
	}

	// results.csv: a header and the same rows.
	f, err := os.Open(filepath.Join(out, "results.csv"))
	require.NoError(t, err)
	defer f.Close()
	recs, err := csv.NewReader(f).ReadAll()
	require.NoError(t, err)
	require.Len(t, recs, len(rs)+1)
	assert.Equal(t, csvHeader, recs[0])

	// results.md: the tables.
	md, err := os.ReadFile(filepath.Join(out, "results.md"))
	require.NoError(t, err)
	for _, s := range []string{"## Targets", "## Latency", "## Throughput", "## Fan-out", "## Wire cost", "## Idle cost", "## Server CPU", "| WebSocket |", "| short polling |", "Not compared in this run"} {
		assert.Contains(t, string(md), s)
	}

	// chart.svg: well-formed SVG with a bar per transport and panel.
	svg, err := os.ReadFile(filepath.Join(out, "chart.svg"))
	require.NoError(t, err)
	assert.True(t, strings.HasPrefix(string(svg), "<svg "))
	dec := xml.NewDecoder(bytes.NewReader(svg))
	rects := 0
	for {
		tok, err := dec.Token()
		if errors.Is(err, io.EOF) {
			break
		}
		require.NoError(t, err, "chart.svg is not well-formed XML")
		if se, ok := tok.(xml.StartElement); ok && se.Name.Local == "rect" {
			rects++
		}
	}
	assert.GreaterOrEqual(t, rects, 6*4, "bars in chart.svg")

	// scaling.md: the capacity model, computed from the run.
	scaling, err := os.ReadFile(filepath.Join(out, "scaling.md"))
	require.NoError(t, err)
	assert.Contains(t, string(scaling), "## Nodes")
	assert.Contains(t, string(scaling), "## Storage, history kept forever")

	// -render rewrites the reports from results.json and meta.json.
	require.NoError(t, os.Remove(filepath.Join(out, "results.md")))
	b, err := exec.CommandContext(ctx, benchBin, "-render", out).CombinedOutput()
	require.NoError(t, err, "%s", b)
	md2, err := os.ReadFile(filepath.Join(out, "results.md"))
	require.NoError(t, err)
	assert.Equal(t, string(md), string(md2))

	var meta Meta
	readJSON(t, filepath.Join(out, "meta.json"), &meta)
	require.NotNil(t, meta.Store)
	assert.Greater(t, meta.Store.DirectFile, 0.0)
	assert.Greater(t, meta.Store.GroupFile, meta.Store.DirectFile)
	assert.True(t, meta.Quick)
	assert.Empty(t, meta.Errors)
	assert.Greater(t, meta.FsyncUs, 0.0)
	assert.Equal(t, int64(2000), meta.Prefill)
	assert.Greater(t, meta.PrefillRate, 0.0)
	assert.Contains(t, string(md), "Pre-filled node")
}

var (
	buildOnce sync.Once
	buildDir  string
	buildErr  error
)

// binaries builds the bench and chatgate once for every test that runs
// them, without -race: the bench is a load generator, and under the race
// detector it would measure the detector.
func binaries(t *testing.T) (benchBin, chatgateBin string) {
	t.Helper()
	buildOnce.Do(func() {
		if buildDir, buildErr = os.MkdirTemp("", "chatgate-bench-test-"); buildErr != nil {
			return
		}
		goBin, err := exec.LookPath("go")
		if err != nil {
			goBin = filepath.Join(runtime.GOROOT(), "bin", "go")
		}
		for out, pkg := range map[string]string{"bench": "./bench", "chatgate": "./cmd/chatgate"} {
			cmd := exec.Command(goBin, "build", "-o", filepath.Join(buildDir, out), pkg)
			cmd.Dir = ".."
			if b, err := cmd.CombinedOutput(); err != nil {
				buildErr = fmt.Errorf("go build %s: %v\n%s", pkg, err, b)
				return
			}
		}
	})
	require.NoError(t, buildErr)
	return filepath.Join(buildDir, "bench"), filepath.Join(buildDir, "chatgate")
}

func TestMain(m *testing.M) {
	code := m.Run()
	if buildDir != "" {
		os.RemoveAll(buildDir)
	}
	os.Exit(code)
}

// TestHistoryProbe runs the history probe end to end on a few thousand
// messages, two checkpoints and two binaries (the same one as -chatgate
// and -baseline), and checks that both files are there and every figure
// was measured.
func TestHistoryProbe(t *testing.T) {
	if runtime.GOOS != "linux" {
		t.Fatal("the bench reads /proc: it runs on Linux only")
	}
	benchBin, chatgateBin := binaries(t)
	out := filepath.Join(t.TempDir(), "out")
	ctx, cancel := context.WithTimeout(context.Background(), 120*time.Second)
	defer cancel()
	cmd := exec.CommandContext(ctx, benchBin, "-history", "3k", "-history-checkpoints", "1500", "-users", "20", "-group", "10",
		"-fill-group-share", "0.2", "-fill-senders", "32", "-history-samples", "20", "-history-window", "1s",
		"-chatgate", chatgateBin, "-baseline", chatgateBin, "-out", out)
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	cmd.WaitDelay = 10 * time.Second
	start := time.Now()
	err := cmd.Run()
	t.Logf("bench -history took %s", time.Since(start).Round(100*time.Millisecond))
	require.NoError(t, err, "bench -history failed:\n%s", stderr.String())
	assert.Contains(t, stderr.String(), "done", "the progress output ends with done")
	assert.Contains(t, stderr.String(), "filling to 3,000 messages")

	var rep HistoryReport
	readJSON(t, filepath.Join(out, "history.json"), &rep)
	assert.Equal(t, []int64{1500, 3000}, rep.Meta.Checkpoints)
	assert.Equal(t, 2, rep.Meta.Groups)
	assert.Empty(t, rep.Meta.Errors)
	require.Len(t, rep.Runs, 2)
	assert.Equal(t, "chatgate", rep.Runs[0].Name)
	assert.Equal(t, "baseline", rep.Runs[1].Name)
	for _, r := range rep.Runs {
		assert.Empty(t, r.Error)
		assert.Greater(t, r.FreshStartS, 0.0, r.Name)
		assert.Greater(t, r.SendsPerSFresh, 0.0, r.Name)
		assert.NotEmpty(t, r.Series, r.Name)
		require.Len(t, r.Points, 2, r.Name)
		for i, pt := range r.Points {
			what := fmt.Sprintf("%s at %d", r.Name, pt.Stored)
			assert.Equal(t, []int64{1500, 3000}[i], pt.Stored, what)
			assert.Equal(t, pt.Stored, pt.Direct+pt.Group, what)
			assert.Greater(t, pt.Group, int64(0), what)
			assert.Greater(t, pt.Direct, pt.Group, what)
			assert.Greater(t, pt.SendsPerSStart, 0.0, what)
			assert.Greater(t, pt.SendsPerSEnd, 0.0, what)
			assert.Greater(t, pt.EndVsFresh, 0.0, what)
			assert.Greater(t, pt.RSSServingMB, 1.0, what)
			assert.GreaterOrEqual(t, pt.PeakRSSMB, pt.RSSServingMB, what)
			assert.Greater(t, pt.RSSStartedMB, 1.0, what)
			assert.Greater(t, pt.RSSAfterRestartMB, 1.0, what)
			assert.Greater(t, pt.ShutdownS, 0.0, what)
			assert.Zero(t, pt.ExitCode, what)
			assert.Greater(t, pt.RestartS, 0.0, what)
			assert.Less(t, pt.RestartS, 30.0, what)
			assert.GreaterOrEqual(t, pt.FirstRequestS, pt.RestartS, what)
			assert.InDelta(t, pt.ShutdownS+pt.RestartS, pt.DownS, 0.002, what)
			assert.Greater(t, pt.DiskBytes, int64(100*pt.Stored), what)
			assert.Greater(t, pt.DiskBytesAfterRestart, int64(100*pt.Stored), what)
			assert.Greater(t, pt.BytesPerMsg, 100.0, what)
			for name, l := range map[string]LatStat{
				"history": pt.History, "resume from 0": pt.ResumeZero, "resume from head": pt.ResumeHead,
				"history cold": pt.HistoryCold, "resume from 0 cold": pt.ResumeZeroCold, "resume from head cold": pt.ResumeHeadCold,
			} {
				assert.Equal(t, 20, l.N, "%s: %s", what, name)
				assert.Greater(t, l.P50ms, 0.0, "%s: %s", what, name)
				assert.GreaterOrEqual(t, l.P99ms, l.P50ms, "%s: %s", what, name)
				assert.GreaterOrEqual(t, l.MaxMs, l.P99ms, "%s: %s", what, name)
			}
		}
		assert.Greater(t, r.Points[1].DiskBytesAfterRestart, r.Points[0].DiskBytesAfterRestart, "%s: disk grows with history", r.Name)
	}

	md, err := os.ReadFile(filepath.Join(out, "history.md"))
	require.NoError(t, err)
	for _, s := range []string{"# chatgate history probe", "## History probe", "## Restart and the restarted node", "## Fill and disk", "## Targets",
		"| chatgate | 1,500 |", "| chatgate | 3,000 |", "| baseline | 1,500 |", "| baseline | 3,000 |", "restart ≤ 1 s at any history size"} {
		assert.Contains(t, string(md), s)
	}
	// The table is printed at the end.
	assert.Contains(t, stdout.String(), "| baseline | 3,000 |")

	// -render rewrites history.md from history.json.
	require.NoError(t, os.Remove(filepath.Join(out, "history.md")))
	b, err := exec.CommandContext(ctx, benchBin, "-render", out).CombinedOutput()
	require.NoError(t, err, "%s", b)
	md2, err := os.ReadFile(filepath.Join(out, "history.md"))
	require.NoError(t, err)
	assert.Equal(t, string(md), string(md2))
}

func readJSON(t *testing.T, path string, v any) {
	t.Helper()
	b, err := os.ReadFile(path)
	require.NoError(t, err)
	require.NoError(t, json.Unmarshal(b, v), "%s", path)
}

// TestFloors checks the floor arithmetic on known sizes.
func TestFloors(t *testing.T) {
	assert.Equal(t, 2, wsHeader(125, false))
	assert.Equal(t, 4, wsHeader(126, false))
	assert.Equal(t, 8, wsHeader(200, true))
	assert.Equal(t, 10, wsHeader(1<<16, false))

	in := floorInput{transport: "websocket", host: "127.0.0.1:40000", sendBody: 200, event: 400}
	up, down := bytesFloor(in)
	msg := 400 - len(`{"type":"message","seq":,"message":}`) - seqLen
	sent := len(`{"type":"sent","client_msg_id":"","message":}`) + uuidLen + msg
	assert.Equal(t, float64(8+214), up)
	assert.Equal(t, float64(4+sent+2*(4+400)), down)

	// Every HTTP transport costs more than WebSocket per message.
	for _, tr := range []string{"sse", "longpolling"} {
		in.transport = tr
		u, d := bytesFloor(in)
		assert.Greater(t, u+d, up+down, tr)
	}
	// Short polling's floor falls as more messages share each poll.
	in.transport, in.users, in.window, in.poll = "polling", 100, 10*time.Second, 2*time.Second
	in.delivered = 1000
	u1, d1 := bytesFloor(in)
	in.delivered = 10000
	u2, d2 := bytesFloor(in)
	assert.Greater(t, u1+d1, u2+d2)

	p50, p99 := latencyFloor("polling", time.Millisecond, 2*time.Second)
	assert.Equal(t, time.Second+time.Millisecond, p50)
	assert.Equal(t, 1980*time.Millisecond+time.Millisecond, p99)
	p50, p99 = latencyFloor("websocket", time.Millisecond, 0)
	assert.Equal(t, time.Millisecond, p50)
	assert.Equal(t, time.Millisecond, p99)
}

// TestRecorder checks percentiles and windows.
func TestRecorder(t *testing.T) {
	r := newRecorder()
	// Times are relative to the process's start, so the window is set
	// relative to now (a test run alone starts near zero).
	now := nowNanos()
	r.from.Store(now - int64(time.Second))
	r.open.Store(true)
	for i := range 100 {
		r.deliver(now-int64(i+1)*int64(time.Millisecond), 10)
	}
	r.deliver(now-2*int64(time.Second), 10) // sent before the window: a straggler
	l := r.summary()
	assert.Equal(t, 100, l.n)
	assert.InDelta(t, 50*time.Millisecond, l.p50, float64(5*time.Millisecond))
	assert.InDelta(t, 99*time.Millisecond, l.p99, float64(5*time.Millisecond))
	assert.GreaterOrEqual(t, l.max, l.p99)
	assert.Equal(t, int64(101), r.inWindow.Load())
	assert.Equal(t, int64(1), r.early.Load())

	c := stamp(64)
	assert.Len(t, c, 64)
	ts, ok := unstamp(c)
	assert.True(t, ok)
	assert.LessOrEqual(t, ts, nowNanos())
	_, ok = unstamp("hello")
	assert.False(t, ok)
}
