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
// are documented on the Strategy constants, one file per strategy (strategy_<name>.go),
// each a row of the table in strategies.go. The table is a pure function of the members
// and their readings (not of the table it replaces), so every router building from the
// same registry gets the same table and the spans of one trace meet on one backend
// whichever router they pass through.
package balance

import (
	"errors"
	"fmt"
	"math"
	"strings"

	"github.com/otelfleet/otelfleet/pkg/fleetview"
)

// Strategy names how keys are dealt out to members.
type Strategy string

// Dealer is a strategy's rule for dealing the key space: Shares returns each member's
// relative share (ms sorted by Key, readings checked) and the factor over its fair share
// a member may hold (+Inf, or nil shares: no cap; 1: exactly its share).
type Dealer interface {
	Shares(cfg Config, ms []Member) (shares []float64, factor float64)
}

// Definition is one row of the strategy table (strategies.go).
type Definition struct {
	// Name is the strategy's name: the value of --balance-strategy.
	Name Strategy
	// Help says in a few words how it deals keys (flag help, errors, docs).
	Help string
	// LoadAware strategies are also rebuilt every rebalance interval from the latest
	// readings; the others only on membership changes.
	LoadAware bool
	// Dealer deals the key space.
	Dealer Dealer
}

// Strategies returns the known strategies in table order, the default first.
func Strategies() []Strategy {
	out := make([]Strategy, len(strategies))
	for i, d := range strategies {
		out[i] = d.Name
	}
	return out
}

// Definitions returns the strategy table, the default first.
func Definitions() []Definition { return append([]Definition(nil), strategies...) }

// Names returns the known strategies' names joined by ", " (for flag help and errors).
func Names() string {
	names := make([]string, len(strategies))
	for i, d := range strategies {
		names[i] = string(d.Name)
	}
	return strings.Join(names, ", ")
}

// lookup returns the definition of s, or false.
func lookup(s Strategy) (Definition, bool) {
	for _, d := range strategies {
		if d.Name == s {
			return d, true
		}
	}
	return Definition{}, false
}

// LoadAware reports whether s is rebuilt from readings every rebalance interval.
func LoadAware(s Strategy) bool {
	d, ok := lookup(s)
	return ok && d.LoadAware
}

// ErrConfig is wrapped by every Config.Validate and ParseStrategy error.
var ErrConfig = errors.New("invalid balance config")

// ErrMembers is wrapped by Build errors about the members (a duplicate or empty Key, a
// bad reading, too many members).
var ErrMembers = errors.New("invalid balance members")

// ParseStrategy returns the strategy named s ("" is the default, BoundedLoad).
func ParseStrategy(s string) (Strategy, error) {
	if s == "" {
		return strategies[0].Name, nil
	}
	if d, ok := lookup(Strategy(s)); ok {
		return d.Name, nil
	}
	return "", fmt.Errorf("%w: strategy: unknown strategy %q; known: %s", ErrConfig, s, Names())
}

// Weights weigh the Intelligent score (fleetview.Weights, shared with topology's
// best-collector query); all zero means equal.
type Weights = fleetview.Weights

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
	if c.Weights != (Weights{}) {
		if err := c.Weights.Validate(); err != nil {
			errs = append(errs, fmt.Errorf("%w: weights: %w", ErrConfig, err))
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
