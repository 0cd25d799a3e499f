package ratelimit

import (
	"fmt"
	"testing"
	"time"
)

// exampleLimits is examples/global-config.yaml's rate_limiting block.
var exampleLimits = Limits{MaxQPS: 1_000_000, Burst: 10_000, PerServiceLimit: 10_000}

// TestExampleConfigAdmitsABurst: a fresh router with the example config admits a
// 1,200-span burst of one service (three 400-span requests) without refusing anything,
// traced or not.
func TestExampleConfigAdmitsABurst(t *testing.T) {
	svc := []byte("telemetrygen")
	t.Run("traces", func(t *testing.T) {
		f := NewFleet(exampleLimits, 16)
		now := time.Unix(1_700_000_000, 0)
		for trace := range uint64(300) { // 4 spans each, 100 traces per request
			if trace%100 == 0 {
				now = now.Add(time.Millisecond)
			}
			if !f.AllowTrace(svc, trace, 4, now) {
				t.Fatalf("trace %d of a 1,200-span burst refused", trace)
			}
		}
	})
	t.Run("untraced", func(t *testing.T) {
		f := NewFleet(exampleLimits, 16)
		now := time.Unix(1_700_000_000, 0)
		for i := range 3 {
			if !f.Allow(svc, 400, now.Add(time.Duration(i)*time.Millisecond)) {
				t.Fatalf("request %d of a 1,200-item burst: 400 items refused", i)
			}
		}
	})
}

// traceLoad offers traces to a sim's routers: each router starts rates[i] traces per
// second of one service, perTrace spans each, offered in two halves one step apart
// (across requests); with split the second half goes to the next router.
type traceLoad struct {
	s        *sim
	svc      []byte
	perTrace int
	rates    []float64
	split    bool

	next    uint64
	owed    []float64
	due     []half
	measure bool
	// verdict per trace started while measuring: bit 1 admitted spans, bit 2 refused.
	verdict  map[uint64]uint8
	admitted []float64 // spans per router while measuring
}

type half struct {
	router int
	key    uint64
}

func newTraceLoad(s *sim, perTrace int, split bool, rates ...float64) *traceLoad {
	return &traceLoad{s: s, svc: []byte("checkout"), perTrace: perTrace, rates: rates, split: split,
		owed: make([]float64, len(rates)), verdict: map[uint64]uint8{}, admitted: make([]float64, len(rates))}
}

// offer hands one half of trace key to router r.
func (l *traceLoad) offer(r int, key uint64, n int) {
	ok := l.s.routers[r].fleet.AllowTrace(l.svc, key, n, l.s.now)
	v, tracked := l.verdict[key]
	if !tracked {
		return
	}
	if ok {
		v |= 1
		l.admitted[r] += float64(n)
	} else {
		v |= 2
	}
	l.verdict[key] = v
}

// run advances d in 10 ms steps, reporting every second.
func (l *traceLoad) run(d time.Duration) {
	const step = 10 * time.Millisecond
	first := l.perTrace / 2
	for end := l.s.now.Add(d); l.s.now.Before(end); {
		l.s.now = l.s.now.Add(step)
		due := l.due
		l.due = nil
		for _, h := range due {
			l.offer(h.router, h.key, l.perTrace-first)
		}
		for r, rate := range l.rates {
			l.owed[r] += rate * step.Seconds()
			for ; l.owed[r] >= 1; l.owed[r]-- {
				key := l.next
				l.next++
				if l.measure {
					l.verdict[key] = 0
				}
				l.offer(r, key, first)
				to := r
				if l.split {
					to = (r + 1) % len(l.rates)
				}
				l.due = append(l.due, half{router: to, key: key})
			}
		}
		if l.s.now.UnixMilli()%1000 == 0 {
			l.s.report()
		}
	}
}

// measured runs d while counting and returns the fleet's admitted spans per second and
// the fraction of the traces started admitted; it fails on a trace both admitted and
// refused.
func (l *traceLoad) measured(t *testing.T, d time.Duration) (rate, traces float64) {
	t.Helper()
	l.measure = true
	l.run(d)
	l.measure = false
	l.run(20 * time.Millisecond) // the last second halves
	var kept, split int
	for key, v := range l.verdict {
		switch v {
		case 1:
			kept++
		case 3:
			split++
			if split <= 3 {
				t.Errorf("trace %d: some spans admitted, others refused", key)
			}
		}
	}
	if split > 0 {
		t.Fatalf("%d of %d traces split by the limiter", split, len(l.verdict))
	}
	for _, a := range l.admitted {
		rate += a / d.Seconds()
	}
	return rate, float64(kept) / float64(len(l.verdict))
}

// TestOverloadShedsWholeTraces: a sustained 2× overload of a service's limit sheds half
// the traces, whole, and admits the limit.
func TestOverloadShedsWholeTraces(t *testing.T) {
	for _, perTrace := range []int{4, 7} {
		t.Run(fmt.Sprintf("%d spans per trace", perTrace), func(t *testing.T) {
			s := newSim(Limits{PerServiceLimit: 1000}, map[string]float64{})
			l := newTraceLoad(s, perTrace, false, 2000/float64(perTrace))
			l.run(10 * time.Second)
			rate, traces := l.measured(t, 30*time.Second)
			within(t, "admitted", rate, 1000, 0.03)
			if traces < 0.47 || traces > 0.53 {
				t.Fatalf("%.3f of the traces admitted, want ≈ half", traces)
			}
		})
	}
}

// TestFleetLimitTracesTwoRouters: two routers exchanging demand (SetPeers) admit the
// fleet limit together, whole traces, also when each trace's spans reach both.
func TestFleetLimitTracesTwoRouters(t *testing.T) {
	tests := map[string]struct {
		limits Limits
		rates  []float64 // traces per second, 4 spans each
		split  bool
	}{
		"max_qps, skewed":                 {Limits{MaxQPS: 1000, Burst: 200}, []float64{600, 150}, false},
		"per service, skewed":             {Limits{PerServiceLimit: 1000}, []float64{450, 150}, false},
		"per service, traces on both":     {Limits{PerServiceLimit: 1000}, []float64{300, 300}, true},
		"per service binds under max_qps": {Limits{MaxQPS: 2000, PerServiceLimit: 1000}, []float64{500, 250}, true},
	}
	for name, tt := range tests {
		t.Run(name, func(t *testing.T) {
			demands := make([]map[string]float64, len(tt.rates))
			for i := range demands {
				demands[i] = map[string]float64{}
			}
			s := newSim(tt.limits, demands...)
			l := newTraceLoad(s, 4, tt.split, tt.rates...)
			l.run(15 * time.Second)
			rate, _ := l.measured(t, 30*time.Second)
			want := tt.limits.MaxQPS
			if tt.limits.PerServiceLimit > 0 {
				want = tt.limits.PerServiceLimit
			}
			within(t, "fleet admitted", rate, want, 0.03)
		})
	}
}

// TestSheddingEndsWithTheOverload: once the demand falls under the share, everything
// passes again.
func TestSheddingEndsWithTheOverload(t *testing.T) {
	s := newSim(Limits{PerServiceLimit: 1000}, map[string]float64{})
	l := newTraceLoad(s, 4, false, 500)
	l.run(10 * time.Second)
	l.rates[0] = 200 // 800 spans/s
	l.run(15 * time.Second)
	rate, traces := l.measured(t, 10*time.Second)
	within(t, "admitted under the limit", rate, 800, 0.01)
	if traces != 1 {
		t.Fatalf("%.3f of the traces admitted under the limit, want all", traces)
	}
}

// TestUntracedShedsLargeItems: data without a trace ID, in items of many points (a
// ResourceMetrics), is shed item by item to the share under a 2× overload.
func TestUntracedShedsLargeItems(t *testing.T) {
	f := NewFleet(Limits{PerServiceLimit: 1000}, 4)
	svc := []byte("metrics")
	now := time.Unix(1_700_000_000, 0)
	offer := func(d time.Duration) (admitted float64) {
		for end := now.Add(d); now.Before(end); {
			now = now.Add(25 * time.Millisecond) // 50 points every 25 ms: 2,000/s
			if f.Allow(svc, 50, now) {
				admitted += 50
			}
		}
		return admitted
	}
	offer(10 * time.Second)
	within(t, "admitted", offer(30*time.Second)/30, 1000, 0.03)
}

// TestBurstEdgeKeepsTracesWhole: when the bucket runs out in the middle of a burst
// whose traces' spans are interleaved (and straddle requests), the traces it admitted
// keep passing and the others are refused: none is split.
func TestBurstEdgeKeepsTracesWhole(t *testing.T) {
	f := NewFleet(Limits{PerServiceLimit: 100}, 4) // a bucket of 100 spans
	svc := []byte("checkout")
	now := time.Unix(1_700_000_000, 0)
	verdicts := map[uint64]uint8{}
	for range 4 { // one span of each of 300 traces, four times, 5 ms apart
		now = now.Add(5 * time.Millisecond)
		for trace := range uint64(300) {
			if f.AllowTrace(svc, trace, 1, now) {
				verdicts[trace] |= 1
			} else {
				verdicts[trace] |= 2
			}
		}
	}
	kept := 0
	for trace, v := range verdicts {
		if v == 3 {
			t.Fatalf("trace %d: some spans admitted, others refused", trace)
		}
		if v == 1 {
			kept++
		}
	}
	if kept != 100 {
		t.Fatalf("%d traces kept, want the 100 whose first spans the bucket held", kept)
	}
}
