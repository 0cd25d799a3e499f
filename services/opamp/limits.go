package opampsvc

import (
	"bufio"
	"bytes"
	"compress/gzip"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"strconv"
	"sync"
	"sync/atomic"
)

// errMessageTooLarge ends a WebSocket whose message (the sum of its data frames) would
// exceed --opamp-max-message-bytes. It is raised from the frame header, before the
// payload is read, so an oversized message costs no memory.
var errMessageTooLarge = errors.New("websocket message over --opamp-max-message-bytes")

// connLimiter bounds the connections of one replica (--opamp-max-connections): every
// /v1/opamp request holds a slot while it is handled and a WebSocket holds it until its
// connection closes. It also remembers the open WebSockets, so Run closes them all.
type connLimiter struct {
	max  int64
	open atomic.Int64

	mu    sync.Mutex
	conns map[*limitedConn]struct{}
}

func newConnLimiter(max int) *connLimiter {
	return &connLimiter{max: int64(max), conns: map[*limitedConn]struct{}{}}
}

// acquire takes a slot; false when every slot is taken.
func (l *connLimiter) acquire() bool {
	if l.open.Add(1) > l.max {
		l.open.Add(-1)
		return false
	}
	return true
}

func (l *connLimiter) release() { l.open.Add(-1) }

// closeAll closes every hijacked connection still open.
func (l *connLimiter) closeAll() {
	l.mu.Lock()
	conns := make([]*limitedConn, 0, len(l.conns))
	for c := range l.conns {
		conns = append(conns, c)
	}
	l.mu.Unlock()
	for _, c := range conns {
		_ = c.Close()
	}
}

// hijackWriter hands the WebSocket upgrade (gorilla/websocket inside opamp-go, which
// takes the connection with Hijack) a connection that checks each frame header against
// the message limit and gives the request's slot back when it closes.
type hijackWriter struct {
	http.ResponseWriter
	lim      *connLimiter
	maxBytes int64
	tooLarge func()
	hijacked bool
}

// Unwrap gives http.ResponseController the writer underneath.
func (w *hijackWriter) Unwrap() http.ResponseWriter { return w.ResponseWriter }

// Hijack implements http.Hijacker.
func (w *hijackWriter) Hijack() (net.Conn, *bufio.ReadWriter, error) {
	c, brw, err := http.NewResponseController(w.ResponseWriter).Hijack()
	if err != nil {
		return nil, nil, err
	}
	w.hijacked = true
	// Every byte from the client, those the server already buffered included, passes
	// the frame check: the connection reads through the server's reader, and the
	// upgrade gets a reader over the connection (a WebSocket library may read from the
	// returned reader instead of the connection).
	var src io.Reader = c
	if brw.Reader.Buffered() > 0 {
		src = brw.Reader // bytes the client sent past the handshake come first
	}
	lc := &limitedConn{Conn: c, src: src, lim: w.lim, max: w.maxBytes, tooLarge: w.tooLarge}
	w.lim.mu.Lock()
	w.lim.conns[lc] = struct{}{}
	w.lim.mu.Unlock()
	return lc, bufio.NewReadWriter(bufio.NewReaderSize(lc, brw.Reader.Size()), brw.Writer), nil
}

// limitedConn is a hijacked WebSocket connection (server side: frames from the client
// are masked). Read parses the frame headers passing through and fails with
// errMessageTooLarge as soon as a header would take the current message over max, or a
// control frame is longer than the protocol allows; nothing of such a frame is handed
// on. Writes pass through.
type limitedConn struct {
	net.Conn
	src      io.Reader // what Read reads: the server's buffered reader over Conn
	lim      *connLimiter
	max      int64
	tooLarge func()
	closing  sync.Once

	hdr      [14]byte // the frame header being read
	hdrLen   int      // bytes of hdr read so far
	payload  uint64   // payload bytes of the current frame still to pass
	msgBytes int64    // data bytes of the current message so far
	fin      bool     // the current frame ends its message
	err      error
}

// Read implements net.Conn.
func (c *limitedConn) Read(p []byte) (int, error) {
	if c.err != nil {
		return 0, c.err
	}
	n, err := c.src.Read(p)
	if ferr := c.scan(p[:n]); ferr != nil {
		c.err = ferr // every later Read fails too
		if c.tooLarge != nil {
			c.tooLarge()
		}
		return 0, ferr
	}
	return n, err
}

// scan advances the frame parser over b.
func (c *limitedConn) scan(b []byte) error {
	if c.err != nil {
		return c.err
	}
	for len(b) > 0 {
		if c.payload > 0 {
			k := uint64(len(b))
			if k > c.payload {
				k = c.payload
			}
			c.payload -= k
			b = b[k:]
			if c.payload == 0 && c.fin {
				c.msgBytes = 0
			}
			continue
		}
		c.hdr[c.hdrLen] = b[0]
		c.hdrLen++
		b = b[1:]
		need, ok := headerLen(c.hdr[:c.hdrLen])
		if !ok || c.hdrLen < need {
			continue
		}
		if err := c.frame(); err != nil {
			return err
		}
		c.hdrLen = 0
	}
	return nil
}

// headerLen returns the length of the frame header that starts with h, once h holds
// enough bytes to know it.
func headerLen(h []byte) (int, bool) {
	if len(h) < 2 {
		return 0, false
	}
	n := 2
	switch h[1] & 0x7f {
	case 126:
		n += 2
	case 127:
		n += 8
	}
	if h[1]&0x80 != 0 {
		n += 4 // masking key
	}
	return n, true
}

// frame checks a complete header in c.hdr.
func (c *limitedConn) frame() error {
	h := c.hdr[:c.hdrLen]
	fin, opcode := h[0]&0x80 != 0, h[0]&0x0f
	var length uint64
	switch l := h[1] & 0x7f; l {
	case 126:
		length = uint64(binary.BigEndian.Uint16(h[2:4]))
	case 127:
		length = binary.BigEndian.Uint64(h[2:10])
	default:
		length = uint64(l)
	}
	if opcode >= 8 { // control frame: close, ping, pong
		if length > 125 {
			return fmt.Errorf("%w: control frame of %d bytes", errMessageTooLarge, length)
		}
		c.payload = length
		c.fin = false // a control frame may sit between the fragments of a message
		return nil
	}
	if length > uint64(c.max-c.msgBytes) {
		return fmt.Errorf("%w: a frame of %d bytes after %d of the message, at most %d", errMessageTooLarge, length, c.msgBytes, c.max)
	}
	c.msgBytes += int64(length)
	c.payload, c.fin = length, fin
	if length == 0 && fin {
		c.msgBytes = 0
	}
	return nil
}

// Close implements net.Conn; the first call gives the connection's slot back.
func (c *limitedConn) Close() error {
	err := c.Conn.Close()
	c.closing.Do(func() {
		c.lim.mu.Lock()
		delete(c.lim.conns, c)
		c.lim.mu.Unlock()
		c.lim.release()
	})
	return err
}

// readGzipBody replaces a gzip-encoded plain HTTP body by its decompressed bytes, read
// through limit (the opamp-go server would decompress it without one). It returns false
// after answering the request when the body is over the limit or not gzip.
func readGzipBody(w http.ResponseWriter, r *http.Request, limit int64) (ok bool, tooLarge bool) {
	if r.Header.Get("Content-Encoding") != "gzip" {
		return true, false
	}
	zr, err := gzip.NewReader(r.Body)
	if err != nil {
		http.Error(w, "gzip body: "+err.Error(), http.StatusBadRequest)
		return false, false
	}
	data, err := io.ReadAll(io.LimitReader(zr, limit+1))
	if err != nil {
		var mbe *http.MaxBytesError
		if errors.As(err, &mbe) {
			http.Error(w, fmt.Sprintf("message over %d bytes", limit), http.StatusRequestEntityTooLarge)
			return false, true
		}
		http.Error(w, "gzip body: "+err.Error(), http.StatusBadRequest)
		return false, false
	}
	if int64(len(data)) > limit {
		http.Error(w, fmt.Sprintf("message over %d bytes decompressed, at most %d", limit, limit), http.StatusRequestEntityTooLarge)
		return false, true
	}
	r.Body = io.NopCloser(bytes.NewReader(data))
	r.Header.Del("Content-Encoding")
	r.ContentLength = int64(len(data))
	r.Header.Set("Content-Length", strconv.Itoa(len(data)))
	return true, false
}
