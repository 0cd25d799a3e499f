// Package export delivers the router's per-backend shares: one OTLP client per backend
// (gRPC, or HTTP when selected), a bounded queue per backend with a byte limit, batching
// (concatenating encoded requests of one signal), retries with backoff of only that
// backend's share (honouring RetryInfo / Retry-After), and hand-back of what a backend
// could not take — after its retries, or because it left — to the router for re-routing.
package export

import (
	"context"
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
}

// Config says how backends are fed.
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
	// MaxRetries, InitialBackoff, MaxBackoff: the region's retry config.
	MaxRetries     int
	InitialBackoff time.Duration
	MaxBackoff     time.Duration
	// Timeout bounds one export call.
	Timeout time.Duration
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

// Exporter feeds every backend. Safe for concurrent use.
type Exporter struct {
	_ struct{}
}

// New returns an exporter; reroute receives what a backend gives back.
func New(cfg Config, reroute Rerouter) (*Exporter, error) { panic("export: not built yet") }

// SetConfig applies a new config to every backend (hot reload).
func (e *Exporter) SetConfig(cfg Config) error { panic("export: not built yet") }

// SetTargets makes targets the backends in force: new ones get a client, missing ones
// stop taking batches at once and hand their queued and in-flight batches to the
// rerouter (in-flight ones once their call ends unsuccessfully or is abandoned).
func (e *Exporter) SetTargets(targets []Target) { panic("export: not built yet") }

// Submit queues b for backend key. It returns ErrFull or ErrNoTarget without queuing.
func (e *Exporter) Submit(key string, b Batch) error { panic("export: not built yet") }

// InFlight returns backend key's requests in flight (for least_connections).
func (e *Exporter) InFlight(key string) int64 { panic("export: not built yet") }

// Stats returns every backend's counters, in key order.
func (e *Exporter) Stats() []TargetStats { panic("export: not built yet") }

// Close flushes every queue within ctx, then stops the clients.
func (e *Exporter) Close(ctx context.Context) error { panic("export: not built yet") }
