package samplersvc

import (
	"sync"
	"time"

	"github.com/otelfleet/otelfleet/pkg/events"
	"github.com/otelfleet/otelfleet/services/sampler/internal/strategy"
)

// Loads keeps the latest load report of every collector, with the time it was seen, and
// sums the live ones (seen within the TTL) into the fleet's traffic. Safe for
// concurrent use.
type Loads struct {
	ttl time.Duration

	mu   sync.Mutex
	last map[collectorID]seenReport
}

type collectorID struct{ region, collector string }

type seenReport struct {
	r    events.LoadReport
	seen time.Time
}

// NewLoads returns an empty table whose reports count for ttl after they were seen.
func NewLoads(ttl time.Duration) *Loads {
	return &Loads{ttl: ttl, last: map[collectorID]seenReport{}}
}

// Add records r as its collector's latest report, seen at seen (the time the NATS
// server stored it, so every replica ages it alike). An older report than the one held
// is ignored.
func (l *Loads) Add(r events.LoadReport, seen time.Time) {
	id := collectorID{r.Region, r.Collector}
	l.mu.Lock()
	defer l.mu.Unlock()
	if cur, ok := l.last[id]; ok && cur.seen.After(seen) {
		return
	}
	l.last[id] = seenReport{r: r, seen: seen}
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
	return obs
}

// Prune forgets the reports older than the TTL at now.
func (l *Loads) Prune(now time.Time) {
	l.mu.Lock()
	defer l.mu.Unlock()
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
