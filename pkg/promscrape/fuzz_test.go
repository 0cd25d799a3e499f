package promscrape

import (
	"bytes"
	"math"
	"testing"

	"github.com/prometheus/common/expfmt"
)

// FuzzParse feeds arbitrary metrics pages (bytes from a collector's HTTP endpoint) to
// Parse: it must never panic, and whatever it accepts carries only finite readings.
func FuzzParse(f *testing.F) {
	f.Add([]byte("# TYPE otelcol_receiver_accepted_spans_total counter\notelcol_receiver_accepted_spans_total{receiver=\"otlp\"} 42\n"))
	f.Add([]byte("otelcol_exporter_queue_size 3\notelcol_exporter_queue_capacity 1000\notelcol_process_memory_rss_bytes 1.5e8\n"))
	f.Add([]byte("otelcol_process_cpu_seconds_total NaN\n"))
	f.Add([]byte("garbage {{{"))
	f.Fuzz(func(t *testing.T, page []byte) {
		s, err := Parse(bytes.NewReader(page), expfmt.NewFormat(expfmt.TypeTextPlain))
		if err != nil {
			return
		}
		for _, v := range []float64{s.AcceptedSpans, s.RefusedSpans, s.QueueSize, s.QueueCapacity, s.CPUSeconds, s.RSSBytes} {
			if math.IsNaN(v) || math.IsInf(v, 0) {
				t.Fatalf("Parse accepted a non-finite reading: %+v", s)
			}
		}
	})
}
