package main

import (
	"context"
	"fmt"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"sync"
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
	var accepted atomic.Int64
	collector := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) {
		w.Header().Set("Content-Type", "text/plain; version=0.0.4; charset=utf-8")
		fmt.Fprintf(w, "# TYPE otelcol_receiver_accepted_spans_total counter\notelcol_receiver_accepted_spans_total{receiver=\"otlp\",transport=\"grpc\"} %d\n", accepted.Load())
		fmt.Fprint(w, "# TYPE otelcol_exporter_queue_size gauge\notelcol_exporter_queue_size{exporter=\"otlp\"} 42\n")
		fmt.Fprint(w, "# TYPE otelcol_process_memory_rss_bytes gauge\notelcol_process_memory_rss_bytes 1.5e+08\n")
	}))
	defer collector.Close()
	start := time.Now()
	feed := make(chan struct{})
	var wg sync.WaitGroup
	wg.Add(1)
	go func() { // 50 spans per millisecond: 50 000 spans/s
		defer wg.Done()
		for {
			select {
			case <-feed:
				return
			case <-time.After(2 * time.Millisecond):
				accepted.Store(time.Since(start).Milliseconds() * 50)
			}
		}
	}()
	defer func() { close(feed); wg.Wait() }()

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
