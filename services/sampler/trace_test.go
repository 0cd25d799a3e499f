package samplersvc

import (
	"context"
	"testing"
	"time"

	sdktrace "go.opentelemetry.io/otel/sdk/trace"
	"go.opentelemetry.io/otel/sdk/trace/tracetest"

	"github.com/otelfleet/otelfleet/pkg/natstest"
)

// The leader's every compute-and-store is one span "sampling.decision", saying whether
// the decision was stored and under which token.
func TestDecisionsAreTraced(t *testing.T) {
	rec := tracetest.NewSpanRecorder()
	tp := sdktrace.NewTracerProvider(sdktrace.WithSpanProcessor(rec))
	t.Cleanup(func() { _ = tp.Shutdown(context.Background()) })
	f := newFixture(t)
	f.tracer = tp.Tracer("test")
	log := f.watchDecisions(t)
	f.startReplica(t, "s1", testConfig())
	natstest.Eventually(t, 10*time.Second, func() bool { _, ok := log.last(); return ok && len(rec.Ended()) > 0 }, "no decision traced")
	s := rec.Ended()[0]
	attrs := map[string]string{}
	for _, a := range s.Attributes() {
		attrs[string(a.Key)] = a.Value.Emit()
	}
	d, _ := log.last()
	if s.Name() != "sampling.decision" || attrs["stored"] != "true" || attrs["token"] == "" || attrs["token"] == "0" {
		t.Fatalf("span %q %v (decision token %d)", s.Name(), attrs, d.Token)
	}
}
