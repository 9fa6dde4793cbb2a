// Package consultest starts a real Consul agent (`consul agent -dev`) for
// tests. Every port the agent opens is a free one on 127.0.0.1, so several
// test binaries can each run their own agent at the same time.
package consultest

import (
	"bytes"
	"errors"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/hashicorp/consul/api"
)

// startTimeout bounds how long an agent may take to elect itself leader and
// register its own node; a dev agent needs about a second on an idle machine.
const startTimeout = 30 * time.Second

// Agent is a running Consul dev agent owned by one test.
type Agent struct {
	t       testing.TB
	cmd     *exec.Cmd
	addr    string // HTTP API, HOST:PORT
	node    string
	log     *syncBuffer
	exited  chan struct{} // closed when the process has exited
	waitErr error         // set before exited is closed
	stop    sync.Once
}

// Binary returns the consul binary tests use: $CHATGATE_CONSUL_BIN (not CHATGATE_CONSUL: that is the -consul flag), else
// ~/.cache/chatgate/bin/consul (what scripts/install-deps builds), else the
// first consul on PATH.
func Binary() (string, error) {
	if p := os.Getenv("CHATGATE_CONSUL_BIN"); p != "" {
		if _, err := os.Stat(p); err != nil {
			return "", fmt.Errorf("CHATGATE_CONSUL_BIN=%s: %w", p, err)
		}
		return p, nil
	}
	if home, err := os.UserHomeDir(); err == nil {
		p := filepath.Join(home, ".cache", "chatgate", "bin", "consul")
		if st, err := os.Stat(p); err == nil && !st.IsDir() {
			return p, nil
		}
	}
	p, err := exec.LookPath("consul")
	if err != nil {
		return "", errors.New("no consul binary: run scripts/install-deps (it builds one into ~/.cache/chatgate/bin/consul) or set CHATGATE_CONSUL_BIN")
	}
	return p, nil
}

// Start starts a dev agent and returns once it is leader, its own node is
// in the catalogue (sessions need that) and it syncs check results without
// delay (see waitReady). The agent is stopped when the test ends. A missing binary fails the test: these tests are part of the suite
// and must not pass silently by skipping.
func Start(t testing.TB) *Agent {
	t.Helper()
	bin, err := Binary()
	if err != nil {
		t.Fatal(err)
	}
	// A free port found by listening and closing can be taken by another
	// process before consul binds it; retrying with fresh ports makes that
	// race harmless.
	var lastErr error
	for attempt := 0; attempt < 3; attempt++ {
		a, err := start(t, bin)
		if err == nil {
			return a
		}
		lastErr = err
		if !strings.Contains(err.Error(), "address already in use") {
			break
		}
	}
	t.Fatalf("consultest: %v", lastErr)
	return nil
}

func start(t testing.TB, bin string) (*Agent, error) {
	ports, err := freePorts(4)
	if err != nil {
		return nil, err
	}
	httpPort, serfLAN, serfWAN, server := ports[0], ports[1], ports[2], ports[3]
	node := fmt.Sprintf("consultest-%d-%d", os.Getpid(), httpPort)
	// Sessions shorter than Consul's default 10 s minimum keep the node-id
	// lease tests fast; everything the tests do not use is switched off so
	// the agent starts quickly and opens no fixed port.
	hcl := fmt.Sprintf(`
ports {
  http = %d
  https = -1
  dns = -1
  grpc = -1
  grpc_tls = -1
  serf_lan = %d
  serf_wan = %d
  server = %d
}
session_ttl_min = "1s"
disable_update_check = true
connect { enabled = false }
peering { enabled = false }
`, httpPort, serfLAN, serfWAN, server)
	dir := t.TempDir()
	cfgFile := filepath.Join(dir, "consultest.hcl")
	if err := os.WriteFile(cfgFile, []byte(hcl), 0o600); err != nil {
		return nil, fmt.Errorf("write agent config: %w", err)
	}
	dataDir := filepath.Join(dir, "data")
	cmd := exec.Command(bin, "agent", "-dev",
		"-node", node,
		"-bind", "127.0.0.1", "-client", "127.0.0.1",
		"-data-dir", dataDir,
		"-config-file", cfgFile,
		"-log-level", "warn",
	)
	logs := &syncBuffer{}
	cmd.Stdout, cmd.Stderr = logs, logs
	cmd.SysProcAttr = procAttr()
	if err := cmd.Start(); err != nil {
		return nil, fmt.Errorf("start %s: %w", bin, err)
	}
	a := &Agent{
		t: t, cmd: cmd, addr: net.JoinHostPort("127.0.0.1", strconv.Itoa(httpPort)),
		node: node, log: logs, exited: make(chan struct{}),
	}
	go func() {
		a.waitErr = cmd.Wait()
		close(a.exited)
	}()
	t.Cleanup(func() {
		a.Stop()
		if t.Failed() {
			t.Logf("consul agent %s log:\n%s", a.addr, a.log.String())
		}
	})
	if err := a.waitReady(); err != nil {
		a.Stop()
		return nil, fmt.Errorf("%w\nagent log:\n%s", err, a.log.String())
	}
	return a, nil
}

// waitReady polls until the agent has a leader, its node is registered and
// it syncs check results to the catalogue promptly. The last matters for
// tests that time health changes. Consul 1.14's agent syncs changes made
// through its HTTP API (registrations, TTL updates) at once, but the results
// of its own check runs go through its anti-entropy loop, and winning the
// election makes that loop wait a random stagger of up to 3 s before a full
// sync, syncing nothing else meanwhile (agent/ae: the "new leader" event
// triggers SyncFull; syncChangesEventFn waits out the stagger first). A
// check turning passing or critical in the agent's first seconds would show
// seconds late. So the harness registers a probe whose TTL check expires on
// its own and waits until the catalogue shows that promptly.
func (a *Agent) waitReady() error {
	c := a.Client()
	deadline := time.Now().Add(startTimeout)
	wait := func(what string, cond func() (bool, error)) error {
		for {
			select {
			case <-a.exited:
				return fmt.Errorf("consul agent exited before it was ready: %v", a.waitErr)
			default:
			}
			ok, err := cond()
			if ok {
				return nil
			}
			if time.Now().After(deadline) {
				return fmt.Errorf("consul agent on %s: %s not within %s (last error: %v)", a.addr, what, startTimeout, err)
			}
			time.Sleep(20 * time.Millisecond)
		}
	}
	err := wait("leader and node registration", func() (bool, error) {
		leader, err := c.Status().Leader()
		if err != nil || leader == "" {
			return false, err
		}
		n, _, err := c.Catalog().Node(a.node, nil)
		return err == nil && n != nil && n.Node != nil, err
	})
	if err != nil {
		return err
	}
	// The probe's TTL check turns critical on its own, which the loop must
	// sync; two such results synced promptly in a row mean no stagger wait
	// is running or pending (an idle loop takes a pending full sync at once,
	// so a second one would be caught by the second probe).
	const probe, ttl = "consultest-sync-probe", 150 * time.Millisecond
	err = c.Agent().ServiceRegister(&api.AgentServiceRegistration{
		ID: probe, Name: probe,
		Check: &api.AgentServiceCheck{CheckID: probe, TTL: ttl.String(), Status: api.HealthCritical},
	})
	if err != nil {
		return fmt.Errorf("register sync probe: %w", err)
	}
	critical := func() (bool, error) {
		checks, _, err := c.Health().Checks(probe, nil)
		return err == nil && len(checks) == 1 && checks[0].Status == api.HealthCritical, err
	}
	for prompt := 0; prompt < 2; {
		// Passing through the API is synced at once; turning critical is not.
		if err := c.Agent().PassTTL(probe, ""); err != nil {
			return fmt.Errorf("pass sync probe: %w", err)
		}
		passed := time.Now()
		if err := wait("sync of a check result", critical); err != nil {
			return err
		}
		if time.Since(passed) < ttl+150*time.Millisecond {
			prompt++
		} else {
			prompt = 0
		}
	}
	if err := c.Agent().ServiceDeregister(probe); err != nil {
		return fmt.Errorf("deregister sync probe: %w", err)
	}
	return nil
}

// Addr is the HOST:PORT of the agent's HTTP API.
func (a *Agent) Addr() string { return a.addr }

// Node is the agent's node name.
func (a *Agent) Node() string { return a.node }

// Client returns a new API client for the agent.
func (a *Agent) Client() *api.Client {
	cfg := api.DefaultConfig()
	cfg.Address = a.addr
	cfg.Scheme = "http"
	cfg.Token = "" // never pick up CONSUL_HTTP_TOKEN from the environment
	c, err := api.NewClient(cfg)
	if err != nil {
		a.t.Fatalf("consultest: api client: %v", err)
	}
	return c
}

// Stop stops the agent (SIGTERM, then SIGKILL after a few seconds) and waits
// for it to exit. Safe to call more than once; tests call it to simulate
// losing Consul.
func (a *Agent) Stop() {
	a.stop.Do(func() {
		_ = a.cmd.Process.Signal(syscall.SIGTERM)
		select {
		case <-a.exited:
			return
		case <-time.After(5 * time.Second):
		}
		_ = a.cmd.Process.Kill()
		<-a.exited
	})
}

// freePorts returns n distinct ports that were free for TCP and UDP (serf
// uses both on the same number) on 127.0.0.1 a moment ago.
func freePorts(n int) ([]int, error) {
	var ports []int
	var held []func()
	defer func() {
		for _, release := range held {
			release()
		}
	}()
	for tries := 0; len(ports) < n; tries++ {
		if tries > 100 {
			return nil, errors.New("no free ports on 127.0.0.1")
		}
		l, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			return nil, fmt.Errorf("find a free port: %w", err)
		}
		port := l.Addr().(*net.TCPAddr).Port
		u, err := net.ListenPacket("udp", net.JoinHostPort("127.0.0.1", strconv.Itoa(port)))
		if err != nil {
			l.Close()
			continue
		}
		// Held until all are found, so the same port is not handed out twice.
		held = append(held, func() { l.Close(); u.Close() })
		ports = append(ports, port)
	}
	return ports, nil
}

// syncBuffer collects the agent's output for the failure log.
type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	// The agent runs for a whole test; keep the failure log bounded.
	if s.b.Len() > 1<<20 {
		return len(p), nil
	}
	return s.b.Write(p)
}

func (s *syncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}
