// Package balance maps trace keys to backends: an immutable Table built from the live
// members by one of the strategies, read lock-free by every request.
//
// Every strategy keeps traces whole between rebuilds: a key (a trace ID mixed into 64
// bits by TraceKey) always maps to the same member of one Table. The strategies differ in
// how the key space is dealt out to members when a Table is built; the router rebuilds on
// membership changes and, for the load-aware strategies, at most every rebalance interval
// when readings moved beyond a hysteresis — each rebuild moves as little key space as the
// strategy allows.
//
// A Table is a fixed partition of the key space into slots (Pick is one shift and one
// load). Every strategy deals the slots out the same way, and only the shares differ:
// members are hashed onto a ring of virtual nodes by Key, each slot goes to the member
// owning its ring position unless that member already holds its cap, in which case it
// passes to the next member on the ring that does not. The shares and caps per strategy
// are documented on the Strategy constants. The table is a pure function of the members
// and their readings (not of the table it replaces), so every router building from the
// same registry gets the same table and the spans of one trace meet on one backend
// whichever router they pass through.
package balance

import (
	"errors"
	"fmt"
	"math"
	"strings"
)

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
	// RoundRobin deals key-space slots to members in turn: equal shares (each member
	// holds ⌈slots/N⌉ or fewer).
	RoundRobin Strategy = "round_robin"
	// WeightedRoundRobin deals slots in proportion to each member's capacity.
	WeightedRoundRobin Strategy = "weighted_round_robin"
	// LeastConnections gives each member a share weighted 1/(1 + in-flight/mean in-flight)
	// at each rebalance: members with fewer requests in flight take more of the key space.
	LeastConnections Strategy = "least_connections"
	// Intelligent weights shares by a score of load, latency and spare capacity
	// (Config.Weights) at each rebalance: score = w_load·(1−load) +
	// w_latency·1/(1+latency_ms) + w_capacity·spare/max spare, where spare is
	// capacity·(1−load). A member's share is proportional to its score (at least 1% of
	// the best score, so no live member is left without traffic).
	Intelligent Strategy = "intelligent"
)

// strategies lists the known strategies in documentation order.
var strategies = []Strategy{BoundedLoad, ConsistentHash, RoundRobin, WeightedRoundRobin, LeastConnections, Intelligent}

// Strategies returns the known strategies, the default first.
func Strategies() []Strategy { return append([]Strategy(nil), strategies...) }

// ErrConfig is wrapped by every Config.Validate and ParseStrategy error.
var ErrConfig = errors.New("invalid balance config")

// ErrMembers is wrapped by Build errors about the members (a duplicate or empty Key, a
// bad reading, too many members).
var ErrMembers = errors.New("invalid balance members")

// ParseStrategy returns the strategy named s ("" is BoundedLoad).
func ParseStrategy(s string) (Strategy, error) {
	if s == "" {
		return BoundedLoad, nil
	}
	for _, k := range strategies {
		if string(k) == s {
			return k, nil
		}
	}
	names := make([]string, len(strategies))
	for i, k := range strategies {
		names[i] = string(k)
	}
	return "", fmt.Errorf("%w: strategy: unknown strategy %q; known: %s", ErrConfig, s, strings.Join(names, ", "))
}

// Weights weigh the Intelligent score; they are normalised to sum 1 (all zero means
// equal).
type Weights struct {
	Load, Latency, Capacity float64
}

// normalised returns w scaled to sum 1, or equal thirds when all are zero.
func (w Weights) normalised() Weights {
	s := w.Load + w.Latency + w.Capacity
	if s == 0 {
		return Weights{1.0 / 3, 1.0 / 3, 1.0 / 3}
	}
	return Weights{w.Load / s, w.Latency / s, w.Capacity / s}
}

// Config says how tables are built.
type Config struct {
	// Strategy is how keys are dealt out (default BoundedLoad).
	Strategy Strategy
	// LoadFactor is c of BoundedLoad: no member above c × its fair share; > 1 (default
	// 1.05). Smaller spreads more evenly and moves more keys on changes.
	LoadFactor float64
	// Weights weigh the Intelligent strategy's score (each ≥ 0).
	Weights Weights
}

// DefaultConfig returns BoundedLoad with LoadFactor 1.05 and equal weights.
func DefaultConfig() Config {
	return Config{Strategy: BoundedLoad, LoadFactor: 1.05}
}

// Validate reports every bad field, wrapping ErrConfig.
func (c Config) Validate() error {
	var errs []error
	if _, err := ParseStrategy(string(c.Strategy)); err != nil {
		errs = append(errs, err)
	}
	if !(c.LoadFactor > 1) || math.IsInf(c.LoadFactor, 0) {
		errs = append(errs, fmt.Errorf("%w: load_factor: %v must be a finite number above 1 (for example 1.05)", ErrConfig, c.LoadFactor))
	}
	for _, f := range []struct {
		name string
		v    float64
	}{{"weights.load", c.Weights.Load}, {"weights.latency", c.Weights.Latency}, {"weights.capacity", c.Weights.Capacity}} {
		if !(f.v >= 0) || math.IsInf(f.v, 0) {
			errs = append(errs, fmt.Errorf("%w: %s: %v must be a finite number ≥ 0", ErrConfig, f.name, f.v))
		}
	}
	return errors.Join(errs...)
}

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
