// Package balance maps trace keys to backends: an immutable Table built from the live
// members by one of the strategies, read lock-free by every request.
//
// Every strategy keeps traces whole between rebuilds: a key (a trace ID mixed into 64
// bits by TraceKey) always maps to the same member of one Table. The strategies differ in
// how the key space is dealt out to members when a Table is built; the router rebuilds on
// membership changes and, for the load-aware strategies, at most every rebalance interval
// when readings moved beyond a hysteresis — each rebuild moves as little key space as the
// strategy allows (Build is given the previous table).
package balance

import "errors"

// Strategy names how keys are dealt out to members.
type Strategy string

// The strategies. BoundedLoad is the default.
const (
	// BoundedLoad is consistent hashing with bounded loads: consistent hashing, except that
	// no member holds more than LoadFactor × its fair (capacity-weighted) share of the key
	// space; overflow goes to the next member on the ring.
	BoundedLoad Strategy = "bounded_load"
	// ConsistentHash is plain consistent hashing (virtual nodes), capacity-blind.
	ConsistentHash Strategy = "consistent_hash"
	// RoundRobin deals key-space slots to members in turn: equal shares.
	RoundRobin Strategy = "round_robin"
	// WeightedRoundRobin deals slots in proportion to each member's capacity.
	WeightedRoundRobin Strategy = "weighted_round_robin"
	// LeastConnections moves slots from members with the most requests in flight to those
	// with the fewest at each rebalance.
	LeastConnections Strategy = "least_connections"
	// Intelligent weights shares by a score of load, latency and spare capacity
	// (Config.Weights) at each rebalance.
	Intelligent Strategy = "intelligent"
)

// ErrConfig is wrapped by every Config.Validate and ParseStrategy error.
var ErrConfig = errors.New("invalid balance config")

// ParseStrategy returns the strategy named s ("" is BoundedLoad).
func ParseStrategy(s string) (Strategy, error) { panic("balance: not built yet") }

// Weights weigh the Intelligent score; they are normalised to sum 1 (all zero means
// equal).
type Weights struct {
	Load, Latency, Capacity float64
}

// Config says how tables are built.
type Config struct {
	// Strategy is how keys are dealt out (default BoundedLoad).
	Strategy Strategy
	// LoadFactor is c of BoundedLoad: no member above c × its fair share; > 1 (default
	// 1.05). Smaller spreads more evenly and moves more keys on changes.
	LoadFactor float64
	// Weights weigh the Intelligent strategy's score.
	Weights Weights
}

// DefaultConfig returns BoundedLoad with LoadFactor 1.05 and equal weights.
func DefaultConfig() Config { panic("balance: not built yet") }

// Validate reports every bad field, wrapping ErrConfig.
func (c Config) Validate() error { panic("balance: not built yet") }

// Member is one backend as the table sees it.
type Member struct {
	// Key is the member's stable identity (its registration key); placement hashes it.
	Key string
	// Capacity is the spans per second it can take (0: unknown, counted as the mean of
	// the known ones, or 1 when none is known).
	Capacity float64
	// Load is its utilisation in [0, 1], LatencyMS its queueing latency, InFlight its
	// requests in flight: the readings the load-aware strategies use at build time.
	Load      float64
	LatencyMS float64
	InFlight  int64
}

// Table is an immutable key → member mapping. The zero of *Table (nil) is an empty
// table: Pick returns -1.
type Table struct {
	_ struct{}
}

// Build makes the table for members (any order; Keys must be unique) under cfg. prev, the
// table in force (nil for none), lets a strategy keep the placement of keys whose member
// is still there, so a change moves as little as it can.
func Build(cfg Config, members []Member, prev *Table) (*Table, error) {
	panic("balance: not built yet")
}

// Len returns the number of members.
func (t *Table) Len() int { panic("balance: not built yet") }

// Member returns member i (0 ≤ i < Len), in Key order.
func (t *Table) Member(i int) Member { panic("balance: not built yet") }

// Index returns the index of the member with key, or -1.
func (t *Table) Index(key string) int { panic("balance: not built yet") }

// Pick returns the member index for key, or -1 for an empty table. It does not allocate.
func (t *Table) Pick(key uint64) int { panic("balance: not built yet") }

// Next returns the attempt-th choice for key: attempt 0 is Pick, each later attempt a
// different member (the fail-over order for that key), -1 once every member was offered.
func (t *Table) Next(key uint64, attempt int) int { panic("balance: not built yet") }

// Moved returns the fraction of the key space whose member (by Key) differs between a and
// b (either may be nil).
func Moved(a, b *Table) float64 { panic("balance: not built yet") }

// TraceKey mixes all 16 bytes of a trace ID into a 64-bit key. It is independent of the
// 56-bit randomness sampling uses, so sampled traffic spreads like unsampled traffic.
func TraceKey(id [16]byte) uint64 { panic("balance: not built yet") }

// BytesKey hashes a name (a service, for data without a trace ID) into a key.
func BytesKey(b []byte) uint64 { panic("balance: not built yet") }
