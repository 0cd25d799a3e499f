package export

import (
	"context"
	"sync/atomic"
	"testing"
	"time"

	"github.com/otelfleet/otelfleet/services/router/internal/otlpwire"
)

// nopClient takes every request at once.
type nopClient struct{ items *atomic.Int64 }

func (c nopClient) export(context.Context, otlpwire.Signal, []byte) outcome { return outcome{} }
func (nopClient) close() error                                              { return nil }

func benchExporter(b *testing.B, cfg Config, dial func(string, Config) (client, error)) *Exporter {
	b.Helper()
	e, err := New(cfg, func(string, Batch) { b.Error("handed back") }, quiet())
	if err != nil {
		b.Fatal(err)
	}
	e.dial = dial
	e.SetTargets([]Target{{Key: "a", Addr: "127.0.0.1:1"}})
	b.Cleanup(func() { _ = e.Close(context.Background()) })
	return e
}

// submitAll submits b.N batches of 100 spans (each its own export call) and waits until
// all are delivered.
func submitAll(b *testing.B, e *Exporter, bt Batch) {
	b.Helper()
	b.ReportAllocs()
	b.SetBytes(int64(len(bt.Payload)))
	b.ResetTimer()
	for b.Loop() {
		for e.Submit("a", bt) != nil {
			time.Sleep(10 * time.Microsecond) // queue full: let the senders catch up
		}
	}
	for stat(e, "a").QueueBytes > 0 || e.InFlight("a") > 0 {
		time.Sleep(100 * time.Microsecond)
	}
}

// BenchmarkBatchOverhead is the exporter's own cost per batch (queue, batching, sender,
// accounting) with a client that takes everything at once.
func BenchmarkBatchOverhead(b *testing.B) {
	bt := traceBatch(b, 0, 100)
	cfg := DefaultConfig()
	cfg.MaxBatchItems = 100
	e := benchExporter(b, cfg, func(string, Config) (client, error) { return nopClient{}, nil })
	submitAll(b, e, bt)
}

// BenchmarkExportGRPC sends batches of 100 spans to a real OTLP/gRPC server on loopback.
func BenchmarkExportGRPC(b *testing.B) {
	for _, comp := range []string{CompressionNone, CompressionGzip, CompressionZstd} {
		b.Run(comp, func(b *testing.B) {
			f := startFakeB(b)
			bt := traceBatch(b, 0, 100)
			cfg := DefaultConfig()
			cfg.MaxBatchItems, cfg.Compression = 100, comp
			e := benchExporter(b, cfg, nil)
			e.SetTargets([]Target{{Key: "a", Addr: f.addr}})
			submitAll(b, e, bt)
		})
	}
}
