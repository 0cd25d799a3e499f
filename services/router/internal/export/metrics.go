package export

import (
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/promauto"
)

// metrics are the exporter's per-backend series (label backend: the registration key).
type metrics struct {
	sent, failed, retried, rerouted, dropped *prometheus.CounterVec
	queueBytes, inFlight                     *prometheus.GaugeVec
	latency                                  *prometheus.HistogramVec
}

func newMetrics(reg prometheus.Registerer) *metrics {
	if reg == nil {
		reg = prometheus.NewRegistry()
	}
	f := promauto.With(reg)
	items := func(name, help string) *prometheus.CounterVec {
		return f.NewCounterVec(prometheus.CounterOpts{Name: "otelfleet_router_backend_" + name + "_items_total", Help: help}, []string{"backend"})
	}
	return &metrics{
		sent:     items("sent", "Items (spans, log records, data points) a backend accepted."),
		failed:   items("failed", "Items a backend refused for good (partial_success rejections, non-retryable errors), each counted once."),
		retried:  items("retried", "Items sent again to the same backend after a retryable failure, per retry."),
		rerouted: items("rerouted", "Items a backend handed back to the router for re-routing (retries exhausted, non-retryable error, or the backend left)."),
		dropped:  items("dropped", "Items lost because nothing could take them back (must stay 0)."),
		queueBytes: f.NewGaugeVec(prometheus.GaugeOpts{
			Name: "otelfleet_router_backend_queue_bytes", Help: "Bytes queued for a backend (batching and waiting to be sent).",
		}, []string{"backend"}),
		inFlight: f.NewGaugeVec(prometheus.GaugeOpts{
			Name: "otelfleet_router_backend_in_flight", Help: "Export calls in flight to a backend.",
		}, []string{"backend"}),
		latency: f.NewHistogramVec(prometheus.HistogramOpts{
			Name:    "otelfleet_router_backend_export_duration_seconds",
			Help:    "Duration of one export call to a backend, by outcome (ok, retryable, failed).",
			Buckets: []float64{.0005, .001, .0025, .005, .01, .025, .05, .1, .25, .5, 1, 2.5, 5},
		}, []string{"backend", "outcome"}),
	}
}

// targetMetrics are one backend's series.
type targetMetrics struct {
	sent, failed, retried, rerouted, dropped prometheus.Counter
	queueBytes, inFlight                     prometheus.Gauge
	latency                                  map[string]prometheus.Observer
	tracing                                  *tracing // nil: no spans (WithTracer)
}

func (m *metrics) forTarget(key string) targetMetrics {
	return targetMetrics{
		sent: m.sent.WithLabelValues(key), failed: m.failed.WithLabelValues(key),
		retried: m.retried.WithLabelValues(key), rerouted: m.rerouted.WithLabelValues(key),
		dropped: m.dropped.WithLabelValues(key), queueBytes: m.queueBytes.WithLabelValues(key),
		inFlight: m.inFlight.WithLabelValues(key),
		latency: map[string]prometheus.Observer{
			"ok": m.latency.WithLabelValues(key, "ok"), "retryable": m.latency.WithLabelValues(key, "retryable"),
			"failed": m.latency.WithLabelValues(key, "failed"),
		},
	}
}
