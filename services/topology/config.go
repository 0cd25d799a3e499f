package topologysvc

import (
	"errors"
	"fmt"
	"time"

	"github.com/otelfleet/otelfleet/pkg/fleetview"
	"github.com/otelfleet/otelfleet/pkg/knobs"
)

// ErrConfigValidation is wrapped by every error Config.Validate and validateWeights
// return.
var ErrConfigValidation = errors.New("invalid topology config")

// Config configures the topology service. Every field has a flag and an environment
// variable (see Bind).
type Config struct {
	// Interval is how often the leader publishes a topology snapshot on
	// otlp.events.topology.snapshot (flag --topology-snapshot-interval, env
	// TOPOLOGY_SNAPSHOT_INTERVAL). Shorter means fresher events and more of them.
	Interval time.Duration
	// RefreshInterval is how often every replica rebuilds the view its queries answer
	// from (flag --topology-refresh-interval, env TOPOLOGY_REFRESH_INTERVAL). A query sees data
	// at most this old (plus NATS delivery). One rebuild of 10,000 collectors costs a
	// few milliseconds of CPU.
	RefreshInterval time.Duration
	// StaleAfter is how long after its last load report a collector counts as stale
	// (flag --topology-stale-after, env TOPOLOGY_STALE_AFTER): shown as stale, left out of the
	// traffic figures and never chosen. A collector that reports a longer interval_ms
	// gets three of its own intervals instead, whichever is longer.
	StaleAfter time.Duration
	// UnregisteredGrace is how long a load report from a collector without a
	// registration is kept, unshown, waiting for the registration (flag
	// --topology-unregistered-grace, env TOPOLOGY_UNREGISTERED_GRACE).
	UnregisteredGrace time.Duration
	// MaxUnregistered bounds how many unregistered reporters are kept at once (flag
	// --topology-max-unregistered, env TOPOLOGY_MAX_UNREGISTERED); reports beyond it are dropped
	// and counted with reason "unregistered_overflow", so garbage subjects cannot grow
	// memory without bound.
	MaxUnregistered int
	// Weights are the default best-collector weights, used when a query gives none.
	Weights Weights
}

// DefaultConfig returns the defaults: snapshot every 5s, view rebuilt every second,
// stale after 3s (three 1s report intervals), 10s grace for unregistered reporters,
// weights load 0.5, latency 0.3, capacity 0.2.
func DefaultConfig() Config {
	return Config{
		Interval:          5 * time.Second,
		RefreshInterval:   time.Second,
		StaleAfter:        3 * time.Second,
		UnregisteredGrace: 10 * time.Second,
		MaxUnregistered:   10_000,
		Weights:           DefaultWeights(),
	}
}

// Bind registers the service's knobs on k, with defaults taken from c.
func (c *Config) Bind(k *knobs.Set) {
	k.Duration(&c.Interval, "topology-snapshot-interval", "TOPOLOGY_SNAPSHOT_INTERVAL", c.Interval, "how often the topology leader publishes otlp.events.topology.snapshot")
	k.Duration(&c.RefreshInterval, "topology-refresh-interval", "TOPOLOGY_REFRESH_INTERVAL", c.RefreshInterval, "how often each topology replica rebuilds the view queries read")
	k.Duration(&c.StaleAfter, "topology-stale-after", "TOPOLOGY_STALE_AFTER", c.StaleAfter, "a collector with no load report for this long is shown as stale and never chosen")
	k.Duration(&c.UnregisteredGrace, "topology-unregistered-grace", "TOPOLOGY_UNREGISTERED_GRACE", c.UnregisteredGrace, "how long a load report from an unregistered collector waits, unshown, for its registration")
	k.Int(&c.MaxUnregistered, "topology-max-unregistered", "TOPOLOGY_MAX_UNREGISTERED", c.MaxUnregistered, "at most this many unregistered reporters are kept waiting")
	k.Float(&c.Weights.Load, "topology-load-weight", "TOPOLOGY_LOAD_WEIGHT", c.Weights.Load, "default best-collector weight of low utilisation")
	k.Float(&c.Weights.Latency, "topology-latency-weight", "TOPOLOGY_LATENCY_WEIGHT", c.Weights.Latency, "default best-collector weight of low latency")
	k.Float(&c.Weights.Capacity, "topology-capacity-weight", "TOPOLOGY_CAPACITY_WEIGHT", c.Weights.Capacity, "default best-collector weight of spare capacity")
}

// Validate reports every invalid field, naming its flag; each error wraps
// ErrConfigValidation.
func (c Config) Validate() error {
	var errs []error
	dur := func(flag string, d, lo, hi time.Duration) {
		if d < lo || d > hi {
			errs = append(errs, fmt.Errorf("%w: --%s %v: must be in [%v, %v]", ErrConfigValidation, flag, d, lo, hi))
		}
	}
	dur("topology-snapshot-interval", c.Interval, 50*time.Millisecond, time.Hour)
	dur("topology-refresh-interval", c.RefreshInterval, 10*time.Millisecond, time.Minute)
	dur("topology-stale-after", c.StaleAfter, 100*time.Millisecond, time.Hour)
	dur("topology-unregistered-grace", c.UnregisteredGrace, 0, time.Hour)
	if c.MaxUnregistered < 0 {
		errs = append(errs, fmt.Errorf("%w: --topology-max-unregistered %d: must be >= 0", ErrConfigValidation, c.MaxUnregistered))
	}
	if err := validateWeights(c.Weights); err != nil {
		errs = append(errs, fmt.Errorf("default weights (--topology-*-weight): %w", err))
	}
	return errors.Join(errs...)
}

// Weights weigh the three terms of a collector's best-collector score (see Score). They
// need not sum to 1: Score normalises them, so only their ratios matter. The router's
// intelligent strategy shares the type.
type Weights = fleetview.Weights

// DefaultWeights returns load 0.5, latency 0.3, capacity 0.2.
func DefaultWeights() Weights { return Weights{Load: 0.5, Latency: 0.3, Capacity: 0.2} }

// validateWeights checks w (fleetview.Weights.Validate), wrapping ErrConfigValidation.
func validateWeights(w Weights) error {
	if err := w.Validate(); err != nil {
		return fmt.Errorf("%w: %w", ErrConfigValidation, err)
	}
	return nil
}
