package export

import (
	"context"

	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/codes"
	"go.opentelemetry.io/otel/trace"
	"go.opentelemetry.io/otel/trace/noop"

	"github.com/otelfleet/otelfleet/services/router/internal/otlpwire"
)

// WithTracer traces every export call to a backend: one span "otlp.export" per call
// (not per item), attributes backend, backend address, signal, items, bytes, attempt and
// outcome (ok, partial, retryable, failed). A no-op tracer (the router's own tracing
// off) costs nothing.
//
// When ownResource is set, a call whose batch holds nothing but resources carrying that
// attribute — otelfleet's own spans, sent to this router when otelfleet traces itself
// into it — makes no span: otherwise each export of the router's own spans would make a
// new span to export, for ever. A batch mixing them with other data still gets its one
// span, so the router's spans stay bounded by the batches of other data.
func WithTracer(tr trace.Tracer, ownResource string) Option {
	return func(e *Exporter) {
		if _, off := tr.(noop.Tracer); off || tr == nil {
			return
		}
		e.tracing = &tracing{tracer: tr, own: ownResource}
	}
}

// tracing is the exporter's WithTracer setting.
type tracing struct {
	tracer trace.Tracer
	own    string
}

// export makes one export call of b to the target, in a span when tracing is on.
func (t *target) export(ctx context.Context, cl client, b Batch, attempt int) outcome {
	tr := t.tm.tracing
	if tr == nil || (tr.own != "" && otlpwire.EveryResourceHas(b.Signal, b.Payload, tr.own)) {
		return cl.export(ctx, b.Signal, b.Payload)
	}
	ctx, span := tr.tracer.Start(ctx, "otlp.export", trace.WithSpanKind(trace.SpanKindClient), trace.WithAttributes(
		attribute.String("otelfleet.backend", t.Key), attribute.String("server.address", t.Addr),
		attribute.String("otelfleet.signal", b.Signal.String()), attribute.Int("otelfleet.items", b.Items),
		attribute.Int("otelfleet.bytes", len(b.Payload)), attribute.Int("otelfleet.attempt", attempt)))
	defer span.End()
	o := cl.export(ctx, b.Signal, b.Payload)
	outcome := "ok"
	switch {
	case o.err != nil && o.retryable:
		outcome = "retryable"
	case o.err != nil:
		outcome = "failed"
	case o.rejected > 0:
		outcome = "partial"
		span.SetAttributes(attribute.Int64("otelfleet.rejected", o.rejected))
	}
	span.SetAttributes(attribute.String("otelfleet.outcome", outcome))
	if o.err != nil {
		span.SetStatus(codes.Error, o.err.Error())
	}
	return o
}
