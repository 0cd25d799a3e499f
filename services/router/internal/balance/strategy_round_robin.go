package balance

// RoundRobin deals key-space slots to members in turn: equal shares (each member holds
// ⌈slots/N⌉ or fewer).
const RoundRobin Strategy = "round_robin"

var roundRobin = Definition{Name: RoundRobin, Help: "equal shares", Dealer: roundRobinDealer{}}

type roundRobinDealer struct{}

func (roundRobinDealer) Shares(_ Config, ms []Member) ([]float64, float64) {
	w := make([]float64, len(ms))
	for i := range w {
		w[i] = 1
	}
	return w, 1
}
