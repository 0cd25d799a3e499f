package topologysvc

import (
	"cmp"
	"slices"
	"sync"
	"time"

	"github.com/otelfleet/otelfleet/pkg/events"
)

// collectorKey identifies a collector: its region and id (the tokens of its registry key
// collector.<region>.<id> and of its load subject otlp.load.<region>.<id>).
type collectorKey struct{ region, id string }

// registration is what the state keeps of a collector's registration.
type registration struct {
	name, address, version string
	capacity               float64
	health                 events.HealthStatus
	registeredAt           time.Time
}

// load is what the state keeps of a collector's last load report.
type load struct {
	qps, bytes, cpu, latency, errors, capacity float64
	queue                                      int64
	memory                                     uint64
	healthy                                    bool
	interval                                   time.Duration
}

// record is everything the state knows of one collector key.
type record struct {
	key        collectorKey
	registered bool
	reg        registration
	hasLoad    bool
	load       load
	// reportAt is when JetStream stored the last report (server clock); receivedAt is
	// when this process received it (local clock, for the unregistered grace).
	reportAt, receivedAt time.Time
	// opamp is set only in Build's copies: the collector's OpAMP view, if any.
	opamp *OpAMP
	// gone is set when the record leaves the state (Build drops it from the order).
	gone bool
}

// LoadResult says what State.PutLoad did with a report.
type LoadResult int

// PutLoad results.
const (
	// LoadAccepted: the report updated a registered collector.
	LoadAccepted LoadResult = iota
	// LoadUnregistered: the collector is not registered; the report is kept, unshown,
	// for the grace period.
	LoadUnregistered
	// LoadOverflow: the collector is not registered and too many unregistered
	// reporters are already kept; the report was dropped.
	LoadOverflow
	// LoadOutdated: a newer report of the collector is already known; dropped.
	LoadOutdated
)

// State is the mutable topology: registrations and last load reports by collector.
// Ingestion (PutRegistration, DeleteRegistration, PutLoad, SetSamplingRate) and Build
// are safe for concurrent use; Build copies what it needs under the lock and does the
// rest outside it.
type State struct {
	staleAfter      time.Duration
	grace           time.Duration
	maxUnregistered int

	mu           sync.Mutex
	recs         map[collectorKey]*record
	unregistered int
	sampling     *float64
	// order holds the registered records sorted by key. Build brings it up to date
	// only when collectors joined (joined: records registered since, in no order) or
	// left (left: how many; their records are marked gone): a few changes are merged
	// in (sort the joined, drop the gone, one merge pass), many re-sort everything. So a
	// build copies records in order instead of sorting 100,000 of them, and a collector
	// joining a large fleet costs a merge, not a sort.
	order  []*record
	joined []*record
	left   int

	// agents maps an OpAMP agent's uid to the collector it registers as and its view;
	// opamp is the view by collector (see PutAgent).
	agents map[string]agentRef
	opamp  map[collectorKey]*OpAMP

	// scratch is Build's copy buffer, reused across builds (Build is called from one
	// goroutine at a time; buildMu makes sure of it).
	buildMu sync.Mutex
	scratch []record
}

// NewState returns an empty state with cfg's staleness window, grace period and bound on
// unregistered reporters.
func NewState(cfg Config) *State {
	return &State{
		staleAfter:      cfg.StaleAfter,
		grace:           cfg.UnregisteredGrace,
		maxUnregistered: cfg.MaxUnregistered,
		recs:            make(map[collectorKey]*record),
	}
}

// PutRegistration adds or updates the collector r describes (r must be a valid
// collector registration). A load report kept for it while it was unregistered is
// attached at once.
func (s *State) PutRegistration(r *events.Registration) {
	k := collectorKey{r.Region, r.ID}
	reg := registration{name: r.Name, address: r.Address, version: r.Version, capacity: r.CapacityQPS,
		health: r.Health.Status, registeredAt: r.RegisteredAt}
	s.mu.Lock()
	defer s.mu.Unlock()
	rec := s.recs[k]
	if rec == nil {
		rec = &record{key: k}
		s.recs[k] = rec
		s.joined = append(s.joined, rec)
	} else if !rec.registered {
		s.unregistered--
		s.joined = append(s.joined, rec)
	}
	rec.registered = true
	rec.reg = reg
}

// DeleteRegistration forgets the collector (its registration expired or was deleted),
// including its load. It reports whether the collector was registered.
func (s *State) DeleteRegistration(region, id string) bool {
	k := collectorKey{region, id}
	s.mu.Lock()
	defer s.mu.Unlock()
	rec := s.recs[k]
	if rec == nil {
		return false
	}
	delete(s.recs, k)
	rec.gone = true
	if rec.registered {
		s.left++
	} else {
		s.unregistered--
	}
	return rec.registered
}

// RetainRegistrations forgets every registered collector whose key is not in keep (used
// after a registry watch restarts and has delivered the bucket's current keys). It
// returns how many were forgotten.
func (s *State) RetainRegistrations(keep map[collectorKey]struct{}) int {
	s.mu.Lock()
	defer s.mu.Unlock()
	n := 0
	for k, rec := range s.recs {
		if _, ok := keep[k]; rec.registered && !ok {
			delete(s.recs, k)
			rec.gone = true
			s.left++
			n++
		}
	}
	return n
}

// PutLoad records r (a valid report) as stored by JetStream at reportAt and received now.
func (s *State) PutLoad(r *events.LoadReport, reportAt, now time.Time) LoadResult {
	k := collectorKey{r.Region, r.Collector}
	l := load{qps: r.QPS, bytes: r.BytesPerSec, cpu: r.CPU, latency: r.AvgLatencyMS, errors: r.ErrorRate,
		capacity: r.Capacity, queue: r.QueueDepth, memory: r.Memory, healthy: r.Healthy,
		interval: time.Duration(r.IntervalMS) * time.Millisecond}
	s.mu.Lock()
	defer s.mu.Unlock()
	rec := s.recs[k]
	if rec == nil {
		if s.unregistered >= s.maxUnregistered || s.grace <= 0 {
			return LoadOverflow
		}
		rec = &record{key: k}
		s.recs[k] = rec
		s.unregistered++
	}
	if rec.hasLoad && reportAt.Before(rec.reportAt) {
		return LoadOutdated
	}
	rec.hasLoad, rec.load, rec.reportAt, rec.receivedAt = true, l, reportAt, now
	if !rec.registered {
		return LoadUnregistered
	}
	return LoadAccepted
}

// SetSamplingRate sets the effective sampling rate reported in the global statistics;
// nil means none is known.
func (s *State) SetSamplingRate(rate *float64) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.sampling = rate
}

// Counts returns how many registered collectors and waiting unregistered reporters the
// state holds.
func (s *State) Counts() (registered, unregistered int) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return len(s.recs) - s.unregistered, s.unregistered
}

// view is an immutable topology built by State.Build; queries share it without locks.
type view struct {
	built   time.Time
	regions []Region
	global  events.GlobalStats
}

// Build returns the topology as of now: every registered collector with its status,
// grouped by region (regions sorted by name, collectors by id), with region and global
// statistics. It also drops unregistered reports older than the grace period and
// returns how many it dropped.
func (s *State) Build(now time.Time) (*view, int) {
	s.buildMu.Lock()
	defer s.buildMu.Unlock()

	recs := s.scratch[:0]
	dropped := 0
	s.mu.Lock()
	if s.unregistered > 0 {
		for k, rec := range s.recs {
			if !rec.registered && now.Sub(rec.receivedAt) > s.grace {
				delete(s.recs, k)
				rec.gone = true
				s.unregistered--
				dropped++
			}
		}
	}
	s.updateOrderLocked()
	for _, rec := range s.order {
		recs = append(recs, *rec)
		if len(s.opamp) > 0 {
			recs[len(recs)-1].opamp = s.opamp[rec.key]
		}
	}
	var sampling *float64
	if s.sampling != nil {
		r := *s.sampling
		sampling = &r
	}
	s.mu.Unlock()
	s.scratch = recs

	all := make([]Collector, len(recs))
	v := &view{built: now}
	var global accumulator
	for start := 0; start < len(recs); {
		end := start
		region := recs[start].key.region
		var acc accumulator
		for end < len(recs) && recs[end].key.region == region {
			c := &all[end]
			s.collector(&recs[end], now, c)
			acc.add(c)
			end++
		}
		v.regions = append(v.regions, Region{Region: region, Stats: acc.regionStats(region), Collectors: all[start:end:end]})
		global.merge(&acc)
		start = end
	}
	v.global = global.globalStats(len(v.regions), sampling)
	// Clear the scratch copies so they do not pin strings of forgotten collectors.
	clear(recs)
	return v, dropped
}

// compareRecords orders records by region, then id.
func compareRecords(a, b *record) int {
	if c := cmp.Compare(a.key.region, b.key.region); c != 0 {
		return c
	}
	return cmp.Compare(a.key.id, b.key.id)
}

// updateOrderLocked brings s.order up to date with the collectors that joined and left
// since the last build (see State.order). s.mu must be held.
func (s *State) updateOrderLocked() {
	if len(s.joined) == 0 && s.left == 0 {
		return
	}
	if len(s.joined)+s.left > len(s.order)/8 {
		// Many changes (or the first build): collect and sort everything.
		s.order = s.order[:0]
		for _, rec := range s.recs {
			if rec.registered {
				s.order = append(s.order, rec)
			}
		}
		slices.SortFunc(s.order, compareRecords)
	} else {
		kept := s.order[:0]
		for _, rec := range s.order {
			if !rec.gone {
				kept = append(kept, rec)
			}
		}
		add := s.joined[:0]
		for _, rec := range s.joined {
			if !rec.gone && rec.registered {
				add = append(add, rec)
			}
		}
		slices.SortFunc(add, compareRecords)
		// Merge from the back, in place.
		n := len(kept)
		kept = slices.Grow(kept, len(add))[:n+len(add)]
		for i, j, k := n-1, len(add)-1, len(kept)-1; j >= 0; k-- {
			if i >= 0 && compareRecords(kept[i], add[j]) > 0 {
				kept[k], i = kept[i], i-1
			} else {
				kept[k], j = add[j], j-1
			}
		}
		s.order = kept
	}
	clear(s.order[len(s.order):cap(s.order)])
	clear(s.joined)
	s.joined, s.left = s.joined[:0], 0
}

// collector fills c from rec as of now.
func (s *State) collector(rec *record, now time.Time, c *Collector) {
	health := rec.reg.health
	if !health.Valid() {
		health = events.HealthUnhealthy
	}
	// A registration's capacity is only required to be finite; bound it like a load
	// report's, so that the sums over a region cannot overflow to +Inf.
	capacity := min(rec.reg.capacity, events.MaxReportedQPS)
	*c = Collector{
		ID: rec.key.id, Region: rec.key.region, Address: rec.reg.address, Name: rec.reg.name,
		Version: rec.reg.version, RegisteredAt: rec.reg.registeredAt, ReportAgeMS: -1, Stale: true,
		OpAMP: rec.opamp,
	}
	if rec.hasLoad {
		l := &rec.load
		if !l.healthy {
			health = health.Worst(events.HealthUnhealthy)
		}
		if !(capacity > 0) {
			capacity = l.capacity
		}
		age := max(now.Sub(rec.reportAt), 0)
		window := max(s.staleAfter, 3*l.interval)
		c.QPS, c.BytesPerSec, c.QueueDepth, c.CPU, c.MemoryBytes = l.qps, l.bytes, l.queue, l.cpu, l.memory
		c.AvgLatencyMS, c.ErrorRate = l.latency, l.errors
		c.LastReport, c.ReportAgeMS, c.Stale = rec.reportAt, age.Milliseconds(), age > window
	}
	c.Health = health
	c.CapacityQPS = capacity
	c.Utilization = Utilization(c.QPS, capacity)
	switch {
	case c.Stale:
		c.Status = StatusStale
	default:
		c.Status = Status(health)
	}
}
