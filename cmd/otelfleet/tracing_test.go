package main

import (
	"context"
	"encoding/json"
	"os"
	"strconv"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"go.opentelemetry.io/collector/pdata/pcommon"
	"go.opentelemetry.io/collector/pdata/ptrace/ptraceotlp"
	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"

	"github.com/otelfleet/otelfleet/pkg/events"
	"github.com/otelfleet/otelfleet/pkg/natstest"
	"github.com/otelfleet/otelfleet/pkg/otlpsink"
)

// With OTEL_EXPORTER_OTLP_ENDPOINT set, the dev stack traces itself into a real OTLP
// receiver: a config put (under a trace the caller started) and every watcher's
// application of it land in the caller's trace, and the router's export calls to its
// sinks are spans of otelfleet-router.
func TestDevTracesItself(t *testing.T) {
	if testing.Short() {
		t.Skip("starts the whole dev stack")
	}
	traces := startTestSink(t)
	t.Setenv("OTEL_EXPORTER_OTLP_ENDPOINT", "http://"+traces.GRPCAddr())
	t.Setenv("OTEL_BSP_SCHEDULE_DELAY", "50") // ms: export soon after each span

	port := freePort(t)
	url := "nats://127.0.0.1:" + strconv.Itoa(port)
	stop := startDev(t, t.TempDir(), port, "--simulate=false", "--config", configWithoutRateLimits(t))

	// A put under the caller's trace: the example with its rate limits changes global.
	example, err := os.ReadFile(examplePath(t))
	if err != nil {
		t.Fatal(err)
	}
	nc, err := nats.Connect(url)
	if err != nil {
		t.Fatal(err)
	}
	defer nc.Close()
	tid := pcommon.TraceID{0: 0x7e, 15: 0x01}
	msg := nats.NewMsg(events.Default.Endpoint(events.ServiceConfig, "put"))
	msg.Header.Set("traceparent", "00-"+tid.String()+"-00f067aa0ba902b7-01")
	msg.Data, _ = json.Marshal(map[string]string{"file": string(example), "by": "tracing-test"})
	reply, err := nc.RequestMsg(msg, 10*time.Second)
	if err != nil || reply.Header.Get("Nats-Service-Error") != "" {
		t.Fatalf("put: %v %v %s", err, reply.Header, reply.Data)
	}
	// The put's span (otelfleet-config) and the watcher's application (otelfleet-dev:
	// dev runs one watcher for the process) in the caller's trace.
	natstest.Eventually(t, 15*time.Second, func() bool {
		s := traces.Stats().Services
		return traces.TraceSpans(tid) >= 2 && s["otelfleet-config"] > 0 && s["otelfleet-dev"] > 0
	}, "put and apply in trace %s: %d spans, services %v", tid, traces.TraceSpans(tid), traces.Stats().Services)

	t.Logf("trace %s: %d spans; services %v", tid, traces.TraceSpans(tid), traces.Stats().Services)

	// The router's export calls to its sinks.
	var st events.RouterStatus
	natstest.Eventually(t, 20*time.Second, func() bool {
		var ok bool
		st, ok = fetchRouterStatus(t, url)
		return ok && len(st.Backends) == 3
	}, "the router does not see the three sinks: %+v", st)
	cc, err := grpc.NewClient(st.GRPCAddr, grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		t.Fatal(err)
	}
	defer cc.Close()
	if _, err := ptraceotlp.NewGRPCClient(cc).Export(context.Background(), ptraceotlp.NewExportRequestFromTraces(devTraces("checkout", 3, 20, 2))); err != nil {
		t.Fatal(err)
	}
	natstest.Eventually(t, 15*time.Second, func() bool { return traces.Stats().Services["otelfleet-router"] > 0 },
		"no export span of the router: services %v", traces.Stats().Services)
	if code := stop(); code != exitOK {
		t.Fatalf("dev exited %d", code)
	}
}

// startTestSink starts an otlpsink on loopback ports, stopped at cleanup.
func startTestSink(t *testing.T) *otlpsink.Sink {
	t.Helper()
	cfg := otlpsink.DefaultConfig()
	cfg.GRPCAddr, cfg.HTTPAddr = "127.0.0.1:0", ""
	s, err := otlpsink.New(cfg, nil, nil)
	if err != nil {
		t.Fatal(err)
	}
	if err := s.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		_ = s.Stop(ctx)
	})
	return s
}
