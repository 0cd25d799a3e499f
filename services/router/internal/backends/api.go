// Package backends keeps the router's view of the backend collectors, built from the
// fleet view's snapshots (pkg/fleetview): the registered collectors with an OTLP address
// (simulated collectors without one are never targets), healthy, degraded or unhealthy
// (flagged: the router uses those only as a last resort), with their live load readings.
package backends

import (
	"log/slog"
	"time"

	"github.com/prometheus/client_golang/prometheus"
)

// Backend is one registered collector with an address.
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
	// Unhealthy is true when its registration says unhealthy, or its last
	// Config.UnhealthyReports reports in a row did (one busy second moves nothing): a
	// target only while no healthy or degraded backend is.
	Unhealthy bool
}

// Config tunes the set.
type Config struct {
	// ReportTTL: a load reading received (by this router's clock) longer ago than this
	// is ignored (default 10s).
	ReportTTL time.Duration
	// UnhealthyReports is how many consecutive load reports must say unhealthy before a
	// backend is flagged unhealthy by its reports (default 3; 1 acts on every report).
	// Its registration's health already has its own hysteresis.
	UnhealthyReports int
	// Log receives warnings (default slog.Default()).
	Log *slog.Logger
	// Registerer takes the set's metrics (nil: not registered anywhere).
	Registerer prometheus.Registerer
}
