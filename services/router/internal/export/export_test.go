package export

import (
	"sync"
	"testing"
	"time"

	"go.uber.org/goleak"

	"github.com/otelfleet/otelfleet/pkg/natstest"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

// collector is a Rerouter that keeps what it is given.
type collector struct {
	mu      sync.Mutex
	batches []Batch
	items   int
}

func (c *collector) reroute(_ string, b Batch) {
	c.mu.Lock()
	c.batches = append(c.batches, b)
	c.items += b.Items
	c.mu.Unlock()
}

func (c *collector) count() int {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.items
}

func testConfig() Config {
	c := DefaultConfig()
	c.MaxWait = 5 * time.Millisecond
	c.InitialBackoff = time.Millisecond
	c.MaxBackoff = 5 * time.Millisecond
	c.Timeout = 5 * time.Second
	return c
}

func stat(e *Exporter, key string) TargetStats {
	for _, s := range e.Stats() {
		if s.Key == key && !s.Leaving {
			return s
		}
	}
	return TargetStats{}
}

func TestDeliversBatchedOverEveryCompression(t *testing.T) {
	for _, proto := range []string{ProtocolGRPC} {
		for _, comp := range []string{CompressionNone, CompressionGzip, CompressionZstd} {
			t.Run(proto+"/"+comp, func(t *testing.T) {
				f := startFake(t)
				cfg := testConfig()
				cfg.Protocol, cfg.Compression, cfg.MaxBatchItems = proto, comp, 50
				var rr collector
				e := newQuiet(t, cfg, rr.reroute)
				e.SetTargets([]Target{{Key: "collector.r.a", Addr: f.addr, Region: "r"}})
				for i := range 100 {
					if err := e.Submit("collector.r.a", traceBatch(t, uint64(i*10), 10)); err != nil {
						t.Fatal(err)
					}
				}
				natstest.Eventually(t, 10*time.Second, func() bool { d, _ := f.received(); return d == 1000 }, "all spans delivered")
				if _, dups := f.received(); dups != 0 {
					t.Fatalf("%d duplicates", dups)
				}
				if c := f.callCount(); c > 40 {
					t.Fatalf("%d calls for 100 submits of 10 spans at 50 per batch: not batching", c)
				}
				natstest.Eventually(t, 5*time.Second, func() bool { return stat(e, "collector.r.a").Sent == 1000 }, "sent counted")
				if s := stat(e, "collector.r.a"); s.Failed+s.Retried+s.Rerouted+s.Dropped != 0 || rr.count() != 0 {
					t.Fatalf("stats %+v, rerouted %d", s, rr.count())
				}
			})
		}
	}
}
