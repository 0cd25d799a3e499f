package routersvc

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"strconv"
	"sync"
	"sync/atomic"
	"time"

	"github.com/klauspost/compress/gzip"
	"github.com/klauspost/compress/zstd"

	"github.com/otelfleet/otelfleet/services/router/internal/otlpwire"
)

// refusalKind says how a refused request is answered on each protocol.
type refusalKind uint8

const (
	// refuseMalformed: HTTP 400 / INVALID_ARGUMENT (not retryable).
	refuseMalformed refusalKind = iota + 1
	// refuseTooLarge: HTTP 413 / RESOURCE_EXHAUSTED (not retryable as is).
	refuseTooLarge
	// refuseBusy: HTTP 503 + Retry-After / UNAVAILABLE + RetryInfo (retry later).
	refuseBusy
	// refuseMediaType: HTTP 415 (an unknown content type or encoding).
	refuseMediaType
	// refuseMethod: HTTP 405 (OTLP/HTTP takes POST).
	refuseMethod
	// refuseUnauthenticated: HTTP 401 / UNAUTHENTICATED (no or a wrong bearer token).
	refuseUnauthenticated
)

// refusal is why a request was not taken.
type refusal struct {
	kind       refusalKind
	msg        string
	retryAfter time.Duration
}

func (r *refusal) Error() string { return r.msg }

func refuse(kind refusalKind, format string, args ...any) *refusal {
	return &refusal{kind: kind, msg: fmt.Sprintf(format, args...)}
}

// busy is the refusal that asks the client to retry after d.
func busy(d time.Duration, format string, args ...any) *refusal {
	r := refuse(refuseBusy, format, args...)
	r.retryAfter = d
	return r
}

// retrySeconds is the Retry-After value for d: whole seconds, at least 1.
func retrySeconds(d time.Duration) string {
	return strconv.Itoa(max(1, int((d+time.Second-1)/time.Second)))
}

// memory counts the bytes the router holds: request bodies being handled (held) plus the
// backends' queues (queued, refreshed from the exporter's counters). Admission refuses
// new requests while the sum is at or above the limit.
type memory struct {
	limit  int64
	held   atomic.Int64
	queued atomic.Int64
	// peak is the most held + queued at an admission (tests).
	peak atomic.Int64
}

// used returns the bytes held now.
func (m *memory) used() int64 { return m.held.Load() + m.queued.Load() }

// admit reports whether a new request may start.
func (m *memory) admit() bool { return m.used() < m.limit }

// take charges n bytes if they fit under the limit.
func (m *memory) take(n int64) bool {
	if m.held.Add(n)+m.queued.Load() > m.limit {
		m.held.Add(-n)
		return false
	}
	m.notePeak()
	return true
}

// give releases n bytes taken earlier.
func (m *memory) give(n int64) { m.held.Add(-n) }

// setQueued records the backends' queued bytes. (Bytes just submitted may be counted
// both here and as held until their request returns: conservative, never under.)
func (m *memory) setQueued(n int64) { m.queued.Store(n) }

func (m *memory) notePeak() {
	u := m.used()
	for {
		p := m.peak.Load()
		if u <= p || m.peak.CompareAndSwap(p, u) {
			return
		}
	}
}

// Bounds of one zstd decoder's memory, whatever a frame header claims.
const (
	maxZstdWindow = 8 * mib
	maxZstdMemory = 64 * mib
)

// retryBusy is the delay a client is asked to wait when the router is full.
const retryBusy = time.Second

// body is a pooled request buffer.
type body struct{ bytes.Buffer }

var bodies = sync.Pool{New: func() any { return new(body) }}

func getBody() *body { b := bodies.Get().(*body); b.Reset(); return b }

func putBody(b *body) {
	if b.Cap() <= 4*mib {
		bodies.Put(b)
	}
}

var (
	gzipReaders = sync.Pool{}
	zstdReaders = sync.Pool{New: func() any {
		d, err := zstd.NewReader(nil, zstd.WithDecoderConcurrency(1), zstd.WithDecoderLowmem(true),
			zstd.WithDecoderMaxWindow(maxZstdWindow), zstd.WithDecoderMaxMemory(maxZstdMemory))
		if err != nil {
			return err
		}
		return d
	}}
)

// errTooLarge is returned by readLimited when the stream holds more than its limit.
var errTooLarge = errors.New("too large")

// readLimited appends r to dst, refusing more than limit bytes in all.
func readLimited(dst *body, r io.Reader, limit int) error {
	n, err := dst.ReadFrom(io.LimitReader(r, int64(limit)+1))
	if err != nil {
		return err
	}
	if n > int64(limit) {
		return errTooLarge
	}
	return nil
}

// errMemory is returned by a charged reader when the router's memory limit is reached.
var errMemory = errors.New("memory limit reached")

// charged counts the bytes read through it against the router's memory, failing with
// errMemory once they do not fit; give them back with release.
type charged struct {
	r   io.Reader
	m   *memory
	got int64
}

func (c *charged) Read(p []byte) (int, error) {
	n, err := c.r.Read(p)
	if n > 0 {
		if !c.m.take(int64(n)) {
			return 0, errMemory
		}
		c.got += int64(n)
	}
	return n, err
}

// release gives back what was charged.
func (c *charged) release() { c.m.give(c.got); c.got = 0 }

// wrapper wraps a reader on the body path (nil: none).
type wrapper func(io.Reader) io.Reader

func (w wrapper) wrap(r io.Reader) io.Reader {
	if w == nil {
		return r
	}
	return w(r)
}

// readRefusal maps a readLimited error.
func readRefusal(err error, limit int, what string) *refusal {
	switch {
	case err == nil:
		return nil
	case errors.Is(err, errTooLarge):
		return refuse(refuseTooLarge, "request body %s more than the %d bytes allowed", what, limit)
	case errors.Is(err, errMemory):
		return busy(retryBusy, "router memory limit reached while reading the request; retry later")
	}
	return nil
}

// decompress appends the decoding of raw (Content-Encoding enc) to dst, refusing more
// than limit bytes of output while reading, so a small bomb costs at most limit. w, if
// set, wraps the decompressed stream (memory accounting).
func decompress(dst *body, enc string, raw []byte, limit int, w wrapper) *refusal {
	var (
		r       io.Reader
		release func()
	)
	switch enc {
	case "", "identity":
		if len(raw) > limit {
			return refuse(refuseTooLarge, "request body is %d bytes, more than the %d allowed", len(raw), limit)
		}
		dst.Write(raw)
		return nil
	case "gzip":
		zr, _ := gzipReaders.Get().(*gzip.Reader)
		var err error
		if zr == nil {
			zr, err = gzip.NewReader(bytes.NewReader(raw))
		} else {
			err = zr.Reset(bytes.NewReader(raw))
		}
		if err != nil {
			return refuse(refuseMalformed, "gzip body: %v", err)
		}
		r, release = zr, func() { gzipReaders.Put(zr) }
	case "zstd":
		v := zstdReaders.Get()
		zr, ok := v.(*zstd.Decoder)
		if !ok {
			return refuse(refuseBusy, "zstd decoder: %v", v)
		}
		if err := zr.Reset(bytes.NewReader(raw)); err != nil {
			zstdReaders.Put(zr)
			return refuse(refuseMalformed, "zstd body: %v", err)
		}
		r, release = zr, func() { _ = zr.Reset(nil); zstdReaders.Put(zr) }
	default:
		return refuse(refuseMediaType, "Content-Encoding %q: want gzip, zstd or identity", enc)
	}
	defer release()
	err := readLimited(dst, w.wrap(r), limit)
	if rf := readRefusal(err, limit, "decompresses to"); rf != nil {
		return rf
	}
	if err != nil {
		return refuse(refuseMalformed, "%s body: %v", enc, err)
	}
	return nil
}

// decodeBody turns an OTLP/HTTP body as received into protobuf: decompressed (enc, at
// most limit bytes, through w) into dst and, for JSON, converted. The result aliases dst or is a
// fresh slice.
func decodeBody(dst *body, sig otlpwire.Signal, enc string, isJSON bool, raw []byte, limit int, w wrapper) ([]byte, *refusal) {
	if r := decompress(dst, enc, raw, limit, w); r != nil {
		return nil, r
	}
	if !isJSON {
		return dst.Bytes(), nil
	}
	pb, err := otlpwire.JSONToProto(sig, dst.Bytes())
	if err != nil {
		return nil, refuse(refuseMalformed, "%v", err)
	}
	return pb, nil
}
