package loadreport

import (
	"context"
	"encoding/json"
	"testing"
	"time"

	"github.com/otelfleet/otelfleet/pkg/events"
	"github.com/otelfleet/otelfleet/pkg/loadmon"
	"github.com/otelfleet/otelfleet/pkg/natstest"
)

func jsonMarshal(v any) ([]byte, error) { return json.Marshal(v) }

// BenchmarkPublish measures one report: Source.Report, stamping, validation, JSON and
// CloudEvents headers (events.NewMsg) and the core publish into the connection's buffer.
func BenchmarkPublish(b *testing.B) {
	srv := natstest.Run(b)
	nc := srv.Connect(b)
	cfg := DefaultConfig()
	cfg.Region, cfg.Collector = "us-east-1", "c1"
	b.Run("fixed", func(b *testing.B) {
		r := validReport()
		p, err := NewPublisher(nc, events.Default, cfg, SourceFunc(func(context.Context, time.Time) (events.LoadReport, bool, error) {
			return r, true, nil
		}), nil, nil)
		if err != nil {
			b.Fatal(err)
		}
		b.ReportAllocs()
		for b.Loop() {
			if err := p.PublishOnce(context.Background(), t0); err != nil {
				b.Fatal(err)
			}
		}
	})
	b.Run("monitor", func(b *testing.B) {
		mon, err := loadmon.New(loadmon.DefaultConfig())
		if err != nil {
			b.Fatal(err)
		}
		names := []string{"checkout", "payment", "cart", "search", "frontend", "recommendation", "debug", "batch-report"}
		p, err := NewPublisher(nc, events.Default, cfg, &MonitorSource{Monitor: mon, Capacity: 1e4}, nil, nil)
		if err != nil {
			b.Fatal(err)
		}
		now := t0
		_ = p.PublishOnce(context.Background(), now)
		b.ReportAllocs()
		for b.Loop() {
			mon.RecordSpans(1000, 500_000)
			for i, n := range names {
				mon.RecordService(n, 10*(i+1))
			}
			now = now.Add(time.Second)
			if err := p.PublishOnce(context.Background(), now); err != nil {
				b.Fatal(err)
			}
		}
	})
}
