package registrysvc_test

import (
	"context"
	"fmt"
	"math/rand/v2"
	"runtime"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/otelfleet/otelfleet/pkg/events"
	"github.com/otelfleet/otelfleet/pkg/natsconn"
	"github.com/otelfleet/otelfleet/pkg/natstest"
	"github.com/otelfleet/otelfleet/pkg/registration"
	registrysvc "github.com/otelfleet/otelfleet/services/registry"
)

// BenchmarkRegistry10kCollectors runs 10,000 collectors heart-beating into one NATS
// server with a 10s registry TTL (a heartbeat every 3.3s) and one registry service
// watching them, then cuts 20 collectors off abruptly. It reports the sustained
// registry writes per second, how long after its last heartbeat each cut-off collector's
// registry.expired event arrived, the registry service's heap, and expiry events for
// collectors that were not cut off (must be 0). One run takes about a minute; use
// -benchtime=1x. Collectors use a fixed health reading (real agents run on their own
// hosts; 10k /proc readings per 3s on this machine would measure sysstat instead).
func BenchmarkRegistry10kCollectors(b *testing.B) {
	const (
		collectors = 10000
		victims    = 20
		ttl        = 10 * time.Second
		window     = 15 * time.Second
		conns      = 8
	)
	for range b.N {
		srv := natstest.Run(b)
		_, js := srv.JetStream(b)
		l := natsconn.DefaultLayout()
		l.RegistryTTL = ttl
		if _, err := natsconn.Provision(context.Background(), js, l); err != nil {
			b.Fatal(err)
		}
		bucket := func(nc *nats.Conn) jetstream.KeyValue {
			js, err := jetstream.New(nc)
			if err != nil {
				b.Fatal(err)
			}
			kv, err := js.KeyValue(context.Background(), events.Default.RegistryBucket())
			if err != nil {
				b.Fatal(err)
			}
			return kv
		}
		shared := make([]jetstream.KeyValue, conns)
		for i := range shared {
			shared[i] = bucket(srv.Connect(b))
		}
		fs := &fakeSampler{cpu: 0.2}
		clients := make([]*registration.Client, collectors)
		victimConns := make([]*nats.Conn, victims)
		var wg sync.WaitGroup
		start := time.Now()
		for w := range conns {
			wg.Add(1)
			go func() {
				defer wg.Done()
				for i := w; i < collectors; i += conns {
					kv := shared[w]
					if i < victims {
						victimConns[i] = srv.Connect(b)
						kv = bucket(victimConns[i])
					}
					c, err := registration.New(kv, registration.Config{
						Kind: events.KindCollector, Region: fmt.Sprintf("r%d", i%10), ID: fmt.Sprintf("c%05d", i),
						Address: fmt.Sprintf("10.%d.%d.%d:4317", i>>16, (i>>8)&255, i&255), CapacityQPS: 1000, Sampler: fs,
					}, nil)
					if err != nil {
						b.Error(err)
						return
					}
					if err := c.Register(context.Background()); err != nil {
						b.Error(err)
						return
					}
					clients[i] = c
				}
			}()
		}
		wg.Wait()
		if b.Failed() {
			return
		}
		b.Logf("%d collectors registered in %v", collectors, time.Since(start).Round(time.Millisecond))

		evs := collect(b, srv)
		runtime.GC()
		var before, after runtime.MemStats
		runtime.ReadMemStats(&before)
		rep := startReplica(b, srv, "bench")
		runtime.GC()
		runtime.ReadMemStats(&after)
		if n := len(rep.svc.List(registrysvc.Filter{})); n != collectors {
			b.Fatalf("registry lists %d, want %d", n, collectors)
		}

		// Sustained heartbeat rate: stream sequence growth over the window.
		stream, err := js.Stream(context.Background(), "KV_"+events.Default.RegistryBucket())
		if err != nil {
			b.Fatal(err)
		}
		seq := func() uint64 {
			info, err := stream.Info(context.Background())
			if err != nil {
				b.Fatal(err)
			}
			return info.State.LastSeq
		}
		s0, t0 := seq(), time.Now()
		time.Sleep(window) // the measurement window itself
		putsPerSec := float64(seq()-s0) / time.Since(t0).Seconds()

		// Cut the victims off at random phases; expiry is measured from each one's last
		// successful heartbeat.
		last := make([]time.Time, victims)
		for i := range victims {
			time.Sleep(rand.N(ttl / 3 / victims))
			victimConns[i].Close()
			r, _ := clients[i].Current()
			last[i] = r.UpdatedAt
		}
		var delays, markers []time.Duration // last heartbeat -> event seen; -> marker written
		deadline := time.Now().Add(ttl + 10*time.Second)
		for i := range victims {
			key := clients[i].Key()
			for len(evs.of(events.EventRegistryExpired, key)) == 0 {
				if time.Now().After(deadline) {
					b.Fatalf("no expiry event for %s", key)
				}
				time.Sleep(10 * time.Millisecond)
			}
			ev := evs.of(events.EventRegistryExpired, key)[0]
			delays = append(delays, ev.at.Sub(last[i]))
			if m, err := stream.GetMsg(context.Background(), ev.ev.Revision); err == nil {
				markers = append(markers, m.Time.Sub(last[i]))
			}
		}
		evs.mu.Lock()
		falseExpiries := 0
		for _, r := range evs.got {
			if r.ev.Event == events.EventRegistryExpired && !slices.ContainsFunc(clients[:victims], func(c *registration.Client) bool { return c.Key() == r.ev.Key }) {
				falseExpiries++
			}
		}
		evs.mu.Unlock()
		slices.Sort(delays)
		slices.Sort(markers)
		for _, c := range clients {
			_ = c.Deregister(context.Background())
		}

		b.ReportMetric(putsPerSec, "puts/s")
		b.ReportMetric(float64(delays[len(delays)/2])/1e6, "expiry-p50-ms")
		b.ReportMetric(float64(delays[len(delays)-1])/1e6, "expiry-max-ms")
		if len(markers) > 0 {
			b.ReportMetric(float64(markers[len(markers)/2])/1e6, "marker-p50-ms")
		}
		b.ReportMetric(float64(int64(after.HeapAlloc)-int64(before.HeapAlloc))/(1<<20), "registry-heap-MB")
		b.ReportMetric(float64(falseExpiries), "false-expiries")
		b.ReportMetric(0, "ns/op")
	}
}
