package registration

import (
	"github.com/prometheus/client_golang/prometheus"

	"github.com/otelfleet/otelfleet/pkg/promreg"
)

// metrics are the otelfleet_registration_* series of one client, labelled with its key.
type metrics struct {
	heartbeats    prometheus.Counter
	registrations prometheus.Counter
	errors        prometheus.Counter
}

func newMetrics(reg prometheus.Registerer, key string) (*metrics, error) {
	labels := prometheus.Labels{"key": key}
	m := &metrics{
		heartbeats:    prometheus.NewCounter(prometheus.CounterOpts{Name: "otelfleet_registration_heartbeats_total", Help: "Registry writes (registrations and heartbeats) that succeeded.", ConstLabels: labels}),
		registrations: prometheus.NewCounter(prometheus.CounterOpts{Name: "otelfleet_registration_registrations_total", Help: "Fresh registrations: the first one and each after the key had expired or been deleted.", ConstLabels: labels}),
		errors:        prometheus.NewCounter(prometheus.CounterOpts{Name: "otelfleet_registration_errors_total", Help: "Registry writes that failed and were retried.", ConstLabels: labels}),
	}
	r := &promreg.Registrar{Reg: reg}
	m.heartbeats = promreg.Add(r, m.heartbeats)
	m.registrations = promreg.Add(r, m.registrations)
	m.errors = promreg.Add(r, m.errors)
	return m, r.Err()
}
