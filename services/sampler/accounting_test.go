package samplersvc

import (
	"context"
	"fmt"
	"math"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus/testutil"

	"github.com/otelfleet/otelfleet/pkg/events"
	"github.com/otelfleet/otelfleet/pkg/natstest"
)

// registerRouter stores a router's registration (service.router.<id>) in region.
func (f *fixture) registerRouter(t *testing.T, region, id string) {
	t.Helper()
	at := time.Now()
	data, err := events.Encode(events.Registration{V: events.RegistrationVersion, ID: id, InstanceKind: events.KindService,
		Name: events.ServiceRouter, Region: region, Health: events.Health{Status: events.HealthHealthy}, RegisteredAt: at, UpdatedAt: at, Generation: 1})
	if err != nil {
		t.Fatal(err)
	}
	key, err := events.ServiceKey(events.ServiceRouter, id)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := f.b.Registry.Put(context.Background(), key, data); err != nil {
		t.Fatal(err)
	}
}

// publishRouter publishes one router load report: received and forwarded spans/s per
// service.
func (f *fixture) publishRouter(t *testing.T, region, id string, received, forwarded map[string]float64) {
	t.Helper()
	r := events.LoadReport{V: events.LoadReportVersion, Region: region, Collector: id, At: time.Now(), IntervalMS: 1000, Healthy: true, Role: events.RoleRouter}
	for name, q := range received {
		r.Services = append(r.Services, events.ServiceRate{Name: name, SpansPerSec: q})
		r.QPS += q
	}
	for name, q := range forwarded {
		r.Forwarded = append(r.Forwarded, events.ServiceRate{Name: name, SpansPerSec: q})
		r.ForwardedQPS += q
	}
	f.publishReport(t, r)
}

// TestFleetTrafficCountsEachSpanOnce: SDKs send to collectors directly, through a router
// that samples at p = 0.25 (its backends see a quarter of the traffic), or both; the
// fleet traffic the decision is computed over is the pre-sampling traffic each time,
// and utilisation stays the collectors' own.
func TestFleetTrafficCountsEachSpanOnce(t *testing.T) {
	tests := map[string]struct {
		publish     func(t *testing.T, f *fixture)
		fleet, cart float64
		load        float64 // the collectors' own spans/s: utilisation's numerator
		routers     int
	}{
		"direct only": {
			publish: func(t *testing.T, f *fixture) {
				f.publishLoad(t, "eu", "c1", 1000, map[string]float64{"cart": 300, "auth": 100})
				f.publishLoad(t, "eu", "c2", 1000, map[string]float64{"cart": 100})
			},
			fleet: 500, cart: 400, load: 500,
		},
		"router only": {
			publish: func(t *testing.T, f *fixture) {
				// The router received 1000 cart + 200 auth spans/s and forwarded a quarter
				// to its two backends, which report what they received.
				f.registerRouter(t, "eu", "r1")
				f.publishRouter(t, "eu", "r1", map[string]float64{"cart": 1000, "auth": 200}, map[string]float64{"cart": 250, "auth": 50})
				f.publishLoad(t, "eu", "c1", 1000, map[string]float64{"cart": 150, "auth": 50})
				f.publishLoad(t, "eu", "c2", 1000, map[string]float64{"cart": 100})
			},
			fleet: 1200, cart: 1000, load: 300, routers: 1,
		},
		"mixed": {
			publish: func(t *testing.T, f *fixture) {
				// c1 takes 300 cart spans/s straight from SDKs and 250 forwarded by r1.
				f.registerRouter(t, "eu", "r1")
				f.publishRouter(t, "eu", "r1", map[string]float64{"cart": 1000}, map[string]float64{"cart": 250})
				f.publishLoad(t, "eu", "c1", 1000, map[string]float64{"cart": 550})
			},
			fleet: 1300, cart: 1300, load: 550, routers: 1,
		},
	}
	for name, tc := range tests {
		t.Run(name, func(t *testing.T) {
			f := newFixture(t)
			log := f.watchDecisions(t)
			tc.publish(t, f)
			r := f.startReplica(t, "s1", testConfig())
			var d events.Decision
			natstest.Eventually(t, 15*time.Second, func() bool {
				var ok bool
				d, ok = log.last()
				return ok && d.Inputs.FleetQPS == tc.fleet && d.Inputs.Capacity > 0
			}, "no decision with fleet traffic %v", tc.fleet)
			obs := r.svc.Loads().Observe(time.Now())
			if obs.Routers != tc.routers || math.Abs(obs.Services["cart"]-tc.cart) > 1e-9 {
				t.Fatalf("observation: %d routers, cart %v; want %d, %v", obs.Routers, obs.Services["cart"], tc.routers, tc.cart)
			}
			// Utilisation is the collectors' load over their capacity: routers add none.
			if want := tc.load / obs.Capacity; obs.LoadQPS != tc.load || math.Abs(d.Inputs.Utilization-want) > 1e-3 {
				t.Fatalf("utilisation %v, want %v (collectors' %v / %v)", d.Inputs.Utilization, want, obs.LoadQPS, obs.Capacity)
			}
		})
	}
}

// TestForgedRouterReportsCountForNothing: reports claiming role router from ids that
// are not registered routers (never registered, registered as a collector, or a router
// registered in another region) wait uncounted, bounded, and push nothing out.
func TestForgedRouterReportsCountForNothing(t *testing.T) {
	f := newFixture(t)
	log := f.watchDecisions(t)
	f.publishLoad(t, "eu", "c1", 1000, map[string]float64{"cart": 100})
	f.registerRouter(t, "us", "r-us")
	r := f.startReplica(t, "s1", testConfig())
	natstest.Eventually(t, 10*time.Second, func() bool { d, ok := log.last(); return ok && d.Inputs.FleetQPS == 100 }, "a decision over c1")
	f.publishRouter(t, "eu", "c1", map[string]float64{"cart": 1e6}, nil)   // a collector posing as a router
	f.publishRouter(t, "eu", "r-us", map[string]float64{"cart": 1e6}, nil) // a router, wrong region
	for i := range 1500 {
		f.publishRouter(t, "eu", fmt.Sprint("forged-", i), map[string]float64{"cart": 1e6}, nil)
	}
	natstest.Eventually(t, 10*time.Second, func() bool {
		return testutil.ToFloat64(r.svc.m.reports.WithLabelValues("unregistered"))+
			testutil.ToFloat64(r.svc.m.reports.WithLabelValues("unregistered_limit")) >= 1502
	}, "the forged reports are consumed")
	after, _ := log.last()
	natstest.Eventually(t, 10*time.Second, func() bool { d, ok := log.last(); return ok && d.Version > after.Version+1 }, "two more decisions")
	if d, _ := log.last(); d.Inputs.FleetQPS != 100 || d.Inputs.Collectors != 1 {
		t.Fatalf("after forged router reports: %v spans/s, %d collectors; want 100, 1", d.Inputs.FleetQPS, d.Inputs.Collectors)
	}
	if obs := r.svc.Loads().Observe(time.Now()); obs.Routers != 0 {
		t.Fatalf("%d routers counted, want 0", obs.Routers)
	}
	// Once r-us really is in eu, its (next) report counts as a router's.
	f.registerRouter(t, "eu", "r-us")
	f.publishRouter(t, "eu", "r-us", map[string]float64{"cart": 400}, map[string]float64{"cart": 100})
	natstest.Eventually(t, 10*time.Second, func() bool { d, ok := log.last(); return ok && d.Inputs.FleetQPS == 400 }, "router counted once registered in eu")
}
