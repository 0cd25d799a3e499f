// Package backends keeps the router's view of the backend collectors: the registry's
// collectors that can take traffic (healthy or degraded, with an OTLP address; simulated
// collectors without an address are never targets), with their live load readings from
// the load stream.
package backends

import (
	"context"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
)

// Backend is one collector that can take traffic.
type Backend struct {
	// Key is its registration key; ID and Region its identity.
	Key, ID, Region string
	// Addr is its OTLP endpoint (host:port).
	Addr string
	// Capacity is its capacity in spans/s (0: unknown).
	Capacity float64
	// Load, LatencyMS: its latest load report (utilisation in [0, 1], queueing latency);
	// zero until one arrives.
	Load      float64
	LatencyMS float64
	// Degraded is true when its registration or report says degraded (still a target).
	Degraded bool
}

// Set is the live backend set.
type Set struct {
	_ struct{}
}

// Config tunes the set.
type Config struct {
	// ReportTTL: a load reading older than this is ignored (default 10s).
	ReportTTL time.Duration
}

// New returns a set that calls onChange (from one goroutine, in order) with the full,
// Key-ordered backend list whenever membership, an address, or health changes, and at
// most every second when only readings changed.
func New(nc *nats.Conn, js jetstream.JetStream, registry jetstream.KeyValue, cfg Config, onChange func([]Backend)) *Set {
	panic("backends: not built yet")
}

// Run watches until ctx ends. ready is closed after the first full replay of the registry.
func (s *Set) Run(ctx context.Context, ready chan<- struct{}) error { panic("backends: not built yet") }
