package routersvc

import (
	"bytes"
	"context"
	"errors"
	"io"
	"net/http"
	"strings"
	"testing"

	"github.com/klauspost/compress/gzip"
	"github.com/klauspost/compress/zstd"
	"go.opentelemetry.io/collector/pdata/pcommon"
	"go.opentelemetry.io/collector/pdata/ptrace"
	"go.opentelemetry.io/collector/pdata/ptrace/ptraceotlp"
	"go.uber.org/fx"
	"go.uber.org/fx/fxtest"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/status"

	"github.com/otelfleet/otelfleet/pkg/configwatch"
	"github.com/otelfleet/otelfleet/pkg/knobs"
	"github.com/otelfleet/otelfleet/pkg/platform"
	"github.com/otelfleet/otelfleet/services/router/internal/otlpwire"
)

func TestConfigValidate(t *testing.T) {
	if err := DefaultConfig().Validate(); err != nil {
		t.Fatalf("defaults: %v", err)
	}
	tests := []struct {
		name, flag string
		mutate     func(*Config)
	}{
		{"grpc addr", "--otlp-grpc-addr", func(c *Config) { c.GRPCAddr = "4317" }},
		{"http addr", "--otlp-http-addr", func(c *Config) { c.HTTPAddr = "" }},
		{"advertise with port", "--advertise-addr", func(c *Config) { c.AdvertiseAddr = "host:4317" }},
		{"tiny request", "--max-request-bytes", func(c *Config) { c.MaxRequestBytes = 10 }},
		{"decompressed below request", "--max-decompressed-bytes", func(c *Config) { c.MaxDecompressedBytes = c.MaxRequestBytes - 1 }},
		{"memory", "--memory-limit", func(c *Config) { c.MemoryLimit = 1 }},
		{"memory below a request", "--memory-limit", func(c *Config) { c.MemoryLimit = 64 << 20 }},
		{"strategy", "--balance-strategy", func(c *Config) { c.Strategy = "random" }},
		{"load factor", "--load-factor", func(c *Config) { c.LoadFactor = 1 }},
		{"rebalance", "--rebalance-interval", func(c *Config) { c.RebalanceInterval = 0 }},
		{"protocol", "--export-protocol", func(c *Config) { c.ExportProtocol = "udp" }},
		{"compression", "--export-compression", func(c *Config) { c.ExportCompression = "lz4" }},
		{"timeout", "--export-timeout", func(c *Config) { c.ExportTimeout = 0 }},
		{"queue", "--queue-bytes", func(c *Config) { c.QueueBytes = 0 }},
		{"report", "--router-report-interval", func(c *Config) { c.ReportInterval = 0 }},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			c := DefaultConfig()
			tt.mutate(&c)
			err := c.Validate()
			if !errors.Is(err, ErrConfig) || !strings.Contains(err.Error(), tt.flag) {
				t.Fatalf("Validate = %v, want ErrConfig naming %s", err, tt.flag)
			}
		})
	}
}

func TestConfigEnv(t *testing.T) {
	t.Setenv("OTLP_GRPC_ADDR", ":14317")
	t.Setenv("ROUTER_MEMORY_LIMIT", "1073741824")
	c := DefaultConfig()
	k := knobs.New(flagSet())
	c.Bind(k)
	if err := k.FlagSet().Parse([]string{"--load-factor", "1.2"}); err != nil {
		t.Fatal(err)
	}
	if c.GRPCAddr != ":14317" || c.MemoryLimit != 1<<30 || c.LoadFactor != 1.2 || c.HTTPAddr != ":4318" {
		t.Fatalf("bound config: %+v", c)
	}
}

// traceRequest encodes a request with n spans of trace id, service svc.
func traceRequest(t testing.TB, svc string, id [16]byte, n int) []byte {
	t.Helper()
	td := ptrace.NewTraces()
	rs := td.ResourceSpans().AppendEmpty()
	rs.Resource().Attributes().PutStr("service.name", svc)
	ss := rs.ScopeSpans().AppendEmpty()
	for i := range n {
		sp := ss.Spans().AppendEmpty()
		sp.SetTraceID(pcommon.TraceID(id))
		sp.SetSpanID(pcommon.SpanID{1, byte(i), byte(i >> 8), 4, 5, 6, 7, 8})
		sp.SetName("op")
	}
	b, err := ptraceotlp.NewExportRequestFromTraces(td).MarshalProto()
	if err != nil {
		t.Fatal(err)
	}
	return b
}

func post(t *testing.T, url, ctype, enc string, body []byte) (int, http.Header, string) {
	t.Helper()
	code, hdr, b, err := postWith(http.DefaultClient, url, map[string]string{"Content-Type": ctype, "Content-Encoding": enc}, body)
	if err != nil {
		t.Fatal(err)
	}
	return code, hdr, b
}

// postWith posts body to url with client c and the non-empty headers of hdr.
func postWith(c *http.Client, url string, hdr map[string]string, body []byte) (int, http.Header, string, error) {
	req, err := http.NewRequest(http.MethodPost, url, bytes.NewReader(body))
	if err != nil {
		return 0, nil, "", err
	}
	for k, v := range hdr {
		if v != "" {
			req.Header.Set(k, v)
		}
	}
	resp, err := c.Do(req)
	if err != nil {
		return 0, nil, "", err
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, resp.Header, string(b), nil
}

func gzipped(b []byte) []byte {
	var buf bytes.Buffer
	w := gzip.NewWriter(&buf)
	_, _ = w.Write(b)
	_ = w.Close()
	return buf.Bytes()
}

func zstded(b []byte) []byte {
	w, _ := zstd.NewWriter(nil)
	defer w.Close()
	return w.EncodeAll(b, nil)
}

// TestHTTPRefusals sends garbage, bombs, oversized bodies, wrong methods and content
// types: each gets its status code and a message saying what was wrong.
func TestHTTPRefusals(t *testing.T) {
	cfg := testConfig()
	cfg.MaxRequestBytes, cfg.MaxDecompressedBytes = 64<<10, 256<<10
	e := startRouter(t, cfg)
	url := e.httpURL() + "/v1/traces"
	bomb := gzipped(make([]byte, 16<<20)) // 16 MiB of zeros in ~16 KiB
	zbomb := zstded(make([]byte, 16<<20))
	tests := []struct {
		name, ctype, enc string
		body             []byte
		code             int
		msg              string
	}{
		{"garbage protobuf", contentProto, "", []byte{0x0a, 0xff, 0xff, 0x01}, http.StatusBadRequest, "malformed"},
		{"garbage json", contentJSON, "", []byte(`{"resourceSpans": [}`), http.StatusBadRequest, ""},
		{"garbage gzip", contentProto, "gzip", []byte("not gzip"), http.StatusBadRequest, "gzip"},
		{"gzip bomb", contentProto, "gzip", bomb, http.StatusRequestEntityTooLarge, "decompresses to more than"},
		{"zstd bomb", contentProto, "zstd", zbomb, http.StatusRequestEntityTooLarge, "decompresses to more than"},
		{"oversized", contentProto, "", make([]byte, 65<<10), http.StatusRequestEntityTooLarge, "more than the 65536 allowed"},
		{"unknown encoding", contentProto, "br", []byte{1}, http.StatusUnsupportedMediaType, "Content-Encoding"},
		{"unknown content type", "text/plain", "", []byte("hi"), http.StatusUnsupportedMediaType, "Content-Type"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			code, _, body := post(t, url, tt.ctype, tt.enc, tt.body)
			t.Logf("%d %q", code, body)
			if code != tt.code || !strings.Contains(body, tt.msg) {
				t.Fatalf("got %d %q, want %d containing %q", code, body, tt.code, tt.msg)
			}
		})
	}
	resp, err := http.Get(url)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusMethodNotAllowed {
		t.Fatalf("GET: %d, want 405", resp.StatusCode)
	}
}

// TestGRPCRefusals: garbage is INVALID_ARGUMENT naming the problem; a message over the
// limit is RESOURCE_EXHAUSTED.
func TestGRPCRefusals(t *testing.T) {
	cfg := testConfig()
	cfg.MaxRequestBytes, cfg.MaxDecompressedBytes = 64<<10, 256<<10
	e := startRouter(t, cfg)
	cc, err := grpc.NewClient(e.grpcAddr(), grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		t.Fatal(err)
	}
	defer cc.Close()
	invoke := func(body []byte) error {
		var out rawMsg
		return cc.Invoke(context.Background(), "/opentelemetry.proto.collector.trace.v1.TraceService/Export", &rawMsg{b: body}, &out, grpc.ForceCodecV2(rawCodec{}))
	}
	if err := invoke([]byte{0x0a, 0xff, 0xff, 0x01}); status.Code(err) != codes.InvalidArgument || !strings.Contains(err.Error(), "malformed") {
		t.Fatalf("garbage: %v", err)
	}
	if err := invoke(make([]byte, 300<<10)); status.Code(err) != codes.ResourceExhausted {
		t.Fatalf("oversized: %v", err)
	}
}

// FuzzHTTPBody drives the HTTP body path (decompression within the limit, JSON to
// protobuf, split): any input gets a result or a refusal, never a panic or more memory
// than the limit.
func FuzzHTTPBody(f *testing.F) {
	req := traceRequest(f, "checkout", [16]byte{1, 2, 3}, 3)
	f.Add(req, uint8(0), false)
	f.Add(gzipped(req), uint8(1), false)
	f.Add(zstded(req), uint8(2), false)
	f.Add([]byte(`{"resourceSpans":[{"resource":{},"scopeSpans":[{"spans":[{"traceId":"0102030405060708090a0b0c0d0e0f10","spanId":"0102030405060708","name":"x"}]}]}]}`), uint8(0), true)
	f.Add(gzipped(make([]byte, 1<<20)), uint8(1), false)
	encs := []string{"", "gzip", "zstd", "identity"}
	f.Fuzz(func(t *testing.T, raw []byte, enc uint8, isJSON bool) {
		const limit = 64 << 10
		dst := getBody()
		defer putBody(dst)
		pb, r := decodeBody(dst, otlpwire.Traces, encs[int(enc)%len(encs)], isJSON, raw, limit, nil)
		if r != nil {
			if r.msg == "" {
				t.Fatal("refusal without a message")
			}
			return
		}
		if !isJSON && len(pb) > limit {
			t.Fatalf("decoded %d bytes over the %d limit", len(pb), limit)
		}
		var sp otlpwire.Splitter
		if _, err := sp.Split(otlpwire.Traces, pb, 1, func(*otlpwire.Item) otlpwire.Verdict { return otlpwire.Verdict{Dest: 0} }); err != nil && !errors.Is(err, otlpwire.ErrMalformed) {
			t.Fatalf("split error not wrapping ErrMalformed: %v", err)
		}
	})
}

// TestBusyUntilReady: with NATS unreachable the receivers listen at once and answer
// 503 + Retry-After / UNAVAILABLE + RetryInfo until the router is ready.
func TestBusyUntilReady(t *testing.T) {
	s := platform.DefaultSettings("router")
	s.NATS.URL, s.AdminAddr, s.LogLevel, s.LogFormat = "nats://127.0.0.1:1", "127.0.0.1:0", "error", "text"
	var r *Service
	app := fxtest.New(t, platform.Options(s), platform.Module(s), configwatch.Module, Module(testConfig()), fx.Populate(&r))
	app.RequireStart()
	defer app.RequireStop()
	g, h := r.Addrs()
	code, hdr, body := post(t, "http://"+h+"/v1/traces", contentProto, "", traceRequest(t, "checkout", [16]byte{1}, 1))
	if code != http.StatusServiceUnavailable || hdr.Get("Retry-After") == "" || !strings.Contains(body, "starting") {
		t.Fatalf("HTTP before ready: %d %v %q", code, hdr, body)
	}
	cc, err := grpc.NewClient(g, grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		t.Fatal(err)
	}
	defer cc.Close()
	var out rawMsg
	err = cc.Invoke(context.Background(), "/opentelemetry.proto.collector.trace.v1.TraceService/Export", &rawMsg{b: traceRequest(t, "checkout", [16]byte{1}, 1)}, &out, grpc.ForceCodecV2(rawCodec{}))
	if d, ok := retryAfterOf(err); status.Code(err) != codes.Unavailable || !ok || d <= 0 {
		t.Fatalf("gRPC before ready: %v", err)
	}
}

// TestMethodSignal: a gRPC refusal before the handler is labelled with the signal of the
// method called.
func TestMethodSignal(t *testing.T) {
	for method, want := range map[string]string{
		"/opentelemetry.proto.collector.trace.v1.TraceService/Export":     "traces",
		"/opentelemetry.proto.collector.logs.v1.LogsService/Export":       "logs",
		"/opentelemetry.proto.collector.metrics.v1.MetricsService/Export": "metrics",
		"/opentelemetry.proto.collector.trace.v1.TraceService/Other":      "any",
		"/grpc.health.v1.Health/Check":                                    "any",
		"":                                                                "any",
	} {
		if got := methodSignal(method); got != want {
			t.Errorf("methodSignal(%q) = %q, want %q", method, got, want)
		}
	}
}
