package simfleet

import (
	"context"
	"errors"
	"math"
	"reflect"
	"slices"
	"sort"
	"strings"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"
	"go.uber.org/goleak"

	"github.com/otelfleet/otelfleet/pkg/events"
	"github.com/otelfleet/otelfleet/pkg/loadreport"
	"github.com/otelfleet/otelfleet/pkg/natsconn"
	"github.com/otelfleet/otelfleet/pkg/natstest"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

var t0 = time.Date(2025, 3, 1, 0, 0, 0, 0, time.UTC)

// run steps f every interval for n steps and returns the reports of each step.
func run(t *testing.T, f *Fleet, n int) [][]events.LoadReport {
	t.Helper()
	out := make([][]events.LoadReport, n)
	for i := range n {
		out[i] = f.Step(t0.Add(time.Duration(i) * f.cfg.Interval))
		if len(out[i]) != f.cfg.Regions*f.cfg.Collectors {
			t.Fatalf("step %d: %d reports, want %d", i, len(out[i]), f.cfg.Regions*f.cfg.Collectors)
		}
	}
	return out
}

func newFleet(t *testing.T, mutate func(*Config)) *Fleet {
	t.Helper()
	cfg := DefaultConfig()
	if mutate != nil {
		mutate(&cfg)
	}
	f, err := NewFleet(cfg, t0)
	if err != nil {
		t.Fatal(err)
	}
	return f
}

// offered is the load offered to a collector: accepted spans plus refused ones.
func offered(r events.LoadReport) float64 { return r.QPS / (1 - r.ErrorRate) }

func TestRegionNamesAndIDs(t *testing.T) {
	if got := RegionNames(3); !slices.Equal(got, []string{"us-east-1", "eu-west-1", "ap-south-1"}) {
		t.Fatalf("RegionNames(3) = %v", got)
	}
	got := RegionNames(8)
	if got[5] != "ap-northeast-1" || got[6] != "region-7" || got[7] != "region-8" {
		t.Fatalf("RegionNames(8) = %v", got)
	}
	f := newFleet(t, func(c *Config) { c.Regions, c.Collectors = 2, 2 })
	var ids []string
	for _, m := range f.Members() {
		ids = append(ids, m.ID)
		if err := events.CheckToken("id", m.ID); err != nil {
			t.Fatal(err)
		}
	}
	want := []string{"sim-us-east-1-1", "sim-us-east-1-2", "sim-eu-west-1-1", "sim-eu-west-1-2"}
	if !slices.Equal(ids, want) {
		t.Fatalf("ids = %v, want %v", ids, want)
	}
}

func TestConfigValidate(t *testing.T) {
	tests := []struct {
		name    string
		mutate  func(*Config)
		wantErr string
	}{
		{name: "defaults", mutate: func(*Config) {}},
		{name: "no regions", mutate: func(c *Config) { c.Regions = 0 }, wantErr: "--regions 0"},
		{name: "too many collectors", mutate: func(c *Config) { c.Regions, c.Collectors = 100, 100 }, wantErr: "at most 5000"},
		{name: "unknown pattern", mutate: func(c *Config) { c.Pattern = "sawtooth" }, wantErr: `--pattern "sawtooth"`},
		{name: "no services", mutate: func(c *Config) { c.Services = nil }, wantErr: "--services"},
		{name: "duplicate service", mutate: func(c *Config) { c.Services = []string{"a", "a"} }, wantErr: `"a" is listed twice`},
		{name: "zero base qps", mutate: func(c *Config) { c.BaseQPS = 0 }, wantErr: "--base-qps"},
		{name: "NaN base qps", mutate: func(c *Config) { c.BaseQPS = math.NaN() }, wantErr: "--base-qps"},
		{name: "tiny interval", mutate: func(c *Config) { c.Interval = time.Millisecond }, wantErr: "--interval"},
		{name: "bad prefix", mutate: func(c *Config) { c.IDPrefix = "a.b" }, wantErr: "--id-prefix"},
		{name: "outages off", mutate: func(c *Config) { c.OutageEvery = 0 }},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			c := DefaultConfig()
			tt.mutate(&c)
			err := c.Validate()
			if tt.wantErr == "" {
				if err != nil {
					t.Fatal(err)
				}
				return
			}
			if !errors.Is(err, ErrConfigValidation) || !strings.Contains(err.Error(), tt.wantErr) {
				t.Fatalf("Validate = %v, want %q", err, tt.wantErr)
			}
		})
	}
}

func TestDeterminism(t *testing.T) {
	for _, p := range Patterns {
		t.Run(string(p), func(t *testing.T) {
			mutate := func(c *Config) { c.Pattern, c.Seed, c.OutageEvery = p, 42, time.Minute }
			a := run(t, newFleet(t, mutate), 300)
			b := run(t, newFleet(t, mutate), 300)
			if !reflect.DeepEqual(a, b) {
				t.Fatal("two fleets with the same seed and times differ")
			}
			c := run(t, newFleet(t, func(c *Config) { mutate(c); c.Seed = 43 }), 300)
			if reflect.DeepEqual(a, c) {
				t.Fatal("fleets with different seeds are identical")
			}
		})
	}
}

// TestReportsConsistent checks every report of every pattern for validity and for the
// relations the model promises.
func TestReportsConsistent(t *testing.T) {
	for _, p := range Patterns {
		t.Run(string(p), func(t *testing.T) {
			f := newFleet(t, func(c *Config) { c.Pattern, c.OutageEvery, c.StepAfter = p, 2*time.Minute, 100*time.Second })
			outages, recoveries := 0, 0
			prevHealthy := map[string]bool{}
			for i, step := range run(t, f, 600) {
				for _, r := range step {
					if err := r.Validate(); err != nil {
						t.Fatalf("step %d %s: invalid: %v", i, r.Collector, err)
					}
					if r.QPS > r.Capacity*maxUtilisation+0.1 {
						t.Fatalf("step %d %s: qps %v above capacity %v", i, r.Collector, r.QPS, r.Capacity)
					}
					if little := r.QPS * r.AvgLatencyMS / 1000; math.Abs(float64(r.QueueDepth)-little) > 1+0.01*little {
						t.Fatalf("step %d %s: queue %d, Little's law says %.1f", i, r.Collector, r.QueueDepth, little)
					}
					var sum float64
					for _, s := range r.Services {
						sum += s.SpansPerSec
					}
					if math.Abs(sum-r.QPS) > 0.1*r.QPS+1 {
						t.Fatalf("step %d %s: services sum to %v, qps %v", i, r.Collector, sum, r.QPS)
					}
					if !sort.SliceIsSorted(r.Services, func(a, b int) bool { return r.Services[a].SpansPerSec > r.Services[b].SpansPerSec }) {
						t.Fatalf("step %d %s: services not busiest first: %+v", i, r.Collector, r.Services)
					}
					if rho := r.QPS / r.Capacity; r.Healthy && math.Abs(r.CPU-(0.02+0.8*rho)) > 0.06 {
						t.Fatalf("step %d %s: cpu %v at utilisation %v", i, r.Collector, r.CPU, rho)
					}
					if !r.Healthy && r.QPS > outageCapacity*r.Capacity {
						t.Fatalf("step %d %s: qps %v during an outage, above %v of capacity %v", i, r.Collector, r.QPS, outageCapacity, r.Capacity)
					}
					if was, seen := prevHealthy[r.Collector]; seen && was != r.Healthy {
						if r.Healthy {
							recoveries++
						} else {
							outages++
						}
					}
					prevHealthy[r.Collector] = r.Healthy
				}
			}
			if outages == 0 || recoveries == 0 {
				t.Fatalf("outages %d, recoveries %d: want collectors to fail and recover", outages, recoveries)
			}
		})
	}
}

// regionOffered sums the offered load of region per step.
func regionOffered(steps [][]events.LoadReport, region string) []float64 {
	out := make([]float64, len(steps))
	for i, step := range steps {
		for _, r := range step {
			if region == "" || r.Region == region {
				out[i] += offered(r)
			}
		}
	}
	return out
}

func mean(xs []float64) float64 {
	var s float64
	for _, x := range xs {
		s += x
	}
	return s / float64(len(xs))
}

func TestPatternShapes(t *testing.T) {
	noOutages := func(p Pattern) func(*Config) {
		return func(c *Config) { c.Pattern, c.OutageEvery = p, 0 }
	}
	t.Run("steady stays level", func(t *testing.T) {
		total := regionOffered(run(t, newFleet(t, noOutages(PatternSteady)), 300), "")
		lo, hi := slices.Min(total), slices.Max(total)
		if hi/lo > 1.2 {
			t.Fatalf("steady fleet load ranges %v..%v", lo, hi)
		}
	})
	t.Run("step goes 10x and stays", func(t *testing.T) {
		f := newFleet(t, func(c *Config) { noOutages(PatternStep)(c); c.StepAfter = time.Minute })
		total := regionOffered(run(t, f, 180), "")
		before, after := mean(total[:60]), mean(total[60:])
		if ratio := after / before; ratio < 9 || ratio > 11 {
			t.Fatalf("offered load after the step is %.2f× before, want 10×", ratio)
		}
		if slices.Min(total[60:]) < 8*before {
			t.Fatal("the step did not stay up")
		}
	})
	t.Run("diurnal oscillates with its period", func(t *testing.T) {
		f := newFleet(t, func(c *Config) { noOutages(PatternDiurnal)(c); c.Period = 2 * time.Minute })
		steps := run(t, f, 360) // three periods
		for _, region := range RegionNames(3) {
			load := regionOffered(steps, region)
			lo, hi := slices.Min(load), slices.Max(load)
			if hi/lo < 3 {
				t.Fatalf("%s: diurnal load ranges %v..%v, want about 0.4..1.6 of the mean", region, lo, hi)
			}
			// One period later the level is the same (up to noise).
			for i := 0; i+120 < len(load); i += 7 {
				if math.Abs(load[i]-load[i+120]) > 0.25*load[i] {
					t.Fatalf("%s: step %d %v vs one period later %v", region, i, load[i], load[i+120])
				}
			}
			// Half a period after the peak, the trough.
			peak := slices.Index(load[:120], slices.Max(load[:120]))
			if trough := load[peak+60]; trough > lo*1.5 {
				t.Fatalf("%s: half a period after the peak the load is %v, trough %v", region, trough, lo)
			}
		}
	})
	t.Run("spike bursts 5-10x", func(t *testing.T) {
		f := newFleet(t, func(c *Config) { noOutages(PatternSpike)(c); c.SpikeEvery = time.Minute })
		steps := run(t, f, 600)
		for _, region := range RegionNames(3) {
			load := regionOffered(steps, region)
			sorted := slices.Sorted(slices.Values(load))
			median := sorted[len(sorted)/2]
			spiking := 0
			for _, v := range load {
				if ratio := v / median; ratio > 4 {
					spiking++
					if ratio > 12 {
						t.Fatalf("%s: a spike of %.1f×", region, ratio)
					}
				}
			}
			if spiking == 0 || spiking > len(load)/2 {
				t.Fatalf("%s: %d of %d steps spiking", region, spiking, len(load))
			}
		}
	})
}

func TestStepIgnoresPastTimes(t *testing.T) {
	f := newFleet(t, nil)
	if f.Step(t0) == nil {
		t.Fatal("first step returned nothing")
	}
	if f.Step(t0) != nil || f.Step(t0.Add(-time.Second)) != nil {
		t.Fatal("a step not after the previous one returned reports")
	}
	r := f.Step(t0.Add(3 * time.Second))
	if r[0].IntervalMS != 3000 {
		t.Fatalf("interval %d, want 3000", r[0].IntervalMS)
	}
}

func provision(t *testing.T, srv *natstest.Server, ttl time.Duration) (*nats.Conn, jetstream.JetStream, *natsconn.Buckets) {
	t.Helper()
	nc, js := srv.JetStream(t)
	l := natsconn.DefaultLayout()
	l.RegistryTTL = ttl
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	b, err := natsconn.Provision(ctx, js, l)
	if err != nil {
		t.Fatal(err)
	}
	return nc, js, b
}

// TestSimulatorOnNATS runs a simulator against a real server: every collector is
// registered, every collector's valid report is in the OTLP_LOAD stream within two
// intervals, and Stop deregisters them all.
func TestSimulatorOnNATS(t *testing.T) {
	srv := natstest.Run(t)
	nc, js, b := provision(t, srv, 3*time.Second)
	cfg := DefaultConfig()
	cfg.Regions, cfg.Collectors, cfg.Interval = 2, 3, 200*time.Millisecond
	reg := prometheus.NewRegistry()
	sim, err := New(nc, events.Default, b.Registry, cfg, nil, reg)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if err := sim.Start(ctx); err != nil {
		t.Fatal(err)
	}
	started := time.Now()
	if err := sim.Start(ctx); !errors.Is(err, ErrStarted) {
		t.Fatalf("second Start = %v", err)
	}
	members := sim.Members()
	if len(members) != 6 {
		t.Fatalf("%d members", len(members))
	}
	stream, err := js.Stream(ctx, events.Default.LoadStream())
	if err != nil {
		t.Fatal(err)
	}
	for _, m := range members {
		subject, _ := events.Default.LoadSubject(m.Region, m.ID)
		var raw *jetstream.RawStreamMsg
		natstest.Eventually(t, 2*cfg.Interval-time.Since(started), func() bool {
			raw, err = stream.GetLastMsgForSubject(ctx, subject)
			return err == nil
		}, "no report from %s within two intervals: %v", m.ID, err)
		r, err := loadreport.Decode(&nats.Msg{Subject: raw.Subject, Header: raw.Header, Data: raw.Data})
		if err != nil {
			t.Fatalf("%s: %v", m.ID, err)
		}
		if r.Capacity != m.Capacity || r.QPS <= 0 {
			t.Fatalf("%s: %+v", m.ID, r)
		}
		key, _ := events.CollectorKey(m.Region, m.ID)
		e, err := b.Registry.Get(ctx, key)
		if err != nil {
			t.Fatalf("%s not registered: %v", key, err)
		}
		got, err := events.DecodeRegistration(e.Value())
		if err != nil {
			t.Fatal(err)
		}
		if got.CapacityQPS != m.Capacity || got.Metadata["simulated"] != "true" || got.Health.ProcessCPU == 0 {
			t.Fatalf("%s registered as %+v", key, got)
		}
	}
	// Reports keep coming every interval.
	natstest.Eventually(t, 5*time.Second, func() bool {
		return testutil.ToFloat64(sim.m.reports) >= float64(3*len(members))
	}, "reports stopped")

	stopCtx, stopCancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer stopCancel()
	if err := sim.Stop(stopCtx); err != nil {
		t.Fatal(err)
	}
	if err := sim.Stop(stopCtx); err != nil {
		t.Fatalf("second Stop: %v", err)
	}
	keys, err := b.Registry.ListKeys(ctx)
	if err != nil {
		t.Fatal(err)
	}
	var left []string
	for k := range keys.Keys() {
		left = append(left, k)
	}
	if len(left) != 0 {
		t.Fatalf("still registered after Stop: %v", left)
	}
}

// TestSimulatorKilledExpires checks the kill -9 path: a simulator that never
// deregisters leaves registrations that the bucket TTL removes.
func TestSimulatorKilledExpires(t *testing.T) {
	srv := natstest.Run(t)
	provision(t, srv, time.Second)
	_, watch, _ := provision(t, srv, time.Second)
	registry, err := watch.KeyValue(context.Background(), events.Default.RegistryBucket())
	if err != nil {
		t.Fatal(err)
	}
	// The simulator's own connection carries both its reports and its heartbeats.
	nc := srv.Connect(t)
	js, err := jetstream.New(nc)
	if err != nil {
		t.Fatal(err)
	}
	simRegistry, err := js.KeyValue(context.Background(), events.Default.RegistryBucket())
	if err != nil {
		t.Fatal(err)
	}
	cfg := DefaultConfig()
	cfg.Regions, cfg.Collectors, cfg.Interval = 1, 2, 100*time.Millisecond
	sim, err := New(nc, events.Default, simRegistry, cfg, nil, nil)
	if err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	if err := sim.Start(ctx); err != nil {
		t.Fatal(err)
	}
	nc.Close() // the process dies: no more heartbeats, no deregistration
	defer func() { _ = sim.Stop(ctx) }()
	natstest.Eventually(t, 10*time.Second, func() bool {
		_, err := registry.Get(ctx, "collector.us-east-1.sim-us-east-1-1")
		return errors.Is(err, jetstream.ErrKeyNotFound)
	}, "registration did not expire")
}
