//go:build interop

package main

import (
	"context"
	"encoding/hex"
	"fmt"
	"io"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"go.opentelemetry.io/collector/pdata/ptrace/ptraceotlp"
	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"

	"github.com/otelfleet/otelfleet/pkg/events"
	"github.com/otelfleet/otelfleet/pkg/loadreport"
	"github.com/otelfleet/otelfleet/pkg/natstest"
	"github.com/otelfleet/otelfleet/pkg/otlpsink"
	"github.com/otelfleet/otelfleet/pkg/promscrape"
)

// The interop test (make interop) runs real OpenTelemetry Collectors, built from
// test/interop/otelcol by test/interop/build.sh; OTELFLEET_INTEROP_OTELCOL names the
// binary.

// collector is one real OpenTelemetry Collector process: OTLP/gRPC in on addr, a batch
// processor, OTLP/gRPC out to a sink, its Prometheus self-metrics on metricsURL.
type collector struct {
	name, addr, metricsURL string
	sink                   *otlpsink.Sink
}

const collectorConfig = `receivers:
  otlp:
    protocols:
      grpc:
        endpoint: %s
processors:
  batch:
    timeout: 50ms
exporters:
  otlp_grpc:
    endpoint: %s
    tls:
      insecure: true
  nop: {}
service:
  telemetry:
    logs:
      level: warn
    metrics:
      level: normal
      readers:
        - pull:
            exporter:
              prometheus:
                host: 127.0.0.1
                port: %d
                without_scope_info: true
                without_units: true
                without_type_suffix: true
  pipelines:
    traces:
      receivers: [otlp]
      processors: [batch]
      exporters: [otlp_grpc]
    logs:
      receivers: [otlp]
      exporters: [nop]
    metrics:
      receivers: [otlp]
      exporters: [nop]
`

// startCollector runs a collector exporting to a new in-process sink; cleanup stops it
// with SIGTERM (SIGKILL after 10 s).
func startCollector(t *testing.T, bin, name string) *collector {
	t.Helper()
	sink := startTestSink(t)
	c := &collector{name: name, addr: "127.0.0.1:" + strconv.Itoa(freePort(t)), sink: sink}
	mport := freePort(t)
	c.metricsURL = fmt.Sprintf("http://127.0.0.1:%d/metrics", mport)
	dir := t.TempDir()
	cfg := filepath.Join(dir, name+".yaml")
	if err := os.WriteFile(cfg, []byte(fmt.Sprintf(collectorConfig, c.addr, sink.GRPCAddr(), mport)), 0o600); err != nil {
		t.Fatal(err)
	}
	logf, err := os.Create(filepath.Join(dir, name+".log"))
	if err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command(bin, "--config", "file:"+cfg)
	cmd.Stdout, cmd.Stderr = logf, logf
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	exited := make(chan struct{})
	go func() { _ = cmd.Wait(); close(exited) }()
	t.Cleanup(func() {
		_ = cmd.Process.Signal(syscall.SIGTERM)
		select {
		case <-exited:
		case <-time.After(10 * time.Second):
			_ = cmd.Process.Kill()
			<-exited
		}
		logf.Close()
		if t.Failed() {
			out, _ := os.ReadFile(logf.Name())
			t.Logf("%s log:\n%s", name, out)
		}
	})
	natstest.Eventually(t, 30*time.Second, func() bool {
		select {
		case <-exited:
			t.Fatalf("collector %s exited at start; see its log", name)
		default:
		}
		resp, err := http.Get(c.metricsURL)
		if err != nil {
			return false
		}
		resp.Body.Close()
		return resp.StatusCode == 200
	}, "collector %s does not serve its metrics", name)
	return c
}

// acceptedSpans reads the collector's own otelcol_receiver_accepted_spans.
func (c *collector) acceptedSpans(t *testing.T) float64 {
	t.Helper()
	resp, err := http.Get(c.metricsURL)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	body, _ := io.ReadAll(resp.Body)
	var sum float64
	for _, line := range strings.Split(string(body), "\n") {
		name, _, _ := strings.Cut(line, "{")
		if strings.TrimSuffix(name, "_total") != promscrape.MetricAcceptedSpans {
			continue
		}
		f := strings.Fields(line)
		v, err := strconv.ParseFloat(f[len(f)-1], 64)
		if err == nil {
			sum += v
		}
	}
	return sum
}

// export sends td to addr over OTLP/gRPC.
func export(t *testing.T, addr string, req ptraceotlp.ExportRequest) {
	t.Helper()
	cc, err := grpc.NewClient(addr, grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		t.Fatal(err)
	}
	defer cc.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if _, err := ptraceotlp.NewGRPCClient(cc).Export(ctx, req); err != nil {
		t.Fatalf("export to %s: %v", addr, err)
	}
}

// loadReports collects the load reports of one collector.
type loadReports struct {
	mu sync.Mutex
	rs []events.LoadReport
}

func (l *loadReports) since(at time.Time) (spans float64, n int) {
	l.mu.Lock()
	defer l.mu.Unlock()
	for _, r := range l.rs {
		if r.At.After(at) {
			spans += r.QPS * float64(r.IntervalMS) / 1000
			n++
		}
	}
	return spans, n
}

func TestInteropRealCollectorsBehindTheRouter(t *testing.T) {
	bin := os.Getenv("OTELFLEET_INTEROP_OTELCOL")
	if bin == "" {
		t.Fatal("OTELFLEET_INTEROP_OTELCOL is not set: run make interop (it builds the collector with test/interop/build.sh)")
	}
	port := freePort(t)
	stop := startDev(t, t.TempDir(), port, "--sinks", "0", "--simulate=false", "--config", configWithoutRateLimits(t))
	url := "nats://127.0.0.1:" + strconv.Itoa(port)
	nc, err := nats.Connect(url)
	if err != nil {
		t.Fatal(err)
	}
	defer nc.Close()

	cols := []*collector{startCollector(t, bin, "col-a"), startCollector(t, bin, "col-b")}
	reports := map[string]*loadReports{}
	for _, c := range cols {
		reports[c.name] = &loadReports{}
		subj, _ := events.Default.LoadSubject("local", c.name)
		lr := reports[c.name]
		sub, err := nc.Subscribe(subj, func(m *nats.Msg) {
			if r, err := loadreport.Decode(m); err == nil {
				lr.mu.Lock()
				lr.rs = append(lr.rs, r)
				lr.mu.Unlock()
			}
		})
		if err != nil {
			t.Fatal(err)
		}
		defer sub.Unsubscribe()
		background(t, "--nats", url, "agent", "--region", "local", "--id", c.name, "--endpoint", c.addr,
			"--capacity-qps", "20000", "--metrics-url", c.metricsURL, "--metrics-interval", "200ms")
	}

	// 1. The agent's load report reflects spans really sent to the collector. A warm-up
	// span makes the collector create its counter; counting starts two reports later.
	a := cols[0]
	export(t, a.addr, ptraceotlp.NewExportRequestFromTraces(devTraces("warmup", 9, 1, 1)))
	natstest.Eventually(t, 10*time.Second, func() bool { return a.acceptedSpans(t) >= 1 }, "the collector does not count the warm-up span")
	mark := time.Now()
	natstest.Eventually(t, 10*time.Second, func() bool { _, n := reports[a.name].since(mark); return n >= 2 }, "no load reports from the agent")
	start := time.Now()
	const direct = 3000
	for i := range 10 {
		export(t, a.addr, ptraceotlp.NewExportRequestFromTraces(devTraces("direct", byte(10+i), 60, 5)))
	}
	natstest.Eventually(t, 15*time.Second, func() bool {
		got, _ := reports[a.name].since(start)
		return got > 0.97*direct && got < 1.03*direct
	}, "load reports of %s do not add up to the %d spans sent", a.name, direct)

	// 2. The router sends every trace, whole, to one of the two real collectors.
	natstest.Eventually(t, 20*time.Second, func() bool {
		st, ok := fetchRouterStatus(t, url)
		return ok && len(st.Backends) == 2
	}, "the router does not see the two collectors")
	st, _ := fetchRouterStatus(t, url)
	const traces, spans = 400, 4
	export(t, st.GRPCAddr, ptraceotlp.NewExportRequestFromTraces(devTraces("checkout", 1, traces/2, spans)))
	export(t, st.GRPCAddr, ptraceotlp.NewExportRequestFromTraces(devTraces("checkout", 2, traces/2, spans)))
	routed := func(c *collector) map[string]int64 {
		out := map[string]int64{}
		for id, n := range c.sink.PerTrace() {
			if id[0] == 1 || id[0] == 2 {
				out[hex.EncodeToString(id[:])] = n
			}
		}
		return out
	}
	natstest.Eventually(t, 20*time.Second, func() bool {
		var ok bool
		if st, ok = fetchRouterStatus(t, url); !ok || st.Received != traces*spans {
			return false
		}
		var total int64
		for _, c := range cols {
			for _, n := range routed(c) {
				total += n
			}
		}
		return st.Kept > 0 && total == st.Kept
	}, "the collectors did not pass on the %d spans the router kept: %+v", st.Kept, st)
	perSink := map[string]map[string]int64{}
	for _, c := range cols {
		perSink[c.name] = routed(c)
		if len(perSink[c.name]) == 0 {
			t.Errorf("%s got no traces from the router", c.name)
		}
		if d := c.sink.Stats().Duplicates; d != 0 {
			t.Errorf("%s passed on %d duplicate spans", c.name, d)
		}
		t.Logf("%s: %d traces from the router", c.name, len(perSink[c.name]))
	}
	wholeOnOne(t, perSink, spans)
	// The collectors' own accepted-spans metrics agree with what reached their sinks.
	for _, c := range cols {
		want := float64(c.sink.Stats().Spans)
		natstest.Eventually(t, 5*time.Second, func() bool { return c.acceptedSpans(t) == want }, "%s accepted %v spans, its sink got %v", c.name, c.acceptedSpans(t), want)
	}
	if code := stop(); code != exitOK {
		t.Fatalf("dev exited %d", code)
	}
}
