package fleetview

import (
	"errors"
	"fmt"
	"math"
)

// Weights weigh Score's three terms. Topology's best-collector query and the router's
// intelligent strategy share them.
type Weights struct {
	// Load weighs 1 - utilisation: prefer collectors with the most relative headroom.
	Load float64 `json:"load_weight"`
	// Latency weighs 1 / (1 + avg latency in ms): prefer fast collectors.
	Latency float64 `json:"latency_weight"`
	// Capacity weighs a collector's spare qps relative to the largest spare qps among
	// the candidates: prefer big collectors with the most absolute headroom.
	Capacity float64 `json:"capacity_weight"`
}

// ErrWeights is wrapped by every Weights.Validate error.
var ErrWeights = errors.New("invalid weights")

// Validate checks that every weight is a finite number in [0, 1e6] and that one is > 0.
func (w Weights) Validate() error {
	var errs []error
	for _, f := range []struct {
		name string
		v    float64
	}{{"load_weight", w.Load}, {"latency_weight", w.Latency}, {"capacity_weight", w.Capacity}} {
		if math.IsNaN(f.v) || math.IsInf(f.v, 0) || f.v < 0 || f.v > 1e6 {
			errs = append(errs, fmt.Errorf("%w: %s %v: must be a number in [0, 1e6]", ErrWeights, f.name, f.v))
		}
	}
	if len(errs) == 0 && w.Load+w.Latency+w.Capacity == 0 {
		errs = append(errs, fmt.Errorf("%w: at least one of load, latency and capacity weight must be > 0", ErrWeights))
	}
	return errors.Join(errs...)
}

// Normalised returns w scaled to sum 1, or equal thirds when all are zero.
func (w Weights) Normalised() Weights {
	s := w.Load + w.Latency + w.Capacity
	if !(s > 0) {
		return Weights{1.0 / 3, 1.0 / 3, 1.0 / 3}
	}
	return Weights{w.Load / s, w.Latency / s, w.Capacity / s}
}

// Reading is what Score rates of one candidate.
type Reading struct {
	// Utilization is its load in [0, 1] (clamped): rate over capacity.
	Utilization float64
	// LatencyMS is its average queueing latency.
	LatencyMS float64
	// Spare is the rate it can still take: capacity × (1 - utilisation).
	Spare float64
}

// Score rates a candidate in [0, 1], higher is better, as the weighted mean (weights
// normalised, all zero meaning equal) of three terms:
//
//	load     = 1 - utilisation (clamped to [0, 1])
//	latency  = 1 / (1 + avg latency in ms)
//	capacity = spare / maxSpare (the largest spare among the candidates), at most 1
//
// maxSpare <= 0 makes the capacity term 0; a non-finite result is 0.
func Score(w Weights, r Reading, maxSpare float64) float64 {
	w = w.Normalised()
	load := 1 - math.Min(1, math.Max(0, r.Utilization))
	latency := 1 / (1 + math.Max(0, r.LatencyMS))
	var capacity float64
	if maxSpare > 0 {
		capacity = math.Min(1, math.Max(0, r.Spare)/maxSpare)
	}
	s := w.Load*load + w.Latency*latency + w.Capacity*capacity
	if math.IsNaN(s) || math.IsInf(s, 0) {
		return 0
	}
	return s
}
