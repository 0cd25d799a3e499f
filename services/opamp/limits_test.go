package opampsvc_test

import (
	"bufio"
	"bytes"
	"compress/gzip"
	"encoding/binary"
	"fmt"
	"net"
	"net/http"
	"runtime"
	"sync"
	"testing"
	"time"

	"github.com/open-telemetry/opamp-go/protobufs"
	"github.com/prometheus/client_golang/prometheus"
	"google.golang.org/protobuf/proto"

	"github.com/otelfleet/otelfleet/pkg/natstest"
	"github.com/otelfleet/otelfleet/pkg/promreg"
	opampsvc "github.com/otelfleet/otelfleet/services/opamp"
)

// wsDial opens a WebSocket to /v1/opamp by hand (so the test can send frames no client
// library would) and returns the connection after the 101, or the HTTP status.
func wsDial(t *testing.T, addr string) (net.Conn, int) {
	t.Helper()
	c, err := net.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	fmt.Fprintf(c, "GET /v1/opamp HTTP/1.1\r\nHost: %s\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"+
		"Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n", addr)
	_ = c.SetReadDeadline(time.Now().Add(5 * time.Second))
	resp, err := http.ReadResponse(bufio.NewReader(c), nil)
	if err != nil {
		_ = c.Close()
		t.Fatal(err)
	}
	_ = resp.Body.Close()
	_ = c.SetReadDeadline(time.Time{})
	if resp.StatusCode != http.StatusSwitchingProtocols {
		_ = c.Close()
		return nil, resp.StatusCode
	}
	return c, resp.StatusCode
}

// frameHeader is a masked client frame header (masking key 0, so the payload is sent
// as it is) claiming length bytes.
func frameHeader(fin bool, opcode byte, length uint64) []byte {
	b0 := opcode
	if fin {
		b0 |= 0x80
	}
	var h []byte
	switch {
	case length < 126:
		h = []byte{b0, 0x80 | byte(length)}
	default:
		h = []byte{b0, 0x80 | 127, 0, 0, 0, 0, 0, 0, 0, 0}
		binary.BigEndian.PutUint64(h[2:], length)
	}
	return append(h, 0, 0, 0, 0)
}

// closedByServer reports whether the server ends c within d.
func closedByServer(c net.Conn, d time.Duration) bool {
	_ = c.SetReadDeadline(time.Now().Add(d))
	buf := make([]byte, 512)
	for {
		if _, err := c.Read(buf); err != nil {
			ne, ok := err.(net.Error)
			return !ok || !ne.Timeout()
		}
	}
}

func heapInUse() uint64 {
	runtime.GC()
	runtime.GC()
	var ms runtime.MemStats
	runtime.ReadMemStats(&ms)
	return ms.HeapAlloc
}

// TestOversizedWebSocketMessagesCostNoMemory: 20 WebSockets each start a message whose
// frame header claims 64 MiB and send 8 MiB of it. The server must refuse each from its
// header (close it, count too_large) and keep nothing: the heap after GC grows by less
// than 8 MiB (without the limit it holds every partial message, 160 MiB).
func TestOversizedWebSocketMessagesCostNoMemory(t *testing.T) {
	f := newFixture(t)
	reg := prometheus.NewRegistry()
	_, addr, _ := f.replicaWithMetrics(t, "r1", func(c *opampsvc.Config) { c.MaxMessageBytes = 64 << 10 }, reg)
	const conns, sent = 20, 8 << 20
	payload := make([]byte, sent)
	before := heapInUse()

	cs := make([]net.Conn, conns)
	for i := range cs {
		c, code := wsDial(t, addr)
		if c == nil {
			t.Fatalf("connection %d: HTTP %d", i, code)
		}
		defer c.Close()
		cs[i] = c
	}
	var wg sync.WaitGroup
	for _, c := range cs {
		wg.Add(1)
		go func() {
			defer wg.Done()
			_ = c.SetWriteDeadline(time.Now().Add(5 * time.Second))
			if _, err := c.Write(frameHeader(true, 2, 64<<20)); err != nil {
				return
			}
			_, _ = c.Write(payload) // the server may close before it is all written
		}()
	}
	wg.Wait()
	closed := 0
	for _, c := range cs {
		if closedByServer(c, 5*time.Second) {
			closed++
		}
	}
	growth := int64(heapInUse()) - int64(before)
	refused := refusedCount(t, reg, "too_large")
	t.Logf("heap growth %.1f MiB, %d of %d connections closed, %v counted too_large", float64(growth)/(1<<20), closed, conns, refused)
	if growth > 8<<20 {
		t.Errorf("heap grew by %d bytes for %d refused messages", growth, conns)
	}
	if closed != conns || refused != conns {
		t.Errorf("closed %d, counted %v: want every one of the %d connections closed and counted", closed, refused, conns)
	}
	runtime.KeepAlive(payload)
}

// TestFragmentedMessageOverTheLimit: a message sent as many small frames is refused once
// its sum passes the limit; control frames between the fragments do not reset the sum.
func TestFragmentedMessageOverTheLimit(t *testing.T) {
	f := newFixture(t)
	reg := prometheus.NewRegistry()
	_, addr, _ := f.replicaWithMetrics(t, "r1", func(c *opampsvc.Config) { c.MaxMessageBytes = 64 << 10 }, reg)
	c, code := wsDial(t, addr)
	if c == nil {
		t.Fatalf("HTTP %d", code)
	}
	defer c.Close()
	chunk := make([]byte, 4<<10)
	go func() {
		_ = c.SetWriteDeadline(time.Now().Add(5 * time.Second))
		for i := 0; i < 64; i++ { // 256 KiB in 4 KiB fragments, a ping after each
			op := byte(0)
			if i == 0 {
				op = 2
			}
			if _, err := c.Write(append(frameHeader(false, op, uint64(len(chunk))), chunk...)); err != nil {
				return
			}
			if _, err := c.Write(frameHeader(true, 9, 0)); err != nil {
				return
			}
		}
	}()
	if !closedByServer(c, 5*time.Second) {
		t.Fatal("a fragmented message over the limit did not end the connection")
	}
	natstest.Eventually(t, time.Second, func() bool {
		return refusedCount(t, reg, "too_large") == 1
	}, "refusal counted")
}

// TestConnectionsBounded: over --opamp-max-connections a new WebSocket or plain HTTP
// request gets 503 and is counted; a closed WebSocket frees its slot.
func TestConnectionsBounded(t *testing.T) {
	f := newFixture(t)
	reg := prometheus.NewRegistry()
	_, addr, _ := f.replicaWithMetrics(t, "r1", func(c *opampsvc.Config) { c.MaxConnections = 2 }, reg)
	a, _ := wsDial(t, addr)
	b, _ := wsDial(t, addr)
	if a == nil || b == nil {
		t.Fatal("the first two WebSockets were refused")
	}
	defer b.Close()
	if c, code := wsDial(t, addr); c != nil || code != http.StatusServiceUnavailable {
		t.Fatalf("third WebSocket: HTTP %d, want 503", code)
	}
	uid := newUID()
	if _, code := post(t, addr, &protobufs.AgentToServer{InstanceUid: uid[:]}); code != http.StatusServiceUnavailable {
		t.Fatalf("plain HTTP over the bound: HTTP %d, want 503", code)
	}
	if got := refusedCount(t, reg, "too_many_connections"); got != 2 {
		t.Fatalf("too_many_connections counted %v, want 2", got)
	}
	_ = a.Close()
	natstest.Eventually(t, 5*time.Second, func() bool {
		c, _ := wsDial(t, addr)
		if c != nil {
			_ = c.Close()
		}
		return c != nil
	}, "a slot freed by a closed WebSocket")
}

// TestGzipBodyDecompressedThroughTheLimit: a plain HTTP body that is small compressed
// but over the limit decompressed is refused with 413 (the opamp-go server would
// decompress it whole).
func TestGzipBodyDecompressedThroughTheLimit(t *testing.T) {
	f := newFixture(t)
	reg := prometheus.NewRegistry()
	_, addr, _ := f.replicaWithMetrics(t, "r1", func(c *opampsvc.Config) { c.MaxMessageBytes = 64 << 10 }, reg)
	var buf bytes.Buffer
	zw := gzip.NewWriter(&buf)
	_, _ = zw.Write(make([]byte, 4<<20))
	_ = zw.Close()
	req, _ := http.NewRequest(http.MethodPost, "http://"+addr+"/v1/opamp", &buf)
	req.Header.Set("Content-Type", "application/x-protobuf")
	req.Header.Set("Content-Encoding", "gzip")
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	_ = resp.Body.Close()
	if resp.StatusCode != http.StatusRequestEntityTooLarge {
		t.Fatalf("gzip bomb: HTTP %d, want 413", resp.StatusCode)
	}
	if got := refusedCount(t, reg, "too_large"); got != 1 {
		t.Fatalf("too_large counted %v, want 1", got)
	}
	// A small gzip body still works.
	uid := newUID()
	body, _ := proto.Marshal(&protobufs.AgentToServer{InstanceUid: uid[:], AgentDescription: &protobufs.AgentDescription{}})
	buf.Reset()
	zw = gzip.NewWriter(&buf)
	_, _ = zw.Write(body)
	_ = zw.Close()
	req, _ = http.NewRequest(http.MethodPost, "http://"+addr+"/v1/opamp", &buf)
	req.Header.Set("Content-Type", "application/x-protobuf")
	req.Header.Set("Content-Encoding", "gzip")
	resp, err = http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	_ = resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("small gzip body: HTTP %d", resp.StatusCode)
	}
}

// refusedCount reads otelfleet_opamp_refused_total{reason} from reg.
func refusedCount(t *testing.T, reg *prometheus.Registry, reason string) float64 {
	t.Helper()
	return counterValue(t, reg, "otelfleet_opamp_refused_total", "reason", reason)
}

// counterValue reads counter name{label=value} from reg (0 when absent).
func counterValue(t *testing.T, reg *prometheus.Registry, name, label, value string) float64 {
	t.Helper()
	v, err := promreg.Sum(reg, name, map[string]string{label: value})
	if err != nil {
		t.Fatal(err)
	}
	return v
}
