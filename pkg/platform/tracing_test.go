package platform_test

import (
	"context"
	"strings"
	"testing"

	"github.com/nats-io/nats.go"
	sdktrace "go.opentelemetry.io/otel/sdk/trace"
	"go.opentelemetry.io/otel/trace"
	"go.opentelemetry.io/otel/trace/noop"
	"go.uber.org/fx"
	"go.uber.org/fx/fxtest"

	"github.com/otelfleet/otelfleet/pkg/natstest"
	"github.com/otelfleet/otelfleet/pkg/otlpsink"
	"github.com/otelfleet/otelfleet/pkg/platform"
)

func envMap(m map[string]string) func(string) string { return func(k string) string { return m[k] } }

// startTraceSink is a real OTLP receiver on free loopback ports.
func startTraceSink(t *testing.T) *otlpsink.Sink {
	t.Helper()
	cfg := otlpsink.DefaultConfig()
	cfg.GRPCAddr, cfg.HTTPAddr = "127.0.0.1:0", "127.0.0.1:0"
	s, err := otlpsink.New(cfg, nil, nil)
	if err != nil {
		t.Fatal(err)
	}
	if err := s.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = s.Stop(context.Background()) })
	return s
}

func TestTracingOffMakesNoExporter(t *testing.T) {
	for name, env := range map[string]map[string]string{
		"no variables":             {},
		"protocol but no endpoint": {"OTEL_EXPORTER_OTLP_PROTOCOL": "grpc", "OTEL_SERVICE_NAME": "x"},
		"sdk disabled":             {"OTEL_EXPORTER_OTLP_ENDPOINT": "http://127.0.0.1:1", "OTEL_SDK_DISABLED": "true"},
		"exporter none":            {"OTEL_EXPORTER_OTLP_TRACES_ENDPOINT": "http://127.0.0.1:1", "OTEL_TRACES_EXPORTER": "none"},
	} {
		t.Run(name, func(t *testing.T) {
			tr, err := platform.TracingFromEnv(envMap(env), "i-1", nil)
			if err != nil {
				t.Fatal(err)
			}
			if tr.Enabled() || tr.Protocol() != "" {
				t.Fatalf("tracing on (%q) with %v", tr.Protocol(), env)
			}
			if _, ok := tr.Provider("config").(noop.TracerProvider); !ok {
				t.Fatalf("provider %T, want the no-op provider", tr.Provider("config"))
			}
			if err := tr.Shutdown(context.Background()); err != nil {
				t.Fatal(err)
			}
		})
	}
}

func TestTracingModuleWithoutEnvIsNoOp(t *testing.T) {
	t.Setenv("OTEL_EXPORTER_OTLP_ENDPOINT", "")
	t.Setenv("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT", "")
	srv := natstest.Run(t)
	var tp trace.TracerProvider
	var tr *platform.Tracing
	app := fxtest.New(t, platform.Options(testSettings(srv.ClientURL())), platform.Module(testSettings(srv.ClientURL())), fx.Populate(&tp, &tr))
	app.RequireStart()
	defer app.RequireStop()
	if _, ok := tp.(noop.TracerProvider); !ok || tr.Enabled() {
		t.Fatalf("provider %T (enabled %v) without OTEL_* variables, want the no-op provider", tp, tr.Enabled())
	}
}

func TestTracingBadProtocol(t *testing.T) {
	_, err := platform.TracingFromEnv(envMap(map[string]string{"OTEL_EXPORTER_OTLP_ENDPOINT": "http://x:1", "OTEL_EXPORTER_OTLP_PROTOCOL": "http/json"}), "i", nil)
	if err == nil || !strings.Contains(err.Error(), "OTEL_EXPORTER_OTLP_PROTOCOL") || !strings.Contains(err.Error(), "http/json") {
		t.Fatalf("err = %v, want one naming the variable and the value", err)
	}
}

// Spans reach a real OTLP receiver over both protocols, per service, with the resource
// of the service.
func TestTracingExportsPerService(t *testing.T) {
	sink := startTraceSink(t)
	for _, tc := range []struct {
		protocol, endpoint string
	}{
		{"grpc", "http://" + sink.GRPCAddr()},
		{"http/protobuf", "http://" + sink.HTTPAddr()},
	} {
		t.Run(tc.protocol, func(t *testing.T) {
			before := sink.Stats().Services
			// The exporters read the variables themselves: set them for real.
			t.Setenv("OTEL_EXPORTER_OTLP_ENDPOINT", tc.endpoint)
			t.Setenv("OTEL_EXPORTER_OTLP_PROTOCOL", tc.protocol)
			tr, err := platform.TracingFromEnv(nil, "i-1", nil)
			if err != nil {
				t.Fatal(err)
			}
			if !tr.Enabled() || tr.Protocol() != tc.protocol {
				t.Fatalf("enabled %v protocol %q", tr.Enabled(), tr.Protocol())
			}
			if _, ok := tr.Provider("config").(*sdktrace.TracerProvider); !ok {
				t.Fatalf("provider %T", tr.Provider("config"))
			}
			for _, svc := range []string{"config", "router", "router"} {
				_, span := tr.Tracer(svc).Start(context.Background(), "work")
				span.End()
			}
			if err := tr.Shutdown(context.Background()); err != nil { // flushes
				t.Fatal(err)
			}
			got := sink.Stats().Services
			if got["otelfleet-config"]-before["otelfleet-config"] != 1 || got["otelfleet-router"]-before["otelfleet-router"] != 2 {
				t.Fatalf("services %v (before %v)", got, before)
			}
			if _, ok := tr.Provider("config").(noop.TracerProvider); !ok {
				t.Fatal("a provider after Shutdown is not a no-op")
			}
		})
	}
}

func TestTraceContextOverNATSHeaders(t *testing.T) {
	tid, _ := trace.TraceIDFromHex("0af7651916cd43dd8448eb211c80319c")
	sid, _ := trace.SpanIDFromHex("b7ad6b7169203331")
	sc := trace.NewSpanContext(trace.SpanContextConfig{TraceID: tid, SpanID: sid, TraceFlags: trace.FlagsSampled})
	h := nats.Header{}
	platform.InjectTrace(trace.ContextWithSpanContext(context.Background(), sc), h)
	if got := h.Get("traceparent"); got != "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01" {
		t.Fatalf("traceparent %q", got)
	}
	got := trace.SpanContextFromContext(platform.ExtractTrace(context.Background(), h))
	if got.TraceID() != tid || got.SpanID() != sid || !got.IsRemote() {
		t.Fatalf("extracted %+v", got)
	}
	empty := nats.Header{}
	platform.InjectTrace(context.Background(), empty)
	if len(empty) != 0 {
		t.Fatalf("injected %v without a span", empty)
	}
	if trace.SpanContextFromContext(platform.ExtractTrace(context.Background(), nats.Header{"traceparent": {"garbage"}})).IsValid() {
		t.Fatal("a malformed traceparent gave a span context")
	}
}
