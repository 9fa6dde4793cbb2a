// Package pgtest starts real PostgreSQL servers for tests: the binaries of
// the installed PostgreSQL (/usr/lib/postgresql/*/bin, or the directory in
// $CHATGATE_PG_BIN), a data directory in a fresh temporary directory, a free
// TCP port on 127.0.0.1 and the unix socket in that same directory.
//
// The server is small (shared_buffers 32MB, max_connections 200) but as
// durable as a production one: fsync and synchronous_commit stay on, so a
// test that measures a durable write measures a real one.
//
// PostgreSQL refuses to run as root. When the test runs as root (as CI
// does), initdb and the server run as the "postgres" user, which owns the
// temporary directory.
//
// The usual way is one server per test binary and one fresh database per
// test, which costs a CREATE DATABASE instead of an initdb:
//
//	func TestMain(m *testing.M) { pgtest.Main(m) }
//
//	func TestSomething(t *testing.T) {
//		url := pgtest.NewDB(t) // a new, empty database, dropped after the test
//		...
//	}
//
// Start gives a test a server of its own. If PostgreSQL is not installed the
// test fails (never skips), saying to run scripts/install-deps.
package pgtest

import (
	"context"
	"errors"
	"fmt"
	"net"
	"os"
	"os/exec"
	"os/user"
	"path/filepath"
	"regexp"
	"runtime"
	"sort"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"
)

// Superuser is the name of the cluster's superuser (trust authentication
// on 127.0.0.1 and the socket; the server listens nowhere else).
const Superuser = "postgres"

// Server is a running PostgreSQL server owned by this process.
type Server struct {
	dir  string // temporary directory: data/, the socket, postgres.log
	port int
	cmd  *exec.Cmd

	exited  chan struct{} // closed when the postmaster has exited
	waitErr error         // the postmaster's exit status, once exited is closed
	release chan struct{} // lets the goroutine that started the postmaster end

	admin    *pgxpool.Pool // to the "postgres" database: CREATE/DROP DATABASE
	dbs      atomic.Int64
	stopOnce sync.Once
	stopErr  error
}

// ErrNotInstalled is wrapped by the error of New when no PostgreSQL
// binaries are found.
var ErrNotInstalled = errors.New("PostgreSQL binaries not found (looked in $CHATGATE_PG_BIN and /usr/lib/postgresql/*/bin): run scripts/install-deps")

// Start starts a server for t alone and stops it (removing its files) when
// t ends. It fails t if the server cannot start.
func Start(t testing.TB) *Server {
	t.Helper()
	s, err := New()
	if err != nil {
		t.Fatalf("pgtest: %v", err)
	}
	t.Cleanup(func() {
		if err := s.Stop(); err != nil {
			t.Errorf("pgtest: stop server: %v", err)
		}
	})
	return s
}

// New starts a server; the caller must Stop it.
func New() (*Server, error) {
	bin, err := binDir()
	if err != nil {
		return nil, err
	}
	run, err := runAs()
	if err != nil {
		return nil, err
	}
	dir, err := os.MkdirTemp("", "pgtest-")
	if err != nil {
		return nil, err
	}
	s := &Server{dir: dir}
	if err := s.init(bin, run); err != nil {
		os.RemoveAll(dir)
		return nil, err
	}
	// A port found free may be taken before the server binds it; another
	// one is tried then.
	for attempt := 0; ; attempt++ {
		err = s.start(bin, run)
		if err == nil {
			break
		}
		if attempt >= 4 || !strings.Contains(s.logTail(), "could not bind") {
			os.RemoveAll(dir)
			return nil, err
		}
	}
	if s.admin, err = pgxpool.New(context.Background(), s.URL("postgres")+"&pool_max_conns=4"); err != nil {
		s.Stop()
		return nil, fmt.Errorf("connect to the server: %w", err)
	}
	return s, nil
}

// binDir finds the directory holding initdb and postgres: $CHATGATE_PG_BIN,
// or the newest /usr/lib/postgresql/*/bin.
func binDir() (string, error) {
	has := func(d string) bool {
		for _, b := range []string{"initdb", "postgres"} {
			if fi, err := os.Stat(filepath.Join(d, b)); err != nil || fi.IsDir() {
				return false
			}
		}
		return true
	}
	if d := os.Getenv("CHATGATE_PG_BIN"); d != "" {
		if !has(d) {
			return "", fmt.Errorf("no initdb and postgres in $CHATGATE_PG_BIN=%s: %w", d, ErrNotInstalled)
		}
		return d, nil
	}
	dirs, _ := filepath.Glob("/usr/lib/postgresql/*/bin")
	// Newest major version first (numerically: 9.6 < 10 < 15).
	sort.Slice(dirs, func(i, j int) bool { return version(dirs[i]) > version(dirs[j]) })
	for _, d := range dirs {
		if has(d) {
			return d, nil
		}
	}
	return "", ErrNotInstalled
}

func version(binDir string) float64 {
	v, _ := strconv.ParseFloat(filepath.Base(filepath.Dir(binDir)), 64)
	return v
}

// account is whom the server processes run as: nil for the current user,
// the postgres user when running as root.
type account struct {
	uid, gid uint32
	name     string
}

func runAs() (*account, error) {
	if os.Geteuid() != 0 {
		return nil, nil
	}
	u, err := user.Lookup("postgres")
	if err != nil {
		return nil, fmt.Errorf("running as root, PostgreSQL must run as the postgres user, which does not exist (%v): run scripts/install-deps, or run the tests as another user", err)
	}
	uid, err1 := strconv.ParseUint(u.Uid, 10, 32)
	gid, err2 := strconv.ParseUint(u.Gid, 10, 32)
	if err1 != nil || err2 != nil {
		return nil, fmt.Errorf("postgres user has a non-numeric uid or gid: %s:%s", u.Uid, u.Gid)
	}
	return &account{uid: uint32(uid), gid: uint32(gid), name: u.Username}, nil
}

// command builds a command of the PostgreSQL binaries run as a.
func command(a *account, bin, name string, args ...string) *exec.Cmd {
	cmd := exec.Command(filepath.Join(bin, name), args...)
	cmd.Env = []string{"LC_ALL=C", "LANG=C", "PATH=/usr/bin:/bin", "TZ=UTC"}
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	if a != nil {
		cmd.SysProcAttr.Credential = &syscall.Credential{Uid: a.uid, Gid: a.gid}
		cmd.Dir = "/"
	}
	return cmd
}

// init runs initdb in s.dir/data, owned by a if set.
func (s *Server) init(bin string, a *account) error {
	if a != nil {
		if err := traversable(s.dir, a); err != nil {
			return err
		}
		if err := os.Chown(s.dir, int(a.uid), int(a.gid)); err != nil {
			return fmt.Errorf("hand %s to the %s user: %w", s.dir, a.name, err)
		}
	}
	// --no-sync only skips flushing the files of the brand-new cluster (a
	// machine crash during a test run loses the run anyway); the server
	// itself runs with fsync and synchronous_commit on.
	cmd := command(a, bin, "initdb", "-D", s.dataDir(), "-U", Superuser, "-A", "trust",
		"-E", "UTF8", "--locale=C", "--no-sync", "--no-instructions")
	if out, err := cmd.CombinedOutput(); err != nil {
		return fmt.Errorf("initdb: %w\n%s", err, out)
	}
	return nil
}

// traversable checks that a can reach dir: every parent must let others
// (or a) search it.
func traversable(dir string, a *account) error {
	for p := filepath.Dir(dir); ; p = filepath.Dir(p) {
		fi, err := os.Stat(p)
		if err != nil {
			return err
		}
		st, ok := fi.Sys().(*syscall.Stat_t)
		if fi.Mode().Perm()&0o001 == 0 && !(ok && st.Uid == a.uid && fi.Mode().Perm()&0o100 != 0) {
			return fmt.Errorf("the %s user cannot reach %s: %s is not searchable by others (mode %v); point TMPDIR at a directory it can reach, such as /tmp", a.name, dir, p, fi.Mode().Perm())
		}
		if p == filepath.Dir(p) {
			return nil
		}
	}
}

func (s *Server) dataDir() string { return filepath.Join(s.dir, "data") }
func (s *Server) logPath() string { return filepath.Join(s.dir, "postgres.log") }

// start runs the postmaster on a free port and waits until it accepts
// connections.
func (s *Server) start(bin string, a *account) error {
	port, err := freePort()
	if err != nil {
		return err
	}
	log, err := os.OpenFile(s.logPath(), os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o644)
	if err != nil {
		return err
	}
	defer log.Close() // the child has its own descriptor
	s.port = port
	cmd := command(a, bin, "postgres", "-D", s.dataDir(), "-p", strconv.Itoa(port),
		"-c", "listen_addresses=127.0.0.1",
		"-c", "unix_socket_directories="+s.dir,
		"-c", "shared_buffers=32MB",
		"-c", "max_connections=200",
		"-c", "fsync=on",
		"-c", "synchronous_commit=on",
		"-c", "full_page_writes=on",
		"-c", "timezone=UTC",
		"-c", "log_min_messages=warning",
		"-c", "logging_collector=off",
	)
	cmd.Stdout, cmd.Stderr = log, log
	// If this process dies without stopping the server (a test binary
	// killed on timeout), the kernel tells the postmaster to quit. The
	// signal is tied to the thread that started the child, so that
	// thread is kept until the server has exited.
	cmd.SysProcAttr.Pdeathsig = syscall.SIGQUIT
	s.exited, s.release = make(chan struct{}), make(chan struct{})
	started := make(chan error, 1)
	go func() {
		runtime.LockOSThread()
		if err := cmd.Start(); err != nil {
			runtime.UnlockOSThread()
			started <- err
			return
		}
		started <- nil
		s.waitErr = cmd.Wait()
		close(s.exited)
		<-s.release
		// Returning with the thread locked ends the thread; the
		// server is gone, so its death signal reaches nobody.
	}()
	if err := <-started; err != nil {
		return fmt.Errorf("start postgres: %w", err)
	}
	s.cmd = cmd
	if err := s.waitReady(60 * time.Second); err != nil {
		s.kill()
		return err
	}
	return nil
}

func freePort() (int, error) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return 0, err
	}
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port, nil
}

// waitReady connects until the server answers, it exits, or timeout.
func (s *Server) waitReady(timeout time.Duration) error {
	deadline := time.Now().Add(timeout)
	retry := time.NewTicker(20 * time.Millisecond)
	defer retry.Stop()
	for {
		ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
		conn, err := pgx.Connect(ctx, s.URL("postgres"))
		cancel()
		if err == nil {
			return conn.Close(context.Background())
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("postgres did not accept connections within %v: %v\n%s", timeout, err, s.logTail())
		}
		select {
		case <-s.exited:
			return fmt.Errorf("postgres exited at start (%v):\n%s", s.waitErr, s.logTail())
		case <-retry.C:
		}
	}
}

// logTail is the end of the server's log, for error messages.
func (s *Server) logTail() string {
	b, _ := os.ReadFile(s.logPath())
	if len(b) > 4000 {
		b = b[len(b)-4000:]
	}
	return string(b)
}

// kill stops the postmaster: fast shutdown, then immediate, then SIGKILL.
func (s *Server) kill() error {
	if s.cmd == nil {
		return nil
	}
	defer close(s.release)
	for _, step := range []struct {
		sig  syscall.Signal
		wait time.Duration
	}{{syscall.SIGINT, 30 * time.Second}, {syscall.SIGQUIT, 10 * time.Second}, {syscall.SIGKILL, 10 * time.Second}} {
		// The postmaster may already be gone; signalling a reaped
		// process is refused, which is fine.
		_ = s.cmd.Process.Signal(step.sig)
		t := time.NewTimer(step.wait)
		select {
		case <-s.exited:
			t.Stop()
			if step.sig != syscall.SIGINT {
				return fmt.Errorf("postgres ignored fast shutdown; stopped it with %v", step.sig)
			}
			return nil
		case <-t.C:
		}
	}
	return errors.New("postgres did not exit, even on SIGKILL")
}

// Stop stops the server and removes its directory. It may be called more
// than once.
func (s *Server) Stop() error {
	s.stopOnce.Do(func() {
		if s.admin != nil {
			s.admin.Close()
		}
		err := s.kill()
		if rerr := os.RemoveAll(s.dir); rerr != nil {
			err = errors.Join(err, rerr)
		}
		s.stopErr = err
	})
	return s.stopErr
}

// Port is the TCP port the server listens on (on 127.0.0.1).
func (s *Server) Port() int { return s.port }

// Dir is the server's temporary directory (the data directory is its
// data/ subdirectory, the socket and postgres.log are in it).
func (s *Server) Dir() string { return s.dir }

// URL is a connection URL for database db as the superuser.
func (s *Server) URL(db string) string {
	return fmt.Sprintf("postgres://%s@127.0.0.1:%d/%s?sslmode=disable", Superuser, s.port, db)
}

var unsafeName = regexp.MustCompile(`[^a-z0-9_]+`)

// CreateDB creates a new, empty database named after t and returns its URL.
// The database is dropped when t ends.
func (s *Server) CreateDB(t testing.TB) string {
	t.Helper()
	name := fmt.Sprintf("t%d_%s", s.dbs.Add(1), unsafeName.ReplaceAllString(strings.ToLower(t.Name()), "_"))
	if len(name) > 63 {
		name = name[:63]
	}
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	if _, err := s.admin.Exec(ctx, "CREATE DATABASE "+pgx.Identifier{name}.Sanitize()); err != nil {
		t.Fatalf("pgtest: create database %s: %v", name, err)
	}
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
		defer cancel()
		// FORCE ends sessions a test left open (a store it never closed).
		if _, err := s.admin.Exec(ctx, "DROP DATABASE IF EXISTS "+pgx.Identifier{name}.Sanitize()+" WITH (FORCE)"); err != nil {
			t.Errorf("pgtest: drop database %s: %v", name, err)
		}
	})
	return s.URL(name)
}

// The server of a test binary that calls Main, started on first use.
var shared struct {
	main bool
	once sync.Once
	srv  *Server
	err  error
}

// Main runs the tests of a binary that shares one server among its tests
// (see Shared and NewDB), stops that server and exits. Call it from
// TestMain:
//
//	func TestMain(m *testing.M) { pgtest.Main(m) }
//
// The server starts when a test first asks for it, so tests that need none
// start none.
func Main(m *testing.M) {
	shared.main = true
	code := m.Run()
	if shared.srv != nil {
		if err := shared.srv.Stop(); err != nil {
			fmt.Fprintln(os.Stderr, "pgtest: stop server:", err)
			if code == 0 {
				code = 1
			}
		}
	}
	os.Exit(code)
}

// Shared returns the server shared by the tests of this binary, starting
// it on first use; it fails t if the server cannot start or TestMain does
// not call Main (which stops the server at the end).
func Shared(t testing.TB) *Server {
	t.Helper()
	if !shared.main {
		t.Fatal("pgtest: Shared and NewDB need func TestMain(m *testing.M) { pgtest.Main(m) } in the test package")
	}
	shared.once.Do(func() { shared.srv, shared.err = New() })
	if shared.err != nil {
		t.Fatalf("pgtest: %v", shared.err)
	}
	return shared.srv
}

// NewDB creates a fresh database on the shared server, dropped when t
// ends, and returns its URL.
func NewDB(t testing.TB) string {
	t.Helper()
	return Shared(t).CreateDB(t)
}
