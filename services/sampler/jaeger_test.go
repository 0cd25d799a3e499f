package samplersvc

import (
	"encoding/json"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/otelfleet/otelfleet/pkg/events"
	"github.com/otelfleet/otelfleet/pkg/fleetconfig"
	"github.com/otelfleet/otelfleet/services/sampler/internal/strategy"
)

// testDecision is a decision for the example config's priority rules with fixed 0.2 as
// the base, traffic from checkout, cart and search, and one regional multiplier.
func testDecision(lowerBound float64) *events.Decision {
	p := events.SamplingParams{SamplingRate: 0.1, Strategies: []fleetconfig.Strategy{
		{Type: fleetconfig.StrategyFixed, Rate: new(0.2)},
		{Type: fleetconfig.StrategyPriorityBased, Rules: []fleetconfig.PriorityRule{
			{Priority: "high", Rate: 1.0, Services: []string{"payment", "checkout"}},
			{Priority: "normal", Rate: 0.1},
			{Priority: "low", Rate: 0.01, Services: []string{"debug", "test-*"}},
		}},
	}}
	d := strategy.Compute(p, strategy.Inputs{Services: map[string]float64{"checkout": 10, "cart": 100, "search": 1000}})
	d.V, d.Version, d.Leader, d.Token, d.At = events.DecisionVersion, 3, "s1", 9, time.Unix(1700000000, 0).UTC()
	d.Services["search"] = events.ServiceDecision{Rate: 0.05, QPS: 1000, Priority: "normal"} // as if adaptive
	d.Regions = map[string]float64{"eu-west-1": 0.5}
	d.LowerBoundTPS = lowerBound
	return &d
}

// jaegerResponse mirrors api_v2.SamplingStrategyResponse in proto3 JSON.
type jaegerResponse struct {
	StrategyType          string `json:"strategyType"`
	ProbabilisticSampling *struct {
		SamplingRate float64 `json:"samplingRate"`
	} `json:"probabilisticSampling"`
	OperationSampling *struct {
		DefaultSamplingProbability       float64           `json:"defaultSamplingProbability"`
		DefaultLowerBoundTracesPerSecond float64           `json:"defaultLowerBoundTracesPerSecond"`
		PerOperationStrategies           []json.RawMessage `json:"perOperationStrategies"`
	} `json:"operationSampling"`
}

func get(t *testing.T, h http.Handler, method, target string) (int, string, http.Header) {
	t.Helper()
	rec := httptest.NewRecorder()
	h.ServeHTTP(rec, httptest.NewRequest(method, target, nil))
	body, _ := io.ReadAll(rec.Result().Body)
	return rec.Code, string(body), rec.Result().Header
}

func TestAPIJaegerJSON(t *testing.T) {
	api := NewAPI(nil)
	api.Install(testDecision(0))
	tests := []struct {
		name   string
		target string
		rate   float64
	}{
		{name: "seen service", target: "/sampling?service=search", rate: 0.05},
		{name: "seen high-priority service", target: "/sampling?service=checkout", rate: 1},
		{name: "unseen service matching a rule", target: "/sampling?service=payment", rate: 1},
		{name: "unseen service matching a glob", target: "/sampling?service=test-e2e", rate: 0.01},
		{name: "unknown service gets the default", target: "/sampling?service=brand-new", rate: 0.2},
		{name: "any path, as Jaeger's agent", target: "/?service=search", rate: 0.05},
		{name: "api path", target: "/api/sampling?service=search", rate: 0.05},
		{name: "escaped name", target: "/sampling?service=check%6Fut", rate: 1},
		{name: "other parameters ignored", target: "/sampling?foo=bar&service=cart&x", rate: 0.2},
		{name: "region multiplier", target: "/sampling?service=search&region=eu-west-1", rate: 0.025},
		{name: "region without multiplier", target: "/sampling?service=search&region=us-east-1", rate: 0.05},
		{name: "region on an unseen service", target: "/sampling?service=payment&region=eu-west-1", rate: 0.5},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			code, body, h := get(t, api, http.MethodGet, tt.target)
			if code != http.StatusOK {
				t.Fatalf("status %d: %s", code, body)
			}
			if ct := h.Get("Content-Type"); ct != "application/json" {
				t.Fatalf("Content-Type %q", ct)
			}
			dec := json.NewDecoder(strings.NewReader(body))
			dec.DisallowUnknownFields() // the SDKs' jsonpb decoder refuses unknown fields
			var r jaegerResponse
			if err := dec.Decode(&r); err != nil {
				t.Fatalf("%v: %s", err, body)
			}
			if r.StrategyType != "PROBABILISTIC" || r.ProbabilisticSampling == nil {
				t.Fatalf("not a probabilistic strategy: %s", body)
			}
			if r.ProbabilisticSampling.SamplingRate != tt.rate {
				t.Fatalf("samplingRate %v, want %v: %s", r.ProbabilisticSampling.SamplingRate, tt.rate, body)
			}
			if r.OperationSampling != nil {
				t.Fatalf("operationSampling without a lower bound: %s", body)
			}
		})
	}
	t.Run("HEAD", func(t *testing.T) {
		if code, _, _ := get(t, api, http.MethodHead, "/sampling?service=cart"); code != http.StatusOK {
			t.Fatalf("HEAD status %d", code)
		}
	})
}

func TestAPIOperationSampling(t *testing.T) {
	api := NewAPI(nil)
	api.Install(testDecision(1.0 / 60))
	code, body, _ := get(t, api, http.MethodGet, "/sampling?service=search")
	if code != http.StatusOK {
		t.Fatalf("status %d: %s", code, body)
	}
	want := `{"strategyType":"PROBABILISTIC","probabilisticSampling":{"samplingRate":0.05},` +
		`"operationSampling":{"defaultSamplingProbability":0.05,"defaultLowerBoundTracesPerSecond":0.016666666666666666,"perOperationStrategies":[]}}`
	if body != want {
		t.Fatalf("body\n got %s\nwant %s", body, want)
	}
}

func TestAPIErrors(t *testing.T) {
	api := NewAPI(nil)
	t.Run("no decision yet", func(t *testing.T) {
		code, body, _ := get(t, api, http.MethodGet, "/sampling?service=a")
		if code != http.StatusServiceUnavailable || !strings.Contains(body, "no sampling decision yet") {
			t.Fatalf("status %d: %s", code, body)
		}
	})
	api.Install(testDecision(0))
	tests := []struct {
		name, method, target string
		code                 int
		msg                  string
	}{
		{"missing service", http.MethodGet, "/sampling", http.StatusBadRequest, "missing query parameter 'service'"},
		{"other parameters only", http.MethodGet, "/sampling?serviceName=a", http.StatusBadRequest, "missing query parameter 'service'"},
		{"repeated service", http.MethodGet, "/sampling?service=a&service=b", http.StatusBadRequest, "'service' parameter must be provided once, got 2"},
		{"repeated service, one escaped key", http.MethodGet, "/sampling?service=a&servic%65=a", http.StatusBadRequest, "must be provided once"},
		{"empty service", http.MethodGet, "/sampling?service=", http.StatusBadRequest, "'service' is empty"},
		{"bad escape", http.MethodGet, "/sampling?service=%zz", http.StatusBadRequest, "not valid URL encoding"},
		{"bad region", http.MethodGet, "/sampling?service=a&region=eu.west", http.StatusBadRequest, "query parameter 'region'"},
		{"repeated region", http.MethodGet, "/sampling?service=a&region=x&region=y", http.StatusBadRequest, "'region' parameter must be provided at most once"},
		{"POST", http.MethodPost, "/sampling?service=a", http.StatusMethodNotAllowed, "not allowed"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			code, body, h := get(t, api, tt.method, tt.target)
			if code != tt.code || !strings.Contains(body, tt.msg) {
				t.Fatalf("status %d body %q, want %d with %q", code, body, tt.code, tt.msg)
			}
			if !strings.HasPrefix(h.Get("Content-Type"), "text/plain") {
				t.Fatalf("Content-Type %q", h.Get("Content-Type"))
			}
		})
	}
}

func TestAPIServesOverHTTP(t *testing.T) {
	api := NewAPI(nil)
	api.Install(testDecision(0))
	srv := httptest.NewServer(api)
	defer srv.Close()
	resp, err := http.Get(srv.URL + "/sampling?service=cart")
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	body, _ := io.ReadAll(resp.Body)
	if resp.StatusCode != 200 || string(body) != `{"strategyType":"PROBABILISTIC","probabilisticSampling":{"samplingRate":0.2}}` {
		t.Fatalf("status %d body %s", resp.StatusCode, body)
	}
	if resp.ContentLength != int64(len(body)) {
		t.Fatalf("Content-Length %d for %d bytes", resp.ContentLength, len(body))
	}
}

func TestParseQueryAllocations(t *testing.T) {
	allocs := testing.AllocsPerRun(100, func() {
		if s, _, msg := parseQuery("service=checkout&region=eu-west-1"); s != "checkout" || msg != "" {
			t.Fatal(s, msg)
		}
	})
	if allocs != 0 {
		t.Fatalf("parseQuery allocates %v times for a plain query", allocs)
	}
}

// discardWriter is a minimal http.ResponseWriter for handler benchmarks.
type discardWriter struct{ h http.Header }

func (w *discardWriter) Header() http.Header         { return w.h }
func (w *discardWriter) Write(b []byte) (int, error) { return len(b), nil }
func (w *discardWriter) WriteHeader(int)             {}

// BenchmarkSamplingHandler measures the handler alone (no network): one request for
// one of 10,000 services of a decision.
func BenchmarkSamplingHandler(b *testing.B) {
	d := bigDecision(10_000)
	api := NewAPI(nil)
	api.Install(d)
	reqs := make([]*http.Request, 1024)
	for i := range reqs {
		reqs[i] = httptest.NewRequest(http.MethodGet, "/sampling?service=service-"+pad(i*7%10_000), nil)
	}
	w := &discardWriter{h: http.Header{}}
	b.ReportAllocs()
	i := 0
	for b.Loop() {
		api.ServeHTTP(w, reqs[i&1023])
		i++
	}
}

// BenchmarkSamplingHandlerParallel is BenchmarkSamplingHandler on every core.
func BenchmarkSamplingHandlerParallel(b *testing.B) {
	api := NewAPI(nil)
	api.Install(bigDecision(10_000))
	b.ReportAllocs()
	b.RunParallel(func(pb *testing.PB) {
		w := &discardWriter{h: http.Header{}}
		r := httptest.NewRequest(http.MethodGet, "/sampling?service=service-00042", nil)
		for pb.Next() {
			api.ServeHTTP(w, r)
		}
	})
}

// BenchmarkInstall10kServices measures what a replica does for each new decision.
func BenchmarkInstall10kServices(b *testing.B) {
	d := bigDecision(10_000)
	api := NewAPI(nil)
	b.ReportAllocs()
	for b.Loop() {
		api.Install(d)
	}
}

func pad(i int) string {
	s := "00000" + itoa(i)
	return s[len(s)-5:]
}

func itoa(i int) string {
	if i == 0 {
		return "0"
	}
	var b []byte
	for ; i > 0; i /= 10 {
		b = append([]byte{byte('0' + i%10)}, b...)
	}
	return string(b)
}

// bigDecision is a decision of the example config for n services with Zipf traffic.
func bigDecision(n int) *events.Decision {
	p := events.SamplingParams{SamplingRate: 0.1, ServiceFloorQPS: 1, Strategies: fleetconfig.Defaults().Global.SamplingStrategies}
	in := strategy.Inputs{Services: make(map[string]float64, n)}
	for i := range n {
		in.Services["service-"+pad(i)] = 1e6 / float64(i+1)
	}
	d := strategy.Compute(p, in)
	d.V, d.Version, d.Leader, d.Token, d.At = events.DecisionVersion, 1, "bench", 1, time.Now()
	return &d
}
