package opampsvc

import (
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/promauto"

	"github.com/otelfleet/otelfleet/pkg/events"
)

// metrics are the OpAMP service's otelfleet_opamp_* series.
type metrics struct {
	held        prometheus.Gauge
	messages    *prometheus.CounterVec
	refused     *prometheus.CounterVec
	released    *prometheus.CounterVec
	writes      *prometheus.CounterVec
	pushes      prometheus.Counter
	ownMetrics  *prometheus.CounterVec
	loadReports prometheus.Counter
}

// newMetrics registers the series on reg (nil: a registry of their own); byHealth counts
// the agents held by health at scrape time.
func newMetrics(reg prometheus.Registerer, byHealth func() map[events.HealthStatus]int) *metrics {
	if reg == nil {
		reg = prometheus.NewRegistry()
	}
	f := promauto.With(reg)
	reg.MustRegister(healthCollector{desc: prometheus.NewDesc("otelfleet_opamp_agents_health",
		"OpAMP agents held by this replica by the health of their stored registration (healthy, degraded, unhealthy).",
		[]string{"health"}, nil), count: byHealth})
	m := &metrics{
		held: f.NewGauge(prometheus.GaugeOpts{
			Name: "otelfleet_opamp_agents",
			Help: "OpAMP agents held (connected and refreshed) by this replica.",
		}),
		messages: f.NewCounterVec(prometheus.CounterOpts{
			Name: "otelfleet_opamp_messages_total",
			Help: "AgentToServer messages accepted for handling, by transport.",
		}, []string{"transport"}),
		refused: f.NewCounterVec(prometheus.CounterOpts{
			Name: "otelfleet_opamp_refused_total",
			Help: "Refused agent messages, connections and bucket values by reason: bad_uid, too_large, too_many_connections, invalid, undecodable, internal, bad_desired.",
		}, []string{"reason"}),
		released: f.NewCounterVec(prometheus.CounterOpts{
			Name: "otelfleet_opamp_released_total",
			Help: "Agents this replica stopped holding, by reason: closed, silent, taken_over, disconnected.",
		}, []string{"reason"}),
		writes: f.NewCounterVec(prometheus.CounterOpts{
			Name: "otelfleet_opamp_state_writes_total",
			Help: "Agent state writes (with their registration) by cause: change, refresh.",
		}, []string{"cause"}),
		pushes: f.NewCounter(prometheus.CounterOpts{
			Name: "otelfleet_opamp_remote_config_pushes_total",
			Help: "Remote configs sent to agents.",
		}),
		ownMetrics: f.NewCounterVec(prometheus.CounterOpts{
			Name: "otelfleet_opamp_own_metrics_total",
			Help: "Own-metrics posts by result: accepted, unauthorized, invalid, unknown_agent (no usable state of the agent stored), unavailable (the agents bucket or NATS failed), method.",
		}, []string{"result"}),
		loadReports: f.NewCounter(prometheus.CounterOpts{
			Name: "otelfleet_opamp_load_reports_total",
			Help: "Load reports published from agents' own metrics.",
		}),
	}
	// Exported from the start, so rate() and increase() (and the dashboards) see the
	// first event of each kind.
	for _, reason := range []string{"bad_uid", "too_large", "invalid", "undecodable", "internal", "bad_desired"} {
		m.refused.WithLabelValues(reason)
	}
	for _, tr := range []string{TransportWebSocket, TransportHTTP} {
		m.messages.WithLabelValues(tr)
	}
	for _, reason := range []string{"closed", "silent", "taken_over", "disconnected"} {
		m.released.WithLabelValues(reason)
	}
	for _, cause := range []string{"change", "refresh"} {
		m.writes.WithLabelValues(cause)
	}
	for _, result := range []string{"accepted", "unauthorized", "invalid", "unknown_agent", "method"} {
		m.ownMetrics.WithLabelValues(result)
	}
	return m
}

// healthCollector reads otelfleet_opamp_agents_health when scraped.
type healthCollector struct {
	desc  *prometheus.Desc
	count func() map[events.HealthStatus]int
}

func (c healthCollector) Describe(ch chan<- *prometheus.Desc) { ch <- c.desc }

func (c healthCollector) Collect(ch chan<- prometheus.Metric) {
	for h, n := range c.count() {
		ch <- prometheus.MustNewConstMetric(c.desc, prometheus.GaugeValue, float64(n), string(h))
	}
}
