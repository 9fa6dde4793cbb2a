package main

import (
	"context"
	"net"
	"net/http"
	"sync/atomic"
	"time"

	"github.com/gorilla/websocket"
)

// meter counts the bytes the load generator's sockets carry in each
// direction — everything TCP carries: HTTP request lines and headers,
// WebSocket framing, polling requests, TLS would be counted too (there is
// none on loopback). TCP/IP headers themselves are not visible to a
// socket and are not counted. One meter serves every client of one run.
type meter struct {
	up    atomic.Int64 // client → server
	down  atomic.Int64 // server → client
	dials atomic.Int64 // TCP connections opened
	reqs  atomic.Int64 // HTTP requests sent (WebSocket frames are not requests)
}

// meterSnap is a meter's counters at one moment.
type meterSnap struct {
	up, down, dials, reqs int64
}

func (m *meter) snap() meterSnap {
	return meterSnap{m.up.Load(), m.down.Load(), m.dials.Load(), m.reqs.Load()}
}

func (a meterSnap) sub(b meterSnap) meterSnap {
	return meterSnap{a.up - b.up, a.down - b.down, a.dials - b.dials, a.reqs - b.reqs}
}

var loopbackDialer = &net.Dialer{Timeout: 10 * time.Second, KeepAlive: -1}

// dial opens a counted TCP connection.
func (m *meter) dial(ctx context.Context, network, addr string) (net.Conn, error) {
	c, err := loopbackDialer.DialContext(ctx, network, addr)
	if err != nil {
		return nil, err
	}
	m.dials.Add(1)
	return &countConn{Conn: c, m: m}, nil
}

// countConn counts what passes through a connection.
type countConn struct {
	net.Conn
	m *meter
}

func (c *countConn) Read(p []byte) (int, error) {
	n, err := c.Conn.Read(p)
	c.m.down.Add(int64(n))
	return n, err
}

func (c *countConn) Write(p []byte) (int, error) {
	n, err := c.Conn.Write(p)
	c.m.up.Add(int64(n))
	return n, err
}

// httpClient returns an HTTP client of its own (its own connection pool,
// as client.New would make) whose sockets the meter counts.
func (m *meter) httpClient() *http.Client {
	tr := http.DefaultTransport.(*http.Transport).Clone()
	tr.Proxy = nil // loopback only
	tr.DialContext = m.dial
	tr.MaxIdleConnsPerHost = 16 // concurrent sends of one device reuse their connections
	return &http.Client{Transport: &countRT{rt: tr, m: m}}
}

// wsDialer returns a WebSocket dialer whose sockets the meter counts.
func (m *meter) wsDialer() *websocket.Dialer {
	return &websocket.Dialer{NetDialContext: m.dial, HandshakeTimeout: 10 * time.Second}
}

// countRT counts HTTP requests.
type countRT struct {
	rt *http.Transport
	m  *meter
}

func (c *countRT) RoundTrip(r *http.Request) (*http.Response, error) {
	c.m.reqs.Add(1)
	return c.rt.RoundTrip(r)
}

// CloseIdleConnections lets client.Client close its idle connections
// through the wrapper.
func (c *countRT) CloseIdleConnections() { c.rt.CloseIdleConnections() }
