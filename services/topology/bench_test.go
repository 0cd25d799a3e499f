package topologysvc

import (
	"encoding/json"
	"fmt"
	"math/rand/v2"
	"sync"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/prometheus/client_golang/prometheus/testutil"

	"github.com/otelfleet/otelfleet/pkg/events"
	"github.com/otelfleet/otelfleet/pkg/sysstat"
)

// fleet fills a state with n registered collectors over 10 regions, each with a fresh
// load report, and returns their keys.
func fleet(tb testing.TB, s *State, n int, now time.Time) []collectorKey {
	tb.Helper()
	rng := rand.New(rand.NewPCG(1, 2))
	keys := make([]collectorKey, n)
	for i := range n {
		region := fmt.Sprintf("region-%02d", i%10)
		id := fmt.Sprintf("collector-%05d", i)
		keys[i] = collectorKey{region, id}
		health := events.HealthHealthy
		if i%50 == 0 {
			health = events.HealthUnhealthy
		}
		s.PutRegistration(reg(region, id, 1000+float64(rng.IntN(9000)), health))
		r := report(region, id, float64(rng.IntN(10000)))
		r.AvgLatencyMS = rng.Float64() * 50
		s.PutLoad(r, now.Add(-time.Duration(rng.IntN(1500))*time.Millisecond), now)
	}
	return keys
}

// BenchmarkBuild is one rebuild of the topology view of 1,000 to 100,000 collectors
// (what every replica does every RefreshInterval and what a snapshot is made from).
func BenchmarkBuild(b *testing.B) {
	for _, n := range []int{1_000, 10_000, 50_000, 100_000} {
		b.Run(fmt.Sprint(n), func(b *testing.B) {
			s := NewState(DefaultConfig())
			now := time.Now()
			fleet(b, s, n, now)
			s.Build(now) // the first build sorts and sizes the scratch buffer
			b.ReportAllocs()
			cpu0, _ := sysstat.ProcessCPUSeconds()
			for b.Loop() {
				v, _ := s.Build(now)
				if v.global.Collectors != n {
					b.Fatalf("collectors = %d", v.global.Collectors)
				}
			}
			reportCPU(b, cpu0)
		})
	}
	// With churn: a collector joins and one leaves before every build, so every build
	// re-sorts the order (the worst case; a real fleet changes membership far less often
	// than once per RefreshInterval).
	for _, n := range []int{10_000, 50_000, 100_000} {
		b.Run(fmt.Sprint(n, "-churn"), func(b *testing.B) {
			s := NewState(DefaultConfig())
			now := time.Now()
			fleet(b, s, n, now)
			s.Build(now)
			b.ReportAllocs()
			cpu0, _ := sysstat.ProcessCPUSeconds()
			i := 0
			for b.Loop() {
				s.PutRegistration(reg("region-00", fmt.Sprintf("new-%d", i), 100, events.HealthHealthy))
				s.DeleteRegistration("region-00", fmt.Sprintf("new-%d", i-1))
				i++
				s.Build(now)
			}
			reportCPU(b, cpu0)
		})
	}
}

// reportCPU reports the process's CPU time per op since cpu0 (every thread, GC
// included): on a shared machine wall time per op also counts time waiting for a core.
func reportCPU(b *testing.B, cpu0 float64) {
	if cpu1, err := sysstat.ProcessCPUSeconds(); err == nil {
		b.ReportMetric((cpu1-cpu0)*1e3/float64(b.N), "cpu-ms/op")
	}
}

// BenchmarkBuildUnderIngest rebuilds the view of 10,000 collectors while another
// goroutine records 10,000 load reports a second (each collector reporting once a
// second), to show the lock shared by ingestion and Build does not slow either down.
func BenchmarkBuildUnderIngest(b *testing.B) {
	const n = 10_000
	s := NewState(DefaultConfig())
	now := time.Now()
	keys := fleet(b, s, n, now)
	stop := make(chan struct{})
	var wg sync.WaitGroup
	wg.Add(1)
	go func() {
		defer wg.Done()
		tick := time.NewTicker(time.Millisecond)
		defer tick.Stop()
		i := 0
		for {
			select {
			case <-stop:
				return
			case <-tick.C:
				for range n / 1000 { // 10 per millisecond: 10,000 a second
					k := keys[i%n]
					s.PutLoad(report(k.region, k.id, float64(i%5000)), time.Now(), time.Now())
					i++
				}
			}
		}
	}()
	b.ReportAllocs()
	b.ResetTimer()
	for b.Loop() {
		s.Build(time.Now())
	}
	b.StopTimer()
	close(stop)
	wg.Wait()
}

// BenchmarkBest is one best-collector query over 10,000 collectors: in one region of
// 1,000, in all regions, and a fallback from an empty region.
func BenchmarkBest(b *testing.B) {
	s := NewState(DefaultConfig())
	now := time.Now()
	fleet(b, s, 10_000, now)
	v, _ := s.Build(now)
	for _, tc := range []struct{ name, region string }{{"region", "region-03"}, {"global", ""}, {"fallback", "empty"}} {
		b.Run(tc.name, func(b *testing.B) {
			b.ReportAllocs()
			for b.Loop() {
				if _, err := Best(v.regions, tc.region, DefaultWeights()); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}

// BenchmarkIngest is the cost of one load report in the service: decode and validate
// (DecodeLoad) plus recording it in the state (PutLoad), over 10,000 collectors.
func BenchmarkIngest(b *testing.B) {
	const n = 10_000
	s := NewState(DefaultConfig())
	now := time.Now()
	keys := fleet(b, s, n, now)
	type msg struct {
		subject string
		data    []byte
	}
	msgs := make([]msg, n)
	for i, k := range keys {
		r := report(k.region, k.id, 1234)
		r.At = now
		r.Services = []events.ServiceRate{{Name: "checkout", SpansPerSec: 600}, {Name: "payment", SpansPerSec: 400}, {Name: "search", SpansPerSec: 234}}
		data, err := json.Marshal(r)
		if err != nil {
			b.Fatal(err)
		}
		subj, _ := events.Default.LoadSubject(k.region, k.id)
		msgs[i] = msg{subj, data}
	}
	header := nats.Header{events.HeaderType: []string{"io.otelfleet.load.report.v1"}}
	b.ReportAllocs()
	b.SetBytes(int64(len(msgs[0].data)))
	i := 0
	for b.Loop() {
		m := msgs[i%n]
		r, _, err := DecodeLoad(events.Default, m.subject, header, m.data)
		if err != nil {
			b.Fatal(err)
		}
		s.PutLoad(&r, now, now)
		i++
	}
}

// BenchmarkIngestNATS is the end-to-end cost of a load report through a real in-process
// NATS server: core publish, OTLP_LOAD stream, ordered consumer, decode, state. It
// reports the time per report at full speed (the inverse of the ingest throughput).
func BenchmarkIngestNATS(b *testing.B) {
	f := newFixture(b, 30*time.Second)
	r := f.start(b, DefaultConfig(), "bench")
	const n = 10_000
	keys := make([]collectorKey, n)
	datas := make([][]byte, n)
	subjects := make([]string, n)
	for i := range n {
		keys[i] = collectorKey{fmt.Sprintf("region-%02d", i%10), fmt.Sprintf("collector-%05d", i)}
		rep := report(keys[i].region, keys[i].id, 1000)
		rep.At = time.Now()
		datas[i], _ = json.Marshal(rep)
		subjects[i], _ = events.Default.LoadSubject(keys[i].region, keys[i].id)
	}
	for _, k := range keys[:100] { // some registered, the rest wait unregistered
		r.svc.state.PutRegistration(reg(k.region, k.id, 1000, events.HealthHealthy))
	}
	counted := func() float64 {
		return testutil.ToFloat64(r.svc.m.reports.WithLabelValues("accepted")) +
			testutil.ToFloat64(r.svc.m.reports.WithLabelValues("unregistered")) +
			testutil.ToFloat64(r.svc.m.reports.WithLabelValues("outdated")) +
			testutil.ToFloat64(r.svc.m.rejected.WithLabelValues(RejectOverflow))
	}
	base := counted()
	b.ReportAllocs()
	b.ResetTimer()
	for i := range b.N {
		if err := f.nc.Publish(subjects[i%n], datas[i%n]); err != nil {
			b.Fatal(err)
		}
	}
	total := float64(b.N)
	deadline := time.Now().Add(time.Minute)
	for counted()-base < total {
		if time.Now().After(deadline) {
			b.Fatalf("ingested %v of %v", counted()-base, total)
		}
		time.Sleep(time.Millisecond)
	}
}
