package simfleet

import (
	"cmp"
	"math"
	"math/rand/v2"
	"slices"
	"strings"
	"time"

	"github.com/otelfleet/otelfleet/pkg/events"
)

// Model constants. They are not knobs: they make a plausible collector, and the tests
// pin the behaviour they produce.
const (
	zipfExponent   = 1.1  // service weights ∝ 1/rank^s
	maxUtilisation = 0.97 // a collector never runs hotter; the rest is refused
	diurnalDepth   = 0.6  // diurnal level swings 1 ± 0.6
	stepFactor     = 10.0 // the step pattern's level after the step
	noiseSigma     = 0.05 // per-collector, per-report traffic noise (relative)
	// An outage: the collector keeps this share of its capacity, and the load
	// balancers in front of it, slow to notice, still send it this share of its traffic.
	outageCapacity = 0.05
	outageTraffic  = 0.3
	// latencyCapMS bounds the queueing latency (ms).
	latencyCapMS = 5000.0
)

// Member is one simulated collector as registered.
type Member struct {
	// Region and ID identify the collector; ID is <prefix>-<region>-<n>.
	Region, ID string
	// Capacity is the spans per second the collector can take.
	Capacity float64
}

// collector is a member's fixed traits and changing state.
type collector struct {
	Member
	weight        float64   // share of its region's traffic, relative
	baseLatencyMS float64   // latency at zero utilisation
	spanBytes     float64   // mean span size
	baseMemory    float64   // resident memory when idle, bytes
	errorFloor    float64   // share of spans refused even when healthy (malformed input)
	mix           []float64 // service weights, summing to 1
	outageUntil   time.Time // non-zero while in an outage
}

// region is a region's traffic weight, diurnal phase and spike state.
type region struct {
	name        string
	weight      float64
	phase       float64 // radians
	spikeUntil  time.Time
	spikeFactor float64
	members     []*collector
}

// Fleet is the simulation model: a deterministic function of its Config and the times
// Step is called with. It does no I/O and is not safe for concurrent use.
//
// Each collector has a capacity (1.8–3.2 × BaseQPS), a share of its region's traffic, a
// base latency, a span size, a memory footprint and a service mix (Zipf weights, a
// little perturbed). Each Step computes the offered load (BaseQPS × collectors × region
// weight × pattern level × noise), splits it across the region's collectors by weight
// (a collector in an outage gets only part of its share, the rest moving to its healthy
// peers), and derives each report from the utilisation ρ = accepted / capacity:
//
//   - qps (accepted) = min(offered × (1 − error floor), 0.97 × capacity); the rest is
//     refused, so error_rate = refused / offered;
//   - avg_latency_ms = base latency / (1 − ρ), capped at 5 s (an M/M/1 queue);
//   - queue_depth = qps × latency (Little's law, L = λW), rounded;
//   - cpu = 0.02 + 0.8 × ρ + noise (plus 0.15 during an outage), in [0, 1];
//   - memory = footprint + queued and in-flight spans; bytes/s = qps × span size;
//   - services = qps split by the service mix, busiest first.
//
// Now and then a collector has an outage (mean time between outages OutageEvery,
// length OutageMin..OutageMax): it reports unhealthy, keeps 5 % of its capacity,
// refuses most of what it still gets and queues the rest.
type Fleet struct {
	cfg     Config
	rng     *rand.Rand
	start   time.Time
	last    time.Time
	regions []*region
}

// NewFleet builds the fleet of cfg, with its random traits drawn from cfg.Seed, and
// start as the pattern's time origin.
func NewFleet(cfg Config, start time.Time) (*Fleet, error) {
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	seed := uint64(cfg.Seed)
	f := &Fleet{cfg: cfg, rng: rand.New(rand.NewPCG(seed, seed^0x9e3779b97f4a7c15)), start: start}
	zipf := make([]float64, len(cfg.Services))
	for i := range zipf {
		zipf[i] = 1 / math.Pow(float64(i+1), zipfExponent)
	}
	for k, name := range RegionNames(cfg.Regions) {
		r := &region{name: name, weight: f.uniform(0.7, 1.3), phase: float64(k) * math.Pi / 6}
		for n := 1; n <= cfg.Collectors; n++ {
			c := &collector{
				Member: Member{
					Region:   name,
					ID:       CollectorID(cfg.IDPrefix, name, n),
					Capacity: math.Round(cfg.BaseQPS*f.uniform(1.8, 3.2)/10) * 10,
				},
				weight:        f.uniform(0.8, 1.2),
				baseLatencyMS: f.uniform(2, 6),
				spanBytes:     f.uniform(300, 900),
				baseMemory:    f.uniform(120, 220) * (1 << 20),
				errorFloor:    f.uniform(0.0002, 0.002),
				mix:           make([]float64, len(zipf)),
			}
			c.Capacity = max(c.Capacity, 10)
			var sum float64
			for i, w := range zipf {
				c.mix[i] = w * f.uniform(0.85, 1.15)
				sum += c.mix[i]
			}
			for i := range c.mix {
				c.mix[i] /= sum
			}
			r.members = append(r.members, c)
		}
		f.regions = append(f.regions, r)
	}
	return f, nil
}

// Members returns every simulated collector, region by region.
func (f *Fleet) Members() []Member {
	var out []Member
	for _, r := range f.regions {
		for _, c := range r.members {
			out = append(out, c.Member)
		}
	}
	return out
}

// Config returns the fleet's configuration.
func (f *Fleet) Config() Config { return f.cfg }

func (f *Fleet) uniform(lo, hi float64) float64 { return lo + (hi-lo)*f.rng.Float64() }

func (f *Fleet) chance(dt, every time.Duration) bool {
	return every > 0 && f.rng.Float64() < dt.Seconds()/every.Seconds()
}

// level is the pattern's traffic multiplier for r at now (updating spike state).
func (f *Fleet) level(r *region, now time.Time, dt time.Duration) float64 {
	elapsed := now.Sub(f.start)
	switch f.cfg.Pattern {
	case PatternDiurnal:
		return 1 + diurnalDepth*math.Sin(2*math.Pi*elapsed.Seconds()/f.cfg.Period.Seconds()+r.phase)
	case PatternSpike:
		if !r.spikeUntil.IsZero() && !now.Before(r.spikeUntil) {
			r.spikeUntil = time.Time{}
		}
		if r.spikeUntil.IsZero() && f.chance(dt, f.cfg.SpikeEvery) {
			r.spikeFactor = f.uniform(5, 10)
			r.spikeUntil = now.Add(time.Duration(f.uniform(5, 20) * float64(time.Second)))
		}
		if !r.spikeUntil.IsZero() {
			return r.spikeFactor
		}
		return 1
	case PatternStep:
		if elapsed >= f.cfg.StepAfter {
			return stepFactor
		}
		return 1
	default:
		return 1
	}
}

// Step advances the simulation to now and returns one load report per collector (V,
// Region, Collector, At = now and IntervalMS set), region by region. The interval is
// the time since the previous Step (Config.Interval for the first). A now not after the
// previous Step's returns nil and changes nothing.
func (f *Fleet) Step(now time.Time) []events.LoadReport {
	dt := f.cfg.Interval
	if !f.last.IsZero() {
		if !now.After(f.last) {
			return nil
		}
		dt = now.Sub(f.last)
	}
	f.last = now
	out := make([]events.LoadReport, 0, f.cfg.Regions*f.cfg.Collectors)
	for _, r := range f.regions {
		offered := f.cfg.BaseQPS * float64(len(r.members)) * r.weight * f.level(r, now, dt)
		// Outages start and end before traffic is split, so peers take over at once.
		var shares float64
		for _, c := range r.members {
			if !c.outageUntil.IsZero() && !now.Before(c.outageUntil) {
				c.outageUntil = time.Time{}
			}
			if c.outageUntil.IsZero() && f.chance(dt, f.cfg.OutageEvery) {
				c.outageUntil = now.Add(time.Duration(f.uniform(f.cfg.OutageMin.Seconds(), f.cfg.OutageMax.Seconds()) * float64(time.Second)))
			}
			shares += c.share()
		}
		for _, c := range r.members {
			out = append(out, f.report(c, offered*c.share()/shares, now, dt))
		}
	}
	return out
}

func (c *collector) share() float64 {
	if c.outageUntil.IsZero() {
		return c.weight
	}
	return c.weight * outageTraffic
}

// report derives one collector's report from the load offered to it.
func (f *Fleet) report(c *collector, offered float64, now time.Time, dt time.Duration) events.LoadReport {
	healthy := c.outageUntil.IsZero()
	noise := min(max(1+noiseSigma*f.rng.NormFloat64(), 0.8), 1.2)
	offered *= noise
	capacity := c.Capacity
	if !healthy {
		capacity *= outageCapacity
	}
	accepted := min(offered*(1-c.errorFloor), maxUtilisation*capacity)
	refused := offered - accepted
	rho := accepted / capacity
	latency := min(c.baseLatencyMS/(1-rho), latencyCapMS)
	queue := math.Round(accepted * latency / 1000)
	cpu := 0.02 + 0.8*accepted/c.Capacity + 0.01*f.rng.NormFloat64()
	if !healthy {
		cpu += 0.15
	}
	r := events.LoadReport{
		V:            events.LoadReportVersion,
		Region:       c.Region,
		Collector:    c.ID,
		At:           now,
		IntervalMS:   dt.Milliseconds(),
		QPS:          round1(accepted),
		BytesPerSec:  math.Round(accepted * c.spanBytes),
		QueueDepth:   int64(queue),
		CPU:          math.Round(min(max(cpu, 0), 1)*1000) / 1000,
		Memory:       uint64(c.baseMemory + (queue*4+accepted*0.2)*c.spanBytes),
		AvgLatencyMS: round1(latency),
		Capacity:     c.Capacity,
		Healthy:      healthy,
		Services:     make([]events.ServiceRate, len(c.mix)),
	}
	if offered > 0 {
		r.ErrorRate = math.Round(refused/offered*1e4) / 1e4
	}
	for i, w := range c.mix {
		r.Services[i] = events.ServiceRate{Name: f.cfg.Services[i], SpansPerSec: round1(accepted * w * min(max(1+0.02*f.rng.NormFloat64(), 0.9), 1.1))}
	}
	slices.SortFunc(r.Services, func(a, b events.ServiceRate) int {
		if c := cmp.Compare(b.SpansPerSec, a.SpansPerSec); c != 0 {
			return c
		}
		return strings.Compare(a.Name, b.Name)
	})
	return r
}

func round1(v float64) float64 { return math.Round(v*10) / 10 }
