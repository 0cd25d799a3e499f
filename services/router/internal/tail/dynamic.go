package tail

import (
	"math"
	"slices"
	"sync"
	"time"

	"github.com/otelfleet/otelfleet/pkg/fleetconfig"
)

// overflowKey collects the traces of keys past a dynamic policy's MaxKeys: they share
// one rate, so a flood of distinct keys cannot grow the tables.
const overflowKey = "\xff"

// dropEMA is the smoothed count below which a key is forgotten.
const dropEMA = 1e-3

// dynamic is one dynamic policy's per-key sampler. Counts of the current interval are
// folded into an exponential moving average at each adjustment, and the rates are
// recomputed from the averages so that the expected kept traces are the total over
// goal_rate, shared among the keys by the logarithm of their counts: a key seen ten
// times as often gets only about twice the kept traces, so rare keys are kept at a
// higher rate than frequent ones. A key without a rate yet (new since the last
// adjustment) is kept.
type dynamic struct {
	goal     float64
	weight   float64
	interval time.Duration
	maxKeys  int

	mu     sync.Mutex
	next   time.Time
	counts map[string]float64
	ema    map[string]float64
	rates  map[string]float64
}

func newDynamic(d *fleetconfig.DynamicSampling) *dynamic {
	return &dynamic{
		goal:     float64(d.GoalRate),
		weight:   d.EMAWeight(),
		interval: d.Interval(),
		maxKeys:  d.KeyLimit(),
		counts:   make(map[string]float64),
		ema:      make(map[string]float64),
		rates:    make(map[string]float64),
	}
}

// rate counts one trace of key and returns its current one-in-N rate (≥ 1).
func (d *dynamic) rate(key string, now time.Time) float64 {
	d.mu.Lock()
	defer d.mu.Unlock()
	if d.next.IsZero() {
		d.next = now.Add(d.interval)
	} else if !now.Before(d.next) {
		d.adjust()
		d.next = now.Add(d.interval)
	}
	if _, ok := d.counts[key]; !ok && len(d.counts) >= d.maxKeys {
		key = overflowKey
	}
	d.counts[key]++
	if r, ok := d.rates[key]; ok {
		return r
	}
	if _, known := d.ema[key]; !known && len(d.ema) >= d.maxKeys {
		if r, ok := d.rates[overflowKey]; ok {
			return r
		}
	}
	return 1
}

// adjust folds the interval's counts into the averages and recomputes the rates.
// Called with d.mu held.
func (d *dynamic) adjust() {
	for k := range d.counts {
		if _, ok := d.ema[k]; !ok {
			d.ema[k] = 0
		}
	}
	for k, e := range d.ema {
		e = d.weight*d.counts[k] + (1-d.weight)*e
		if e < dropEMA {
			delete(d.ema, k)
			continue
		}
		d.ema[k] = e
	}
	// Bound the averages: keep the maxKeys largest, fold the rest into overflow.
	if len(d.ema) > d.maxKeys+1 {
		keys := sortedByCount(d.ema)
		for _, k := range keys[:len(keys)-d.maxKeys] {
			if k != overflowKey {
				d.ema[overflowKey] += d.ema[k]
				delete(d.ema, k)
			}
		}
	}
	clear(d.counts)
	d.rates = rates(d.ema, d.goal)
}

// rates returns the one-in-N rate of each key for smoothed counts, so that the sum of
// count/rate is the total over goal (or every count, when that is fewer). Keys are
// visited from the rarest; each gets the remaining budget's share by the weight
// log10(count)+1 of the keys left; a key whose share covers all its traces is kept
// whole (rate 1) and leaves the rest of its share to the others.
func rates(counts map[string]float64, goal float64) map[string]float64 {
	out := make(map[string]float64, len(counts))
	keys := sortedByCount(counts)
	var total, weights float64
	for _, k := range keys {
		total += counts[k]
		weights += keyWeight(counts[k])
	}
	budget := total / goal
	for _, k := range keys {
		c, w := counts[k], keyWeight(counts[k])
		share := budget * w / weights
		weights -= w
		if share >= c {
			out[k] = 1
			budget -= c
			continue
		}
		out[k] = c / share
		budget -= share
	}
	return out
}

func keyWeight(c float64) float64 { return math.Log10(math.Max(c, 1)) + 1 }

// sortedByCount returns m's keys by ascending value, ties by key.
func sortedByCount(m map[string]float64) []string {
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	slices.SortFunc(keys, func(a, b string) int {
		if m[a] != m[b] {
			if m[a] < m[b] {
				return -1
			}
			return 1
		}
		if a < b {
			return -1
		}
		if a > b {
			return 1
		}
		return 0
	})
	return keys
}

// snapshot returns a copy of the current rates, for status and explain.
func (d *dynamic) snapshot() map[string]float64 {
	d.mu.Lock()
	defer d.mu.Unlock()
	out := make(map[string]float64, len(d.rates))
	for k, v := range d.rates {
		out[k] = v
	}
	return out
}
