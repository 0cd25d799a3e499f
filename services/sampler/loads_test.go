package samplersvc

import (
	"fmt"
	"testing"
	"time"

	"github.com/otelfleet/otelfleet/pkg/events"
	"github.com/otelfleet/otelfleet/pkg/fleetview"
)

func report(region, collector string, qps float64, services map[string]float64) events.LoadReport {
	r := events.LoadReport{V: 1, Region: region, Collector: collector, At: time.Unix(100, 0), QPS: qps, Capacity: 1000, Healthy: true}
	for name, v := range services {
		r.Services = append(r.Services, events.ServiceRate{Name: name, SpansPerSec: v})
	}
	return r
}

// clockLoads returns sums over a fleet view whose clock is *now.
func clockLoads(ttl time.Duration, now *time.Time) *Loads {
	return NewLoads(ttl, newView(ttl, func() time.Time { return *now }, nil, fleetview.Config{}))
}

// TestLoadsCountReportsReceivedWithinTheTTL: a report counts for the TTL after this
// replica received it, whatever the server's clock said when it stored it.
func TestLoadsCountReportsReceivedWithinTheTTL(t *testing.T) {
	now := time.Unix(1000, 0)
	l := clockLoads(10*time.Second, &now)
	add(l, report("eu", "c1", 10, nil), now)
	add(l, report("eu", "c2", 20, nil), now.Add(time.Hour)) // a server clock an hour ahead
	now = now.Add(5 * time.Second)
	add(l, report("eu", "c3", 40, nil), now)
	if obs := l.Observe(now); obs.Collectors != 3 || obs.FleetQPS != 70 {
		t.Fatalf("observation = %d collectors, %v qps; want 3, 70", obs.Collectors, obs.FleetQPS)
	}
	if obs := l.Observe(now.Add(6 * time.Second)); obs.Collectors != 1 || obs.FleetQPS != 40 {
		t.Fatalf("after 11 s: %d collectors, %v qps; want only c3 (c2's future date does not keep it)", obs.Collectors, obs.FleetQPS)
	}
}

func TestLoadsKeepsTheBusiestServicesAndCountsTheRestAsOther(t *testing.T) {
	l := testLoads(time.Minute)
	l.maxServices = 2
	t0 := time.Now()
	add(l, report("eu", "c1", 100, map[string]float64{"big": 50, "mid": 30, "small": 15, "tiny": 5}), t0)
	obs := l.Observe(t0)
	if len(obs.Services) != 2 || obs.Services["big"] != 50 || obs.Services["mid"] != 30 {
		t.Fatalf("services = %v, want the two busiest", obs.Services)
	}
	if other := obs.FleetQPS - obs.Services["big"] - obs.Services["mid"]; other != 20 {
		t.Errorf("other traffic = %v, want 20 (small + tiny)", other)
	}
}

// TestLoadsCountOnlyRegisteredCollectors floods the view with reports of collectors
// that never registered: they wait in a bounded table and count for nothing; a
// collector whose report beat its registration counts once it registers, and one whose
// registration goes is forgotten.
func TestLoadsCountOnlyRegisteredCollectors(t *testing.T) {
	l := testLoads(time.Minute)
	t0 := time.Now()
	add(l, report("eu", "real", 100, map[string]float64{"cart": 100}), t0)
	dropped := 0
	for i := range 10_000 {
		r := report("eu", fmt.Sprint("fake-", i), 1e6, map[string]float64{"cart": 1e6})
		switch l.View().PutReport(&r, t0) {
		case fleetview.Waiting:
		case fleetview.WaitingLimit:
			dropped++
		default:
			t.Fatalf("an unregistered report was counted")
		}
	}
	if _, waiting := l.View().Counts(); waiting != MaxWaitingCollectors || dropped != 10_000-MaxWaitingCollectors {
		t.Fatalf("waiting %d dropped %d", waiting, dropped)
	}
	if obs := l.Observe(t0); obs.Collectors != 1 || obs.FleetQPS != 100 || obs.Services["cart"] != 100 {
		t.Fatalf("observation %d collectors %v qps %v cart; want only the registered one", obs.Collectors, obs.FleetQPS, obs.Services["cart"])
	}
	// fake-0 registers late: its waiting report counts; real deregisters.
	l.View().PutRegistration(&events.Registration{V: 1, InstanceKind: events.KindCollector, Region: "eu", ID: "fake-0"})
	l.View().Delete("collector.eu.real")
	if obs := l.Observe(t0); obs.Collectors != 1 || obs.FleetQPS != 1e6 {
		t.Fatalf("after a late registration and a deregistration: %d collectors, %v qps", obs.Collectors, obs.FleetQPS)
	}
}

// TestLoadsRouterRule: a router adds what it received less what it forwarded, per
// service and in total, clamped at 0; it is no collector and adds no capacity.
func TestLoadsRouterRule(t *testing.T) {
	l := testLoads(time.Minute)
	t0 := time.Now()
	r := report("eu", "r1", 1000, map[string]float64{"cart": 600, "auth": 300, "debug": 100})
	r.Role, r.Capacity, r.ForwardedQPS = events.RoleRouter, 0, 1100 // more than received: clamped
	r.Forwarded = []events.ServiceRate{{Name: "cart", SpansPerSec: 150}, {Name: "auth", SpansPerSec: 400}}
	if got := add(l, r, t0); got != fleetview.Counted {
		t.Fatalf("registered router: %v", got)
	}
	add(l, report("eu", "c1", 200, map[string]float64{"cart": 150, "auth": 50}), t0)
	obs := l.Observe(t0)
	if obs.Routers != 1 || obs.Collectors != 1 || obs.FleetQPS != 200 || obs.LoadQPS != 200 || obs.Capacity != 1000 {
		t.Fatalf("observation %+v", obs)
	}
	if obs.Services["cart"] != 600 || obs.Services["auth"] != 50 || obs.Services["debug"] != 100 {
		t.Fatalf("services %v, want cart 150+450, auth 50+0 (clamped), debug 100", obs.Services)
	}
	// The same id without role router is a collector's report, and c1 is no router.
	forged := report("eu", "c1", 1e6, nil)
	forged.Role = events.RoleRouter
	if got := l.View().PutReport(&forged, t0); got != fleetview.Waiting {
		t.Fatalf("a collector's id claiming router: %v, want Waiting", got)
	}
	l.View().Delete("service.router.r1")
	if obs := l.Observe(t0); obs.Routers != 0 || obs.FleetQPS != 200 {
		t.Fatalf("after the router deregistered: %+v", obs)
	}
}
