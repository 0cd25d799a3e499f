// Package export delivers the router's per-backend shares: one OTLP client per backend
// (gRPC, or HTTP when selected), a bounded queue per backend with a byte limit, batching
// (concatenating encoded requests of one signal), retries with backoff of only that
// backend's share (honouring RetryInfo / Retry-After), and hand-back of what a backend
// could not take — after its retries, or because it left — to the router for re-routing.
package export

import (
	"crypto/tls"
	"errors"
	"time"

	"github.com/otelfleet/otelfleet/services/router/internal/otlpwire"
)

// Sentinels returned by Submit.
var (
	// ErrFull: the backend's queue is at its byte limit (backpressure to the client).
	ErrFull = errors.New("backend queue full")
	// ErrNoTarget: no such backend (it left); the caller re-routes.
	ErrNoTarget = errors.New("no such backend")
	// ErrConfig is wrapped by every Config.Validate error.
	ErrConfig = errors.New("invalid export config")
)

// Target is one backend collector.
type Target struct {
	// Key is its registration key (collector.<region>.<id>); the identity used everywhere.
	Key string
	// Addr is its OTLP endpoint (host:port).
	Addr string
	// Region is its region.
	Region string
}

// Batch is one encoded Export*ServiceRequest for one backend.
type Batch struct {
	Signal  otlpwire.Signal
	Payload []byte
	// Items counts spans, log records or data points.
	Items int
	// HandedBack counts the backends that have given this batch back so far (set by the
	// exporter before it calls the Rerouter), so the router can stop re-routing a batch
	// that no backend will take.
	HandedBack int
	// Acks are the waiting requests this batch carries a part of (nil when nobody
	// waits). Submit takes a reference on each (the caller keeps its own); a batch handed
	// to the Rerouter passes its references on, and they must be settled exactly once.
	Acks []*Ack
}

// Config says how backends are fed. Zero fields take DefaultConfig's values, except
// MaxRetries (0: no retries).
type Config struct {
	// Protocol is "grpc" (default) or "http".
	Protocol string
	// Compression is "none", "gzip" (default) or "zstd".
	Compression string
	// QueueBytes bounds each backend's queue (default 64 MiB).
	QueueBytes int64
	// MaxBatchItems / MaxWait: a batch is sent when it holds this many items or its oldest
	// item waited this long (the region's batch config).
	MaxBatchItems int
	MaxWait       time.Duration
	// MaxBatchBytes: a batch is sent before it would grow past this many bytes (default
	// 3 MiB, under the 4 MiB a gRPC server takes by default).
	MaxBatchBytes int
	// AckLinger: a batch holding a part someone waits for (Batch.Acks) is sent this long
	// after that part arrived, at most (default 5ms; never later than MaxWait).
	AckLinger time.Duration
	// MaxRetries, InitialBackoff, MaxBackoff: the region's retry config.
	MaxRetries     int
	InitialBackoff time.Duration
	MaxBackoff     time.Duration
	// Timeout bounds one export call.
	Timeout time.Duration
	// Senders is how many export calls one backend may have in flight (default 4).
	Senders int
	// TLS, when set, is used for every backend connection; nil means plaintext.
	TLS *tls.Config
}

// Rerouter takes back a batch that backend `from` will not deliver (retries exhausted, the
// backend left, or the exporter is closing with the backend gone); the router splits it
// again over the backends in force, without `from`.
type Rerouter func(from string, b Batch)

// TargetStats are one backend's counters.
type TargetStats struct {
	Key, Addr                                string
	Sent, Failed, Retried, Rerouted, Dropped int64 // items
	QueueBytes                               int64
	InFlight                                 int64
	Leaving                                  bool
}
