package topologysvc

import (
	"sync"
	"time"

	"github.com/otelfleet/otelfleet/pkg/events"
	"github.com/otelfleet/otelfleet/pkg/fleetview"
)

// collectorKey identifies a collector: its region and id (the tokens of its registry key
// collector.<region>.<id> and of its load subject otlp.load.<region>.<id>).
type collectorKey struct{ region, id string }

// record is everything Build knows of one collector: its fleet view entry and, in
// Build's copies, its OpAMP view.
type record struct {
	c     *fleetview.Collector
	opamp *OpAMP
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

// loadResult maps the fleet view's outcome to topology's.
func loadResult(o fleetview.Outcome) LoadResult {
	switch o {
	case fleetview.Counted:
		return LoadAccepted
	case fleetview.Waiting:
		return LoadUnregistered
	case fleetview.Outdated:
		return LoadOutdated
	}
	return LoadOverflow
}

// State is the topology's state: the fleet view (registrations and last load reports by
// collector, pkg/fleetview), the sampling rate and the OpAMP agents. Its methods and
// Build are safe for concurrent use.
type State struct {
	staleAfter time.Duration
	view       *fleetview.View

	mu       sync.Mutex
	sampling *float64

	// agents maps an OpAMP agent's uid to the collector it registers as and its view;
	// opamp is the view by collector (see PutAgent).
	agents map[string]agentRef
	opamp  map[collectorKey]*OpAMP

	// scratch is Build's copy buffer, reused across builds (Build is called from one
	// goroutine at a time; buildMu makes sure of it).
	buildMu sync.Mutex
	scratch []record
}

// viewConfig is the fleet view's config for topology's cfg: reports of unregistered
// collectors wait cfg.UnregisteredGrace, at most cfg.MaxUnregistered of them.
func viewConfig(cfg Config) fleetview.Config {
	c := fleetview.Config{WaitFor: cfg.UnregisteredGrace, MaxWaiting: cfg.MaxUnregistered}
	if c.WaitFor <= 0 || c.MaxWaiting <= 0 {
		c.WaitFor, c.MaxWaiting = -1, -1
	}
	return c
}

// NewState returns an empty state over a fleet view with cfg's staleness window, grace
// period and bound on unregistered reporters.
func NewState(cfg Config) *State { return newState(cfg, fleetview.New(viewConfig(cfg))) }

func newState(cfg Config, v *fleetview.View) *State {
	return &State{staleAfter: cfg.StaleAfter, view: v}
}

// View returns the fleet view the state is built from.
func (s *State) View() *fleetview.View { return s.view }

// PutRegistration adds or updates the collector r describes (r must be a valid
// collector registration). A load report kept for it while it was unregistered is
// attached at once.
func (s *State) PutRegistration(r *events.Registration) { s.view.PutRegistration(r) }

// DeleteRegistration forgets the collector (its registration expired or was deleted),
// including its load. It reports whether the collector was registered.
func (s *State) DeleteRegistration(region, id string) bool {
	key, err := events.CollectorKey(region, id)
	return err == nil && s.view.Delete(key)
}

// PutLoad records r (a valid report) as stored by JetStream at reportAt and received now
// (this process's clock: staleness is judged by it).
func (s *State) PutLoad(r *events.LoadReport, reportAt, now time.Time) LoadResult {
	return loadResult(s.view.PutReportAt(r, reportAt, now))
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
func (s *State) Counts() (registered, unregistered int) { return s.view.Counts() }

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

	dropped := s.view.Prune(now)
	snap := s.view.Snapshot()
	recs := s.scratch[:0]
	s.mu.Lock()
	for _, c := range snap.Collectors {
		recs = append(recs, record{c: c})
		if len(s.opamp) > 0 {
			recs[len(recs)-1].opamp = s.opamp[collectorKey{c.Key.Region, c.Key.ID}]
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
		region := recs[start].c.Key.Region
		var acc accumulator
		for end < len(recs) && recs[end].c.Key.Region == region {
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

// collector fills c from rec as of now.
func (s *State) collector(rec *record, now time.Time, c *Collector) {
	reg := &rec.c.Registration
	health := reg.Health.Status
	if !health.Valid() {
		health = events.HealthUnhealthy
	}
	// A registration's capacity is only required to be finite; bound it like a load
	// report's, so that the sums over a region cannot overflow to +Inf.
	capacity := min(reg.CapacityQPS, events.MaxReportedQPS)
	*c = Collector{
		ID: rec.c.Key.ID, Region: rec.c.Key.Region, Address: reg.Address, Name: reg.Name,
		Version: reg.Version, RegisteredAt: reg.RegisteredAt, ReportAgeMS: -1, Stale: true,
		OpAMP: rec.opamp,
	}
	if l := rec.c.Report; l != nil {
		if !l.Healthy {
			health = health.Worst(events.HealthUnhealthy)
		}
		if !(capacity > 0) {
			capacity = l.Capacity
		}
		at := rec.c.ReceivedAt
		age := max(now.Sub(at), 0)
		window := max(s.staleAfter, 3*time.Duration(l.IntervalMS)*time.Millisecond)
		c.QPS, c.BytesPerSec, c.QueueDepth, c.CPU, c.MemoryBytes = l.QPS, l.BytesPerSec, l.QueueDepth, l.CPU, l.Memory
		c.AvgLatencyMS, c.ErrorRate = l.AvgLatencyMS, l.ErrorRate
		c.LastReport, c.ReportAgeMS, c.Stale = at, age.Milliseconds(), age > window
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
