package strategy

import (
	"fmt"
	"math"
	"math/rand/v2"
	"testing"
	"time"

	"github.com/otelfleet/otelfleet/pkg/events"
	"github.com/otelfleet/otelfleet/pkg/fleetconfig"
)

// The convergence tests run the engine against a simulated fleet on a simulated
// clock. Every interval the engine sees the traffic of the latest load report (one
// second old) and decides; the kept spans of the following interval are the decided
// rates times the traffic actually offered during it, integrated second by second.

const simInterval = 10 * time.Second

// fleetShape is a fleet of 60 services with Zipf-like traffic: payment and checkout
// (high priority), debug (low priority) and 57 ordinary services. weights sum to 1.
func fleetShape() map[string]float64 {
	w := map[string]float64{"payment": 0.004, "checkout": 0.003, "debug": 0.05}
	var rest float64
	for i := range 57 {
		rest += 1 / float64(i+1)
	}
	for i := range 57 {
		w[fmt.Sprintf("svc-%02d", i)] = (1 - 0.057) * (1 / float64(i+1)) / rest
	}
	return w
}

type sim struct {
	t       *testing.T
	p       events.SamplingParams
	e       *Engine
	shape   map[string]float64
	total   func(at time.Duration) float64 // offered spans/s at simulated time at
	noise   float64                        // relative noise of each report
	rng     *rand.Rand
	target  float64
	results []float64 // kept spans/s of each interval
}

func newSim(t *testing.T, p events.SamplingParams, total func(time.Duration) float64, noise float64) *sim {
	s := &sim{t: t, p: p, e: NewEngine(DefaultTuning()), shape: fleetShape(), total: total, noise: noise, rng: rand.New(rand.NewPCG(1, 2))}
	if a, ok := p.Strategy(fleetconfig.StrategyAdaptive); ok {
		s.target = *a.TargetQPS
	}
	return s
}

func (s *sim) traffic(at time.Duration) map[string]float64 {
	total := s.total(at)
	out := make(map[string]float64, len(s.shape))
	for name, w := range s.shape {
		out[name] = total * w
	}
	return out
}

// run simulates n intervals and records the kept spans/s of each.
func (s *sim) run(n int) {
	for i := range n {
		now := time.Duration(i) * simInterval
		obs := Observation{Services: map[string]float64{}, Collectors: 10}
		for name, q := range s.traffic(now - time.Second) {
			if s.noise > 0 {
				q *= 1 + s.noise*(2*s.rng.Float64()-1)
			}
			obs.Services[name] = q
			obs.FleetQPS += q
		}
		d, _ := s.e.Step(s.p, obs, time.Unix(0, 0).Add(now))
		// Every service's traffic is total·weight, so the kept spans/s at an instant
		// are total·Σ weight·rate.
		var keptShare float64
		for name, w := range s.shape {
			keptShare += w * d.RateFor(name)
		}
		var kept float64
		for sec := time.Duration(0); sec < simInterval; sec += time.Second {
			kept += s.total(now+sec) * keptShare
		}
		s.results = append(s.results, kept/simInterval.Seconds())
	}
}

// within reports whether interval i kept target ±tol.
func (s *sim) within(i int, tol float64) bool {
	return math.Abs(s.results[i]-s.target) <= tol*s.target
}

// settle asserts that from interval from on, every interval until to (exclusive) is
// within ±10% of target.
func (s *sim) settle(what string, from, to int) {
	s.t.Helper()
	for i := from; i < to; i++ {
		if !s.within(i, 0.10) {
			s.t.Fatalf("%s: interval %d kept %.0f spans/s, want %.0f ±10%%\nkept per interval: %.0f", what, i, s.results[i], s.target, s.results)
		}
	}
}

func convergenceParams(minRate, maxRate float64) events.SamplingParams {
	return events.SamplingParams{
		SamplingRate: 0.1, ServiceFloorQPS: 1,
		Strategies: []fleetconfig.Strategy{adaptive(minRate, maxRate, 100_000), exampleRules()},
	}
}

func TestConvergenceStep(t *testing.T) {
	const before, after = 20, 40 // intervals before and after the step
	tests := []struct {
		name        string
		from, to    float64 // offered spans/s before and after the step
		minR, maxR  float64
		withinSteps int // intervals after the step's interval by which kept is within ±10%
	}{
		{name: "10x up", from: 400_000, to: 4_000_000, minR: 0.001, maxR: 1, withinSteps: 3},
		{name: "10x down", from: 4_000_000, to: 400_000, minR: 0.001, maxR: 1, withinSteps: 3},
		{name: "10x up, example config's bounds", from: 200_000, to: 2_000_000, minR: 0.01, maxR: 0.5, withinSteps: 3},
		{name: "1.9x up (EWMA, no jump)", from: 1_000_000, to: 1_900_000, minR: 0.001, maxR: 1, withinSteps: 3},
		{name: "1.5x down (EWMA, no jump)", from: 1_500_000, to: 1_000_000, minR: 0.001, maxR: 1, withinSteps: 3},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			// The step happens mid-interval: interval `before` is the one it falls in.
			stepAt := time.Duration(before)*simInterval + simInterval/2
			s := newSim(t, convergenceParams(tt.minR, tt.maxR), func(at time.Duration) float64 {
				if at < stepAt {
					return tt.from
				}
				return tt.to
			}, 0)
			s.run(before + after)
			s.settle("before the step", 1, before)
			// Intervals before+1 .. before+withinSteps are the ones after the step's.
			s.settle("after the step", before+tt.withinSteps, before+after)
			t.Logf("kept around the step: %.0f", s.results[before-1:before+4])
		})
	}
}

func TestConvergenceSpike(t *testing.T) {
	// One interval at 10× (a burst), then back: the burst's interval overshoots (the
	// decision was made before it), the next one is cut to target, and the one after
	// the burst ends undershoots until the estimate jumps back. No oscillation after.
	const spikeAt = 20
	s := newSim(t, convergenceParams(0.001, 1), func(at time.Duration) float64 {
		if at >= spikeAt*simInterval && at < (spikeAt+1)*simInterval {
			return 5_000_000
		}
		return 500_000
	}, 0)
	s.run(60)
	s.settle("before the spike", 1, spikeAt)
	s.settle("after the spike", spikeAt+3, 60)
	t.Logf("kept around the spike: %.0f", s.results[spikeAt-1:spikeAt+5])
}

func TestConvergenceDiurnal(t *testing.T) {
	// One simulated day of diurnal load, from 0.2× to 1.8× of 1.5M spans/s, with ±5%
	// noise on every report: every interval stays within ±10% of target.
	day := 24 * time.Hour
	s := newSim(t, convergenceParams(0.001, 1), func(at time.Duration) float64 {
		return 1_500_000 * (1 + 0.8*math.Sin(2*math.Pi*float64(at)/float64(day)))
	}, 0.05)
	n := int(day / simInterval)
	s.run(n)
	s.settle("diurnal", 1, n)
	var worst float64
	for _, k := range s.results[1:] {
		worst = max(worst, math.Abs(k-s.target)/s.target)
	}
	t.Logf("%d intervals, worst deviation %.2f%%", n, 100*worst)
}

func TestConvergenceNoOscillation(t *testing.T) {
	// With noisy but steady traffic, successive decisions must not alternate around
	// the target: count sign changes of (kept - target) larger than 5%.
	s := newSim(t, convergenceParams(0.001, 1), func(time.Duration) float64 { return 2_000_000 }, 0.03)
	s.run(200)
	flips := 0
	for i := 2; i < len(s.results); i++ {
		a, b := s.results[i-1]-s.target, s.results[i]-s.target
		if a*b < 0 && math.Abs(a) > 0.05*s.target && math.Abs(b) > 0.05*s.target {
			flips++
		}
	}
	if flips > 0 {
		t.Fatalf("%d swings of more than ±5%% around the target: %.0f", flips, s.results)
	}
	s.settle("steady", 1, 200)
}
