package backends

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"maps"
	"slices"
	"sync"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/promauto"

	"github.com/otelfleet/otelfleet/pkg/events"
	"github.com/otelfleet/otelfleet/pkg/kvwatch"
	"github.com/otelfleet/otelfleet/pkg/loadreport"
)

// DefaultReportTTL is Config.ReportTTL's default.
const DefaultReportTTL = 10 * time.Second

// readingsEvery is how often onChange may be called when only readings changed.
const readingsEvery = time.Second

// reading is a collector's latest load report and when the server stored it.
type reading struct {
	r  events.LoadReport
	at time.Time
}

// Set is the live backend set: the registry's collectors that have an address and are
// not unhealthy (by their registration and by their latest load report), with their
// load readings.
type Set struct {
	nc       *nats.Conn
	js       jetstream.JetStream
	kv       jetstream.KeyValue
	cfg      Config
	log      *slog.Logger
	onChange func([]Backend)
	now      func() time.Time

	rejected *prometheus.CounterVec
	count    prometheus.Gauge

	mu       sync.Mutex
	regs     map[string]events.Registration // every valid collector registration
	readings map[string]reading

	changed chan struct{} // cap 1: regs or readings changed
}

// New returns a set that calls onChange (from one goroutine, in order) with the full,
// Key-ordered backend list whenever membership, an address, or health changes, and at
// most every second when only readings changed. Nothing runs until Run.
func New(nc *nats.Conn, js jetstream.JetStream, registry jetstream.KeyValue, cfg Config, onChange func([]Backend)) *Set {
	if cfg.NS == (events.Namespace{}) {
		cfg.NS = events.Default
	}
	if cfg.ReportTTL <= 0 {
		cfg.ReportTTL = DefaultReportTTL
	}
	log := cfg.Log
	if log == nil {
		log = slog.Default()
	}
	reg := cfg.Registerer
	if reg == nil {
		reg = prometheus.NewRegistry()
	}
	f := promauto.With(reg)
	return &Set{
		nc: nc, js: js, kv: registry, cfg: cfg, log: log, onChange: onChange, now: time.Now,
		rejected: f.NewCounterVec(prometheus.CounterOpts{
			Name: "otelfleet_router_backends_rejected_total",
			Help: "Registry values and load reports the router ignored, by what they were (registration, report) and why.",
		}, []string{"what", "reason"}),
		count: f.NewGauge(prometheus.GaugeOpts{
			Name: "otelfleet_router_backends",
			Help: "Backends the router can send to (registered collectors with an address, not unhealthy).",
		}),
		regs:     map[string]events.Registration{},
		readings: map[string]reading{},
		changed:  make(chan struct{}, 1),
	}
}

// Run watches until ctx ends. ready is closed after the first full replay of the registry
// (and onChange has been called with the set it holds). Load reports are followed from
// then on: a report of a collector not (yet) registered is ignored.
func (s *Set) Run(ctx context.Context, ready chan<- struct{}) error {
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	var wg sync.WaitGroup
	defer wg.Wait()
	replayed := make(chan struct{})
	wg.Add(1)
	go func() {
		defer wg.Done()
		s.watchRegistry(ctx, replayed)
	}()
	select {
	case <-replayed:
	case <-ctx.Done():
		return nil
	}
	wg.Add(1)
	go func() {
		defer wg.Done()
		loadreport.Follower{NC: s.nc, JS: s.js, NS: s.cfg.NS, Log: s.log}.Follow(ctx, s.ingest, nil)
	}()
	last := s.publish(nil, true)
	if ready != nil {
		close(ready)
	}
	tick := time.NewTicker(readingsEvery)
	defer tick.Stop()
	readingsPending := false
	for {
		select {
		case <-ctx.Done():
			return nil
		case <-s.changed:
			next := s.backends()
			switch {
			case !sameMembers(last, next):
				last = s.publish(next, false)
				readingsPending = false
			case !slices.Equal(last, next):
				readingsPending = true
			}
		case <-tick.C:
			if s.expireReadings() {
				next := s.backends()
				if !sameMembers(last, next) {
					last = s.publish(next, false)
					readingsPending = false
					continue
				}
				readingsPending = readingsPending || !slices.Equal(last, next)
			}
			if readingsPending {
				last = s.publish(nil, true)
				readingsPending = false
			}
		}
	}
}

// publish calls onChange with list (or the current list when fresh) and returns it.
func (s *Set) publish(list []Backend, fresh bool) []Backend {
	if fresh {
		list = s.backends()
	}
	s.count.Set(float64(len(list)))
	if s.onChange != nil {
		s.onChange(slices.Clone(list))
	}
	return list
}

// sameMembers reports whether a and b hold the same backends with the same addresses and
// health (readings aside).
func sameMembers(a, b []Backend) bool {
	return slices.EqualFunc(a, b, func(x, y Backend) bool {
		return x.Key == y.Key && x.Addr == y.Addr && x.Degraded == y.Degraded
	})
}

func (s *Set) signal() {
	select {
	case s.changed <- struct{}{}:
	default:
	}
}

// backends computes the Key-ordered list of targets.
func (s *Set) backends() []Backend {
	s.mu.Lock()
	defer s.mu.Unlock()
	out := make([]Backend, 0, len(s.regs))
	for _, key := range slices.Sorted(maps.Keys(s.regs)) {
		r := s.regs[key]
		if r.Address == "" || r.Health.Status == events.HealthUnhealthy {
			continue
		}
		b := Backend{Key: key, ID: r.ID, Region: r.Region, Addr: r.Address, Capacity: r.CapacityQPS,
			Degraded: r.Health.Status == events.HealthDegraded}
		if rd, ok := s.readings[key]; ok {
			if !rd.r.Healthy {
				continue
			}
			if rd.r.Capacity > 0 {
				b.Capacity = rd.r.Capacity
			}
			b.Load = utilisation(rd.r, b.Capacity)
			b.LatencyMS = rd.r.AvgLatencyMS
		}
		out = append(out, b)
	}
	return out
}

// utilisation is a report's load in [0, 1]: its span rate over its capacity, or its CPU
// share when the capacity is unknown.
func utilisation(r events.LoadReport, capacity float64) float64 {
	u := r.CPU
	if capacity > 0 {
		u = r.QPS / capacity
	}
	return min(max(u, 0), 1)
}

// expireReadings drops readings older than ReportTTL; it reports whether any went.
func (s *Set) expireReadings() bool {
	cutoff := s.now().Add(-s.cfg.ReportTTL)
	s.mu.Lock()
	defer s.mu.Unlock()
	n := len(s.readings)
	maps.DeleteFunc(s.readings, func(_ string, rd reading) bool { return rd.at.Before(cutoff) })
	return len(s.readings) != n
}

// watchRegistry follows collector.> in the registry; replayed is closed after the first
// replay.
func (s *Set) watchRegistry(ctx context.Context, replayed chan struct{}) {
	first := true
	kvwatch.Run(ctx, s.nc, s.kv, events.KindCollector+".>", func(e jetstream.KeyValueEntry) {
		if e == nil {
			if first {
				first = false
				close(replayed)
				return
			}
			s.resync(ctx)
			return
		}
		s.apply(e)
	}, func(err error) { s.log.Warn("registry watch failed, retrying", "err", err) })
}

// errKeyMismatch is returned for a registration stored under another collector's key.
var errKeyMismatch = errors.New("registration does not match its key")

// decode checks a registry value against its key.
func decode(key string, value []byte) (events.Registration, error) {
	r, err := events.DecodeRegistration(value)
	if err != nil {
		return r, err
	}
	if r.InstanceKind != events.KindCollector {
		return r, fmt.Errorf("%w: kind %q under %s", errKeyMismatch, r.InstanceKind, key)
	}
	want, err := r.Key()
	if err != nil {
		return r, err
	}
	if want != key {
		return r, fmt.Errorf("%w: the value is %s's, stored under %s", errKeyMismatch, want, key)
	}
	return r, nil
}

// apply records one registry entry.
func (s *Set) apply(e jetstream.KeyValueEntry) {
	key := e.Key()
	s.mu.Lock()
	defer s.mu.Unlock()
	if e.Operation() != jetstream.KeyValuePut {
		if _, ok := s.regs[key]; ok {
			delete(s.regs, key)
			delete(s.readings, key)
			s.signal()
		}
		return
	}
	r, err := decode(key, e.Value())
	if err != nil {
		reason := "malformed"
		if errors.Is(err, errKeyMismatch) {
			reason = "key_mismatch"
		}
		s.rejected.WithLabelValues("registration", reason).Inc()
		s.log.Warn("ignoring registry value that is not a valid collector registration", "key", key, "revision", e.Revision(), "err", err)
		if _, ok := s.regs[key]; ok { // what was there is no longer valid
			delete(s.regs, key)
			delete(s.readings, key)
			s.signal()
		}
		return
	}
	prev, had := s.regs[key]
	s.regs[key] = r
	if !had || prev.Address != r.Address || prev.Health.Status != r.Health.Status || prev.CapacityQPS != r.CapacityQPS {
		s.signal()
	}
}

// resync forgets collectors whose keys are no longer in the registry (after a re-created
// watch: a key that expired while the watch was down has no marker left to deliver).
func (s *Set) resync(ctx context.Context) {
	ctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	lister, err := s.kv.ListKeysFiltered(ctx, events.KindCollector+".>")
	if err != nil {
		s.log.Warn("registry resync: listing keys failed; expired collectors may linger until their next change", "err", err)
		return
	}
	defer func() { _ = lister.Stop() }()
	keep := map[string]bool{}
	for key := range lister.Keys() {
		keep[key] = true
	}
	if ctx.Err() != nil {
		s.log.Warn("registry resync: listing keys timed out")
		return
	}
	s.mu.Lock()
	n := len(s.regs)
	maps.DeleteFunc(s.regs, func(k string, _ events.Registration) bool { return !keep[k] })
	maps.DeleteFunc(s.readings, func(k string, _ reading) bool { return !keep[k] })
	gone := n - len(s.regs)
	s.mu.Unlock()
	if gone > 0 {
		s.log.Info("forgot collectors no longer in the registry after a resync", "collectors", gone)
		s.signal()
	}
}

// ingest records one load report.
func (s *Set) ingest(msg jetstream.Msg) {
	r, err := loadreport.DecodeJetStream(msg)
	if err != nil {
		s.rejected.WithLabelValues("report", "malformed").Inc()
		s.log.Debug("ignoring malformed load report", "subject", msg.Subject(), "err", err)
		return
	}
	at := s.now()
	if md, err := msg.Metadata(); err == nil && !md.Timestamp.IsZero() {
		at = md.Timestamp
	}
	if at.Before(s.now().Add(-s.cfg.ReportTTL)) {
		return // a stored report from long ago (replayed at start)
	}
	key, err := events.CollectorKey(r.Region, r.Collector)
	if err != nil {
		s.rejected.WithLabelValues("report", "malformed").Inc()
		return
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if _, ok := s.regs[key]; !ok {
		s.rejected.WithLabelValues("report", "unregistered").Inc()
		return
	}
	s.readings[key] = reading{r: r, at: at}
	s.signal()
}
