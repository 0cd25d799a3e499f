package loadmon

import (
	"fmt"
	"testing"
	"time"

	"github.com/otelfleet/otelfleet/pkg/sysstat"
)

// BenchmarkRecordSpans measures the hot-path call a receiver makes once per batch. The
// goal is per recorded span, so besides ns/op it reports ns/span for a one-span batch
// (the worst case) and a typical 64-span batch.
func BenchmarkRecordSpans(b *testing.B) {
	for _, batch := range []int{1, 64} {
		b.Run(fmt.Sprintf("serial/batch=%d", batch), func(b *testing.B) {
			m := newMonitor(b, nil)
			b.ReportAllocs()
			for b.Loop() {
				m.RecordSpans(batch, batch*256)
			}
			b.ReportMetric(float64(b.Elapsed().Nanoseconds())/float64(b.N)/float64(batch), "ns/span")
		})
		b.Run(fmt.Sprintf("parallel/batch=%d", batch), func(b *testing.B) {
			m := newMonitor(b, nil)
			b.ReportAllocs()
			b.RunParallel(func(pb *testing.PB) {
				for pb.Next() {
					m.RecordSpans(batch, batch*256)
				}
			})
			b.ReportMetric(float64(b.Elapsed().Nanoseconds())/float64(b.N)/float64(batch), "ns/span")
		})
	}
}

func BenchmarkRecordService(b *testing.B) {
	names := make([]string, 64)
	for i := range names {
		names[i] = fmt.Sprintf("service-%02d", i)
	}
	setup := func(b *testing.B) *Monitor {
		m := newMonitor(b, nil)
		for _, n := range names {
			m.RecordService(n, 1)
		}
		b.ReportAllocs()
		return m
	}
	b.Run("serial", func(b *testing.B) {
		m := setup(b)
		for i := 0; b.Loop(); i++ {
			m.RecordService(names[i&63], 64)
		}
	})
	b.Run("parallel", func(b *testing.B) {
		m := setup(b)
		b.RunParallel(func(pb *testing.PB) {
			for i := 0; pb.Next(); i++ {
				m.RecordService(names[i&63], 64)
			}
		})
	})
}

func BenchmarkTick(b *testing.B) {
	for _, services := range []int{0, 100, 1000} {
		b.Run(fmt.Sprintf("services=%d", services), func(b *testing.B) {
			m := newMonitor(b, nil)
			names := make([]string, services)
			for i := range names {
				names[i] = fmt.Sprintf("service-%04d", i)
			}
			now := t0
			m.Tick(now, sysstat.Reading{})
			b.ReportAllocs()
			for b.Loop() {
				m.RecordSpans(1000, 1<<20)
				for i, n := range names {
					m.RecordService(n, i+1)
				}
				now = now.Add(time.Second)
				m.Tick(now, sysstat.Reading{ProcessCPU: 0.1, ProcessRSSBytes: 1 << 30})
			}
		})
	}
}
