// Package clustertest starts a real cluster for tests: PostgreSQL, NATS
// and a Consul agent (each a real server, see pgtest, natstest and
// consultest), and chatgate nodes on them, either in process (testkit) or
// as processes of the real binary that a test can kill -9.
package clustertest

import (
	"fmt"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/chatgate/chatgate/internal/consultest"
	"github.com/chatgate/chatgate/internal/natstest"
	"github.com/chatgate/chatgate/internal/pgtest"
	"github.com/chatgate/chatgate/internal/testkit"
)

// Env is the shared services of one cluster.
type Env struct {
	PG     *pgtest.Server
	NATS   *natstest.Server
	Consul *consultest.Agent
	Store  string // URL of this cluster's database
}

// Start starts PostgreSQL, NATS and Consul for t and stops them after.
func Start(t *testing.T) *Env {
	t.Helper()
	e := &Env{PG: pgtest.Start(t), NATS: natstest.Start(t), Consul: consultest.Start(t)}
	e.Store = e.PG.CreateDB(t)
	return e
}

// Node starts an in-process node of the cluster (a node id from Consul
// unless an option sets one).
func (e *Env) Node(t *testing.T, opts ...testkit.Option) *testkit.Node {
	t.Helper()
	all := append([]testkit.Option{testkit.WithCluster(e.Store, e.NATS.URL(), e.Consul.Addr()), testkit.WithNodeID(-1)}, opts...)
	return testkit.Start(t, all...)
}

// Proc is a node running as a process of the real binary.
type Proc struct {
	t      *testing.T
	bin    string
	args   []string
	Addr   string
	URL    string
	Log    string
	cmd    *exec.Cmd
	exited chan struct{}
	runs   int
}

// StartProc starts a node process with the cluster flags and extra args,
// on a free port, and waits until its /readyz answers 200. It is killed
// when the test ends.
func (e *Env) StartProc(t *testing.T, extra ...string) *Proc {
	t.Helper()
	addr := "127.0.0.1:" + strconv.Itoa(freePort(t))
	p := &Proc{t: t, bin: testkit.Binary(t), Addr: addr, URL: "http://" + addr}
	p.args = append([]string{
		"-addr", addr, "-public-url", p.URL, "-data", t.TempDir(),
		"-store", e.Store, "-bus", e.NATS.URL(), "-consul", e.Consul.Addr(),
		"-log-level", "info",
	}, extra...)
	p.start()
	t.Cleanup(func() {
		p.Kill()
		if t.Failed() {
			b, _ := os.ReadFile(p.Log)
			t.Logf("log of %s:\n%s", p.URL, tail(b, 6000))
		}
	})
	return p
}

func tail(b []byte, n int) []byte {
	if len(b) > n {
		return b[len(b)-n:]
	}
	return b
}

func (p *Proc) start() {
	t := p.t
	t.Helper()
	p.runs++
	p.Log = filepath.Join(t.TempDir(), fmt.Sprintf("node-%d.log", p.runs))
	logf, err := os.Create(p.Log)
	require.NoError(t, err)
	defer logf.Close()
	cmd := exec.Command(p.bin, p.args...)
	// Its own environment: a CHATGATE_* variable of the developer's must
	// not change the node under test.
	for _, kv := range os.Environ() {
		if !strings.HasPrefix(kv, "CHATGATE_") {
			cmd.Env = append(cmd.Env, kv)
		}
	}
	cmd.Stdout, cmd.Stderr = logf, logf
	cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
	require.NoError(t, cmd.Start())
	p.cmd, p.exited = cmd, make(chan struct{})
	go func(exited chan struct{}) { _ = cmd.Wait(); close(exited) }(p.exited)
	hc := &http.Client{Timeout: time.Second}
	deadline := time.Now().Add(45 * time.Second)
	for {
		select {
		case <-p.exited:
			b, _ := os.ReadFile(p.Log)
			t.Fatalf("node %s exited at start:\n%s", p.URL, tail(b, 4000))
		default:
		}
		if resp, err := hc.Get(p.URL + "/readyz"); err == nil {
			resp.Body.Close()
			if resp.StatusCode == http.StatusOK {
				return
			}
		}
		if time.Now().After(deadline) {
			b, _ := os.ReadFile(p.Log)
			t.Fatalf("node %s not ready within 45 s:\n%s", p.URL, tail(b, 4000))
		}
		time.Sleep(20 * time.Millisecond) // polling readiness: no event to await
	}
}

// Kill sends SIGKILL and waits for the process to end (idempotent).
func (p *Proc) Kill() {
	if p.cmd == nil {
		return
	}
	_ = p.cmd.Process.Signal(syscall.SIGKILL)
	<-p.exited
	p.cmd = nil
}

// Stop sends SIGTERM and waits for a clean exit.
func (p *Proc) Stop() error {
	if p.cmd == nil {
		return nil
	}
	_ = p.cmd.Process.Signal(syscall.SIGTERM)
	select {
	case <-p.exited:
	case <-time.After(30 * time.Second):
		p.Kill()
		return fmt.Errorf("node %s did not stop within 30 s", p.URL)
	}
	err := p.cmd.ProcessState
	p.cmd = nil
	if !err.Success() {
		return fmt.Errorf("node %s exited with %v", p.URL, err)
	}
	return nil
}

// Restart starts the process again with the same flags and address.
func (p *Proc) Restart() {
	p.t.Helper()
	p.Kill()
	p.start()
}

func freePort(t *testing.T) int {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	require.NoError(t, err)
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port
}
