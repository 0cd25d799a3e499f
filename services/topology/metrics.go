package topologysvc

import (
	"github.com/prometheus/client_golang/prometheus"
)

// Reasons of otelfleet_topology_load_reports_rejected_total.
const (
	// RejectJSON: the payload is not JSON, or a field has the wrong JSON type or an
	// out-of-range number (1e400).
	RejectJSON = "json"
	// RejectVersion: the schema version "v" is missing or newer than this build reads.
	RejectVersion = "version"
	// RejectInvalid: a value fails validation (negative, NaN, above a limit, a bad
	// region or collector token, a missing timestamp).
	RejectInvalid = "invalid"
	// RejectSubject: the subject is not otlp.load.<region>.<collector> with valid
	// tokens, or its tokens differ from the payload's region and collector.
	RejectSubject = "subject"
	// RejectOverflow: the collector is not registered and the bound on waiting
	// unregistered reporters is reached.
	RejectOverflow = "unregistered_overflow"
	// RejectUnregistered: a report from an unregistered collector waited the whole
	// grace period without a registration arriving (counted when it is dropped).
	RejectUnregistered = "unregistered_expired"
)

// metrics are the service's Prometheus metrics, all prefixed otelfleet_topology_.
type metrics struct {
	collectors    *prometheus.GaugeVec
	unregistered  prometheus.Gauge
	buildSeconds  prometheus.Histogram
	reports       *prometheus.CounterVec
	rejected      *prometheus.CounterVec
	registrations *prometheus.CounterVec
	snapshots     *prometheus.CounterVec
	// routerStatuses counts router statuses by result: ok, invalid, dropped.
	routerStatuses *prometheus.CounterVec

	// shown remembers the collectors{region,status} series set by the last build so
	// that the next build deletes those that no longer exist.
	shown map[[2]string]struct{}
}

func newMetrics(reg prometheus.Registerer) (*metrics, error) {
	m := &metrics{
		collectors: prometheus.NewGaugeVec(prometheus.GaugeOpts{
			Name: "otelfleet_topology_collectors", Help: "Registered collectors by region and status (healthy, degraded, unhealthy, stale).",
		}, []string{"region", "status"}),
		unregistered: prometheus.NewGauge(prometheus.GaugeOpts{
			Name: "otelfleet_topology_unregistered_reporters", Help: "Collectors that report load but are not registered, kept unshown for the grace period.",
		}),
		buildSeconds: prometheus.NewHistogram(prometheus.HistogramOpts{
			Name: "otelfleet_topology_snapshot_build_seconds", Help: "Time to rebuild the topology view from the in-memory state.",
			Buckets: []float64{.0001, .0005, .001, .0025, .005, .01, .025, .05, .1, .25, .5, 1},
		}),
		reports: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "otelfleet_topology_load_reports_total", Help: "Valid load reports received, by result: accepted (registered collector), unregistered (kept for the grace period), outdated (older than one already seen).",
		}, []string{"result"}),
		rejected: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "otelfleet_topology_load_reports_rejected_total", Help: "Load reports dropped, by reason: json, version, invalid, subject, unregistered_overflow, unregistered_expired.",
		}, []string{"reason"}),
		registrations: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "otelfleet_topology_registry_entries_total", Help: "Registry bucket entries seen, by op: put, delete, expire, rejected (malformed value or key).",
		}, []string{"op"}),
		snapshots: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "otelfleet_topology_snapshots_published_total", Help: "Topology snapshots published by this replica as leader, by result: ok or error.",
		}, []string{"result"}),
		routerStatuses: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "otelfleet_topology_router_statuses_total", Help: "Router statuses received, by result: ok, invalid (does not decode or names another router than its subject), dropped (unregistered router, or over the routers limit).",
		}, []string{"result"}),
		shown: map[[2]string]struct{}{},
	}
	for _, c := range []prometheus.Collector{m.collectors, m.unregistered, m.buildSeconds, m.reports, m.rejected, m.registrations, m.snapshots, m.routerStatuses} {
		if err := reg.Register(c); err != nil {
			return nil, err
		}
	}
	// Pre-create the label values so that dashboards see zeros instead of no series.
	for _, r := range []string{RejectJSON, RejectVersion, RejectInvalid, RejectSubject, RejectOverflow, RejectUnregistered} {
		m.rejected.WithLabelValues(r)
	}
	for _, r := range []string{"accepted", "unregistered", "outdated"} {
		m.reports.WithLabelValues(r)
	}
	return m, nil
}

// observe updates the collectors gauge from a freshly built view. Called from the build
// loop only.
func (m *metrics) observe(v *view) {
	now := make(map[[2]string]struct{}, len(m.shown))
	for i := range v.regions {
		r := &v.regions[i]
		for _, st := range []struct {
			status string
			n      int
		}{{"healthy", r.Stats.Healthy}, {"degraded", r.Stats.Degraded}, {"unhealthy", r.Stats.Unhealthy}, {"stale", r.Stats.Stale}} {
			m.collectors.WithLabelValues(r.Region, st.status).Set(float64(st.n))
			now[[2]string{r.Region, st.status}] = struct{}{}
		}
	}
	for k := range m.shown {
		if _, ok := now[k]; !ok {
			m.collectors.DeleteLabelValues(k[0], k[1])
		}
	}
	m.shown = now
}
