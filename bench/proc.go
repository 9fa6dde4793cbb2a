package main

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"syscall"
	"time"
)

// clockTicks is USER_HZ, the unit of utime and stime in /proc/<pid>/stat.
// It is 100 on every Linux architecture Go supports.
const clockTicks = 100

// server is a process under measurement (chatgate or the peer), started
// by the bench and stopped by it.
type server struct {
	name    string
	cmd     *exec.Cmd
	base    string // http://127.0.0.1:port
	debug   string // base URL of net/http/pprof, "" if none
	logPath string
	exited  chan struct{}
	waitErr error
	started time.Time // just before the exec
	healthy time.Time // the first 200 from the health endpoint
}

// serverWait bounds how long a server may take to become healthy and to
// stop after SIGTERM. A node that loads a large history at start needs
// more than the default (-prefill raises it).
var serverWait = 30 * time.Second

// freeAddr returns a loopback address with a port free at the time of
// asking.
func freeAddr() (string, error) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return "", err
	}
	defer ln.Close()
	return ln.Addr().String(), nil
}

// startProcess runs bin with args, its output going to logPath, and waits
// until health answers 200 (or the process dies, or serverWait passes).
func startProcess(name, bin string, args []string, base, health, debug, logPath string) (*server, error) {
	if err := os.WriteFile(logPath, nil, 0o644); err != nil { // a fresh log
		return nil, err
	}
	return launch(name, bin, args, base, health, debug, logPath, serverWait, 50*time.Millisecond)
}

// launch is startProcess with its bounds: how long the server may take to
// become healthy, and how often health is asked (the resolution of
// s.healthy - s.started). The output is appended to logPath (a restarted
// server adds to its log).
func launch(name, bin string, args []string, base, health, debug, logPath string, wait, every time.Duration) (*server, error) {
	logf, err := os.OpenFile(logPath, os.O_WRONLY|os.O_CREATE|os.O_APPEND, 0o644)
	if err != nil {
		return nil, err
	}
	cmd := exec.Command(bin, args...)
	cmd.Stdout, cmd.Stderr = logf, logf
	// If the bench dies, so does the server it started.
	cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
	started := time.Now()
	if err := cmd.Start(); err != nil {
		logf.Close()
		return nil, fmt.Errorf("start %s: %w", name, err)
	}
	s := &server{name: name, cmd: cmd, base: base, debug: debug, logPath: logPath, exited: make(chan struct{}), started: started}
	go func() {
		s.waitErr = cmd.Wait()
		logf.Close()
		close(s.exited)
	}()
	hc := &http.Client{Timeout: time.Second, Transport: &http.Transport{Proxy: nil, DisableKeepAlives: true}}
	deadline := started.Add(wait)
	for {
		select {
		case <-s.exited:
			return nil, fmt.Errorf("%s exited at start: %v\n%s", name, s.waitErr, tailFile(logPath, 2000))
		default:
		}
		resp, err := hc.Get(base + health)
		if err == nil {
			resp.Body.Close()
			if resp.StatusCode == http.StatusOK {
				s.healthy = time.Now()
				return s, nil
			}
		}
		if time.Now().After(deadline) {
			s.stop()
			return nil, fmt.Errorf("%s did not become healthy in %s\n%s", name, wait, tailFile(logPath, 2000))
		}
		time.Sleep(every)
	}
}

// stop sends SIGTERM, waits up to serverWait, then kills.
func (s *server) stop() error {
	_, err := s.stopWithin(serverWait)
	return err
}

// stopWithin sends SIGTERM and waits up to wait for the process to exit
// (then kills it); it returns how long the exit took. A non-zero exit
// status after SIGTERM is not an error here (see exitCode).
func (s *server) stopWithin(wait time.Duration) (time.Duration, error) {
	if s == nil {
		return 0, nil
	}
	t0 := time.Now()
	_ = s.cmd.Process.Signal(syscall.SIGTERM)
	select {
	case <-s.exited:
	case <-time.After(wait):
		_ = s.cmd.Process.Kill()
		<-s.exited
		return time.Since(t0), fmt.Errorf("%s did not stop within %s of SIGTERM; killed", s.name, wait)
	}
	took := time.Since(t0)
	var ee *exec.ExitError
	if s.waitErr != nil && !errors.As(s.waitErr, &ee) {
		return took, s.waitErr
	}
	return took, nil
}

// exitCode is the exit status of a process that has exited (-1: killed
// by a signal).
func (s *server) exitCode() int { return s.cmd.ProcessState.ExitCode() }

func (s *server) pid() int { return s.cmd.Process.Pid }

// procSample is what /proc says about a process at one moment.
type procSample struct {
	at      time.Time
	cpu     time.Duration // utime + stime
	rss     int64         // bytes
	hwm     int64         // peak RSS since the process started, bytes
	threads int
}

func sampleProc(pid int) (procSample, error) {
	ps := procSample{at: time.Now()}
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return ps, err
	}
	// The command name (field 2) may hold spaces; fields after it start
	// after the last ')'.
	i := bytes.LastIndexByte(b, ')')
	if i < 0 {
		return ps, errors.New("malformed /proc stat")
	}
	f := strings.Fields(string(b[i+1:]))
	if len(f) < 13 {
		return ps, errors.New("short /proc stat")
	}
	ut, _ := strconv.ParseInt(f[11], 10, 64)
	st, _ := strconv.ParseInt(f[12], 10, 64)
	ps.cpu = time.Duration(ut+st) * time.Second / clockTicks
	sb, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", pid))
	if err != nil {
		return ps, err
	}
	sc := bufio.NewScanner(bytes.NewReader(sb))
	for sc.Scan() {
		line := sc.Text()
		switch {
		case strings.HasPrefix(line, "VmRSS:"):
			kb, _ := strconv.ParseInt(strings.Fields(line)[1], 10, 64)
			ps.rss = kb * 1024
		case strings.HasPrefix(line, "VmHWM:"):
			kb, _ := strconv.ParseInt(strings.Fields(line)[1], 10, 64)
			ps.hwm = kb * 1024
		case strings.HasPrefix(line, "Threads:"):
			ps.threads, _ = strconv.Atoi(strings.Fields(line)[1])
		}
	}
	return ps, nil
}

// selfCPU is the bench process's own CPU time (the load generator).
func selfCPU() time.Duration {
	var ru syscall.Rusage
	if err := syscall.Getrusage(syscall.RUSAGE_SELF, &ru); err != nil {
		return 0
	}
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}

// runtimeSample is the Go runtime's view of a server, read from its pprof
// endpoints.
type runtimeSample struct {
	goroutines int
	heapInuse  int64
	stackInuse int64
	sys        int64
}

var memstatLine = regexp.MustCompile(`(?m)^# (\w+) = (\d+)`)

// sampleRuntime reads goroutines and memory statistics from a pprof debug
// endpoint; gc asks the server to collect garbage first, so heap figures
// count live memory only.
func sampleRuntime(debugBase string, gc bool) (runtimeSample, error) {
	var rs runtimeSample
	if debugBase == "" {
		return rs, errors.New("no debug endpoint")
	}
	hc := &http.Client{Timeout: 30 * time.Second}
	get := func(path string) (string, error) {
		resp, err := hc.Get(debugBase + path)
		if err != nil {
			return "", err
		}
		defer resp.Body.Close()
		if resp.StatusCode != http.StatusOK {
			return "", fmt.Errorf("%s: %s", path, resp.Status)
		}
		b, err := io.ReadAll(io.LimitReader(resp.Body, 64<<20))
		return string(b), err
	}
	heapPath := "/debug/pprof/heap?debug=1"
	if gc {
		heapPath += "&gc=1"
	}
	h, err := get(heapPath)
	if err != nil {
		return rs, err
	}
	for _, m := range memstatLine.FindAllStringSubmatch(h, -1) {
		v, _ := strconv.ParseInt(m[2], 10, 64)
		switch m[1] {
		case "HeapInuse":
			rs.heapInuse = v
		case "StackInuse":
			rs.stackInuse = v
		case "Sys":
			rs.sys = v
		}
	}
	g, err := get("/debug/pprof/goroutine?debug=1")
	if err != nil {
		return rs, err
	}
	// First line: "goroutine profile: total N"
	line, _, _ := strings.Cut(g, "\n")
	if _, err := fmt.Sscanf(line, "goroutine profile: total %d", &rs.goroutines); err != nil {
		return rs, fmt.Errorf("goroutine profile: %q: %w", line, err)
	}
	return rs, nil
}

// tailFile returns the last n bytes of a file, for error messages.
func tailFile(path string, n int64) string {
	f, err := os.Open(path)
	if err != nil {
		return ""
	}
	defer f.Close()
	st, err := f.Stat()
	if err != nil {
		return ""
	}
	off := max(st.Size()-n, 0)
	b := make([]byte, st.Size()-off)
	_, _ = f.ReadAt(b, off)
	return string(b)
}

// buildChatgate compiles ./cmd/chatgate of the module the bench runs in.
func buildChatgate(ctx context.Context, dir string) (string, error) {
	root, err := moduleRoot()
	if err != nil {
		return "", err
	}
	out := filepath.Join(dir, "chatgate")
	cmd := exec.CommandContext(ctx, "go", "build", "-o", out, "./cmd/chatgate")
	cmd.Dir = root
	if b, err := cmd.CombinedOutput(); err != nil {
		return "", fmt.Errorf("go build ./cmd/chatgate: %v\n%s", err, b)
	}
	return out, nil
}

// moduleRoot finds the directory holding go.mod, from the working
// directory upwards.
func moduleRoot() (string, error) {
	d, err := os.Getwd()
	if err != nil {
		return "", err
	}
	for {
		if _, err := os.Stat(filepath.Join(d, "go.mod")); err == nil {
			return d, nil
		}
		p := filepath.Dir(d)
		if p == d {
			return "", errors.New("go.mod not found above the working directory; pass -chatgate BINARY")
		}
		d = p
	}
}

// copyDir copies the regular files of src into dst, subdirectories
// included, streaming (a pre-filled data directory can hold gigabytes).
func copyDir(src, dst string) error {
	return filepath.WalkDir(src, func(path string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		rel, err := filepath.Rel(src, path)
		if err != nil {
			return err
		}
		to := filepath.Join(dst, rel)
		switch {
		case d.IsDir():
			return os.MkdirAll(to, 0o755)
		case !d.Type().IsRegular():
			return nil
		}
		in, err := os.Open(path)
		if err != nil {
			return err
		}
		defer in.Close()
		out, err := os.OpenFile(to, os.O_WRONLY|os.O_CREATE|os.O_TRUNC, 0o644)
		if err != nil {
			return err
		}
		if _, err := io.Copy(out, in); err != nil {
			out.Close()
			return err
		}
		return out.Close()
	})
}

// diskUsage sums the regular files under dir: their sizes, and the bytes
// the file system allocated for them (blocks; preallocated or sparse
// files make the two differ).
func diskUsage(dir string) (size, alloc int64, err error) {
	err = filepath.WalkDir(dir, func(path string, d fs.DirEntry, err error) error {
		if err != nil {
			if errors.Is(err, fs.ErrNotExist) {
				return nil // removed while walking (a store's temporary file)
			}
			return err
		}
		if !d.Type().IsRegular() {
			return nil
		}
		fi, err := d.Info()
		if err != nil {
			if errors.Is(err, fs.ErrNotExist) {
				return nil
			}
			return err
		}
		size += fi.Size()
		if st, ok := fi.Sys().(*syscall.Stat_t); ok {
			alloc += st.Blocks * 512
		}
		return nil
	})
	return size, alloc, err
}

// raiseNoFile lifts the soft open-files limit to the hard one; the
// servers the bench starts inherit it.
func raiseNoFile() (uint64, error) {
	var rl syscall.Rlimit
	if err := syscall.Getrlimit(syscall.RLIMIT_NOFILE, &rl); err != nil {
		return 0, err
	}
	if rl.Cur < rl.Max {
		rl.Cur = rl.Max
		if err := syscall.Setrlimit(syscall.RLIMIT_NOFILE, &rl); err != nil {
			return 0, err
		}
	}
	return rl.Cur, nil
}
