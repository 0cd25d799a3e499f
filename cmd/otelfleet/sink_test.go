package main

import (
	"context"
	"encoding/json"
	"io"
	"net/http"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/nats-io/nats.go/jetstream"
	"go.opentelemetry.io/collector/pdata/pcommon"
	"go.opentelemetry.io/collector/pdata/ptrace"
	"go.opentelemetry.io/collector/pdata/ptrace/ptraceotlp"
	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"

	"github.com/otelfleet/otelfleet/pkg/events"
	"github.com/otelfleet/otelfleet/pkg/natstest"
	"github.com/otelfleet/otelfleet/pkg/otlpsink"
)

// sinkSpans builds n spans of one trace (id byte b) of service svc.
func sinkSpans(svc string, b byte, n int) ptrace.Traces {
	td := ptrace.NewTraces()
	rs := td.ResourceSpans().AppendEmpty()
	rs.Resource().Attributes().PutStr("service.name", svc)
	ss := rs.ScopeSpans().AppendEmpty()
	for i := range n {
		sp := ss.Spans().AppendEmpty()
		sp.SetTraceID(pcommon.TraceID{15: b})
		sp.SetSpanID(pcommon.SpanID{7: byte(i + 1)})
	}
	return td
}

func TestSinkRegistersCountsAndDeregisters(t *testing.T) {
	t.Parallel()
	srv, b := contractServer(t)
	admin := "127.0.0.1:" + strconv.Itoa(freePort(t))
	_, stderr, stop, _ := background(t, "--nats", srv.URL(), "sink", "--region", "eu", "--id", "s1",
		"--grpc-addr", "127.0.0.1:0", "--http-addr", "127.0.0.1:0", "--admin-addr", admin, "--report-interval", "100ms")
	var reg events.Registration
	natstest.Eventually(t, 5*time.Second, func() bool {
		e, err := b.Registry.Get(context.Background(), "collector.eu.s1")
		if err != nil {
			return false
		}
		reg, err = events.DecodeRegistration(e.Value())
		return err == nil
	}, "sink did not register: %s", stderr)
	if !strings.HasPrefix(reg.Address, "127.0.0.1:") || reg.Metadata[otlpsink.MetaHTTPAddr] == "" || reg.Metadata[otlpsink.MetaSink] != "true" {
		t.Fatalf("registration %+v", reg)
	}

	cc, err := grpc.NewClient(reg.Address, grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		t.Fatal(err)
	}
	defer cc.Close()
	if _, err := ptraceotlp.NewGRPCClient(cc).Export(context.Background(), ptraceotlp.NewExportRequestFromTraces(sinkSpans("shop", 1, 3))); err != nil {
		t.Fatal(err)
	}
	var st otlpsink.Stats
	natstest.Eventually(t, 5*time.Second, func() bool {
		resp, err := http.Get("http://" + admin + "/v1/sink")
		if err != nil {
			return false
		}
		defer resp.Body.Close()
		return json.NewDecoder(resp.Body).Decode(&st) == nil && st.Spans == 3
	}, "/v1/sink did not count the spans")
	if st.Traces != 1 || st.Services["shop"] != 3 || len(st.Recent) != 1 || st.Recent[0].TraceID != "00000000000000000000000000000001" {
		t.Errorf("/v1/sink = %+v", st)
	}
	for path, want := range map[string]string{"/readyz": "ready", "/healthz": "ok", "/metrics": `otelfleet_sink_service_spans_total{service="shop"} 3`} {
		resp, err := http.Get("http://" + admin + path)
		if err != nil {
			t.Fatal(err)
		}
		body, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		if resp.StatusCode != 200 || !strings.Contains(string(body), want) {
			t.Errorf("%s: %s %q, want %q", path, resp.Status, body, want)
		}
	}

	if code := stop(); code != exitOK {
		t.Fatalf("sink exited %d: %s", code, stderr)
	}
	if _, err := b.Registry.Get(context.Background(), "collector.eu.s1"); err != jetstream.ErrKeyNotFound {
		t.Fatalf("after stop: %v, want the key deleted", err)
	}
	if !strings.Contains(stderr.String(), "3 spans in 1 traces") {
		t.Errorf("last words: %s", stderr)
	}
}

func TestSinkUsageErrors(t *testing.T) {
	for name, args := range map[string][]string{
		"bad grpc addr":     {"sink", "--grpc-addr", "4317"},
		"bad id":            {"sink", "--id", "a.b"},
		"negative capacity": {"sink", "--capacity-qps", "-1"},
		"bad interval":      {"sink", "--report-interval", "1ms"},
		"bad log level":     {"sink", "--log-level", "loud"},
		"extra argument":    {"sink", "extra"},
	} {
		t.Run(name, func(t *testing.T) {
			if code, _, stderr := runCLI(t, append([]string{"--nats", "nats://127.0.0.1:1"}, args...)...); code != exitUsage {
				t.Errorf("exit %d, want %d: %s", code, exitUsage, stderr)
			}
		})
	}
}

func TestSinkWithoutNATS(t *testing.T) {
	t.Parallel()
	admin := "127.0.0.1:" + strconv.Itoa(freePort(t))
	_, stderr, stop, _ := background(t, "--nats", "nats://127.0.0.1:1", "sink", "--register=false",
		"--grpc-addr", "127.0.0.1:0", "--http-addr", "", "--admin-addr", admin)
	natstest.Eventually(t, 5*time.Second, func() bool {
		resp, err := http.Get("http://" + admin + "/readyz")
		if err != nil {
			return false
		}
		resp.Body.Close()
		return resp.StatusCode == 200
	}, "sink without NATS not ready: %s", stderr)
	if code := stop(); code != exitOK {
		t.Fatalf("exit %d: %s", code, stderr)
	}
}
