package export

import (
	"context"
	"testing"
	"time"

	"go.opentelemetry.io/collector/pdata/ptrace"
	"go.opentelemetry.io/collector/pdata/ptrace/ptraceotlp"
	"go.opentelemetry.io/otel/attribute"
	sdktrace "go.opentelemetry.io/otel/sdk/trace"
	"go.opentelemetry.io/otel/sdk/trace/tracetest"
	"go.opentelemetry.io/otel/trace/noop"

	"github.com/otelfleet/otelfleet/pkg/natstest"
	"github.com/otelfleet/otelfleet/services/router/internal/otlpwire"
)

// ownBatch is a batch of n spans whose resource carries the own-trace attribute.
func ownBatch(t *testing.T, n int) Batch {
	t.Helper()
	td := ptrace.NewTraces()
	rs := td.ResourceSpans().AppendEmpty()
	rs.Resource().Attributes().PutStr("service.name", "otelfleet-router")
	rs.Resource().Attributes().PutStr("otelfleet.component", "router")
	for range n {
		rs.ScopeSpans().AppendEmpty().Spans().AppendEmpty().SetName("otlp.export")
	}
	b, err := ptraceotlp.NewExportRequestFromTraces(td).MarshalProto()
	if err != nil {
		t.Fatal(err)
	}
	return Batch{Signal: otlpwire.Traces, Payload: b, Items: n}
}

func attrsOf(s sdktrace.ReadOnlySpan) map[attribute.Key]attribute.Value {
	m := map[attribute.Key]attribute.Value{}
	for _, kv := range s.Attributes() {
		m[kv.Key] = kv.Value
	}
	return m
}

// One span per export call with backend, items, bytes and outcome; none for a call that
// carries only otelfleet's own spans (the router exporting its own export spans would
// otherwise trace itself for ever).
func TestExportSpansButNotOfOwnTraces(t *testing.T) {
	rec := tracetest.NewSpanRecorder()
	tp := sdktrace.NewTracerProvider(sdktrace.WithSpanProcessor(rec))
	t.Cleanup(func() { _ = tp.Shutdown(context.Background()) })
	f := startFake(t)
	cfg := testConfig()
	cfg.MaxBatchItems = 10
	var rr collector
	e := newQuiet(t, cfg, rr.reroute, WithTracer(tp.Tracer("test"), "otelfleet.component"))
	e.SetTargets([]Target{{Key: "collector.r.a", Addr: f.addr, Region: "r"}})

	own := ownBatch(t, 10)
	if err := e.Submit("collector.r.a", own); err != nil {
		t.Fatal(err)
	}
	natstest.Eventually(t, 10*time.Second, func() bool { return f.callCount() == 1 }, "the own batch delivered")
	foreign := traceBatch(t, 0, 10)
	if err := e.Submit("collector.r.a", foreign); err != nil {
		t.Fatal(err)
	}
	natstest.Eventually(t, 10*time.Second, func() bool { return len(rec.Ended()) == 1 }, "one export span")
	natstest.Eventually(t, 5*time.Second, func() bool { return stat(e, "collector.r.a").Sent == 20 }, "both batches sent")
	if n := f.callCount(); n != 2 {
		t.Fatalf("%d export calls, want 2", n)
	}
	spans := rec.Ended()
	if len(spans) != 1 {
		t.Fatalf("%d spans for one own and one foreign batch, want 1 (the foreign one's)", len(spans))
	}
	a := attrsOf(spans[0])
	if spans[0].Name() != "otlp.export" || a["otelfleet.backend"].AsString() != "collector.r.a" || a["otelfleet.items"].AsInt64() != 10 ||
		a["otelfleet.bytes"].AsInt64() != int64(len(foreign.Payload)) || a["otelfleet.outcome"].AsString() != "ok" || a["server.address"].AsString() != f.addr {
		t.Fatalf("span %s with %v", spans[0].Name(), a)
	}

	// A batch mixing both gets its span.
	mixed := own
	mixed.Payload = append(append([]byte{}, own.Payload...), foreign.Payload...)
	mixed.Items = 20
	if err := e.Submit("collector.r.a", mixed); err != nil {
		t.Fatal(err)
	}
	natstest.Eventually(t, 10*time.Second, func() bool { return len(rec.Ended()) == 2 }, "a span for the mixed batch")
}

func TestNoOpTracerMakesNoTracing(t *testing.T) {
	var rr collector
	e, err := New(testConfig(), rr.reroute, quiet(), WithTracer(noop.NewTracerProvider().Tracer(""), "otelfleet.component"))
	if err != nil {
		t.Fatal(err)
	}
	defer func() { _ = e.Close(context.Background()) }()
	if e.tracing != nil {
		t.Fatal("a no-op tracer turned tracing on")
	}
}
