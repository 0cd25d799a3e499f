package strategy

import (
	"fmt"
	"math"
	"sort"
	"strings"
	"time"

	"github.com/otelfleet/otelfleet/pkg/events"
	"github.com/otelfleet/otelfleet/pkg/fleetconfig"
)

// Inputs are what one computation uses besides the configuration.
type Inputs struct {
	// Services are the smoothed fleet-wide spans per second per service.
	Services map[string]float64
	// OtherQPS is the smoothed spans per second not attributed to a listed service.
	OtherQPS float64
	// FleetQPS, Capacity, Utilization and Collectors describe the live collectors
	// (copied into the decision's inputs).
	FleetQPS    float64
	Capacity    float64
	Utilization float64
	Collectors  int
	// Degraded and DegradedSince are the degradation state to apply.
	Degraded      bool
	DegradedSince time.Time
}

// class is what the configuration says about a service before any traffic is known.
type class struct {
	base     float64
	priority string
	high     bool
	// rule is the index of the priority rule that applies, -1 for none.
	rule int
	// explicit is true when the rule matched by glob (not the catch-all).
	explicit bool
}

// scalable reports whether adaptive scaling and the cost cap may change the rate.
func (c class) scalable() bool { return !c.high && c.base > 0 }

// plan is a configuration prepared for computing many rates.
type plan struct {
	p        events.SamplingParams
	fixed    *float64
	rules    []fleetconfig.PriorityRule
	catchAll int
	adaptive *fleetconfig.Strategy
	cost     *fleetconfig.Strategy
	floor    float64
	// default class: no explicit rule matches.
	def class
}

func newPlan(p events.SamplingParams) *plan {
	pl := &plan{p: p, catchAll: -1, floor: max(p.ServiceFloorQPS, 0)}
	if s, ok := p.Strategy(fleetconfig.StrategyFixed); ok && s.Rate != nil {
		pl.fixed = s.Rate
	}
	if s, ok := p.Strategy(fleetconfig.StrategyPriorityBased); ok {
		pl.rules = s.Rules
		for i, r := range s.Rules {
			if len(r.Services) == 0 {
				pl.catchAll = i
				break
			}
		}
	}
	if s, ok := p.Strategy(fleetconfig.StrategyAdaptive); ok && s.MinRate != nil && s.MaxRate != nil && s.TargetQPS != nil {
		pl.adaptive = &s
	}
	if s, ok := p.Strategy(fleetconfig.StrategyCostBased); ok && s.BudgetPerHour != nil && s.CostPerSpan != nil && *s.CostPerSpan > 0 {
		pl.cost = &s
	}
	pl.def = pl.defaultClass()
	return pl
}

// defaultClass is the class of a service no explicit rule matches.
func (pl *plan) defaultClass() class {
	c := class{rule: -1}
	if pl.catchAll >= 0 {
		r := pl.rules[pl.catchAll]
		c.rule, c.priority, c.base = pl.catchAll, r.Priority, r.Rate
	}
	switch {
	case pl.fixed != nil:
		c.base = *pl.fixed
	case pl.catchAll >= 0:
	default:
		c.base = pl.p.SamplingRate
	}
	c.high = c.priority == fleetconfig.PriorityHigh
	return c
}

// ruleClass is the class of a service matched explicitly by rule i.
func (pl *plan) ruleClass(i int) class {
	if i == pl.catchAll {
		return pl.def
	}
	r := pl.rules[i]
	return class{base: r.Rate, priority: r.Priority, high: r.Priority == fleetconfig.PriorityHigh, rule: i, explicit: true}
}

// classify returns the class of service.
func (pl *plan) classify(service string) class {
	for i, r := range pl.rules {
		for _, g := range r.Services {
			if fleetconfig.MatchGlob(g, service) {
				return pl.ruleClass(i)
			}
		}
	}
	return pl.def
}

// budget returns the cost budget in spans per second, or 0 and false.
func (pl *plan) budget() (float64, bool) {
	if pl.cost == nil {
		return 0, false
	}
	// Valid settings can overflow (1e308 / 1e-10): such a budget never binds, and the
	// decision must stay encodable (JSON has no +Inf).
	return min(max(*pl.cost.BudgetPerHour, 0) / *pl.cost.CostPerSpan / 3600, math.MaxFloat64), true
}

// floorRate is the rate that keeps ServiceFloorQPS spans/s of a service with q spans/s;
// 0 when q is unknown (negative) or zero.
func (pl *plan) floorRate(q float64) float64 {
	if q <= 0 || pl.floor <= 0 {
		return 0
	}
	return min(1, pl.floor/q)
}

// adaptiveBounds returns the clamp of an adaptively scaled rate of class c: [min_rate,
// max_rate], raised to the floor of a service with q spans/s; for a service matched by
// an explicit priority rule, the rule's rate is also an upper bound (adaptive may lower
// "debug at 0.01" under load, never raise it).
func (pl *plan) adaptiveBounds(c class, q float64) (lo, hi float64) {
	lo = max(*pl.adaptive.MinRate, pl.floorRate(q))
	hi = max(*pl.adaptive.MaxRate, lo)
	if c.explicit {
		hi = min(hi, c.base)
		lo = min(lo, hi)
	}
	return lo, hi
}

// scales are the fleet-wide factors of one decision.
type scales struct {
	adaptive float64 // m; used only with an adaptive strategy
	cost     float64 // 0: the cost cap does not bind
	costAll  float64 // 0: unused
	degraded bool
}

// rate computes the rate of a service of class c with smoothed traffic q (negative:
// unknown). When why is not nil, it receives one line per step.
func (pl *plan) rate(c class, q float64, sc scales, why *[]string) float64 {
	r := c.base
	explain := why != nil
	say := func(format string, args ...any) { *why = append(*why, fmt.Sprintf(format, args...)) }
	switch {
	case c.explicit:
		if explain {
			say("base %s: priority rule #%d (%s: %s)", fmtRate(r), c.rule+1, c.priority, strings.Join(pl.rules[c.rule].Services, ", "))
		}
	case pl.fixed != nil:
		if explain {
			say("base %s: fixed strategy (no priority rule matches by name)", fmtRate(r))
		}
	case c.rule >= 0:
		if explain {
			say("base %s: catch-all priority rule #%d (%s)", fmtRate(r), c.rule+1, c.priority)
		}
	default:
		if explain {
			say("base %s: global sampling_rate (no strategy sets a rate for it)", fmtRate(r))
		}
	}
	if pl.adaptive != nil {
		switch {
		case c.high:
			if explain {
				say("adaptive: not applied, high-priority services keep their rule's rate")
			}
		case c.base <= 0:
			if explain {
				say("adaptive: not applied to a zero rate")
			}
		default:
			lo, hi := pl.adaptiveBounds(c, q)
			scaled := r * sc.adaptive
			r = clamp(scaled, lo, hi)
			if explain {
				switch {
				case r < scaled && c.explicit && r == c.base:
					say("adaptive: %s × %.4g = %s, capped at the rule's rate %s (adaptive never raises an explicit rule)", fmtRate(c.base), sc.adaptive, fmtRate(scaled), fmtRate(r))
				case r > scaled && pl.floorRate(q) > *pl.adaptive.MinRate:
					say("adaptive: %s × %.4g = %s, raised to %s to keep the floor of %g spans/s", fmtRate(c.base), sc.adaptive, fmtRate(scaled), fmtRate(r), pl.floor)
				case r != scaled:
					say("adaptive: %s × %.4g = %s, clamped to [%s, %s] → %s", fmtRate(c.base), sc.adaptive, fmtRate(scaled), fmtRate(lo), fmtRate(hi), fmtRate(r))
				default:
					say("adaptive: %s × %.4g → %s (fleet kept spans steered to the target)", fmtRate(c.base), sc.adaptive, fmtRate(r))
				}
			}
		}
	}
	if pl.cost != nil {
		switch {
		case sc.cost <= 0 && sc.costAll <= 0:
			if explain {
				say("cost_based: within budget, no cap")
			}
		case c.scalable() && sc.cost > 0:
			before := r
			r = max(r*sc.cost, min(r, pl.floorRate(q)))
			if explain {
				say("cost_based: budget exceeded, %s × %.4g → %s", fmtRate(before), sc.cost, fmtRate(r))
			}
		case !c.scalable():
			if explain {
				say("cost_based: high-priority and zero rates are capped only when they alone exceed the budget")
			}
		}
		if sc.costAll > 0 {
			before := r
			r *= sc.costAll
			if explain {
				say("cost_based: high-priority traffic and per-service floors alone exceed the budget, every rate × %.4g: %s → %s", sc.costAll, fmtRate(before), fmtRate(r))
			}
		}
	}
	d := pl.p.Degradation
	if sc.degraded {
		switch {
		case d.KeepHighPriority && c.high:
			if explain {
				say("degraded: high-priority services keep their rate (keep_high_priority)")
			}
		case r > d.TargetRate:
			if explain {
				say("degraded: lowered to target_rate %s", fmtRate(d.TargetRate))
			}
			r = d.TargetRate
		default:
			if explain {
				say("degraded: already at or below target_rate %s", fmtRate(d.TargetRate))
			}
		}
	}
	return roundRate(clamp(r, 0, 1))
}

// Compute returns the decision for p and in. It fills Strategy, GlobalRate,
// DefaultRate, Degraded, DegradedSince, Services, Rules, Inputs and Params; the caller
// sets the rest (version, leader, token, time, interval, config version, regions,
// lower bound).
func Compute(p events.SamplingParams, in Inputs) events.Decision {
	pl := newPlan(p)
	names := make([]string, 0, len(in.Services))
	for name, q := range in.Services {
		if q > 0 {
			names = append(names, name)
		}
	}
	sort.Strings(names) // deterministic sums
	// Work on the traffic as stored in the decision (rounded), so that Explain, which
	// only has the stored values, reproduces every rate exactly.
	svc := make([]seen, len(names))
	for i, name := range names {
		svc[i] = seen{name: name, q: roundQPS(in.Services[name]), c: pl.classify(name)}
	}
	// Degradation applies only while enabled (the engine's state machine also leaves
	// the degraded state when it is disabled).
	in.Degraded = in.Degraded && p.Degradation.Enabled
	sc := scales{adaptive: 1, degraded: in.Degraded}
	other := roundQPS(max(in.OtherQPS, 0))
	kept := func(sc scales) float64 {
		k := pl.rate(pl.def, -1, sc, nil) * other
		for _, s := range svc {
			k += pl.rate(s.c, s.q, sc, nil) * s.q
		}
		return k
	}
	budget, hasBudget := pl.budget()
	var target float64
	if pl.adaptive != nil {
		target = max(*pl.adaptive.TargetQPS, 0)
		if hasBudget {
			target = min(target, budget)
		}
		sc.adaptive = pl.solveAdaptive(svc, other, target)
	}
	if hasBudget {
		pre := sc
		pre.degraded = false
		if k := kept(pre); k > budget {
			sc.cost, sc.costAll = pl.solveCost(svc, other, pre, budget)
		}
	}

	d := events.Decision{
		Strategy: pl.strategyName(), Degraded: in.Degraded, Params: p,
		Services: make(map[string]events.ServiceDecision, len(svc)),
	}
	if in.Degraded {
		d.DegradedSince = in.DegradedSince
	}
	var k, q float64
	for _, s := range svc {
		r := pl.rate(s.c, s.q, sc, nil)
		d.Services[s.name] = events.ServiceDecision{Rate: r, QPS: s.q, Priority: s.c.priority}
		k += r * s.q
		q += s.q
	}
	d.DefaultRate = pl.rate(pl.def, -1, sc, nil)
	k += d.DefaultRate * other
	q += other
	for i, r := range pl.rules {
		d.Rules = append(d.Rules, events.RuleDecision{Priority: r.Priority, Services: r.Services, Rate: pl.rate(pl.ruleClass(i), -1, sc, nil)})
	}
	d.GlobalRate = d.DefaultRate
	if q > 0 {
		d.GlobalRate = roundRate(clamp(k/q, 0, 1))
	}
	d.Inputs = events.DecisionInputs{
		Collectors: in.Collectors, FleetQPS: roundQPS(in.FleetQPS), OtherQPS: other,
		Capacity: roundQPS(in.Capacity), Utilization: roundRatio(in.Utilization), KeptQPS: roundQPS(k),
		TargetQPS: roundQPS(target), CostScale: sc.cost, CostScaleAll: sc.costAll,
	}
	if hasBudget {
		d.Inputs.BudgetQPS = budget
	}
	if pl.adaptive != nil {
		d.Inputs.AdaptiveScale = sc.adaptive
	}
	return d
}

type seen struct {
	name string
	q    float64
	c    class
}

// strategyName names the configured strategies in the order they are applied.
func (pl *plan) strategyName() string {
	var parts []string
	for _, t := range []fleetconfig.StrategyType{fleetconfig.StrategyFixed, fleetconfig.StrategyPriorityBased, fleetconfig.StrategyAdaptive, fleetconfig.StrategyCostBased} {
		if _, ok := pl.p.Strategy(t); ok {
			parts = append(parts, string(t))
		}
	}
	if len(parts) == 0 {
		return "sampling_rate"
	}
	return strings.Join(parts, "+")
}

// solveAdaptive returns the factor m for which the predicted kept spans per second,
// before the cost cap and degradation, equal target (or the nearest reachable end).
func (pl *plan) solveAdaptive(svc []seen, other, target float64) float64 {
	// K(m) is flat below the smallest lo/base and above the largest hi/base of any
	// scalable class (seen services, the default class and every rule's class).
	mMin, mMax := math.Inf(1), 0.0
	bound := func(c class, q float64) {
		if !c.scalable() {
			return
		}
		lo, hi := pl.adaptiveBounds(c, q)
		// A tiny (subnormal) base overflows hi/base: keep m finite, the decision stores it.
		mMin = min(mMin, lo/c.base, math.MaxFloat64)
		mMax = max(mMax, min(hi/c.base, math.MaxFloat64))
	}
	bound(pl.def, -1)
	for i := range pl.rules {
		bound(pl.ruleClass(i), -1)
	}
	for _, s := range svc {
		bound(s.c, s.q)
	}
	if mMax == 0 {
		return 1 // nothing to scale
	}
	var fixed float64 // kept spans of services adaptive does not scale
	type term struct{ base, lo, hi, q float64 }
	terms := make([]term, 0, len(svc)+1)
	add := func(c class, q, weight float64) {
		if weight <= 0 {
			return
		}
		if !c.scalable() {
			fixed += c.base * weight
			return
		}
		lo, hi := pl.adaptiveBounds(c, q)
		terms = append(terms, term{c.base, lo, hi, weight})
	}
	add(pl.def, -1, other)
	for _, s := range svc {
		add(s.c, s.q, s.q)
	}
	k := func(m float64) float64 {
		sum := fixed
		for _, t := range terms {
			sum += clamp(t.base*m, t.lo, t.hi) * t.q
		}
		return sum
	}
	if k(mMax) <= target {
		return roundScale(mMax)
	}
	if k(mMin) >= target {
		return roundScale(mMin)
	}
	lo, hi := mMin, mMax // k(lo) < target < k(hi)
	for range 200 {
		mid := math.Sqrt(lo) * math.Sqrt(hi) // lo*hi may overflow
		if lo == 0 {
			mid = hi / 2
		}
		if k(mid) < target {
			lo = mid
		} else {
			hi = mid
		}
		if hi-lo <= hi*1e-9 {
			break
		}
	}
	return roundScale(hi)
}

// solveCost returns the factor applied to scalable rates (and, if that cannot reach the
// budget, the factor applied to every rate) so that the kept spans per second fit the
// budget. sc holds the rates before the cap.
func (pl *plan) solveCost(svc []seen, other float64, sc scales, budget float64) (cost, costAll float64) {
	type term struct{ r, floor, q float64 }
	var fixed float64
	var terms []term
	add := func(c class, q, weight float64) {
		if weight <= 0 {
			return
		}
		r := pl.rate(c, q, sc, nil)
		if !c.scalable() {
			fixed += r * weight
			return
		}
		terms = append(terms, term{r, min(r, pl.floorRate(q)), weight})
	}
	add(pl.def, -1, other)
	for _, s := range svc {
		add(s.c, s.q, s.q)
	}
	k := func(m float64) float64 {
		sum := fixed
		for _, t := range terms {
			sum += max(t.r*m, t.floor) * t.q
		}
		return sum
	}
	const minCost = 1e-9
	if k0 := k(minCost); k0 >= budget {
		// Even with every scalable rate at its floor the budget is exceeded: cap all.
		if k0 <= 0 {
			return minCost, 0
		}
		return minCost, roundScaleDown(budget / k0)
	}
	lo, hi := minCost, 1.0 // k(lo) < budget < k(hi)
	for range 200 {
		mid := (lo + hi) / 2
		if k(mid) <= budget {
			lo = mid
		} else {
			hi = mid
		}
		if hi-lo <= 1e-12 {
			break
		}
	}
	return max(roundScaleDown(lo), minCost), 0
}

// Explanation is how one service's rate was derived.
type Explanation struct {
	// Service is the service explained.
	Service string `json:"service"`
	// Seen is true when the service has its own entry (traffic seen).
	Seen bool `json:"seen"`
	// QPS is the smoothed fleet-wide spans/s used (0 when not seen).
	QPS float64 `json:"qps"`
	// Priority is the priority of the rule that applies ("" when none).
	Priority string `json:"priority,omitempty"`
	// Steps are the derivation, one line per step.
	Steps []string `json:"steps"`
	// Rate is the recomputed rate; Stored is the rate the decision holds. They differ
	// only if the decision was written by a build with different math.
	Rate   float64 `json:"rate"`
	Stored float64 `json:"stored_rate"`
}

// Explain recomputes how d's rate for service was derived, from the parameters and
// inputs stored in d.
func Explain(d *events.Decision, service string) Explanation {
	pl := newPlan(d.Params)
	sc := scales{adaptive: d.Inputs.AdaptiveScale, cost: d.Inputs.CostScale, costAll: d.Inputs.CostScaleAll, degraded: d.Degraded}
	if pl.adaptive == nil || sc.adaptive == 0 {
		sc.adaptive = 1
	}
	e := Explanation{Service: service, Stored: d.RateFor(service)}
	c := pl.classify(service)
	e.Priority = c.priority
	q := -1.0
	if s, ok := d.Services[service]; ok {
		e.Seen, e.QPS, q = true, s.QPS, s.QPS
		e.Steps = append(e.Steps, fmt.Sprintf("traffic: %g spans/s fleet-wide (smoothed, %d live collectors)", s.QPS, d.Inputs.Collectors))
	} else {
		e.Steps = append(e.Steps, "traffic: not seen in the load reports (no floor; rule or default rate)")
	}
	e.Rate = pl.rate(c, q, sc, &e.Steps)
	if pl.adaptive != nil {
		e.Steps = append(e.Steps, fmt.Sprintf("fleet: %g spans/s seen, %g kept at these rates, adaptive target %g spans/s", d.Inputs.FleetQPS, d.Inputs.KeptQPS, d.Inputs.TargetQPS))
	}
	if len(d.Regions) > 0 {
		regions := make([]string, 0, len(d.Regions))
		for r, m := range d.Regions {
			regions = append(regions, fmt.Sprintf("%s ×%g", r, m))
		}
		sort.Strings(regions)
		e.Steps = append(e.Steps, "regions: traffic in "+strings.Join(regions, ", ")+" is multiplied by its regional_sampling_rate")
	}
	return e
}
