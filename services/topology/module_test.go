package topologysvc_test

import (
	"encoding/json"
	"io"
	"log/slog"
	"net/http"
	"strings"
	"testing"
	"time"

	"go.uber.org/fx"
	"go.uber.org/fx/fxtest"

	"github.com/otelfleet/otelfleet/pkg/events"
	"github.com/otelfleet/otelfleet/pkg/microapi"
	"github.com/otelfleet/otelfleet/pkg/natstest"
	"github.com/otelfleet/otelfleet/pkg/platform"
	topologysvc "github.com/otelfleet/otelfleet/services/topology"
)

// TestModule runs the service as the binary does (platform + topology module), checks
// readiness, the micro endpoints, the HTTP API and the page, and a clean stop.
func TestModule(t *testing.T) {
	srv := natstest.Run(t)
	s := platform.DefaultSettings("topology")
	s.Instance = "fx-1"
	s.AdminAddr = "127.0.0.1:0"
	s.NATS.URL = srv.URL()
	s.LeaseTTL = 2 * time.Second
	cfg := topologysvc.DefaultConfig()
	cfg.Interval, cfg.RefreshInterval = 200*time.Millisecond, 50*time.Millisecond
	cfg.StaleAfter = time.Minute

	var (
		admin *platform.Admin
		ready *platform.Readiness
		svc   *topologysvc.Service
	)
	app := fxtest.New(t,
		platform.Module(s),
		fx.Decorate(func() *slog.Logger { return slog.New(slog.NewTextHandler(io.Discard, nil)) }),
		topologysvc.Module(cfg),
		fx.Populate(&admin, &ready, &svc),
		fx.NopLogger,
	)
	app.RequireStart()
	defer app.RequireStop()
	natstest.Eventually(t, 10*time.Second, func() bool { _, ok := ready.Check(); return ok }, "ready")

	nc, js := srv.JetStream(t)
	reg, err := js.KeyValue(t.Context(), events.Default.RegistryBucket())
	if err != nil {
		t.Fatal(err)
	}
	r := events.Registration{V: 1, ID: "c1", InstanceKind: events.KindCollector, Region: "eu", Address: "10.0.0.1:4317",
		CapacityQPS: 1000, Health: events.Health{Status: events.HealthHealthy}, RegisteredAt: time.Now()}
	data, _ := json.Marshal(r)
	if _, err := reg.Put(t.Context(), "collector.eu.c1", data); err != nil {
		t.Fatal(err)
	}
	subj, _ := events.Default.LoadSubject("eu", "c1")
	msg, err := events.NewMsg(subj, "test", events.LoadReport{V: 1, Region: "eu", Collector: "c1", At: time.Now(), IntervalMS: 1000,
		QPS: 300, Capacity: 1000, AvgLatencyMS: 3, Healthy: true})
	if err != nil {
		t.Fatal(err)
	}
	if err := nc.PublishMsg(msg); err != nil {
		t.Fatal(err)
	}

	base := "http://" + admin.Addr().String()
	var top topologysvc.Topology
	natstest.Eventually(t, 5*time.Second, func() bool {
		top = topologysvc.Topology{}
		return getJSON(t, base+"/v1/topology", &top) == http.StatusOK && top.Global.Healthy == 1
	}, "collector visible over HTTP")
	if top.Regions[0].Collectors[0].Address != "10.0.0.1:4317" || top.Regions[0].Collectors[0].Utilization != 0.3 {
		t.Fatalf("/v1/topology = %+v", top)
	}
	natstest.Eventually(t, 5*time.Second, func() bool {
		top = topologysvc.Topology{}
		return getJSON(t, base+"/v1/topology?stats_only=true", &top) == http.StatusOK && top.Leader
	}, "the only replica leads")
	if len(top.Regions[0].Collectors) != 0 || top.Regions[0].Omitted != 1 {
		t.Fatalf("stats_only = %+v", top.Regions)
	}

	var best topologysvc.BestReply
	if code := getJSON(t, base+"/v1/topology/best?region=eu&latency_weight=1", &best); code != http.StatusOK || best.ID != "c1" || best.Weights.Latency != 1 {
		t.Fatalf("/v1/topology/best = %d %+v", code, best)
	}
	var e struct{ Error string }
	if code := getJSON(t, base+"/v1/topology/best?load_weight=x", &e); code != http.StatusBadRequest || e.Error == "" {
		t.Fatalf("bad weight = %d %+v", code, e)
	}
	if code := getJSON(t, base+"/v1/topology?region=no%20way", &e); code != http.StatusBadRequest {
		t.Fatalf("bad region = %d %+v", code, e)
	}
	if code := getJSON(t, base+"/v1/topology?sort=size", &e); code != http.StatusBadRequest {
		t.Fatalf("bad sort = %d %+v", code, e)
	}
	if code := getJSON(t, base+"/v1/topology?per_region=1&sort=attention", &top); code != http.StatusOK || len(top.Regions[0].Collectors) != 1 {
		t.Fatalf("per_region&sort=attention = %d %+v", code, top)
	}

	for path, want := range map[string]string{
		"/":                       "<title>otelfleet · topology</title>",
		"/topology/ui/app.js":     "/v1/topology",
		"/topology/ui/style.css":  ".collector",
		"/topology/ui/index.html": "otelfleet",
	} {
		res, err := http.Get(base + path)
		if err != nil {
			t.Fatal(err)
		}
		body, _ := io.ReadAll(res.Body)
		res.Body.Close()
		if res.StatusCode != http.StatusOK && !(path == "/topology/ui/index.html" && res.StatusCode == http.StatusMovedPermanently) {
			t.Fatalf("GET %s = %d", path, res.StatusCode)
		}
		if res.StatusCode == http.StatusOK && !strings.Contains(string(body), want) {
			t.Fatalf("GET %s does not contain %q", path, want)
		}
	}
	// The page is only at the root, not a catch-all.
	if res, err := http.Get(base + "/nope"); err != nil || res.StatusCode != http.StatusNotFound {
		t.Fatalf("GET /nope = %v %v", res, err)
	} else {
		res.Body.Close()
	}

	var viaNATS topologysvc.BestReply
	if err := microapi.Request(t.Context(), nc, "otlp.topology.best", nil, &viaNATS); err != nil || viaNATS.ID != "c1" {
		t.Fatalf("otlp.topology.best = %+v, %v", viaNATS, err)
	}
	res, err := http.Get(base + "/metrics")
	if err != nil {
		t.Fatal(err)
	}
	body, _ := io.ReadAll(res.Body)
	res.Body.Close()
	for _, m := range []string{`otelfleet_topology_collectors{region="eu",status="healthy"} 1`, "otelfleet_topology_snapshot_build_seconds_count",
		`otelfleet_topology_load_reports_rejected_total{reason="json"} 0`} {
		if !strings.Contains(string(body), m) {
			t.Fatalf("/metrics lacks %q", m)
		}
	}
}

func getJSON(t *testing.T, url string, v any) int {
	t.Helper()
	res, err := http.Get(url)
	if err != nil {
		t.Fatal(err)
	}
	defer res.Body.Close()
	if err := json.NewDecoder(res.Body).Decode(v); err != nil {
		t.Fatalf("GET %s: %v", url, err)
	}
	return res.StatusCode
}
