package topologysvc

import (
	"math"

	"github.com/otelfleet/otelfleet/pkg/events"
)

// Utilization returns qps / capacity, or 0 when the capacity is unknown (<= 0) or
// either value is not a finite number. It is not clamped: above 1 means overloaded. A
// quotient too large for a float64 (a subnormal capacity) is math.MaxFloat64, never +Inf,
// which JSON cannot carry.
func Utilization(qps, capacity float64) float64 {
	if !(capacity > 0) || !finite(qps) || !finite(capacity) || qps < 0 {
		return 0
	}
	return min(qps/capacity, math.MaxFloat64)
}

// WeightedMean returns Σ values[i]·weights[i] / Σ weights[i]. When the weights sum to 0
// (an idle fleet: no traffic to weigh by) it returns the plain mean of values, and 0 for
// no values. Negative or non-finite weights count as 0; non-finite values are skipped.
// values and weights must have the same length.
func WeightedMean(values, weights []float64) float64 {
	var m mean
	for i, v := range values {
		m.add(v, weights[i])
	}
	return m.value()
}

// mean accumulates a weighted mean with the plain-mean fallback of WeightedMean.
type mean struct {
	weighted, weight, sum float64
	n                     int
}

func (m *mean) add(v, w float64) {
	if !finite(v) {
		return
	}
	if !finite(w) || w < 0 {
		w = 0
	}
	m.weighted += v * w
	m.weight += w
	m.sum += v
	m.n++
}

func (m *mean) merge(o mean) {
	m.weighted += o.weighted
	m.weight += o.weight
	m.sum += o.sum
	m.n += o.n
}

func (m mean) value() float64 {
	switch {
	case m.weight > 0:
		return m.weighted / m.weight
	case m.n > 0:
		return m.sum / float64(m.n)
	default:
		return 0
	}
}

// Aggregate summarises the collectors of one region (named region) by the rules of
// events.RegionStats: every collector is counted by status; only fresh ones contribute
// traffic; utilisation covers fresh collectors with a known capacity; latency and error
// rate are weighted by qps.
func Aggregate(region string, collectors []Collector) events.RegionStats {
	var a accumulator
	for i := range collectors {
		a.add(&collectors[i])
	}
	return a.regionStats(region)
}

// AggregateGlobal summarises every collector of every region, by the same rules as
// Aggregate. samplingRate, when not nil, is reported as the effective sampling rate.
func AggregateGlobal(regions map[string][]Collector, samplingRate *float64) events.GlobalStats {
	var a accumulator
	for _, cs := range regions {
		for i := range cs {
			a.add(&cs[i])
		}
	}
	return a.globalStats(len(regions), samplingRate)
}

// accumulator sums what Aggregate reports; two accumulators merge exactly, so the
// global summary is the merge of the regions'.
type accumulator struct {
	collectors, healthy, degraded, unhealthy, stale int

	qps, bytes float64
	queue      int64
	// capacity and capQPS cover fresh collectors with a known capacity.
	capacity, capQPS, spare float64
	latency, errors         mean
}

func (a *accumulator) add(c *Collector) {
	a.collectors++
	if c.Stale {
		a.stale++
		return
	}
	switch c.Health {
	case events.HealthHealthy:
		a.healthy++
	case events.HealthDegraded:
		a.degraded++
	default:
		a.unhealthy++
	}
	a.qps += c.QPS
	a.bytes += c.BytesPerSec
	a.queue += c.QueueDepth
	if c.CapacityQPS > 0 {
		a.capacity += c.CapacityQPS
		a.capQPS += c.QPS
		if c.Health == events.HealthHealthy {
			a.spare += math.Max(0, c.CapacityQPS-c.QPS)
		}
	}
	a.latency.add(c.AvgLatencyMS, c.QPS)
	a.errors.add(c.ErrorRate, c.QPS)
}

func (a *accumulator) merge(o *accumulator) {
	a.collectors += o.collectors
	a.healthy += o.healthy
	a.degraded += o.degraded
	a.unhealthy += o.unhealthy
	a.stale += o.stale
	a.qps += o.qps
	a.bytes += o.bytes
	a.queue += o.queue
	a.capacity += o.capacity
	a.capQPS += o.capQPS
	a.spare += o.spare
	a.latency.merge(o.latency)
	a.errors.merge(o.errors)
}

func (a *accumulator) regionStats(region string) events.RegionStats {
	return events.RegionStats{
		Region:       region,
		Collectors:   a.collectors,
		Healthy:      a.healthy,
		Degraded:     a.degraded,
		Unhealthy:    a.unhealthy,
		Stale:        a.stale,
		QPS:          a.qps,
		BytesPerSec:  a.bytes,
		QueueDepth:   a.queue,
		CapacityQPS:  a.capacity,
		SpareQPS:     a.spare,
		Utilization:  Utilization(a.capQPS, a.capacity),
		AvgLatencyMS: a.latency.value(),
		ErrorRate:    a.errors.value(),
	}
}

func (a *accumulator) globalStats(regions int, samplingRate *float64) events.GlobalStats {
	return events.GlobalStats{
		Regions:               regions,
		Collectors:            a.collectors,
		Healthy:               a.healthy,
		Degraded:              a.degraded,
		Unhealthy:             a.unhealthy,
		Stale:                 a.stale,
		SpansPerSec:           a.qps,
		BytesPerSec:           a.bytes,
		QueueDepth:            a.queue,
		CapacityQPS:           a.capacity,
		SpareQPS:              a.spare,
		Utilization:           Utilization(a.capQPS, a.capacity),
		AvgLatencyMS:          a.latency.value(),
		ErrorRate:             a.errors.value(),
		EffectiveSamplingRate: samplingRate,
	}
}

func finite(f float64) bool { return !math.IsNaN(f) && !math.IsInf(f, 0) }
