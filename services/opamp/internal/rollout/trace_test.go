package rollout_test

import (
	"context"
	"slices"
	"testing"
	"time"

	sdktrace "go.opentelemetry.io/otel/sdk/trace"
	"go.opentelemetry.io/otel/sdk/trace/tracetest"

	"github.com/otelfleet/otelfleet/pkg/events"
	"github.com/otelfleet/otelfleet/pkg/fleetconfig"
	"github.com/otelfleet/otelfleet/pkg/natstest"
)

// Each step that acts on a rollout is one span "rollout.wave" (the idle evaluations of
// every tick make none), named by its group and events.
func TestRolloutStepsAreTraced(t *testing.T) {
	rec := tracetest.NewSpanRecorder()
	tp := sdktrace.NewTracerProvider(sdktrace.WithSpanProcessor(rec))
	t.Cleanup(func() { _ = tp.Shutdown(context.Background()) })
	f := newFleet(t)
	f.tracer = tp.Tracer("test")
	f.addAgents(4, "eu")
	f.run(1)
	f.putDoc("edge", fleetconfig.CollectorConfig{Selector: fleetconfig.Selector{Region: "eu"}, Config: collectorYAML("basic", "10"), Rollout: policy()})
	f.waitPhase("edge", events.RolloutCompleted, 1)
	var got []string
	natstest.Eventually(t, 5*time.Second, func() bool {
		got = got[:0]
		for _, s := range rec.Ended() {
			if s.Name() != "rollout.wave" {
				t.Fatalf("span %q", s.Name())
			}
			for _, a := range s.Attributes() {
				if a.Key == "events" && a.Value.AsString() != "" {
					got = append(got, a.Value.AsString())
				}
			}
		}
		return slices.Contains(got, "rollout.completed")
	}, "spans with events %v", got)
	if !slices.Contains(got, "rollout.started") || !slices.Contains(got, "rollout.wave") {
		t.Fatalf("no span for the start: %v", got)
	}
	t.Logf("%d spans, events %v", len(rec.Ended()), got)
	if n := len(rec.Ended()); n > 12 {
		t.Fatalf("%d spans for one rollout over 4 agents: idle ticks traced", n)
	}
}
