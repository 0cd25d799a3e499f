package samplersvc

import (
	"fmt"
	"testing"
	"time"

	"github.com/otelfleet/otelfleet/pkg/events"
	"github.com/otelfleet/otelfleet/pkg/registered"
)

func report(region, collector string, qps float64, services map[string]float64) events.LoadReport {
	r := events.LoadReport{V: 1, Region: region, Collector: collector, At: time.Unix(100, 0), QPS: qps, Capacity: 1000, Healthy: true}
	for name, v := range services {
		r.Services = append(r.Services, events.ServiceRate{Name: name, SpansPerSec: v})
	}
	return r
}

func TestLoadsRefusesNewCollectorsBeyondTheLimitUntilOthersAgeOut(t *testing.T) {
	l := NewLoads(10*time.Second, nil, nil)
	l.maxCollectors = 3
	t0 := time.Unix(1000, 0)
	for i := range 3 {
		if l.Add(report("eu", fmt.Sprint("c", i), 10, nil), t0) != Counted {
			t.Fatalf("collector %d refused below the limit", i)
		}
	}
	if l.Add(report("eu", "flood", 10, nil), t0.Add(time.Second)) != CollectorLimit {
		t.Fatal("a fourth collector was accepted over a limit of 3")
	}
	if l.Add(report("eu", "c1", 20, nil), t0.Add(2*time.Second)) != Counted {
		t.Error("a known collector's new report was refused at the limit")
	}
	// Once the others are older than the TTL, a new collector fits again.
	if l.Add(report("eu", "late", 10, nil), t0.Add(11*time.Second)) != Counted {
		t.Error("a new collector was refused after the others aged out")
	}
	if obs := l.Observe(t0.Add(11 * time.Second)); obs.Collectors != 2 || obs.FleetQPS != 30 {
		t.Errorf("observation = %d collectors, %v qps; want c1 and late, 30 qps", obs.Collectors, obs.FleetQPS)
	}
}

func TestLoadsKeepsTheBusiestServicesAndCountsTheRestAsOther(t *testing.T) {
	l := NewLoads(time.Minute, nil, nil)
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

// TestLoadsCountOnlyRegisteredCollectors floods the table with reports of collectors
// that never registered: they wait in a bounded table, count for nothing, and take no
// registered collector's place; a collector whose report beat its registration counts
// once it registers, and one whose registration goes is forgotten.
func TestLoadsCountOnlyRegisteredCollectors(t *testing.T) {
	members := registered.NewSet()
	members.Put(&events.Registration{Region: "eu", ID: "real"})
	l := NewLoads(time.Minute, members, nil)
	l.maxCollectors, l.maxWaiting = 2, 100
	t0 := time.Unix(1000, 0)
	if got := l.Add(report("eu", "real", 100, map[string]float64{"cart": 100}), t0); got != Counted {
		t.Fatalf("registered collector: %v, want Counted", got)
	}
	var waiting, dropped int
	for i := range 10_000 {
		switch l.Add(report("eu", fmt.Sprint("fake-", i), 1e6, map[string]float64{"cart": 1e6}), t0) {
		case Waiting:
			waiting++
		case WaitingLimit:
			dropped++
		default:
			t.Fatalf("an unregistered report was counted")
		}
	}
	if waiting != 100 || dropped != 9_900 || l.Waiting() != 100 {
		t.Fatalf("waiting %d dropped %d held %d; want 100, 9900, 100", waiting, dropped, l.Waiting())
	}
	if got := l.Add(report("eu", "late", 50, nil), t0); got != Waiting && got != WaitingLimit {
		t.Fatalf("unregistered late: %v", got)
	}
	members.Put(&events.Registration{Region: "eu", ID: "second"})
	if got := l.Add(report("eu", "second", 10, nil), t0); got != Counted {
		t.Fatalf("a registered collector was refused after the flood: %v", got)
	}
	if obs := l.Observe(t0); obs.Collectors != 2 || obs.FleetQPS != 110 || obs.Services["cart"] != 100 {
		t.Fatalf("observation %d collectors %v qps %v cart; want only the registered ones", obs.Collectors, obs.FleetQPS, obs.Services["cart"])
	}
	// fake-0 registers late: its waiting report counts from the next observation on
	// (the counted table is full at 2, so it replaces a collector that deregisters).
	members.Delete(registered.Key{Region: "eu", ID: "second"})
	members.Put(&events.Registration{Region: "eu", ID: "fake-0"})
	if obs := l.Observe(t0); obs.Collectors != 2 || obs.FleetQPS != 100+1e6 {
		t.Fatalf("after a late registration and a deregistration: %d collectors, %v qps", obs.Collectors, obs.FleetQPS)
	}
}

// TestLoadsRouterRule: a router adds what it received less what it forwarded, per
// service and in total, clamped at 0; it is no collector and adds no capacity.
func TestLoadsRouterRule(t *testing.T) {
	routers := registered.NewRouterSet()
	routers.Put(&events.Registration{Region: "eu", ID: "r1"})
	l := NewLoads(time.Minute, nil, routers)
	t0 := time.Unix(1000, 0)
	r := report("eu", "r1", 1000, map[string]float64{"cart": 600, "auth": 300, "debug": 100})
	r.Role, r.Capacity, r.ForwardedQPS = events.RoleRouter, 0, 1100 // more than received: clamped
	r.Forwarded = []events.ServiceRate{{Name: "cart", SpansPerSec: 150}, {Name: "auth", SpansPerSec: 400}}
	if got := l.Add(r, t0); got != Counted {
		t.Fatalf("registered router: %v", got)
	}
	l.Add(report("eu", "c1", 200, map[string]float64{"cart": 150, "auth": 50}), t0)
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
	if got := l.Add(forged, t0); got != Waiting {
		t.Fatalf("a collector's id claiming router: %v, want Waiting", got)
	}
	routers.Delete(registered.Key{ID: "r1"})
	if obs := l.Observe(t0); obs.Routers != 0 || obs.FleetQPS != 200 {
		t.Fatalf("after the router deregistered: %+v", obs)
	}
}
