package strategy

import (
	"fmt"
	"math"
	"math/rand/v2"
	"strings"
	"testing"
	"time"

	"github.com/otelfleet/otelfleet/pkg/events"
	"github.com/otelfleet/otelfleet/pkg/fleetconfig"
)

// randomParams draws a valid configuration: any subset of the four strategies, random
// rules, degradation on or off.
func randomParams(r *rand.Rand) events.SamplingParams {
	p := events.SamplingParams{SamplingRate: r.Float64(), ServiceFloorQPS: []float64{0, 1, 10}[r.IntN(3)]}
	if r.IntN(2) == 0 {
		p.Strategies = append(p.Strategies, fixed(r.Float64()))
	}
	if r.IntN(2) == 0 {
		lo := math.Pow(10, -4*r.Float64())
		hi := lo + (1-lo)*r.Float64()
		p.Strategies = append(p.Strategies, adaptive(lo, hi, math.Pow(10, 1+5*r.Float64())))
	}
	if r.IntN(2) == 0 {
		var rules []fleetconfig.PriorityRule
		for i := range r.IntN(4) {
			prio := []string{"high", "normal", "low"}[r.IntN(3)]
			rules = append(rules, fleetconfig.PriorityRule{Priority: prio, Rate: r.Float64(), Services: []string{fmt.Sprintf("s%d*", i)}})
		}
		if r.IntN(2) == 0 {
			rules = append(rules, fleetconfig.PriorityRule{Priority: "normal", Rate: r.Float64()})
		}
		p.Strategies = append(p.Strategies, fleetconfig.Strategy{Type: fleetconfig.StrategyPriorityBased, Rules: rules})
	}
	if r.IntN(2) == 0 {
		p.Strategies = append(p.Strategies, cost(math.Pow(10, 5*r.Float64()), math.Pow(10, -6*r.Float64())))
	}
	if r.IntN(2) == 0 {
		th := 0.5 + 0.5*r.Float64()
		p.Degradation = fleetconfig.Degradation{Enabled: true, Threshold: th, RecoveryThreshold: th * r.Float64(), TargetRate: 0.1 * r.Float64(), KeepHighPriority: r.IntN(2) == 0}
	}
	return p
}

// TestComputeInvariants checks, over many random configurations and fleets, that every
// decision is valid, that Explain reproduces every rate, that the cost budget is never
// exceeded, that adaptive lands on its target whenever the clamps allow, and that
// high-priority services keep their rule's rate unless the budget or degradation forces
// otherwise.
func TestComputeInvariants(t *testing.T) {
	r := rand.New(rand.NewPCG(7, 11))
	for i := range 3000 {
		p := randomParams(r)
		in := Inputs{Services: map[string]float64{}, Degraded: r.IntN(3) == 0, OtherQPS: 100 * r.Float64()}
		for j := range r.IntN(30) {
			in.Services[fmt.Sprintf("s%d-%d", j%5, j)] = math.Pow(10, 6*r.Float64())
		}
		d := Compute(p, in)
		d.V, d.Version, d.Leader, d.Token, d.At = events.DecisionVersion, 1, "x", 1, time.Unix(1, 0)
		ctx := fmt.Sprintf("case %d: params %+v inputs %+v", i, p, in)
		if err := d.Validate(); err != nil {
			t.Fatalf("%s: invalid decision: %v", ctx, err)
		}
		for name, s := range d.Services {
			if e := Explain(&d, name); e.Rate != s.Rate {
				t.Fatalf("%s: Explain(%s) = %v, stored %v\n%s", ctx, name, e.Rate, s.Rate, strings.Join(e.Steps, "\n"))
			}
		}
		if b, ok := newPlan(p).budget(); ok && d.Inputs.KeptQPS > b*(1+2e-5)+1e-9 { // rates and sums keep 6 significant digits
			t.Fatalf("%s: kept %v spans/s over the budget %v", ctx, d.Inputs.KeptQPS, b)
		}
		pl := newPlan(p)
		if a := pl.adaptive; a != nil && !in.Degraded && pl.cost == nil {
			// Every scalable rate strictly inside its clamp means the target was reachable.
			inside := false
			for name, s := range d.Services {
				c := pl.classify(name)
				lo, hi := pl.adaptiveBounds(c, in.Services[name])
				if c.scalable() && s.Rate > lo*(1+1e-5) && s.Rate < hi*(1-1e-5) {
					inside = true
				}
			}
			if inside && math.Abs(d.Inputs.KeptQPS-*a.TargetQPS) > 1e-4**a.TargetQPS+1e-6 {
				t.Fatalf("%s: adaptive kept %v, target %v", ctx, d.Inputs.KeptQPS, *a.TargetQPS)
			}
		}
		for name, s := range d.Services {
			c := pl.classify(name)
			if c.high && d.Inputs.CostScaleAll == 0 && !(in.Degraded && p.Degradation.Enabled && !p.Degradation.KeepHighPriority && c.base > p.Degradation.TargetRate) {
				if !near(s.Rate, c.base, 1e-5) {
					t.Fatalf("%s: high-priority %s at %v, rule %v", ctx, name, s.Rate, c.base)
				}
			}
		}
	}
}
