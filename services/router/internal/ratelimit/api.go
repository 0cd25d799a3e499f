// Package ratelimit enforces the fleet-wide limits of the config's rate_limiting block
// (max_qps, burst_size, per_service_limit): each router admits its share of each limit,
// computed from the live routers' observed demand, with local token buckets.
package ratelimit

import "time"

// Limits are the fleet-wide limits (0 = none).
type Limits struct {
	MaxQPS          float64
	Burst           float64
	PerServiceLimit float64
}

// PeerDemand is one other router's observed demand (items per second before limiting).
type PeerDemand struct {
	Total      float64
	PerService map[string]float64
	At         time.Time
}

// Fleet admits items against this router's share of the fleet-wide limits. It is safe
// for concurrent use; Allow does not allocate for services it already tracks.
type Fleet struct {
	_ struct{}
}

// NewFleet returns a limiter with limits l, tracking at most maxServices services (the
// rest share one "other" bucket).
func NewFleet(l Limits, maxServices int) *Fleet { panic("ratelimit: not built yet") }

// SetLimits replaces the limits (config hot reload).
func (f *Fleet) SetLimits(l Limits) { panic("ratelimit: not built yet") }

// Allow admits up to n items of service at now and returns how many were admitted;
// the demand it sees (all n) is recorded for Demand.
func (f *Fleet) Allow(service []byte, n int, now time.Time) int { panic("ratelimit: not built yet") }

// Demand returns this router's observed demand, to publish for the other routers.
func (f *Fleet) Demand(now time.Time) PeerDemand { panic("ratelimit: not built yet") }

// SetPeers replaces the other live routers' demand (keyed by router id) and recomputes
// this router's shares; reports older than maxAge count as gone.
func (f *Fleet) SetPeers(peers map[string]PeerDemand, now time.Time, maxAge time.Duration) {
	panic("ratelimit: not built yet")
}

// Share returns this router's share of limit given its own demand and the others'
// demands: proportional to demand, never below an equal split's fair floor when the
// fleet's demand is under the limit... (the exact rule is documented where it is built).
func Share(limit, own float64, others []float64) float64 { panic("ratelimit: not built yet") }
