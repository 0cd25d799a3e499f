package balance

// BoundedLoad is consistent hashing with bounded loads: consistent hashing, except that
// no member holds more than LoadFactor × its fair (capacity-weighted) share of the key
// space; overflow goes to the next member on the ring. The default.
const BoundedLoad Strategy = "bounded_load"

var boundedLoad = Definition{Name: BoundedLoad, Help: "consistent hashing, no backend above load_factor × its capacity share",
	LoadAware: true, Dealer: boundedLoadDealer{}}

type boundedLoadDealer struct{}

func (boundedLoadDealer) Shares(cfg Config, ms []Member) ([]float64, float64) {
	return capacities(ms), cfg.LoadFactor
}
