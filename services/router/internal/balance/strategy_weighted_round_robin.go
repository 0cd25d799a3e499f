package balance

// WeightedRoundRobin deals slots in proportion to each member's capacity.
const WeightedRoundRobin Strategy = "weighted_round_robin"

var weightedRoundRobin = Definition{Name: WeightedRoundRobin, Help: "shares in proportion to capacity",
	LoadAware: true, Dealer: weightedRoundRobinDealer{}}

type weightedRoundRobinDealer struct{}

func (weightedRoundRobinDealer) Shares(_ Config, ms []Member) ([]float64, float64) {
	return capacities(ms), 1
}
