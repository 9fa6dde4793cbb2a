// Package natstest starts a real nats-server (Debian's package) for tests.
package natstest

import (
	"fmt"
	"net"
	"os"
	"os/exec"
	"strconv"
	"syscall"
	"testing"
	"time"
)

// Server is a running nats-server on 127.0.0.1.
type Server struct {
	t    testing.TB
	bin  string
	port int
	cmd  *exec.Cmd
	exit chan struct{}
}

// Binary finds nats-server: $CHATGATE_NATS_SERVER, else PATH. A missing
// binary fails the test: scripts/install-deps installs it.
func Binary(t testing.TB) string {
	t.Helper()
	if b := os.Getenv("CHATGATE_NATS_SERVER"); b != "" {
		return b
	}
	b, err := exec.LookPath("nats-server")
	if err != nil {
		t.Fatalf("nats-server not found (run scripts/install-deps, or apt-get install nats-server): %v", err)
	}
	return b
}

// Start starts a server on a free port and stops it when the test ends.
func Start(t testing.TB) *Server {
	t.Helper()
	s := &Server{t: t, bin: Binary(t), port: freePort(t)}
	s.start()
	t.Cleanup(s.Stop)
	return s
}

// URL is the server's client URL.
func (s *Server) URL() string { return "nats://127.0.0.1:" + strconv.Itoa(s.port) }

func (s *Server) start() {
	s.t.Helper()
	cmd := exec.Command(s.bin, "-a", "127.0.0.1", "-p", strconv.Itoa(s.port))
	cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
	if err := cmd.Start(); err != nil {
		s.t.Fatalf("start nats-server: %v", err)
	}
	s.cmd, s.exit = cmd, make(chan struct{})
	go func(exit chan struct{}) { _ = cmd.Wait(); close(exit) }(s.exit)
	deadline := time.Now().Add(10 * time.Second)
	for {
		c, err := net.DialTimeout("tcp", fmt.Sprintf("127.0.0.1:%d", s.port), time.Second)
		if err == nil {
			c.Close()
			return
		}
		select {
		case <-s.exit:
			s.t.Fatalf("nats-server exited at start")
		default:
		}
		if time.Now().After(deadline) {
			s.t.Fatalf("nats-server did not listen on %d: %v", s.port, err)
		}
		time.Sleep(20 * time.Millisecond) // polling a port: there is no event to await
	}
}

// Stop kills the server (idempotent).
func (s *Server) Stop() {
	if s.cmd == nil {
		return
	}
	_ = s.cmd.Process.Kill()
	<-s.exit
	s.cmd = nil
}

// Restart kills the server and starts a new one on the same port.
func (s *Server) Restart() {
	s.t.Helper()
	s.Stop()
	s.start()
}

func freePort(t testing.TB) int {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port
}
