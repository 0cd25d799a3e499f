package strategy

import (
	"fmt"
	"math"
	"strings"
	"testing"
	"time"

	"github.com/otelfleet/otelfleet/pkg/events"
	"github.com/otelfleet/otelfleet/pkg/fleetconfig"
)

func fixed(r float64) fleetconfig.Strategy {
	return fleetconfig.Strategy{Type: fleetconfig.StrategyFixed, Rate: new(r)}
}

func adaptive(minRate, maxRate, target float64) fleetconfig.Strategy {
	return fleetconfig.Strategy{Type: fleetconfig.StrategyAdaptive, MinRate: new(minRate), MaxRate: new(maxRate), TargetQPS: new(target)}
}

func cost(budgetPerHour, perSpan float64) fleetconfig.Strategy {
	return fleetconfig.Strategy{Type: fleetconfig.StrategyCostBased, BudgetPerHour: new(budgetPerHour), CostPerSpan: new(perSpan)}
}

// exampleRules are the priority rules of examples/global-config.yaml.
func exampleRules() fleetconfig.Strategy {
	return fleetconfig.Strategy{Type: fleetconfig.StrategyPriorityBased, Rules: []fleetconfig.PriorityRule{
		{Priority: "high", Rate: 1.0, Services: []string{"payment", "checkout"}},
		{Priority: "normal", Rate: 0.1},
		{Priority: "low", Rate: 0.01, Services: []string{"debug", "test"}},
	}}
}

func params(rate float64, strategies ...fleetconfig.Strategy) events.SamplingParams {
	return events.SamplingParams{SamplingRate: rate, Strategies: strategies}
}

func near(got, want, rel float64) bool {
	if want == 0 {
		return math.Abs(got) < 1e-12
	}
	return math.Abs(got-want) <= rel*math.Abs(want)
}

func TestCompute(t *testing.T) {
	degradation := fleetconfig.Degradation{Enabled: true, Threshold: 0.8, TargetRate: 0.01, RecoveryThreshold: 0.6, KeepHighPriority: true}
	tests := []struct {
		name     string
		p        events.SamplingParams
		in       Inputs
		want     map[string]float64 // per-service rates (seen or not)
		wantKept float64            // 0: not checked
		strategy string
	}{
		{
			name:     "sampling_rate alone",
			p:        params(0.25),
			in:       Inputs{Services: map[string]float64{"a": 100}},
			want:     map[string]float64{"a": 0.25, "unseen": 0.25},
			wantKept: 25,
			strategy: "sampling_rate",
		},
		{
			name:     "fixed overrides sampling_rate",
			p:        params(0.25, fixed(0.5)),
			in:       Inputs{Services: map[string]float64{"a": 100}},
			want:     map[string]float64{"a": 0.5, "unseen": 0.5},
			strategy: "fixed",
		},
		{
			name:     "priority rules by glob, catch-all for the rest",
			p:        params(0.5, exampleRules()),
			in:       Inputs{Services: map[string]float64{"payment": 10, "debug": 10, "cart": 10}},
			want:     map[string]float64{"payment": 1, "checkout": 1, "debug": 0.01, "test": 0.01, "cart": 0.1, "unseen": 0.1},
			strategy: "priority_based",
		},
		{
			name: "priority rules without a catch-all fall back to sampling_rate",
			p: params(0.3, fleetconfig.Strategy{Type: fleetconfig.StrategyPriorityBased, Rules: []fleetconfig.PriorityRule{
				{Priority: "high", Rate: 1, Services: []string{"pay-*"}},
			}}),
			in:   Inputs{Services: map[string]float64{"pay-eu": 1, "cart": 1}},
			want: map[string]float64{"pay-eu": 1, "pay-us": 1, "cart": 0.3},
		},
		{
			name:     "fixed sets the base, explicit rules still win",
			p:        params(0.1, fixed(0.2), exampleRules()),
			in:       Inputs{Services: map[string]float64{"payment": 10, "debug": 10, "cart": 10}},
			want:     map[string]float64{"payment": 1, "debug": 0.01, "cart": 0.2, "unseen": 0.2},
			strategy: "fixed+priority_based",
		},
		{
			name:     "adaptive is the plain clamp(target/qps) for one class",
			p:        params(0.1, adaptive(0.01, 0.5, 100_000)),
			in:       Inputs{Services: map[string]float64{"a": 250_000, "b": 150_000}},
			want:     map[string]float64{"a": 0.25, "b": 0.25, "unseen": 0.25},
			wantKept: 100_000,
			strategy: "adaptive",
		},
		{
			name: "adaptive clamps at max_rate when traffic is low",
			p:    params(0.1, adaptive(0.01, 0.5, 100_000)),
			in:   Inputs{Services: map[string]float64{"a": 1000}},
			want: map[string]float64{"a": 0.5, "unseen": 0.5},
		},
		{
			name: "adaptive clamps at min_rate under a flood",
			p:    params(0.1, adaptive(0.01, 0.5, 100_000)),
			in:   Inputs{Services: map[string]float64{"a": 1e9}},
			want: map[string]float64{"a": 0.01, "unseen": 0.01},
		},
		{
			name: "adaptive with no traffic serves max_rate",
			p:    params(0.1, adaptive(0.01, 0.5, 100_000)),
			in:   Inputs{},
			want: map[string]float64{"unseen": 0.5},
		},
		{
			name: "adaptive keeps high priority and scales the rest proportionally",
			p:    params(0.1, adaptive(0.001, 0.5, 10_000), exampleRules()),
			in:   Inputs{Services: map[string]float64{"payment": 2_000, "cart": 100_000, "debug": 100_000}},
			// payment keeps 2000/s at 1.0; cart (0.1·m) and debug (0.01·m) share 8000/s:
			// 100000·0.1·m + 100000·0.01·m = 8000 → m = 8000/11000.
			want:     map[string]float64{"payment": 1, "checkout": 1, "cart": 0.1 * 8000 / 11000, "debug": 0.01 * 8000 / 11000},
			wantKept: 10_000,
			strategy: "priority_based+adaptive",
		},
		{
			name: "adaptive raises the default class to max_rate but never an explicit rule",
			p:    params(0.1, adaptive(0.01, 0.5, 100_000), exampleRules()),
			in:   Inputs{Services: map[string]float64{"payment": 10, "cart": 1000, "debug": 1000}},
			want: map[string]float64{"payment": 1, "cart": 0.5, "debug": 0.01, "test": 0.01, "unseen": 0.5},
		},
		{
			name: "adaptive lowers an explicit rule under load, down to min_rate",
			p: params(0.1, adaptive(0.001, 0.5, 1_000), fleetconfig.Strategy{Type: fleetconfig.StrategyPriorityBased, Rules: []fleetconfig.PriorityRule{
				{Priority: "low", Rate: 0.05, Services: []string{"batch-*"}}, {Priority: "normal", Rate: 0.1},
			}}),
			// 0.1·m·90000 + 0.05·m·20000 = 1000 → m = 0.1.
			in:   Inputs{Services: map[string]float64{"cart": 90_000, "batch-x": 20_000}},
			want: map[string]float64{"cart": 0.01, "batch-x": 0.005},
		},
		{
			name: "adaptive floor keeps a small service from starving",
			p:    events.SamplingParams{SamplingRate: 0.1, ServiceFloorQPS: 1, Strategies: []fleetconfig.Strategy{adaptive(0.0001, 0.5, 1_000)}},
			in:   Inputs{Services: map[string]float64{"big": 1_000_000, "tiny": 2}},
			// tiny keeps at least 1 span/s (rate 0.5); big gets the remaining 999/s.
			want:     map[string]float64{"tiny": 0.5, "big": 999.0 / 1_000_000},
			wantKept: 1_000,
		},
		{
			name: "adaptive does not raise an explicit zero rate",
			p: params(0.1, adaptive(0.01, 0.5, 1000), fleetconfig.Strategy{Type: fleetconfig.StrategyPriorityBased, Rules: []fleetconfig.PriorityRule{
				{Priority: "low", Rate: 0, Services: []string{"noise"}}, {Priority: "normal", Rate: 0.1},
			}}),
			in:   Inputs{Services: map[string]float64{"noise": 10, "a": 10}},
			want: map[string]float64{"noise": 0, "a": 0.5},
		},
		{
			name: "cost_based alone is min(1, budget/(qps·3600·cost))",
			// 36 per hour at 0.001 per span: 10 spans/s.
			p:        params(1, cost(36, 0.001)),
			in:       Inputs{Services: map[string]float64{"a": 600, "b": 400}},
			want:     map[string]float64{"a": 0.01, "b": 0.01, "unseen": 0.01},
			wantKept: 10,
			strategy: "cost_based",
		},
		{
			name: "cost_based within budget changes nothing",
			p:    params(0.1, cost(3600, 1)),
			in:   Inputs{Services: map[string]float64{"a": 5}},
			want: map[string]float64{"a": 0.1},
		},
		{
			name:     "cost_based lowers the adaptive target",
			p:        params(0.1, adaptive(0.0001, 1, 100_000), cost(36_000, 0.01)),
			in:       Inputs{Services: map[string]float64{"a": 500_000, "b": 500_000}},
			want:     map[string]float64{"a": 0.001, "b": 0.001},
			wantKept: 1_000,
			strategy: "adaptive+cost_based",
		},
		{
			name: "cost_based caps normal services before high-priority ones",
			p:    params(0.1, exampleRules(), cost(36, 0.001)), // 10 spans/s
			in:   Inputs{Services: map[string]float64{"payment": 5, "cart": 1000}},
			// payment keeps 5/s at 1.0; cart gets 5/s → 0.005 (its floor, 1/s, is lower).
			want:     map[string]float64{"payment": 1, "cart": 0.005},
			wantKept: 10,
		},
		{
			name: "cost_based caps everything when high priority alone exceeds the budget",
			p:    params(0.1, exampleRules(), cost(36, 0.001)), // 10 spans/s
			in:   Inputs{Services: map[string]float64{"payment": 40}},
			want: map[string]float64{"payment": 0.25},
		},
		{
			name:     "degraded lowers rates to target_rate, keeps high priority",
			p:        events.SamplingParams{SamplingRate: 0.1, Strategies: []fleetconfig.Strategy{exampleRules()}, Degradation: degradation},
			in:       Inputs{Services: map[string]float64{"payment": 10, "cart": 10, "debug": 10}, Degraded: true},
			want:     map[string]float64{"payment": 1, "cart": 0.01, "debug": 0.01, "unseen": 0.01},
			strategy: "priority_based",
		},
		{
			name: "degraded without keep_high_priority lowers everything",
			p: events.SamplingParams{SamplingRate: 0.1, Strategies: []fleetconfig.Strategy{exampleRules()},
				Degradation: fleetconfig.Degradation{Enabled: true, Threshold: 0.8, TargetRate: 0.05, RecoveryThreshold: 0.6}},
			in:   Inputs{Services: map[string]float64{"payment": 10, "debug": 10}, Degraded: true},
			want: map[string]float64{"payment": 0.05, "debug": 0.01, "checkout": 0.05},
		},
		{
			name: "the example config",
			p: events.SamplingParams{SamplingRate: 0.1, Degradation: degradation, ServiceFloorQPS: 1,
				Strategies: fleetconfig.Defaults().Global.SamplingStrategies},
			in: Inputs{Services: map[string]float64{"payment": 1000, "checkout": 1000, "search": 1_000_000, "debug": 100_000}},
			// high keep 2000/s; debug (0.01·m) sits at min_rate 0.01 (1000/s), search
			// (0.1·m) gets the remaining 97000/s.
			want:     map[string]float64{"payment": 1, "checkout": 1, "search": 0.097, "debug": 0.01},
			wantKept: 100_000,
			strategy: "priority_based+adaptive",
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			d := Compute(tt.p, tt.in)
			for svc, want := range tt.want {
				if got := d.RateFor(svc); !near(got, want, 1e-5) {
					t.Errorf("rate of %s = %v, want %v", svc, got, want)
				}
			}
			if tt.wantKept > 0 && !near(d.Inputs.KeptQPS, tt.wantKept, 1e-4) {
				t.Errorf("kept %v spans/s, want %v", d.Inputs.KeptQPS, tt.wantKept)
			}
			if tt.strategy != "" && d.Strategy != tt.strategy {
				t.Errorf("strategy %q, want %q", d.Strategy, tt.strategy)
			}
			for name, s := range d.Services {
				if e := Explain(&d, name); e.Rate != s.Rate {
					t.Errorf("Explain(%s) recomputes %v, decision holds %v:\n%s", name, e.Rate, s.Rate, strings.Join(e.Steps, "\n"))
				}
			}
			for _, name := range []string{"unseen", "payment", "debug", "checkout"} {
				if _, ok := d.Services[name]; ok {
					continue
				}
				if e := Explain(&d, name); e.Rate != d.RateFor(name) {
					t.Errorf("Explain(%s) recomputes %v for an unseen service, decision serves %v", name, e.Rate, d.RateFor(name))
				}
			}
		})
	}
}

func TestExplainSteps(t *testing.T) {
	p := events.SamplingParams{SamplingRate: 0.1, ServiceFloorQPS: 1, Strategies: fleetconfig.Defaults().Global.SamplingStrategies,
		Degradation: fleetconfig.Degradation{Enabled: true, Threshold: 0.8, TargetRate: 0.01, RecoveryThreshold: 0.6, KeepHighPriority: true}}
	d := Compute(p, Inputs{Services: map[string]float64{"payment": 100, "search": 2_000_000}, Degraded: true, Collectors: 3})
	d.Regions = map[string]float64{"eu": 0.5}
	tests := []struct {
		service string
		want    []string
	}{
		{"payment", []string{"2 spans/s", "priority rule #1 (high: payment, checkout)", "high-priority services keep", "keep_high_priority", "eu ×0.5"}},
		{"search", []string{"2e+06 spans/s", "catch-all priority rule #2 (normal)", "adaptive: 0.1 ×", "lowered to target_rate 0.01"}},
		{"brand-new", []string{"not seen", "catch-all"}},
	}
	for _, tt := range tests {
		t.Run(tt.service, func(t *testing.T) {
			e := Explain(&d, tt.service)
			text := strings.Join(e.Steps, "\n")
			for _, w := range tt.want {
				if w == "2 spans/s" {
					w = "100 spans/s"
				}
				if !strings.Contains(text, w) {
					t.Errorf("explanation lacks %q:\n%s", w, text)
				}
			}
			if e.Rate != e.Stored {
				t.Errorf("recomputed %v, stored %v", e.Rate, e.Stored)
			}
		})
	}
}

func TestDegraderHysteresis(t *testing.T) {
	c := fleetconfig.Degradation{Enabled: true, Threshold: 0.8, TargetRate: 0.01, RecoveryThreshold: 0.6}
	t0 := time.Date(2025, 1, 1, 0, 0, 0, 0, time.UTC)
	type step struct {
		util       float64
		known      bool
		degraded   bool
		transition string // "", "degraded", "recovered"
	}
	tests := []struct {
		name  string
		cfg   fleetconfig.Degradation
		steps []step
	}{
		{name: "enters at the threshold, leaves only below recovery", cfg: c, steps: []step{
			{0.5, true, false, ""},
			{0.79, true, false, ""},
			{0.8, true, true, "degraded"},
			{0.95, true, true, ""},
			{0.7, true, true, ""}, // between the thresholds: stays degraded
			{0.6, true, true, ""}, // not below recovery yet
			{0.59, true, false, "recovered"},
			{0.7, true, false, ""}, // between the thresholds: stays normal
			{0.85, true, true, "degraded"},
		}},
		{name: "no flapping around the threshold", cfg: c, steps: []step{
			{0.81, true, true, "degraded"}, {0.79, true, true, ""}, {0.81, true, true, ""}, {0.79, true, true, ""},
		}},
		{name: "unknown utilisation keeps the state", cfg: c, steps: []step{
			{0.9, true, true, "degraded"}, {0, false, true, ""}, {0.1, true, false, "recovered"}, {0, false, false, ""},
		}},
		{name: "disabled never degrades and recovers at once", cfg: fleetconfig.Degradation{Threshold: 0.8, RecoveryThreshold: 0.6}, steps: []step{
			{0.99, true, false, ""},
		}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var d Degrader
			for i, s := range tt.steps {
				now := t0.Add(time.Duration(i) * 10 * time.Second)
				tr := d.Update(tt.cfg, s.util, s.known, now)
				got := ""
				if tr != nil {
					got = map[bool]string{true: "degraded", false: "recovered"}[tr.Degraded]
				}
				if got != s.transition || d.Degraded != s.degraded {
					t.Fatalf("step %d (util %v): transition %q degraded %v, want %q %v", i, s.util, got, d.Degraded, s.transition, s.degraded)
				}
				if tr != nil && tr.Degraded && !d.Since.Equal(now) {
					t.Fatalf("step %d: since %v, want %v", i, d.Since, now)
				}
			}
		})
	}
	t.Run("disabling while degraded recovers", func(t *testing.T) {
		d := Degrader{Degraded: true, Since: t0}
		tr := d.Update(fleetconfig.Degradation{}, 0.99, true, t0)
		if tr == nil || tr.Degraded || d.Degraded {
			t.Fatalf("transition %+v, degraded %v", tr, d.Degraded)
		}
	})
}

func TestEngineDegradationEvents(t *testing.T) {
	p := events.SamplingParams{SamplingRate: 0.1, Strategies: []fleetconfig.Strategy{exampleRules()},
		Degradation: fleetconfig.Degradation{Enabled: true, Threshold: 0.8, TargetRate: 0.01, RecoveryThreshold: 0.6, KeepHighPriority: true}}
	e := NewEngine(DefaultTuning())
	t0 := time.Unix(0, 0)
	obs := func(util float64) Observation {
		return Observation{Services: map[string]float64{"cart": 800, "payment": 200}, FleetQPS: 1000, LoadQPS: 1000, Capacity: 1000 / util, Collectors: 2}
	}
	d, tr := e.Step(p, obs(0.5), t0)
	if tr != nil || d.Degraded || d.RateFor("cart") != 0.1 {
		t.Fatalf("at 0.5: transition %+v degraded %v cart %v", tr, d.Degraded, d.RateFor("cart"))
	}
	d, tr = e.Step(p, obs(0.9), t0.Add(10*time.Second))
	if tr == nil || !tr.Degraded || !d.Degraded || d.RateFor("cart") != 0.01 || d.RateFor("payment") != 1 {
		t.Fatalf("at 0.9: transition %+v degraded %v cart %v payment %v", tr, d.Degraded, d.RateFor("cart"), d.RateFor("payment"))
	}
	if !strings.Contains(tr.Reason, "0.9 >= threshold 0.8") {
		t.Fatalf("reason %q", tr.Reason)
	}
	// A new leader seeded from the stored decision keeps the state (no second event).
	e2 := NewEngine(DefaultTuning())
	e2.Seed(&d)
	if d2, tr := e2.Step(p, obs(0.7), t0.Add(20*time.Second)); tr != nil || !d2.Degraded || !d2.DegradedSince.Equal(d.DegradedSince) {
		t.Fatalf("seeded engine at 0.7: transition %+v degraded %v since %v", tr, d2.Degraded, d2.DegradedSince)
	}
	if d3, tr := e2.Step(p, obs(0.5), t0.Add(30*time.Second)); tr == nil || tr.Degraded || d3.Degraded || d3.RateFor("cart") != 0.1 {
		t.Fatalf("at 0.5: transition %+v degraded %v", tr, d3.Degraded)
	}
}

func TestTuningValidate(t *testing.T) {
	tests := []struct {
		name string
		t    Tuning
		ok   bool
	}{
		{"default", DefaultTuning(), true},
		{"alpha 1", Tuning{Alpha: 1, JumpRatio: 2}, true},
		{"alpha 0", Tuning{Alpha: 0, JumpRatio: 2}, false},
		{"alpha NaN", Tuning{Alpha: math.NaN(), JumpRatio: 2}, false},
		{"jump 1", Tuning{Alpha: 0.5, JumpRatio: 1}, false},
		{"negative floor", Tuning{Alpha: 0.5, JumpRatio: 2, ServiceFloorQPS: -1}, false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if err := tt.t.Validate(); (err == nil) != tt.ok {
				t.Fatalf("Validate() = %v, want ok=%v", err, tt.ok)
			}
		})
	}
}

func TestEngineSmoothing(t *testing.T) {
	e := NewEngine(DefaultTuning())
	p := params(0.1)
	step := func(q map[string]float64) events.Decision {
		var total float64
		for _, v := range q {
			total += v
		}
		d, _ := e.Step(p, Observation{Services: q, FleetQPS: total}, time.Unix(0, 0))
		return d
	}
	step(map[string]float64{"a": 100})
	if d := step(map[string]float64{"a": 150}); d.Services["a"].QPS != 125 {
		t.Fatalf("EWMA of 100 then 150 = %v, want 125", d.Services["a"].QPS)
	}
	if d := step(map[string]float64{"a": 1500}); d.Services["a"].QPS != 1500 {
		t.Fatalf("a 10× jump must replace the estimate, got %v", d.Services["a"].QPS)
	}
	if d := step(map[string]float64{"b": 5}); len(d.Services) != 1 || d.Services["b"].QPS != 5 {
		t.Fatalf("a vanished service must be forgotten: %+v", d.Services)
	}
}

func BenchmarkCompute10kServices(b *testing.B) {
	p := events.SamplingParams{SamplingRate: 0.1, ServiceFloorQPS: 1, Strategies: []fleetconfig.Strategy{
		adaptive(0.001, 0.5, 100_000), exampleRules(), cost(1e6, 1e-4),
	}, Degradation: fleetconfig.Degradation{Enabled: true, Threshold: 0.8, TargetRate: 0.01, RecoveryThreshold: 0.6, KeepHighPriority: true}}
	e := NewEngine(DefaultTuning())
	obs := Observation{Services: make(map[string]float64, 10_000), Collectors: 100, Capacity: 1e7}
	for i := range 10_000 {
		q := 1e6 / float64(i+1) // Zipf-like
		obs.Services[fmt.Sprintf("service-%05d", i)] = q
		obs.FleetQPS += q
	}
	obs.LoadQPS = obs.FleetQPS
	b.ReportAllocs()
	for b.Loop() {
		d, _ := e.Step(p, obs, time.Unix(0, 0))
		if len(d.Services) != 10_000 {
			b.Fatal(len(d.Services))
		}
	}
}

// TestOverflowingBudgetStaysEncodable: budget_per_hour / cost_per_span can overflow a
// float64 for valid (positive, finite) settings; the decision must still encode (JSON
// has no +Inf), and a budget that large never binds.
func TestOverflowingBudgetStaysEncodable(t *testing.T) {
	for _, c := range []struct{ budget, perSpan float64 }{{1e308, 1e-10}, {1e10, 5e-324}} {
		d := Compute(params(0.5, cost(c.budget, c.perSpan)), Inputs{Services: map[string]float64{"a": 100}, FleetQPS: 100})
		d.V, d.Version, d.Token, d.Leader, d.At = events.DecisionVersion, 1, 1, "l", time.Unix(1, 0)
		if _, err := events.Encode(d); err != nil {
			t.Fatalf("budget %v per span %v: %v", c.budget, c.perSpan, err)
		}
		if got := d.RateFor("a"); got != 0.5 || d.Inputs.CostScale != 0 {
			t.Fatalf("budget %v per span %v: rate %v, cost scale %v: an unbounded budget must not cap", c.budget, c.perSpan, got, d.Inputs.CostScale)
		}
	}
}

// TestTinyBaseRateStaysEncodable: a valid but tiny base rate makes the adaptive factor
// huge; it must stay finite (JSON has no +Inf) or no decision can be stored.
func TestTinyBaseRateStaysEncodable(t *testing.T) {
	for _, base := range []float64{5e-324, 1e-310, 1e-300, 1e-160} {
		for _, target := range []float64{10, 1e9} {
			d := Compute(params(base, adaptive(0.001, 1, target)), Inputs{Services: map[string]float64{"a": 100}, FleetQPS: 100})
			d.V, d.Version, d.Token, d.Leader, d.At = events.DecisionVersion, 1, 1, "l", time.Unix(1, 0)
			if _, err := events.Encode(d); err != nil {
				t.Fatalf("base %v target %v: %v", base, target, err)
			}
			got := d.RateFor("a")
			if !(got >= 0.001 && got <= 1) {
				t.Fatalf("base %v target %v: rate %v outside [min_rate, max_rate]", base, target, got)
			}
			if base < 1e-300 {
				continue // base·m cannot reach the target with a finite m
			}
			want := min(target/100, 1) // clamp(target/qps, min, max)
			if !near(got, want, 1e-6) {
				t.Fatalf("base %v target %v: rate %v, want %v", base, target, got, want)
			}
		}
	}
}
