package configsvc_test

import (
	"context"
	"fmt"
	"sort"
	"sync"
	"testing"
	"time"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/otelfleet/otelfleet/pkg/configwatch"
	"github.com/otelfleet/otelfleet/pkg/fleetconfig"
	"github.com/otelfleet/otelfleet/pkg/natsconn"
	"github.com/otelfleet/otelfleet/pkg/natstest"
	configsvc "github.com/otelfleet/otelfleet/services/config"
)

// BenchmarkPropagation measures, for N watching instances (each on its own NATS
// connection), the time from a compare-and-set put of the global config until each
// instance has decoded, validated and applied it. It reports p50 and p99 over every
// (put, instance) pair, and p99 of the slowest instance per put.
// With raw=true the instances are bare KV watchers that only note the arrival (the
// floor NATS itself sets), for comparison in the same run.
func BenchmarkPropagation(b *testing.B) {
	for _, n := range []int{10, 100} {
		for _, raw := range []bool{false, true} {
			name := fmt.Sprintf("watchers=%d", n)
			if raw {
				name += "/raw-kv-watch"
			}
			b.Run(name, func(b *testing.B) { benchPropagation(b, n, raw) })
		}
	}
}

func benchPropagation(b *testing.B, n int, raw bool) {
	srv := natstest.Run(b)
	ctx := context.Background()
	_, js := srv.JetStream(b)
	buckets, err := natsconn.Provision(ctx, js, natsconn.DefaultLayout())
	if err != nil {
		b.Fatal(err)
	}
	store := configsvc.NewStore(buckets.Config)
	if _, err := store.Init(ctx, fleetconfig.Defaults(), "bench"); err != nil {
		b.Fatal(err)
	}

	var mu sync.Mutex
	var start time.Time
	var want uint64
	var lat []time.Duration
	applied := make(chan struct{}, n)
	for i := range n {
		nc, js := srv.JetStream(b)
		kv, err := js.KeyValue(ctx, buckets.Config.Bucket())
		if err != nil {
			b.Fatal(err)
		}
		if raw {
			kw, err := kv.Watch(ctx, "global", jetstream.UpdatesOnly())
			if err != nil {
				b.Fatal(err)
			}
			b.Cleanup(func() { _ = kw.Stop() })
			go func() {
				for e := range kw.Updates() {
					if e == nil {
						continue
					}
					mu.Lock()
					lat = append(lat, time.Since(start))
					mu.Unlock()
					applied <- struct{}{}
				}
			}()
			continue
		}
		w, err := configwatch.New(nc, kv, configwatch.Options{Service: "bench", Instance: fmt.Sprint(i)})
		if err != nil {
			b.Fatal(err)
		}
		w.OnChange(func(s configwatch.Snapshot) {
			mu.Lock()
			if s.Global.Version == want {
				lat = append(lat, time.Since(start))
				mu.Unlock()
				applied <- struct{}{}
				return
			}
			mu.Unlock()
		})
		if err := w.Start(); err != nil {
			b.Fatal(err)
		}
		b.Cleanup(w.Stop)
		if err := w.WaitReady(ctx); err != nil {
			b.Fatal(err)
		}
	}

	g := fleetconfig.Defaults().Global
	var slowest []time.Duration
	b.ReportAllocs()
	b.ResetTimer()
	for i := range b.N {
		g.SamplingRate = float64(i%100+1) / 1000
		mu.Lock()
		want = uint64(i) + 2 // Init stored version 1; every put adds one
		start = time.Now()
		mu.Unlock()
		c, err := store.PutGlobal(ctx, g, "bench", nil)
		if err != nil {
			b.Fatal(err)
		}
		if c.NewVersion != uint64(i)+2 {
			b.Fatalf("put %d stored version %d", i, c.NewVersion)
		}
		for range n {
			select {
			case <-applied:
			case <-time.After(10 * time.Second):
				b.Fatalf("put %d: not every watcher applied it within 10s", i)
			}
		}
		mu.Lock()
		last := lat[len(lat)-n:]
		mx := time.Duration(0)
		for _, d := range last {
			mx = max(mx, d)
		}
		slowest = append(slowest, mx)
		mu.Unlock()
	}
	b.StopTimer()
	sort.Slice(lat, func(i, j int) bool { return lat[i] < lat[j] })
	sort.Slice(slowest, func(i, j int) bool { return slowest[i] < slowest[j] })
	b.ReportMetric(ms(pct(lat, 0.50)), "p50-ms")
	b.ReportMetric(ms(pct(lat, 0.99)), "p99-ms")
	b.ReportMetric(ms(pct(slowest, 0.99)), "p99-slowest-ms")
}

func pct(d []time.Duration, p float64) time.Duration {
	if len(d) == 0 {
		return 0
	}
	return d[min(len(d)-1, int(float64(len(d))*p))]
}

func ms(d time.Duration) float64 { return float64(d) / float64(time.Millisecond) }
