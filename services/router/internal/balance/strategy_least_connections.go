package balance

// LeastConnections gives each member a share weighted 1/(1 + in-flight/mean in-flight)
// at each rebalance: members with fewer requests in flight take more of the key space.
const LeastConnections Strategy = "least_connections"

var leastConnections = Definition{Name: LeastConnections, Help: "more keys to backends with fewer requests in flight",
	LoadAware: true, Dealer: leastConnectionsDealer{}}

type leastConnectionsDealer struct{}

func (leastConnectionsDealer) Shares(_ Config, ms []Member) ([]float64, float64) {
	w := make([]float64, len(ms))
	var sum float64
	for _, m := range ms {
		sum += float64(m.InFlight)
	}
	mean := sum / float64(len(ms))
	for i, m := range ms {
		w[i] = 1
		if mean > 0 {
			w[i] = 1 / (1 + float64(m.InFlight)/mean)
		}
	}
	return w, 1
}
