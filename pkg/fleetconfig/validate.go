package fleetconfig

import (
	"errors"
	"fmt"
	"maps"
	"math"
	"path"
	"slices"
	"strconv"
	"strings"
)

// ErrInvalid is matched (errors.Is) by every error File.Validate,
// Global.Validate, Region.Validate and LoadFile return for a configuration
// that decoded but breaks a rule. The error itself is a *ValidationError
// listing every problem.
var ErrInvalid = errors.New("invalid config")

// Problem is one broken rule in a configuration.
type Problem struct {
	// Path locates the field, e.g. "global.sampling_strategies[0].min_rate"
	// or "regions.eu-west.batch.max_wait_time".
	Path string `json:"path"`
	// Message states the rule broken, e.g. "0.6 is greater than max_rate 0.5".
	Message string `json:"message"`
}

// String returns "path: message".
func (p Problem) String() string { return p.Path + ": " + p.Message }

// ValidationError lists every problem found in a configuration, in field
// order. It matches ErrInvalid.
type ValidationError struct {
	// Problems is never empty in an error returned by this package.
	Problems []Problem
}

var _ error = (*ValidationError)(nil)

// Error joins the problems with "; ".
func (e *ValidationError) Error() string { return e.join("; ") }

// Multiline returns the problems one per line, for display to a person.
func (e *ValidationError) Multiline() string { return e.join("\n") }

// Is reports whether target is ErrInvalid.
func (e *ValidationError) Is(target error) bool { return target == ErrInvalid }

func (e *ValidationError) join(sep string) string {
	lines := make([]string, len(e.Problems))
	for i, p := range e.Problems {
		lines[i] = p.String()
	}
	return strings.Join(lines, sep)
}

// Validate checks the global configuration and every region, and returns a
// *ValidationError listing every problem, or nil.
func (f File) Validate() error {
	var c checker
	f.Global.check(&c)
	for _, name := range slices.Sorted(maps.Keys(f.Regions)) {
		f.Regions[name].check(&c, name)
	}
	return c.err()
}

// Validate checks g and returns a *ValidationError listing every problem,
// with paths under "global.", or nil. The stored-only fields (Version,
// UpdatedAt, UpdatedBy) are not checked.
func (g Global) Validate() error {
	var c checker
	g.check(&c)
	return c.err()
}

// Validate checks r, the configuration of the region called name, and returns
// a *ValidationError listing every problem, with paths under
// "regions.<name>.", or nil. The name itself must be a valid region name.
func (r Region) Validate(name string) error {
	var c checker
	r.check(&c, name)
	return c.err()
}

func (g Global) check(c *checker) {
	c.rate("global.sampling_rate", g.SamplingRate)
	seen := make(map[StrategyType]int)
	for i, s := range g.SamplingStrategies {
		p := fmt.Sprintf("global.sampling_strategies[%d]", i)
		if first, dup := seen[s.Type]; dup && s.Type.Known() {
			c.add(p+".type", "%s is already listed at sampling_strategies[%d]", s.Type, first)
		} else {
			seen[s.Type] = i
		}
		s.check(c, p)
	}
	g.Degradation.check(c, "global.degradation")
	g.RateLimiting.check(c, "global.rate_limiting")
	for i, r := range g.RoutingRules {
		r.check(c, fmt.Sprintf("global.routing_rules[%d]", i))
	}
	if _, ok := g.Metadata[""]; ok {
		c.add("global.metadata", "keys must not be empty")
	}
}

// strategyFields says which strategy type each optional field belongs to and
// whether it is set.
var strategyFields = []struct {
	name  string
	owner StrategyType
	isSet func(Strategy) bool
}{
	{"rate", StrategyFixed, func(s Strategy) bool { return s.Rate != nil }},
	{"min_rate", StrategyAdaptive, func(s Strategy) bool { return s.MinRate != nil }},
	{"max_rate", StrategyAdaptive, func(s Strategy) bool { return s.MaxRate != nil }},
	{"target_qps", StrategyAdaptive, func(s Strategy) bool { return s.TargetQPS != nil }},
	{"rules", StrategyPriorityBased, func(s Strategy) bool { return len(s.Rules) > 0 }},
	{"budget_per_hour", StrategyCostBased, func(s Strategy) bool { return s.BudgetPerHour != nil }},
	{"cost_per_span", StrategyCostBased, func(s Strategy) bool { return s.CostPerSpan != nil }},
}

func (s Strategy) check(c *checker, p string) {
	switch {
	case s.Type == "":
		c.add(p+".type", "must be set to one of: %s", knownStrategyTypes())
	case !s.Type.Known():
		c.add(p+".type", "%s", unknownStrategyType(string(s.Type)))
	default:
		for _, f := range strategyFields {
			switch set := f.isSet(s); {
			case f.owner == s.Type && !set:
				c.add(p+"."+f.name, "required for type %s", s.Type)
			case f.owner != s.Type && set:
				c.add(p+"."+f.name, "not allowed for type %s (it belongs to %s)", s.Type, f.owner)
			}
		}
	}
	c.optional(p+".rate", s.Rate, c.rate)
	c.optional(p+".min_rate", s.MinRate, c.rate)
	c.optional(p+".max_rate", s.MaxRate, c.rate)
	if s.MinRate != nil && s.MaxRate != nil && isRate(*s.MinRate) && isRate(*s.MaxRate) && *s.MinRate > *s.MaxRate {
		c.add(p+".min_rate", "%v is greater than max_rate %v", *s.MinRate, *s.MaxRate)
	}
	c.optional(p+".target_qps", s.TargetQPS, c.positive)
	c.optional(p+".budget_per_hour", s.BudgetPerHour, c.positive)
	c.optional(p+".cost_per_span", s.CostPerSpan, c.positive)

	catchAll := -1
	for i, r := range s.Rules {
		rp := fmt.Sprintf("%s.rules[%d]", p, i)
		r.check(c, rp)
		if len(r.Services) > 0 {
			continue
		}
		if catchAll >= 0 {
			c.add(rp+".services", "only one rule may omit services (the catch-all); rules[%d] already does", catchAll)
		} else {
			catchAll = i
		}
	}
}

func (r PriorityRule) check(c *checker, p string) {
	c.nonEmpty(p+".priority", r.Priority)
	c.rate(p+".rate", r.Rate)
	for i, g := range r.Services {
		c.glob(fmt.Sprintf("%s.services[%d]", p, i), g)
	}
}

func (d Degradation) check(c *checker, p string) {
	if !d.Enabled && d.Threshold == 0 && d.TargetRate == 0 && d.RecoveryThreshold == 0 {
		return // absent block: degradation is off and there is nothing to check
	}
	thresholdOK := c.fraction(p+".threshold", d.Threshold)
	c.rate(p+".target_rate", d.TargetRate)
	recoveryOK := c.fraction(p+".recovery_threshold", d.RecoveryThreshold)
	if thresholdOK && recoveryOK && d.RecoveryThreshold >= d.Threshold {
		c.add(p+".recovery_threshold", "%v must be less than threshold %v", d.RecoveryThreshold, d.Threshold)
	}
}

func (l RateLimiting) check(c *checker, p string) {
	if l == (RateLimiting{}) {
		return // absent block: no rate limits
	}
	c.positive(p+".max_qps", l.MaxQPS)
	c.atLeast(p+".burst_size", l.BurstSize, 1)
	c.nonNegative(p+".per_service_limit", l.PerServiceLimit)
}

func (r RoutingRule) check(c *checker, p string) {
	c.glob(p+".service", r.Service)
	c.regionName(p+".target_region", r.TargetRegion)
}

func (r Region) check(c *checker, name string) {
	p := regionPath(name)
	c.regionName(p, name)
	c.rate(p+".regional_sampling_rate", r.RegionalSamplingRate)
	for i, pref := range r.LocalRoutingPreference {
		c.regionName(fmt.Sprintf("%s.local_routing_preference[%d]", p, i), pref)
	}
	c.atLeast(p+".buffer_size", r.BufferSize, 1)
	c.atLeast(p+".batch.max_batch_size", r.Batch.MaxBatchSize, 1)
	c.duration(p+".batch.max_wait_time", r.Batch.MaxWaitTime)
	c.atLeast(p+".retry.max_retries", r.Retry.MaxRetries, 0)
	c.duration(p+".retry.initial_backoff", r.Retry.InitialBackoff)
	c.duration(p+".retry.max_backoff", r.Retry.MaxBackoff)
	if r.Retry.InitialBackoff > r.Retry.MaxBackoff && r.Retry.MaxBackoff > 0 {
		c.add(p+".retry.initial_backoff", "%v is greater than max_backoff %v", r.Retry.InitialBackoff, r.Retry.MaxBackoff)
	}
}

// regionPath is the path of the region called name: "regions.eu-west", or
// regions["bad name"] when the name is not a valid region name.
func regionPath(name string) string {
	if validRegionName(name) {
		return "regions." + name
	}
	return "regions[" + strconv.Quote(name) + "]"
}

// validRegionName reports whether s is non-empty and made only of ASCII
// letters, digits, '-' and '_': a NATS subject token (no '.', '*', '>' or
// whitespace) that is also valid in a KV key.
func validRegionName(s string) bool {
	if s == "" {
		return false
	}
	for _, r := range s {
		ok := r >= 'a' && r <= 'z' || r >= 'A' && r <= 'Z' || r >= '0' && r <= '9' || r == '-' || r == '_'
		if !ok {
			return false
		}
	}
	return true
}

// checker collects problems; each method checks one rule on one field.
type checker struct {
	problems []Problem
}

func (c *checker) add(path, format string, args ...any) {
	c.problems = append(c.problems, Problem{Path: path, Message: fmt.Sprintf(format, args...)})
}

// err returns the collected problems as a *ValidationError, or nil.
func (c *checker) err() error {
	if len(c.problems) == 0 {
		return nil
	}
	return &ValidationError{Problems: c.problems}
}

// optional applies check to *v when v is set.
func (c *checker) optional(path string, v *float64, check func(string, float64)) {
	if v != nil {
		check(path, *v)
	}
}

// isRate reports whether v is in [0, 1] (which excludes NaN).
func isRate(v float64) bool { return v >= 0 && v <= 1 }

// rate requires v in [0, 1].
func (c *checker) rate(path string, v float64) {
	if !isRate(v) {
		c.add(path, "%v is outside [0, 1]", v)
	}
}

// fraction requires v in (0, 1] and reports whether it is.
func (c *checker) fraction(path string, v float64) bool {
	if !(v > 0 && v <= 1) {
		c.add(path, "%v is outside (0, 1]", v)
		return false
	}
	return true
}

// positive requires a finite v > 0.
func (c *checker) positive(path string, v float64) {
	switch {
	case v == 0:
		c.add(path, "must be positive")
	case !(v > 0) || math.IsInf(v, 1):
		c.add(path, "must be positive and finite, got %v", v)
	}
}

// nonNegative requires a finite v >= 0.
func (c *checker) nonNegative(path string, v float64) {
	if !(v >= 0) || math.IsInf(v, 1) {
		c.add(path, "must be zero or positive and finite, got %v", v)
	}
}

// atLeast requires v >= lo.
func (c *checker) atLeast(path string, v, lo int) {
	if v < lo {
		c.add(path, "must be at least %d, got %d", lo, v)
	}
}

// duration requires d > 0.
func (c *checker) duration(path string, d Duration) {
	switch {
	case d == 0:
		c.add(path, "must be positive")
	case d < 0:
		c.add(path, "must be positive, got %v", d)
	}
}

// nonEmpty requires s to hold more than whitespace.
func (c *checker) nonEmpty(path, s string) {
	if strings.TrimSpace(s) == "" {
		c.add(path, "must not be empty")
	}
}

// glob requires a non-empty pattern that path.Match accepts.
func (c *checker) glob(p, pattern string) {
	if pattern == "" {
		c.add(p, "must not be empty")
		return
	}
	if _, err := path.Match(pattern, ""); err != nil {
		c.add(p, "%q is not a valid glob: %v", pattern, err)
	}
}

// regionName requires a valid region name (see validRegionName).
func (c *checker) regionName(path, name string) {
	switch {
	case name == "":
		c.add(path, "region name must not be empty")
	case !validRegionName(name):
		c.add(path, "%q is not a valid region name: use only ASCII letters, digits, '-' and '_' (it becomes a NATS subject token and KV key)", name)
	}
}
