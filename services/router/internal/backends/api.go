// Package backends keeps the router's view of the backend collectors: the registry's
// collectors that can take traffic (healthy or degraded, with an OTLP address; simulated
// collectors without an address are never targets), with their live load readings from
// the load stream.
package backends

import (
	"log/slog"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/otelfleet/otelfleet/pkg/events"
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

// Config tunes the set.
type Config struct {
	// NS names the load stream and its subjects (zero: events.Default).
	NS events.Namespace
	// ReportTTL: a load reading older than this is ignored (default 10s).
	ReportTTL time.Duration
	// Log receives warnings about bad registry values and load reports (default
	// slog.Default()).
	Log *slog.Logger
	// Registerer takes the set's metrics (nil: not registered anywhere).
	Registerer prometheus.Registerer
}
