package loadreport

import (
	"github.com/prometheus/client_golang/prometheus"

	"github.com/otelfleet/otelfleet/pkg/promreg"
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
	r := &promreg.Registrar{Reg: reg}
	m.published = promreg.Add(r, m.published)
	m.failures = promreg.Add(r, m.failures)
	return m, r.Err()
}
