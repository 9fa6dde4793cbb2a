package main

import (
	"fmt"
	"io"
	"os"
	"strings"
	"sync"
	"time"
)

// progress draws a bar on stderr: one redrawn line on a terminal, one
// line per stage otherwise (CI logs). Work is weighed in estimated
// seconds per stage.
type progress struct {
	w   io.Writer
	tty bool

	mu         sync.Mutex
	total      float64
	done       float64
	stageEst   float64
	stageStart time.Time
	stageFrac  float64 // share of the stage done, when known (advance); < 0: by time
	label      string
	detail     string
	start      time.Time
	lastLine   time.Time

	quit chan struct{}
	wg   sync.WaitGroup
}

func newProgress(w io.Writer, total float64) *progress {
	p := &progress{w: w, total: max(total, 1), start: time.Now(), stageStart: time.Now(), stageFrac: -1, quit: make(chan struct{})}
	if f, ok := w.(*os.File); ok {
		if st, err := f.Stat(); err == nil && st.Mode()&os.ModeCharDevice != 0 {
			p.tty = true
		}
	}
	if p.tty {
		p.wg.Add(1)
		go func() {
			defer p.wg.Done()
			t := time.NewTicker(200 * time.Millisecond)
			defer t.Stop()
			for {
				select {
				case <-p.quit:
					return
				case <-t.C:
					p.mu.Lock()
					p.draw()
					p.mu.Unlock()
				}
			}
		}()
	}
	return p
}

// stage ends the current stage and starts one estimated at est seconds.
func (p *progress) stage(label string, est float64) {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.done += p.stageEst
	p.stageEst, p.stageStart, p.stageFrac, p.label, p.detail = est, time.Now(), -1, label, ""
	if p.tty {
		p.draw()
	} else {
		fmt.Fprintf(p.w, "[%3.0f%%] %6s  %s\n", 100*p.fraction(), p.elapsed(), label)
	}
}

// skip counts estimated work that will not be done (a ramp that
// stopped early).
func (p *progress) skip(est float64) {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.done += max(est, 0)
}

// advance says how much of the current stage is done (0..1), for stages
// whose progress is counted (messages stored) rather than timed.
func (p *progress) advance(frac float64) {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.stageFrac = min(max(frac, 0), 1)
}

// note sets a detail shown after the stage label (terminals only; on
// other outputs at most one line per 5 s).
func (p *progress) note(detail string) {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.detail = detail
	if !p.tty && time.Since(p.lastLine) >= 5*time.Second {
		p.lastLine = time.Now()
		fmt.Fprintf(p.w, "[%3.0f%%] %6s  %s: %s\n", 100*p.fraction(), p.elapsed(), p.label, detail)
	}
}

// log prints a line above the bar.
func (p *progress) log(format string, args ...any) {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.tty {
		fmt.Fprint(p.w, "\r\033[K")
	}
	fmt.Fprintf(p.w, format+"\n", args...)
	if p.tty {
		p.draw()
	}
}

func (p *progress) finish() {
	close(p.quit)
	p.wg.Wait()
	p.mu.Lock()
	defer p.mu.Unlock()
	p.done, p.stageEst, p.label, p.detail = p.total, 0, "done", ""
	if p.tty {
		p.draw()
		fmt.Fprintln(p.w)
	} else {
		fmt.Fprintf(p.w, "[100%%] %6s  done\n", p.elapsed())
	}
}

func (p *progress) elapsed() string { return time.Since(p.start).Round(time.Second).String() }

func (p *progress) fraction() float64 {
	in := min(time.Since(p.stageStart).Seconds(), p.stageEst)
	if p.stageFrac >= 0 {
		in = p.stageFrac * p.stageEst
	}
	return min((p.done+in)/p.total, 1)
}

func (p *progress) draw() {
	const width = 30
	f := p.fraction()
	n := int(f * width)
	bar := strings.Repeat("█", n) + strings.Repeat("░", width-n)
	line := fmt.Sprintf("%s %3.0f%% %6s  %s", bar, 100*f, p.elapsed(), p.label)
	if p.detail != "" {
		line += " · " + p.detail
	}
	if len(line) > 140 {
		line = line[:140]
	}
	fmt.Fprintf(p.w, "\r\033[K%s", line)
}
