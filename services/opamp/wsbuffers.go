package opampsvc

import (
	"bufio"
	"errors"
	"net"
	"net/http"
)

// Buffers of an agent's WebSocket. gorilla/websocket (under opamp-go's server) keeps the
// buffers net/http hijacks with the connection, 4 KiB to read and 4 KiB to write, for as
// long as the agent stays connected: 8 KiB of every held agent's memory, for messages
// that are mostly a few hundred bytes (heartbeats, status). With these sizes a larger
// message costs more reads (bufio reads a large payload straight into its destination)
// and is written as several frames of one message, which every WebSocket client
// reassembles; the remote configs this service pushes are the only large ones.
const (
	wsReadBuffer  = 512  // more than the 256 bytes gorilla needs to reuse it
	wsWriteBuffer = 1024 // more than gorilla's 14-byte frame header + 256
)

// smallBuffers makes a WebSocket upgrade on w keep wsReadBuffer and wsWriteBuffer bytes
// instead of net/http's 4 KiB each; a plain HTTP request is served as it would be.
type smallBuffers struct{ http.ResponseWriter }

// Unwrap gives http.ResponseController the wrapped writer.
func (w smallBuffers) Unwrap() http.ResponseWriter { return w.ResponseWriter }

// Hijack hijacks the wrapped writer and hands over smaller buffers on the same
// connection; when the client already sent bytes past the handshake (the buffer holds
// them) the original buffers are handed over, and the upgrade refuses it as it would.
func (w smallBuffers) Hijack() (net.Conn, *bufio.ReadWriter, error) {
	h, ok := w.ResponseWriter.(http.Hijacker)
	if !ok {
		return nil, nil, errors.New("opamp: the response writer cannot be hijacked")
	}
	conn, brw, err := h.Hijack()
	if err != nil || brw.Reader.Buffered() > 0 || brw.Writer.Buffered() > 0 {
		return conn, brw, err
	}
	return conn, bufio.NewReadWriter(bufio.NewReaderSize(conn, wsReadBuffer), bufio.NewWriterSize(conn, wsWriteBuffer)), nil
}
