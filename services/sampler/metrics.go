package samplersvc

import (
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/otelfleet/otelfleet/pkg/promreg"
)

// apiMetrics count the Jaeger API's answers.
type apiMetrics struct {
	ok, bad, unavailable prometheus.Counter
}

func newAPIMetrics(r *promreg.Registrar) *apiMetrics {
	v := promreg.Add(r, prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "otelfleet_sampler_http_requests_total",
		Help: "Jaeger remote-sampling API requests by result: ok, bad_request (400/405), unavailable (503).",
	}, []string{"result"}))
	return &apiMetrics{ok: v.WithLabelValues("ok"), bad: v.WithLabelValues("bad_request"), unavailable: v.WithLabelValues("unavailable")}
}

// metrics are the service's own.
type metrics struct {
	api         *apiMetrics
	leader      prometheus.Gauge
	decisions   *prometheus.CounterVec
	duration    prometheus.Histogram
	degraded    prometheus.Gauge
	globalRate  prometheus.Gauge
	collectors  prometheus.Gauge
	reports     *prometheus.CounterVec
	served      prometheus.Gauge
	invalid     prometheus.Counter
	bytes       prometheus.Gauge
	transitions *prometheus.CounterVec
}

func newMetrics(reg prometheus.Registerer) (*metrics, error) {
	r := &promreg.Registrar{Reg: reg}
	m := &metrics{
		api: newAPIMetrics(r),
		leader: promreg.Add(r, prometheus.NewGauge(prometheus.GaugeOpts{
			Name: "otelfleet_sampler_leader", Help: "1 while this replica leads (computes and stores decisions).",
		})),
		decisions: promreg.Add(r, prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "otelfleet_sampler_decisions_total",
			Help: "Decisions this replica computed as leader, by result: written, stale (a newer term's decision is stored), failed.",
		}, []string{"result"})),
		duration: promreg.Add(r, prometheus.NewHistogram(prometheus.HistogramOpts{
			Name: "otelfleet_sampler_decision_duration_seconds", Help: "Time to compute one decision (math only).",
			Buckets: prometheus.ExponentialBuckets(0.0001, 4, 10),
		})),
		degraded: promreg.Add(r, prometheus.NewGauge(prometheus.GaugeOpts{
			Name: "otelfleet_sampler_degraded", Help: "1 while the decision served says the fleet is degraded.",
		})),
		globalRate: promreg.Add(r, prometheus.NewGauge(prometheus.GaugeOpts{
			Name: "otelfleet_sampler_global_rate", Help: "Fraction of the fleet's spans kept by the decision served.",
		})),
		collectors: promreg.Add(r, prometheus.NewGauge(prometheus.GaugeOpts{
			Name: "otelfleet_sampler_live_collectors", Help: "Collectors whose load reports the leader's last decision used.",
		})),
		reports: promreg.Add(r, prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "otelfleet_sampler_load_reports_total", Help: "Load reports consumed, by result: ok, invalid, unregistered (held, uncounted, until the collector registers), unregistered_limit (a new unregistered collector beyond MaxWaitingCollectors), collector_limit (a new registered collector beyond MaxTrackedCollectors).",
		}, []string{"result"})),
		served: promreg.Add(r, prometheus.NewGauge(prometheus.GaugeOpts{
			Name: "otelfleet_sampler_decision_version", Help: "Version of the decision this replica serves.",
		})),
		invalid: promreg.Add(r, prometheus.NewCounter(prometheus.CounterOpts{
			Name: "otelfleet_sampler_invalid_decisions_total", Help: "Stored decision values that failed to decode and were not served.",
		})),
		bytes: promreg.Add(r, prometheus.NewGauge(prometheus.GaugeOpts{
			Name: "otelfleet_sampler_decision_bytes", Help: "Size of the last decision this replica stored, in bytes.",
		})),
		transitions: promreg.Add(r, prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "otelfleet_sampler_degradation_transitions_total", Help: "Degradation transitions decided by this replica: degraded, recovered.",
		}, []string{"to"})),
	}
	// Exported from the start, so rate() and increase() see the first failure.
	for _, res := range []string{"written", "stale", "failed"} {
		m.decisions.WithLabelValues(res)
	}
	for _, to := range []string{"degraded", "recovered"} {
		m.transitions.WithLabelValues(to)
	}
	return m, r.Err()
}

// decisionAge registers otelfleet_sampler_decision_age_seconds (read by age at scrape
// time) and otelfleet_sampler_interval_seconds, so that an alert can say "the decision
// is older than three intervals" whatever --sampling-interval is.
func (m *metrics) decisionAge(reg prometheus.Registerer, age func() float64, interval time.Duration) error {
	r := &promreg.Registrar{Reg: reg}
	promreg.Add(r, prometheus.NewGaugeFunc(prometheus.GaugeOpts{
		Name: "otelfleet_sampler_decision_age_seconds",
		Help: "Age of the stored sampling decision this replica serves (now minus the leader's computation time; since the replica's start while no decision is stored).",
	}, age))
	promreg.Add(r, prometheus.NewGauge(prometheus.GaugeOpts{
		Name: "otelfleet_sampler_interval_seconds", Help: "How often the leader computes a decision (--sampling-interval).",
	})).Set(interval.Seconds())
	return r.Err()
}
