package rollout

import (
	"context"
	"strings"

	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/codes"
	"go.opentelemetry.io/otel/trace"
)

// Trace makes the controller trace every step that acts on a rollout (a wave's desired
// configs written or removed, its events published: started, wave, completed, failed,
// rolled back) with tr: one span "rollout.wave" per such step. Call it before Run.
func (c *Controller) Trace(tr trace.Tracer) { c.tracer = tr }

// startStep starts the span of a step of group that acts (a span that records nothing
// otherwise: the controller evaluates every group on every tick).
func (c *Controller) startStep(ctx context.Context, group string, out Output) (context.Context, trace.Span) {
	if c.tracer == nil || len(out.Write)+len(out.Delete)+len(out.Events) == 0 {
		return ctx, trace.SpanFromContext(context.Background())
	}
	types := make([]string, 0, len(out.Events))
	attrs := []attribute.KeyValue{attribute.String("group", group), attribute.Int("writes", len(out.Write)), attribute.Int("deletes", len(out.Delete))}
	for _, ev := range out.Events {
		types = append(types, ev.Type)
		if ev.Wave > 0 {
			attrs = append(attrs, attribute.Int("wave", ev.Wave), attribute.Int("waves", ev.Waves), attribute.String("rollout", ev.Rollout),
				attribute.Int64("version", int64(ev.Version)))
		}
	}
	attrs = append(attrs, attribute.String("events", strings.Join(types, ",")))
	return c.tracer.Start(ctx, "rollout.wave", trace.WithAttributes(attrs...))
}

// endStep ends a step's span with its outcome.
func endStep(span trace.Span, err error) {
	if err != nil {
		span.RecordError(err)
		span.SetStatus(codes.Error, err.Error())
	}
	span.End()
}
