package routersvc

import (
	"sync"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/otelfleet/otelfleet/pkg/promreg"
	"github.com/otelfleet/otelfleet/services/router/internal/otlpwire"
)

// Request outcomes (label outcome of otelfleet_router_requests_total).
const (
	outcomeOK          = "ok"
	outcomePartial     = "partial"
	outcomeBusy        = "busy"
	outcomeMalformed   = "malformed"
	outcomeTooLarge    = "too_large"
	outcomeUnsupported = "unsupported"
	// outcomeUnauthenticated: no or a wrong bearer token.
	outcomeUnauthenticated = "unauthenticated"
)

// outcome is the refusal's outcome label: the one mapping from refusals to outcomes,
// for both protocols.
func (r *refusal) outcome() string {
	switch r.kind {
	case refuseTooLarge:
		return outcomeTooLarge
	case refuseBusy:
		return outcomeBusy
	case refuseMediaType, refuseMethod:
		return outcomeUnsupported
	case refuseUnauthenticated:
		return outcomeUnauthenticated
	}
	return outcomeMalformed
}

// maxMetricServices bounds the service label's values; later services count as "other".
const maxMetricServices = 1000

// otherService labels the services beyond maxMetricServices.
const otherService = "other"

// metrics are the otelfleet_router_* series.
type metrics struct {
	requests                                *prometheus.CounterVec
	received, kept, sampledOut, rateLimited *prometheus.CounterVec
	rerouted, dropped, duplicates           prometheus.Counter
	rebuilds                                prometheus.Counter
	lastResort                              prometheus.Counter
	onLastResort                            prometheus.Gauge
	rebuildSeconds                          prometheus.Histogram
	ackWait                                 prometheus.Histogram
	ackFailed                               prometheus.Counter

	mu       sync.RWMutex
	services map[svcKey]*svcCounters
}

type svcKey struct{ signal, service string }

// svcCounters are one service's counters of one signal.
type svcCounters struct {
	received, kept, sampledOut, rateLimited prometheus.Counter
}

func newMetrics(reg prometheus.Registerer, mem *memory) (*metrics, error) {
	r := &promreg.Registrar{Reg: reg}
	perService := func(name, help string) *prometheus.CounterVec {
		return promreg.Add(r, prometheus.NewCounterVec(prometheus.CounterOpts{Name: name, Help: help}, []string{"signal", "service"}))
	}
	m := &metrics{
		requests: promreg.Add(r, prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "otelfleet_router_requests_total",
			Help: "OTLP export requests by signal and outcome: ok, partial (some items rate limited), busy (UNAVAILABLE/503), malformed, too_large, unsupported, unauthenticated.",
		}, []string{"signal", "outcome"})),
		received:    perService("otelfleet_router_received_total", "Items (spans, log records, data points) received, before sampling and rate limiting."),
		kept:        perService("otelfleet_router_kept_total", "Items accepted for a backend (kept by sampling and admitted by the rate limits)."),
		sampledOut:  perService("otelfleet_router_sampled_out_total", "Spans dropped by sampling (accepted from the client, not forwarded)."),
		rateLimited: perService("otelfleet_router_rate_limited_total", "Items refused by the fleet-wide rate limits (reported to clients as rejected in partial_success)."),
		rerouted: promreg.Add(r, prometheus.NewCounter(prometheus.CounterOpts{
			Name: "otelfleet_router_rerouted_total", Help: "Items re-split to other backends after their backend was full, failed or left.",
		})),
		dropped: promreg.Add(r, prometheus.NewCounter(prometheus.CounterOpts{
			Name: "otelfleet_router_dropped_total", Help: "Items the router accepted and could not deliver anywhere (must stay 0; only a stop with no backend left can drop).",
		})),
		duplicates: promreg.Add(r, prometheus.NewCounter(prometheus.CounterOpts{
			Name: "otelfleet_router_backpressure_after_submit_total", Help: "Items already handed to a backend in a request that was then refused (the client's retry duplicates them).",
		})),
		lastResort: promreg.Add(r, prometheus.NewCounter(prometheus.CounterOpts{
			Name: "otelfleet_router_last_resort_total",
			Help: "Times the router had no healthy or degraded backend and turned to the ones reporting unhealthy.",
		})),
		onLastResort: promreg.Add(r, prometheus.NewGauge(prometheus.GaugeOpts{
			Name: "otelfleet_router_on_last_resort",
			Help: "1 while the router sends to backends reporting unhealthy because no other is left.",
		})),
		rebuilds: promreg.Add(r, prometheus.NewCounter(prometheus.CounterOpts{
			Name: "otelfleet_router_table_rebuilds_total", Help: "Backend table rebuilds (membership changes and rebalances).",
		})),
		rebuildSeconds: promreg.Add(r, prometheus.NewHistogram(prometheus.HistogramOpts{
			Name: "otelfleet_router_table_rebuild_seconds", Help: "Time to rebuild every region's backend table.",
			Buckets: prometheus.ExponentialBuckets(1e-6, 4, 10),
		})),
		ackWait: promreg.Add(r, prometheus.NewHistogram(prometheus.HistogramOpts{
			Name: "otelfleet_router_ack_wait_seconds", Help: "Time a request waited, in --ack delivered, from queuing its parts until a backend took all of them.",
			Buckets: prometheus.ExponentialBuckets(1e-4, 3, 12),
		})),
		ackFailed: promreg.Add(r, prometheus.NewCounter(prometheus.CounterOpts{
			Name: "otelfleet_router_ack_unconfirmed_total", Help: "Requests refused (UNAVAILABLE/503) in --ack delivered because delivery was not confirmed in time or a part could not be delivered.",
		})),
		services: map[svcKey]*svcCounters{},
	}
	// Exported from the start (0), so rate() and increase() see the first busy request.
	for _, sig := range []otlpwire.Signal{otlpwire.Traces, otlpwire.Logs, otlpwire.Metrics} {
		for _, o := range []string{outcomeOK, outcomePartial, outcomeBusy} {
			m.requests.WithLabelValues(sig.String(), o)
		}
	}
	promreg.Add(r, prometheus.NewGaugeFunc(prometheus.GaugeOpts{
		Name: "otelfleet_router_memory_bytes", Help: "Bytes held for requests in flight and backend queues.",
	}, func() float64 { return float64(mem.used()) }))
	promreg.Add(r, prometheus.NewGaugeFunc(prometheus.GaugeOpts{
		Name: "otelfleet_router_memory_limit_bytes", Help: "The memory limit (--memory-limit) above which requests are refused.",
	}, func() float64 { return float64(mem.limit) }))
	return m, r.Err()
}

// service returns the counters of (signal, service), creating them up to
// maxMetricServices.
func (m *metrics) service(signal, service string) *svcCounters {
	k := svcKey{signal, service}
	m.mu.RLock()
	c := m.services[k]
	m.mu.RUnlock()
	if c != nil {
		return c
	}
	m.mu.Lock()
	defer m.mu.Unlock()
	if c = m.services[k]; c != nil {
		return c
	}
	if len(m.services) >= maxMetricServices {
		k.service = otherService
		if c = m.services[k]; c != nil {
			return c
		}
	}
	c = &svcCounters{
		received: m.received.WithLabelValues(k.signal, k.service), kept: m.kept.WithLabelValues(k.signal, k.service),
		sampledOut: m.sampledOut.WithLabelValues(k.signal, k.service), rateLimited: m.rateLimited.WithLabelValues(k.signal, k.service),
	}
	m.services[k] = c
	return c
}
