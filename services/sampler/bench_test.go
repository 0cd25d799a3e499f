package samplersvc

import (
	"fmt"
	"testing"
	"time"

	"github.com/otelfleet/otelfleet/pkg/events"
	"github.com/otelfleet/otelfleet/pkg/fleetconfig"
	"github.com/otelfleet/otelfleet/pkg/fleetview"
	"github.com/otelfleet/otelfleet/pkg/sysstat"
	"github.com/otelfleet/otelfleet/services/sampler/internal/strategy"
)

// BenchmarkDecision10kServices measures one leader interval for a fleet of 10,000
// services reported by 100 collectors (each lists 1,000 of them, 10 collectors per
// service): sum the live reports, smooth, compute the example config's rates (adaptive,
// priority rules, cost cap, degradation), encode the KV value, and install it for
// serving (precomputed Jaeger responses). bytes/decision is the stored value's size.
func BenchmarkDecision10kServices(b *testing.B) {
	benchDecision(b, 100, 1000, 10_000)
}

// BenchmarkDecisionFleet is the same leader interval for fleets of 10,000 to 100,000
// collectors, each listing 20 of 10,000 services (a service is reported by 20 to 200
// collectors): what one interval costs as the fleet grows.
func BenchmarkDecisionFleet(b *testing.B) {
	for _, n := range []int{10_000, 50_000, 100_000} {
		b.Run(fmt.Sprint(n), func(b *testing.B) { benchDecision(b, n, 20, 10_000) })
	}
}

// benchDecision runs one leader interval per op for collectors each listing perCollector
// of services services.
func benchDecision(b *testing.B, collectors, perCollector, services int) {
	loads := testLoads(time.Hour)
	now := time.Now()
	names := make([]string, services)
	for s := range names {
		names[s] = fmt.Sprintf("service-%05d", s)
	}
	for c := range collectors {
		r := events.LoadReport{V: 1, Region: fmt.Sprintf("r%d", c%5), Collector: fmt.Sprintf("c%d", c), At: now, Capacity: 1e7}
		r.Services = make([]events.ServiceRate, 0, perCollector)
		for i := range perCollector {
			s := (c*perCollector + i) % services
			q := 1e5 / float64(s+1) / 10
			r.Services = append(r.Services, events.ServiceRate{Name: names[s], SpansPerSec: q})
			r.QPS += q
		}
		if res := add(loads, r, now); res != fleetview.Counted {
			b.Fatalf("collector %d: %v", c, res)
		}
	}
	g := fleetconfig.Defaults().Global
	g.SamplingStrategies = append(g.SamplingStrategies, fleetconfig.Strategy{Type: fleetconfig.StrategyCostBased, BudgetPerHour: new(1e6), CostPerSpan: new(1e-3)})
	p := events.SamplingParams{SamplingRate: g.SamplingRate, Strategies: g.SamplingStrategies, Degradation: g.Degradation}
	eng := strategy.NewEngine(strategy.DefaultTuning())
	api := NewAPI(nil)
	var size int
	b.ReportAllocs()
	cpu0, _ := sysstat.ProcessCPUSeconds()
	for b.Loop() {
		obs := loads.Observe(now)
		if obs.Collectors != collectors {
			b.Fatalf("observed %d collectors, want %d", obs.Collectors, collectors)
		}
		d, _ := eng.Step(p, obs, now)
		d.V, d.Version, d.Leader, d.Token = events.DecisionVersion, 1, "bench", 1
		data, err := fit(&d, events.MaxPayloadBytes)
		if err != nil || len(d.Services) != services {
			b.Fatal(err, len(d.Services))
		}
		size = len(data)
		api.Install(&d)
	}
	if cpu1, err := sysstat.ProcessCPUSeconds(); err == nil { // wall time also counts waiting for a core
		b.ReportMetric((cpu1-cpu0)*1e3/float64(b.N), "cpu-ms/op")
	}
	b.ReportMetric(float64(size), "bytes/decision")
}

// BenchmarkLoadsObserve100k sums the reports of 100,000 registered collectors (5
// services each) from the fleet view's snapshot.
func BenchmarkLoadsObserve100k(b *testing.B) {
	const collectors = 100_000
	now := time.Now()
	loads := testLoads(time.Hour)
	for c := range collectors {
		r := events.LoadReport{V: 1, Region: fmt.Sprintf("r%d", c%5), Collector: fmt.Sprintf("c%d", c), At: now, QPS: 10, Capacity: 100}
		for s := range 5 {
			r.Services = append(r.Services, events.ServiceRate{Name: fmt.Sprintf("service-%d", (c+s)%50), SpansPerSec: 2})
		}
		add(loads, r, now)
	}
	b.ReportAllocs()
	for b.Loop() {
		if obs := loads.Observe(now); obs.Collectors != collectors {
			b.Fatal(obs.Collectors)
		}
	}
}

// BenchmarkLoadsAddUnregisteredFlood adds reports of collectors that never registered
// once the waiting table is full: the cost of each report of a flood.
func BenchmarkLoadsAddUnregisteredFlood(b *testing.B) {
	loads := testLoads(time.Hour)
	now := time.Now()
	reports := make([]events.LoadReport, 2*MaxWaitingCollectors)
	for i := range reports {
		reports[i] = events.LoadReport{V: 1, Region: "r1", Collector: fmt.Sprintf("fake-%d", i), At: now, QPS: 1e6}
	}
	b.ReportAllocs()
	i := 0
	for b.Loop() {
		loads.View().PutReport(&reports[i%len(reports)], now)
		i++
	}
}

// testLoads returns the sums over a fresh fleet view with the sampler's bounds.
func testLoads(ttl time.Duration) *Loads {
	return NewLoads(ttl, newView(ttl, time.Now, nil, fleetview.Config{}))
}

// add registers r's collector (or router) and records r as received at seen.
func add(l *Loads, r events.LoadReport, seen time.Time) fleetview.Outcome {
	reg := &events.Registration{V: 1, InstanceKind: events.KindCollector, Region: r.Region, ID: r.Collector}
	if r.Role == events.RoleRouter {
		reg.InstanceKind, reg.Name = events.KindService, events.ServiceRouter
	}
	l.View().PutRegistration(reg)
	return l.View().PutReport(&r, seen)
}
