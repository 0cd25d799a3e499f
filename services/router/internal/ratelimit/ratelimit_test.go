package ratelimit

import (
	"fmt"
	"math"
	"testing"
	"time"
)

// router is one simulated router: a Fleet and the demand offered to it per service.
type router struct {
	id       string
	fleet    *Fleet
	demand   map[string]float64 // items per second per service
	owed     map[string]float64 // fractional items not yet offered
	admitted map[string]float64 // in the measured window
	down     bool
}

// sim runs routers over simulated time with reports every second.
type sim struct {
	now     time.Time
	routers []*router
	reports map[string]PeerDemand
	maxAge  time.Duration
}

func newSim(l Limits, demands ...map[string]float64) *sim {
	s := &sim{now: time.Unix(1_700_000_000, 0), reports: map[string]PeerDemand{}, maxAge: 3 * time.Second}
	for i, d := range demands {
		s.routers = append(s.routers, &router{
			id: fmt.Sprintf("router-%d", i), fleet: NewFleet(l, 16), demand: d,
			owed: map[string]float64{}, admitted: map[string]float64{},
		})
	}
	return s
}

// run advances d in 10 ms steps; measure says whether admissions are counted.
func (s *sim) run(d time.Duration, measure bool) {
	const step = 10 * time.Millisecond
	for end := s.now.Add(d); s.now.Before(end); {
		s.now = s.now.Add(step)
		for _, r := range s.routers {
			if r.down {
				continue
			}
			for svc, rate := range r.demand {
				r.owed[svc] += rate * step.Seconds()
				n := int(r.owed[svc])
				r.owed[svc] -= float64(n)
				if r.fleet.Allow([]byte(svc), n, s.now) && measure {
					r.admitted[svc] += float64(n)
				}
			}
		}
		if s.now.UnixMilli()%1000 == 0 {
			s.report()
		}
	}
}

// report publishes every live router's demand and hands each the others'.
func (s *sim) report() {
	for _, r := range s.routers {
		if !r.down {
			s.reports[r.id] = r.fleet.Demand(s.now)
		}
	}
	for _, r := range s.routers {
		peers := map[string]PeerDemand{}
		for id, d := range s.reports {
			if id != r.id {
				peers[id] = d
			}
		}
		r.fleet.SetPeers(peers, s.now, s.maxAge)
	}
}

// measured runs d and returns each router's admitted items per second, per service
// and in total (key "").
func (s *sim) measured(d time.Duration) []map[string]float64 {
	for _, r := range s.routers {
		r.admitted = map[string]float64{}
	}
	s.run(d, true)
	out := make([]map[string]float64, len(s.routers))
	for i, r := range s.routers {
		out[i] = map[string]float64{}
		for svc, n := range r.admitted {
			out[i][svc] = n / d.Seconds()
			out[i][""] += n / d.Seconds()
		}
	}
	return out
}

// total sums one key over routers.
func total(rates []map[string]float64, key string) float64 {
	var t float64
	for _, r := range rates {
		t += r[key]
	}
	return t
}

// within fails unless got is within frac of want.
func within(t *testing.T, what string, got, want, frac float64) {
	t.Helper()
	if math.Abs(got-want) > frac*want {
		t.Fatalf("%s: %.1f/s, want %.1f/s ± %.0f%%", what, got, want, frac*100)
	}
}

func TestFleetAdmitsTheLimitSkewed(t *testing.T) {
	tests := map[string][]float64{
		"two routers":   {900, 100},
		"three routers": {700, 200, 100},
		"even":          {400, 400, 400},
	}
	for name, demands := range tests {
		t.Run(name, func(t *testing.T) {
			ds := make([]map[string]float64, len(demands))
			for i, d := range demands {
				ds[i] = map[string]float64{"checkout": d}
			}
			s := newSim(Limits{MaxQPS: 500, Burst: 100}, ds...)
			s.run(5*time.Second, false)
			rates := s.measured(30 * time.Second)
			within(t, "fleet admitted", total(rates, ""), 500, 0.03)
			var sum float64
			for _, d := range demands {
				sum += d
			}
			for i, d := range demands {
				within(t, fmt.Sprintf("router %d (demand %v)", i, d), rates[i][""], 500*d/sum, 0.1)
			}
		})
	}
}

func TestFleetUnderTheLimitAdmitsAll(t *testing.T) {
	s := newSim(Limits{MaxQPS: 1000}, map[string]float64{"a": 300}, map[string]float64{"a": 200})
	s.run(5*time.Second, false)
	rates := s.measured(20 * time.Second)
	within(t, "router 0", rates[0][""], 300, 0.01)
	within(t, "router 1", rates[1][""], 200, 0.01)
}

// TestFleetGrowingRouterNotStarved: a router whose traffic jumps between reports may
// take its part of the headroom at once.
func TestFleetGrowingRouterNotStarved(t *testing.T) {
	s := newSim(Limits{MaxQPS: 1000}, map[string]float64{"a": 100}, map[string]float64{"a": 100})
	s.run(10*time.Second, false)
	if r := s.routers[0].fleet.global.rate; r < 500 {
		t.Fatalf("share %.1f/s with demand 100 of 1000 and one peer at 100: want its demand and half the headroom (500)", r)
	}
}

func TestFleetRouterLeavingHandsOverItsShare(t *testing.T) {
	s := newSim(Limits{MaxQPS: 600},
		map[string]float64{"a": 600}, map[string]float64{"a": 300}, map[string]float64{"a": 300})
	s.run(5*time.Second, false)
	before := s.measured(10 * time.Second)
	within(t, "three routers", total(before, ""), 600, 0.03)
	within(t, "routers 0+1 with 2 alive", before[0][""]+before[1][""], 450, 0.05)
	s.routers[2].down = true
	s.run(s.maxAge+3*time.Second, false)
	after := s.measured(10 * time.Second)
	within(t, "routers 0+1 after router 2 left", after[0][""]+after[1][""], 600, 0.03)
	within(t, "router 0 after router 2 left", after[0][""], 400, 0.1)
}

func TestFleetLimitsHotReload(t *testing.T) {
	s := newSim(Limits{MaxQPS: 500}, map[string]float64{"a": 1000}, map[string]float64{"a": 500})
	s.run(5*time.Second, false)
	within(t, "limit 500", total(s.measured(10*time.Second), ""), 500, 0.03)
	for _, r := range s.routers {
		r.fleet.SetLimits(Limits{MaxQPS: 1200})
	}
	s.run(3*time.Second, false)
	within(t, "limit 1200", total(s.measured(10*time.Second), ""), 1200, 0.03)
	for _, r := range s.routers {
		r.fleet.SetLimits(Limits{})
	}
	s.run(time.Second, false)
	within(t, "no limit", total(s.measured(10*time.Second), ""), 1500, 0.01)
}

func TestFleetPerServiceLimit(t *testing.T) {
	s := newSim(Limits{PerServiceLimit: 100},
		map[string]float64{"busy": 300, "quiet": 20}, map[string]float64{"busy": 100, "quiet": 20})
	s.run(5*time.Second, false)
	rates := s.measured(20 * time.Second)
	within(t, "busy across the fleet", total(rates, "busy"), 100, 0.03)
	within(t, "quiet across the fleet", total(rates, "quiet"), 40, 0.01)
}

func TestFleetBoundsTrackedServices(t *testing.T) {
	f := NewFleet(Limits{PerServiceLimit: 10}, 2)
	now := time.Unix(0, 0)
	for i := range 100 {
		f.Allow(fmt.Appendf(nil, "svc-%d", i), 1, now)
	}
	if n := len(*f.services.Load()); n != 2 {
		t.Fatalf("%d services tracked, want the bound 2", n)
	}
	// The 98 untracked services share one bucket of one per-service share.
	got := 0
	for i := 2; i < 100; i++ {
		if f.Allow(fmt.Appendf(nil, "svc-%d", i), 1, now) {
			got++
		}
	}
	if got > 10 {
		t.Fatalf("untracked services admitted %d at one instant, want at most the other bucket's burst 10", got)
	}
	if d := f.Demand(now.Add(time.Second)); len(d.PerService) != 2 || d.Total <= 0 {
		t.Fatalf("Demand %+v: want the 2 tracked services and a total", d)
	}
}

func TestAllowDoesNotAllocate(t *testing.T) {
	f := NewFleet(Limits{MaxQPS: 1e9, PerServiceLimit: 1e9}, 8)
	svc := []byte("checkout")
	now := time.Unix(0, 0)
	f.Allow(svc, 1, now)
	allocs := testing.AllocsPerRun(1000, func() {
		now = now.Add(time.Microsecond)
		f.Allow(svc, 1, now)
	})
	if allocs != 0 {
		t.Fatalf("Allow allocated %.1f times per call for a tracked service", allocs)
	}
}

func TestShare(t *testing.T) {
	tests := []struct {
		name             string
		limit, own, want float64
		others           []float64
	}{
		{"alone over", 100, 300, 100, nil},
		{"alone under", 100, 30, 100, nil},
		{"over: by demand", 100, 300, 75, []float64{100}},
		{"under: demand plus half the headroom", 100, 20, 40, []float64{40}},
		{"idle router keeps the floor", 100, 0, 5, []float64{1000}},
		{"no limit", 0, 5, 0, []float64{1}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := Share(tt.limit, tt.own, tt.others); math.Abs(got-tt.want) > 1e-9 {
				t.Fatalf("Share(%v, %v, %v) = %v, want %v", tt.limit, tt.own, tt.others, got, tt.want)
			}
		})
	}
}

func TestPeersOlderThanMaxAgeAreGone(t *testing.T) {
	f := NewFleet(Limits{MaxQPS: 100}, 4)
	now := time.Unix(100, 0)
	f.SetPeers(map[string]PeerDemand{
		"fresh": {Total: 1000, At: now.Add(-time.Second)},
		"stale": {Total: 1000, At: now.Add(-time.Minute)},
	}, now, 5*time.Second)
	if n := len(f.peers); n != 1 {
		t.Fatalf("%d live peers, want 1 (the stale one is gone)", n)
	}
	if r := f.global.rate; math.Abs(r-5) > 1e-9 { // floor: 0.1 × 100 / 2
		t.Fatalf("idle router's share %v, want the floor 5", r)
	}
}

func BenchmarkAllow(b *testing.B) {
	f := NewFleet(Limits{MaxQPS: 1e9, Burst: 1e9, PerServiceLimit: 1e9}, 64)
	svc := []byte("checkout")
	now := time.Unix(0, 0)
	b.ReportAllocs()
	for b.Loop() {
		now = now.Add(time.Microsecond)
		f.Allow(svc, 10, now)
	}
}

func BenchmarkAllowParallel(b *testing.B) {
	f := NewFleet(Limits{MaxQPS: 1e9, Burst: 1e9, PerServiceLimit: 1e9}, 64)
	now := time.Unix(0, 0)
	b.ReportAllocs()
	b.RunParallel(func(pb *testing.PB) {
		svc := []byte("checkout")
		for pb.Next() {
			f.Allow(svc, 10, now)
		}
	})
}

// TestFleetConcurrent runs Allow from several goroutines against reloads and peer
// reports (for -race) and checks nothing is admitted beyond the bucket.
func TestFleetConcurrent(t *testing.T) {
	f := NewFleet(Limits{MaxQPS: 100, Burst: 100}, 4)
	start := time.Unix(10, 0)
	done := make(chan int)
	for g := range 4 {
		go func() {
			admitted := 0
			for i := range 2000 {
				if f.Allow([]byte(fmt.Sprintf("svc-%d", (g+i)%6)), 1, start) {
					admitted++
				}
			}
			done <- admitted
		}()
	}
	for i := range 50 {
		f.SetPeers(map[string]PeerDemand{"b": {Total: float64(i), At: start}}, start, time.Second)
		f.SetLimits(Limits{MaxQPS: 100, Burst: 100})
		_ = f.Demand(start)
	}
	total := 0
	for range 4 {
		total += <-done
	}
	if total > 100 {
		t.Fatalf("admitted %d at one instant, want at most the burst 100", total)
	}
}

func BenchmarkAllowTraceShedding(b *testing.B) {
	f := NewFleet(Limits{PerServiceLimit: 1000}, 64)
	svc := []byte("checkout")
	now := time.Unix(0, 0)
	b.ReportAllocs()
	var key uint64
	for b.Loop() {
		now = now.Add(100 * time.Microsecond) // 10,000 traces/s of 4 spans: 40× the limit
		key++
		f.AllowTrace(svc, key, 4, now)
	}
}

// A trace the fleet-wide bucket refuses is not remembered by the service's bucket as
// admitted by its tokens (its later spans would pass the service's bucket while it sheds).
func TestRefusedTraceNotRemembered(t *testing.T) {
	f := NewFleet(Limits{MaxQPS: 1, PerServiceLimit: 1000}, 4)
	now := time.Unix(1000, 0)
	svc := []byte("svc")
	if !f.AllowTrace(svc, 1, 1, now) {
		t.Fatal("first trace refused: the fleet-wide bucket holds one item")
	}
	if f.AllowTrace(svc, 2, 1, now) {
		t.Fatal("second trace admitted: the fleet-wide bucket is empty")
	}
	b := f.bucketFor(svc)
	b.mu.Lock()
	defer b.mu.Unlock()
	if !b.remembers(remix(1 ^ serviceSeed)) {
		t.Error("the admitted trace 1 is not remembered by the service's bucket")
	}
	if b.remembers(remix(2 ^ serviceSeed)) {
		t.Error("the refused trace 2 is remembered by the service's bucket as admitted")
	}
}

// TestFleetIgnoresPeersDatedInTheFuture: a peer report dated far ahead of this router's
// clock (a clock that runs ahead, or a hostile report) does not count as live, so it
// cannot shrink this router's share after the peer is gone.
func TestFleetIgnoresPeersDatedInTheFuture(t *testing.T) {
	admitted := func(at time.Duration) int {
		f := NewFleet(Limits{MaxQPS: 1000, Burst: 1000}, 10)
		start := time.Unix(1000, 0)
		f.SetPeers(map[string]PeerDemand{"p": {Total: 1e6, At: start.Add(at)}}, start, 5*time.Second)
		n := 0
		for i := range 2000 { // 2,000 items over one second of this router's clock
			if f.Allow([]byte("svc"), 1, start.Add(time.Duration(i)*500*time.Microsecond)) {
				n++
			}
		}
		return n
	}
	live, future := admitted(0), admitted(time.Hour)
	if live >= future {
		t.Fatalf("admitted %d with a live peer demanding 1e6/s and %d with that peer dated an hour ahead: the future-dated report must not count", live, future)
	}
}
