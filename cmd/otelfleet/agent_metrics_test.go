package main

import (
	"context"
	"fmt"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"sync/atomic"
	"testing"
	"time"

	"github.com/otelfleet/otelfleet/pkg/events"
	"github.com/otelfleet/otelfleet/pkg/loadreport"
	"github.com/otelfleet/otelfleet/pkg/natstest"
)

// TestAgentMetricsTask runs the agent's load reporter against a fake collector serving
// the Prometheus text format and checks the published reports carry its real rate and
// queue depth.
func TestAgentMetricsTask(t *testing.T) {
	// 50 spans per millisecond of wall time: 50 000 spans/s, computed at each scrape.
	start := time.Now()
	collector := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) {
		w.Header().Set("Content-Type", "text/plain; version=0.0.4; charset=utf-8")
		fmt.Fprintf(w, "# TYPE otelcol_receiver_accepted_spans_total counter\notelcol_receiver_accepted_spans_total{receiver=\"otlp\",transport=\"grpc\"} %d\n", time.Since(start).Microseconds()/20)
		fmt.Fprint(w, "# TYPE otelcol_exporter_queue_size gauge\notelcol_exporter_queue_size{exporter=\"otlp\"} 42\n")
		fmt.Fprint(w, "# TYPE otelcol_process_memory_rss_bytes gauge\notelcol_process_memory_rss_bytes 1.5e+08\n")
	}))
	defer collector.Close()

	srv := natstest.Run(t)
	nc := srv.Connect(t)
	sub, err := nc.SubscribeSync("otlp.load.>")
	if err != nil {
		t.Fatal(err)
	}
	o := agentMetricsOptions{url: collector.URL + "/metrics", interval: 100 * time.Millisecond}
	task, err := agentMetricsTask(nc, events.Default, "eu-west-1", "otelcol-a", 80000, o, discardLog(), nil)
	if err != nil || task == nil {
		t.Fatalf("task %v, err %v", task, err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- task(ctx) }()
	for i := range 3 {
		msg, err := sub.NextMsg(5 * time.Second)
		if err != nil {
			t.Fatalf("report %d: %v", i, err)
		}
		r, err := loadreport.Decode(msg)
		if err != nil {
			t.Fatal(err)
		}
		if r.QueueDepth != 42 || r.Capacity != 80000 || r.Memory != 150e6 || r.QPS < 35000 || r.QPS > 65000 || msg.Header.Get(events.HeaderSource) != "otelfleet/agent/eu-west-1/otelcol-a" {
			t.Fatalf("report %d: %+v", i, r)
		}
	}
	cancel()
	if err := <-done; err != nil {
		t.Fatal(err)
	}

	if task, err := agentMetricsTask(nc, events.Default, "r", "c", 0, agentMetricsOptions{}, discardLog(), nil); task != nil || err != nil {
		t.Fatal("no --metrics-url must mean no task")
	}
	for name, o := range map[string]agentMetricsOptions{
		"bad scheme":    {url: "ftp://x/metrics", interval: time.Second},
		"zero interval": {url: "http://x/metrics"},
		"negative cpus": {url: "http://x/metrics", interval: time.Second, cpus: -1},
	} {
		if err := o.validate(); err == nil {
			t.Errorf("%s: validate accepted %+v", name, o)
		}
	}
}

func discardLog() *slog.Logger { return slog.New(slog.DiscardHandler) }

// TestAgentCommandReportsLoad runs `otelfleet agent --metrics-url` end to end: the
// collector is registered and its scraped load is published until Ctrl-C.
func TestAgentCommandReportsLoad(t *testing.T) {
	var scrapes atomic.Int64
	collector := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) {
		n := scrapes.Add(1)
		w.Header().Set("Content-Type", "text/plain; version=0.0.4; charset=utf-8")
		// 1000 spans more at every scrape; 7 batches queued.
		fmt.Fprintf(w, "otelcol_receiver_accepted_spans{receiver=\"otlp\"} %d\notelcol_exporter_queue_size 7\n", n*1000)
	}))
	defer collector.Close()
	srv, b := provisioned(t)
	nc := srv.Connect(t)
	sub, err := nc.SubscribeSync("otlp.load.us-west-2.edge-1")
	if err != nil {
		t.Fatal(err)
	}
	stop := bgCLI(t, "agent", "--nats", srv.URL(), "--region", "us-west-2", "--id", "edge-1", "--endpoint", "127.0.0.1:4317",
		"--capacity-qps", "20000", "--metrics-url", collector.URL+"/metrics", "--metrics-interval", "100ms")
	msg, err := sub.NextMsg(10 * time.Second)
	if err != nil {
		t.Fatal(err)
	}
	r, err := loadreport.Decode(msg)
	if err != nil {
		t.Fatal(err)
	}
	if r.QPS <= 0 || r.QueueDepth != 7 || r.Capacity != 20000 || !r.Healthy {
		t.Fatalf("report %+v", r)
	}
	ctx := context.Background()
	natstest.Eventually(t, 5*time.Second, func() bool {
		_, err := b.Registry.Get(ctx, "collector.us-west-2.edge-1")
		return err == nil
	}, "agent not registered")
	if code, out := stop(); code != exitOK {
		t.Fatalf("agent exited %d: %s", code, out)
	}
	if _, err := b.Registry.Get(ctx, "collector.us-west-2.edge-1"); err == nil {
		t.Fatal("agent still registered after Ctrl-C")
	}
	if code, _, stderr := runCLI(t, "agent", "--nats", srv.URL(), "--region", "r", "--id", "c", "--endpoint", "h:1", "--metrics-url", "ftp://x"); code != exitUsage {
		t.Fatalf("bad --metrics-url: exit %d %s", code, stderr)
	}
}
