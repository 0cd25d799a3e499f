package registrysvc

import (
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/promauto"

	"github.com/otelfleet/otelfleet/pkg/events"
)

// metrics are the registry service's otelfleet_registry_* series.
type metrics struct {
	instances   *prometheus.GaugeVec
	expirations *prometheus.CounterVec
	events      *prometheus.CounterVec
	invalid     prometheus.Counter
	keys        prometheus.Gauge
}

func newMetrics(reg prometheus.Registerer) *metrics {
	if reg == nil {
		reg = prometheus.NewRegistry()
	}
	f := promauto.With(reg)
	m := &metrics{
		instances: f.NewGaugeVec(prometheus.GaugeOpts{
			Name: "otelfleet_registry_instances",
			Help: "Registered instances by kind (collector, service), region and health.",
		}, []string{"kind", "region", "health"}),
		expirations: f.NewCounterVec(prometheus.CounterOpts{
			Name: "otelfleet_registry_expirations_total",
			Help: "Registrations that expired (stopped heart-beating), as seen by this replica.",
		}, []string{"kind"}),
		events: f.NewCounterVec(prometheus.CounterOpts{
			Name: "otelfleet_registry_events_total",
			Help: "Lifecycle events by type and result: published (stored), duplicate (another replica stored it first), failed.",
		}, []string{"event", "result"}),
		invalid: f.NewCounter(prometheus.CounterOpts{
			Name: "otelfleet_registry_invalid_values_total",
			Help: "Registry bucket values that failed to decode or validate (ignored).",
		}),
		keys: f.NewGauge(prometheus.GaugeOpts{
			Name: "otelfleet_registry_keys",
			Help: "Live registrations known to this replica.",
		}),
	}
	// Exported from the start, so increase() sees the first expirations.
	for _, kind := range []string{events.KindCollector, events.KindService} {
		m.expirations.WithLabelValues(kind)
	}
	return m
}

func (m *metrics) add(r events.Registration, delta float64) {
	m.instances.WithLabelValues(r.InstanceKind, r.Region, string(r.Health.Status)).Add(delta)
	m.keys.Add(delta)
}
