package balance

import "github.com/otelfleet/otelfleet/pkg/fleetview"

// Intelligent weights shares by fleetview.Score (the formula of topology's best
// collector) of load, latency and spare capacity (Config.Weights) at each rebalance:
// score = w_load·(1−load) + w_latency·1/(1+latency_ms) + w_capacity·spare/max spare,
// weights normalised, where spare is capacity·(1−load). A member's share is proportional
// to its score (at least 1% of the best score, so no live member is left without
// traffic).
const Intelligent Strategy = "intelligent"

var intelligent = Definition{Name: Intelligent, Help: "shares by a score of load, latency and spare capacity",
	LoadAware: true, Dealer: intelligentDealer{}}

type intelligentDealer struct{}

func (intelligentDealer) Shares(cfg Config, ms []Member) ([]float64, float64) {
	caps := capacities(ms)
	readings := make([]fleetview.Reading, len(ms))
	var maxSpare, best float64
	for i, m := range ms {
		load := min(m.Load, 1)
		readings[i] = fleetview.Reading{Utilization: load, LatencyMS: m.LatencyMS, Spare: caps[i] * (1 - load)}
		maxSpare = max(maxSpare, readings[i].Spare)
	}
	w := make([]float64, len(ms))
	for i := range ms {
		w[i] = fleetview.Score(cfg.Weights, readings[i], maxSpare)
		best = max(best, w[i])
	}
	if best == 0 {
		best = 1
	}
	for i := range w {
		w[i] = max(w[i], best/100)
	}
	return w, 1
}
