package platform

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"strings"
	"sync"
	"time"

	"github.com/nats-io/nats.go"
	"go.opentelemetry.io/otel"
	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/exporters/otlp/otlptrace/otlptracegrpc"
	"go.opentelemetry.io/otel/exporters/otlp/otlptrace/otlptracehttp"
	"go.opentelemetry.io/otel/propagation"
	"go.opentelemetry.io/otel/sdk/resource"
	sdktrace "go.opentelemetry.io/otel/sdk/trace"
	"go.opentelemetry.io/otel/trace"
	"go.opentelemetry.io/otel/trace/noop"
	"go.uber.org/fx"
)

// ComponentAttr is the resource attribute every span otelfleet itself makes carries
// (value: the service, e.g. "config"). The router recognises otelfleet's own traces by
// it, and makes no export span for a batch of nothing else: see routersvc.
const ComponentAttr = "otelfleet.component"

// TracerName is the instrumentation scope of otelfleet's own spans.
const TracerName = "github.com/otelfleet/otelfleet"

// shutdownBudget bounds the final flush of a process's spans on stop, so an
// unreachable endpoint does not take the whole stop timeout.
const shutdownBudget = 2 * time.Second

// Tracing is a process's own tracing: off (every provider a no-op, no exporter, no
// goroutine: nothing costs more than an interface call) unless the standard OTLP
// exporter variables name an endpoint:
//
//   - OTEL_EXPORTER_OTLP_TRACES_ENDPOINT or OTEL_EXPORTER_OTLP_ENDPOINT turns it on;
//     OTEL_SDK_DISABLED=true or OTEL_TRACES_EXPORTER=none keeps it off;
//   - OTEL_EXPORTER_OTLP_TRACES_PROTOCOL, else OTEL_EXPORTER_OTLP_PROTOCOL: grpc (the
//     default here, so an endpoint on the router's 4317 works as given) or
//     http/protobuf;
//   - the exporters read the rest themselves (headers, timeout, compression,
//     certificates, insecure), the SDK reads OTEL_TRACES_SAMPLER(_ARG) (default
//     parentbased_always_on) and OTEL_BSP_*, the resource OTEL_SERVICE_NAME and
//     OTEL_RESOURCE_ATTRIBUTES.
//
// Each service of the process gets its own provider (Provider(service)), with resource
// service.name otelfleet-<service> (OTEL_SERVICE_NAME wins when set),
// service.instance.id = the instance, service.version and ComponentAttr; each has its
// own batch span processor and exporter. Export failures are logged (at most once per
// 30 s), never fatal. Shutdown flushes and stops every provider.
type Tracing struct {
	enabled  bool
	protocol string
	instance string
	log      *slog.Logger

	mu        sync.Mutex
	providers map[string]*sdktrace.TracerProvider
	closed    bool
}

// Protocols of TracingFromEnv.
const (
	TraceProtocolGRPC = "grpc"
	TraceProtocolHTTP = "http/protobuf"
)

// TracingFromEnv decides, through getenv (os.Getenv when nil), whether tracing is on
// and which protocol it uses; the exporters and the SDK read their own variables from
// the process's environment. It creates no exporter yet: providers are made on first
// use. A protocol other than grpc or http/protobuf is an error naming the variable.
func TracingFromEnv(getenv func(string) string, instance string, log *slog.Logger) (*Tracing, error) {
	if getenv == nil {
		getenv = os.Getenv
	}
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	t := &Tracing{instance: instance, log: log, providers: map[string]*sdktrace.TracerProvider{}}
	endpoint := getenv("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT") != "" || getenv("OTEL_EXPORTER_OTLP_ENDPOINT") != ""
	off := strings.EqualFold(strings.TrimSpace(getenv("OTEL_SDK_DISABLED")), "true") || strings.TrimSpace(getenv("OTEL_TRACES_EXPORTER")) == "none"
	if !endpoint || off {
		return t, nil
	}
	name, proto := "OTEL_EXPORTER_OTLP_TRACES_PROTOCOL", strings.TrimSpace(getenv("OTEL_EXPORTER_OTLP_TRACES_PROTOCOL"))
	if proto == "" {
		name, proto = "OTEL_EXPORTER_OTLP_PROTOCOL", strings.TrimSpace(getenv("OTEL_EXPORTER_OTLP_PROTOCOL"))
	}
	switch proto {
	case "", TraceProtocolGRPC:
		proto = TraceProtocolGRPC
	case TraceProtocolHTTP:
	default:
		return nil, fmt.Errorf("%s %q: want %s or %s", name, proto, TraceProtocolGRPC, TraceProtocolHTTP)
	}
	t.enabled, t.protocol = true, proto
	otel.SetErrorHandler(newRateLimitedHandler(log, 30*time.Second))
	return t, nil
}

// Enabled reports whether spans are exported (false: every provider is a no-op).
func (t *Tracing) Enabled() bool { return t != nil && t.enabled }

// Protocol is the OTLP protocol in use ("" when off).
func (t *Tracing) Protocol() string {
	if !t.Enabled() {
		return ""
	}
	return t.protocol
}

// Provider returns service's tracer provider: a no-op one when tracing is off, after
// Shutdown, or when its exporter cannot be made (logged).
func (t *Tracing) Provider(service string) trace.TracerProvider {
	if !t.Enabled() {
		return noop.NewTracerProvider()
	}
	t.mu.Lock()
	defer t.mu.Unlock()
	if t.closed {
		return noop.NewTracerProvider()
	}
	if tp, ok := t.providers[service]; ok {
		return tp
	}
	tp, err := t.newProvider(service)
	if err != nil {
		t.log.Warn("own tracing: no exporter for this service; its spans are dropped", "service", service, "err", err)
		return noop.NewTracerProvider()
	}
	t.providers[service] = tp
	return tp
}

// Tracer is Provider(service).Tracer(TracerName).
func (t *Tracing) Tracer(service string) trace.Tracer { return t.Provider(service).Tracer(TracerName) }

func (t *Tracing) newProvider(service string) (*sdktrace.TracerProvider, error) {
	ctx := context.Background()
	var (
		exp sdktrace.SpanExporter
		err error
	)
	if t.protocol == TraceProtocolHTTP {
		exp, err = otlptracehttp.New(ctx)
	} else {
		exp, err = otlptracegrpc.New(ctx)
	}
	if err != nil {
		return nil, err
	}
	res, err := resource.New(ctx,
		resource.WithAttributes(
			attribute.String("service.name", "otelfleet-"+service),
			attribute.String("service.instance.id", t.instance),
			attribute.String("service.version", Version),
		),
		resource.WithFromEnv(), // OTEL_SERVICE_NAME, OTEL_RESOURCE_ATTRIBUTES
		resource.WithAttributes(attribute.String(ComponentAttr, service)),
	)
	if err != nil && res == nil {
		_ = exp.Shutdown(ctx)
		return nil, err
	}
	if err != nil { // a bad OTEL_RESOURCE_ATTRIBUTES: keep what parsed
		t.log.Warn("own tracing: resource attributes", "err", err)
	}
	return sdktrace.NewTracerProvider(sdktrace.WithBatcher(exp), sdktrace.WithResource(res)), nil
}

// Shutdown flushes and stops every provider within ctx (and at most 2 s); providers
// asked for afterwards are no-ops.
func (t *Tracing) Shutdown(ctx context.Context) error {
	if !t.Enabled() {
		return nil
	}
	t.mu.Lock()
	t.closed = true
	tps := t.providers
	t.providers = map[string]*sdktrace.TracerProvider{}
	t.mu.Unlock()
	ctx, cancel := context.WithTimeout(ctx, shutdownBudget)
	defer cancel()
	var errs []error
	for service, tp := range tps {
		if err := tp.Shutdown(ctx); err != nil {
			errs = append(errs, fmt.Errorf("own tracing of %s: %w", service, err))
		}
	}
	return errors.Join(errs...)
}

// NewTracing is Module's constructor: TracingFromEnv with the process's environment,
// the process's own provider made at once (so a bad exporter setting shows at start),
// and Shutdown on stop (its error logged, never failing the stop).
func NewTracing(lc fx.Lifecycle, s Settings, log *slog.Logger) (*Tracing, error) {
	t, err := TracingFromEnv(nil, s.Instance, log.With("component", "tracing"))
	if err != nil {
		return nil, err
	}
	if t.Enabled() {
		t.Provider(s.Process)
		log.Info("own tracing on", "protocol", t.protocol)
	}
	lc.Append(fx.StopHook(func(ctx context.Context) {
		if err := t.Shutdown(ctx); err != nil {
			log.Warn("own tracing: final flush failed", "err", err)
		}
	}))
	return t, nil
}

// ProcessTracerProvider is the provider of the process itself (service s.Process).
func ProcessTracerProvider(t *Tracing, s Settings) trace.TracerProvider { return t.Provider(s.Process) }

// rateLimitedHandler logs the SDK's errors (failed exports) at most once per interval,
// with how many it left out.
type rateLimitedHandler struct {
	log      *slog.Logger
	interval time.Duration
	mu       sync.Mutex
	last     time.Time
	skipped  int
}

func newRateLimitedHandler(log *slog.Logger, interval time.Duration) *rateLimitedHandler {
	return &rateLimitedHandler{log: log, interval: interval}
}

func (h *rateLimitedHandler) Handle(err error) {
	h.mu.Lock()
	now := time.Now()
	if !h.last.IsZero() && now.Sub(h.last) < h.interval {
		h.skipped++
		h.mu.Unlock()
		return
	}
	skipped := h.skipped
	h.last, h.skipped = now, 0
	h.mu.Unlock()
	h.log.Warn("own tracing: export failed (spans dropped; the service carries on)", "err", err, "similar_errors_left_out", skipped)
}

// propagator is W3C trace context: traceparent and tracestate.
var propagator = propagation.TraceContext{}

// natsCarrier reads and writes W3C headers on a NATS header (case-sensitive keys, as
// the W3C names them: traceparent, tracestate).
type natsCarrier nats.Header

func (c natsCarrier) Get(key string) string { return nats.Header(c).Get(key) }
func (c natsCarrier) Set(key, v string)     { nats.Header(c).Set(key, v) }
func (c natsCarrier) Keys() []string {
	keys := make([]string, 0, len(c))
	for k := range c {
		keys = append(keys, k)
	}
	return keys
}

// InjectTrace writes ctx's span context into h (nothing when ctx carries none); h must
// not be nil.
func InjectTrace(ctx context.Context, h nats.Header) {
	if !trace.SpanContextFromContext(ctx).IsValid() {
		return
	}
	propagator.Inject(ctx, natsCarrier(h))
}

// ExtractTrace returns ctx with the remote span context h carries (ctx itself when none
// or malformed).
func ExtractTrace(ctx context.Context, h nats.Header) context.Context {
	if len(h) == 0 {
		return ctx
	}
	return propagator.Extract(ctx, natsCarrier(h))
}
