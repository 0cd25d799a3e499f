package main

import (
	"context"
	"flag"
	"fmt"
	"math/rand/v2"
	"os"
	"runtime"
	"runtime/pprof"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/otelfleet/otelfleet/pkg/configwatch"
	"github.com/otelfleet/otelfleet/pkg/events"
	"github.com/otelfleet/otelfleet/pkg/fleetconfig"
	"github.com/otelfleet/otelfleet/pkg/natsconn"
	"github.com/otelfleet/otelfleet/pkg/natstest"
	"github.com/otelfleet/otelfleet/pkg/registration"
	"github.com/otelfleet/otelfleet/pkg/sysstat"
	registrysvc "github.com/otelfleet/otelfleet/services/registry"
	samplersvc "github.com/otelfleet/otelfleet/services/sampler"
	topologysvc "github.com/otelfleet/otelfleet/services/topology"
)

// scaleCPUProfile, when set, names the files (FILE.<benchmark name>) that receive a CPU
// profile of each BenchmarkRegistryScale case's measurement window; its samples carry the label part=collectors|registry|topology|
// sampler|events (untagged: the nats-servers), so `go tool pprof -tags FILE` splits the
// CPU between the load generator, each service and the servers.
var scaleCPUProfile = flag.String("scale.cpuprofile", "", "write a CPU profile of BenchmarkRegistryScale's measurement window to this file")

// BenchmarkRegistryScale runs N collectors heart-beating into the registry bucket at a
// 10s TTL (a heartbeat every 3.3s) with the registry, topology and sampler services
// following it, against one server and against a 3-node JetStream cluster (R3 buckets),
// then cuts 20 collectors off abruptly. It reports: puts/s sustained over the window,
// expiry events for collectors that were not cut off (false-expiries, must be 0) and
// re-registrations of collectors that were never cut off (their key was gone or
// rewritten), how long after its last heartbeat each cut-off collector's
// registry.expired event arrived, each service's live heap once it has loaded every
// registration, and the process's CPU (cores) over the window. The collectors are the
// real registration clients sharing a few connections (a fixed health reading: 50,000
// /proc readings every 3.3s would measure sysstat). Use -benchtime=1x; the 50,000
// cases take one to two minutes each.
func BenchmarkRegistryScale(b *testing.B) {
	for _, tc := range []struct {
		name              string
		collectors, nodes int
	}{{"10k", 10_000, 1}, {"10k-cluster3", 10_000, 3}, {"50k", 50_000, 1}, {"50k-cluster3", 50_000, 3}} {
		b.Run(tc.name, func(b *testing.B) {
			for range b.N {
				registryScale(b, tc.collectors, tc.nodes)
			}
		})
	}
}

// fixedReading is a constant health reading.
type fixedReading struct{}

func (fixedReading) Sample() (sysstat.Reading, error) {
	return sysstat.Reading{HostCPU: 0.2, HostMemUsed: 0.3, At: time.Now()}, nil
}

// staticConfig is a sampler config source that never changes.
type staticConfig struct{ snap configwatch.Snapshot }

func (s staticConfig) Current() configwatch.Snapshot     { return s.snap }
func (staticConfig) OnChange(func(configwatch.Snapshot)) {}

// expiries records registry events as they arrive.
type expiries struct {
	mu    sync.Mutex
	at    map[string]time.Time // key -> first expired event
	reg   map[string]int       // key -> registered events of registrations made after since
	since time.Time
}

func registryScale(b *testing.B, collectors, nodes int) {
	const (
		ttl     = 10 * time.Second
		window  = 20 * time.Second
		victims = 20
		conns   = 8
		writers = 64
	)
	var connect func(tb testing.TB) *nats.Conn
	if nodes == 1 {
		srv := natstest.Run(b)
		connect = func(tb testing.TB) *nats.Conn { return srv.Connect(tb) }
	} else {
		c := natstest.RunCluster(b, nodes)
		connect = func(tb testing.TB) *nats.Conn { return c.Connect(tb) }
	}
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	jsOn := func(nc *nats.Conn) jetstream.JetStream {
		js, err := jetstream.New(nc)
		if err != nil {
			b.Fatal(err)
		}
		return js
	}
	js := jsOn(connect(b))
	l := natsconn.DefaultLayout()
	l.RegistryTTL, l.Replicas = ttl, nodes
	if _, err := natsconn.Provision(ctx, js, l); err != nil {
		b.Fatal(err)
	}
	openBuckets := func(nc *nats.Conn) *natsconn.Buckets {
		bk, err := natsconn.OpenBuckets(ctx, jsOn(nc), events.Default)
		if err != nil {
			b.Fatal(err)
		}
		return bk
	}
	labelled := func(part string, fn func()) {
		pprof.Do(ctx, pprof.Labels("part", part), func(context.Context) { fn() })
	}

	progress := func(format string, args ...any) { // shown while the benchmark runs
		fmt.Fprintf(os.Stderr, "%s %s: "+format+"\n", append([]any{time.Now().Format("15:04:05"), b.Name()}, args...)...)
	}
	// The collectors: the real registration client, `conns` connections shared by all
	// but the victims, which have their own (closing it is a kill -9).
	clients := make([]*registration.Client, collectors)
	victimConns := make([]*nats.Conn, victims)
	start := time.Now()
	labelled("collectors", func() {
		shared := make([]jetstream.KeyValue, conns)
		for i := range shared {
			shared[i] = openBuckets(connect(b)).Registry
		}
		var wg sync.WaitGroup
		var next atomic.Int64
		var stalled atomic.Bool
		for range writers {
			wg.Go(func() {
				for i := int(next.Add(1) - 1); i < collectors && !stalled.Load(); i = int(next.Add(1) - 1) {
					kv := shared[i%conns]
					if i < victims {
						victimConns[i] = connect(b)
						kv = openBuckets(victimConns[i]).Registry
					}
					c, err := registration.New(kv, registration.Config{
						Kind: events.KindCollector, Region: fmt.Sprintf("r%d", i%10), ID: fmt.Sprintf("c%06d", i),
						Address: fmt.Sprintf("10.%d.%d.%d:4317", i>>16, (i>>8)&255, i&255), CapacityQPS: 1000, Sampler: fixedReading{},
						Interval: ttl / 3, // what the client reads from the bucket; 50,000 bucket reads would load the server for nothing
					}, nil)
					if err == nil {
						err = c.Register(ctx)
					}
					if err != nil {
						b.Error(err)
						return
					}
					clients[i] = c
				}
			})
		}
		// When the server cannot take the heartbeats of those registered and new
		// registrations on top, registering stalls: then the benchmark goes on with the
		// collectors registered so far and reports how many (registered).
		done := make(chan struct{})
		go func() {
			t := time.NewTicker(10 * time.Second)
			defer t.Stop()
			var last [3]int64
			for {
				select {
				case <-done:
					return
				case <-t.C:
				}
				n := min(next.Load(), int64(collectors))
				progress("%d of %d collectors registered", n, collectors)
				if last[0] > 0 && n-last[0] < int64(collectors)/200 {
					progress("registering stalled: %d in the last 30s; going on with those registered", n-last[0])
					stalled.Store(true)
					return
				}
				last = [3]int64{last[1], last[2], n}
			}
		}()
		wg.Wait()
		close(done)
	})
	clients = slices.DeleteFunc(clients, func(c *registration.Client) bool { return c == nil })
	collectors = len(clients)
	if collectors <= victims || slices.Contains(victimConns, nil) {
		b.Fatalf("only %d collectors registered", collectors)
	}
	defer func() {
		stopped, stop := context.WithCancel(ctx)
		stop() // stop the heartbeats without waiting for 50,000 deletes; the keys expire
		for _, c := range clients {
			if c != nil {
				_ = c.Deregister(stopped)
			}
		}
	}()
	if b.Failed() {
		return
	}
	progress("%d collectors registered in %v over %d connections", collectors, time.Since(start).Round(time.Millisecond), conns)

	// Registry events, from the events stream.
	ev := &expiries{at: map[string]time.Time{}, reg: map[string]int{}, since: time.Now()}
	labelled("events", func() {
		cons, err := jsOn(connect(b)).OrderedConsumer(ctx, events.Default.EventsStream(), jetstream.OrderedConsumerConfig{
			FilterSubjects: []string{events.Default.Root() + ".events.registry.>"}, DeliverPolicy: jetstream.DeliverNewPolicy,
		})
		if err != nil {
			b.Fatal(err)
		}
		cc, err := cons.Consume(func(m jetstream.Msg) {
			var e events.RegistryEvent
			if events.Decode(m.Data(), &e) != nil {
				return
			}
			ev.mu.Lock()
			defer ev.mu.Unlock()
			switch e.Event {
			case events.EventRegistryExpired:
				if _, seen := ev.at[e.Key]; !seen {
					ev.at[e.Key] = time.Now()
				}
			case events.EventRegistryRegistered:
				// A registration newer than the initial ones: the key was gone or
				// rewritten (the registry's catch-up re-announces the initial ones).
				if e.Registration != nil && e.Registration.RegisteredAt.After(ev.since) {
					ev.reg[e.Key]++
				}
			}
		})
		if err != nil {
			b.Fatal(err)
		}
		b.Cleanup(cc.Stop)
	})

	// The services, each on its own connection, started under its label; heap measured
	// after a GC before and after each has loaded every registration.
	heap := func() uint64 {
		runtime.GC()
		var ms runtime.MemStats
		runtime.ReadMemStats(&ms)
		return ms.HeapAlloc
	}
	var wg sync.WaitGroup
	defer func() { cancel(); wg.Wait() }() // the registry replica runs until ctx ends
	h0 := heap()
	labelled("registry", func() {
		nc := connect(b)
		svc, err := registrysvc.New(registrysvc.DefaultConfig(), registrysvc.Deps{NC: nc, Publisher: jsOn(nc), NS: events.Default, Instance: "bench"})
		if err != nil {
			b.Fatal(err)
		}
		kv := openBuckets(nc).Registry
		wg.Go(func() { _ = svc.Run(ctx, kv) })
		select {
		case <-svc.Loaded():
		case <-time.After(2 * time.Minute):
			b.Fatal("registry not loaded within 2m")
		}
	})
	h1 := heap()
	var topo *topologysvc.Service
	startService(b, labelled, "topology", func(nc *nats.Conn) (<-chan struct{}, error) {
		var err error
		if topo, err = topologysvc.New(topologysvc.DefaultConfig(), topologysvc.Deps{NC: nc, JS: jsOn(nc), NS: events.Default, Instance: "bench"}); err != nil {
			return nil, err
		}
		topo.Start(openBuckets(nc))
		b.Cleanup(topo.Stop)
		return topo.Ready(), nil
	}, connect)
	h2 := heap()
	startService(b, labelled, "sampler", func(nc *nats.Conn) (<-chan struct{}, error) {
		smp, err := samplersvc.New(samplersvc.DefaultConfig(), samplersvc.Deps{NC: nc, JS: jsOn(nc), NS: events.Default, Instance: "bench",
			Config: staticConfig{configwatch.Snapshot{Global: fleetconfig.Defaults().Global, Regions: map[string]fleetconfig.Region{}}}})
		if err != nil {
			return nil, err
		}
		smp.Start(openBuckets(nc))
		b.Cleanup(smp.Stop)
		return smp.Ready(), nil
	}, connect)
	h3 := heap()
	progress("registry, topology and sampler loaded (heap +%.1f, +%.1f, +%.1f MB)", mb(h0, h1), mb(h1, h2), mb(h2, h3))
	held, _ := topo.State().Counts()
	progress("topology holds %d of %d collectors", held, collectors)

	// The window: puts per second from the registry stream's sequence, and CPU.
	stream, err := js.Stream(ctx, "KV_"+events.Default.RegistryBucket())
	if err != nil {
		b.Fatal(err)
	}
	seq := func() uint64 {
		info, err := stream.Info(ctx)
		if err != nil {
			b.Fatal(err)
		}
		return info.State.LastSeq
	}
	if *scaleCPUProfile != "" {
		f, err := os.Create(*scaleCPUProfile + "." + strings.ReplaceAll(b.Name(), "/", "_"))
		if err != nil {
			b.Fatal(err)
		}
		defer f.Close()
		if err := pprof.StartCPUProfile(f); err != nil {
			b.Fatal(err)
		}
	}
	cpu0, _ := sysstat.ProcessCPUSeconds()
	s0, t0 := seq(), time.Now()
	time.Sleep(window) // the measurement window itself
	s1, elapsed := seq(), time.Since(t0)
	cpu1, _ := sysstat.ProcessCPUSeconds()
	if *scaleCPUProfile != "" {
		pprof.StopCPUProfile()
	}

	progress("window: %.0f puts/s (%d expected), %.2f cores", float64(s1-s0)/elapsed.Seconds(), collectors*3/int(ttl.Seconds()), (cpu1-cpu0)/elapsed.Seconds())
	// Cut the victims off at random phases; expiry is measured from each one's last
	// successful heartbeat.
	last := make(map[string]time.Time, victims)
	for i := range victims {
		time.Sleep(rand.N(ttl / 3 / victims))
		victimConns[i].Close()
		r, _ := clients[i].Current()
		last[clients[i].Key()] = r.UpdatedAt
	}
	var delays []time.Duration
	natstest.Eventually(b, ttl+30*time.Second, func() bool {
		ev.mu.Lock()
		defer ev.mu.Unlock()
		delays = delays[:0]
		for k, t := range last {
			at, ok := ev.at[k]
			if !ok {
				return false
			}
			delays = append(delays, at.Sub(t))
		}
		return true
	}, "not every cut-off collector's expiry event arrived")
	ev.mu.Lock()
	falseExp, rereg := 0, 0
	for k := range ev.at {
		if _, victim := last[k]; !victim {
			falseExp++
		}
	}
	for _, n := range ev.reg {
		rereg += n
	}
	ev.mu.Unlock()
	slices.Sort(delays)

	b.ReportMetric(float64(s1-s0)/elapsed.Seconds(), "puts/s")
	b.ReportMetric(float64(collectors)/(ttl/3).Seconds(), "puts/s-expected")
	b.ReportMetric(float64(collectors), "registered")
	b.ReportMetric(float64(falseExp), "false-expiries")
	b.ReportMetric(float64(rereg), "re-registrations")
	b.ReportMetric(float64(delays[len(delays)/2])/1e6, "expiry-p50-ms")
	b.ReportMetric(float64(delays[len(delays)-1])/1e6, "expiry-max-ms")
	b.ReportMetric(mb(h0, h1), "registry-heap-MB")
	b.ReportMetric(mb(h1, h2), "topology-heap-MB")
	b.ReportMetric(mb(h2, h3), "sampler-heap-MB")
	b.ReportMetric((cpu1-cpu0)/elapsed.Seconds(), "cpu-cores")
	b.ReportMetric(0, "ns/op")
}

// startService starts one service under its CPU profile label on its own connection and
// waits until it is ready.
func startService(b *testing.B, labelled func(string, func()), part string, start func(*nats.Conn) (<-chan struct{}, error), connect func(testing.TB) *nats.Conn) {
	labelled(part, func() {
		ready, err := start(connect(b))
		if err != nil {
			b.Fatal(err)
		}
		select {
		case <-ready:
		case <-time.After(2 * time.Minute):
			b.Fatalf("%s not ready within 2m", part)
		}
	})
}

func mb(before, after uint64) float64 { return (float64(after) - float64(before)) / (1 << 20) }
