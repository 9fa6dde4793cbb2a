package main

import (
	"fmt"
	"io"
	"net"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"time"
)

// The floor of a transport is the least it could cost to carry protocol
// v1's objects unchanged: the JSON the protocol defines (a send, its
// answer, the message event to the recipient and to the sender's own
// connection), wrapped in the smallest framing the transport allows. The
// arithmetic is explained in docs/benchmarks.md.

const (
	uuidLen  = 36 // client_msg_id as client/ generates it
	tokenLen = 43 // device token
	seqLen   = 4  // digits of a typical seq or cursor in the bench
	// dateHeader is the Date header an origin server with a clock must
	// send (RFC 9110 §6.6.1).
	dateHeader = "Date: Mon, 02 Jan 2006 15:04:05 GMT\r\n"
)

// floorInput is what a floor depends on.
type floorInput struct {
	transport string
	host      string // "127.0.0.1:port"
	sendBody  int    // JSON body of a send (POST /v1/messages)
	event     int    // mean message event JSON
	users     int    // connected users (short polling polls for each)
	window    time.Duration
	delivered int64 // messages delivered in the window
	poll      time.Duration
}

// wsHeader is the size of a WebSocket frame header for a payload of n
// bytes; masked frames (client to server) carry 4 more.
func wsHeader(n int, masked bool) int {
	h := 2
	switch {
	case n >= 1<<16:
		h += 8
	case n >= 126:
		h += 2
	}
	if masked {
		h += 4
	}
	return h
}

// messageJSON is the size of the message object inside an event.
func (f floorInput) messageJSON() int {
	return f.event - len(`{"type":"message","seq":,"message":}`) - seqLen
}

func httpRequest(method, target, host string, body int) int {
	s := method + " " + target + " HTTP/1.1\r\nHost: " + host + "\r\nAuthorization: Bearer " + strings.Repeat("t", tokenLen) + "\r\n"
	if body > 0 {
		s += fmt.Sprintf("Content-Length: %d\r\n", body)
	}
	return len(s) + 2 + body
}

func httpResponse(status string, body int) int {
	s := "HTTP/1.1 " + status + "\r\nContent-Type: application/json\r\n" + fmt.Sprintf("Content-Length: %d\r\n", body) + dateHeader
	return len(s) + 2 + body
}

// bytesFloor returns the least bytes per delivered 1:1 message, up and
// down.
func bytesFloor(f floorInput) (up, down float64) {
	if f.event <= 0 {
		return 0, 0
	}
	msg := f.messageJSON()
	cursor := strings.Repeat("9", seqLen)
	postUp := float64(httpRequest("POST", "/v1/messages", f.host, f.sendBody))
	postDown := float64(httpResponse("201 Created", len(`{"message":}`)+msg))
	switch f.transport {
	case "websocket":
		frame := f.sendBody + len(`"type":"send",`)
		sent := len(`{"type":"sent","client_msg_id":"","message":}`) + uuidLen + msg
		return float64(wsHeader(frame, true) + frame),
			float64(wsHeader(sent, false) + sent + 2*(wsHeader(f.event, false)+f.event))
	case "sse":
		ev := len("id: \ndata: \n\n") + seqLen + f.event
		return postUp, postDown + float64(2*ev)
	case "longpolling":
		// One held poll answers each event (the recipient's and the
		// sender's echo), then the next poll is sent.
		req := httpRequest("GET", "/v1/longpoll?cursor="+cursor+"&wait=25", f.host, 0)
		resp := httpResponse("200 OK", len(`{"events":[],"cursor":,"has_more":false}`)+seqLen+f.event)
		return postUp + float64(2*req), postDown + float64(2*resp)
	case "polling":
		// Every connected user polls once per interval whatever happens;
		// events ride in those polls.
		if f.delivered <= 0 || f.poll <= 0 {
			return 0, 0
		}
		polls := float64(f.users) * f.window.Seconds() / f.poll.Seconds() / float64(f.delivered)
		req := httpRequest("GET", "/v1/poll?cursor="+cursor, f.host, 0)
		resp := httpResponse("200 OK", len(`{"events":[],"cursor":,"has_more":false}`)+seqLen)
		return postUp + polls*float64(req), postDown + polls*float64(resp) + float64(2*(f.event+1))
	}
	return 0, 0
}

// latencyFloor returns the least p50 and p99 send→receive latency: the
// durable commit (one fsync) and one round trip (send up, event down),
// plus, for short polling, the wait for the next poll (uniform over the
// interval).
func latencyFloor(transport string, base, poll time.Duration) (p50, p99 time.Duration) {
	switch transport {
	case "polling":
		return base + poll/2, base + poll*99/100
	}
	return base, base
}

// measureBase measures what every transport pays: a loopback round trip
// and an fsync on the data directory's disk (medians).
func measureBase(dir string) (rtt, fsync time.Duration, err error) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return 0, 0, err
	}
	defer ln.Close()
	go func() {
		c, err := ln.Accept()
		if err != nil {
			return
		}
		defer c.Close()
		_, _ = io.Copy(c, c)
	}()
	c, err := net.Dial("tcp", ln.Addr().String())
	if err != nil {
		return 0, 0, err
	}
	defer c.Close()
	var rtts []time.Duration
	b := make([]byte, 1)
	for range 200 {
		t0 := time.Now()
		if _, err := c.Write(b); err != nil {
			return 0, 0, err
		}
		if _, err := io.ReadFull(c, b); err != nil {
			return 0, 0, err
		}
		rtts = append(rtts, time.Since(t0))
	}
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return 0, 0, err
	}
	f, err := os.Create(filepath.Join(dir, "fsync-probe"))
	if err != nil {
		return 0, 0, err
	}
	defer os.Remove(f.Name())
	defer f.Close()
	var syncs []time.Duration
	buf := make([]byte, 512)
	for range 50 {
		t0 := time.Now()
		if _, err := f.Write(buf); err != nil {
			return 0, 0, err
		}
		if err := f.Sync(); err != nil {
			return 0, 0, err
		}
		syncs = append(syncs, time.Since(t0))
	}
	slices.Sort(rtts)
	slices.Sort(syncs)
	return rtts[len(rtts)/2], syncs[len(syncs)/2], nil
}
