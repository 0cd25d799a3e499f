package samplersvc

import (
	"fmt"
	"testing"
	"time"

	"github.com/otelfleet/otelfleet/pkg/events"
)

func report(region, collector string, qps float64, services map[string]float64) events.LoadReport {
	r := events.LoadReport{V: 1, Region: region, Collector: collector, At: time.Unix(100, 0), QPS: qps, Capacity: 1000, Healthy: true}
	for name, v := range services {
		r.Services = append(r.Services, events.ServiceRate{Name: name, SpansPerSec: v})
	}
	return r
}

func TestLoadsRefusesNewCollectorsBeyondTheLimitUntilOthersAgeOut(t *testing.T) {
	l := NewLoads(10 * time.Second)
	l.maxCollectors = 3
	t0 := time.Unix(1000, 0)
	for i := range 3 {
		if !l.Add(report("eu", fmt.Sprint("c", i), 10, nil), t0) {
			t.Fatalf("collector %d refused below the limit", i)
		}
	}
	if l.Add(report("eu", "flood", 10, nil), t0.Add(time.Second)) {
		t.Fatal("a fourth collector was accepted over a limit of 3")
	}
	if !l.Add(report("eu", "c1", 20, nil), t0.Add(2*time.Second)) {
		t.Error("a known collector's new report was refused at the limit")
	}
	// Once the others are older than the TTL, a new collector fits again.
	if !l.Add(report("eu", "late", 10, nil), t0.Add(11*time.Second)) {
		t.Error("a new collector was refused after the others aged out")
	}
	if obs := l.Observe(t0.Add(11 * time.Second)); obs.Collectors != 2 || obs.FleetQPS != 30 {
		t.Errorf("observation = %d collectors, %v qps; want c1 and late, 30 qps", obs.Collectors, obs.FleetQPS)
	}
}

func TestLoadsKeepsTheBusiestServicesAndCountsTheRestAsOther(t *testing.T) {
	l := NewLoads(time.Minute)
	l.maxServices = 2
	t0 := time.Unix(1000, 0)
	l.Add(report("eu", "c1", 100, map[string]float64{"big": 50, "mid": 30, "small": 15, "tiny": 5}), t0)
	obs := l.Observe(t0)
	if len(obs.Services) != 2 || obs.Services["big"] != 50 || obs.Services["mid"] != 30 {
		t.Fatalf("services = %v, want the two busiest", obs.Services)
	}
	if other := obs.FleetQPS - obs.Services["big"] - obs.Services["mid"]; other != 20 {
		t.Errorf("other traffic = %v, want 20 (small + tiny)", other)
	}
}
