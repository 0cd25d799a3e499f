package routersvc

import (
	"context"
	"encoding/json"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"go.opentelemetry.io/collector/pdata/pcommon"
	"go.opentelemetry.io/collector/pdata/plog"
	"go.opentelemetry.io/collector/pdata/plog/plogotlp"
	"go.opentelemetry.io/collector/pdata/pmetric"
	"go.opentelemetry.io/collector/pdata/pmetric/pmetricotlp"
	"go.opentelemetry.io/collector/pdata/ptrace"
	"go.opentelemetry.io/collector/pdata/ptrace/ptraceotlp"

	"github.com/otelfleet/otelfleet/pkg/configwatch"
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
	statuses, err := nc.SubscribeSync(events.Default.RouterStatusSubjects())
	if err != nil {
		t.Fatal(err)
	}
	defer func() { _ = statuses.Unsubscribe() }()

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

	// Traffic before sampling is what the load report carries, as a router's: what it
	// forwarded is there too, for the sampler to subtract.
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
			if r.Role != events.RoleRouter {
				t.Fatalf("router's load report has role %q", r.Role)
			}
			fwd := map[string]float64{}
			for _, f := range r.Forwarded {
				fwd[f.Name] = f.SpansPerSec
			}
			for _, s := range r.Services {
				if s.Name == "checkout" && s.SpansPerSec > 0 {
					if f := fwd["checkout"]; f <= 0 || f > s.SpansPerSec || r.ForwardedQPS > r.QPS {
						t.Fatalf("checkout received %v forwarded %v (total %v of %v): want 0 < forwarded <= received",
							s.SpansPerSec, f, r.ForwardedQPS, r.QPS)
					}
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

	// The same status is published on <root>.router.status.<instance>, stamped.
	want := "otlp.router.status." + e.r.d.Instance
	natstest.Eventually(t, 10*time.Second, func() bool {
		m, err := statuses.NextMsg(time.Second)
		if err != nil || m.Subject != want {
			return false
		}
		var pub events.RouterStatus
		return events.Decode(m.Data, &pub) == nil && pub.Router == e.r.d.Instance && pub.Received == 500 && !pub.At.IsZero() && len(pub.Backends) == 2
	}, "no router status on %s", want)
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

// tracesRequest encodes a request of traces traces × spansPer spans of service svc,
// trace IDs from first on, each trace's spans spread over the request (one span of
// every trace, then the next), as an SDK's batch holds them.
func tracesRequest(t testing.TB, svc string, first, traces, spansPer int) []byte {
	t.Helper()
	td := ptrace.NewTraces()
	rs := td.ResourceSpans().AppendEmpty()
	rs.Resource().Attributes().PutStr("service.name", svc)
	ss := rs.ScopeSpans().AppendEmpty()
	for j := range spansPer {
		for i := first; i < first+traces; i++ {
			sp := ss.Spans().AppendEmpty()
			sp.SetTraceID(pcommon.TraceID{0: 9, 7: byte(i >> 8), 15: byte(i)})
			sp.SetSpanID(pcommon.SpanID{1, byte(j), byte(i), byte(i >> 8), 5, 6, 7, 8})
			sp.SetName("op")
		}
	}
	b, err := ptraceotlp.NewExportRequestFromTraces(td).MarshalProto()
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// rejectedSpans posts body to /v1/traces and returns the spans partial_success refused.
func rejectedSpans(t *testing.T, e *env, body []byte) int64 {
	t.Helper()
	code, _, resp := post(t, e.httpURL()+"/v1/traces", contentProto, "", body)
	if code != 200 {
		t.Fatalf("post: %d %q", code, resp)
	}
	r := ptraceotlp.NewExportResponse()
	if err := r.UnmarshalProto([]byte(resp)); err != nil {
		t.Fatal(err)
	}
	if n := r.PartialSuccess().RejectedSpans(); n > 0 && !strings.Contains(r.PartialSuccess().ErrorMessage(), "rate limits") {
		t.Fatalf("partial success: %d rejected, %q", n, r.PartialSuccess().ErrorMessage())
	}
	return r.PartialSuccess().RejectedSpans()
}

// wholeTraces fails unless every trace b received has spansPer spans.
func wholeTraces(t *testing.T, b *backend, spansPer int) {
	t.Helper()
	traces, _ := b.counts()
	for id, n := range traces {
		if n != spansPer {
			t.Fatalf("trace %x arrived with %d of its %d spans", id, n, spansPer)
		}
	}
}

// TestRateLimitedPartialSuccess: traces over the rate limit are refused whole in
// partial_success (not an error), counted, and the rest delivered whole.
func TestRateLimitedPartialSuccess(t *testing.T) {
	e := startRouter(t, testConfig())
	b := e.addBackend("b1")
	g := unlimited()
	g.RateLimiting = fleetconfig.RateLimiting{MaxQPS: 1e6, BurstSize: 10, PerServiceLimit: 50}
	e.putGlobal(g)
	e.putDecision(1)
	// 100 traces of 5 spans: the bucket (one second of 50/s) holds 10 of them.
	rejected := rejectedSpans(t, e, tracesRequest(t, "noisy", 0, 100, 5))
	if rejected < 400 || rejected > 500 || rejected%5 != 0 {
		t.Fatalf("%d spans rejected, want 400 to 500 in whole traces of 5", rejected)
	}
	natstest.Eventually(t, 10*time.Second, func() bool { _, n := b.counts(); return n == 500-int(rejected) }, "admitted spans not delivered")
	wholeTraces(t, b, 5)
	if st := e.r.Status(); st.RateLimited != rejected {
		t.Fatalf("status rate_limited %d, want %d", st.RateLimited, rejected)
	}
}

// TestExampleRateLimitsAdmitABurst: with the example config's rate_limiting (max_qps
// 1e6, burst_size 1e4, per_service_limit 1e4), a fresh router takes a 1,200-span burst
// of one service whole: nothing refused.
func TestExampleRateLimitsAdmitABurst(t *testing.T) {
	e := startRouter(t, testConfig())
	b := e.addBackend("b1")
	g := fleetconfig.Defaults().Global
	if g.RateLimiting != (fleetconfig.RateLimiting{MaxQPS: 1e6, BurstSize: 1e4, PerServiceLimit: 1e4}) {
		t.Fatalf("default rate_limiting %+v: not the example's", g.RateLimiting)
	}
	e.putGlobal(g)
	e.putDecision(1)
	for r := range 3 {
		if n := rejectedSpans(t, e, tracesRequest(t, "telemetrygen", r*100, 100, 4)); n != 0 {
			t.Fatalf("request %d: %d of 400 spans refused", r, n)
		}
	}
	natstest.Eventually(t, 10*time.Second, func() bool { _, n := b.counts(); return n == 1200 }, "spans not delivered")
	wholeTraces(t, b, 4)
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

// TestPolicyFollowsConfigAndDecision: the config watcher and the decision watch apply
// their values concurrently; the policy requests read must be built from the latest of
// both (a policy built from the older decision and stored last kept the config's fallback
// sampling rate in force: traces sampled out, their clients answered OK).
func TestPolicyFollowsConfigAndDecision(t *testing.T) {
	e := startRouter(t, testConfig())
	kv, err := e.js.KeyValue(context.Background(), events.Default.SamplingBucket())
	if err != nil {
		t.Fatal(err)
	}
	var entries []jetstream.KeyValueEntry
	for v := range 2 {
		d := events.Decision{
			V: events.DecisionVersion, Version: uint64(v + 1), Leader: "test", Token: 1, At: time.Now(), IntervalMS: 1000,
			Strategy: "sampling_rate", GlobalRate: 1, DefaultRate: 1, Services: map[string]events.ServiceDecision{},
		}
		b, err := events.Encode(d)
		if err != nil {
			t.Fatal(err)
		}
		rev, err := kv.Put(context.Background(), "test-decision", b)
		if err != nil {
			t.Fatal(err)
		}
		ent, err := kv.GetRevision(context.Background(), "test-decision", rev)
		if err != nil {
			t.Fatal(err)
		}
		entries = append(entries, ent)
	}
	g := unlimited()
	for i := range 2000 {
		g.Version = uint64(100 + i)
		snap := configwatch.Snapshot{Global: g}
		var wg sync.WaitGroup
		wg.Add(2)
		go func() { defer wg.Done(); e.r.applyConfig(snap) }()
		go func() { defer wg.Done(); e.r.applyDecision(entries[i%2]) }()
		wg.Wait()
		p := e.r.policy.Load()
		if p.decision != e.r.decision.Load() || p.snap != e.r.snap.Load() {
			t.Fatalf("round %d: the policy in force was built from decision %d and config %d; in force are decision %d and config %d",
				i, p.decision.Version, p.snap.Global.Version, e.r.decision.Load().Version, e.r.snap.Load().Global.Version)
		}
	}
}
