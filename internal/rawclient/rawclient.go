// Package rawclient holds raw HTTP and WebSocket client pieces that send
// what well-behaved client libraries will not: huge, endless or trickled
// bodies and hand-made WebSocket frames, over plain TCP connections, with
// the server's answers read at the client's own pace. The hostile-client
// tests (node/hostile_test.go) and the bench's -hostile probe
// (bench/hostile.go) attack a node with them.
package rawclient

import (
	"bufio"
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"sync/atomic"
	"syscall"
	"time"
)

// ErrorCode is error.code of a chatgate error body ("" when there is none).
func ErrorCode(body []byte) string {
	var e struct {
		Error struct {
			Code string `json:"code"`
		} `json:"error"`
	}
	_ = json.Unmarshal(body, &e)
	return e.Error.Code
}

// DialSmallWindow is net.Dial with a 4 KiB receive buffer (no
// autotuning), so a client that does not read stalls the server's writes
// after little data.
func DialSmallWindow(network, addr string) (net.Conn, error) {
	d := net.Dialer{Control: func(_, _ string, rc syscall.RawConn) error {
		var serr error
		err := rc.Control(func(fd uintptr) {
			serr = syscall.SetsockoptInt(int(fd), syscall.SOL_SOCKET, syscall.SO_RCVBUF, 4096)
		})
		return errors.Join(err, serr)
	}}
	return d.Dial(network, addr)
}

// WaitClosed waits until the server has closed c, reading r (c, or a
// reader over it) and dropping what comes; an error when c is still open
// after timeout.
func WaitClosed(c net.Conn, r io.Reader, timeout time.Duration) error {
	_ = c.SetReadDeadline(time.Now().Add(timeout))
	_, err := io.Copy(io.Discard, r)
	var ne net.Error
	if errors.As(err, &ne) && ne.Timeout() {
		return fmt.Errorf("still open after %v", timeout)
	}
	return nil // EOF or reset: closed
}

// ---- bodies of any size ----

// BodyPiece is the size of the pieces EndlessJSON returns.
const BodyPiece = 64 << 10

// EndlessJSON returns the pieces of a JSON body that never ends, valid as
// far as the server reads: first opens a send with a string
// ({"to":"1","client_msg_id":"x","content":"aaa…), rest goes on with the
// string (aaa…). Each is BodyPiece bytes.
func EndlessJSON() (first, rest []byte) {
	const open = `{"to":"1","client_msg_id":"x","content":"`
	rest = bytes.Repeat([]byte("a"), BodyPiece)
	first = append([]byte(open), rest[:BodyPiece-len(open)]...)
	return first, rest
}

// BodyResult is what PostBody saw.
type BodyResult struct {
	Status  int
	Code    string        // error.code of the answer
	Written int64         // body bytes the client got to write
	Answer  time.Duration // from the request headers to the answer
	Cut     time.Duration // from the request headers until the server stopped taking the body
}

// ErrKeptReading is PostBody's error when the server answered but still
// took the body 60 s later.
var ErrKeptReading = errors.New("the server kept reading after its answer")

// PostBody POSTs a body of size bytes to path (chunked and endless when
// size is 0) over a raw connection to addr, with token as its bearer
// unless it is "". The body is first, then rest over and over (neither
// empty), cut at size; it is written as fast as the server takes it, with
// a 60 s write deadline, while the answer is read, with a 60 s read
// deadline. PostBody returns once the server has answered and stopped
// taking the body; its error is the read's when no answer came, or
// ErrKeptReading when the body was still being taken 60 s after the
// answer (the result then holds the answer). Written is set in every case
// past the dial and the headers. It may run on any goroutine.
func PostBody(addr, path, token string, size int64, first, rest []byte) (BodyResult, error) {
	c, err := net.Dial("tcp", addr)
	if err != nil {
		return BodyResult{}, err
	}
	defer c.Close()
	hdr := fmt.Sprintf("POST %s HTTP/1.1\r\nHost: %s\r\nContent-Type: application/json\r\n", path, addr)
	if token != "" {
		hdr += "Authorization: Bearer " + token + "\r\n"
	}
	if size > 0 {
		hdr += fmt.Sprintf("Content-Length: %d\r\n\r\n", size)
	} else {
		hdr += "Transfer-Encoding: chunked\r\n\r\n"
	}
	start := time.Now()
	if _, err := io.WriteString(c, hdr); err != nil {
		return BodyResult{}, err
	}
	var written atomic.Int64
	var cut time.Duration // the writer's, read once done is closed
	done := make(chan struct{})
	go func() {
		defer close(done)
		_ = c.SetWriteDeadline(time.Now().Add(60 * time.Second))
		var b []byte
		for i := 0; size == 0 || written.Load() < size; i++ {
			p := rest
			if i == 0 {
				p = first
			}
			if size > 0 {
				p = p[:min(int64(len(p)), size-written.Load())]
			}
			b = b[:0]
			if size == 0 {
				b = fmt.Appendf(b, "%x\r\n", len(p))
			}
			b = append(b, p...)
			if size == 0 {
				b = append(b, "\r\n"...)
			}
			if _, err := c.Write(b); err != nil {
				break
			}
			written.Add(int64(len(p)))
		}
		cut = time.Since(start)
	}()
	// finish waits for the writer and adds what it did.
	finish := func(r BodyResult) BodyResult {
		<-done
		r.Written, r.Cut = written.Load(), cut
		return r
	}
	_ = c.SetReadDeadline(time.Now().Add(60 * time.Second))
	resp, err := http.ReadResponse(bufio.NewReader(c), nil)
	if err != nil {
		c.Close()
		return finish(BodyResult{}), err
	}
	body, _ := io.ReadAll(io.LimitReader(resp.Body, 1<<20))
	resp.Body.Close()
	r := BodyResult{Status: resp.StatusCode, Code: ErrorCode(body), Answer: time.Since(start)}
	// The server closes once it has answered: the writer's next writes fail.
	select {
	case <-done:
	case <-time.After(60 * time.Second):
		c.Close()
		return finish(r), ErrKeptReading
	}
	return finish(r), nil
}
