package main

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"math/rand/v2"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"slices"
	"strconv"
	"strings"
	"time"
)

// The history probe (-history N) measures what stored history costs a
// node: it fills a fresh node with N messages over HTTP and, at each
// checkpoint, measures memory while serving, disk, the latency of reads,
// then restarts the node (SIGTERM, start, timed) and measures memory and
// reads again. -baseline runs a second binary through the same probe in
// the same run. It talks to chatgate only over HTTP and by process, so it
// measures any store.

// HistoryReport is history.json.
type HistoryReport struct {
	Meta HistoryMeta  `json:"meta"`
	Runs []HistoryRun `json:"runs"`
}

// HistoryMeta describes the probe's run.
type HistoryMeta struct {
	Date         string   `json:"date"`
	CPU          string   `json:"cpu"`
	Cores        int      `json:"cores"`
	MemoryGiB    float64  `json:"memory_gib"`
	Kernel       string   `json:"kernel"`
	GoVersion    string   `json:"go_version"`
	LoadAvg      string   `json:"load_avg_at_start"`
	Messages     int64    `json:"messages"`
	Checkpoints  []int64  `json:"checkpoints"`
	Users        int      `json:"users"`
	Groups       int      `json:"groups"`
	GroupMembers int      `json:"group_members"`
	GroupShare   float64  `json:"group_share"`
	Partners     int      `json:"partners_per_user"`
	PayloadB     int      `json:"payload_bytes"`
	Senders      int      `json:"senders"`
	Samples      int      `json:"samples"`
	WindowS      float64  `json:"window_s"`
	DurationS    float64  `json:"duration_s"`
	Errors       []string `json:"errors,omitempty"`
}

// HistoryRun is one binary through the probe.
type HistoryRun struct {
	Name           string         `json:"name"`
	Binary         string         `json:"binary"`
	Source         string         `json:"source,omitempty"`  // how the binary was made, when the bench built it
	FreshStartS    float64        `json:"fresh_start_s"`     // exec → /healthz 200 on an empty data directory
	SendsPerSFresh float64        `json:"sends_per_s_fresh"` // the first window of the fill
	Points         []HistoryPoint `json:"checkpoints"`
	// Series is the fill, about once a second: messages stored, sends/s
	// over the last 2 s, RSS (a restart happens at each checkpoint).
	Series []FillPoint `json:"series"`
	Error  string      `json:"error,omitempty"`
}

// FillPoint is one moment of a fill.
type FillPoint struct {
	T         float64 `json:"t_s"` // since the fill began, restarts excluded
	Stored    int64   `json:"stored"`
	SendsPerS float64 `json:"sends_per_s"`
	RSSMB     float64 `json:"rss_mib"`
}

// HistoryPoint is what one binary measured at one checkpoint.
type HistoryPoint struct {
	Binary string `json:"binary"`
	Stored int64  `json:"stored_messages"`
	Direct int64  `json:"direct_messages"`
	Group  int64  `json:"group_messages"`

	// The fill that led here, on a fresh node (first checkpoint) or on
	// the node restarted at the previous checkpoint.
	FillS          float64 `json:"fill_s"`
	SendsPerSFresh float64 `json:"sends_per_s_fresh"` // the first window of the whole fill
	SendsPerSStart float64 `json:"sends_per_s_start"` // the first window of this fill
	SendsPerSEnd   float64 `json:"sends_per_s_end"`   // the last window before the checkpoint
	EndVsFresh     float64 `json:"end_vs_fresh"`
	SendRetries    int64   `json:"send_retries"`

	// While serving, right after the fill.
	RSSServingMB   float64 `json:"rss_serving_mb"`
	PeakRSSMB      float64 `json:"peak_rss_mb"` // VmHWM of the process since it started
	DiskBytes      int64   `json:"disk_bytes"`
	DiskAllocBytes int64   `json:"disk_alloc_bytes"`
	History        LatStat `json:"history"`
	ResumeZero     LatStat `json:"resume_from_0"`
	ResumeHead     LatStat `json:"resume_from_head"`

	// The restart.
	ShutdownS     float64 `json:"shutdown_s"`      // SIGTERM → exit
	ExitCode      int     `json:"exit_code"`       // after SIGTERM
	RestartS      float64 `json:"restart_s"`       // exec → /healthz 200
	FirstRequestS float64 `json:"first_request_s"` // exec → the first authenticated read answered
	DownS         float64 `json:"down_s"`          // SIGTERM → /healthz 200 again

	// The restarted node: memory when healthy and after the reads below,
	// disk after whatever the store does at start (compaction), and the
	// reads on its cold caches (the kernel's page cache stays warm).
	RSSStartedMB          float64 `json:"rss_started_mb"`
	RSSAfterRestartMB     float64 `json:"rss_after_restart_mb"`
	DiskBytesAfterRestart int64   `json:"disk_bytes_after_restart"`
	DiskAllocAfterRestart int64   `json:"disk_alloc_bytes_after_restart"`
	BytesPerMsg           float64 `json:"bytes_per_msg"` // disk after restart / stored messages
	HistoryCold           LatStat `json:"history_cold"`
	ResumeZeroCold        LatStat `json:"resume_from_0_cold"`
	ResumeHeadCold        LatStat `json:"resume_from_head_cold"`
}

// LatStat summarises the latency of one kind of request.
type LatStat struct {
	N     int     `json:"n"`
	P50ms float64 `json:"p50_ms"`
	P99ms float64 `json:"p99_ms"`
	MaxMs float64 `json:"max_ms"`
}

func latStat(l []int64) LatStat {
	s := summarize(l)
	return LatStat{N: s.n, P50ms: ms(s.p50), P99ms: ms(s.p99), MaxMs: ms(s.max)}
}

func mib(b int64) float64 { return round(float64(b)/(1<<20), 1) }

// historyWait bounds a start and a stop of a node in the probe: a store
// that loads its history into memory takes long at millions of messages,
// and that is what is measured.
const historyWait = 2 * time.Hour

// defaultCheckpoints is 1 M and n (n alone when n ≤ 1 M).
func defaultCheckpoints(n int64) []int64 {
	if n <= 1_000_000 {
		return []int64{n}
	}
	return []int64{1_000_000, n}
}

// historyEstimate is the expected duration of the probe in seconds, for
// the progress bar.
func historyEstimate(cfg config, bins int) float64 {
	const rate = 8000 // sends/s, a guess: the fill stages advance by messages stored
	per := 1 + float64(cfg.users)*0.03 + float64(cfg.users/cfg.group)*0.05
	prev := int64(0)
	for _, cp := range cfg.checkpoints {
		per += float64(cp-prev)/rate + 2*probeEstimate(cfg) + restartEstimate(cp)
		prev = cp
	}
	total := float64(bins) * per
	if cfg.chatgateBin == "" {
		total += 20
	}
	return total
}

func probeEstimate(cfg config) float64     { return 1 + float64(cfg.histSamples)*0.012 }
func restartEstimate(stored int64) float64 { return 1 + float64(stored)/200_000 }

// runHistory is the history probe. The table goes to stdout, progress to
// stderr.
func runHistory(ctx context.Context, cfg config, stdout, stderr io.Writer) error {
	began := time.Now()
	if _, err := raiseNoFile(); err != nil {
		return fmt.Errorf("raise open-files limit: %w", err)
	}
	logDir := filepath.Join(cfg.out, "logs")
	if err := os.MkdirAll(logDir, 0o755); err != nil {
		return err
	}
	work, err := os.MkdirTemp("", "chatgate-history-")
	if err != nil {
		return err
	}
	defer os.RemoveAll(work)

	type bin struct{ name, path, source string }
	var bins []bin
	if cfg.baseline != "" {
		if st, err := os.Stat(cfg.baseline); err != nil || !st.Mode().IsRegular() {
			return fmt.Errorf("-baseline %s: not a file (scripts/build-release REV OUT builds one)", cfg.baseline)
		}
	}
	nBins := 1
	if cfg.baseline != "" {
		nBins = 2
	}
	prog := newProgress(stderr, historyEstimate(cfg, nBins))
	defer func() {
		if prog != nil {
			prog.finish()
		}
	}()
	candidate, source := cfg.chatgateBin, ""
	if candidate == "" {
		prog.stage("building chatgate", 20)
		if candidate, err = buildChatgate(ctx, work); err != nil {
			return err
		}
		source = "built from the working tree"
		if d := describeTree(ctx); d != "" {
			source += " (" + d + ")"
		}
	}
	bins = append(bins, bin{"chatgate", candidate, source})
	if cfg.baseline != "" {
		bins = append(bins, bin{"baseline", cfg.baseline, ""})
	}

	rep := HistoryReport{Meta: HistoryMeta{
		Date: time.Now().UTC().Format(time.RFC3339), Cores: runtime.NumCPU(), GoVersion: runtime.Version(),
		Messages: cfg.history, Checkpoints: cfg.checkpoints, Users: cfg.users, Groups: cfg.users / cfg.group,
		GroupMembers: cfg.group, GroupShare: cfg.fillShare, Partners: min(fillPartners, cfg.users-1),
		PayloadB: cfg.payload, Senders: cfg.fillSenders, Samples: cfg.histSamples, WindowS: cfg.histWindow.Seconds(),
	}}
	rep.Meta.CPU, rep.Meta.MemoryGiB, rep.Meta.Kernel, rep.Meta.LoadAvg = machine()
	if cfg.fillShare == 0 {
		rep.Meta.Groups = 0
	}
	h := &historyProbe{cfg: cfg, prog: prog, work: work, logDir: logDir}
	// Written at each checkpoint, so a run of hours shows what it has
	// measured so far and keeps it if it fails later.
	h.save = func(partial HistoryRun) {
		r := rep
		r.Runs = append(slices.Clone(rep.Runs), partial)
		r.Meta.DurationS = round(time.Since(began).Seconds(), 1)
		if err := writeHistory(cfg.out, r); err != nil {
			prog.log("writing history.json: %v", err)
		}
	}
	for _, b := range bins {
		if ctx.Err() != nil {
			break
		}
		run, err := h.run(ctx, b.name, b.path, b.source)
		if err != nil {
			run.Error = err.Error()
			rep.Meta.Errors = append(rep.Meta.Errors, fmt.Sprintf("%s: %v", b.name, err))
			prog.log("%s: %v", b.name, err)
		}
		rep.Runs = append(rep.Runs, run)
		rep.Meta.DurationS = round(time.Since(began).Seconds(), 1)
		if err := writeHistory(cfg.out, rep); err != nil {
			return err
		}
	}
	prog.finish()
	prog = nil
	fmt.Fprint(stdout, historyTables(rep))
	fmt.Fprintf(stderr, "history.json and history.md in %s (%s)\n", cfg.out, time.Since(began).Round(time.Second))
	if ctx.Err() != nil {
		return ctx.Err()
	}
	if len(rep.Meta.Errors) > 0 {
		return fmt.Errorf("%d binar(ies) failed: %s", len(rep.Meta.Errors), strings.Join(rep.Meta.Errors, "; "))
	}
	return nil
}

// describeTree is `git describe --always --dirty` of the module's work
// tree, or "" if git cannot say.
func describeTree(ctx context.Context) string {
	root, err := moduleRoot()
	if err != nil {
		return ""
	}
	cmd := exec.CommandContext(ctx, "git", "describe", "--always", "--dirty")
	cmd.Dir = root
	b, err := cmd.Output()
	if err != nil {
		return ""
	}
	return strings.TrimSpace(string(b))
}

// historyProbe runs one binary at a time through the probe.
type historyProbe struct {
	cfg          config
	prog         *progress
	work, logDir string
	save         func(partial HistoryRun) // the report so far, with this run
}

// run probes one binary on a fresh data directory, which it removes at
// the end. The run holds what was measured even when err is not nil.
func (h *historyProbe) run(ctx context.Context, name, bin, source string) (run HistoryRun, err error) {
	cfg := h.cfg
	run.Name, run.Binary, run.Source = name, bin, source
	if abs, err := filepath.Abs(bin); err == nil {
		run.Binary = abs
	}
	dir := filepath.Join(h.work, "data-"+name)
	_ = os.RemoveAll(dir)
	defer os.RemoveAll(dir) // millions of messages are gigabytes
	logPath := filepath.Join(h.logDir, "chatgate-history-"+name+".log")
	if err := os.WriteFile(logPath, nil, 0o644); err != nil {
		return run, err
	}
	// Only the flags every chatgate release understands.
	start := func() (*server, error) {
		addr, err := freeAddr()
		if err != nil {
			return nil, err
		}
		return launch("chatgate ("+name+")", bin, []string{"-addr", addr, "-data", dir, "-node-id", "1", "-log-level", "warn"},
			"http://"+addr, "/healthz", "", logPath, historyWait, 2*time.Millisecond)
	}
	h.prog.stage(name+" · starting on an empty data directory", 1)
	srv, err := start()
	if err != nil {
		return run, err
	}
	defer func() {
		if _, serr := srv.stopWithin(historyWait); serr != nil && err == nil {
			err = serr
		}
	}()
	run.FreshStartS = round(srv.healthy.Sub(srv.started).Seconds(), 3)

	nGroups := cfg.users / cfg.group
	if cfg.fillShare == 0 {
		nGroups = 0
	}
	h.prog.stage(fmt.Sprintf("%s · signing up %d users, %d groups of %d", name, cfg.users, nGroups, cfg.group), float64(cfg.users)*0.03+float64(nGroups)*0.05)
	users, err := signupUsers(ctx, srv.base, "bench", cfg.users, func(done int) {
		h.prog.advance(float64(done) / float64(cfg.users))
		h.prog.note(fmt.Sprintf("%d/%d signed up", done, cfg.users))
	})
	if err != nil {
		return run, err
	}
	groups := make([]string, nGroups)
	for g := range groups {
		if groups[g], err = createGroup(ctx, srv.base, fmt.Sprintf("history %d", g), users[g*cfg.group:(g+1)*cfg.group]); err != nil {
			return run, err
		}
	}
	fl := newFiller(fillPlan{users: users, groups: groups, groupN: cfg.group, share: cfg.fillShare,
		payload: cfg.payload, senders: cfg.fillSenders, tag: "h"})
	rng := rand.New(rand.NewPCG(1, 2)) // the same reads for every binary
	filled := 0.0                      // seconds of fill so far

	for ci, cp := range cfg.checkpoints {
		from := fl.stored.Load()
		h.prog.stage(fmt.Sprintf("%s · filling to %s messages", name, commas(cp)), float64(cp-from)/8000)
		segStart, lastPoint := time.Now(), time.Time{}
		seg, err := fl.fill(ctx, srv.base, cp, func(stored int64, rate float64) {
			h.prog.advance(float64(stored-from) / float64(cp-from))
			ps, _ := sampleProc(srv.pid())
			h.prog.note(fmt.Sprintf("%s / %s stored · %s sends/s · RSS %s MiB", commas(stored), commas(cp), f(round(rate, 0)), f(mib(ps.rss))))
			if now := time.Now(); now.Sub(lastPoint) >= time.Second || stored == cp {
				lastPoint = now
				run.Series = append(run.Series, FillPoint{T: round(filled+now.Sub(segStart).Seconds(), 1), Stored: stored, SendsPerS: round(rate, 0), RSSMB: mib(ps.rss)})
			}
		})
		filled += seg.dur.Seconds()
		if err != nil {
			return run, fmt.Errorf("filling to %d messages: %w", cp, err)
		}
		pt := HistoryPoint{Binary: name, Stored: cp, Direct: fl.direct.Load(), SendRetries: fl.retries.Load()}
		pt.Group = pt.Stored - pt.Direct
		pt.FillS = round(seg.dur.Seconds(), 2)
		pt.SendsPerSStart = round(seg.startRate(cfg.histWindow), 0)
		pt.SendsPerSEnd = round(seg.endRate(cfg.histWindow), 0)
		if ci == 0 {
			run.SendsPerSFresh = pt.SendsPerSStart
		}
		pt.SendsPerSFresh = run.SendsPerSFresh
		if pt.SendsPerSFresh > 0 {
			pt.EndVsFresh = round(pt.SendsPerSEnd/pt.SendsPerSFresh, 3)
		}
		h.prog.log("%s: %s messages stored in %s s; sends/s %s at the start of this fill, %s at its end (fresh node: %s)",
			name, commas(cp), f(pt.FillS), f(pt.SendsPerSStart), f(pt.SendsPerSEnd), f(run.SendsPerSFresh))
		ps, err := sampleProc(srv.pid())
		if err != nil {
			return run, err
		}
		pt.RSSServingMB, pt.PeakRSSMB = mib(ps.rss), mib(ps.hwm)

		h.prog.stage(fmt.Sprintf("%s · %s messages · reading history while serving", name, commas(cp)), probeEstimate(cfg))
		if pt.History, pt.ResumeZero, pt.ResumeHead, err = probeReads(ctx, srv.base, fl, cfg.histSamples, rng, h.prog); err != nil {
			return run, fmt.Errorf("reads at %d messages: %w", cp, err)
		}
		if pt.DiskBytes, pt.DiskAllocBytes, err = diskUsage(dir); err != nil {
			return run, err
		}

		h.prog.stage(fmt.Sprintf("%s · %s messages · restarting", name, commas(cp)), restartEstimate(cp))
		took, err := srv.stopWithin(historyWait)
		pt.ShutdownS, pt.ExitCode = round(took.Seconds(), 3), srv.exitCode()
		if err != nil {
			run.Points = append(run.Points, pt)
			return run, fmt.Errorf("stop at %d messages: %w", cp, err)
		}
		if srv, err = start(); err != nil {
			run.Points = append(run.Points, pt)
			return run, fmt.Errorf("restart at %d messages: %w", cp, err)
		}
		pt.RestartS = round(srv.healthy.Sub(srv.started).Seconds(), 3)
		pt.DownS = round(took.Seconds()+pt.RestartS, 3)
		hc := &http.Client{Transport: fillTransport(1), Timeout: historyWait}
		if _, err := headCursor(ctx, hc, srv.base, users[0]); err != nil {
			return run, fmt.Errorf("first read after the restart at %d messages: %w", cp, err)
		}
		pt.FirstRequestS = round(time.Since(srv.started).Seconds(), 3)
		hc.CloseIdleConnections()
		if ps, err = sampleProc(srv.pid()); err != nil {
			return run, err
		}
		pt.RSSStartedMB = mib(ps.rss)
		h.prog.log("%s: at %s messages, shutdown %s s (exit status %d), restart %s s, RSS %s MiB serving, %s MiB restarted",
			name, commas(cp), f(pt.ShutdownS), pt.ExitCode, f(pt.RestartS), f(pt.RSSServingMB), f(pt.RSSStartedMB))

		h.prog.stage(fmt.Sprintf("%s · %s messages · reading history after the restart", name, commas(cp)), probeEstimate(cfg))
		if pt.HistoryCold, pt.ResumeZeroCold, pt.ResumeHeadCold, err = probeReads(ctx, srv.base, fl, cfg.histSamples, rng, h.prog); err != nil {
			return run, fmt.Errorf("reads after the restart at %d messages: %w", cp, err)
		}
		if ps, err = sampleProc(srv.pid()); err != nil {
			return run, err
		}
		pt.RSSAfterRestartMB = mib(ps.rss)
		if pt.DiskBytesAfterRestart, pt.DiskAllocAfterRestart, err = diskUsage(dir); err != nil {
			return run, err
		}
		pt.BytesPerMsg = round(float64(pt.DiskBytesAfterRestart)/float64(cp), 0)
		run.Points = append(run.Points, pt)
		if h.save != nil {
			h.save(run)
		}
	}
	return run, nil
}

// directConv is the id of the 1:1 conversation of two users: d_<a>_<b>
// with a ≤ b as integers (protocol v1).
func directConv(x, y string) string {
	a, _ := strconv.ParseUint(x, 10, 64)
	b, _ := strconv.ParseUint(y, 10, 64)
	if a > b {
		a, b = b, a
	}
	return "d_" + strconv.FormatUint(a, 10) + "_" + strconv.FormatUint(b, 10)
}

// probeReads times n reads of each kind, one request at a time,
// interleaved: the newest page of a conversation that holds messages
// (GET /v1/conversations/{id}/messages?limit=50, as one of its members;
// 1:1 and group conversations in turn), a resume from the start of a
// user's inbox (GET /v1/poll?cursor=0&limit=100) and a resume from the
// head (GET /v1/poll?cursor=<head>&limit=100; the head is asked first,
// untimed). Users and conversations are drawn at random.
func probeReads(ctx context.Context, base string, fl *filler, n int, rng *rand.Rand, prog *progress) (hist, zero, head LatStat, err error) {
	hc := &http.Client{Transport: fillTransport(2), Timeout: historyWait}
	defer hc.CloseIdleConnections()
	var direct, groups []int
	for i := range fl.usedDirect {
		if fl.usedDirect[i].Load() {
			direct = append(direct, i)
		}
	}
	for i := range fl.usedGroup {
		if fl.usedGroup[i].Load() {
			groups = append(groups, i)
		}
	}
	users := fl.plan.users
	timed := func(url, token string) (int64, error) {
		t0 := time.Now()
		_, err := getAuthed(ctx, hc, url, token)
		return int64(time.Since(t0)), err
	}
	var lh, lz, ld []int64
	for i := range n {
		if len(direct)+len(groups) > 0 {
			var conv string
			var who account
			if len(groups) > 0 && (len(direct) == 0 || i%2 == 1) {
				g := groups[rng.IntN(len(groups))]
				conv, who = "g_"+fl.plan.groups[g], users[g*fl.plan.groupN+rng.IntN(fl.plan.groupN)]
			} else {
				d := direct[rng.IntN(len(direct))]
				s, k := d/fl.partners, d%fl.partners+1
				conv, who = directConv(users[s].ID, users[(s+k)%len(users)].ID), users[s]
				if rng.IntN(2) == 1 {
					who = users[(s+k)%len(users)]
				}
			}
			d, err := timed(base+"/v1/conversations/"+conv+"/messages?limit=50", who.Token)
			if err != nil {
				return hist, zero, head, err
			}
			lh = append(lh, d)
		}
		u := users[rng.IntN(len(users))]
		d, err := timed(base+"/v1/poll?cursor=0&limit=100", u.Token)
		if err != nil {
			return hist, zero, head, err
		}
		lz = append(lz, d)
		u = users[rng.IntN(len(users))]
		c, err := headCursor(ctx, hc, base, u)
		if err != nil {
			return hist, zero, head, err
		}
		d, err = timed(fmt.Sprintf("%s/v1/poll?cursor=%d&limit=100", base, c), u.Token)
		if err != nil {
			return hist, zero, head, err
		}
		ld = append(ld, d)
		if prog != nil && i%max(n/20, 1) == 0 {
			prog.advance(float64(i) / float64(n))
			prog.note(fmt.Sprintf("%d/%d reads of each kind", i, n))
		}
	}
	return latStat(lh), latStat(lz), latStat(ld), nil
}

// writeHistory writes history.json and history.md into dir.
func writeHistory(dir string, rep HistoryReport) error {
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return err
	}
	if rep.Runs == nil {
		rep.Runs = []HistoryRun{}
	}
	b, err := json.MarshalIndent(rep, "", "  ")
	if err != nil {
		return err
	}
	if err := os.WriteFile(filepath.Join(dir, "history.json"), append(b, '\n'), 0o644); err != nil {
		return err
	}
	return os.WriteFile(filepath.Join(dir, "history.md"), []byte(historyMarkdown(rep)), 0o644)
}

// renderHistory rewrites history.md from the history.json in dir.
func renderHistory(dir string) error {
	b, err := os.ReadFile(filepath.Join(dir, "history.json"))
	if err != nil {
		return err
	}
	var rep HistoryReport
	if err := json.Unmarshal(b, &rep); err != nil {
		return fmt.Errorf("history.json: %w", err)
	}
	return os.WriteFile(filepath.Join(dir, "history.md"), []byte(historyMarkdown(rep)), 0o644)
}

func pair(a, b float64) string { return f(a) + " / " + f(b) }

func lat(l LatStat) string {
	if l.N == 0 {
		return "–"
	}
	return pair(l.P50ms, l.P99ms)
}

func historyMarkdown(rep HistoryReport) string {
	m := rep.Meta
	var b strings.Builder
	p := func(format string, args ...any) { fmt.Fprintf(&b, format, args...) }
	p("# chatgate history probe\n\n")
	p("%s, %s s. Machine: %s, %d cores, %s GiB RAM, Linux %s, %s; load average at start %s.\n\n",
		m.Date, f(m.DurationS), m.CPU, m.Cores, f(m.MemoryGiB), m.Kernel, m.GoVersion, m.LoadAvg)
	p("Each binary starts on an empty data directory and is filled over `POST /v1/messages` by %d concurrent keep-alive senders: "+
		"%d users, each writing %d-byte messages to %d partners, and %s %% of the messages to %d group(s) of %d members (a group message counts as one stored message). "+
		"Sends/s are measured over the first %s s of a fill (after a warm-up) and the last %s s before each checkpoint (shorter for short fills); "+
		"\"start\" is the first window of the whole fill, on the fresh node. "+
		"Reads: %d of each kind, one at a time — the newest 50 messages of a conversation that holds messages (1:1 and group in turn), "+
		"a resume from cursor 0 and one from the inbox head (`GET /v1/poll`, limit 100). "+
		"At each checkpoint the node is stopped with SIGTERM and started again (restart: exec → `/healthz` answers 200); "+
		"RSS after restart is read after the reads on the restarted node. Bytes on disk are the data directory's file sizes after the restart, per stored message.\n\n",
		m.Senders, m.Users, m.PayloadB, m.Partners, f(100*m.GroupShare), m.Groups, m.GroupMembers, f(m.WindowS), f(m.WindowS), m.Samples)
	for _, r := range rep.Runs {
		src := r.Binary
		if r.Source != "" {
			src = r.Source
		}
		p("- **%s**: %s; %s s from exec to `/healthz` on an empty data directory.\n", r.Name, src, f(r.FreshStartS))
	}
	if len(rep.Runs) > 0 {
		p("\n")
	}
	if len(m.Errors) > 0 {
		p("**Errors:** %s\n\n", strings.Join(m.Errors, "; "))
	}
	b.WriteString(historyTables(rep))
	return b.String()
}

// historyTables is the tables of history.md (also printed at the end of
// the run).
func historyTables(rep HistoryReport) string {
	var b strings.Builder
	p := func(format string, args ...any) { fmt.Fprintf(&b, format, args...) }
	p("## History probe\n\n")
	p("| binary | stored messages | RSS serving MiB | RSS after restart MiB | restart s | sends/s start / end | history p50 / p99 ms | resume from 0 p50 / p99 ms | resume from head p50 / p99 ms | disk B/msg |\n")
	p("|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|\n")
	for _, r := range rep.Runs {
		for _, pt := range r.Points {
			p("| %s | %s | %s | %s | %s | %s (%s %%) | %s | %s | %s | %s |\n", r.Name, commas(pt.Stored), f(pt.RSSServingMB), f(pt.RSSAfterRestartMB), f(pt.RestartS),
				pair(pt.SendsPerSFresh, pt.SendsPerSEnd), f(100*pt.EndVsFresh), lat(pt.History), lat(pt.ResumeZero), lat(pt.ResumeHead), f(pt.BytesPerMsg))
		}
		if len(r.Points) == 0 {
			p("| %s | – | | | | | | | | |\n", r.Name)
		}
	}
	p("\n## Restart and the restarted node\n\nReads on the restarted node's cold caches (the kernel's page cache is still warm).\n\n")
	p("| binary | stored messages | shutdown s | restart s | first read s | SIGTERM → serving s | RSS at start MiB | RSS after reads MiB | history p50 / p99 ms | resume from 0 p50 / p99 ms | resume from head p50 / p99 ms |\n")
	p("|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|\n")
	for _, r := range rep.Runs {
		for _, pt := range r.Points {
			p("| %s | %s | %s | %s | %s | %s | %s | %s | %s | %s | %s |\n", r.Name, commas(pt.Stored), f(pt.ShutdownS), f(pt.RestartS), f(pt.FirstRequestS), f(pt.DownS),
				f(pt.RSSStartedMB), f(pt.RSSAfterRestartMB), lat(pt.HistoryCold), lat(pt.ResumeZeroCold), lat(pt.ResumeHeadCold))
		}
	}
	p("\n## Fill and disk\n\n")
	p("| binary | stored messages | 1:1 / group | fill s | sends/s at its start / end | send retries | peak RSS MiB | disk MiB serving / after restart | allocated MiB after restart | disk B/msg |\n")
	p("|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|\n")
	for _, r := range rep.Runs {
		for _, pt := range r.Points {
			p("| %s | %s | %s / %s | %s | %s | %d | %s | %s | %s | %s |\n", r.Name, commas(pt.Stored), commas(pt.Direct), commas(pt.Group), f(pt.FillS),
				pair(pt.SendsPerSStart, pt.SendsPerSEnd), pt.SendRetries, f(pt.PeakRSSMB), pair(mib(pt.DiskBytes), mib(pt.DiskBytesAfterRestart)), f(mib(pt.DiskAllocAfterRestart)), f(pt.BytesPerMsg))
		}
	}
	p("\n## Targets\n\n| binary | target | measured | met |\n|---|---|---|---|\n")
	for _, r := range rep.Runs {
		for _, v := range historyTargets(r) {
			p("| %s | %s | %s | %s |\n", r.Name, v.target, v.measured, v.met)
		}
	}
	return b.String()
}

// historyTargets judges the targets on one binary's figures.
// Those set at 5 M messages are judged at the first checkpoint of 5 M or
// more; below that, at the largest, marked as such.
func historyTargets(r HistoryRun) []verdict {
	var v []verdict
	if len(r.Points) == 0 {
		return nil
	}
	at := r.Points[len(r.Points)-1]
	for _, pt := range r.Points {
		if pt.Stored >= 5_000_000 {
			at = pt
			break
		}
	}
	met := func(ok bool) string {
		if at.Stored < 5_000_000 {
			return yes(ok) + fmt.Sprintf(" (at %s messages)", commas(at.Stored))
		}
		return yes(ok)
	}
	if at.RSSAfterRestartMB > 0 {
		v = append(v, verdict{"RSS after restart with 5 M messages ≤ 250 MB",
			fmt.Sprintf("%s MB at %s messages", f(round(at.RSSAfterRestartMB*(1<<20)/1e6, 1)), commas(at.Stored)),
			met(at.RSSAfterRestartMB*(1<<20) <= 250e6)})
	}
	worst, worstAt := 0.0, int64(0)
	for _, pt := range r.Points {
		if pt.RestartS > worst {
			worst, worstAt = pt.RestartS, pt.Stored
		}
	}
	if worstAt > 0 {
		v = append(v, verdict{"restart ≤ 1 s at any history size",
			fmt.Sprintf("at most %s s (at %s messages)", f(worst), commas(worstAt)), yes(worst <= 1)})
	}
	if at.SendsPerSFresh > 0 {
		v = append(v, verdict{"sends/s at 5 M messages within 10 % of a fresh node's",
			fmt.Sprintf("%s vs %s sends/s (%s %%) at %s messages", f(at.SendsPerSEnd), f(at.SendsPerSFresh), f(100*at.EndVsFresh), commas(at.Stored)),
			met(at.EndVsFresh >= 0.9)})
	}
	if at.BytesPerMsg > 0 {
		v = append(v, verdict{"bytes on disk per stored message, after the restart",
			fmt.Sprintf("%s B at %s messages", f(at.BytesPerMsg), commas(at.Stored)), "–"})
	}
	return v
}

// parseCount reads a message count: 5000000, 5_000_000, 5M, 500k.
func parseCount(s string) (int64, error) {
	s = strings.ReplaceAll(strings.TrimSpace(s), "_", "")
	mul := int64(1)
	switch {
	case strings.HasSuffix(s, "M") || strings.HasSuffix(s, "m"):
		mul, s = 1_000_000, s[:len(s)-1]
	case strings.HasSuffix(s, "k") || strings.HasSuffix(s, "K"):
		mul, s = 1_000, s[:len(s)-1]
	}
	if v, err := strconv.ParseInt(s, 10, 64); err == nil && v >= 0 {
		return v * mul, nil
	}
	v, err := strconv.ParseFloat(s, 64)
	if err != nil || v < 0 {
		return 0, fmt.Errorf("bad count %q", s)
	}
	return int64(v * float64(mul)), nil
}

// countFlag is a flag holding a message count.
type countFlag struct{ v *int64 }

func (c countFlag) String() string {
	if c.v == nil {
		return "0"
	}
	return strconv.FormatInt(*c.v, 10)
}

func (c countFlag) Set(s string) error {
	v, err := parseCount(s)
	if err != nil {
		return err
	}
	*c.v = v
	return nil
}

// checkpoints parses -history-checkpoints: counts in ascending order, up
// to n; n is added when missing.
func checkpoints(s string, n int64) ([]int64, error) {
	if strings.TrimSpace(s) == "" {
		return defaultCheckpoints(n), nil
	}
	var out []int64
	for _, x := range splitList(s) {
		v, err := parseCount(x)
		if err != nil {
			return nil, err
		}
		if v <= 0 || v > n {
			return nil, fmt.Errorf("checkpoint %d outside 1..%d", v, n)
		}
		if len(out) > 0 && v <= out[len(out)-1] {
			return nil, errors.New("checkpoints must ascend")
		}
		out = append(out, v)
	}
	if out[len(out)-1] != n {
		out = append(out, n)
	}
	return out, nil
}
