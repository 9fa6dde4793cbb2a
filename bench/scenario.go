package main

import (
	"context"
	"fmt"
	"math"
	"sync"
	"sync/atomic"
	"time"
)

// Result is one row of results.json: one system × transport × scenario.
// Figures that do not apply to a scenario are 0.
type Result struct {
	System    string `json:"system"`
	Transport string `json:"transport"`
	Scenario  string `json:"scenario"`

	OfferedPerS float64 `json:"offered_per_s"` // messages/s the generator aimed at (fan-out: group messages/s)
	P50ms       float64 `json:"p50_ms"`
	P95ms       float64 `json:"p95_ms"`
	P99ms       float64 `json:"p99_ms"`
	MaxMs       float64 `json:"max_ms"`
	MsgsPerS    float64 `json:"msgs_per_s"` // delivered messages/s (fan-out: deliveries/s)

	BytesPerMsg     float64 `json:"bytes_per_msg"` // both directions, counted at the client sockets
	UpBytesPerMsg   float64 `json:"up_bytes_per_msg"`
	DownBytesPerMsg float64 `json:"down_bytes_per_msg"`
	PayloadBytes    int     `json:"payload_bytes"` // message content
	EventBytes      float64 `json:"event_bytes"`   // mean event JSON as delivered

	IdleConns             int     `json:"idle_conns"`
	IdleBytesPerConn      float64 `json:"idle_bytes_per_conn"` // server memory per idle connection: live Go heap + stacks after a GC
	IdleRSSPerConn        float64 `json:"idle_rss_per_conn"`   // server RSS growth per idle connection (adds GC headroom; noisy for small N)
	IdleGoroutinesPerConn float64 `json:"idle_goroutines_per_conn"`
	IdleReqPerS           float64 `json:"idle_req_per_s"`            // HTTP requests/s all idle clients together cost
	IdleBytesPerSPerConn  float64 `json:"idle_bytes_per_s_per_conn"` // wire bytes/s one idle client costs
	IdleCPUPct            float64 `json:"idle_cpu_pct"`              // server CPU the idle clients cost, % of one core

	CPUusPerMsg  float64 `json:"cpu_us_per_msg"` // server CPU per delivered message (fan-out: per delivery)
	ServerCPUPct float64 `json:"server_cpu_pct"` // % of one core
	LoadCPUPct   float64 `json:"load_cpu_pct"`   // the load generator's CPU, % of one core
	ServerRSSMB  float64 `json:"server_rss_mb"`

	Delivered  int64 `json:"delivered"`
	Lost       int64 `json:"lost"`
	SendErrors int64 `json:"send_errors"`
	Missed     int64 `json:"missed"` // sends the generator could not start in time
	Drops      int64 `json:"drops"`  // load connections the server closed during the step
	Sustained  bool  `json:"sustained"`

	FloorBytesPerMsg float64 `json:"floor_bytes_per_msg"`
	FloorP50ms       float64 `json:"floor_p50_ms"`
	FloorP99ms       float64 `json:"floor_p99_ms"`
	BytesVsFloor     float64 `json:"bytes_vs_floor"`
	P50VsFloor       float64 `json:"p50_vs_floor"`

	Steps []Step `json:"steps,omitempty"`
	Note  string `json:"note,omitempty"`
}

// Step is one rate of a ramp.
type Step struct {
	OfferedPerS float64 `json:"offered_per_s"`
	MsgsPerS    float64 `json:"msgs_per_s"`
	P50ms       float64 `json:"p50_ms"`
	P99ms       float64 `json:"p99_ms"`
	CPUusPerMsg float64 `json:"cpu_us_per_msg"`
	Lost        int64   `json:"lost"`
	Missed      int64   `json:"missed"`
	SendErrors  int64   `json:"send_errors"`
	Sustained   bool    `json:"sustained"`
	Drops       int64   `json:"drops,omitempty"` // load connections the server closed
	Retry       bool    `json:"retry,omitempty"` // a second attempt after a p99-only failure
}

// stepKind is what the generator sends.
type stepKind int

const (
	direct stepKind = iota // 1:1, every fleet user to its partner
	group                  // to the group of the whole fleet
)

// stepOut is the raw measurement of one load step.
type stepOut struct {
	offered            float64
	window             time.Duration
	scheduled, missed  int64
	okInWindow, errs   int64
	fan                int
	lat                latency
	deliveredBySend    int64 // deliveries of messages sent in the window
	deliveredInWindow  int64 // deliveries received while the window was open
	evBytes            int64
	wire               meterSnap
	serverCPU, loadCPU time.Duration
	rss                int64
	drops              int64 // load connections the server closed during the step
}

func (o stepOut) expected() int64 { return o.okInWindow * int64(o.fan) }
func (o stepOut) lost() int64     { return max(o.expected()-o.deliveredBySend, 0) }

// rate is the delivered rate: deliveries of the messages sent in the
// window, per second of window (robust to polling's lumpy arrivals).
func (o stepOut) rate() float64 { return float64(o.deliveredBySend) / o.window.Seconds() }

// sustained: the generator kept the rate, nothing was lost and the
// server delivered what was sent.
func (o stepOut) sustained(bound time.Duration) bool {
	if o.scheduled == 0 || o.okInWindow == 0 {
		return false
	}
	sentRate := float64(o.okInWindow) / o.window.Seconds()
	perRecipient := o.offered // messages/s
	return float64(o.missed) <= 0.01*float64(o.scheduled) &&
		o.errs == 0 && o.lost() == 0 &&
		sentRate >= 0.95*perRecipient &&
		(bound <= 0 || o.lat.p99 <= bound)
}

// onlySlow reports a step that kept the rate and lost nothing but whose
// p99 passed the bound: on a shared machine that may be a hiccup, worth a
// second attempt.
func (o stepOut) onlySlow(bound time.Duration) bool {
	return !o.sustained(bound) && o.sustained(0)
}

// runStep drives t at rate messages/s for dur and measures. The first
// fifth of dur warms up; the rest is the window.
func runStep(ctx context.Context, t target, cur *current, kind stepKind, rate float64, dur, drain time.Duration, senders, inflight int) (stepOut, error) {
	out := stepOut{offered: rate, fan: 1}
	if kind == group {
		out.fan = t.GroupSize() - 1
	}
	drops0 := t.Drops()
	rec := newRecorder()
	cur.p.Store(rec)
	defer cur.p.Store(nil)

	warm := max(dur/5, 300*time.Millisecond)
	ctx, cancel := context.WithTimeout(ctx, dur+drain+30*time.Second)
	defer cancel()

	type job struct{}
	chans := make([]chan job, senders)
	var wg sync.WaitGroup
	var okIn, errs atomic.Int64
	stopAt := time.Now().Add(dur)
	payload := payloadSize
	for s := range senders {
		chans[s] = make(chan job, inflight)
		for range inflight {
			wg.Add(1)
			go func() {
				defer wg.Done()
				for range chans[s] {
					if ctx.Err() != nil || time.Now().After(stopAt) {
						continue // drain what is queued without sending
					}
					content := stamp(payload)
					sent, _ := unstamp(content)
					var err error
					if kind == group {
						err = t.SendGroup(ctx, s, content)
					} else {
						err = t.SendDirect(ctx, s, content)
					}
					from, to := rec.from.Load(), rec.to.Load()
					if sent >= from && (to == 0 || sent < to) {
						if err != nil {
							errs.Add(1)
						} else {
							okIn.Add(1)
						}
					}
				}
			}()
		}
	}

	// The scheduler hands out sends at the rate, round-robin; a sender
	// whose in-flight budget is used up misses its turn (counted).
	start := time.Now()
	var scheduled, missed, schedIn, missedIn int64
	var snapA meterSnap
	var cpuA, loadA time.Duration
	opened := false
	next := 0
	tick := time.NewTicker(time.Millisecond)
loop:
	for {
		select {
		case <-ctx.Done():
			break loop
		case now := <-tick.C:
			el := now.Sub(start)
			if !opened && el >= warm {
				opened = true
				snapA = t.Meter().snap()
				ps, _ := sampleProc(t.Server().pid())
				cpuA, loadA = ps.cpu, selfCPU()
				rec.from.Store(nowNanos())
				rec.open.Store(true)
			}
			if el >= dur {
				break loop
			}
			due := int64(rate * el.Seconds())
			for scheduled < due {
				scheduled++
				if opened {
					schedIn++
				}
				select {
				case chans[next] <- job{}:
				default:
					missed++
					if opened {
						missedIn++
					}
				}
				next = (next + 1) % senders
			}
		}
	}
	tick.Stop()
	end := time.Now()
	rec.to.Store(nowNanos())
	rec.open.Store(false)
	out.wire = t.Meter().snap().sub(snapA)
	ps, _ := sampleProc(t.Server().pid())
	out.serverCPU, out.loadCPU, out.rss = ps.cpu-cpuA, selfCPU()-loadA, ps.rss
	out.window = end.Sub(start) - warm
	out.deliveredInWindow = rec.inWindow.Load()
	out.evBytes = rec.evBytes.Load()
	for _, ch := range chans {
		close(ch)
	}
	wg.Wait() // in-flight sends finish (bounded by the step context)
	out.scheduled, out.missed = schedIn, missedIn
	out.okInWindow, out.errs = okIn.Load(), errs.Load()

	// Wait for the deliveries of what was sent, or the drain time.
	deadline := time.Now().Add(drain)
	for rec.delivered.Load() < out.expected() && time.Now().Before(deadline) && ctx.Err() == nil {
		time.Sleep(10 * time.Millisecond)
	}
	out.deliveredBySend = rec.delivered.Load()
	out.drops = t.Drops() - drops0
	out.lat = rec.summary()
	if !opened {
		return out, fmt.Errorf("step ended before its window opened")
	}
	return out, nil
}

// payloadSize is the message content size in bytes (set from -payload).
var payloadSize = 100

func ms(d time.Duration) float64 { return math.Round(float64(d)/1e3) / 1e3 }

func round(v float64, digits int) float64 {
	p := math.Pow(10, float64(digits))
	return math.Round(v*p) / p
}

// fill copies a step's measurements into a result row.
func (r *Result) fill(o stepOut, bound time.Duration) {
	r.OfferedPerS = o.offered
	r.P50ms, r.P95ms, r.P99ms, r.MaxMs = ms(o.lat.p50), ms(o.lat.p95), ms(o.lat.p99), ms(o.lat.max)
	r.MsgsPerS = round(o.rate(), 1)
	if n := o.deliveredInWindow; n > 0 {
		r.UpBytesPerMsg = round(float64(o.wire.up)/float64(n), 1)
		r.DownBytesPerMsg = round(float64(o.wire.down)/float64(n), 1)
		r.BytesPerMsg = round(r.UpBytesPerMsg+r.DownBytesPerMsg, 1)
		r.EventBytes = round(float64(o.evBytes)/float64(n), 1)
		r.CPUusPerMsg = round(float64(o.serverCPU.Microseconds())/float64(n), 2)
	}
	r.PayloadBytes = payloadSize
	r.ServerCPUPct = round(100*o.serverCPU.Seconds()/o.window.Seconds(), 1)
	r.LoadCPUPct = round(100*o.loadCPU.Seconds()/o.window.Seconds(), 1)
	r.ServerRSSMB = round(float64(o.rss)/(1<<20), 1)
	r.Delivered = o.deliveredBySend
	r.Lost = o.lost()
	r.SendErrors = o.errs
	r.Missed = o.missed
	r.Drops = o.drops
	r.Sustained = o.sustained(bound)
}

func (o stepOut) step(bound time.Duration) Step {
	s := Step{
		OfferedPerS: o.offered, MsgsPerS: round(o.rate(), 1),
		P50ms: ms(o.lat.p50), P99ms: ms(o.lat.p99),
		Lost: o.lost(), Missed: o.missed, SendErrors: o.errs, Sustained: o.sustained(bound), Drops: o.drops,
	}
	if o.deliveredInWindow > 0 {
		s.CPUusPerMsg = round(float64(o.serverCPU.Microseconds())/float64(o.deliveredInWindow), 2)
	}
	return s
}

// idleOut is the raw measurement of the idle scenario.
type idleOut struct {
	n                   int
	before, after       runtimeSample
	rssBefore, rssAfter int64
	wire                meterSnap
	window              time.Duration
	cpu                 time.Duration
	connectTime         time.Duration
}

// runIdle connects n idle clients, measures the server's memory and
// goroutines per connection, then what the idle clients cost per second.
func runIdle(ctx context.Context, t target, n int, settle, window time.Duration, progress func(string)) (idleOut, error) {
	out := idleOut{n: n, window: window}
	rt, err := sampleRuntime(t.Server().debug, true)
	if err != nil && t.Server().debug != "" {
		return out, err
	}
	out.before = rt
	ps, _ := sampleProc(t.Server().pid())
	out.rssBefore = ps.rss
	t0 := time.Now()
	closeAll, err := t.ConnectIdle(ctx, n, func(up int) {
		if up%max(n/50, 1) == 0 {
			progress(fmt.Sprintf("%d/%d idle connections", up, n))
		}
	})
	if err != nil {
		return out, err
	}
	defer closeAll()
	out.connectTime = time.Since(t0)
	if !sleepCtx(ctx, settle) {
		return out, ctx.Err()
	}
	if t.Server().debug != "" {
		if out.after, err = sampleRuntime(t.Server().debug, true); err != nil {
			return out, err
		}
	}
	ps, _ = sampleProc(t.Server().pid())
	out.rssAfter = ps.rss
	progress(fmt.Sprintf("%d idle connections, measuring %s", n, window))
	a := t.Meter().snap()
	cpuA := ps.cpu
	if !sleepCtx(ctx, window) {
		return out, ctx.Err()
	}
	out.wire = t.Meter().snap().sub(a)
	ps, _ = sampleProc(t.Server().pid())
	out.cpu = ps.cpu - cpuA
	progress(fmt.Sprintf("closing %d idle connections", n))
	return out, nil
}

func (r *Result) fillIdle(o idleOut) {
	n := float64(o.n)
	r.IdleConns = o.n
	r.IdleRSSPerConn = round(float64(o.rssAfter-o.rssBefore)/n, 0)
	if o.after.goroutines > 0 {
		r.IdleBytesPerConn = round(float64((o.after.heapInuse+o.after.stackInuse)-(o.before.heapInuse+o.before.stackInuse))/n, 0)
		r.IdleGoroutinesPerConn = round(float64(o.after.goroutines-o.before.goroutines)/n, 2)
	}
	w := o.window.Seconds()
	r.IdleReqPerS = round(float64(o.wire.reqs)/w, 1)
	r.IdleBytesPerSPerConn = round(float64(o.wire.up+o.wire.down)/w/n, 2)
	r.IdleCPUPct = round(100*o.cpu.Seconds()/w, 2)
	r.ServerRSSMB = round(float64(o.rssAfter)/(1<<20), 1)
	r.Sustained = true
}

func sleepCtx(ctx context.Context, d time.Duration) bool {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-ctx.Done():
		return false
	case <-t.C:
		return true
	}
}
