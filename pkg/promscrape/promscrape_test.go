package promscrape

import (
	"context"
	"errors"
	"fmt"
	"math"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/prometheus/common/expfmt"
	"github.com/prometheus/common/model"
	"go.uber.org/goleak"

	"github.com/otelfleet/otelfleet/pkg/events"
	"github.com/otelfleet/otelfleet/pkg/loadreport"
	"github.com/otelfleet/otelfleet/pkg/natstest"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

var _ loadreport.Source = (*Source)(nil)

var t0 = time.Date(2025, 3, 1, 12, 0, 0, 0, time.UTC)

// page is the state a fake collector exposes.
type page struct {
	accepted     [2]float64 // grpc, http transports
	refused      float64
	queue, qcap  float64
	cpu, rss     float64
	newStyle     bool // OpenTelemetry-SDK style names: _total on counters, _bytes on rss
	openMetrics  bool
	extraMetrics bool
}

// text renders p in the Prometheus text format the way a collector does: HELP and TYPE
// lines, resource labels on every series, other families around ours.
func (p page) text() string {
	var b strings.Builder
	total, bytes := "", ""
	if p.newStyle {
		total, bytes = "_total", "_bytes"
	}
	res := `service_instance_id="5b0c2c4e",service_name="otelcol-contrib",service_version="0.115.0"`
	if p.newStyle {
		res = `otel_scope_name="go.opentelemetry.io/collector/receiver/receiverhelper",otel_scope_version=""`
	}
	fam := func(name, typ, help string, series ...string) {
		fmt.Fprintf(&b, "# HELP %s %s\n# TYPE %s %s\n", name, help, name, typ)
		for _, s := range series {
			b.WriteString(s + "\n")
		}
	}
	if p.extraMetrics {
		fam("otelcol_exporter_sent_spans"+total, "counter", "Number of spans successfully sent to destination.",
			fmt.Sprintf(`otelcol_exporter_sent_spans%s{exporter="otlp",%s} 99999`, total, res))
		fam("otelcol_process_uptime"+total, "counter", "Uptime of the process", fmt.Sprintf(`otelcol_process_uptime%s{%s} 42.5`, total, res))
		fam("otelcol_processor_batch_batch_send_size", "histogram", "Number of units in the batch",
			`otelcol_processor_batch_batch_send_size_bucket{le="10"} 1`,
			`otelcol_processor_batch_batch_send_size_bucket{le="+Inf"} 2`,
			`otelcol_processor_batch_batch_send_size_sum 30`,
			`otelcol_processor_batch_batch_send_size_count 2`)
	}
	fam("otelcol_receiver_accepted_spans"+total, "counter", "Number of spans successfully pushed into the pipeline.",
		fmt.Sprintf(`otelcol_receiver_accepted_spans%s{receiver="otlp",%s,transport="grpc"} %g`, total, res, p.accepted[0]),
		fmt.Sprintf(`otelcol_receiver_accepted_spans%s{receiver="otlp",%s,transport="http"} %g`, total, res, p.accepted[1]))
	fam("otelcol_receiver_refused_spans"+total, "counter", "Number of spans that could not be pushed into the pipeline.",
		fmt.Sprintf(`otelcol_receiver_refused_spans%s{receiver="otlp",%s,transport="grpc"} %g`, total, res, p.refused),
		fmt.Sprintf(`otelcol_receiver_refused_spans%s{receiver="otlp",%s,transport="http"} 0`, total, res))
	fam("otelcol_exporter_queue_size", "gauge", "Current size of the retry queue (in batches)",
		fmt.Sprintf(`otelcol_exporter_queue_size{data_type="traces",exporter="otlp/a",%s} %g`, res, p.queue/2),
		fmt.Sprintf(`otelcol_exporter_queue_size{data_type="traces",exporter="otlp/b",%s} %g`, res, p.queue/2))
	fam("otelcol_exporter_queue_capacity", "gauge", "Fixed capacity of the retry queue (in batches)",
		fmt.Sprintf(`otelcol_exporter_queue_capacity{data_type="traces",exporter="otlp/a",%s} %g`, res, p.qcap/2),
		fmt.Sprintf(`otelcol_exporter_queue_capacity{data_type="traces",exporter="otlp/b",%s} %g`, res, p.qcap/2))
	fam("otelcol_process_cpu_seconds"+total, "counter", "Total CPU user and system time in seconds",
		fmt.Sprintf(`otelcol_process_cpu_seconds%s{%s} %g`, total, res, p.cpu))
	fam("otelcol_process_memory_rss"+bytes, "gauge", "Total physical memory (resident set size)",
		fmt.Sprintf(`otelcol_process_memory_rss%s{%s} %g`, bytes, res, p.rss))
	return b.String()
}

// om renders p in OpenMetrics 1.0: counter families named without _total, samples with.
func (p page) om() string {
	return fmt.Sprintf(`# TYPE otelcol_receiver_accepted_spans counter
# HELP otelcol_receiver_accepted_spans Number of spans successfully pushed into the pipeline.
otelcol_receiver_accepted_spans_total{receiver="otlp",transport="grpc"} %g
otelcol_receiver_accepted_spans_total{receiver="otlp",transport="http"} %g
# TYPE otelcol_receiver_refused_spans counter
otelcol_receiver_refused_spans_total{receiver="otlp",transport="grpc"} %g
# TYPE otelcol_exporter_queue_size gauge
otelcol_exporter_queue_size{exporter="otlp"} %g
# TYPE otelcol_exporter_queue_capacity gauge
otelcol_exporter_queue_capacity{exporter="otlp"} %g
# TYPE otelcol_process_cpu_seconds counter
# UNIT otelcol_process_cpu_seconds seconds
otelcol_process_cpu_seconds_total %g
# TYPE otelcol_process_memory_rss_bytes gauge
# UNIT otelcol_process_memory_rss_bytes bytes
otelcol_process_memory_rss_bytes %g
# EOF
`, p.accepted[0], p.accepted[1], p.refused, p.queue, p.qcap, p.cpu, p.rss)
}

// fakeCollector serves whatever page is current, in its format.
type fakeCollector struct {
	mu     sync.Mutex
	p      page
	status int
	live   func(*page) // if set, updates the page at every request
	*httptest.Server
}

func newFakeCollector(t *testing.T, p page) *fakeCollector {
	t.Helper()
	f := &fakeCollector{p: p, status: http.StatusOK}
	f.Server = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		f.mu.Lock()
		if f.live != nil {
			f.live(&f.p)
		}
		p, status := f.p, f.status
		f.mu.Unlock()
		if status != http.StatusOK {
			http.Error(w, "down", status)
			return
		}
		if p.openMetrics {
			w.Header().Set("Content-Type", string(expfmt.FmtOpenMetrics_1_0_0))
			fmt.Fprint(w, p.om())
			return
		}
		w.Header().Set("Content-Type", string(expfmt.FmtText))
		fmt.Fprint(w, p.text())
	}))
	t.Cleanup(f.Close)
	return f
}

func (f *fakeCollector) set(fn func(*page), status int) {
	f.mu.Lock()
	defer f.mu.Unlock()
	fn(&f.p)
	f.status = status
}

func base() page {
	return page{accepted: [2]float64{1000, 500}, refused: 15, queue: 40, qcap: 2000, cpu: 12.5, rss: 150e6}
}

func TestParse(t *testing.T) {
	want := Sample{AcceptedSpans: 1500, RefusedSpans: 15, QueueSize: 40, QueueCapacity: 2000, CPUSeconds: 12.5, RSSBytes: 150e6,
		Found: FoundAccepted | FoundRefused | FoundQueueSize | FoundQueueCapacity | FoundCPU | FoundRSS}
	p := base()
	newStyle, withExtra, om := p, p, p
	newStyle.newStyle = true
	withExtra.extraMetrics, withExtra.newStyle = true, true
	om.openMetrics = true
	tests := []struct {
		name    string
		body    string
		format  expfmt.Format
		want    Sample
		wantErr error
	}{
		{name: "text, classic names", body: p.text(), format: expfmt.FmtText, want: want},
		{name: "text, _total and _bytes suffixes", body: newStyle.text(), format: expfmt.FmtText, want: want},
		{name: "text with other families and a histogram", body: withExtra.text(), format: expfmt.FmtText, want: want},
		{name: "unknown content type read as text", body: p.text(), format: expfmt.FmtUnknown, want: want},
		{name: "OpenMetrics 1.0", body: om.om(), format: expfmt.FmtOpenMetrics_1_0_0, want: want},
		{name: "untyped series", body: "otelcol_exporter_queue_size{a=\"1\"} 3\notelcol_exporter_queue_size{a=\"2\"} 4\n", format: expfmt.FmtText,
			want: Sample{QueueSize: 7, Found: FoundQueueSize}},
		{name: "dotted names", body: "# TYPE \"otelcol.process.memory.rss\" gauge\n{\"otelcol.process.memory.rss\"} 5\n", format: expfmt.FmtText.WithEscapingScheme(model.NoEscaping),
			want: Sample{RSSBytes: 5, Found: FoundRSS}},
		{name: "NaN series ignored", body: "otelcol_process_cpu_seconds_total{a=\"1\"} NaN\notelcol_process_cpu_seconds_total{a=\"2\"} 2\n", format: expfmt.FmtText,
			want: Sample{CPUSeconds: 2, Found: FoundCPU}},
		{name: "not a collector", body: "# TYPE go_goroutines gauge\ngo_goroutines 12\n", format: expfmt.FmtText, wantErr: ErrNoCollectorMetrics},
		{name: "empty page", body: "", format: expfmt.FmtText, wantErr: ErrNoCollectorMetrics},
		{name: "garbage", body: "<html><body>hello</body></html>\n", format: expfmt.FmtText, wantErr: ErrMalformed},
		{name: "bad value", body: "otelcol_exporter_queue_size twelve\n", format: expfmt.FmtText, wantErr: ErrMalformed},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := Parse(strings.NewReader(tt.body), tt.format)
			if tt.wantErr != nil {
				if !errors.Is(err, tt.wantErr) {
					t.Fatalf("Parse = %v, want %v", err, tt.wantErr)
				}
				return
			}
			if err != nil {
				t.Fatalf("Parse: %v", err)
			}
			if got != tt.want {
				t.Fatalf("Parse =\n%+v\nwant\n%+v", got, tt.want)
			}
		})
	}
}

func TestLoad(t *testing.T) {
	prev := Sample{At: t0, AcceptedSpans: 1000, RefusedSpans: 10, CPUSeconds: 10, Found: FoundAccepted | FoundRefused | FoundCPU}
	cfg := SourceConfig{Capacity: 5000, NumCPU: 4}
	tests := []struct {
		name string
		cur  Sample
		want events.LoadReport
	}{
		{
			name: "rates over two seconds",
			cur:  Sample{At: t0.Add(2 * time.Second), AcceptedSpans: 3000, RefusedSpans: 10, CPUSeconds: 14, QueueSize: 100, QueueCapacity: 1000, RSSBytes: 1e8, Found: prev.Found},
			want: events.LoadReport{At: t0.Add(2 * time.Second), IntervalMS: 2000, QPS: 1000, QueueDepth: 100, CPU: 0.5, Memory: 1e8, AvgLatencyMS: 100, Capacity: 5000, Healthy: true},
		},
		{
			name: "error rate from refused over all",
			cur:  Sample{At: t0.Add(time.Second), AcceptedSpans: 1900, RefusedSpans: 110, Found: prev.Found},
			want: events.LoadReport{At: t0.Add(time.Second), IntervalMS: 1000, QPS: 900, ErrorRate: 0.1, Capacity: 5000, Healthy: true},
		},
		{
			name: "counter reset: the collector restarted",
			cur:  Sample{At: t0.Add(time.Second), AcceptedSpans: 300, RefusedSpans: 0, CPUSeconds: 1, Found: prev.Found},
			want: events.LoadReport{At: t0.Add(time.Second), IntervalMS: 1000, QPS: 300, CPU: 0.25, Capacity: 5000, Healthy: true},
		},
		{
			name: "full queue is unhealthy",
			cur:  Sample{At: t0.Add(time.Second), AcceptedSpans: 1000, RefusedSpans: 10, CPUSeconds: 10, QueueSize: 1000, QueueCapacity: 1000, Found: prev.Found},
			want: events.LoadReport{At: t0.Add(time.Second), IntervalMS: 1000, QueueDepth: 1000, Capacity: 5000, Healthy: false},
		},
		{
			name: "cpu capped at the machine",
			cur:  Sample{At: t0.Add(time.Second), AcceptedSpans: 1000, RefusedSpans: 10, CPUSeconds: 20, Found: prev.Found},
			want: events.LoadReport{At: t0.Add(time.Second), IntervalMS: 1000, CPU: 1, Capacity: 5000, Healthy: true},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got := Load(prev, tt.cur, cfg)
			if fmt.Sprint(got) != fmt.Sprint(tt.want) {
				t.Fatalf("Load =\n%+v\nwant\n%+v", got, tt.want)
			}
		})
	}
}

// TestSourceAgainstHTTP scrapes a fake collector serving the real text format through a
// baseline, a busy interval, a restart (counter reset), an outage and a recovery.
func TestSourceAgainstHTTP(t *testing.T) {
	for _, style := range []string{"classic", "suffixed", "openmetrics"} {
		t.Run(style, func(t *testing.T) {
			p := base()
			p.newStyle = style == "suffixed"
			p.openMetrics = style == "openmetrics"
			fc := newFakeCollector(t, p)
			cfg := DefaultConfig()
			cfg.URL = fc.URL + "/metrics"
			sc, err := New(cfg)
			if err != nil {
				t.Fatal(err)
			}
			clock := t0
			sc.now = func() time.Time { return clock }
			src, err := NewSource(sc, SourceConfig{Capacity: 8000, NumCPU: 2}, nil)
			if err != nil {
				t.Fatal(err)
			}
			ctx := context.Background()

			if _, ok, err := src.Report(ctx, clock); ok || err != nil {
				t.Fatalf("first report: ok %v err %v, want a silent baseline", ok, err)
			}

			// 2 s later: +4000 grpc, +2000 http, +600 refused, +1 s CPU.
			fc.set(func(p *page) {
				p.accepted[0] += 4000
				p.accepted[1] += 2000
				p.refused += 600
				p.cpu += 1
				p.queue = 300
				p.rss = 2e8
			}, http.StatusOK)
			clock = clock.Add(2 * time.Second)
			r, ok, err := src.Report(ctx, clock)
			if !ok || err != nil {
				t.Fatalf("report: ok %v err %v", ok, err)
			}
			if r.QPS != 3000 || r.QueueDepth != 300 || r.CPU != 0.25 || r.Memory != 2e8 || !r.Healthy || r.Capacity != 8000 {
				t.Fatalf("busy interval: %+v", r)
			}
			if math.Abs(r.ErrorRate-600.0/6600) > 1e-12 || r.AvgLatencyMS != 100 {
				t.Fatalf("error rate %v latency %v", r.ErrorRate, r.AvgLatencyMS)
			}
			// The collector's own readings judge its registration's health.
			if rd, err := src.Sample(); err != nil || rd.ProcessCPUShare != 0.25 || rd.ProcessRSSBytes != 2e8 || rd.HostCPU != 0 {
				t.Fatalf("collector readings %+v, %v", rd, err)
			}
			if c := src.QueueCheck(ctx); c.Status != events.HealthHealthy || !strings.Contains(c.Message, "15%") {
				t.Fatalf("queue check at 300 of 2000: %+v", c)
			}
			fc.set(func(p *page) { p.queue = 1900 }, http.StatusOK)
			clock = clock.Add(time.Second)
			if _, _, err := src.Report(ctx, clock); err != nil {
				t.Fatal(err)
			}
			if c := src.QueueCheck(ctx); c.Status != events.HealthDegraded {
				t.Fatalf("queue check at 95%%: %+v", c)
			}
			fc.set(func(p *page) { p.queue = 2000 }, http.StatusOK)
			clock = clock.Add(time.Second)
			if r, _, _ := src.Report(ctx, clock); r.Healthy {
				t.Fatal("full queues reported healthy")
			}
			if c := src.QueueCheck(ctx); c.Status != events.HealthUnhealthy {
				t.Fatalf("queue check at 100%%: %+v", c)
			}
			fc.set(func(p *page) { p.queue = 300 }, http.StatusOK)

			// The collector restarts: counters start again from zero.
			fc.set(func(p *page) { p.accepted = [2]float64{700, 300}; p.refused = 0; p.cpu = 0.5 }, http.StatusOK)
			clock = clock.Add(time.Second)
			r, ok, _ = src.Report(ctx, clock)
			if !ok || r.QPS != 1000 || r.ErrorRate != 0 || r.CPU != 0.25 {
				t.Fatalf("after reset: ok %v %+v", ok, r)
			}

			// The metrics endpoint fails: the collector is reported unhealthy.
			fc.set(func(*page) {}, http.StatusServiceUnavailable)
			clock = clock.Add(time.Second)
			r, ok, err = src.Report(ctx, clock)
			if !ok || err != nil || r.Healthy || r.QPS != 0 || r.Capacity != 8000 {
				t.Fatalf("outage: ok %v err %v %+v", ok, err, r)
			}
			if src.LastError() == nil || !strings.Contains(src.LastError().Error(), "503") {
				t.Fatalf("LastError = %v", src.LastError())
			}
			if c := src.QueueCheck(ctx); c.Status != events.HealthUnhealthy || !strings.Contains(c.Message, "failing") {
				t.Fatalf("queue check in an outage: %+v", c)
			}
			if _, err := src.Sample(); !errors.Is(err, ErrNoReadings) {
				t.Fatalf("readings in an outage: %v", err)
			}

			// Recovery: the rate covers the whole gap since the last good scrape.
			fc.set(func(p *page) { p.accepted[0] += 2000 }, http.StatusOK)
			clock = clock.Add(time.Second)
			r, ok, _ = src.Report(ctx, clock)
			if !ok || !r.Healthy || r.QPS != 1000 || r.IntervalMS != 2000 {
				t.Fatalf("recovery: ok %v %+v", ok, r)
			}
		})
	}
}

func TestScrapeErrors(t *testing.T) {
	tests := []struct {
		name    string
		handler http.HandlerFunc
		max     int64
		wantErr string
	}{
		{name: "not found", handler: func(w http.ResponseWriter, _ *http.Request) { http.NotFound(w, nil) }, wantErr: "HTTP 404"},
		{name: "not a collector", handler: func(w http.ResponseWriter, _ *http.Request) { fmt.Fprintln(w, "go_goroutines 3") }, wantErr: "no OpenTelemetry Collector metrics"},
		{name: "too large", max: 100, handler: func(w http.ResponseWriter, _ *http.Request) { fmt.Fprint(w, base().text()) }, wantErr: "larger than 100 bytes"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			srv := httptest.NewServer(tt.handler)
			defer srv.Close()
			cfg := DefaultConfig()
			cfg.URL = srv.URL
			if tt.max > 0 {
				cfg.MaxBytes = tt.max
			}
			sc, err := New(cfg)
			if err != nil {
				t.Fatal(err)
			}
			_, err = sc.Scrape(context.Background())
			if err == nil || !strings.Contains(err.Error(), tt.wantErr) || !strings.Contains(err.Error(), srv.URL) {
				t.Fatalf("Scrape = %v, want an error naming the URL and %q", err, tt.wantErr)
			}
		})
	}
	t.Run("page exactly at the limit", func(t *testing.T) {
		body := base().text()
		srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) { fmt.Fprint(w, body) }))
		defer srv.Close()
		cfg := DefaultConfig()
		cfg.URL, cfg.MaxBytes = srv.URL, int64(len(body))
		sc, _ := New(cfg)
		if _, err := sc.Scrape(context.Background()); err != nil {
			t.Fatalf("Scrape: %v", err)
		}
	})
}

func TestConfigValidate(t *testing.T) {
	tests := []struct {
		name    string
		cfg     func() Config
		wantErr string
	}{
		{name: "ok", cfg: func() Config { c := DefaultConfig(); c.URL = "http://127.0.0.1:8888/metrics"; return c }},
		{name: "no url", cfg: DefaultConfig, wantErr: "url: empty"},
		{name: "no scheme", cfg: func() Config { c := DefaultConfig(); c.URL = "127.0.0.1:8888/metrics"; return c }, wantErr: "url"},
		{name: "ftp", cfg: func() Config { c := DefaultConfig(); c.URL = "ftp://h/metrics"; return c }, wantErr: "scheme must be http or https"},
		{name: "zero timeout", cfg: func() Config { c := DefaultConfig(); c.URL = "http://h"; c.Timeout = 0; return c }, wantErr: "timeout"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			err := tt.cfg().Validate()
			if tt.wantErr == "" {
				if err != nil {
					t.Fatal(err)
				}
				return
			}
			if !errors.Is(err, ErrConfigValidation) || !strings.Contains(err.Error(), tt.wantErr) {
				t.Fatalf("Validate = %v, want %q", err, tt.wantErr)
			}
		})
	}
	if err := (SourceConfig{Capacity: -1}).Validate(); !errors.Is(err, ErrConfigValidation) {
		t.Fatalf("negative capacity: %v", err)
	}
}

// TestAgentPublishesScrapedLoad is the agent's pipeline end to end: a fake collector's
// metrics page, scraped by a Source, published by a loadreport.Publisher on a real NATS
// server, decoded by loadreport.Decode, carries the collector's real rate and queue.
func TestAgentPublishesScrapedLoad(t *testing.T) {
	// The collector accepts 100 spans per millisecond of wall time (100 000 spans/s),
	// computed when it is scraped, with 250 batches queued.
	start := time.Now()
	fc := newFakeCollector(t, base())
	fc.live = func(p *page) {
		p.accepted = [2]float64{float64(time.Since(start).Microseconds()) / 10, 0}
		p.queue = 250
	}
	srv := natstest.Run(t)
	nc := srv.Connect(t)
	sub, err := nc.SubscribeSync("otlp.load.>")
	if err != nil {
		t.Fatal(err)
	}
	cfg := DefaultConfig()
	cfg.URL = fc.URL + "/metrics"
	sc, err := New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	src, err := NewSource(sc, SourceConfig{Capacity: 10000}, nil)
	if err != nil {
		t.Fatal(err)
	}
	pcfg := loadreport.DefaultConfig()
	pcfg.Region, pcfg.Collector, pcfg.Interval = "us-east-1", "otelcol-1", 50*time.Millisecond
	pub, err := loadreport.NewPublisher(nc, events.Default, pcfg, src, nil, nil)
	if err != nil {
		t.Fatal(err)
	}
	pub.Start()
	defer pub.Stop()
	for i := range 3 {
		msg, err := sub.NextMsg(5 * time.Second)
		if err != nil {
			t.Fatalf("report %d: %v", i, err)
		}
		r, err := loadreport.Decode(msg)
		if err != nil {
			t.Fatalf("report %d: %v", i, err)
		}
		if r.Region != "us-east-1" || r.Collector != "otelcol-1" || r.QueueDepth != 250 || !r.Healthy || r.Capacity != 10000 {
			t.Fatalf("report %d: %+v", i, r)
		}
		// Scrape times and page updates jitter by a few ms over a 50 ms interval.
		if r.QPS < 60_000 || r.QPS > 140_000 {
			t.Fatalf("report %d: qps %v, want about 100000", i, r.QPS)
		}
	}
}
