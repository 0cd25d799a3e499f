package configwatch

import (
	"context"
	"strconv"
	"time"

	"github.com/nats-io/nats.go/jetstream"
	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/trace"

	"github.com/otelfleet/otelfleet/pkg/events"
	"github.com/otelfleet/otelfleet/pkg/platform"
)

// writerTimeout bounds the read of a value's headers.
const writerTimeout = 2 * time.Second

// handle applies one entry of the watch and, once ready, hands a changed snapshot to
// the listeners. With a tracer, a live change of a config key is applied in a span
// "config.apply" that continues the writer's trace: the config service writes each
// value with its trace context in the message headers (configsvc.Store.TraceWrites),
// which the watch does not show, so they are read back by the entry's revision (one
// direct get per change, only while tracing is on).
func (w *Watcher) handle(ctx context.Context, e jetstream.KeyValueEntry) {
	if w.opts.Tracer == nil || !w.Ready() || !isConfigKey(e.Key()) {
		if w.apply(ctx, e) && w.Ready() {
			w.publish()
		}
		return
	}
	_, span := w.opts.Tracer.Start(w.writerContext(e.Revision()), "config.apply", trace.WithSpanKind(trace.SpanKindConsumer),
		trace.WithAttributes(attribute.String("key", e.Key()), attribute.Int64("revision", int64(e.Revision())),
			attribute.String("service", w.opts.Service), attribute.String("instance", w.opts.Instance)))
	defer span.End()
	changed := w.apply(ctx, e)
	span.SetAttributes(attribute.Bool("applied", changed))
	if changed {
		w.publish()
	}
}

func isConfigKey(key string) bool {
	if key == events.GlobalConfigKey {
		return true
	}
	_, ok := events.RegionFromConfigKey(key)
	return ok
}

// writerContext returns a context carrying the trace context stored with revision rev
// of the config bucket (a background context when there is none or it cannot be read).
func (w *Watcher) writerContext(rev uint64) context.Context {
	ctx := context.Background()
	m, err := w.nc.Request("$JS.API.DIRECT.GET.KV_"+w.kv.Bucket(), []byte(`{"seq":`+strconv.FormatUint(rev, 10)+`}`), writerTimeout)
	if err != nil || m.Header.Get("Status") != "" {
		return ctx
	}
	return platform.ExtractTrace(ctx, m.Header)
}
