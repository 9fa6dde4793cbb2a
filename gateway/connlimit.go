package gateway

import (
	"io"
	"net"
	"net/netip"
	"strconv"
	"sync"
	"sync/atomic"
	"time"
)

// AddrLimit bounds the open TCP connections of each client address, so one
// host cannot hold thousands of idle sockets (each costs the server a
// goroutine and buffers) while everyone else waits. It counts at accept,
// before any byte is read: a connection past the limit is answered with a
// plain 429 and closed, costing no goroutine.
type AddrLimit struct {
	Max int // connections per address; 0: no limit
	// Exempt addresses are not counted: loopback (the bench, local tools)
	// unless limited on purpose, and trusted proxies, which carry many
	// clients each.
	Exempt func(netip.Addr) bool
	// Refused, if set, is told of each refused connection (a metric).
	Refused func()
}

// Listener wraps ln with the limit.
// Every connection it accepts can meter its reads (MeterReads), which the
// WebSocket transport uses once it has upgraded one.
func (l AddrLimit) Listener(ln net.Listener) net.Listener {
	return &limitListener{Listener: ln, l: l, open: make(map[netip.Addr]int)}
}

type limitListener struct {
	net.Listener
	l    AddrLimit
	mu   sync.Mutex
	open map[netip.Addr]int
	// refusing counts refusals still waiting for their client to read
	// the answer; past maxRefusing a refused connection is just closed.
	refusing atomic.Int32
}

const maxRefusing = 64

// refusal is the whole answer to a connection past the limit. It is small
// enough for any socket buffer, so writing it never blocks the accept loop.
var refusal = []byte("HTTP/1.1 429 Too Many Requests\r\nContent-Type: application/json\r\nRetry-After: 1\r\nConnection: close\r\nContent-Length: ")

func refusalBody(max int) []byte {
	body := `{"error":{"code":"too_many_connections","message":"too many connections from this address (at most ` + strconv.Itoa(max) + `); close some and retry"}}` + "\n"
	b := append([]byte(nil), refusal...)
	b = strconv.AppendInt(b, int64(len(body)), 10)
	b = append(b, "\r\n\r\n"...)
	return append(b, body...)
}

func (ll *limitListener) Accept() (net.Conn, error) {
	for {
		c, err := ll.Listener.Accept()
		if err != nil {
			return nil, err
		}
		ap, err := netip.ParseAddrPort(c.RemoteAddr().String())
		if err != nil || ll.l.Max <= 0 {
			return &countedConn{Conn: c}, nil // not TCP/IP (a test's pipe), or no limit: nothing to count
		}
		a := ap.Addr().Unmap()
		if ll.l.Exempt != nil && ll.l.Exempt(a) {
			return &countedConn{Conn: c}, nil
		}
		ll.mu.Lock()
		if ll.open[a] >= ll.l.Max {
			ll.mu.Unlock()
			if ll.l.Refused != nil {
				ll.l.Refused()
			}
			ll.refuse(c)
			continue
		}
		ll.open[a]++
		ll.mu.Unlock()
		return &countedConn{Conn: c, release: func() { ll.release(a) }}, nil
	}
}

// refuse answers 429 and closes. The client's request is still unread, and
// closing a socket with unread bytes resets it, which can destroy the
// answer before the client reads it; so the answer is followed by a FIN
// and the request is read away for up to a second first — by a bounded
// number of goroutines, so a flood of refusals costs no more.
func (ll *limitListener) refuse(c net.Conn) {
	_ = c.SetDeadline(time.Now().Add(time.Second))
	if _, err := c.Write(refusalBody(ll.l.Max)); err != nil || ll.refusing.Add(1) > maxRefusing {
		ll.refusing.Add(-1)
		_ = c.Close()
		return
	}
	go func() {
		defer ll.refusing.Add(-1)
		if cw, ok := c.(interface{ CloseWrite() error }); ok {
			_ = cw.CloseWrite()
		}
		_, _ = io.Copy(io.Discard, io.LimitReader(c, 64<<10))
		_ = c.Close()
	}()
}

func (ll *limitListener) release(a netip.Addr) {
	ll.mu.Lock()
	defer ll.mu.Unlock()
	if ll.open[a]--; ll.open[a] <= 0 {
		delete(ll.open, a)
	}
}

// countedConn gives its address's slot back when closed (once: net/http
// may close a hijacked connection's net.Conn more than once), and meters
// its reads once asked to.
type countedConn struct {
	net.Conn
	once    sync.Once
	release func() // nil: not counted
	meter   atomic.Pointer[func(n int) error]
}

// MeterReads has every read of n bytes told to meter; an error it returns
// fails the read. A hijacked connection's reads are no longer net/http's
// to bound: the WebSocket transport meters its client's bytes this way.
func (c *countedConn) MeterReads(meter func(n int) error) { c.meter.Store(&meter) }

func (c *countedConn) Read(p []byte) (int, error) {
	n, err := c.Conn.Read(p)
	if m := c.meter.Load(); m != nil && n > 0 {
		if merr := (*m)(n); merr != nil {
			return n, merr
		}
	}
	return n, err
}

// NetConn returns the connection counted, for writers that need its own
// methods (net.Buffers uses writev only on a *net.TCPConn).
func (c *countedConn) NetConn() net.Conn { return c.Conn }

func (c *countedConn) Close() error {
	err := c.Conn.Close()
	if c.release != nil {
		c.once.Do(c.release)
	}
	return err
}
