package topologysvc

import (
	"encoding/json"
	"errors"
	"math"
	"testing"
	"time"

	"github.com/otelfleet/otelfleet/pkg/events"
)

var t0 = time.Date(2025, 1, 2, 3, 4, 5, 0, time.UTC)

func nan() float64 { return math.NaN() }

func reg(region, id string, capacity float64, health events.HealthStatus) *events.Registration {
	return &events.Registration{V: 1, ID: id, InstanceKind: events.KindCollector, Region: region, Address: id + ":4317",
		CapacityQPS: capacity, Health: events.Health{Status: health}, RegisteredAt: t0}
}

func report(region, id string, qps float64) *events.LoadReport {
	return &events.LoadReport{V: 1, Region: region, Collector: id, At: t0, IntervalMS: 1000, QPS: qps, BytesPerSec: qps * 200,
		QueueDepth: 3, CPU: 0.2, Memory: 1 << 20, AvgLatencyMS: 5, ErrorRate: 0.01, Capacity: 500, Healthy: true}
}

// find returns the collector region/id of v, or nil.
func find(v *view, region, id string) *Collector {
	for i := range v.regions {
		if v.regions[i].Region != region {
			continue
		}
		for j := range v.regions[i].Collectors {
			if c := &v.regions[i].Collectors[j]; c.ID == id {
				return c
			}
		}
	}
	return nil
}

func testConfig() Config {
	c := DefaultConfig()
	c.StaleAfter = 3 * time.Second
	c.UnregisteredGrace = 10 * time.Second
	c.MaxUnregistered = 2
	return c
}

func TestStateBuild(t *testing.T) {
	h := events.HealthHealthy
	tests := []struct {
		name  string
		setup func(s *State)
		at    time.Time
		check func(t *testing.T, v *view, dropped int)
	}{
		{
			name: "registered collector with a fresh report",
			setup: func(s *State) {
				s.PutRegistration(reg("eu", "c1", 1000, h))
				s.PutLoad(report("eu", "c1", 250), t0, t0)
			},
			at: t0.Add(time.Second),
			check: func(t *testing.T, v *view, _ int) {
				c := find(v, "eu", "c1")
				if c == nil || c.Stale || c.Status != StatusHealthy || c.QPS != 250 || c.CapacityQPS != 1000 || !near(c.Utilization, 0.25) ||
					c.ReportAgeMS != 1000 || c.Address != "c1:4317" || !c.LastReport.Equal(t0) {
					t.Fatalf("collector = %+v", c)
				}
				if v.global.Collectors != 1 || v.global.Healthy != 1 || v.global.SpansPerSec != 250 {
					t.Fatalf("global = %+v", v.global)
				}
			},
		},
		{
			name:  "registered, never reported: stale with age -1",
			setup: func(s *State) { s.PutRegistration(reg("eu", "c1", 1000, h)) },
			at:    t0,
			check: func(t *testing.T, v *view, _ int) {
				c := find(v, "eu", "c1")
				if c == nil || !c.Stale || c.Status != StatusStale || c.ReportAgeMS != -1 || !c.LastReport.IsZero() {
					t.Fatalf("collector = %+v", c)
				}
			},
		},
		{
			name: "report older than the window is stale",
			setup: func(s *State) {
				s.PutRegistration(reg("eu", "c1", 1000, h))
				s.PutLoad(report("eu", "c1", 250), t0, t0)
			},
			at: t0.Add(3*time.Second + time.Millisecond),
			check: func(t *testing.T, v *view, _ int) {
				if c := find(v, "eu", "c1"); c == nil || !c.Stale || c.Status != StatusStale {
					t.Fatalf("collector = %+v", c)
				}
				if v.global.SpansPerSec != 0 || v.global.Stale != 1 {
					t.Fatalf("stale traffic counted: %+v", v.global)
				}
			},
		},
		{
			name: "a long report interval widens the window to three intervals",
			setup: func(s *State) {
				s.PutRegistration(reg("eu", "c1", 1000, h))
				r := report("eu", "c1", 250)
				r.IntervalMS = 10_000
				s.PutLoad(r, t0, t0)
			},
			at: t0.Add(25 * time.Second),
			check: func(t *testing.T, v *view, _ int) {
				if c := find(v, "eu", "c1"); c == nil || c.Stale {
					t.Fatalf("collector = %+v", c)
				}
			},
		},
		{
			name: "report saying unhealthy makes a healthy registration unhealthy",
			setup: func(s *State) {
				s.PutRegistration(reg("eu", "c1", 1000, h))
				r := report("eu", "c1", 250)
				r.Healthy = false
				s.PutLoad(r, t0, t0)
			},
			at: t0,
			check: func(t *testing.T, v *view, _ int) {
				if c := find(v, "eu", "c1"); c == nil || c.Health != events.HealthUnhealthy || c.Status != StatusUnhealthy {
					t.Fatalf("collector = %+v", c)
				}
			},
		},
		{
			name: "degraded registration stays degraded",
			setup: func(s *State) {
				s.PutRegistration(reg("eu", "c1", 1000, events.HealthDegraded))
				s.PutLoad(report("eu", "c1", 250), t0, t0)
			},
			at: t0,
			check: func(t *testing.T, v *view, _ int) {
				if c := find(v, "eu", "c1"); c == nil || c.Status != StatusDegraded {
					t.Fatalf("collector = %+v", c)
				}
			},
		},
		{
			name: "capacity from the report when the registration has none",
			setup: func(s *State) {
				s.PutRegistration(reg("eu", "c1", 0, h))
				s.PutLoad(report("eu", "c1", 250), t0, t0)
			},
			at: t0,
			check: func(t *testing.T, v *view, _ int) {
				if c := find(v, "eu", "c1"); c == nil || c.CapacityQPS != 500 || !near(c.Utilization, 0.5) {
					t.Fatalf("collector = %+v", c)
				}
			},
		},
		{
			name: "unregistered reporter is not shown",
			setup: func(s *State) {
				if got := s.PutLoad(report("ghost", "g1", 250), t0, t0); got != LoadUnregistered {
					t.Fatalf("PutLoad = %v, want LoadUnregistered", got)
				}
			},
			at: t0,
			check: func(t *testing.T, v *view, dropped int) {
				if len(v.regions) != 0 || v.global.Collectors != 0 || v.global.SpansPerSec != 0 || dropped != 0 {
					t.Fatalf("unregistered reporter shown: %+v, dropped %d", v, dropped)
				}
			},
		},
		{
			name: "registration arriving within the grace shows the waiting report",
			setup: func(s *State) {
				s.PutLoad(report("eu", "c1", 250), t0, t0)
				s.PutRegistration(reg("eu", "c1", 1000, h))
			},
			at: t0.Add(time.Second),
			check: func(t *testing.T, v *view, _ int) {
				if c := find(v, "eu", "c1"); c == nil || c.QPS != 250 || c.Stale {
					t.Fatalf("collector = %+v", c)
				}
			},
		},
		{
			name:  "unregistered report dropped after the grace",
			setup: func(s *State) { s.PutLoad(report("ghost", "g1", 250), t0, t0) },
			at:    t0.Add(11 * time.Second),
			check: func(t *testing.T, _ *view, dropped int) {
				if dropped != 1 {
					t.Fatalf("dropped = %d, want 1", dropped)
				}
			},
		},
		{
			name: "deleted registration forgets the collector and its load",
			setup: func(s *State) {
				s.PutRegistration(reg("eu", "c1", 1000, h))
				s.PutLoad(report("eu", "c1", 250), t0, t0)
				if !s.DeleteRegistration("eu", "c1") {
					t.Fatal("DeleteRegistration = false")
				}
			},
			at: t0,
			check: func(t *testing.T, v *view, _ int) {
				if len(v.regions) != 0 {
					t.Fatalf("deleted collector shown: %+v", v.regions)
				}
			},
		},
		{
			name: "regions sorted by name, collectors by id",
			setup: func(s *State) {
				for _, k := range [][2]string{{"us", "b"}, {"eu", "z"}, {"us", "a"}, {"eu", "m"}} {
					s.PutRegistration(reg(k[0], k[1], 100, h))
				}
			},
			at: t0,
			check: func(t *testing.T, v *view, _ int) {
				var got []string
				for _, r := range v.regions {
					for _, c := range r.Collectors {
						got = append(got, r.Region+"/"+c.ID)
					}
				}
				want := []string{"eu/m", "eu/z", "us/a", "us/b"}
				if len(got) != len(want) {
					t.Fatalf("order = %v, want %v", got, want)
				}
				for i := range want {
					if got[i] != want[i] {
						t.Fatalf("order = %v, want %v", got, want)
					}
				}
				if v.regions[0].Collectors[0].Region != "eu" || v.global.Regions != 2 {
					t.Fatalf("regions = %+v", v.regions)
				}
			},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			s := NewState(testConfig())
			tt.setup(s)
			v, dropped := s.Build(tt.at)
			tt.check(t, v, dropped)
		})
	}
}

func TestStatePutLoad(t *testing.T) {
	s := NewState(testConfig()) // at most 2 unregistered reporters
	if got := s.PutLoad(report("x", "a", 1), t0, t0); got != LoadUnregistered {
		t.Fatalf("first unregistered = %v", got)
	}
	if got := s.PutLoad(report("x", "b", 1), t0, t0); got != LoadUnregistered {
		t.Fatalf("second unregistered = %v", got)
	}
	if got := s.PutLoad(report("x", "c", 1), t0, t0); got != LoadOverflow {
		t.Fatalf("third unregistered = %v, want LoadOverflow", got)
	}
	if got := s.PutLoad(report("x", "a", 2), t0.Add(time.Second), t0); got != LoadUnregistered {
		t.Fatalf("update of a waiting reporter = %v", got)
	}
	s.PutRegistration(reg("x", "a", 10, events.HealthHealthy))
	if reg, unreg := s.Counts(); reg != 1 || unreg != 1 {
		t.Fatalf("Counts = %d, %d, want 1, 1", reg, unreg)
	}
	if got := s.PutLoad(report("x", "c", 1), t0, t0); got != LoadUnregistered {
		t.Fatalf("after a registration freed a slot = %v", got)
	}
	if got := s.PutLoad(report("x", "a", 3), t0, t0); got != LoadOutdated {
		t.Fatalf("older report = %v, want LoadOutdated", got)
	}
	if got := s.PutLoad(report("x", "a", 4), t0.Add(2*time.Second), t0); got != LoadAccepted {
		t.Fatalf("newer report = %v, want LoadAccepted", got)
	}
	s.DeleteRegistration("x", "c")
	if reg, unreg := s.Counts(); reg != 1 || unreg != 1 {
		t.Fatalf("Counts after deleting a waiting reporter = %d, %d, want 1, 1", reg, unreg)
	}
}

func TestStateRetainRegistrations(t *testing.T) {
	s := NewState(testConfig())
	s.PutRegistration(reg("eu", "keep", 1, events.HealthHealthy))
	s.PutRegistration(reg("eu", "gone", 1, events.HealthHealthy))
	s.PutLoad(report("eu", "waiting", 1), t0, t0)
	if n := s.View().Retain(map[string]struct{}{"collector.eu.keep": {}}); n != 1 {
		t.Fatalf("Retain = %d, want 1", n)
	}
	if reg, unreg := s.Counts(); reg != 1 || unreg != 1 {
		t.Fatalf("Counts = %d, %d, want 1, 1 (waiting reporters are kept)", reg, unreg)
	}
}

func TestConfigValidate(t *testing.T) {
	tests := []struct {
		name   string
		mutate func(c *Config)
		ok     bool
	}{
		{"defaults", func(*Config) {}, true},
		{"interval too short", func(c *Config) { c.Interval = time.Millisecond }, false},
		{"refresh zero", func(c *Config) { c.RefreshInterval = 0 }, false},
		{"stale-after too short", func(c *Config) { c.StaleAfter = time.Millisecond }, false},
		{"no grace is allowed", func(c *Config) { c.UnregisteredGrace = 0 }, true},
		{"negative max unregistered", func(c *Config) { c.MaxUnregistered = -1 }, false},
		{"bad weights", func(c *Config) { c.Weights = Weights{} }, false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			c := DefaultConfig()
			tt.mutate(&c)
			err := c.Validate()
			if (err == nil) != tt.ok {
				t.Fatalf("Validate = %v, want ok %v", err, tt.ok)
			}
			if err != nil && !errors.Is(err, ErrConfigValidation) {
				t.Fatalf("%v does not wrap ErrConfigValidation", err)
			}
		})
	}
}

func TestStateOrderFollowsMembership(t *testing.T) {
	s := NewState(testConfig())
	ids := func(v *view) (out []string) {
		for _, r := range v.regions {
			for _, c := range r.Collectors {
				out = append(out, r.Region+"/"+c.ID)
			}
		}
		return out
	}
	s.PutRegistration(reg("eu", "b", 1, events.HealthHealthy))
	s.PutRegistration(reg("eu", "d", 1, events.HealthHealthy))
	v, _ := s.Build(t0)
	if got := ids(v); len(got) != 2 || got[0] != "eu/b" || got[1] != "eu/d" {
		t.Fatalf("first build = %v", got)
	}
	s.DeleteRegistration("eu", "b")
	s.PutLoad(report("eu", "c", 1), t0, t0) // waiting, not shown
	s.PutRegistration(reg("eu", "a", 1, events.HealthHealthy))
	s.PutRegistration(reg("eu", "d", 2, events.HealthHealthy)) // update, not a new member
	v, _ = s.Build(t0)
	if got := ids(v); len(got) != 2 || got[0] != "eu/a" || got[1] != "eu/d" || v.regions[0].Collectors[1].CapacityQPS != 2 {
		t.Fatalf("after churn = %v", got)
	}
	s.PutRegistration(reg("eu", "c", 1, events.HealthHealthy)) // the waiting reporter registers
	v, _ = s.Build(t0)
	if got := ids(v); len(got) != 3 || got[1] != "eu/c" || v.regions[0].Collectors[1].QPS != 1 {
		t.Fatalf("after the waiting reporter registered = %v", got)
	}
}

// Extreme but valid inputs (a registration claiming an enormous capacity, a load report
// with a subnormal capacity) must not turn into infinities: json.Marshal refuses them,
// so the page, the API and the leader's snapshots would all fail.
func TestStateBuildStaysFinite(t *testing.T) {
	s := NewState(testConfig())
	s.PutRegistration(reg("eu", "huge1", math.MaxFloat64, events.HealthHealthy))
	s.PutRegistration(reg("eu", "huge2", math.MaxFloat64, events.HealthHealthy))
	s.PutRegistration(reg("us", "tiny", 0, events.HealthHealthy))
	s.PutLoad(report("eu", "huge1", 10), t0, t0)
	s.PutLoad(report("eu", "huge2", 10), t0, t0)
	r := report("us", "tiny", 1e9)
	r.Capacity = 5e-324 // valid: finite, >= 0, <= MaxReportedQPS
	if err := r.Validate(); err != nil {
		t.Fatalf("the report must be valid for this test: %v", err)
	}
	s.PutLoad(r, t0, t0)
	v, _ := s.Build(t0)
	if c := find(v, "us", "tiny"); c == nil || !(c.Utilization >= 1) || math.IsInf(c.Utilization, 0) {
		t.Fatalf("collector with a subnormal capacity: %+v, want a finite utilisation >= 1 (full)", c)
	}
	for _, r := range v.regions {
		if _, err := json.Marshal(r); err != nil {
			t.Errorf("region %s does not encode: %v", r.Region, err)
		}
	}
	snap := events.TopologySnapshot{V: events.TopologySnapshotVersion, Leader: "t", Token: 1, Seq: 1,
		Collectors: v.global.Collectors, Global: v.global, At: t0}
	for _, r := range v.regions {
		snap.Regions = append(snap.Regions, r.Stats)
	}
	if _, err := events.Encode(snap); err != nil {
		t.Fatalf("snapshot does not encode: %v", err)
	}
}
