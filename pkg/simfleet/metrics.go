package simfleet

import (
	"errors"
	"fmt"

	"github.com/prometheus/client_golang/prometheus"
)

type metrics struct {
	reports    prometheus.Counter
	failures   prometheus.Counter
	collectors *prometheus.GaugeVec
}

func newMetrics(reg prometheus.Registerer) (*metrics, error) {
	m := &metrics{
		reports: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "otelfleet_simfleet_reports_total",
			Help: "Simulated load reports published.",
		}),
		failures: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "otelfleet_simfleet_publish_failures_total",
			Help: "Simulated load reports that could not be published.",
		}),
		collectors: prometheus.NewGaugeVec(prometheus.GaugeOpts{
			Name: "otelfleet_simfleet_collectors",
			Help: "Simulated collectors by health in the latest round of reports.",
		}, []string{"health"}),
	}
	if reg == nil {
		return m, nil
	}
	for _, c := range []prometheus.Collector{m.reports, m.failures, m.collectors} {
		if err := reg.Register(c); err != nil {
			var are prometheus.AlreadyRegisteredError
			if errors.As(err, &are) {
				return nil, fmt.Errorf("simfleet: one simulator per metrics registry: %w", err)
			}
			return nil, fmt.Errorf("simfleet: register metrics: %w", err)
		}
	}
	return m, nil
}
