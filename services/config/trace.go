package configsvc

import (
	"context"
	"strconv"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"github.com/nats-io/nats.go/micro"
	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/codes"
	"go.opentelemetry.io/otel/trace"

	"github.com/otelfleet/otelfleet/pkg/microapi"
	"github.com/otelfleet/otelfleet/pkg/natsconn"
	"github.com/otelfleet/otelfleet/pkg/platform"
)

// TraceWrites makes the store write every value with the writer's trace context (W3C
// traceparent) in the message's headers, published by js, so each watcher that applies
// the value can continue the writer's trace (configwatch reads the headers back). A
// write whose context carries no span, or a store without TraceWrites, uses
// kv.Create / kv.Update as before. It returns s.
func (s *Store) TraceWrites(js jetstream.JetStream) *Store {
	s.js = js
	return s
}

// write stores data under key by compare-and-set on rev (0: the key must not exist, or
// was deleted).
func (s *Store) write(ctx context.Context, key string, data []byte, rev uint64) (uint64, error) {
	if s.js == nil || !trace.SpanContextFromContext(ctx).IsValid() {
		if rev == 0 {
			return s.kv.Create(ctx, key, data)
		}
		return s.kv.Update(ctx, key, data, rev)
	}
	subject := "$KV." + s.kv.Bucket() + "." + key
	seq, err := s.publish(ctx, subject, data, rev)
	if err == nil || rev != 0 || !natsconn.IsConflict(err) {
		return seq, err
	}
	// A deleted key keeps its delete marker as its last message: write over the marker,
	// as kv.Create does, and refuse a live key as before.
	st, serr := s.js.Stream(ctx, "KV_"+s.kv.Bucket())
	if serr != nil {
		return 0, err
	}
	last, lerr := st.GetLastMsgForSubject(ctx, subject)
	if lerr != nil {
		return 0, err
	}
	if op := last.Header.Get("KV-Operation"); op != "DEL" && op != "PURGE" {
		return 0, err
	}
	return s.publish(ctx, subject, data, last.Sequence)
}

// publish is what kv.Update publishes (the value, expecting revision rev of its
// subject), plus ctx's trace context.
func (s *Store) publish(ctx context.Context, subject string, data []byte, rev uint64) (uint64, error) {
	m := nats.NewMsg(subject)
	m.Data = data
	platform.InjectTrace(ctx, m.Header)
	m.Header.Set(jetstream.ExpectedLastSubjSeqHeader, strconv.FormatUint(rev, 10))
	ack, err := s.js.PublishMsg(ctx, m)
	if err != nil {
		return 0, err
	}
	return ack.Sequence, nil
}

// traced runs h in a server span named name, continuing the caller's trace when the
// request's headers carry one.
func (s *Service) traced(name string, h microapi.HandlerFunc) microapi.HandlerFunc {
	return func(ctx context.Context, req micro.Request) (any, error) {
		ctx = platform.ExtractTrace(ctx, nats.Header(req.Headers()))
		ctx, span := s.tracer.Start(ctx, name, trace.WithSpanKind(trace.SpanKindServer),
			trace.WithAttributes(attribute.String("messaging.destination.name", req.Subject())))
		defer span.End()
		out, err := h(ctx, req)
		if err != nil {
			span.RecordError(err)
			span.SetStatus(codes.Error, err.Error())
		}
		return out, err
	}
}

// changeEvent notes an accepted change on ctx's span.
func changeEvent(ctx context.Context, c Change, action string) {
	trace.SpanFromContext(ctx).AddEvent("config.changed", trace.WithAttributes(
		attribute.String("key", c.Key), attribute.Int64("old_version", int64(c.OldVersion)),
		attribute.Int64("new_version", int64(c.NewVersion)), attribute.String("action", action)))
}
