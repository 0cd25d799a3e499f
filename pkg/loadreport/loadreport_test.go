package loadreport

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"
	"go.uber.org/goleak"

	"github.com/otelfleet/otelfleet/pkg/events"
	"github.com/otelfleet/otelfleet/pkg/loadmon"
	"github.com/otelfleet/otelfleet/pkg/natsconn"
	"github.com/otelfleet/otelfleet/pkg/natstest"
	"github.com/otelfleet/otelfleet/pkg/sysstat"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

var t0 = time.Date(2025, 3, 1, 12, 0, 0, 0, time.UTC)

func validReport() events.LoadReport {
	return events.LoadReport{
		V: 1, Region: "us-east-1", Collector: "c1", At: t0, IntervalMS: 1000,
		QPS: 1200, BytesPerSec: 600_000, QueueDepth: 12, CPU: 0.4, Memory: 200 << 20,
		AvgLatencyMS: 10, ErrorRate: 0.01, Capacity: 3000, Healthy: true,
		Services: []events.ServiceRate{{Name: "checkout", SpansPerSec: 700}, {Name: "cart", SpansPerSec: 500}},
	}
}

// provision creates the contract's streams on srv and returns a JetStream client.
func provision(t *testing.T, srv *natstest.Server) (*nats.Conn, jetstream.JetStream) {
	t.Helper()
	nc, js := srv.JetStream(t)
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if _, err := natsconn.Provision(ctx, js, natsconn.DefaultLayout()); err != nil {
		t.Fatalf("provision: %v", err)
	}
	return nc, js
}

func TestConfigValidate(t *testing.T) {
	ok := DefaultConfig()
	ok.Region, ok.Collector = "eu-west-1", "c-1"
	tests := []struct {
		name    string
		mutate  func(*Config)
		wantErr string
	}{
		{name: "defaults with identity", mutate: func(*Config) {}},
		{name: "no region", mutate: func(c *Config) { c.Region = "" }, wantErr: "region"},
		{name: "collector with a dot", mutate: func(c *Config) { c.Collector = "a.b" }, wantErr: "collector"},
		{name: "interval too short", mutate: func(c *Config) { c.Interval = time.Millisecond }, wantErr: "interval"},
		{name: "interval too long", mutate: func(c *Config) { c.Interval = 2 * time.Hour }, wantErr: "interval"},
		{name: "negative top services", mutate: func(c *Config) { c.TopServices = -1 }, wantErr: "top services"},
		{name: "no services listed", mutate: func(c *Config) { c.TopServices = 0 }},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			c := ok
			tt.mutate(&c)
			err := c.Validate()
			if tt.wantErr == "" {
				if err != nil {
					t.Fatalf("Validate: %v", err)
				}
				return
			}
			if !errors.Is(err, ErrConfigValidation) || !strings.Contains(err.Error(), tt.wantErr) {
				t.Fatalf("Validate = %v, want an ErrConfigValidation naming %q", err, tt.wantErr)
			}
		})
	}
}

func TestDecodeData(t *testing.T) {
	encode := func(mutate func(*events.LoadReport)) string {
		r := validReport()
		mutate(&r)
		// Marshal without validation so that invalid values reach the decoder.
		data, err := jsonMarshal(r)
		if err != nil {
			t.Fatal(err)
		}
		return string(data)
	}
	good := encode(func(*events.LoadReport) {})
	const subject = "otlp.load.us-east-1.c1"
	tests := []struct {
		name    string
		subject string
		data    string
		wantErr string // substring; "" means valid
	}{
		{name: "valid", subject: subject, data: good},
		{name: "other root", subject: "acme.load.us-east-1.c1", data: good},
		{name: "newer fields are ignored", subject: subject, data: strings.Replace(good, `"v":1`, `"v":1,"future":{"x":1}`, 1)},
		{name: "garbage", subject: subject, data: "\x00\xffnot json", wantErr: "invalid JSON"},
		{name: "empty", subject: subject, data: "", wantErr: "empty payload"},
		{name: "JSON array", subject: subject, data: "[1,2]", wantErr: "want"},
		{name: "missing v", subject: subject, data: strings.Replace(good, `"v":1,`, ``, 1), wantErr: `"v" is missing`},
		{name: "newer v", subject: subject, data: strings.Replace(good, `"v":1`, `"v":2`, 1), wantErr: "v=2"},
		{name: "v zero", subject: subject, data: strings.Replace(good, `"v":1`, `"v":0`, 1), wantErr: "v=0"},
		{name: "NaN as a string", subject: subject, data: strings.Replace(good, `"qps":1200`, `"qps":"NaN"`, 1), wantErr: `"qps"`},
		{name: "Infinity as a string", subject: subject, data: strings.Replace(good, `"cpu":0.4`, `"cpu":"+Inf"`, 1), wantErr: `"cpu"`},
		{name: "huge exponent", subject: subject, data: strings.Replace(good, `"qps":1200`, `"qps":1e400`, 1), wantErr: "qps"},
		{name: "negative qps", subject: subject, data: strings.Replace(good, `"qps":1200`, `"qps":-5`, 1), wantErr: "qps: -5 is negative"},
		{name: "absurd qps", subject: subject, data: strings.Replace(good, `"qps":1200`, `"qps":1e15`, 1), wantErr: "above the limit"},
		{name: "cpu above one", subject: subject, data: strings.Replace(good, `"cpu":0.4`, `"cpu":3`, 1), wantErr: "cpu"},
		{name: "error rate above one", subject: subject, data: strings.Replace(good, `"error_rate":0.01`, `"error_rate":1.5`, 1), wantErr: "error_rate"},
		{name: "negative queue", subject: subject, data: strings.Replace(good, `"queue_depth":12`, `"queue_depth":-1`, 1), wantErr: "queue_depth"},
		{name: "memory negative", subject: subject, data: strings.Replace(good, `"memory":209715200`, `"memory":-1`, 1), wantErr: "memory"},
		{name: "negative service rate", subject: subject, data: strings.Replace(good, `"spans_per_sec":700`, `"spans_per_sec":-700`, 1), wantErr: "services[0].spans_per_sec"},
		{name: "empty service name", subject: subject, data: strings.Replace(good, `"name":"cart"`, `"name":""`, 1), wantErr: "services[1].name"},
		{name: "missing at", subject: subject, data: encode(func(r *events.LoadReport) { r.At = time.Time{} }), wantErr: "at: missing"},
		{name: "invalid region token in payload", subject: subject, data: encode(func(r *events.LoadReport) { r.Region = "us east" }), wantErr: "region"},
		{name: "invalid region token in subject", subject: "otlp.load.us*.c1", data: good, wantErr: `region "us*"`},
		{name: "region mismatch", subject: "otlp.load.eu-west-1.c1", data: good, wantErr: `payload region "us-east-1" does not match the subject's region "eu-west-1"`},
		{name: "collector mismatch", subject: "otlp.load.us-east-1.c2", data: good, wantErr: `payload collector "c1" does not match`},
		{name: "subject too short", subject: "otlp.load.us-east-1", data: good, wantErr: "want <root>.load.<region>.<collector>"},
		{name: "subject too long", subject: "otlp.load.us-east-1.c1.x", data: good, wantErr: "want <root>.load"},
		{name: "not a load subject", subject: "otlp.events.us-east-1.c1", data: good, wantErr: "want <root>.load"},
		{name: "wrong type for healthy", subject: subject, data: strings.Replace(good, `"healthy":true`, `"healthy":"yes"`, 1), wantErr: `"healthy"`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			r, err := DecodeData(tt.subject, []byte(tt.data))
			if tt.wantErr == "" {
				if err != nil {
					t.Fatalf("DecodeData: %v", err)
				}
				if r.QPS != 1200 || r.Region != "us-east-1" || len(r.Services) != 2 {
					t.Fatalf("decoded %+v", r)
				}
				return
			}
			if err == nil {
				t.Fatalf("DecodeData accepted %s", tt.data)
			}
			if !errors.Is(err, ErrInvalid) || !errors.Is(err, events.ErrMalformed) {
				t.Errorf("error %v does not wrap ErrInvalid and events.ErrMalformed", err)
			}
			if !strings.Contains(err.Error(), tt.wantErr) {
				t.Errorf("error %q does not mention %q", err, tt.wantErr)
			}
		})
	}
}

func TestDecodeChecksCEType(t *testing.T) {
	msg, err := events.NewMsg("otlp.load.us-east-1.c1", "test", validReport())
	if err != nil {
		t.Fatal(err)
	}
	if _, err := Decode(msg); err != nil {
		t.Fatalf("Decode of a NewMsg message: %v", err)
	}
	msg.Header.Set(events.HeaderType, "io.otelfleet.config.changed.v1")
	if _, err := Decode(msg); err == nil || !strings.Contains(err.Error(), "is not a load report") {
		t.Fatalf("Decode with a foreign ce-type = %v", err)
	}
	msg.Header = nil
	if _, err := Decode(msg); err != nil {
		t.Fatalf("Decode without headers (plain nats pub): %v", err)
	}
	if _, err := Decode(nil); !errors.Is(err, ErrInvalid) {
		t.Fatalf("Decode(nil) = %v", err)
	}
}

func FuzzDecodeLoadReport(f *testing.F) {
	good, _ := jsonMarshal(validReport())
	f.Add("otlp.load.us-east-1.c1", good)
	f.Add("otlp.load.us-east-1.c1", []byte(`{"v":1,"region":"us-east-1","collector":"c1","at":"2025-01-01T00:00:00Z","qps":1e308}`))
	f.Add("otlp.load.x.y", []byte(`{"v":1,"region":"x","collector":"y","at":"2025-01-01T00:00:00Z","services":[{"name":"a","spans_per_sec":"NaN"}]}`))
	f.Add("a.load..b", []byte(`{}`))
	f.Add("otlp.load.us-east-1.c1", []byte(`{"v":1,"region":"us-east-1","collector":"c1","at":"2025-01-01T00:00:00Z","interval_ms":-1}`))
	f.Fuzz(func(t *testing.T, subject string, data []byte) {
		r, err := DecodeData(subject, data)
		if err != nil {
			if !errors.Is(err, ErrInvalid) || !errors.Is(err, events.ErrMalformed) {
				t.Fatalf("error %v does not wrap ErrInvalid and events.ErrMalformed", err)
			}
			return
		}
		// Whatever is accepted is valid, matches its subject, and survives a round trip.
		if err := r.Validate(); err != nil {
			t.Fatalf("accepted an invalid report: %v", err)
		}
		_, region, collector, err := ParseSubject(subject)
		if err != nil || region != r.Region || collector != r.Collector {
			t.Fatalf("accepted %s/%s on subject %q", r.Region, r.Collector, subject)
		}
		again, err := events.Encode(r)
		if err != nil {
			t.Fatalf("re-encode: %v", err)
		}
		if _, err := DecodeData(subject, again); err != nil {
			t.Fatalf("round trip: %v", err)
		}
	})
}

func TestFromSnapshot(t *testing.T) {
	snap := loadmon.Snapshot{
		At: t0, Interval: 2 * time.Second, QPS: 50, BytesPerSec: 5000, QueueDepth: -3,
		ErrorRate: 0.1, CPU: 1.2, Memory: 42, AvgLatencyMS: 7,
		Services: []loadmon.ServiceRate{{Name: "a", SpansPerSec: 30}, {Name: "b", SpansPerSec: 20}},
	}
	r := FromSnapshot(snap, 100, false)
	want := events.LoadReport{
		At: t0, IntervalMS: 2000, QPS: 50, BytesPerSec: 5000, QueueDepth: 0, ErrorRate: 0.1,
		CPU: 1, Memory: 42, AvgLatencyMS: 7, Capacity: 100, Healthy: false,
		Services: []events.ServiceRate{{Name: "a", SpansPerSec: 30}, {Name: "b", SpansPerSec: 20}},
	}
	if fmt.Sprint(r) != fmt.Sprint(want) {
		t.Fatalf("FromSnapshot =\n%+v\nwant\n%+v", r, want)
	}
}

type fixedReadings struct{ r sysstat.Reading }

func (f fixedReadings) Sample() (sysstat.Reading, error) { return f.r, nil }

// TestPublisherMonitor feeds a Monitor as a hot path would and checks that the report
// stored in the OTLP_LOAD stream carries its rates, the readings and the identity.
func TestPublisherMonitor(t *testing.T) {
	srv := natstest.Run(t)
	nc, js := provision(t, srv)
	mon, err := loadmon.New(loadmon.DefaultConfig())
	if err != nil {
		t.Fatal(err)
	}
	var healthy atomic.Bool
	src := &MonitorSource{
		Monitor:  mon,
		Readings: fixedReadings{sysstat.Reading{ProcessCPU: 0.25, ProcessRSSBytes: 64 << 20}},
		Capacity: 5000,
		Healthy:  healthy.Load,
	}
	cfg := DefaultConfig()
	cfg.Region, cfg.Collector, cfg.TopServices = "eu-west-1", "edge-7", 2
	reg := prometheus.NewRegistry()
	p, err := NewPublisher(nc, events.Default, cfg, src, nil, reg)
	if err != nil {
		t.Fatal(err)
	}
	if err := p.PublishOnce(context.Background(), t0); err != nil { // baseline
		t.Fatal(err)
	}
	mon.RecordSpans(3000, 1_500_000)
	mon.RecordError(30)
	mon.SetQueueDepth(150)
	for name, n := range map[string]int{"checkout": 1500, "cart": 1000, "debug": 500} {
		mon.RecordService(name, n)
	}
	if err := p.PublishOnce(context.Background(), t0.Add(2*time.Second)); err != nil {
		t.Fatal(err)
	}
	if got := testutil.ToFloat64(p.m.published); got != 1 {
		t.Fatalf("published_total = %v, want 1 (the baseline tick publishes nothing)", got)
	}

	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	stored, err := js.Stream(ctx, events.Default.LoadStream())
	if err != nil {
		t.Fatal(err)
	}
	var raw *jetstream.RawStreamMsg
	natstest.Eventually(t, 5*time.Second, func() bool {
		raw, err = stored.GetLastMsgForSubject(ctx, "otlp.load.eu-west-1.edge-7")
		return err == nil
	}, "report not stored: %v", err)
	msg := &nats.Msg{Subject: raw.Subject, Header: raw.Header, Data: raw.Data}
	r, err := Decode(msg)
	if err != nil {
		t.Fatalf("Decode stored report: %v", err)
	}
	if r.QPS != 1500 || r.BytesPerSec != 750_000 || r.QueueDepth != 150 || r.AvgLatencyMS != 100 {
		t.Errorf("rates = qps %v bytes/s %v queue %v latency %v, want 1500, 750000, 150, 100", r.QPS, r.BytesPerSec, r.QueueDepth, r.AvgLatencyMS)
	}
	if r.CPU != 0.25 || r.Memory != 64<<20 || r.Capacity != 5000 || r.Healthy {
		t.Errorf("cpu %v memory %v capacity %v healthy %v", r.CPU, r.Memory, r.Capacity, r.Healthy)
	}
	if r.IntervalMS != 2000 || !r.At.Equal(t0.Add(2*time.Second)) {
		t.Errorf("interval %d at %v", r.IntervalMS, r.At)
	}
	if len(r.Services) != 2 || r.Services[0].Name != "checkout" || r.Services[1].Name != "cart" || r.Services[0].SpansPerSec != 750 {
		t.Errorf("services = %+v, want checkout then cart (top 2)", r.Services)
	}
	if got := raw.Header.Get(events.HeaderType); got != "io.otelfleet.load.report.v1" {
		t.Errorf("ce-type %q", got)
	}
	if got := raw.Header.Get(events.HeaderSource); got != "otelfleet/load/eu-west-1/edge-7" {
		t.Errorf("ce-source %q", got)
	}
}

// TestPublisherLoop runs Start/Stop with a short interval and a counting source.
func TestPublisherLoop(t *testing.T) {
	srv := natstest.Run(t)
	nc := srv.Connect(t)
	sub, err := nc.SubscribeSync("otlp.load.>")
	if err != nil {
		t.Fatal(err)
	}
	var calls atomic.Int64
	src := SourceFunc(func(_ context.Context, now time.Time) (events.LoadReport, bool, error) {
		calls.Add(1)
		return events.LoadReport{QPS: float64(calls.Load()), Healthy: true}, true, nil
	})
	cfg := DefaultConfig()
	cfg.Region, cfg.Collector, cfg.Interval = "r1", "c1", 20*time.Millisecond
	p, err := NewPublisher(nc, events.Default, cfg, src, nil, nil)
	if err != nil {
		t.Fatal(err)
	}
	p.Start()
	p.Start() // no second loop
	for i := range 3 {
		msg, err := sub.NextMsg(5 * time.Second)
		if err != nil {
			t.Fatalf("report %d: %v", i, err)
		}
		r, err := Decode(msg)
		if err != nil {
			t.Fatalf("report %d: %v", i, err)
		}
		if r.IntervalMS != 20 || r.At.IsZero() {
			t.Fatalf("report %d not stamped: %+v", i, r)
		}
	}
	p.Stop()
	p.Stop()
	n := calls.Load()
	time.Sleep(60 * time.Millisecond) // a stopped loop must stay stopped
	if calls.Load() != n {
		t.Fatal("source called after Stop returned")
	}
}

func TestPublisherFailures(t *testing.T) {
	srv := natstest.Run(t)
	nc := srv.Connect(t)
	cfg := DefaultConfig()
	cfg.Region, cfg.Collector = "r1", "c1"
	tests := []struct {
		name  string
		src   SourceFunc
		stage string
	}{
		{name: "source error", stage: stageSource, src: func(context.Context, time.Time) (events.LoadReport, bool, error) {
			return events.LoadReport{}, false, errors.New("scrape failed")
		}},
		{name: "invalid report", stage: stageValidate, src: func(context.Context, time.Time) (events.LoadReport, bool, error) {
			return events.LoadReport{CPU: 7}, true, nil
		}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			reg := prometheus.NewRegistry()
			p, err := NewPublisher(nc, events.Default, cfg, tt.src, nil, reg)
			if err != nil {
				t.Fatal(err)
			}
			if err := p.PublishOnce(context.Background(), t0); err == nil {
				t.Fatal("PublishOnce succeeded")
			}
			if got := testutil.ToFloat64(p.m.failures.WithLabelValues(tt.stage)); got != 1 {
				t.Fatalf("failures{stage=%s} = %v", tt.stage, got)
			}
		})
	}
	t.Run("publish on a closed connection", func(t *testing.T) {
		closed := srv.Connect(t)
		closed.Close()
		p, err := NewPublisher(closed, events.Default, cfg, SourceFunc(func(context.Context, time.Time) (events.LoadReport, bool, error) {
			return events.LoadReport{}, true, nil
		}), nil, nil)
		if err != nil {
			t.Fatal(err)
		}
		if err := p.PublishOnce(context.Background(), t0); !errors.Is(err, nats.ErrConnectionClosed) {
			t.Fatalf("PublishOnce = %v, want ErrConnectionClosed", err)
		}
	})
	t.Run("shared registerer", func(t *testing.T) {
		reg := prometheus.NewRegistry()
		for _, id := range []string{"a", "b"} {
			c := cfg
			c.Collector = id
			if _, err := NewPublisher(nc, events.Default, c, SourceFunc(nil), nil, reg); err != nil {
				t.Fatalf("second publisher on one registry: %v", err)
			}
		}
	})
}

// TestPublisherRouter publishes a router's report: received rates as a collector's,
// role router, forwarded rates for the listed services only (cut with them).
func TestPublisherRouter(t *testing.T) {
	srv := natstest.Run(t)
	nc, _ := srv.JetStream(t)
	recv, err := loadmon.New(loadmon.DefaultConfig())
	if err != nil {
		t.Fatal(err)
	}
	fcfg := loadmon.DefaultConfig()
	fcfg.HistorySize, fcfg.TopServices = 1, fcfg.MaxServices
	fwd, err := loadmon.New(fcfg)
	if err != nil {
		t.Fatal(err)
	}
	cfg := DefaultConfig()
	cfg.Region, cfg.Collector, cfg.TopServices = "eu", "router-1", 2
	p, err := NewPublisher(nc, events.Default, cfg, &RouterSource{Received: MonitorSource{Monitor: recv}, Forwarded: fwd}, nil, nil)
	if err != nil {
		t.Fatal(err)
	}
	sub, err := nc.SubscribeSync(p.Subject())
	if err != nil {
		t.Fatal(err)
	}
	if err := p.PublishOnce(context.Background(), t0); err != nil { // baseline
		t.Fatal(err)
	}
	for name, n := range map[string]int{"checkout": 1000, "cart": 600, "debug": 200} {
		recv.RecordService(name, n)
		recv.RecordSpans(n, 0)
	}
	for name, n := range map[string]int{"checkout": 1000, "cart": 60, "debug": 2} {
		fwd.RecordService(name, n)
		fwd.RecordSpans(n, 0)
	}
	if err := p.PublishOnce(context.Background(), t0.Add(time.Second)); err != nil {
		t.Fatal(err)
	}
	msg, err := sub.NextMsg(5 * time.Second)
	if err != nil {
		t.Fatal(err)
	}
	r, err := Decode(msg)
	if err != nil {
		t.Fatal(err)
	}
	if r.Role != events.RoleRouter || r.QPS != 1800 || r.ForwardedQPS != 1062 {
		t.Errorf("role %q qps %v forwarded %v, want router 1800 1062", r.Role, r.QPS, r.ForwardedQPS)
	}
	want := []events.ServiceRate{{Name: "checkout", SpansPerSec: 1000}, {Name: "cart", SpansPerSec: 60}}
	if !slices.Equal(r.Forwarded, want) {
		t.Errorf("forwarded = %+v, want %+v (debug is cut with the received list)", r.Forwarded, want)
	}
}
