package registration

import (
	"errors"

	"github.com/prometheus/client_golang/prometheus"
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
	if reg == nil {
		return m, nil
	}
	for _, c := range []*prometheus.Counter{&m.heartbeats, &m.registrations, &m.errors} {
		if err := reg.Register(*c); err != nil {
			var are prometheus.AlreadyRegisteredError
			if !errors.As(err, &are) {
				return nil, err
			}
			*c = are.ExistingCollector.(prometheus.Counter)
		}
	}
	return m, nil
}
