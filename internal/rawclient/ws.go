package rawclient

import (
	"bufio"
	"crypto/rand"
	"encoding/base64"
	"encoding/binary"
	"fmt"
	"io"
	"net"
	"net/http"
	"time"
)

// WebSocket opcodes (RFC 6455, 5.2).
const (
	OpCont   byte = 0x0
	OpText   byte = 0x1
	OpBinary byte = 0x2
	OpClose  byte = 0x8
	OpPing   byte = 0x9
	OpPong   byte = 0xA
)

// NoStatus is CloseCode's code for a close frame that carries none (RFC
// 6455, 7.1.5).
const NoStatus = 1005

// WS is a WebSocket whose client frames are made by hand: write any bytes
// to Conn (FrameHeader makes the headers) and read the server's frames
// from Reader.
type WS struct {
	Conn   net.Conn
	Reader *bufio.Reader // over Conn, holding what the handshake read past its answer
}

// DialWS opens chatgate's /v1/ws for token with a hand-written handshake
// over a connection from dial (nil: net.Dial), waiting up to 10 s for the
// answer. An answer other than 101 is an error "STATUS CODE" (CODE:
// error.code of its body). The connection is closed when it fails.
func DialWS(addr, token string, dial func(network, addr string) (net.Conn, error)) (*WS, error) {
	if dial == nil {
		dial = net.Dial
	}
	c, err := dial("tcp", addr)
	if err != nil {
		return nil, err
	}
	key := make([]byte, 16)
	_, _ = rand.Read(key)
	if _, err := fmt.Fprintf(c, "GET /v1/ws?access_token=%s HTTP/1.1\r\nHost: %s\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"+
		"Sec-WebSocket-Key: %s\r\nSec-WebSocket-Version: 13\r\n\r\n", token, addr, base64.StdEncoding.EncodeToString(key)); err != nil {
		c.Close()
		return nil, err
	}
	br := bufio.NewReaderSize(c, 512)
	_ = c.SetReadDeadline(time.Now().Add(10 * time.Second))
	resp, err := http.ReadResponse(br, nil)
	if err == nil && resp.StatusCode != http.StatusSwitchingProtocols {
		body, _ := io.ReadAll(resp.Body)
		err = fmt.Errorf("%d %s", resp.StatusCode, ErrorCode(body))
	}
	if err != nil {
		c.Close()
		return nil, err
	}
	_ = c.SetReadDeadline(time.Time{})
	return &WS{Conn: c, Reader: br}, nil
}

// FrameHeader is a masked client frame header for n payload bytes. The
// mask key is zero, so the payload goes as it is.
func FrameHeader(fin bool, op byte, n uint64) []byte {
	if fin {
		op |= 0x80
	}
	h := []byte{op}
	switch {
	case n < 126:
		h = append(h, 0x80|byte(n))
	case n <= 0xffff:
		h = append(h, 0x80|126)
		h = binary.BigEndian.AppendUint16(h, uint16(n))
	default:
		h = append(h, 0x80|127)
		h = binary.BigEndian.AppendUint64(h, n)
	}
	return append(h, 0, 0, 0, 0)
}

// WriteFrame writes one frame, header and payload in one write, within
// 30 s.
func (w *WS) WriteFrame(fin bool, op byte, payload []byte) error {
	_ = w.Conn.SetWriteDeadline(time.Now().Add(30 * time.Second))
	_, err := w.Conn.Write(append(FrameHeader(fin, op, uint64(len(payload))), payload...))
	return err
}

// ReadFrame returns the next server frame; a masked one or one over
// 16 MiB is an error.
func (w *WS) ReadFrame() (op byte, payload []byte, err error) {
	var h [2]byte
	if _, err := io.ReadFull(w.Reader, h[:]); err != nil {
		return 0, nil, err
	}
	n := uint64(h[1] & 0x7f)
	switch n {
	case 126:
		var b [2]byte
		if _, err := io.ReadFull(w.Reader, b[:]); err != nil {
			return 0, nil, err
		}
		n = uint64(binary.BigEndian.Uint16(b[:]))
	case 127:
		var b [8]byte
		if _, err := io.ReadFull(w.Reader, b[:]); err != nil {
			return 0, nil, err
		}
		n = binary.BigEndian.Uint64(b[:])
	}
	if h[1]&0x80 != 0 || n > 16<<20 {
		return 0, nil, fmt.Errorf("bad server frame header %x (length %d)", h, n)
	}
	payload = make([]byte, n)
	if _, err := io.ReadFull(w.Reader, payload); err != nil {
		return 0, nil, err
	}
	return h[0] & 0x0f, payload, nil
}

// CloseCode reads server frames until a close frame, for up to timeout,
// and returns its code and reason (NoStatus when it has none); the error
// is the read's when the connection ended without one or nothing came in
// time (a net.Error whose Timeout is true).
func (w *WS) CloseCode(timeout time.Duration) (code int, reason string, err error) {
	_ = w.Conn.SetReadDeadline(time.Now().Add(timeout))
	for {
		op, p, err := w.ReadFrame()
		if err != nil {
			return 0, "", err
		}
		if op != OpClose {
			continue
		}
		if len(p) < 2 {
			return NoStatus, "", nil
		}
		return int(binary.BigEndian.Uint16(p)), string(p[2:]), nil
	}
}
