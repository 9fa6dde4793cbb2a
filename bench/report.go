package main

import (
	"encoding/csv"
	"encoding/json"
	"fmt"
	"html"
	"math"
	"os"
	"path/filepath"
	"strconv"
	"strings"
)

func mustJSON(v any) []byte {
	b, err := json.Marshal(v)
	if err != nil {
		panic(err)
	}
	return b
}

// render rewrites the reports of a finished run from its results.json
// and meta.json (after a change of the report format), and history.md
// from history.json.
func render(dir string) error {
	_, errH := os.Stat(filepath.Join(dir, "history.json"))
	if errH == nil {
		if err := renderHistory(dir); err != nil {
			return err
		}
		if _, err := os.Stat(filepath.Join(dir, "results.json")); err != nil {
			return nil // a history probe's directory
		}
	}
	var rs []Result
	var meta Meta
	for name, v := range map[string]any{"results.json": &rs, "meta.json": &meta} {
		b, err := os.ReadFile(filepath.Join(dir, name))
		if err != nil {
			return err
		}
		if err := json.Unmarshal(b, v); err != nil {
			return fmt.Errorf("%s: %w", name, err)
		}
	}
	return writeResults(dir, meta, rs)
}

// writeResults writes results.json, results.csv, results.md, chart.svg
// and meta.json into dir.
func writeResults(dir string, meta Meta, rs []Result) error {
	if rs == nil {
		rs = []Result{}
	}
	b, err := json.MarshalIndent(rs, "", "  ")
	if err != nil {
		return err
	}
	if err := os.WriteFile(filepath.Join(dir, "results.json"), append(b, '\n'), 0o644); err != nil {
		return err
	}
	mb, _ := json.MarshalIndent(meta, "", "  ")
	if err := os.WriteFile(filepath.Join(dir, "meta.json"), append(mb, '\n'), 0o644); err != nil {
		return err
	}
	if err := writeCSV(filepath.Join(dir, "results.csv"), rs); err != nil {
		return err
	}
	if err := os.WriteFile(filepath.Join(dir, "results.md"), []byte(markdown(meta, rs)), 0o644); err != nil {
		return err
	}
	if err := os.WriteFile(filepath.Join(dir, "scaling.md"), []byte(scalingMarkdown(meta, rs)), 0o644); err != nil {
		return err
	}
	return os.WriteFile(filepath.Join(dir, "chart.svg"), []byte(chart(meta, rs)), 0o644)
}

var csvHeader = []string{
	"system", "transport", "scenario", "offered_per_s", "p50_ms", "p95_ms", "p99_ms", "max_ms", "msgs_per_s",
	"bytes_per_msg", "up_bytes_per_msg", "down_bytes_per_msg", "payload_bytes", "event_bytes",
	"idle_conns", "idle_bytes_per_conn", "idle_rss_per_conn", "idle_goroutines_per_conn", "idle_req_per_s",
	"idle_bytes_per_s_per_conn", "idle_cpu_pct", "cpu_us_per_msg", "server_cpu_pct", "load_cpu_pct", "server_rss_mb",
	"delivered", "lost", "send_errors", "missed", "drops", "sustained",
	"floor_bytes_per_msg", "floor_p50_ms", "floor_p99_ms", "bytes_vs_floor", "p50_vs_floor", "note",
}

func writeCSV(path string, rs []Result) error {
	f, err := os.Create(path)
	if err != nil {
		return err
	}
	defer f.Close()
	w := csv.NewWriter(f)
	_ = w.Write(csvHeader)
	num := func(v float64) string { return strconv.FormatFloat(v, 'f', -1, 64) }
	for _, r := range rs {
		_ = w.Write([]string{
			r.System, r.Transport, r.Scenario, num(r.OfferedPerS), num(r.P50ms), num(r.P95ms), num(r.P99ms), num(r.MaxMs), num(r.MsgsPerS),
			num(r.BytesPerMsg), num(r.UpBytesPerMsg), num(r.DownBytesPerMsg), strconv.Itoa(r.PayloadBytes), num(r.EventBytes),
			strconv.Itoa(r.IdleConns), num(r.IdleBytesPerConn), num(r.IdleRSSPerConn), num(r.IdleGoroutinesPerConn), num(r.IdleReqPerS),
			num(r.IdleBytesPerSPerConn), num(r.IdleCPUPct), num(r.CPUusPerMsg), num(r.ServerCPUPct), num(r.LoadCPUPct), num(r.ServerRSSMB),
			strconv.FormatInt(r.Delivered, 10), strconv.FormatInt(r.Lost, 10), strconv.FormatInt(r.SendErrors, 10), strconv.FormatInt(r.Missed, 10),
			strconv.FormatInt(r.Drops, 10), strconv.FormatBool(r.Sustained),
			num(r.FloorBytesPerMsg), num(r.FloorP50ms), num(r.FloorP99ms), num(r.BytesVsFloor), num(r.P50VsFloor), r.Note,
		})
	}
	w.Flush()
	return w.Error()
}

// order is the display order of transports.
var order = []string{"websocket", "sse", "longpolling", "polling", "centrifugo-websocket", "centrifugo-sse"}

var display = map[string]string{
	"websocket": "WebSocket", "sse": "SSE", "longpolling": "long polling", "polling": "short polling",
	"centrifugo-websocket": "Centrifugo WS", "centrifugo-sse": "Centrifugo SSE",
}

var colors = map[string]string{
	"websocket": "#2b6cb0", "sse": "#2f855a", "longpolling": "#b7791f", "polling": "#c53030",
	"centrifugo-websocket": "#6b46c1", "centrifugo-sse": "#9f7aea",
}

func name(t string) string {
	if d, ok := display[t]; ok {
		return d
	}
	return t
}

func find(rs []Result, transport, scenario string) *Result {
	for i := range rs {
		if rs[i].Transport == transport && rs[i].Scenario == scenario {
			return &rs[i]
		}
	}
	return nil
}

// present lists the transports that have rows, in display order.
func present(rs []Result) []string {
	var out []string
	for _, t := range order {
		for _, r := range rs {
			if r.Transport == t {
				out = append(out, t)
				break
			}
		}
	}
	return out
}

func f(v float64) string {
	switch {
	case v == 0:
		return "–"
	case math.Abs(v) >= 1000:
		return commas(int64(math.Round(v)))
	case math.Abs(v) >= 100:
		return strconv.FormatFloat(v, 'f', 0, 64)
	case math.Abs(v) >= 10:
		return strconv.FormatFloat(v, 'f', 1, 64)
	default:
		return strconv.FormatFloat(v, 'f', 2, 64)
	}
}

func commas(n int64) string {
	s := strconv.FormatInt(n, 10)
	neg := strings.HasPrefix(s, "-")
	s = strings.TrimPrefix(s, "-")
	var b strings.Builder
	for i, c := range s {
		if i > 0 && (len(s)-i)%3 == 0 {
			b.WriteByte(',')
		}
		b.WriteRune(c)
	}
	if neg {
		return "-" + b.String()
	}
	return b.String()
}

func yes(ok bool) string {
	if ok {
		return "yes"
	}
	return "**no**"
}

// target is one of the targets, judged on the figures.
type verdict struct{ target, measured, met string }

func targets(meta Meta, rs []Result) []verdict {
	var v []verdict
	add := func(t, m, met string) { v = append(v, verdict{t, m, met}) }
	if r := find(rs, "websocket", "idle"); r != nil {
		add("WebSocket: ≤ 10 KiB server memory per idle connection",
			fmt.Sprintf("%s KiB live heap+stacks (%s KiB RSS) per connection, %d connections", f(r.IdleBytesPerConn/1024), f(r.IdleRSSPerConn/1024), r.IdleConns),
			yes(r.IdleBytesPerConn <= 10*1024))
	} else {
		add("WebSocket: ≤ 10 KiB server memory per idle connection", "not measured", "–")
	}
	if r := find(rs, "websocket", "latency_10000"); r != nil {
		add("WebSocket: p99 < 5 ms at 10,000 msg/s",
			fmt.Sprintf("p99 %s ms, %s msg/s delivered", f(r.P99ms), f(r.MsgsPerS)),
			yes(r.P99ms < 5 && r.Sustained))
	} else {
		add("WebSocket: p99 < 5 ms at 10,000 msg/s", "not measured in this run (-rates)", "–")
	}
	if r := find(rs, "websocket", "fanout"); r != nil {
		add("WebSocket: ≥ 100,000 deliveries/s in 100-member fan-out",
			fmt.Sprintf("%s deliveries/s (p99 %s ms, %d-member group)", f(r.MsgsPerS), f(r.P99ms), meta.Group),
			yes(r.MsgsPerS >= 100000 && meta.Group >= 100 && r.Sustained))
	}
	ws, sse := find(rs, "websocket", "cpu"), find(rs, "sse", "cpu")
	if ws != nil && sse != nil && ws.CPUusPerMsg > 0 {
		ratio := sse.CPUusPerMsg / ws.CPUusPerMsg
		add("SSE within 1.5× of WebSocket's CPU per message",
			fmt.Sprintf("SSE %s µs, WebSocket %s µs: %s×", f(sse.CPUusPerMsg), f(ws.CPUusPerMsg), f(ratio)),
			yes(ratio <= 1.5))
	}
	for _, t := range []string{"websocket", "sse", "longpolling", "polling"} {
		if r := find(rs, t, "wire"); r != nil && r.FloorBytesPerMsg > 0 {
			add(fmt.Sprintf("%s within 1.5× of its floor in bytes per message", name(t)),
				fmt.Sprintf("%s B vs floor %s B: %s×", f(r.BytesPerMsg), f(r.FloorBytesPerMsg), f(r.BytesVsFloor)),
				yes(r.BytesVsFloor <= 1.5))
		}
	}
	for _, pair := range [][2]string{{"websocket", "centrifugo-websocket"}, {"sse", "centrifugo-sse"}} {
		for _, c := range peerComparisons(rs, pair[0], pair[1]) {
			add(fmt.Sprintf("%s ahead of %s: %s", name(pair[0]), name(pair[1]), c.what), c.text, yes(c.ahead))
		}
	}
	return v
}

type comparison struct {
	what  string
	text  string
	ahead bool
	ratio float64
}

// peerComparisons compares chatgate with the peer where both did the
// same work.
func peerComparisons(rs []Result, ours, peer string) []comparison {
	var out []comparison
	cmp := func(what, scenario string, get func(*Result) float64, unit string, lowerBetter bool) {
		a, b := find(rs, ours, scenario), find(rs, peer, scenario)
		if a == nil || b == nil {
			return
		}
		va, vb := get(a), get(b)
		if va == 0 || vb == 0 {
			return
		}
		ahead := va > vb
		if lowerBetter {
			ahead = va < vb
		}
		out = append(out, comparison{what, fmt.Sprintf("%s %s vs %s %s (%s×)", f(va), unit, f(vb), unit, f(va/vb)), ahead, va / vb})
	}
	for _, r := range rs {
		if r.Transport == ours && strings.HasPrefix(r.Scenario, "latency_") {
			cmp("p99 at "+strings.TrimPrefix(r.Scenario, "latency_")+" msg/s", r.Scenario, func(r *Result) float64 { return r.P99ms }, "ms", true)
		}
	}
	cmp("throughput", "throughput", func(r *Result) float64 { return r.MsgsPerS }, "msg/s", false)
	cmp("fan-out", "fanout", func(r *Result) float64 { return r.MsgsPerS }, "deliveries/s", false)
	cmp("CPU per message", "cpu", func(r *Result) float64 { return r.CPUusPerMsg }, "µs", true)
	cmp("memory per idle connection (heap+stacks)", "idle", func(r *Result) float64 { return r.IdleBytesPerConn }, "B", true)
	cmp("memory per idle connection (RSS)", "idle", func(r *Result) float64 { return r.IdleRSSPerConn }, "B", true)
	cmp("bytes per message", "wire", func(r *Result) float64 { return r.BytesPerMsg }, "B", true)
	return out
}

func markdown(meta Meta, rs []Result) string {
	var b strings.Builder
	p := func(format string, args ...any) { fmt.Fprintf(&b, format, args...) }
	mode := "full run"
	if meta.Quick {
		mode = "quick run (-quick: small figures, not for comparison)"
	}
	p("# chatgate protocol benchmark\n\n")
	p("%s, %s, %s s. Machine: %s, %d cores, %s GiB RAM, Linux %s, %s; load average at start %s.\n\n",
		meta.Date, mode, f(meta.DurationS), meta.CPU, meta.Cores, f(meta.MemoryGiB), meta.Kernel, meta.GoVersion, meta.LoadAvg)
	if meta.Prefill > 0 {
		p("**Pre-filled node:** before any measurement the node stored %s messages over HTTP (%s %% to groups; -prefill), at %s sends/s; every run below starts from a copy of it.\n\n",
			commas(meta.Prefill), f(100*meta.PrefillMix), f(meta.PrefillRate))
	}
	p("Load: %d users (%d 1:1 pairs, in each one user sends and the other receives; the first %d form the fan-out group), %d-byte messages, steps of %s s (the first fifth warms up), short-polling interval %s ms. "+
		"Server and load generator share the machine; the server runs in its own process. Peer: %s.\n\n",
		meta.Users, meta.Users/2, meta.Group, meta.PayloadB, f(meta.StepS), f(meta.PollMs), meta.Peer)
	p("Latency floor: loopback round trip %s µs + fsync %s µs (every chatgate message is durable before it is delivered; Centrifugo's memory engine writes nothing). "+
		"A rate counts as sustained while the generator keeps it, nothing is lost and p99 stays within the floor + %s ms (fan-out: + %s ms); a rate that fails on p99 alone is tried once more.\n\n", f(meta.RTTus), f(meta.FsyncUs), f(meta.P99BoundMs), f(meta.FanBoundMs))
	if sc := meta.Store; sc != nil {
		node := "a fresh node"
		if meta.Prefill > 0 {
			node = "the pre-filled node"
		}
		if sc.JournalFactor >= 2 {
			p("Stored history (%d 1:1 and %d group messages of %d bytes sent over HTTP to %s): the store file grows by %s B per 1:1 message and %s B per message to the %d-member group "+
				"(each write is journaled, then applied, then the journal key deleted: live data is about 1/%s of that after the compaction at start); "+
				"the server's live heap grows by %s B per 1:1 message and %s B per group message (buntdb keeps every key in memory).\n\n",
				sc.Direct1to1, sc.GroupMsgs, sc.PayloadBytes, node, f(sc.DirectFile), f(sc.GroupFile), sc.GroupMembers, f(sc.JournalFactor), f(sc.DirectHeap), f(sc.GroupHeap))
		} else {
			p("Stored history (%d 1:1 and %d group messages of %d random letters sent over HTTP to %s, measured after a clean stop): the data directory grows by %s B per 1:1 message and %s B per message to the %d-member group; "+
				"the server's live heap changes by %s B per 1:1 message and %s B per group message (history is on disk).\n\n",
				sc.Direct1to1, sc.GroupMsgs, sc.PayloadBytes, node, f(sc.DirectFile), f(sc.GroupFile), sc.GroupMembers, f(sc.DirectHeap), f(sc.GroupHeap))
		}
	}
	if len(meta.Errors) > 0 {
		p("**Errors:** %s\n\n", strings.Join(meta.Errors, "; "))
	}
	trs := present(rs)

	p("## Targets\n\n| target | measured | met |\n|---|---|---|\n")
	for _, v := range targets(meta, rs) {
		p("| %s | %s | %s |\n", v.target, v.measured, v.met)
	}

	p("\n## Latency, 1:1 (send → receive)\n\n| transport | offered msg/s | delivered msg/s | p50 ms | p95 ms | p99 ms | max ms | floor p50 ms | p50 / floor | sustained |\n|---|---:|---:|---:|---:|---:|---:|---:|---:|---|\n")
	for _, t := range trs {
		for _, r := range rs {
			if r.Transport == t && strings.HasPrefix(r.Scenario, "latency_") {
				p("| %s | %s | %s | %s | %s | %s | %s | %s | %s | %s |\n", name(t), f(r.OfferedPerS), f(r.MsgsPerS), f(r.P50ms), f(r.P95ms), f(r.P99ms), f(r.MaxMs), f(r.FloorP50ms), f(r.P50VsFloor), yes(r.Sustained))
			}
		}
	}

	p("\n## Throughput, 1:1\n\nThe highest rate sustained (steps in results.json).\n\n| transport | msgs/s | p50 ms | p99 ms | server CPU µs/msg | server CPU %% | load generator CPU %% | steps tried |\n|---|---:|---:|---:|---:|---:|---:|---|\n")
	for _, t := range trs {
		if r := find(rs, t, "throughput"); r != nil {
			p("| %s | %s | %s | %s | %s | %s | %s | %s |\n", name(t), f(r.MsgsPerS), f(r.P50ms), f(r.P99ms), f(r.CPUusPerMsg), f(r.ServerCPUPct), f(r.LoadCPUPct), stepList(r.Steps))
		}
	}

	p("\n## Fan-out, %d-member group\n\nDeliveries count each message once per member other than its sender; the highest rate sustained.\n\n| transport | group msgs/s | deliveries/s | p50 ms | p99 ms | server CPU µs/delivery | sustained | group msgs/s tried |\n|---|---:|---:|---:|---:|---:|---|---|\n", meta.Group)
	for _, t := range trs {
		if r := find(rs, t, "fanout"); r != nil {
			p("| %s | %s | %s | %s | %s | %s | %s | %s |\n", name(t), f(r.OfferedPerS), f(r.MsgsPerS), f(r.P50ms), f(r.P99ms), f(r.CPUusPerMsg), yes(r.Sustained), stepList(r.Steps))
		}
	}

	p("\n## Wire cost per delivered 1:1 message\n\nCounted at the client sockets: HTTP request lines and headers, WebSocket frames, polls and heartbeats, the answer to the send and the echo to the sender's own connection.\n\n| transport | at msg/s | payload B | event JSON B | up B/msg | down B/msg | total B/msg | floor B/msg | × floor |\n|---|---:|---:|---:|---:|---:|---:|---:|---:|\n")
	for _, t := range trs {
		if r := find(rs, t, "wire"); r != nil {
			p("| %s | %s | %d | %s | %s | %s | %s | %s | %s |\n", name(t), f(r.OfferedPerS), r.PayloadBytes, f(r.EventBytes), f(r.UpBytesPerMsg), f(r.DownBytesPerMsg), f(r.BytesPerMsg), f(r.FloorBytesPerMsg), f(r.BytesVsFloor))
		}
	}

	p("\n## Idle cost\n\nConnected clients that send and receive nothing. Memory is the server's growth per connection: live Go heap + goroutine stacks after a GC, and the process's RSS (which adds GC headroom and allocator slack, and is noisy below a few thousand connections).\n\n| transport | connections | heap+stacks / conn | RSS / conn | goroutines / conn | HTTP requests/s (all clients) | bytes/s per client | server CPU %% |\n|---|---:|---:|---:|---:|---:|---:|---:|\n")
	for _, t := range trs {
		if r := find(rs, t, "idle"); r != nil {
			p("| %s | %s | %s KiB | %s KiB | %s | %s | %s | %s |\n", name(t), f(float64(r.IdleConns)), f(r.IdleBytesPerConn/1024), f(r.IdleRSSPerConn/1024), f(r.IdleGoroutinesPerConn), f(r.IdleReqPerS), f(r.IdleBytesPerSPerConn), f(r.IdleCPUPct))
		}
	}

	p("\n## Server CPU per delivered 1:1 message\n\n| transport | at msg/s | µs / msg | server CPU %% | vs WebSocket |\n|---|---:|---:|---:|---:|\n")
	ws := find(rs, "websocket", "cpu")
	for _, t := range trs {
		if r := find(rs, t, "cpu"); r != nil {
			rel := "–"
			if ws != nil && ws.CPUusPerMsg > 0 {
				rel = f(r.CPUusPerMsg/ws.CPUusPerMsg) + "×"
			}
			p("| %s | %s | %s | %s | %s |\n", name(t), f(r.OfferedPerS), f(r.CPUusPerMsg), f(r.ServerCPUPct), rel)
		}
	}

	var cmpRows []string
	for _, pair := range [][2]string{{"websocket", "centrifugo-websocket"}, {"sse", "centrifugo-sse"}} {
		for _, c := range peerComparisons(rs, pair[0], pair[1]) {
			cmpRows = append(cmpRows, fmt.Sprintf("| %s vs %s | %s | %s | %s× | %s |", name(pair[0]), name(pair[1]), c.what, c.text, f(c.ratio), yes(c.ahead)))
		}
	}
	p("\n## chatgate vs Centrifugo\n\n")
	if len(cmpRows) == 0 {
		p("Not compared in this run: %s.\n", meta.Peer)
	} else {
		p("Same load, same run, same machine. Ratio is chatgate / Centrifugo. The work is not identical: chatgate fsyncs every message and its inbox entries before delivering it; Centrifugo's memory engine keeps nothing.\n\n| pair | figure | chatgate vs Centrifugo | ratio | chatgate ahead |\n|---|---|---|---:|---|\n")
		p("%s\n", strings.Join(cmpRows, "\n"))
	}
	return b.String()
}

// chart draws the comparison as an SVG of six horizontal bar panels.
func chart(meta Meta, rs []Result) string {
	trs := present(rs)
	type panel struct {
		title string
		get   func(t string) (float64, float64) // value, floor (0: none)
		log   bool
		unit  string
	}
	wireRate := ""
	if r := find(rs, "websocket", "wire"); r != nil {
		wireRate = f(r.OfferedPerS)
	}
	val := func(scenario string, get func(*Result) float64, floor func(*Result) float64) func(string) (float64, float64) {
		return func(t string) (float64, float64) {
			r := find(rs, t, scenario)
			if r == nil {
				return 0, 0
			}
			fl := 0.0
			if floor != nil {
				fl = floor(r)
			}
			return get(r), fl
		}
	}
	latScenario := "latency_" + strings.ReplaceAll(wireRate, ",", "")
	panels := []panel{
		{"p50 latency at " + wireRate + " msg/s, ms (log scale; tick: floor)", val(latScenario, func(r *Result) float64 { return r.P50ms }, func(r *Result) float64 { return r.FloorP50ms }), true, "ms"},
		{"1:1 throughput sustained, msg/s", val("throughput", func(r *Result) float64 { return r.MsgsPerS }, nil), false, ""},
		{fmt.Sprintf("fan-out, %d-member group, deliveries/s", meta.Group), val("fanout", func(r *Result) float64 { return r.MsgsPerS }, nil), false, ""},
		{"bytes on the wire per message (tick: floor)", val("wire", func(r *Result) float64 { return r.BytesPerMsg }, func(r *Result) float64 { return r.FloorBytesPerMsg }), false, "B"},
		{"server memory per idle connection, KiB", val("idle", func(r *Result) float64 { return r.IdleBytesPerConn / 1024 }, nil), false, "KiB"},
		{"server CPU per delivered message, µs", val("cpu", func(r *Result) float64 { return r.CPUusPerMsg }, nil), false, "µs"},
	}
	const (
		pw, labelW, barW = 470, 110, 270
		rowH, headH, gap = 22, 34, 16
	)
	ph := headH + rowH*max(len(trs), 1) + 10
	cols := 2
	rows := (len(panels) + cols - 1) / cols
	W := cols*pw + (cols+1)*gap
	H := 70 + rows*(ph+gap) + 30
	var b strings.Builder
	p := func(format string, args ...any) { fmt.Fprintf(&b, format, args...) }
	p(`<svg xmlns="http://www.w3.org/2000/svg" width="%d" height="%d" viewBox="0 0 %d %d" font-family="Helvetica, Arial, sans-serif" font-size="12">`+"\n", W, H, W, H)
	p(`<rect width="100%%" height="100%%" fill="#ffffff"/>` + "\n")
	title := "chatgate: what each transport costs"
	if meta.Quick {
		title += " (quick run)"
	}
	p(`<text x="%d" y="28" font-size="18" font-weight="bold">%s</text>`+"\n", gap, html.EscapeString(title))
	p(`<text x="%d" y="48" fill="#555">%s</text>`+"\n", gap, html.EscapeString(fmt.Sprintf("%s · %d cores %s · %d users, %d-byte messages · peer: %s", meta.Date[:min(10, len(meta.Date))], meta.Cores, meta.CPU, meta.Users, meta.PayloadB, shortPeer(meta.Peer))))
	for i, pn := range panels {
		x0 := gap + (i%cols)*(pw+gap)
		y0 := 70 + (i/cols)*(ph+gap)
		p(`<g transform="translate(%d,%d)">`+"\n", x0, y0)
		p(`<rect width="%d" height="%d" fill="#f7f7f7" stroke="#ddd"/>`+"\n", pw, ph)
		p(`<text x="10" y="20" font-weight="bold">%s</text>`+"\n", html.EscapeString(pn.title))
		maxV, minV := 0.0, math.Inf(1)
		for _, t := range trs {
			v, fl := pn.get(t)
			maxV = math.Max(maxV, math.Max(v, fl))
			if v > 0 {
				minV = math.Min(minV, v)
			}
			if fl > 0 {
				minV = math.Min(minV, fl)
			}
		}
		scale := func(v float64) float64 {
			if v <= 0 || maxV <= 0 {
				return 0
			}
			if pn.log {
				lo := math.Pow(10, math.Floor(math.Log10(minV)))
				hi := math.Pow(10, math.Ceil(math.Log10(maxV)))
				if hi <= lo {
					hi = lo * 10
				}
				return barW * math.Max(math.Log10(v/lo)/math.Log10(hi/lo), 0.01)
			}
			return barW * v / maxV
		}
		for j, t := range trs {
			y := headH + j*rowH
			v, fl := pn.get(t)
			p(`<text x="%d" y="%d" text-anchor="end">%s</text>`+"\n", labelW-6, y+14, html.EscapeString(name(t)))
			if v <= 0 {
				p(`<text x="%d" y="%d" fill="#888">not measured</text>`+"\n", labelW, y+14)
				continue
			}
			w := scale(v)
			p(`<rect x="%d" y="%d" width="%.1f" height="%d" fill="%s"/>`+"\n", labelW, y+3, w, rowH-6, colors[t])
			if fl > 0 {
				fx := float64(labelW) + scale(fl)
				p(`<line x1="%.1f" y1="%d" x2="%.1f" y2="%d" stroke="#000" stroke-width="2"/>`+"\n", fx, y+1, fx, y+rowH-1)
			}
			label := f(v)
			if pn.unit != "" {
				label += " " + pn.unit
			}
			p(`<text x="%.1f" y="%d">%s</text>`+"\n", float64(labelW)+w+5, y+14, html.EscapeString(label))
		}
		p("</g>\n")
	}
	p(`<text x="%d" y="%d" fill="#555">Loopback, server in its own process; results.md has every figure, the floors and the steps.</text>`+"\n", gap, H-12)
	p("</svg>\n")
	return b.String()
}

// stepList shows a ramp: each rate tried, ✓ sustained or ✗ with why.
func stepList(steps []Step) string {
	var st []string
	for _, s := range steps {
		mark := "✓"
		if !s.Sustained {
			var why []string
			why = append(why, "p99 "+f(s.P99ms)+" ms")
			if s.Lost > 0 {
				why = append(why, fmt.Sprintf("lost %d", s.Lost))
			}
			if s.Missed > 0 {
				why = append(why, fmt.Sprintf("generator missed %d", s.Missed))
			}
			if s.SendErrors > 0 {
				why = append(why, fmt.Sprintf("%d send errors", s.SendErrors))
			}
			if s.Drops > 0 {
				why = append(why, fmt.Sprintf("%d connections dropped", s.Drops))
			}
			mark = "✗ (" + strings.Join(why, ", ") + ")"
		}
		if s.Retry {
			mark = "retried: " + mark
		}
		st = append(st, f(s.OfferedPerS)+" "+mark)
	}
	return strings.Join(st, ", ")
}

func shortPeer(s string) string {
	if strings.HasPrefix(s, "Centrifugo") {
		return "Centrifugo v6"
	}
	return "none"
}
