package loadreport

import (
	"errors"
	"fmt"

	"github.com/prometheus/client_golang/prometheus"
)

// Failure stages, the values of the stage label of otelfleet_loadreport_failures_total.
const (
	stageSource   = "source"   // the Source returned an error
	stageValidate = "validate" // the report failed events.LoadReport.Validate
	stagePublish  = "publish"  // the NATS publish failed
)

// metrics are shared by every Publisher of a process that uses the same Registerer.
type metrics struct {
	published prometheus.Counter
	failures  *prometheus.CounterVec
}

func newMetrics(reg prometheus.Registerer) (*metrics, error) {
	m := &metrics{
		published: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "otelfleet_loadreport_published_total",
			Help: "Load reports published on <root>.load.<region>.<collector>.",
		}),
		failures: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "otelfleet_loadreport_failures_total",
			Help: "Load report ticks that published nothing, by stage: source, validate or publish.",
		}, []string{"stage"}),
	}
	for _, s := range []string{stageSource, stageValidate, stagePublish} {
		m.failures.WithLabelValues(s)
	}
	if reg == nil {
		return m, nil
	}
	var err1, err2 error
	m.published, err1 = register(reg, m.published)
	m.failures, err2 = register(reg, m.failures)
	return m, errors.Join(err1, err2)
}

// register registers c on reg, or returns the collector already registered under the
// same descriptor, so that several Publishers in one process share their metrics.
func register[C prometheus.Collector](reg prometheus.Registerer, c C) (C, error) {
	err := reg.Register(c)
	if err == nil {
		return c, nil
	}
	var are prometheus.AlreadyRegisteredError
	if errors.As(err, &are) {
		if existing, ok := are.ExistingCollector.(C); ok {
			return existing, nil
		}
	}
	return c, fmt.Errorf("loadreport: register metrics: %w", err)
}
