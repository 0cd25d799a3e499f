package fleetview

import (
	"cmp"
	"log/slog"
	"maps"
	"slices"
	"sync"
	"sync/atomic"
	"time"

	"github.com/otelfleet/otelfleet/pkg/events"
)

// Key names one collector.
type Key struct{ Region, ID string }

// Collector is one registered collector as a Snapshot holds it. It is immutable: a new
// registration or report replaces the whole value.
type Collector struct {
	Key Key
	// Registration is its valid registration, as stored under Key.
	Registration events.Registration
	// Report is its latest load report; nil until one arrives.
	Report *events.LoadReport
	// StoredAt is when the NATS server stored Report (the server's clock; it orders the
	// reports of one collector, and dates nothing else).
	StoredAt time.Time
	// ReceivedAt is when this process received Report, on its own clock: readings are
	// dated and expired by it.
	ReceivedAt time.Time
	// UnhealthyReports counts the consecutive latest reports that said unhealthy (0 when
	// the latest said healthy), so a consumer can ask a state to persist before it acts.
	UnhealthyReports int
}

// Router is one registered OTLP router as a Snapshot holds it. Immutable.
type Router struct {
	// ID is its instance id, Region the region its registration names.
	ID, Region string
	// Registration is its valid registration, stored under service.router.<ID>.
	Registration events.Registration
	// Report is its latest load report in Region (its demand: received items per
	// service, before sampling and limiting); nil until one arrives.
	Report *events.LoadReport
	// StoredAt and ReceivedAt date Report as Collector's do.
	StoredAt, ReceivedAt time.Time
}

// Snapshot is the fleet at one moment. It is immutable and shared: never modify it.
type Snapshot struct {
	// Members changes whenever a collector or router joins or leaves, or a registration's
	// content (not its heartbeat) changes.
	Members uint64
	// Collectors are the registered collectors, by region then id.
	Collectors []*Collector
	// Routers are the registered routers, by id.
	Routers []*Router
	// Services are the other services' registrations, by key.
	Services []events.Registration
}

// Outcome says what View.PutReport did with a report.
type Outcome int

// PutReport outcomes.
const (
	// Counted: the report is its registered collector's (or router's) latest.
	Counted Outcome = iota
	// Waiting: its collector or router is not registered (as what the report claims);
	// the report is held, uncounted, and counts once the registration arrives within
	// Config.WaitFor.
	Waiting
	// WaitingLimit: not registered, and Config.MaxWaiting reporters already wait; dropped.
	WaitingLimit
	// ReportingLimit: a registered reporter new to the table while Config.MaxReporting
	// reporters hold a report younger than Config.ForgetAfter; dropped.
	ReportingLimit
	// Outdated: the server stored a newer report of the same reporter already; dropped.
	Outdated
)

// String returns the outcome's metric label.
func (o Outcome) String() string {
	switch o {
	case Counted:
		return "counted"
	case Waiting:
		return "unregistered"
	case WaitingLimit:
		return "unregistered_limit"
	case ReportingLimit:
		return "reporting_limit"
	case Outdated:
		return "outdated"
	}
	return "unknown"
}

// Bounds a View keeps by default.
const (
	// DefaultMaxReporting bounds the collectors and routers holding a report.
	DefaultMaxReporting = 100_000
	// DefaultMaxWaiting bounds the unregistered reporters whose reports wait.
	DefaultMaxWaiting = 1_000
	// DefaultWaitFor is how long a report waits for its reporter's registration.
	DefaultWaitFor = 10 * time.Second
	// DefaultForgetAfter is the age past which a report may be forgotten to make room.
	DefaultForgetAfter = 15 * time.Minute
)

// Config tunes a View.
type Config struct {
	// NS names the registry keys, the load stream and its subjects (zero: events.Default).
	NS events.Namespace
	// MaxReporting bounds the collectors and routers that hold a report (default
	// DefaultMaxReporting); a new reporter beyond it is refused (ReportingLimit) until
	// others' reports are older than ForgetAfter.
	MaxReporting int
	// ForgetAfter: reports older than this (by ReceivedAt) are forgotten when the
	// reporting table is full (default DefaultForgetAfter). A consumer's own expiry is
	// its business (it ages readings by ReceivedAt).
	ForgetAfter time.Duration
	// MaxWaiting bounds the unregistered reporters whose reports wait (default
	// DefaultMaxWaiting; negative: none wait).
	MaxWaiting int
	// WaitFor is how long a report waits for its reporter's registration (default
	// DefaultWaitFor; negative: none wait).
	WaitFor time.Duration
	// Log receives rejected registry keys and values, and resync results (nil: discarded).
	Log *slog.Logger
	// Registry, if set, is called for every registry entry with "put", "delete",
	// "expire" or "rejected".
	Registry func(op string)
	// Reports, if set, is called for every load report the follower read: with its
	// outcome, or with a non-nil error (and the subject and payload) when it did not
	// decode.
	Reports func(o Outcome, subject string, data []byte, err error)
	// Now is the clock (default time.Now).
	Now func() time.Time
}

func (c *Config) defaults() {
	if c.NS == (events.Namespace{}) {
		c.NS = events.Default
	}
	if c.MaxReporting <= 0 {
		c.MaxReporting = DefaultMaxReporting
	}
	if c.ForgetAfter <= 0 {
		c.ForgetAfter = DefaultForgetAfter
	}
	if c.MaxWaiting == 0 {
		c.MaxWaiting = DefaultMaxWaiting
	}
	if c.WaitFor == 0 {
		c.WaitFor = DefaultWaitFor
	}
	if c.MaxWaiting < 0 || c.WaitFor < 0 {
		c.MaxWaiting, c.WaitFor = 0, 0
	}
	if c.Log == nil {
		c.Log = slog.New(slog.DiscardHandler)
	}
	if c.Registry == nil {
		c.Registry = func(string) {}
	}
	if c.Reports == nil {
		c.Reports = func(Outcome, string, []byte, error) {}
	}
	if c.Now == nil {
		c.Now = time.Now
	}
}

// reporter names who sent a report: a router and a collector may share an id.
type reporter struct {
	region, id string
	router     bool
}

// waiting is a report held for its reporter's registration.
type waiting struct {
	r                    events.LoadReport
	storedAt, receivedAt time.Time
}

// View is the live fleet: it takes registrations and reports (from Run, or directly
// through its Put and Delete methods) and publishes Snapshots. Safe for concurrent use.
type View struct {
	cfg Config

	mu         sync.Mutex
	collectors map[Key]*Collector
	routers    map[string]*Router
	services   map[string]events.Registration
	waiting    map[reporter]waiting
	reporting  int // collectors and routers holding a report
	lastPrune  time.Time
	members    uint64
	dirty      bool
	order      []Key // collectors in snapshot order; nil when it must be re-sorted
	// joined and left are the collectors added and the count removed since order was
	// last brought up to date: a few are merged into it instead of re-sorting every
	// collector (at 100,000 a full sort costs ~150 ms of CPU).
	joined []Key
	left   int

	snap   atomic.Pointer[Snapshot]
	subsMu sync.Mutex
	subs   []chan struct{}

	loaded, caughtUp         chan struct{}
	loadedOnce, caughtUpOnce sync.Once
	replayed                 atomic.Bool // the load stream's replay is done
}

// New returns an empty view; Run follows NATS, tests may feed it directly.
func New(cfg Config) *View {
	cfg.defaults()
	v := &View{cfg: cfg, collectors: map[Key]*Collector{}, routers: map[string]*Router{}, services: map[string]events.Registration{},
		waiting: map[reporter]waiting{}, loaded: make(chan struct{}), caughtUp: make(chan struct{}), dirty: true}
	return v
}

// Loaded is closed once the registry's first replay is applied.
func (v *View) Loaded() <-chan struct{} { return v.loaded }

// CaughtUp is closed once the load stream's stored reports are replayed.
func (v *View) CaughtUp() <-chan struct{} { return v.caughtUp }

// Subscribe returns a channel that receives (coalesced, never blocking the view) after
// every change, and a function that ends the subscription.
func (v *View) Subscribe() (<-chan struct{}, func()) {
	ch := make(chan struct{}, 1)
	v.subsMu.Lock()
	v.subs = append(v.subs, ch)
	v.subsMu.Unlock()
	return ch, func() {
		v.subsMu.Lock()
		defer v.subsMu.Unlock()
		v.subs = slices.DeleteFunc(v.subs, func(c chan struct{}) bool { return c == ch })
	}
}

// changedLocked marks the snapshot out of date and tells the subscribers.
func (v *View) changedLocked(membership bool) {
	v.dirty = true
	if membership {
		v.members++
	}
	v.subsMu.Lock()
	defer v.subsMu.Unlock()
	for _, ch := range v.subs {
		select {
		case ch <- struct{}{}:
		default:
		}
	}
}

// Members returns the membership generation (Snapshot.Members) without building a
// snapshot: a consumer that rebuilds only on membership changes checks it first.
func (v *View) Members() uint64 {
	v.mu.Lock()
	defer v.mu.Unlock()
	return v.members
}

// Snapshot returns the fleet as of now. Successive calls without a change in between
// return the same Snapshot.
func (v *View) Snapshot() *Snapshot {
	v.mu.Lock()
	defer v.mu.Unlock()
	if s := v.snap.Load(); s != nil && !v.dirty {
		return s
	}
	v.updateOrderLocked()
	s := &Snapshot{Members: v.members, Collectors: make([]*Collector, len(v.order)), Routers: make([]*Router, 0, len(v.routers)),
		Services: make([]events.Registration, 0, len(v.services))}
	for i, k := range v.order {
		s.Collectors[i] = v.collectors[k]
	}
	for _, r := range v.routers {
		s.Routers = append(s.Routers, r)
	}
	slices.SortFunc(s.Routers, func(a, b *Router) int { return cmp.Compare(a.ID, b.ID) })
	for _, key := range slices.Sorted(maps.Keys(v.services)) {
		s.Services = append(s.Services, v.services[key])
	}
	v.snap.Store(s)
	v.dirty = false
	return s
}

// PutRegistration records a valid registration r (stored under its own key: the caller
// decoded it with events.DecodeRegistrationAt). A collector's or router's report waiting
// for it counts from now on.
func (v *View) PutRegistration(r *events.Registration) {
	now := v.cfg.Now()
	v.mu.Lock()
	defer v.mu.Unlock()
	switch {
	case r.InstanceKind == events.KindCollector:
		k := Key{r.Region, r.ID}
		prev := v.collectors[k]
		c := &Collector{Key: k, Registration: *r}
		if prev != nil {
			c.Report, c.StoredAt, c.ReceivedAt, c.UnhealthyReports = prev.Report, prev.StoredAt, prev.ReceivedAt, prev.UnhealthyReports
		} else if v.order != nil {
			v.joined = append(v.joined, k)
		}
		v.collectors[k] = c
		if prev == nil || len(r.Changed(prev.Registration)) > 0 {
			v.changedLocked(true)
		} else {
			v.dirty = true
		}
		if prev == nil || prev.Report == nil {
			v.attachWaitingLocked(reporter{r.Region, r.ID, false}, now)
		}
	case r.Name == events.ServiceRouter:
		prev := v.routers[r.ID]
		if r.Region == "" { // a router without a region counts nowhere
			if prev != nil {
				v.deleteRouterLocked(r.ID)
			}
			return
		}
		rt := &Router{ID: r.ID, Region: r.Region, Registration: *r}
		if prev != nil && prev.Region == r.Region {
			rt.Report, rt.StoredAt, rt.ReceivedAt = prev.Report, prev.StoredAt, prev.ReceivedAt
		} else if prev != nil && prev.Report != nil {
			v.reporting--
		}
		v.routers[r.ID] = rt
		v.changedLocked(prev == nil || len(r.Changed(prev.Registration)) > 0 || prev.Region != r.Region)
		if rt.Report == nil {
			v.attachWaitingLocked(reporter{r.Region, r.ID, true}, now)
		}
	default:
		key, _ := r.Key()
		prev, had := v.services[key]
		v.services[key] = *r
		v.changedLocked(!had || len(r.Changed(prev)) > 0)
	}
}

// attachWaitingLocked counts the report that waited for id's registration, if any (a
// report waits until Prune finds it older than WaitFor).
func (v *View) attachWaitingLocked(id reporter, now time.Time) {
	w, ok := v.waiting[id]
	if !ok {
		return
	}
	delete(v.waiting, id)
	v.countLocked(id, &w.r, w.storedAt, w.receivedAt, now)
}

// Delete forgets the registration stored under registry key key (deleted, expired or no
// longer valid), with its collector's or router's report, and a report of it waiting
// for a registration. It reports whether anything was registered there.
func (v *View) Delete(key string) bool {
	v.mu.Lock()
	defer v.mu.Unlock()
	if region, id, ok := events.CollectorFromKey(key); ok {
		delete(v.waiting, reporter{region, id, false})
		return v.deleteCollectorLocked(Key{region, id})
	}
	if id, ok := events.RouterFromKey(key); ok {
		if r, ok := v.routers[id]; ok {
			delete(v.waiting, reporter{r.Region, id, true})
		}
		return v.deleteRouterLocked(id)
	}
	if _, ok := v.services[key]; ok {
		delete(v.services, key)
		v.changedLocked(true)
		return true
	}
	return false
}

func (v *View) deleteCollectorLocked(k Key) bool {
	c, ok := v.collectors[k]
	if !ok {
		return false
	}
	if c.Report != nil {
		v.reporting--
	}
	delete(v.collectors, k)
	v.left++
	v.changedLocked(true)
	return true
}

func (v *View) deleteRouterLocked(id string) bool {
	r, ok := v.routers[id]
	if !ok {
		return false
	}
	if r.Report != nil {
		v.reporting--
	}
	delete(v.routers, id)
	v.changedLocked(true)
	return true
}

// Retain forgets every registration whose registry key is not in keep (after a
// re-created watch: a key that expired while the watch was down left no marker to
// deliver). It returns how many were forgotten.
func (v *View) Retain(keep map[string]struct{}) int {
	v.mu.Lock()
	defer v.mu.Unlock()
	n := 0
	for k := range v.collectors {
		key, err := events.CollectorKey(k.Region, k.ID)
		if _, ok := keep[key]; err != nil || !ok {
			v.deleteCollectorLocked(k)
			n++
		}
	}
	for id := range v.routers {
		key, err := events.ServiceKey(events.ServiceRouter, id)
		if _, ok := keep[key]; err != nil || !ok {
			v.deleteRouterLocked(id)
			n++
		}
	}
	for key := range v.services {
		if _, ok := keep[key]; !ok {
			delete(v.services, key)
			v.changedLocked(true)
			n++
		}
	}
	return n
}

// PutReport records r (a valid report) stored by the server at storedAt. It is dated
// now by this process's clock; a report replayed from the stream (before the first
// replay caught up) is dated storedAt, but never later than now.
func (v *View) PutReport(r *events.LoadReport, storedAt time.Time) Outcome {
	return v.putReport(r, storedAt, !v.replayed.Load())
}

// putReport records r, dated now, or, when replaying, storedAt but never later than now.
func (v *View) putReport(r *events.LoadReport, storedAt time.Time, replaying bool) Outcome {
	now := v.cfg.Now()
	receivedAt := now
	if replaying && !storedAt.IsZero() && storedAt.Before(now) {
		receivedAt = storedAt
	}
	return v.PutReportAt(r, storedAt, receivedAt)
}

// PutReportAt records r (a valid report) stored by the server at storedAt and received
// at receivedAt by this process's clock.
func (v *View) PutReportAt(r *events.LoadReport, storedAt, receivedAt time.Time) Outcome {
	now := receivedAt
	id := reporter{r.Region, r.Collector, r.Role == events.RoleRouter}
	v.mu.Lock()
	defer v.mu.Unlock()
	if !v.registeredLocked(id) {
		if v.cfg.MaxWaiting == 0 {
			return WaitingLimit
		}
		if cur, ok := v.waiting[id]; ok && storedAt.Before(cur.storedAt) {
			return Outdated
		}
		if _, ok := v.waiting[id]; !ok && len(v.waiting) >= v.cfg.MaxWaiting {
			v.pruneWaitingLocked(now)
			if len(v.waiting) >= v.cfg.MaxWaiting {
				return WaitingLimit
			}
		}
		v.waiting[id] = waiting{r: *r, storedAt: storedAt, receivedAt: receivedAt}
		return Waiting
	}
	return v.countLocked(id, r, storedAt, receivedAt, now)
}

// registeredLocked reports whether id is registered as what its report claims.
func (v *View) registeredLocked(id reporter) bool {
	if id.router {
		rt, ok := v.routers[id.id]
		return ok && rt.Region == id.region
	}
	_, ok := v.collectors[Key{id.region, id.id}]
	return ok
}

// countLocked makes r its registered reporter's latest report.
func (v *View) countLocked(id reporter, r *events.LoadReport, storedAt, receivedAt, now time.Time) Outcome {
	var had bool
	var held time.Time
	if id.router {
		cur := v.routers[id.id]
		had, held = cur.Report != nil, cur.StoredAt
	} else {
		cur := v.collectors[Key{id.region, id.id}]
		had, held = cur.Report != nil, cur.StoredAt
	}
	// The same report delivered again (a follower re-created after a reconnect replays
	// the last report of every reporter) refreshes nothing: a dead reporter stays dead.
	if had && (storedAt.Before(held) || storedAt.Equal(held) && !storedAt.IsZero()) {
		return Outdated
	}
	if !had && v.reporting >= v.cfg.MaxReporting {
		if now.Sub(v.lastPrune) >= time.Second {
			v.lastPrune = now
			v.forgetOldReportsLocked(now)
		}
		if v.reporting >= v.cfg.MaxReporting {
			return ReportingLimit
		}
	}
	if !had {
		v.reporting++
	}
	rep := *r
	if id.router {
		cur := v.routers[id.id]
		v.routers[id.id] = &Router{ID: cur.ID, Region: cur.Region, Registration: cur.Registration, Report: &rep, StoredAt: storedAt, ReceivedAt: receivedAt}
	} else {
		k := Key{id.region, id.id}
		cur := v.collectors[k]
		c := &Collector{Key: k, Registration: cur.Registration, Report: &rep, StoredAt: storedAt, ReceivedAt: receivedAt}
		if !rep.Healthy {
			c.UnhealthyReports = cur.UnhealthyReports + 1
		}
		v.collectors[k] = c
	}
	v.changedLocked(false)
	return Counted
}

// forgetOldReportsLocked drops the reports older than ForgetAfter.
func (v *View) forgetOldReportsLocked(now time.Time) {
	for k, c := range v.collectors {
		if c.Report != nil && now.Sub(c.ReceivedAt) > v.cfg.ForgetAfter {
			v.collectors[k] = &Collector{Key: k, Registration: c.Registration}
			v.reporting--
			v.changedLocked(false)
		}
	}
	for id, r := range v.routers {
		if r.Report != nil && now.Sub(r.ReceivedAt) > v.cfg.ForgetAfter {
			v.routers[id] = &Router{ID: r.ID, Region: r.Region, Registration: r.Registration}
			v.reporting--
			v.changedLocked(false)
		}
	}
}

// pruneWaitingLocked drops the waiting reports older than WaitFor.
func (v *View) pruneWaitingLocked(now time.Time) int {
	n := 0
	for id, w := range v.waiting {
		if now.Sub(w.receivedAt) > v.cfg.WaitFor {
			delete(v.waiting, id)
			n++
		}
	}
	return n
}

// Prune drops the reports waiting since before now - WaitFor and returns how many went.
func (v *View) Prune(now time.Time) int {
	v.mu.Lock()
	defer v.mu.Unlock()
	return v.pruneWaitingLocked(now)
}

// Counts returns how many collectors are registered, and how many unregistered
// reporters' reports wait.
func (v *View) Counts() (registered, waiting int) {
	v.mu.Lock()
	defer v.mu.Unlock()
	return len(v.collectors), len(v.waiting)
}

// Collector returns the registered collector region/id, or nil.
func (s *Snapshot) Collector(region, id string) *Collector {
	i, ok := slices.BinarySearchFunc(s.Collectors, Key{region, id}, func(c *Collector, k Key) int {
		if x := cmp.Compare(c.Key.Region, k.Region); x != 0 {
			return x
		}
		return cmp.Compare(c.Key.ID, k.ID)
	})
	if !ok {
		return nil
	}
	return s.Collectors[i]
}

// Router returns the registered router id, or nil.
func (s *Snapshot) Router(id string) *Router {
	i, ok := slices.BinarySearchFunc(s.Routers, id, func(r *Router, id string) int { return cmp.Compare(r.ID, id) })
	if !ok {
		return nil
	}
	return s.Routers[i]
}

// compareKeys orders collectors by region, then id.
func compareKeys(a, b Key) int {
	if c := cmp.Compare(a.Region, b.Region); c != 0 {
		return c
	}
	return cmp.Compare(a.ID, b.ID)
}

// updateOrderLocked brings order up to date with the collectors: a full sort when it was
// never built or more than an eighth of the fleet joined or left; otherwise the ones gone
// are dropped and the few that joined, sorted, are merged in one pass.
func (v *View) updateOrderLocked() {
	switch {
	case v.order != nil && len(v.joined) == 0 && v.left == 0:
		return
	case v.order == nil || (len(v.joined)+v.left)*8 > len(v.order):
		v.order = make([]Key, 0, len(v.collectors))
		for k := range v.collectors {
			v.order = append(v.order, k)
		}
		slices.SortFunc(v.order, compareKeys)
	default:
		kept := v.order[:0]
		for _, k := range v.order {
			if _, ok := v.collectors[k]; ok {
				kept = append(kept, k)
			}
		}
		slices.SortFunc(v.joined, compareKeys)
		merged := make([]Key, 0, len(v.collectors))
		i := 0
		for j, k := range v.joined {
			if _, ok := v.collectors[k]; !ok || (j > 0 && v.joined[j-1] == k) {
				continue // joined and left again, or listed twice
			}
			for i < len(kept) && compareKeys(kept[i], k) < 0 {
				merged = append(merged, kept[i])
				i++
			}
			if i < len(kept) && kept[i] == k {
				continue // left and joined again: still in place
			}
			merged = append(merged, k)
		}
		v.order = append(merged, kept[i:]...)
	}
	v.joined, v.left = v.joined[:0], 0
}
