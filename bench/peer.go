package main

import (
	"bufio"
	"bytes"
	"context"
	"crypto/hmac"
	"crypto/sha256"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/gorilla/websocket"
)

// The peer is Centrifugo v6, a real-time messaging server in Go, driven
// with the same load as chatgate through a minimal client of its JSON
// protocol written here (raw gorilla/websocket and HTTP): connections
// authenticate with an HS256 JWT whose "channels" claim subscribes them
// server-side; messages are client-side publishes over WebSocket, or
// server API publishes (POST /api/publish) for the unidirectional SSE
// transport, whose clients cannot send. Its memory engine keeps no
// history here: unlike chatgate, nothing is written to disk.

const (
	peerSecret = "bench-hmac-secret"
	peerAPIKey = "bench-api-key"
)

// peerTarget is a Centrifugo server driven over "websocket" or "sse".
type peerTarget struct {
	transport string
	srv       *server
	m         *meter
	fleetN    int
	groupN    int
	hc        *http.Client // server API publishes

	mu    sync.Mutex
	fleet []*peerConn
	drops atomic.Int64

	whyMu sync.Mutex
	why   map[string]int // why connections were dropped
}

func (t *peerTarget) Drops() int64 { return t.drops.Load() }

func (t *peerTarget) dropped(err error) {
	t.drops.Add(1)
	reason := "stream ended"
	var ce *websocket.CloseError
	switch {
	case errors.As(err, &ce):
		reason = fmt.Sprintf("close %d %s", ce.Code, ce.Text)
	case err != nil:
		reason = err.Error()
	}
	t.whyMu.Lock()
	if t.why == nil {
		t.why = map[string]int{}
	}
	t.why[reason]++
	t.whyMu.Unlock()
}

// DropReasons says why the server closed load connections.
func (t *peerTarget) DropReasons() string {
	t.whyMu.Lock()
	defer t.whyMu.Unlock()
	var parts []string
	for k, v := range t.why {
		parts = append(parts, fmt.Sprintf("%d× %s", v, k))
	}
	slices.Sort(parts)
	return strings.Join(parts, "; ")
}

// startCentrifugo starts the peer with a config written for the bench.
func startCentrifugo(bin, transport, work, logDir string, fleetN, groupN int) (*peerTarget, error) {
	addr, err := freeAddr()
	if err != nil {
		return nil, err
	}
	_, portS, _ := net.SplitHostPort(addr)
	port, _ := strconv.Atoi(portS)
	cfg := map[string]any{
		"http_server": map[string]any{"address": "127.0.0.1", "port": port},
		"log":         map[string]any{"level": "error"},
		"usage_stats": map[string]any{"disabled": true},
		"health":      map[string]any{"enabled": true},
		"debug":       map[string]any{"enabled": true},
		"client": map[string]any{
			"token":           map[string]any{"hmac_secret_key": peerSecret},
			"allowed_origins": []string{"*"},
		},
		"channel": map[string]any{"without_namespace": map[string]any{
			"allow_subscribe_for_client": true, "allow_publish_for_client": true,
		}},
		"http_api": map[string]any{"key": peerAPIKey},
		"uni_sse":  map[string]any{"enabled": true},
	}
	b, _ := json.MarshalIndent(cfg, "", "  ")
	cfgPath := filepath.Join(work, "centrifugo-"+transport+".json")
	if err := os.WriteFile(cfgPath, b, 0o644); err != nil {
		return nil, err
	}
	base := "http://" + addr
	srv, err := startProcess("centrifugo", bin, []string{"-c", cfgPath}, base, "/health", base,
		filepath.Join(logDir, "centrifugo-"+transport+".log"))
	if err != nil {
		return nil, err
	}
	t := &peerTarget{transport: transport, srv: srv, m: &meter{}, fleetN: fleetN, groupN: groupN}
	t.hc = t.m.httpClient()
	return t, nil
}

func (t *peerTarget) Name() string                { return "centrifugo-" + t.transport }
func (t *peerTarget) System() string              { return "centrifugo" }
func (t *peerTarget) Transport() string           { return t.transport }
func (t *peerTarget) Server() *server             { return t.srv }
func (t *peerTarget) Meter() *meter               { return t.m }
func (t *peerTarget) FleetSize() int              { return t.fleetN }
func (t *peerTarget) GroupSize() int              { return t.groupN }
func (t *peerTarget) PollInterval() time.Duration { return 0 }
func (t *peerTarget) SocketsPerIdle() int         { return 1 }

// jwt makes an HS256 connection token for user sub subscribed to
// channels.
func jwt(sub string, channels []string) string {
	enc := base64.RawURLEncoding
	h := enc.EncodeToString([]byte(`{"alg":"HS256","typ":"JWT"}`))
	c, _ := json.Marshal(map[string]any{"sub": sub, "channels": channels})
	msg := h + "." + enc.EncodeToString(c)
	mac := hmac.New(sha256.New, []byte(peerSecret))
	mac.Write([]byte(msg))
	return msg + "." + enc.EncodeToString(mac.Sum(nil))
}

// peerData is what the bench publishes: the stamped content and the
// sender's fleet index.
type peerData struct {
	C string `json:"c"`
	F int    `json:"f"`
}

// peerMsg is any object the server sends (replies, pushes, pings).
type peerMsg struct {
	ID      uint32          `json:"id"`
	Error   json.RawMessage `json:"error"`
	Connect json.RawMessage `json:"connect"`
	Push    *peerPush       `json:"push"` // bidirectional
	Channel string          `json:"channel"`
	Pub     *peerPub        `json:"pub"` // unidirectional: the push itself
}

type peerPush struct {
	Channel string   `json:"channel"`
	Pub     *peerPub `json:"pub"`
}

type peerPub struct {
	Data peerData `json:"data"`
}

// peerConn is one connection of the peer's protocol.
type peerConn struct {
	idx  int
	ws   *websocket.Conn
	body io.Closer // SSE stream
	wmu  sync.Mutex
	mu   sync.Mutex
	wait map[uint32]chan error
	next atomic.Uint32
	done chan struct{}
	// closing is set by close; a stream that ends without it was dropped
	// by the server (this minimal client does not reconnect).
	closing atomic.Bool
	onDrop  func(error)
}

// channelsOf: user i shares channel d<i/2> with its partner; the first
// groupN users are also in the group channel g.
func channelsOf(i, groupN int) []string {
	if i < groupN {
		return []string{"d" + strconv.Itoa(i/2), "g"}
	}
	return []string{"d" + strconv.Itoa(i/2)}
}

// dial connects one client; deliver (may be nil) gets every publication
// sent by another fleet member.
func (t *peerTarget) dial(ctx context.Context, idx int, sub string, channels []string, deliver func(content string, n int)) (*peerConn, error) {
	pc := &peerConn{idx: idx, wait: map[uint32]chan error{}, done: make(chan struct{})}
	if deliver != nil {
		pc.onDrop = t.dropped
	}
	token := jwt(sub, channels)
	u := "ws" + t.srv.base[len("http"):]
	onObj := func(raw []byte, m *peerMsg) {
		var pub *peerPub
		switch {
		case m.Push != nil:
			pub = m.Push.Pub
		case m.Pub != nil:
			pub = m.Pub
		}
		if pub != nil && deliver != nil && pub.Data.F != idx {
			deliver(pub.Data.C, len(raw))
		}
	}
	if t.transport == "websocket" {
		d := t.m.wsDialer()
		c, _, err := d.DialContext(ctx, u+"/connection/websocket", nil)
		if err != nil {
			return nil, err
		}
		pc.ws = c
		b, _ := json.Marshal(map[string]any{"id": 1, "connect": map[string]any{"token": token, "name": "bench"}})
		if err := c.WriteMessage(websocket.TextMessage, b); err != nil {
			c.Close()
			return nil, err
		}
		pc.next.Store(1)
		_ = c.SetReadDeadline(time.Now().Add(10 * time.Second))
		_, first, err := c.ReadMessage()
		if err != nil {
			c.Close()
			return nil, err
		}
		var m peerMsg
		if err := json.Unmarshal(bytes.SplitN(first, []byte("\n"), 2)[0], &m); err != nil || m.Connect == nil {
			c.Close()
			return nil, fmt.Errorf("centrifugo connect answered %s", first)
		}
		_ = c.SetReadDeadline(time.Time{})
		go pc.readWS(onObj)
		return pc, nil
	}
	// Unidirectional SSE: the connect request rides in the URL.
	q := url.Values{"cf_connect": {`{"token":"` + token + `"}`}}
	req, _ := http.NewRequestWithContext(context.Background(), http.MethodGet, t.srv.base+"/connection/uni_sse?"+q.Encode(), nil)
	hc := t.m.httpClient()
	resp, err := hc.Do(req)
	if err != nil {
		return nil, err
	}
	if resp.StatusCode != http.StatusOK {
		resp.Body.Close()
		return nil, fmt.Errorf("centrifugo uni_sse: %s", resp.Status)
	}
	pc.body = resp.Body
	br := bufio.NewReaderSize(resp.Body, 16<<10)
	// Wait for the connect push before counting the client as up.
	connected := make(chan error, 1)
	go func() {
		defer close(pc.done)
		var once sync.Once
		for {
			line, err := br.ReadSlice('\n')
			if err != nil {
				once.Do(func() { connected <- err })
				pc.dropped(err)
				return
			}
			data, ok := bytes.CutPrefix(line, []byte("data: "))
			if !ok {
				continue
			}
			data = bytes.TrimRight(data, "\n")
			var m peerMsg
			if json.Unmarshal(data, &m) != nil {
				continue
			}
			if m.Connect != nil {
				once.Do(func() { connected <- nil })
				continue
			}
			onObj(data, &m)
		}
	}()
	select {
	case err := <-connected:
		if err != nil {
			resp.Body.Close()
			<-pc.done
			return nil, err
		}
	case <-time.After(10 * time.Second):
		resp.Body.Close()
		<-pc.done
		return nil, errors.New("centrifugo uni_sse: no connect push in 10 s")
	}
	return pc, nil
}

// readWS reads frames (each may hold several objects, one per line),
// answers pings and routes replies.
func (pc *peerConn) dropped(err error) {
	if !pc.closing.Load() && pc.onDrop != nil {
		pc.onDrop(err)
	}
}

func (pc *peerConn) readWS(onObj func([]byte, *peerMsg)) {
	defer close(pc.done)
	defer pc.failAll(errors.New("centrifugo connection closed"))
	for {
		_, frame, err := pc.ws.ReadMessage()
		if err != nil {
			pc.dropped(err)
			return
		}
		for line := range bytes.SplitSeq(frame, []byte("\n")) {
			if len(line) == 0 {
				continue
			}
			if string(line) == "{}" { // ping: answer with a pong
				pc.wmu.Lock()
				// Every write sets its own deadline: a publish's would
				// have expired, and a failed write breaks the socket.
				_ = pc.ws.SetWriteDeadline(time.Now().Add(10 * time.Second))
				_ = pc.ws.WriteMessage(websocket.TextMessage, []byte("{}"))
				pc.wmu.Unlock()
				continue
			}
			var m peerMsg
			if json.Unmarshal(line, &m) != nil {
				continue
			}
			if m.ID != 0 {
				var err error
				if m.Error != nil {
					err = fmt.Errorf("centrifugo error %s", m.Error)
				}
				pc.mu.Lock()
				ch := pc.wait[m.ID]
				delete(pc.wait, m.ID)
				pc.mu.Unlock()
				if ch != nil {
					ch <- err
				}
				continue
			}
			onObj(line, &m)
		}
	}
}

func (pc *peerConn) failAll(err error) {
	pc.mu.Lock()
	defer pc.mu.Unlock()
	for id, ch := range pc.wait {
		ch <- err
		delete(pc.wait, id)
	}
	pc.wait = nil
}

// publish sends a client-side publish and waits for its reply.
func (pc *peerConn) publish(ctx context.Context, channel string, data peerData) error {
	id := pc.next.Add(1)
	ch := make(chan error, 1)
	pc.mu.Lock()
	if pc.wait == nil {
		pc.mu.Unlock()
		return errors.New("centrifugo connection closed")
	}
	pc.wait[id] = ch
	pc.mu.Unlock()
	b, _ := json.Marshal(struct {
		ID      uint32 `json:"id"`
		Publish struct {
			Channel string   `json:"channel"`
			Data    peerData `json:"data"`
		} `json:"publish"`
	}{ID: id, Publish: struct {
		Channel string   `json:"channel"`
		Data    peerData `json:"data"`
	}{channel, data}})
	pc.wmu.Lock()
	_ = pc.ws.SetWriteDeadline(time.Now().Add(10 * time.Second))
	err := pc.ws.WriteMessage(websocket.TextMessage, b)
	pc.wmu.Unlock()
	if err != nil {
		return err
	}
	select {
	case err := <-ch:
		return err
	case <-ctx.Done():
		pc.mu.Lock()
		delete(pc.wait, id)
		pc.mu.Unlock()
		return ctx.Err()
	}
}

func (pc *peerConn) close() {
	pc.closing.Store(true)
	if pc.ws != nil {
		pc.wmu.Lock()
		_ = pc.ws.WriteControl(websocket.CloseMessage, websocket.FormatCloseMessage(websocket.CloseNormalClosure, ""), time.Now().Add(time.Second))
		pc.wmu.Unlock()
		pc.ws.Close()
	}
	if pc.body != nil {
		pc.body.Close()
	}
	<-pc.done
}

// apiPublish publishes through the server API (what an app backend does
// for clients that cannot publish themselves).
func (t *peerTarget) apiPublish(ctx context.Context, channel string, data peerData) error {
	b, _ := json.Marshal(struct {
		Channel string   `json:"channel"`
		Data    peerData `json:"data"`
	}{channel, data})
	req, _ := http.NewRequestWithContext(ctx, http.MethodPost, t.srv.base+"/api/publish", bytes.NewReader(b))
	req.Header.Set("X-API-Key", peerAPIKey)
	req.Header.Set("Content-Type", "application/json")
	resp, err := t.hc.Do(req)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	body, _ := io.ReadAll(io.LimitReader(resp.Body, 1<<16))
	if resp.StatusCode != http.StatusOK || bytes.Contains(body, []byte(`"error"`)) {
		return fmt.Errorf("centrifugo publish: %s %s", resp.Status, body)
	}
	return nil
}

func (t *peerTarget) ConnectFleet(ctx context.Context, cur *current) error {
	fleet := make([]*peerConn, t.fleetN)
	err := parallel(ctx, t.fleetN, 16, func(i int) error {
		pc, err := t.dial(ctx, i, "user"+strconv.Itoa(i), channelsOf(i, t.groupN), func(content string, n int) { cur.deliver(content, n) })
		if err != nil {
			return fmt.Errorf("centrifugo %s connect %d: %w", t.transport, i, err)
		}
		fleet[i] = pc
		return nil
	})
	t.mu.Lock()
	t.fleet = fleet
	t.mu.Unlock()
	if err != nil {
		t.CloseFleet()
	}
	return err
}

func (t *peerTarget) send(ctx context.Context, i int, channel, content string) error {
	data := peerData{C: content, F: i}
	if t.transport == "websocket" {
		return t.fleet[i].publish(ctx, channel, data)
	}
	return t.apiPublish(ctx, channel, data)
}

func (t *peerTarget) SendDirect(ctx context.Context, s int, content string) error {
	return t.send(ctx, 2*s, "d"+strconv.Itoa(s), content)
}

func (t *peerTarget) SendGroup(ctx context.Context, i int, content string) error {
	return t.send(ctx, i, "g", content)
}

func (t *peerTarget) CloseFleet() {
	t.mu.Lock()
	fleet := t.fleet
	t.fleet = nil
	t.mu.Unlock()
	var wg sync.WaitGroup
	for _, pc := range fleet {
		if pc != nil {
			wg.Add(1)
			go func() { defer wg.Done(); pc.close() }()
		}
	}
	wg.Wait()
}

func (t *peerTarget) ConnectIdle(ctx context.Context, n int, progress func(int)) (func(), error) {
	conns := make([]*peerConn, n)
	var up atomic.Int64
	closeAll := func() {
		_ = parallel(context.Background(), n, 64, func(i int) error {
			if conns[i] != nil {
				conns[i].close()
			}
			return nil
		})
	}
	err := parallel(ctx, n, 32, func(i int) error {
		pc, err := t.dial(ctx, -1, "idle"+strconv.Itoa(i), []string{"i" + strconv.Itoa(i)}, nil)
		if err != nil {
			return fmt.Errorf("centrifugo %s idle connection %d: %w", t.transport, i, err)
		}
		conns[i] = pc
		if progress != nil {
			progress(int(up.Add(1)))
		}
		return nil
	})
	if err != nil {
		closeAll()
		return nil, err
	}
	return closeAll, nil
}

func (t *peerTarget) stop() error {
	t.CloseFleet()
	t.hc.CloseIdleConnections()
	return t.srv.stop()
}
