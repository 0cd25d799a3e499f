package routersvc

import (
	"context"
	"encoding/json"
	"strings"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"go.opentelemetry.io/collector/pdata/pcommon"
	"go.opentelemetry.io/collector/pdata/plog"
	"go.opentelemetry.io/collector/pdata/plog/plogotlp"
	"go.opentelemetry.io/collector/pdata/pmetric"
	"go.opentelemetry.io/collector/pdata/pmetric/pmetricotlp"
	"go.opentelemetry.io/collector/pdata/ptrace/ptraceotlp"

	"github.com/otelfleet/otelfleet/pkg/events"
	"github.com/otelfleet/otelfleet/pkg/fleetconfig"
	"github.com/otelfleet/otelfleet/pkg/loadreport"
	"github.com/otelfleet/otelfleet/pkg/microapi"
	"github.com/otelfleet/otelfleet/pkg/natstest"
)

// TestRegistrationEndpointsAndLoadReport: the router registers as
// service.router.<instance> with its OTLP addresses, answers route and status on the
// otlp-router micro service, and publishes its load report with pre-sampling rates.
func TestRegistrationEndpointsAndLoadReport(t *testing.T) {
	e := startRouter(t, testConfig())
	e.addBackend("b1")
	e.addBackend("b2")
	e.putGlobal(unlimited())
	e.putDecision(0.5)
	nc := e.srv.Connect(t)
	reports := make(chan *nats.Msg, 64)
	sub, err := nc.ChanSubscribe(events.Default.LoadSubjects(), reports)
	if err != nil {
		t.Fatal(err)
	}
	defer func() { _ = sub.Unsubscribe() }()

	key := "service." + events.ServiceRouter + "." + e.r.d.Instance
	var reg events.Registration
	natstest.Eventually(t, 5*time.Second, func() bool {
		v, err := e.reg.Get(context.Background(), key)
		return err == nil && json.Unmarshal(v.Value(), &reg) == nil
	}, "no registration at %s", key)
	g, h := e.r.Addrs()
	if !strings.HasSuffix(reg.Metadata["otlp_grpc"], g[strings.LastIndex(g, ":"):]) || !strings.HasSuffix(reg.Metadata["otlp_http"], h[strings.LastIndex(h, ":"):]) || reg.Address != reg.Metadata["otlp_grpc"] {
		t.Fatalf("registration: address %q metadata %v (listening on %s, %s)", reg.Address, reg.Metadata, g, h)
	}

	// Traffic before sampling is what the load report carries.
	for i := range 50 {
		code, _, body := post(t, e.httpURL()+"/v1/traces", contentProto, "", traceRequest(t, "checkout", [16]byte{byte(i), 1}, 10))
		if code != 200 {
			t.Fatalf("post: %d %s", code, body)
		}
	}
	deadline := time.After(10 * time.Second)
	for found := false; !found; {
		select {
		case m := <-reports:
			r, err := loadreport.Decode(m)
			if err != nil || r.Collector != e.r.d.Instance {
				continue
			}
			for _, s := range r.Services {
				if s.Name == "checkout" && s.SpansPerSec > 0 {
					found = true
				}
			}
		case <-deadline:
			t.Fatal("no load report with the checkout service's received rate")
		}
	}

	var a events.RouteAnswer
	id := "0af7651916cd43dd8448eb211c80319c"
	if err := microapi.Request(context.Background(), nc, events.Default.Endpoint(events.ServiceRouter, events.RouterOpRoute), events.RouteQuery{TraceID: id, Service: "checkout"}, &a); err != nil {
		t.Fatal(err)
	}
	if a.TraceID != id || a.Rate != 0.5 || a.Backend == "" || len(a.Fallbacks) != 1 || a.Threshold != "8" || len(a.Why) < 3 {
		t.Fatalf("route answer: %+v", a)
	}
	err = microapi.Request(context.Background(), nc, events.Default.Endpoint(events.ServiceRouter, events.RouterOpRoute), events.RouteQuery{TraceID: "xyz"}, &a)
	if microapi.CodeOf(err) != microapi.CodeBadRequest || !strings.Contains(err.Error(), "32 hex digits") {
		t.Fatalf("bad trace id: %v", err)
	}
	var st events.RouterStatus
	if err := microapi.Request(context.Background(), nc, events.Default.Endpoint(events.ServiceRouter, events.RouterOpStatus), nil, &st); err != nil {
		t.Fatal(err)
	}
	if len(st.Backends) != 2 || st.Received != 500 || st.GRPCAddr != g || st.MemoryLimit != int64(e.r.cfg.MemoryLimit) {
		t.Fatalf("status: %+v", st)
	}
}

// TestRoutingRules: a rule's target region comes first, then this router's region;
// a rule to a region without backends falls over to the others rather than refusing.
func TestRoutingRules(t *testing.T) {
	e := startRouter(t, testConfig())
	e.addBackend("b1")
	g := unlimited()
	g.RoutingRules = []fleetconfig.RoutingRule{{Service: "batch-*", TargetRegion: "us-west-2"}}
	e.putGlobal(g)
	a, err := e.r.Route(events.RouteQuery{TraceID: "0af7651916cd43dd8448eb211c80319c", Service: "batch-import"})
	if err != nil {
		t.Fatal(err)
	}
	if a.Backend != "collector."+testRegion+".b1" || !strings.Contains(strings.Join(a.Why, "\n"), `"batch-*" → region us-west-2`) {
		t.Fatalf("route: %+v", a)
	}
	pl := e.r.policy.Load().planFor([]byte("batch-import"))
	if len(pl.regions) != 2 || pl.regions[0] != "us-west-2" || pl.regions[1] != testRegion {
		t.Fatalf("regions: %v", pl.regions)
	}
}

// TestJSONOverHTTP: OTLP/JSON in, an OTLP/JSON response out, the spans at a backend.
func TestJSONOverHTTP(t *testing.T) {
	e := startRouter(t, testConfig())
	b := e.addBackend("b1")
	e.putGlobal(unlimited())
	e.putDecision(1)
	body := `{"resourceSpans":[{"resource":{"attributes":[{"key":"service.name","value":{"stringValue":"cart"}}]},"scopeSpans":[{"spans":[` +
		`{"traceId":"0102030405060708090a0b0c0d0e0f10","spanId":"0102030405060708","name":"a"},` +
		`{"traceId":"0102030405060708090a0b0c0d0e0f10","spanId":"0102030405060709","name":"b"}]}]}]}`
	code, hdr, resp := post(t, e.httpURL()+"/v1/traces", contentJSON, "gzip", gzipped([]byte(body)))
	if code != 200 || hdr.Get("Content-Type") != contentJSON || !strings.HasPrefix(resp, "{") {
		t.Fatalf("JSON export: %d %s %q", code, hdr.Get("Content-Type"), resp)
	}
	natstest.Eventually(t, 10*time.Second, func() bool { _, n := b.counts(); return n == 2 }, "spans not delivered")
}

// TestRateLimitedPartialSuccess: items over the rate limit are refused in
// partial_success (not an error), counted, and the rest delivered.
func TestRateLimitedPartialSuccess(t *testing.T) {
	e := startRouter(t, testConfig())
	b := e.addBackend("b1")
	g := unlimited()
	g.RateLimiting = fleetconfig.RateLimiting{MaxQPS: 1e6, BurstSize: 10, PerServiceLimit: 50}
	e.putGlobal(g)
	e.putDecision(1)
	code, _, body := post(t, e.httpURL()+"/v1/traces", contentProto, "", traceRequest(t, "noisy", [16]byte{7}, 500))
	if code != 200 {
		t.Fatalf("post: %d %q", code, body)
	}
	resp := ptraceotlp.NewExportResponse()
	if err := resp.UnmarshalProto([]byte(body)); err != nil {
		t.Fatal(err)
	}
	rejected := resp.PartialSuccess().RejectedSpans()
	if rejected < 400 || rejected > 500 || !strings.Contains(resp.PartialSuccess().ErrorMessage(), "rate limits") {
		t.Fatalf("partial success: %d rejected, %q", rejected, resp.PartialSuccess().ErrorMessage())
	}
	natstest.Eventually(t, 10*time.Second, func() bool { _, n := b.counts(); return n == 500-int(rejected) }, "admitted spans not delivered")
	if st := e.r.Status(); st.RateLimited != rejected {
		t.Fatalf("status rate_limited %d, want %d", st.RateLimited, rejected)
	}
}

// TestLogsAndMetrics: log records follow their trace ID (all of a trace's on one backend),
// log records without one and metrics follow their service; nothing is sampled.
func TestLogsAndMetrics(t *testing.T) {
	e := startRouter(t, testConfig())
	bs := []*backend{e.addBackend("b1"), e.addBackend("b2"), e.addBackend("b3")}
	e.putGlobal(unlimited())
	e.putDecision(0.01) // logs and metrics are not sampled
	post := func(path string, body []byte) {
		t.Helper()
		if code, _, resp := post(t, e.httpURL()+path, contentProto, "", body); code != 200 {
			t.Fatalf("%s: %d %q", path, code, resp)
		}
	}
	const traces, perTrace, untraced = 40, 4, 50
	for i := range traces {
		ld := plog.NewLogs()
		rl := ld.ResourceLogs().AppendEmpty()
		rl.Resource().Attributes().PutStr("service.name", "cart")
		for range perTrace {
			lr := rl.ScopeLogs().AppendEmpty().LogRecords().AppendEmpty()
			lr.SetTraceID(pcommon.TraceID{byte(i + 1), 9, 9})
			lr.Body().SetStr("hello")
		}
		b, _ := plogotlp.NewExportRequestFromLogs(ld).MarshalProto()
		post("/v1/logs", b)
	}
	ld := plog.NewLogs()
	rl := ld.ResourceLogs().AppendEmpty()
	rl.Resource().Attributes().PutStr("service.name", "batch")
	for range untraced {
		rl.ScopeLogs().AppendEmpty().LogRecords().AppendEmpty().Body().SetStr("no trace")
	}
	b, _ := plogotlp.NewExportRequestFromLogs(ld).MarshalProto()
	post("/v1/logs", b)
	md := pmetric.NewMetrics()
	for i := range 30 {
		rm := md.ResourceMetrics().AppendEmpty()
		rm.Resource().Attributes().PutStr("service.name", "svc-"+string(rune('a'+i%5)))
		m := rm.ScopeMetrics().AppendEmpty().Metrics().AppendEmpty()
		m.SetName("queue_depth")
		m.SetEmptyGauge().DataPoints().AppendEmpty().SetIntValue(int64(i))
	}
	b, _ = pmetricotlp.NewExportRequestFromMetrics(md).MarshalProto()
	post("/v1/metrics", b)

	want := traces*perTrace + untraced + 30
	count := func() int {
		n := 0
		for _, b := range bs {
			_, sv := b.logsAndServices()
			for _, c := range sv {
				n += c
			}
		}
		return n
	}
	natstest.Eventually(t, 10*time.Second, func() bool { return count() >= want }, "backends got %d of %d items", count(), want)
	if n := count(); n != want {
		t.Fatalf("backends got %d items, want %d", n, want)
	}
	traceAt, svcAt := map[[16]byte]string{}, map[string]string{}
	for _, b := range bs {
		lt, sv := b.logsAndServices()
		for id, n := range lt {
			if id != ([16]byte{}) && n != perTrace {
				t.Fatalf("backend %s has %d log records of trace %x, want all %d", b.id, n, id, perTrace)
			}
			if other, ok := traceAt[id]; ok {
				t.Fatalf("trace %x's logs on %s and %s", id, other, b.id)
			}
			traceAt[id] = b.id
		}
		for svc := range sv {
			if svc == "cart" {
				continue // routed by trace ID
			}
			if other, ok := svcAt[svc]; ok {
				t.Fatalf("service %s on %s and %s", svc, other, b.id)
			}
			svcAt[svc] = b.id
		}
	}
	if len(traceAt) != traces+1 || len(svcAt) != 6 {
		t.Fatalf("placements: %d traces (want %d + the untraced), %d services (want 6)", len(traceAt), traces, len(svcAt))
	}
}
