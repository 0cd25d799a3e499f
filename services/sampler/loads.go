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

// Loads keeps the latest load report of every collector and router, with the time it
// was seen, and sums the live ones (seen within the TTL) into the fleet's traffic:
//
//	fleet traffic = Σ collectors' rate + Σ routers' (received − forwarded) rate
//
// per service and in total. A router reports what it received before sampling; its
// backends (collectors) report again the part it forwarded, so adding a router's
// received rate less its forwarded rate counts each span once, whether SDKs send to
// collectors, through routers, or both. Safe for concurrent use.
type Loads struct {
	ttl           time.Duration
	maxCollectors int
	maxServices   int
	maxWaiting    int
	// members says which collectors are registered; nil counts every collector.
	members Members
	// routers says which routers are registered, and where; nil counts every report
	// with role router as a router's.
	routers Members
	// checked and checkedRouters are the generations the counted and waiting tables
	// were last reconciled with.
	checked, checkedRouters uint64
	// fwd is Observe's scratch map of one router's forwarded rates by service.
	fwd map[string]float64

	mu        sync.Mutex
	last      map[collectorID]seenReport
	waiting   map[collectorID]seenReport
	lastPrune time.Time // when a full table last pruned itself (at most once a second)
}

// collectorID names a reporter; router is set for a router's report (a router and a
// collector may share an id without sharing an entry).
type collectorID struct {
	region, collector string
	router            bool
}

type seenReport struct {
	r    events.LoadReport
	seen time.Time
}

// Members says which collectors (*registered.Set) or routers (*registered.RouterSet)
// are registered.
type Members interface {
	// Has reports whether the collector or router is registered in region.
	Has(region, collector string) bool
	// Generation changes whenever a collector is added or removed.
	Generation() uint64
}

// NewLoads returns an empty table whose reports count for ttl after they were seen.
// With members non-nil only the reports of registered collectors count (the rule of
// package registered); with routers non-nil only the reports with role router of
// routers registered in the report's region count as routers'. The others wait,
// bounded, for their registration.
func NewLoads(ttl time.Duration, members, routers Members) *Loads {
	l := &Loads{ttl: ttl, maxCollectors: MaxTrackedCollectors, maxServices: MaxTrackedServices, maxWaiting: MaxWaitingCollectors,
		members: members, routers: routers, fwd: map[string]float64{},
		last: map[collectorID]seenReport{}, waiting: map[collectorID]seenReport{}}
	if members != nil {
		l.checked = members.Generation()
	}
	if routers != nil {
		l.checkedRouters = routers.Generation()
	}
	return l
}

// registeredLocked reports whether the reporter id is registered as what it claims.
func (l *Loads) registeredLocked(id collectorID) bool {
	m := l.members
	if id.router {
		m = l.routers
	}
	return m == nil || m.Has(id.region, id.collector)
}

// Add records r as its collector's (or, with role router, its router's) latest report,
// seen at seen (the time the NATS server stored it, so every replica ages it alike).
// An older report than the one held is ignored. A report of an unregistered collector
// or router goes to the bounded waiting table, never into the counted one, so it
// cannot take a registered reporter's place.
func (l *Loads) Add(r events.LoadReport, seen time.Time) AddResult {
	id := collectorID{r.Region, r.Collector, r.Role == events.RoleRouter}
	l.mu.Lock()
	defer l.mu.Unlock()
	if !l.registeredLocked(id) {
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
// reporters: fleet spans/s per service and in total (collectors' rates plus routers'
// received less forwarded, each clamped at 0), and the load and capacity of the
// collectors that report a capacity (routers never count there: utilisation and
// degradation are the collectors').
//
// A collector or router no longer registered is forgotten; a waiting report whose
// reporter is now registered counts from this observation on. Both are checked only
// when the membership changed since the last observation.
func (l *Loads) Observe(now time.Time) strategy.Observation {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.pruneLocked(now)
	changed := false
	if l.members != nil {
		if gen := l.members.Generation(); gen != l.checked {
			l.checked, changed = gen, true
		}
	}
	if l.routers != nil {
		if gen := l.routers.Generation(); gen != l.checkedRouters {
			l.checkedRouters, changed = gen, true
		}
	}
	if changed {
		l.reconcileLocked()
	}
	obs := strategy.Observation{Services: make(map[string]float64)}
	for id, s := range l.last {
		r := s.r
		if id.router {
			obs.Routers++
			l.addRouterLocked(&obs, &r)
			continue
		}
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

// addRouterLocked adds a router's received less forwarded rates to obs.
func (l *Loads) addRouterLocked(obs *strategy.Observation, r *events.LoadReport) {
	obs.FleetQPS += max(r.QPS-r.ForwardedQPS, 0)
	clear(l.fwd)
	for _, f := range r.Forwarded {
		l.fwd[f.Name] += f.SpansPerSec
	}
	for _, sr := range r.Services {
		if v := sr.SpansPerSec - l.fwd[sr.Name]; v > 0 {
			obs.Services[sr.Name] += v
		}
	}
}

// reconcileLocked forgets the counted reporters no longer registered and moves the
// waiting reports of reporters now registered into the counted table.
func (l *Loads) reconcileLocked() {
	for id := range l.last {
		if !l.registeredLocked(id) {
			delete(l.last, id)
		}
	}
	for id, s := range l.waiting {
		if l.registeredLocked(id) {
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

// Len returns the number of collectors and routers held whose reports count (live or
// not yet forgotten).
func (l *Loads) Len() int {
	l.mu.Lock()
	defer l.mu.Unlock()
	return len(l.last)
}

// Waiting returns the number of unregistered collectors and routers whose reports are
// held.
func (l *Loads) Waiting() int {
	l.mu.Lock()
	defer l.mu.Unlock()
	return len(l.waiting)
}
