package otlpsink

import (
	"fmt"

	"github.com/prometheus/client_golang/prometheus"
)

// Signal label values.
const (
	signalTraces  = "traces"
	signalLogs    = "logs"
	signalMetrics = "metrics"
)

type metrics struct {
	requests   *prometheus.CounterVec // signal, transport, outcome
	bytes      *prometheus.CounterVec // signal, transport
	items      *prometheus.CounterVec // signal: spans, log records, metric points
	spans      *prometheus.CounterVec // service
	traces     prometheus.Counter
	duplicates prometheus.Counter
}

// newMetrics registers the sink's metrics on reg (nil: not registered); a clash with
// metrics already registered is an error, not a panic.
func newMetrics(reg prometheus.Registerer) (*metrics, error) {
	f := factory{}
	m := &metrics{
		requests: f.NewCounterVec(prometheus.CounterOpts{Name: "otelfleet_sink_requests_total",
			Help: "OTLP export requests by signal, transport (grpc, http) and outcome (accepted, refused)."}, []string{"signal", "transport", "outcome"}),
		bytes: f.NewCounterVec(prometheus.CounterOpts{Name: "otelfleet_sink_received_bytes_total",
			Help: "Decoded bytes of accepted OTLP requests."}, []string{"signal", "transport"}),
		items: f.NewCounterVec(prometheus.CounterOpts{Name: "otelfleet_sink_items_total",
			Help: "Spans, log records and metric data points accepted, by signal."}, []string{"signal"}),
		spans: f.NewCounterVec(prometheus.CounterOpts{Name: "otelfleet_sink_service_spans_total",
			Help: "Spans accepted by service.name (services beyond --max-services count as other)."}, []string{"service"}),
		traces: f.NewCounter(prometheus.CounterOpts{Name: "otelfleet_sink_traces_total",
			Help: "Distinct trace IDs received."}),
		duplicates: f.NewCounter(prometheus.CounterOpts{Name: "otelfleet_sink_duplicate_spans_total",
			Help: "Spans received again with a trace and span ID already seen."}),
	}
	if reg != nil {
		for _, c := range f.made {
			if err := reg.Register(c); err != nil {
				return nil, fmt.Errorf("otlpsink: metrics: %w", err)
			}
		}
	}
	return m, nil
}

// factory builds collectors and keeps them for registration.
type factory struct{ made []prometheus.Collector }

func (f *factory) NewCounterVec(o prometheus.CounterOpts, labels []string) *prometheus.CounterVec {
	c := prometheus.NewCounterVec(o, labels)
	f.made = append(f.made, c)
	return c
}

func (f *factory) NewCounter(o prometheus.CounterOpts) prometheus.Counter {
	c := prometheus.NewCounter(o)
	f.made = append(f.made, c)
	return c
}

// accepted counts one accepted traces request.
func (m *metrics) accepted(signal, transport string, size int, t traceTally) {
	m.bytes.WithLabelValues(signal, transport).Add(float64(size))
	m.requests.WithLabelValues(signal, transport, "accepted").Inc()
	m.items.WithLabelValues(signal).Add(float64(t.spans))
	m.traces.Add(float64(t.traces))
	m.duplicates.Add(float64(t.duplicates))
	for svc, n := range t.services {
		m.spans.WithLabelValues(svc).Add(float64(n))
	}
}
