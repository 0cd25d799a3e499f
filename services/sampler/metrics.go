package samplersvc

import (
	"errors"

	"github.com/prometheus/client_golang/prometheus"
)

// register registers cs on reg (nil: none), reusing collectors already registered by
// another sampler in the same process.
func register[T prometheus.Collector](reg prometheus.Registerer, c T) T {
	if reg == nil {
		return c
	}
	if err := reg.Register(c); err != nil {
		var are prometheus.AlreadyRegisteredError
		if errors.As(err, &are) {
			if existing, ok := are.ExistingCollector.(T); ok {
				return existing
			}
		}
	}
	return c
}

// apiMetrics count the Jaeger API's answers.
type apiMetrics struct {
	ok, bad, unavailable prometheus.Counter
}

func newAPIMetrics(reg prometheus.Registerer) *apiMetrics {
	v := register(reg, prometheus.NewCounterVec(prometheus.CounterOpts{
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

func newMetrics(reg prometheus.Registerer) *metrics {
	return &metrics{
		api: newAPIMetrics(reg),
		leader: register(reg, prometheus.NewGauge(prometheus.GaugeOpts{
			Name: "otelfleet_sampler_leader", Help: "1 while this replica leads (computes and stores decisions).",
		})),
		decisions: register(reg, prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "otelfleet_sampler_decisions_total",
			Help: "Decisions this replica computed as leader, by result: written, stale (a newer term's decision is stored), failed.",
		}, []string{"result"})),
		duration: register(reg, prometheus.NewHistogram(prometheus.HistogramOpts{
			Name: "otelfleet_sampler_decision_duration_seconds", Help: "Time to compute one decision (math only).",
			Buckets: prometheus.ExponentialBuckets(0.0001, 4, 10),
		})),
		degraded: register(reg, prometheus.NewGauge(prometheus.GaugeOpts{
			Name: "otelfleet_sampler_degraded", Help: "1 while the decision served says the fleet is degraded.",
		})),
		globalRate: register(reg, prometheus.NewGauge(prometheus.GaugeOpts{
			Name: "otelfleet_sampler_global_rate", Help: "Fraction of the fleet's spans kept by the decision served.",
		})),
		collectors: register(reg, prometheus.NewGauge(prometheus.GaugeOpts{
			Name: "otelfleet_sampler_live_collectors", Help: "Collectors whose load reports the leader's last decision used.",
		})),
		reports: register(reg, prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "otelfleet_sampler_load_reports_total", Help: "Load reports consumed, by result: ok, invalid, collector_limit (a new collector beyond MaxTrackedCollectors).",
		}, []string{"result"})),
		served: register(reg, prometheus.NewGauge(prometheus.GaugeOpts{
			Name: "otelfleet_sampler_decision_version", Help: "Version of the decision this replica serves.",
		})),
		invalid: register(reg, prometheus.NewCounter(prometheus.CounterOpts{
			Name: "otelfleet_sampler_invalid_decisions_total", Help: "Stored decision values that failed to decode and were not served.",
		})),
		bytes: register(reg, prometheus.NewGauge(prometheus.GaugeOpts{
			Name: "otelfleet_sampler_decision_bytes", Help: "Size of the last decision this replica stored, in bytes.",
		})),
		transitions: register(reg, prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "otelfleet_sampler_degradation_transitions_total", Help: "Degradation transitions decided by this replica: degraded, recovered.",
		}, []string{"to"})),
	}
}
