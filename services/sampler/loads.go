package samplersvc

import (
	"cmp"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/otelfleet/otelfleet/pkg/events"
	"github.com/otelfleet/otelfleet/services/sampler/internal/strategy"
)

// Limits on what Loads tracks, so that a flood of reports with made-up collector or
// service names costs bounded memory and decision time.
const (
	// MaxTrackedCollectors bounds the collectors held; reports from new collectors
	// beyond it are refused (Add returns false) until others age out.
	MaxTrackedCollectors = 100_000
	// MaxTrackedServices bounds the services an observation lists: the busiest are kept
	// and the traffic of the rest counts as "other" (sampled at the default rate).
	MaxTrackedServices = 10_000
)

// Loads keeps the latest load report of every collector, with the time it was seen, and
// sums the live ones (seen within the TTL) into the fleet's traffic. Safe for
// concurrent use.
type Loads struct {
	ttl           time.Duration
	maxCollectors int
	maxServices   int

	mu        sync.Mutex
	last      map[collectorID]seenReport
	lastPrune time.Time // when a full table last pruned itself (at most once a second)
}

type collectorID struct{ region, collector string }

type seenReport struct {
	r    events.LoadReport
	seen time.Time
}

// NewLoads returns an empty table whose reports count for ttl after they were seen.
func NewLoads(ttl time.Duration) *Loads {
	return &Loads{ttl: ttl, maxCollectors: MaxTrackedCollectors, maxServices: MaxTrackedServices, last: map[collectorID]seenReport{}}
}

// Add records r as its collector's latest report, seen at seen (the time the NATS
// server stored it, so every replica ages it alike). An older report than the one held
// is ignored. It returns false when r comes from a collector not yet held and
// MaxTrackedCollectors are held (after forgetting the ones older than the TTL).
func (l *Loads) Add(r events.LoadReport, seen time.Time) bool {
	id := collectorID{r.Region, r.Collector}
	l.mu.Lock()
	defer l.mu.Unlock()
	cur, ok := l.last[id]
	if ok && cur.seen.After(seen) {
		return true
	}
	if !ok && len(l.last) >= l.maxCollectors {
		if seen.Sub(l.lastPrune) >= time.Second {
			l.lastPrune = seen
			l.pruneLocked(seen)
		}
		if len(l.last) >= l.maxCollectors {
			return false
		}
	}
	l.last[id] = seenReport{r: r, seen: seen}
	return true
}

// Observe forgets reports older than the TTL at now and returns the sums over the live
// collectors: fleet spans/s per service and in total, and the load and capacity of the
// collectors that report a capacity.
func (l *Loads) Observe(now time.Time) strategy.Observation {
	l.mu.Lock()
	defer l.mu.Unlock()
	obs := strategy.Observation{Services: make(map[string]float64)}
	for id, s := range l.last {
		if now.Sub(s.seen) > l.ttl {
			delete(l.last, id)
			continue
		}
		r := s.r
		obs.Collectors++
		obs.FleetQPS += r.QPS
		if r.Capacity > 0 {
			obs.LoadQPS += r.QPS
			obs.Capacity += r.Capacity
		}
		for _, sr := range r.Services {
			obs.Services[sr.Name] += sr.SpansPerSec
		}
	}
	if len(obs.Services) > l.maxServices {
		keepBusiest(obs.Services, l.maxServices)
	}
	return obs
}

// keepBusiest deletes all but the n busiest services (ties by name) from m.
func keepBusiest(m map[string]float64, n int) {
	names := make([]string, 0, len(m))
	for name := range m {
		names = append(names, name)
	}
	slices.SortFunc(names, func(a, b string) int {
		if c := cmp.Compare(m[b], m[a]); c != 0 {
			return c
		}
		return strings.Compare(a, b)
	})
	for _, name := range names[n:] {
		delete(m, name)
	}
}

// Prune forgets the reports older than the TTL at now.
func (l *Loads) Prune(now time.Time) {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.pruneLocked(now)
}

func (l *Loads) pruneLocked(now time.Time) {
	for id, s := range l.last {
		if now.Sub(s.seen) > l.ttl {
			delete(l.last, id)
		}
	}
}

// Len returns the number of collectors held (live or not yet forgotten).
func (l *Loads) Len() int {
	l.mu.Lock()
	defer l.mu.Unlock()
	return len(l.last)
}
