package main

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"go.opentelemetry.io/collector/pdata/pcommon"
	"go.opentelemetry.io/collector/pdata/ptrace"
	"go.opentelemetry.io/collector/pdata/ptrace/ptraceotlp"
	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"

	"github.com/otelfleet/otelfleet/pkg/events"
	"github.com/otelfleet/otelfleet/pkg/natstest"
	"github.com/otelfleet/otelfleet/pkg/otlpsink"
)

// devTraces builds n traces of `spans` spans each of service svc; trace i has ID
// prefix:i.
func devTraces(svc string, prefix byte, n, spans int) ptrace.Traces {
	td := ptrace.NewTraces()
	rs := td.ResourceSpans().AppendEmpty()
	rs.Resource().Attributes().PutStr("service.name", svc)
	ss := rs.ScopeSpans().AppendEmpty()
	for i := range n {
		for j := range spans {
			sp := ss.Spans().AppendEmpty()
			tid := pcommon.TraceID{0: prefix, 6: byte(i >> 8), 7: byte(i), 13: byte(i * 37), 14: byte(i * 101), 15: byte(i*7 + 1)}
			sp.SetTraceID(tid)
			sp.SetSpanID(pcommon.SpanID{0: byte(j + 1), 7: byte(i)})
			sp.SetName("op")
		}
	}
	return td
}

// configWithoutRateLimits writes the example config without its rate limits and
// returns its path: the tests about placement send bursts that a fresh router's share of
// the fleet-wide limit would refuse in part.
func configWithoutRateLimits(t *testing.T) string {
	t.Helper()
	example, err := os.ReadFile(examplePath(t))
	if err != nil {
		t.Fatal(err)
	}
	var cfg []string
	for _, line := range strings.Split(string(example), "\n") {
		if !strings.Contains(line, "rate_limiting") {
			cfg = append(cfg, line)
		}
	}
	path := filepath.Join(t.TempDir(), "config.yaml")
	if err := os.WriteFile(path, []byte(strings.Join(cfg, "\n")), 0o600); err != nil {
		t.Fatal(err)
	}
	return path
}

// fetchRouterStatus returns the status of dev's router at url, or false.
func fetchRouterStatus(t *testing.T, url string) (events.RouterStatus, bool) {
	t.Helper()
	var st events.RouterStatus
	code, out, _ := runCLI(t, "--nats", url, "--timeout", "2s", "router", "status", "-o", "json")
	return st, code == exitOK && json.Unmarshal([]byte(out), &st) == nil
}

// wholeOnOne checks that every trace in perSink is on one sink only with want spans, and
// returns the sink of each trace.
func wholeOnOne(t *testing.T, perSink map[string]map[string]int64, want int64) map[string]string {
	t.Helper()
	where := map[string]string{}
	for sink, traces := range perSink {
		for tid, n := range traces {
			if other, dup := where[tid]; dup {
				t.Errorf("trace %s on %s and %s", tid, other, sink)
			}
			where[tid] = sink
			if n != want {
				t.Errorf("trace %s: %d spans on %s, want %d (whole)", tid, n, sink, want)
			}
		}
	}
	return where
}

func TestDevRoutesTracesWholeToItsSinks(t *testing.T) {
	admin := "127.0.0.1:" + strconv.Itoa(freePort(t))
	port := freePort(t)
	stop := startDev(t, t.TempDir(), port, "--admin-addr", admin, "--simulate=false", "--config", configWithoutRateLimits(t))
	url := "nats://127.0.0.1:" + strconv.Itoa(port)

	var st events.RouterStatus
	natstest.Eventually(t, 20*time.Second, func() bool {
		var ok bool
		st, ok = fetchRouterStatus(t, url)
		return ok && len(st.Backends) == 3
	}, "the router does not see the three sinks: %+v", st)

	// 300 traces of 4 spans: half over OTLP/gRPC, half over OTLP/HTTP.
	const spans = 4
	if st.RateLimited != 0 {
		t.Fatalf("rate-limited before anything was sent: %+v", st)
	}
	cc, err := grpc.NewClient(st.GRPCAddr, grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		t.Fatal(err)
	}
	defer cc.Close()
	if _, err := ptraceotlp.NewGRPCClient(cc).Export(context.Background(), ptraceotlp.NewExportRequestFromTraces(devTraces("checkout", 1, 150, spans))); err != nil {
		t.Fatal(err)
	}
	body, _ := ptraceotlp.NewExportRequestFromTraces(devTraces("checkout", 2, 150, spans)).MarshalProto()
	resp, err := http.Post("http://"+st.HTTPAddr+"/v1/traces", "application/x-protobuf", bytes.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != 200 {
		t.Fatalf("OTLP/HTTP: %s", resp.Status)
	}

	// Every span the router kept arrives; each trace is whole on exactly one sink.
	sinkStats := func() map[string]otlpsink.Stats {
		out := map[string]otlpsink.Stats{}
		for i := 1; i <= 3; i++ {
			id := fmt.Sprintf("sink-%d", i)
			r, err := http.Get("http://" + admin + "/v1/sinks/" + id + "?recent=1000")
			if err != nil {
				return nil
			}
			var s otlpsink.Stats
			err = json.NewDecoder(r.Body).Decode(&s)
			r.Body.Close()
			if err != nil {
				return nil
			}
			out[id] = s
		}
		return out
	}
	var got map[string]otlpsink.Stats
	natstest.Eventually(t, 15*time.Second, func() bool {
		var ok bool
		if st, ok = fetchRouterStatus(t, url); !ok || st.Received != 2*150*spans {
			return false
		}
		got = sinkStats()
		var total int64
		for _, s := range got {
			total += s.Spans
		}
		return got != nil && st.Kept > 0 && total == st.Kept
	}, "the sinks did not get the %d kept spans: router %+v, sinks %+v", st.Kept, st, got)
	for id, s := range got {
		t.Logf("%s: %d spans in %d traces", id, s.Spans, s.Traces)
	}
	t.Logf("router: %+v", st)
	perSink := map[string]map[string]int64{}
	for id, s := range got {
		if s.Duplicates != 0 {
			t.Errorf("%s got %d duplicate spans", id, s.Duplicates)
		}
		perSink[id] = map[string]int64{}
		for _, tc := range s.Recent {
			perSink[id][tc.TraceID] = tc.Spans
		}
	}
	where := wholeOnOne(t, perSink, spans)
	if int64(len(where))*spans != st.Kept {
		t.Errorf("%d traces at the sinks, router kept %d spans", len(where), st.Kept)
	}

	// otelfleet route explains a delivered trace's placement: the sink it is on.
	for tid, sink := range where {
		code, out, stderr := runCLI(t, "--nats", url, "route", tid, "--service", "checkout", "-o", "json")
		var a events.RouteAnswer
		if code != exitOK || json.Unmarshal([]byte(out), &a) != nil {
			t.Fatalf("route %s: exit %d %s %s", tid, code, out, stderr)
		}
		if !a.Kept || a.Backend != "collector.local."+sink {
			t.Errorf("route %s: kept %v backend %s, but it is on %s", tid, a.Kept, a.Backend, sink)
		}
		break
	}
	if code := stop(); code != exitOK {
		t.Fatalf("dev exited %d", code)
	}
}
