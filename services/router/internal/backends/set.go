package backends

import (
	"context"
	"log/slog"
	"slices"
	"strings"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/promauto"

	"github.com/otelfleet/otelfleet/pkg/events"
	"github.com/otelfleet/otelfleet/pkg/fleetview"
)

// DefaultReportTTL is Config.ReportTTL's default.
const DefaultReportTTL = 10 * time.Second

// DefaultUnhealthyReports is Config.UnhealthyReports's default.
const DefaultUnhealthyReports = 3

// readingsEvery is how often onChange may be called when only readings changed.
const readingsEvery = time.Second

// Set is the live backend set: the fleet view's collectors that have an address,
// flagged unhealthy by their registration or their latest load reports, with their load
// readings.
type Set struct {
	cfg      Config
	log      *slog.Logger
	onChange func([]Backend)
	now      func() time.Time

	rejected *prometheus.CounterVec
	count    prometheus.Gauge
	sick     prometheus.Gauge
}

// New returns a set that calls onChange (from one goroutine, in order) with the full,
// Key-ordered backend list whenever a registration joins, leaves or changes (address,
// health, capacity), and at most every second for what reports change (readings, and
// health flagged by consecutive unhealthy reports). Nothing runs until Run.
func New(cfg Config, onChange func([]Backend)) *Set {
	if cfg.ReportTTL <= 0 {
		cfg.ReportTTL = DefaultReportTTL
	}
	if cfg.UnhealthyReports <= 0 {
		cfg.UnhealthyReports = DefaultUnhealthyReports
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
		cfg: cfg, log: log, onChange: onChange, now: time.Now,
		rejected: f.NewCounterVec(prometheus.CounterOpts{
			Name: "otelfleet_router_backends_rejected_total",
			Help: "Registry values and load reports the router ignored, by what they were (registration, report) and why.",
		}, []string{"what", "reason"}),
		count: f.NewGauge(prometheus.GaugeOpts{
			Name: "otelfleet_router_backends",
			Help: "Backends the router can send to (registered collectors with an address, not unhealthy).",
		}),
		sick: f.NewGauge(prometheus.GaugeOpts{
			Name: "otelfleet_router_backends_unhealthy",
			Help: "Registered collectors with an address that report unhealthy: the router's last resort.",
		}),
	}
}

// Count makes the fleet view configured by vc count what it rejects in the set's
// metrics (otelfleet_router_backends_rejected_total).
func (s *Set) Count(vc *fleetview.Config) {
	vc.Registry = func(op string) {
		if op == "rejected" {
			s.rejected.WithLabelValues("registration", "malformed").Inc()
		}
	}
	vc.Reports = func(o fleetview.Outcome, _ string, _ []byte, err error) {
		switch {
		case err != nil:
			s.rejected.WithLabelValues("report", "malformed").Inc()
		case o == fleetview.Waiting || o == fleetview.WaitingLimit:
			s.rejected.WithLabelValues("report", "unregistered").Inc()
		}
	}
}

// Run builds the backend list from view until ctx ends. ready is closed after the
// registry's first replay (and onChange has been called with the set it holds).
func (s *Set) Run(ctx context.Context, view *fleetview.View, ready chan<- struct{}) error {
	changed, stop := view.Subscribe()
	defer stop()
	select {
	case <-view.Loaded():
	case <-ctx.Done():
		return nil
	}
	snap := view.Snapshot()
	last, members := s.publish(s.backends(snap, s.now())), snap.Members
	if ready != nil {
		close(ready)
	}
	tick := time.NewTicker(readingsEvery)
	defer tick.Stop()
	for {
		select {
		case <-ctx.Done():
			return nil
		case <-changed:
			// Reports change the view many times a second: only a change of membership
			// (or of a registration) is acted on at once, readings at the next tick.
			if view.Members() == members {
				continue
			}
		case <-tick.C:
		}
		snap := view.Snapshot()
		next := s.backends(snap, s.now())
		members = snap.Members
		if !slices.Equal(last, next) {
			last = s.publish(next)
		}
	}
}

// publish calls onChange with list and returns it.
func (s *Set) publish(list []Backend) []Backend {
	sick := 0
	for _, b := range list {
		if b.Unhealthy {
			sick++
		}
	}
	s.count.Set(float64(len(list) - sick))
	s.sick.Set(float64(sick))
	if s.onChange != nil {
		s.onChange(slices.Clone(list))
	}
	return list
}

// backends computes the Key-ordered list of targets of snap at now: readings received
// more than ReportTTL ago are ignored.
func (s *Set) backends(snap *fleetview.Snapshot, now time.Time) []Backend {
	out := make([]Backend, 0, len(snap.Collectors))
	for _, c := range snap.Collectors {
		r := &c.Registration
		if r.Address == "" {
			continue
		}
		key, err := events.CollectorKey(c.Key.Region, c.Key.ID)
		if err != nil {
			continue
		}
		b := Backend{Key: key, ID: r.ID, Region: r.Region, Addr: r.Address, Capacity: r.CapacityQPS,
			Degraded: r.Health.Status == events.HealthDegraded, Unhealthy: r.Health.Status == events.HealthUnhealthy}
		if rd := c.Report; rd != nil && now.Sub(c.ReceivedAt) <= s.cfg.ReportTTL {
			b.Unhealthy = b.Unhealthy || c.UnhealthyReports >= s.cfg.UnhealthyReports
			if rd.Capacity > 0 {
				b.Capacity = rd.Capacity
			}
			b.Load = utilisation(rd, b.Capacity)
			b.LatencyMS = rd.AvgLatencyMS
		}
		out = append(out, b)
	}
	slices.SortFunc(out, func(a, b Backend) int { return strings.Compare(a.Key, b.Key) })
	return out
}

// utilisation is a report's load in [0, 1]: its span rate over its capacity, or its CPU
// share when the capacity is unknown.
func utilisation(r *events.LoadReport, capacity float64) float64 {
	u := r.CPU
	if capacity > 0 {
		u = r.QPS / capacity
	}
	return min(max(u, 0), 1)
}
