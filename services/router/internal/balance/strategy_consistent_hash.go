package balance

import "math"

// ConsistentHash is plain consistent hashing (virtual nodes), capacity-blind.
const ConsistentHash Strategy = "consistent_hash"

var consistentHash = Definition{Name: ConsistentHash, Help: "plain consistent hashing, capacity-blind", Dealer: consistentHashDealer{}}

type consistentHashDealer struct{}

func (consistentHashDealer) Shares(Config, []Member) ([]float64, float64) { return nil, math.Inf(1) }
