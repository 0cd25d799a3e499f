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
	// MaxWaitingCollectors bounds the collectors whose reports are held, uncounted,
	// while their registration is not (yet) seen; reports from further unregistered
	// collectors are dropped. A flood of made-up collectors fills this table only.
	MaxWaitingCollectors = 1_000
)

// AddResult says what Loads.Add did with a report.
type AddResult int

// Add results.
const (
	// Counted: the report is its registered collector's latest and counts.
	Counted AddResult = iota
	// Waiting: the collector is not registered; the report is held, uncounted, and
	// counts from the first observation after its registration is seen (within the TTL).
	Waiting
	// CollectorLimit: a new registered collector beyond MaxTrackedCollectors; dropped.
	CollectorLimit
	// WaitingLimit: a new unregistered collector beyond MaxWaitingCollectors; dropped.
	WaitingLimit
)

// Loads keeps the latest load report of every collector, with the time it was seen, and
// sums the live ones (seen within the TTL) into the fleet's traffic. Safe for
// concurrent use.
type Loads struct {
	ttl           time.Duration
	maxCollectors int
	maxServices   int
	maxWaiting    int
	// members says which collectors are registered; nil counts every collector.
	members Members
	// checked is the members' generation the counted and waiting tables were last
	// reconciled with.
	checked uint64

	mu        sync.Mutex
	last      map[collectorID]seenReport
	waiting   map[collectorID]seenReport
	lastPrune time.Time // when a full table last pruned itself (at most once a second)
}

type collectorID struct{ region, collector string }

type seenReport struct {
	r    events.LoadReport
	seen time.Time
}

// Members says which collectors are registered; *registered.Set implements it.
type Members interface {
	// Has reports whether the collector is registered.
	Has(region, collector string) bool
	// Generation changes whenever a collector is added or removed.
	Generation() uint64
}

// NewLoads returns an empty table whose reports count for ttl after they were seen.
// With members non-nil only the reports of registered collectors count (the rule of
// package registered); the others wait, bounded, for their registration.
func NewLoads(ttl time.Duration, members Members) *Loads {
	l := &Loads{ttl: ttl, maxCollectors: MaxTrackedCollectors, maxServices: MaxTrackedServices, maxWaiting: MaxWaitingCollectors,
		members: members, last: map[collectorID]seenReport{}, waiting: map[collectorID]seenReport{}}
	if members != nil {
		l.checked = members.Generation()
	}
	return l
}

// Add records r as its collector's latest report, seen at seen (the time the NATS
// server stored it, so every replica ages it alike). An older report than the one held
// is ignored. A report of an unregistered collector goes to the bounded waiting table,
// never into the counted one, so it cannot take a registered collector's place.
func (l *Loads) Add(r events.LoadReport, seen time.Time) AddResult {
	id := collectorID{r.Region, r.Collector}
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.members != nil && !l.members.Has(r.Region, r.Collector) {
		return l.putLocked(l.waiting, l.maxWaiting, id, seenReport{r, seen}, Waiting, WaitingLimit)
	}
	delete(l.waiting, id)
	return l.putLocked(l.last, l.maxCollectors, id, seenReport{r, seen}, Counted, CollectorLimit)
}

// putLocked stores sr in table unless an older report than the one held, or a new
// collector over limit (after forgetting the reports older than the TTL, at most once
// a second): then it returns full.
func (l *Loads) putLocked(table map[collectorID]seenReport, limit int, id collectorID, sr seenReport, ok, full AddResult) AddResult {
	cur, held := table[id]
	if held && cur.seen.After(sr.seen) {
		return ok
	}
	if !held && len(table) >= limit {
		if sr.seen.Sub(l.lastPrune) >= time.Second {
			l.lastPrune = sr.seen
			l.pruneLocked(sr.seen)
		}
		if len(table) >= limit {
			return full
		}
	}
	table[id] = sr
	return ok
}

// Observe forgets reports older than the TTL at now and returns the sums over the live
// collectors: fleet spans/s per service and in total, and the load and capacity of the
// collectors that report a capacity.
//
// A collector no longer registered is forgotten; a waiting report whose collector is
// now registered counts from this observation on. Both are checked only when the
// membership changed since the last observation.
func (l *Loads) Observe(now time.Time) strategy.Observation {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.pruneLocked(now)
	if l.members != nil {
		if gen := l.members.Generation(); gen != l.checked {
			l.checked = gen
			l.reconcileLocked()
		}
	}
	obs := strategy.Observation{Services: make(map[string]float64)}
	for _, s := range l.last {
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

// reconcileLocked forgets the counted collectors no longer registered and moves the
// waiting reports of collectors now registered into the counted table.
func (l *Loads) reconcileLocked() {
	for id := range l.last {
		if !l.members.Has(id.region, id.collector) {
			delete(l.last, id)
		}
	}
	for id, s := range l.waiting {
		if l.members.Has(id.region, id.collector) {
			delete(l.waiting, id)
			l.putLocked(l.last, l.maxCollectors, id, s, Counted, CollectorLimit)
		}
	}
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
	for _, table := range []map[collectorID]seenReport{l.last, l.waiting} {
		for id, s := range table {
			if now.Sub(s.seen) > l.ttl {
				delete(table, id)
			}
		}
	}
}

// Len returns the number of collectors held whose reports count (live or not yet
// forgotten).
func (l *Loads) Len() int {
	l.mu.Lock()
	defer l.mu.Unlock()
	return len(l.last)
}

// Waiting returns the number of unregistered collectors whose reports are held.
func (l *Loads) Waiting() int {
	l.mu.Lock()
	defer l.mu.Unlock()
	return len(l.waiting)
}
