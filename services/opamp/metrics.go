package opampsvc

import (
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/promauto"
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

func newMetrics(reg prometheus.Registerer) *metrics {
	if reg == nil {
		reg = prometheus.NewRegistry()
	}
	f := promauto.With(reg)
	return &metrics{
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
}
