package otlpsink

import (
	"bytes"
	"compress/gzip"
	"context"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/klauspost/compress/zstd"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"
	"go.opentelemetry.io/collector/pdata/pcommon"
	"go.opentelemetry.io/collector/pdata/plog/plogotlp"
	"go.opentelemetry.io/collector/pdata/pmetric"
	"go.opentelemetry.io/collector/pdata/pmetric/pmetricotlp"
	"go.opentelemetry.io/collector/pdata/ptrace"
	"go.opentelemetry.io/collector/pdata/ptrace/ptraceotlp"
	"go.uber.org/goleak"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials/insecure"
	grpcgzip "google.golang.org/grpc/encoding/gzip"
	"google.golang.org/grpc/status"

	"github.com/otelfleet/otelfleet/pkg/events"
	"github.com/otelfleet/otelfleet/pkg/loadreport"
	"github.com/otelfleet/otelfleet/pkg/natsconn"
	"github.com/otelfleet/otelfleet/pkg/natstest"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

// startSink starts a sink on loopback ports and stops it at cleanup.
func startSink(t *testing.T, mod func(*Config), reg prometheus.Registerer) *Sink {
	t.Helper()
	cfg := DefaultConfig()
	cfg.GRPCAddr, cfg.HTTPAddr = "127.0.0.1:0", "127.0.0.1:0"
	if mod != nil {
		mod(&cfg)
	}
	s, err := New(cfg, nil, reg)
	if err != nil {
		t.Fatal(err)
	}
	if err := s.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		if err := s.Stop(ctx); err != nil {
			t.Error(err)
		}
	})
	return s
}

// traceID returns a distinct trace ID for i.
func traceID(i int) pcommon.TraceID {
	var id pcommon.TraceID
	copy(id[:], fmt.Sprintf("%016x", i+1))
	return id
}

// hexID is traceID(i) as 32 hex digits.
func hexID(i int) string {
	id := traceID(i)
	return hex.EncodeToString(id[:])
}

func spanID(i int) pcommon.SpanID {
	var id pcommon.SpanID
	id[0], id[7] = byte(i>>8), byte(i)
	return id
}

// traces builds spans of service svc: spans[i] spans for trace traceID(first+i).
func traces(svc string, first int, spans ...int) ptrace.Traces {
	td := ptrace.NewTraces()
	rs := td.ResourceSpans().AppendEmpty()
	if svc != "" {
		rs.Resource().Attributes().PutStr("service.name", svc)
	}
	ss := rs.ScopeSpans().AppendEmpty()
	for i, n := range spans {
		for j := range n {
			sp := ss.Spans().AppendEmpty()
			sp.SetTraceID(traceID(first + i))
			sp.SetSpanID(spanID(j))
			sp.SetName("op")
		}
	}
	return td
}

func grpcConn(t *testing.T, addr string) *grpc.ClientConn {
	t.Helper()
	cc, err := grpc.NewClient(addr, grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { cc.Close() })
	return cc
}

func post(t *testing.T, url, ct, enc string, body []byte) *http.Response {
	t.Helper()
	req, err := http.NewRequest(http.MethodPost, url, bytes.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	req.Header.Set("Content-Type", ct)
	if enc != "" {
		req.Header.Set("Content-Encoding", enc)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { resp.Body.Close() })
	return resp
}

func gzipped(t testing.TB, b []byte) []byte {
	var buf bytes.Buffer
	w := gzip.NewWriter(&buf)
	w.Write(b)
	if err := w.Close(); err != nil {
		t.Fatal(err)
	}
	return buf.Bytes()
}

func zstded(t testing.TB, b []byte) []byte {
	w, err := zstd.NewWriter(nil)
	if err != nil {
		t.Fatal(err)
	}
	defer w.Close()
	return w.EncodeAll(b, nil)
}

func TestCountsSpansPerTraceAndServiceOverGRPCAndHTTP(t *testing.T) {
	reg := prometheus.NewRegistry()
	s := startSink(t, nil, reg)
	ctx := context.Background()

	// gRPC: 2 traces (3 + 2 spans) of "checkout", gzip-compressed.
	client := ptraceotlp.NewGRPCClient(grpcConn(t, s.GRPCAddr()))
	if _, err := client.Export(ctx, ptraceotlp.NewExportRequestFromTraces(traces("checkout", 0, 3, 2)), grpc.UseCompressor(grpcgzip.Name)); err != nil {
		t.Fatal(err)
	}
	// gRPC with zstd: trace 2, 4 spans of "cart".
	if _, err := client.Export(ctx, ptraceotlp.NewExportRequestFromTraces(traces("cart", 2, 4)), grpc.UseCompressor(zstdName)); err != nil {
		t.Fatal(err)
	}
	// HTTP protobuf, gzip: trace 3, one span with no service.name.
	pb, _ := ptraceotlp.NewExportRequestFromTraces(traces("", 3, 1)).MarshalProto()
	if r := post(t, "http://"+s.HTTPAddr()+"/v1/traces", ctProtobuf, "gzip", gzipped(t, pb)); r.StatusCode != 200 || r.Header.Get("Content-Type") != ctProtobuf {
		t.Fatalf("protobuf post: %s %s", r.Status, r.Header.Get("Content-Type"))
	}
	// HTTP JSON, zstd: trace 0 again, with new span IDs 3..4 (3 + 2 = 5 spans).
	td := traces("checkout", 0, 5)
	td.ResourceSpans().At(0).ScopeSpans().At(0).Spans().RemoveIf(func(sp ptrace.Span) bool { return sp.SpanID()[7] < 3 })
	js, _ := ptraceotlp.NewExportRequestFromTraces(td).MarshalJSON()
	r := post(t, "http://"+s.HTTPAddr()+"/v1/traces", "application/json; charset=utf-8", zstdName, zstded(t, js))
	body, _ := io.ReadAll(r.Body)
	if r.StatusCode != 200 || r.Header.Get("Content-Type") != ctJSON {
		t.Fatalf("json post: %s %s %s", r.Status, r.Header.Get("Content-Type"), body)
	}
	resp := ptraceotlp.NewExportResponse()
	if err := resp.UnmarshalJSON(body); err != nil {
		t.Fatalf("json response %q: %v", body, err)
	}

	st := s.Stats()
	if st.Spans != 12 || st.Traces != 4 || st.Duplicates != 0 || st.Requests != 4 {
		t.Fatalf("stats = %+v, want 12 spans, 4 traces, 0 duplicates, 4 requests", st)
	}
	want := map[string]int64{"checkout": 7, "cart": 4, UnknownService: 1}
	for k, v := range want {
		if st.Services[k] != v {
			t.Errorf("service %s: %d spans, want %d (all %v)", k, st.Services[k], v, st.Services)
		}
	}
	for i, n := range []int64{5, 2, 4, 1} {
		if got := s.TraceSpans(traceID(i)); got != n {
			t.Errorf("trace %d: %d spans, want %d", i, got, n)
		}
	}
	// Newest first: trace 3 was first seen last.
	if len(st.Recent) != 4 || st.Recent[0].TraceID != hexID(3) || st.Recent[3].Spans != 5 {
		t.Errorf("recent = %+v", st.Recent)
	}
	if got := testutil.ToFloat64(s.m.items.WithLabelValues(signalTraces)); got != 12 {
		t.Errorf("otelfleet_sink_items_total{signal=traces} = %v, want 12", got)
	}
	if got := testutil.ToFloat64(s.m.spans.WithLabelValues("cart")); got != 4 {
		t.Errorf("otelfleet_sink_service_spans_total{service=cart} = %v, want 4", got)
	}
}

func TestCountsDuplicateSpans(t *testing.T) {
	s := startSink(t, nil, nil)
	client := ptraceotlp.NewGRPCClient(grpcConn(t, s.GRPCAddr()))
	req := ptraceotlp.NewExportRequestFromTraces(traces("a", 0, 3))
	for range 2 {
		if _, err := client.Export(context.Background(), req); err != nil {
			t.Fatal(err)
		}
	}
	if st := s.Stats(); st.Spans != 6 || st.Duplicates != 3 || st.Traces != 1 {
		t.Fatalf("stats = %+v, want 6 spans, 3 duplicates, 1 trace", st)
	}
	if got := testutil.ToFloat64(s.m.duplicates); got != 3 {
		t.Errorf("duplicates metric = %v, want 3", got)
	}
}

func TestForgetsOldestTraces(t *testing.T) {
	s := startSink(t, func(c *Config) { c.MaxTraces, c.RecentTraces = 3, 2 }, nil)
	client := ptraceotlp.NewGRPCClient(grpcConn(t, s.GRPCAddr()))
	if _, err := client.Export(context.Background(), ptraceotlp.NewExportRequestFromTraces(traces("a", 0, 1, 1, 1, 1, 1))); err != nil {
		t.Fatal(err)
	}
	if got := len(s.PerTrace()); got != 3 {
		t.Fatalf("remembers %d traces, want 3", got)
	}
	if s.TraceSpans(traceID(1)) != 0 || s.TraceSpans(traceID(4)) != 1 {
		t.Errorf("trace 1 should be forgotten and trace 4 remembered: %v", s.PerTrace())
	}
	st := s.Stats()
	if st.Traces != 5 || len(st.Recent) != 2 || st.Recent[0].TraceID != hexID(4) || st.Recent[1].TraceID != hexID(3) {
		t.Errorf("stats = %+v", st)
	}
	// A forgotten trace's span IDs are forgotten too: no false duplicate.
	if _, err := client.Export(context.Background(), ptraceotlp.NewExportRequestFromTraces(traces("a", 0, 1))); err != nil {
		t.Fatal(err)
	}
	if st := s.Stats(); st.Duplicates != 0 || st.Traces != 6 {
		t.Errorf("after re-sending a forgotten trace: %+v", st)
	}
}

func TestLogsAndMetrics(t *testing.T) {
	s := startSink(t, nil, nil)
	cc := grpcConn(t, s.GRPCAddr())
	lreq := plogotlp.NewExportRequest()
	sl := lreq.Logs().ResourceLogs().AppendEmpty().ScopeLogs().AppendEmpty()
	sl.LogRecords().AppendEmpty().Body().SetStr("a")
	sl.LogRecords().AppendEmpty().Body().SetStr("b")
	if _, err := plogotlp.NewGRPCClient(cc).Export(context.Background(), lreq); err != nil {
		t.Fatal(err)
	}
	md := pmetric.NewMetrics()
	m := md.ResourceMetrics().AppendEmpty().ScopeMetrics().AppendEmpty().Metrics().AppendEmpty()
	m.SetName("x")
	for range 3 {
		m.SetEmptyGauge().DataPoints().AppendEmpty().SetIntValue(1)
	}
	body, _ := pmetricotlp.NewExportRequestFromMetrics(md).MarshalProto()
	if r := post(t, "http://"+s.HTTPAddr()+"/v1/metrics", ctProtobuf, "", body); r.StatusCode != 200 {
		t.Fatalf("metrics post: %s", r.Status)
	}
	lb, _ := lreq.MarshalJSON()
	if r := post(t, "http://"+s.HTTPAddr()+"/v1/logs", ctJSON, "", lb); r.StatusCode != 200 {
		t.Fatalf("logs post: %s", r.Status)
	}
	if st := s.Stats(); st.LogRecords != 4 || st.MetricPoints != 1 || st.Spans != 0 {
		t.Fatalf("stats = %+v, want 4 log records, 1 metric point (SetEmptyGauge resets), 0 spans", st)
	}
}

func TestRefusesBadRequestsSayingWhy(t *testing.T) {
	s := startSink(t, func(c *Config) { c.MaxRequestBytes = 4096 }, nil)
	url := "http://" + s.HTTPAddr() + "/v1/traces"
	bomb := gzipped(t, bytes.Repeat([]byte{0}, 1<<20))
	pb, _ := ptraceotlp.NewExportRequestFromTraces(traces("a", 0, 1)).MarshalProto()
	// A small frame declaring a 256 MiB window (the decoder would allocate it): a frame
	// without the single-segment flag, its window descriptor set to 2^(10+18).
	wideEnc, err := zstd.NewWriter(nil, zstd.WithSingleSegment(false))
	if err != nil {
		t.Fatal(err)
	}
	wide := wideEnc.EncodeAll(pb, nil)
	_ = wideEnc.Close()
	if wide[4]&0x20 != 0 {
		t.Fatalf("frame header %x: single segment, no window descriptor", wide[:6])
	}
	wide[5] = 18 << 3
	tests := []struct {
		name, ct, enc string
		body          []byte
		code          int
		says          string
	}{
		{"garbage protobuf", ctProtobuf, "", []byte{0xff, 0xff, 0xff}, 400, "application/x-protobuf body"},
		{"garbage json", ctJSON, "", []byte("{nope"), 400, "application/json body"},
		{"bad gzip", ctProtobuf, "gzip", []byte("not gzip"), 400, "reading the body"},
		{"decompression bomb", ctProtobuf, "gzip", bomb, 413, "decompressed"},
		{"zstd window over 8 MiB", ctProtobuf, zstdName, wide, 413, "window"},
		{"oversized", ctProtobuf, "", bytes.Repeat([]byte{0}, 5000), 413, "too large"},
		{"unknown encoding", ctProtobuf, "br", pb, 415, `Content-Encoding "br"`},
		{"unknown content type", "text/plain", "", pb, 415, `Content-Type "text/plain"`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			r := post(t, url, tt.ct, tt.enc, tt.body)
			body, _ := io.ReadAll(r.Body)
			if r.StatusCode != tt.code {
				t.Fatalf("status %s, want %d (body %q)", r.Status, tt.code, body)
			}
			msg := string(body)
			if r.Header.Get("Content-Type") == ctJSON {
				var st struct{ Message string }
				json.Unmarshal(body, &st)
				msg = st.Message
			}
			if !strings.Contains(msg, tt.says) {
				t.Errorf("body %q does not say %q", msg, tt.says)
			}
		})
	}
	if r := post(t, url, ctProtobuf, "", pb); r.StatusCode != 200 {
		t.Fatalf("a good request after the bad ones: %s", r.Status)
	}
	if st := s.Stats(); st.Spans != 1 || st.Refused != int64(len(tests)) {
		t.Errorf("stats = %+v, want 1 span, %d refused", st, len(tests))
	}
	// gRPC: a message over the limit is RESOURCE_EXHAUSTED.
	big := traces("a", 0, 200)
	_, err = ptraceotlp.NewGRPCClient(grpcConn(t, s.GRPCAddr())).Export(context.Background(), ptraceotlp.NewExportRequestFromTraces(big))
	if status.Code(err) != codes.ResourceExhausted {
		t.Errorf("oversized gRPC export: %v, want RESOURCE_EXHAUSTED", err)
	}
}

func TestStatsHandler(t *testing.T) {
	s := startSink(t, nil, nil)
	client := ptraceotlp.NewGRPCClient(grpcConn(t, s.GRPCAddr()))
	if _, err := client.Export(context.Background(), ptraceotlp.NewExportRequestFromTraces(traces("a", 0, 2, 3))); err != nil {
		t.Fatal(err)
	}
	rec := httptest.NewRecorder()
	s.Handler().ServeHTTP(rec, httptest.NewRequest(http.MethodGet, "/v1/sink?recent=1", nil))
	var st Stats
	if err := json.Unmarshal(rec.Body.Bytes(), &st); err != nil {
		t.Fatalf("%v: %s", err, rec.Body)
	}
	if st.Spans != 5 || len(st.Recent) != 1 || st.Recent[0].Spans != 3 {
		t.Errorf("/v1/sink = %s", rec.Body)
	}
	rec = httptest.NewRecorder()
	s.Handler().ServeHTTP(rec, httptest.NewRequest(http.MethodGet, "/v1/sink?recent=x", nil))
	if rec.Code != 400 || !strings.Contains(rec.Body.String(), "recent") {
		t.Errorf("bad recent: %d %s", rec.Code, rec.Body)
	}
}

func TestConfigValidate(t *testing.T) {
	tests := map[string]struct {
		mod  func(*Config)
		says string
	}{
		"default":         {func(*Config) {}, ""},
		"no http":         {func(c *Config) { c.HTTPAddr = "" }, ""},
		"bad grpc addr":   {func(c *Config) { c.GRPCAddr = "4317" }, "--grpc-addr"},
		"tiny request":    {func(c *Config) { c.MaxRequestBytes = 10 }, "--max-request-bytes"},
		"no traces":       {func(c *Config) { c.MaxTraces = 0 }, "--max-traces"},
		"recent > max":    {func(c *Config) { c.MaxTraces, c.RecentTraces = 5, 10 }, "--recent-traces"},
		"no services":     {func(c *Config) { c.MaxServices = 0 }, "--max-services"},
		"negative recent": {func(c *Config) { c.RecentTraces = -1 }, "--recent-traces"},
	}
	for name, tt := range tests {
		t.Run(name, func(t *testing.T) {
			c := DefaultConfig()
			tt.mod(&c)
			err := c.Validate()
			if tt.says == "" {
				if err != nil {
					t.Fatal(err)
				}
				return
			}
			if err == nil || !strings.Contains(err.Error(), tt.says) {
				t.Fatalf("err = %v, want one naming %s", err, tt.says)
			}
		})
	}
}

func TestJoinRegistersAndReportsRealLoad(t *testing.T) {
	srv := natstest.Run(t)
	nc, js := srv.JetStream(t)
	b, err := natsconn.Provision(context.Background(), js, natsconn.DefaultLayout())
	if err != nil {
		t.Fatal(err)
	}
	ns, _ := events.NewNamespace(events.DefaultRoot)
	s := startSink(t, nil, nil)

	reports := make(chan events.LoadReport, 64)
	sub, err := nc.Subscribe(ns.LoadSubjects(), func(m *nats.Msg) {
		if r, err := loadreport.Decode(m); err == nil {
			reports <- r
		}
	})
	if err != nil {
		t.Fatal(err)
	}
	defer sub.Unsubscribe()

	m, err := s.Join(nc, b.Registry, ns, MemberConfig{Region: "eu", ID: "sink-1", CapacityQPS: 5000, Interval: 50 * time.Millisecond}, nil)
	if err != nil {
		t.Fatal(err)
	}
	var reg events.Registration
	natstest.Eventually(t, 5*time.Second, func() bool {
		e, err := b.Registry.Get(context.Background(), "collector.eu.sink-1")
		return err == nil && json.Unmarshal(e.Value(), &reg) == nil
	}, "sink not registered")
	if reg.Address != s.GRPCAddr() || reg.Metadata[MetaHTTPAddr] != s.HTTPAddr() || reg.CapacityQPS != 5000 {
		t.Errorf("registration = %+v, want address %s and http %s", reg, s.GRPCAddr(), s.HTTPAddr())
	}

	// Send spans until a report shows them: the load is what the sink received.
	client := ptraceotlp.NewGRPCClient(grpcConn(t, s.GRPCAddr()))
	deadline := time.Now().Add(10 * time.Second)
	var seen events.LoadReport
	for i := 0; time.Now().Before(deadline) && (seen.QPS == 0 || len(seen.Services) == 0); i++ {
		if _, err := client.Export(context.Background(), ptraceotlp.NewExportRequestFromTraces(traces("pay", i*10, 10, 10))); err != nil {
			t.Fatal(err)
		}
		select {
		case r := <-reports:
			seen = r
		case <-time.After(20 * time.Millisecond):
		}
	}
	if seen.QPS <= 0 || seen.BytesPerSec <= 0 || len(seen.Services) == 0 || seen.Services[0].Name != "pay" || seen.Capacity != 5000 {
		t.Fatalf("load report = %+v, want spans of service pay", seen)
	}

	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	if err := m.Stop(ctx); err != nil {
		t.Fatal(err)
	}
	if _, err := b.Registry.Get(context.Background(), "collector.eu.sink-1"); err != jetstream.ErrKeyNotFound {
		t.Errorf("after Stop: %v, want the registration deleted", err)
	}
}

func TestAdvertise(t *testing.T) {
	for in, local := range map[string]bool{"127.0.0.1:1": true, "[::1]:2": true, "host:3": true, ":4": false, "0.0.0.0:5": false, "[::]:6": false} {
		got := Advertise(in)
		if local != (got == in) || !strings.HasSuffix(got, in[strings.LastIndex(in, ":"):]) {
			t.Errorf("Advertise(%q) = %q", in, got)
		}
	}
}
