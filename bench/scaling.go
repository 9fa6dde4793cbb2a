package main

import (
	"fmt"
	"math"
	"strings"
)

// assumptions of the capacity model for the seed's 50 million daily
// active users. Everything else in scaling.md comes from the run.
type assumptions struct {
	DAU            float64 // daily active users
	PeakOnline     float64 // share of DAU connected at the peak
	Devices        float64 // connections per online user
	MsgsPerUserDay float64 // messages each DAU sends per day
	PeakFactor     float64 // peak-hour send rate / daily average
	GroupShare     float64 // share of messages sent to groups
	GroupSize      float64 // mean members of a group a message goes to
	Headroom       float64 // share of a node's CPU and memory the model plans to use
	NodeMemGiB     float64 // memory per node (the bench machine's)
	NodeCores      float64 // cores per node (the bench machine's)
}

func defaultAssumptions(meta Meta) assumptions {
	return assumptions{
		DAU: 50e6, PeakOnline: 0.20, Devices: 1.2, MsgsPerUserDay: 40, PeakFactor: 3,
		GroupShare: 0.2, GroupSize: 20, Headroom: 0.6,
		NodeMemGiB: max(meta.MemoryGiB, 1), NodeCores: float64(max(meta.Cores, 1)),
	}
}

// scalingMarkdown computes the capacity model from a run's figures.
func scalingMarkdown(meta Meta, rs []Result) string {
	a := defaultAssumptions(meta)
	var b strings.Builder
	p := func(format string, args ...any) { fmt.Fprintf(&b, format, args...) }
	idle := find(rs, "websocket", "idle")
	thr := find(rs, "websocket", "throughput")
	fan := find(rs, "websocket", "fanout")
	wire := find(rs, "websocket", "wire")
	sc := meta.Store
	p("# Capacity model for 50 million daily active users (generated)\n\n")
	kind := "full run"
	if meta.Quick {
		kind = "quick run: figures too small to plan with"
	}
	p("Computed by `go run ./bench` from the run of %s (%s; %d cores, %s GiB). Inputs measured on one node over WebSocket, chatgate's first transport.\n\n", meta.Date, kind, meta.Cores, f(meta.MemoryGiB))
	if idle == nil || thr == nil || fan == nil || sc == nil || idle.IdleConns == 0 || thr.CPUusPerMsg == 0 || fan.CPUusPerMsg == 0 {
		p("Not enough figures in this run (the WebSocket idle, throughput and fan-out rows and the store probe are needed).\n")
		return b.String()
	}

	p("## Assumptions\n\n| | value |\n|---|---:|\n")
	p("| daily active users | %s |\n", commas(int64(a.DAU)))
	p("| connected at the peak, share of DAU | %s %% |\n", f(100*a.PeakOnline))
	p("| connections (devices) per online user | %s |\n", f(a.Devices))
	p("| messages sent per DAU per day | %s |\n", f(a.MsgsPerUserDay))
	p("| peak-hour rate / daily average | %s× |\n", f(a.PeakFactor))
	p("| share of messages sent to groups | %s %% |\n", f(100*a.GroupShare))
	p("| members of a group a message goes to (mean) | %s |\n", f(a.GroupSize))
	p("| message content | %d bytes |\n", sc.PayloadBytes)
	p("| planned use of a node's CPU and memory | %s %% |\n", f(100*a.Headroom))
	p("| node | %s cores, %s GiB (the bench machine) |\n\n", f(a.NodeCores), f(a.NodeMemGiB))

	// Measured inputs.
	memPerConn := math.Max(idle.IdleRSSPerConn, idle.IdleBytesPerConn)
	idleCPUPerConn := idle.IdleCPUPct / 100 / float64(idle.IdleConns) // cores
	c1 := thr.CPUusPerMsg                                             // µs per 1:1 message at the highest sustained rate
	cd := fan.CPUusPerMsg                                             // µs per group delivery
	perMember := (sc.GroupFile - sc.DirectFile) / math.Max(float64(sc.GroupMembers-2), 1)
	groupFile := sc.DirectFile + perMember*(a.GroupSize-2)
	live := func(file float64) float64 { return file / sc.JournalFactor }

	p("## Measured inputs\n\n| figure | value | from |\n|---|---:|---|\n")
	p("| server memory per idle WebSocket connection | %s KiB | the larger of RSS (%s KiB) and live heap + stacks (%s KiB), %d connections |\n", f(memPerConn/1024), f(idle.IdleRSSPerConn/1024), f(idle.IdleBytesPerConn/1024), idle.IdleConns)
	p("| goroutines per connection | %s | idle row |\n", f(idle.IdleGoroutinesPerConn))
	p("| server CPU per idle connection (its pings) | %s µs/s | idle row: %s %% of a core for %s connections |\n", f(idleCPUPerConn*1e6), f(idle.IdleCPUPct), commas(int64(idle.IdleConns)))
	p("| server CPU per 1:1 message | %s µs | throughput row, at %s msg/s |\n", f(c1), f(thr.MsgsPerS))
	p("| highest 1:1 rate sustained on one node | %s msg/s | throughput row (p99 %s ms) |\n", f(thr.MsgsPerS), f(thr.P99ms))
	p("| server CPU per group delivery | %s µs | fan-out row, at %s deliveries/s |\n", f(cd), f(fan.MsgsPerS))
	p("| highest fan-out sustained on one node | %s deliveries/s | fan-out row (p99 %s ms) |\n", f(fan.MsgsPerS), f(fan.P99ms))
	p("| store file per 1:1 message | %s B (live ≈ %s B) | store probe, %d messages |\n", f(sc.DirectFile), f(live(sc.DirectFile)), sc.Direct1to1)
	p("| store file per group message, %d members | %s B (≈ %s B more per member) | store probe, %d messages |\n", sc.GroupMembers, f(sc.GroupFile), f(perMember), sc.GroupMsgs)
	if wire != nil {
		p("| bytes on the wire per 1:1 message | %s B | wire row |\n", f(wire.BytesPerMsg))
	}
	p("\n")

	// Load.
	conns := a.DAU * a.PeakOnline * a.Devices
	avgSends := a.DAU * a.MsgsPerUserDay / 86400
	peakSends := avgSends * a.PeakFactor
	peak1 := peakSends * (1 - a.GroupShare)
	peakG := peakSends * a.GroupShare
	deliveries := peakG * (a.GroupSize - 1)

	// Nodes by each limit.
	usableCores := a.NodeCores * a.Headroom
	usableMem := a.NodeMemGiB * (1 << 30) * a.Headroom
	connsByMem := usableMem / memPerConn
	connsByCPU := usableCores / idleCPUPerConn
	cpuMsgs := (peak1*c1 + deliveries*cd) / 1e6 // cores
	cpuIdle := conns * idleCPUPerConn
	nodesCPU := (cpuMsgs + cpuIdle) / usableCores
	nodesMem := conns / connsByMem
	nodesThr := peak1/(thr.MsgsPerS*a.Headroom) + deliveries/(fan.MsgsPerS*a.Headroom)
	nodes := math.Ceil(math.Max(nodesCPU, math.Max(nodesMem, nodesThr)))

	p("## Load at the peak\n\n| | value |\n|---|---:|\n")
	p("| connections | %s |\n", commas(int64(conns)))
	p("| messages sent, daily average | %s msg/s (%s per day) |\n", commas(int64(avgSends)), commas(int64(avgSends*86400)))
	p("| messages sent, peak hour | %s msg/s: %s 1:1 + %s to groups |\n", commas(int64(peakSends)), commas(int64(peak1)), commas(int64(peakG)))
	p("| group deliveries, peak hour | %s /s |\n\n", commas(int64(deliveries)))

	p("## Nodes\n\n| limit | per node | nodes needed |\n|---|---:|---:|\n")
	p("| memory for connections | %s connections | %s |\n", commas(int64(connsByMem)), f(math.Ceil(nodesMem)))
	if idleCPUPerConn > 0 {
		p("| CPU for idle connections alone | %s connections | %s |\n", commas(int64(connsByCPU)), f(math.Ceil(cpuIdle/usableCores)))
	} else {
		p("| CPU for idle connections alone | not measured (too little CPU in the window) | – |\n")
	}
	p("| CPU for messages and idle connections | %s cores of %s | %s |\n", f(usableCores), f(a.NodeCores), f(math.Ceil(nodesCPU)))
	p("| measured rates (1:1 and fan-out at the p99 bound) | %s msg/s, %s deliveries/s | %s |\n", commas(int64(thr.MsgsPerS*a.Headroom)), commas(int64(fan.MsgsPerS*a.Headroom)), f(math.Ceil(nodesThr)))
	p("| **the model** | **%s connections, %s msg/s** | **%s** |\n\n", commas(int64(conns/nodes)), commas(int64(peakSends/nodes)), commas(int64(nodes)))
	limit := "memory per connection"
	switch math.Max(nodesCPU, math.Max(nodesMem, nodesThr)) {
	case nodesCPU:
		limit = "CPU"
	case nodesThr:
		limit = "the message rate one node sustains within the p99 bound"
	}
	p("The binding limit is **%s**. Nodes of more cores scale the CPU and rate limits about linearly if the store scales with them (one committer per node does not: the cluster's PostgreSQL store is what makes this a horizontal plan).\n\n", limit)

	// Storage.
	perDay := avgSends * 86400 * ((1-a.GroupShare)*sc.DirectFile + a.GroupShare*groupFile)
	liveDay := perDay / sc.JournalFactor
	p("## Storage, history kept forever\n\n| | per day | per year | after 5 years |\n|---|---:|---:|---:|\n")
	if sc.JournalFactor >= 2 {
		p("| written to the store file (journal + data) | %s | %s | %s |\n", bytesH(perDay), bytesH(perDay*365), bytesH(perDay*365*5))
		p("| live history (after compaction) | %s | %s | %s |\n", bytesH(liveDay), bytesH(liveDay*365), bytesH(liveDay*365*5))
	} else {
		p("| history on disk (as flushed; compaction shrinks it further) | %s | %s | %s |\n", bytesH(liveDay), bytesH(liveDay*365), bytesH(liveDay*365*5))
	}
	p("| messages | %s | %s | %s |\n\n", commas(int64(avgSends*86400)), commas(int64(avgSends*86400*365)), commas(int64(avgSends*86400*365*5)))
	if sc.JournalFactor >= 2 {
		heapDay := avgSends * 86400 * ((1-a.GroupShare)*sc.DirectHeap + a.GroupShare*sc.GroupHeap*(a.GroupSize/float64(sc.GroupMembers)))
		p("The single-node store keeps every key in memory (%s B of heap per 1:1 message measured): %s of RAM per day of history at this load, so the embedded store holds hours, not years, of it. History kept forever is the cluster's PostgreSQL store, sized by the live-history row (plus its own index and page overhead).\n\n", f(sc.DirectHeap), bytesH(heapDay))
	} else {
		p("The embedded store keeps history on disk (Pebble), not in memory: one node stops at its disk, %s a day at this load, not at its RAM.\n\n", bytesH(liveDay))
	}

	if wire != nil {
		bw := peakSends * wire.BytesPerMsg
		p("## Network\n\nAt the peak hour, %s msg/s × %s B on the wire per 1:1 message (WebSocket, headers and echo included) is %s/s between clients and nodes, before TLS and TCP/IP headers; group deliveries add about %s B each.\n", commas(int64(peakSends)), f(wire.BytesPerMsg), bytesH(bw), f(wire.EventBytes))
	}
	return b.String()
}

func bytesH(v float64) string {
	units := []string{"B", "KB", "MB", "GB", "TB", "PB", "EB"}
	i := 0
	for math.Abs(v) >= 1000 && i < len(units)-1 {
		v /= 1000
		i++
	}
	return f(v) + " " + units[i]
}
