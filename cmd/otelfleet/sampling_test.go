package main

import (
	"context"
	"encoding/json"
	"strings"
	"testing"
	"time"

	"github.com/otelfleet/otelfleet/pkg/events"
	"github.com/otelfleet/otelfleet/pkg/fleetconfig"
	"github.com/otelfleet/otelfleet/pkg/natsconn"
	"github.com/otelfleet/otelfleet/pkg/natstest"
	samplersvc "github.com/otelfleet/otelfleet/services/sampler"
)

// samplingServer returns a NATS server with the contract provisioned.
func samplingServer(t *testing.T) (*natstest.Server, *natsconn.Buckets) {
	t.Helper()
	srv := natstest.Run(t)
	_, js := srv.JetStream(t)
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	b, err := natsconn.Provision(ctx, js, natsconn.DefaultLayout())
	if err != nil {
		t.Fatal(err)
	}
	return srv, b
}

// storedDecision is what a leader running the example config with priority rules and
// adaptive sampling would store for a degraded fleet.
func storedDecision() *events.Decision {
	return &events.Decision{
		V: events.DecisionVersion, Leader: "sampler-1", Token: 7, At: time.Now(), IntervalMS: 10_000, ConfigVersion: 2,
		Strategy: "priority_based+adaptive", GlobalRate: 0.05, DefaultRate: 0.01, Degraded: true, DegradedSince: time.Now(),
		Services: map[string]events.ServiceDecision{
			"search":  {Rate: 0.01, QPS: 900_000, Priority: "normal"},
			"payment": {Rate: 1, QPS: 1000, Priority: "high"},
		},
		Rules: []events.RuleDecision{
			{Priority: "high", Services: []string{"payment", "checkout"}, Rate: 1},
			{Priority: "normal", Rate: 0.01},
		},
		Regions: map[string]float64{"eu-west-1": 0.5},
		Inputs:  events.DecisionInputs{Collectors: 3, FleetQPS: 901_000, Capacity: 1e6, Utilization: 0.901, KeptQPS: 10_000, TargetQPS: 100_000, AdaptiveScale: 0.5},
		Params: events.SamplingParams{SamplingRate: 0.1, ServiceFloorQPS: 1,
			Strategies:  fleetconfig.Defaults().Global.SamplingStrategies,
			Degradation: fleetconfig.Degradation{Enabled: true, Threshold: 0.8, TargetRate: 0.01, RecoveryThreshold: 0.6, KeepHighPriority: true}},
	}
}

func TestSamplingCommands(t *testing.T) {
	srv, b := samplingServer(t)
	url := srv.URL()
	t.Run("no decision yet", func(t *testing.T) {
		code, _, stderr := runCLI(t, "--nats", url, "sampling")
		if code != exitRefused || !strings.Contains(stderr, "no sampling decision stored yet") {
			t.Fatalf("exit %d, stderr %q", code, stderr)
		}
	})
	if _, err := samplersvc.NewStore(b.Sampling).Write(context.Background(), storedDecision()); err != nil {
		t.Fatal(err)
	}
	t.Run("table", func(t *testing.T) {
		code, out, stderr := runCLI(t, "--nats", url, "sampling")
		if code != exitOK {
			t.Fatalf("exit %d, stderr %q", code, stderr)
		}
		for _, want := range []string{"leader sampler-1", "token 7", "strategy priority_based+adaptive", "degraded YES",
			"eu-west-1 ×0.5", "search", "900.0k", "payment", "unseen payment,checkout", "default"} {
			if !strings.Contains(out, want) {
				t.Errorf("output lacks %q:\n%s", want, out)
			}
		}
		if strings.Index(out, "search") > strings.Index(out, "payment  ") {
			t.Errorf("services are not sorted busiest first:\n%s", out)
		}
	})
	t.Run("json", func(t *testing.T) {
		code, out, _ := runCLI(t, "--nats", url, "sampling", "-o", "json")
		var d events.Decision
		if code != exitOK || json.Unmarshal([]byte(out), &d) != nil || d.Token != 7 || d.Version != 1 {
			t.Fatalf("exit %d, out %s", code, out)
		}
	})
	t.Run("explain", func(t *testing.T) {
		code, out, stderr := runCLI(t, "--nats", url, "sampling", "explain", "search", "--region", "eu-west-1")
		if code != exitOK {
			t.Fatalf("exit %d, stderr %q", code, stderr)
		}
		for _, want := range []string{"search: rate 0.005", "catch-all priority rule #2 (normal)", "adaptive: 0.1 × 0.5", "degraded: lowered to target_rate 0.01", "region eu-west-1"} {
			if !strings.Contains(out, want) {
				t.Errorf("explanation lacks %q:\n%s", want, out)
			}
		}
		code, out, _ = runCLI(t, "--nats", url, "sampling", "explain", "payment", "-o", "json")
		var e struct {
			Steps []string `json:"steps"`
			Rate  float64  `json:"effective_rate"`
		}
		if code != exitOK || json.Unmarshal([]byte(out), &e) != nil || e.Rate != 1 || !strings.Contains(strings.Join(e.Steps, "\n"), "keep_high_priority") {
			t.Fatalf("exit %d, out %s", code, out)
		}
	})
	t.Run("usage", func(t *testing.T) {
		for name, args := range map[string][]string{
			"explain without service": {"sampling", "explain"},
			"explain two services":    {"sampling", "explain", "a", "b"},
			"bad output":              {"sampling", "-o", "yaml"},
			"bad region":              {"sampling", "explain", "a", "--region", "a.b"},
		} {
			if code, _, stderr := runCLI(t, append([]string{"--nats", url}, args...)...); code != exitUsage {
				t.Errorf("%s: exit %d, want 2; stderr %q", name, code, stderr)
			}
		}
	})
}
