package main

import (
	"context"
	"encoding/json"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/otelfleet/otelfleet/pkg/events"
	"github.com/otelfleet/otelfleet/pkg/natsconn"
	"github.com/otelfleet/otelfleet/pkg/natstest"
	"github.com/otelfleet/otelfleet/pkg/platform"
	topologysvc "github.com/otelfleet/otelfleet/services/topology"
)

// topologyServer runs a topology service on a test server with collectors c0..c(n-1) in
// eu and c0 in us, all reporting qps = 100·(i+1) of capacity 1000.
func topologyServer(t *testing.T, n int) *natstest.Server {
	t.Helper()
	srv := natstest.Run(t)
	nc, js := srv.JetStream(t)
	b, err := natsconn.Provision(context.Background(), js, natsconn.DefaultLayout())
	if err != nil {
		t.Fatal(err)
	}
	cfg := topologysvc.DefaultConfig()
	cfg.RefreshInterval = 20 * time.Millisecond
	cfg.StaleAfter = time.Hour // every collector reports once here; a slow machine must not see them go stale
	svc, err := topologysvc.New(cfg, topologysvc.Deps{NC: nc, JS: js, Instance: "cli-test"})
	if err != nil {
		t.Fatal(err)
	}
	svc.Start(b)
	t.Cleanup(svc.Stop)
	<-svc.Ready()
	m, err := platform.AddMicro(nc, events.Default, platform.DefaultSettings("topology"), events.ServiceTopology, "test", svc.Endpoints()...)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = m.Stop() })
	register := func(region, id string) {
		r := events.Registration{V: 1, ID: id, InstanceKind: events.KindCollector, Region: region, Address: id + "." + region + ":4317",
			CapacityQPS: 1000, Health: events.Health{Status: events.HealthHealthy}, RegisteredAt: time.Now()}
		data, _ := json.Marshal(r)
		if _, err := b.Registry.Put(context.Background(), "collector."+region+"."+id, data); err != nil {
			t.Fatal(err)
		}
	}
	report := func(region, id string, qps float64) {
		subj, _ := events.Default.LoadSubject(region, id)
		msg, err := events.NewMsg(subj, "test", events.LoadReport{V: 1, Region: region, Collector: id, At: time.Now(), IntervalMS: 1000,
			QPS: qps, Capacity: 1000, AvgLatencyMS: 2, Healthy: true})
		if err != nil {
			t.Fatal(err)
		}
		if err := nc.PublishMsg(msg); err != nil {
			t.Fatal(err)
		}
	}
	// Every collector reports once here, so the reports follow the registrations: a
	// report that arrives before its collector's registration waits among at most
	// fleetview.MaxWaiting others, and a burst of 2,100 new collectors would overflow it
	// (live collectors report again a second later; these would not).
	for i := range n {
		register("eu", fmt.Sprintf("c%04d", i))
	}
	register("us", "c0")
	natstest.Eventually(t, 30*time.Second, func() bool {
		top, err := svc.Get(topologysvc.GetRequest{StatsOnly: true})
		return err == nil && top.Global.Collectors == n+1
	}, "collectors registered")
	for i := range n {
		report("eu", fmt.Sprintf("c%04d", i), float64(100*(i%9+1)))
	}
	report("us", "c0", 50)
	natstest.Eventually(t, 30*time.Second, func() bool {
		top, err := svc.Get(topologysvc.GetRequest{StatsOnly: true})
		return err == nil && top.Global.Healthy == n+1
	}, "collectors visible")
	return srv
}

func TestTopologyCommands(t *testing.T) {
	const n = 2100 // more than one page of otlp.topology.get
	srv := topologyServer(t, n)
	url := "--nats=" + srv.URL()

	t.Run("json pages through every collector", func(t *testing.T) {
		code, out, errOut := runCLI(t, "topology", url, "-o", "json")
		if code != 0 {
			t.Fatalf("exit %d: %s", code, errOut)
		}
		var top topologysvc.Topology
		if err := json.Unmarshal([]byte(out), &top); err != nil {
			t.Fatal(err)
		}
		if len(top.Regions) != 2 || len(top.Regions[0].Collectors) != n || len(top.Regions[1].Collectors) != 1 || top.Next != "" {
			t.Fatalf("regions %d, eu collectors %d", len(top.Regions), len(top.Regions[0].Collectors))
		}
	})
	t.Run("table for one region", func(t *testing.T) {
		code, out, errOut := runCLI(t, "topology", "--region", "us", url)
		if code != 0 {
			t.Fatalf("exit %d: %s", code, errOut)
		}
		lines := strings.Split(strings.TrimSpace(out), "\n")
		if !strings.HasPrefix(lines[0], "REGION") || !strings.Contains(lines[0], "UTIL%") || !strings.Contains(lines[0], "AGE") {
			t.Fatalf("header = %q", lines[0])
		}
		if f := strings.Fields(lines[1]); len(f) < 8 || f[0] != "us" || f[1] != "c0" || f[2] != "healthy" || f[3] != "50" || f[4] != "1000" || f[5] != "5.0" {
			t.Fatalf("row = %q", lines[1])
		}
		if !strings.Contains(out, "1 collector in 1 region: 1 healthy") {
			t.Fatalf("summary missing: %s", out)
		}
	})
	t.Run("best", func(t *testing.T) {
		code, out, errOut := runCLI(t, "topology", "best", "--region", "us", "-o", "json", url)
		if code != 0 {
			t.Fatalf("exit %d: %s", code, errOut)
		}
		var best map[string]any
		if err := json.Unmarshal([]byte(out), &best); err != nil {
			t.Fatal(err)
		}
		if best["region"] != "us" || best["id"] != "c0" || best["address"] != "c0.us:4317" || best["fallback"] != false || best["score"] == nil {
			t.Fatalf("best = %v", best)
		}
	})
	t.Run("best falls back", func(t *testing.T) {
		code, out, errOut := runCLI(t, "topology", "best", "--region", "ap", url)
		if code != 0 {
			t.Fatalf("exit %d: %s", code, errOut)
		}
		if !strings.Contains(out, "true") || !strings.Contains(out, `fallback: region "ap" has no registered collectors`) {
			t.Fatalf("fallback not shown: %s", out)
		}
	})
	t.Run("weights", func(t *testing.T) {
		code, out, errOut := runCLI(t, "topology", "best", "--latency-weight", "1", "--load-weight", "0", "--capacity-weight", "0", "-o", "json", url)
		if code != 0 {
			t.Fatalf("exit %d: %s", code, errOut)
		}
		var best topologysvc.BestReply
		if err := json.Unmarshal([]byte(out), &best); err != nil {
			t.Fatal(err)
		}
		if best.Weights != (topologysvc.Weights{Latency: 1}) {
			t.Fatalf("weights = %+v", best.Weights)
		}
	})
	t.Run("usage errors", func(t *testing.T) {
		for name, args := range map[string][]string{
			"negative weight": {"topology", "best", "--load-weight", "-1", url},
			"zero weights":    {"topology", "best", "--load-weight", "0", "--latency-weight", "0", "--capacity-weight", "0", url},
			"bad region":      {"topology", "--region", "a.b", url},
			"bad output":      {"topology", "-o", "yaml", url},
		} {
			if code, _, errOut := runCLI(t, args...); code != exitUsage || errOut == "" {
				t.Errorf("%s: exit %d, stderr %q", name, code, errOut)
			}
		}
	})
}

func TestTopologyWithoutService(t *testing.T) {
	srv := natstest.Run(t)
	code, _, errOut := runCLI(t, "topology", "--nats="+srv.URL(), "--timeout=1s")
	if code != exitUnreachable || !strings.Contains(errOut, "otlp.topology.get") {
		t.Fatalf("exit %d, stderr %q", code, errOut)
	}
}
