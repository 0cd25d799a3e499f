package promscrape

import (
	"errors"
	"fmt"
	"io"
	"math"
	"strings"
	"time"

	dto "github.com/prometheus/client_model/go"
	"github.com/prometheus/common/expfmt"
)

// ErrNoCollectorMetrics is returned by Parse (and Scrape) when the page has none of the
// otelcol_ families this package reads: the URL is probably not a collector's metrics
// endpoint.
var ErrNoCollectorMetrics = errors.New("no OpenTelemetry Collector metrics on the page")

// ErrMalformed is wrapped by Parse errors about the page's content.
var ErrMalformed = errors.New("malformed metrics page")

// Base names of the families read, without the "_total" and "_bytes" suffixes.
const (
	MetricAcceptedSpans = "otelcol_receiver_accepted_spans"
	MetricRefusedSpans  = "otelcol_receiver_refused_spans"
	MetricQueueSize     = "otelcol_exporter_queue_size"
	MetricQueueCapacity = "otelcol_exporter_queue_capacity"
	MetricCPUSeconds    = "otelcol_process_cpu_seconds"
	MetricMemoryRSS     = "otelcol_process_memory_rss"
)

// Found records which families a page had.
type Found uint8

// Bits of Found, one per family.
const (
	FoundAccepted Found = 1 << iota
	FoundRefused
	FoundQueueSize
	FoundQueueCapacity
	FoundCPU
	FoundRSS
)

// Has reports whether every bit of x is set in f.
func (f Found) Has(x Found) bool { return f&x == x }

// Sample is one scrape's totals, each summed over all series of its family. Missing
// families read 0; Found says which were present.
type Sample struct {
	// At is when the page was read.
	At time.Time
	// AcceptedSpans and RefusedSpans are receiver counters (spans since start).
	AcceptedSpans, RefusedSpans float64
	// QueueSize and QueueCapacity are exporter queue gauges (in the exporters' unit,
	// batches or items).
	QueueSize, QueueCapacity float64
	// CPUSeconds is the process's CPU time since start (counter).
	CPUSeconds float64
	// RSSBytes is the process's resident memory.
	RSSBytes float64
	// Found says which families the page had.
	Found Found
}

// families maps each accepted family name to the Sample field and Found bit it feeds.
var families = func() map[string]Found {
	m := map[string]Found{}
	for base, bit := range map[string]Found{
		MetricAcceptedSpans: FoundAccepted,
		MetricRefusedSpans:  FoundRefused,
		MetricQueueSize:     FoundQueueSize,
		MetricQueueCapacity: FoundQueueCapacity,
		MetricCPUSeconds:    FoundCPU,
		MetricMemoryRSS:     FoundRSS,
	} {
		for _, suffix := range []string{"", "_total", "_bytes", "_bytes_total"} {
			m[base+suffix] = bit
		}
	}
	return m
}()

// Parse decodes a metrics page in format (from expfmt.ResponseFormat; FmtUnknown is read
// as the Prometheus text format) and sums the families this package reads. The page is
// decoded by expfmt, never by hand; families of other names are skipped, and series
// whose value is not finite are ignored.
func Parse(r io.Reader, format expfmt.Format) (Sample, error) {
	if format == expfmt.FmtUnknown {
		format = expfmt.NewFormat(expfmt.TypeTextPlain)
	}
	dec := expfmt.NewDecoder(r, format)
	var s Sample
	for {
		var mf dto.MetricFamily
		err := dec.Decode(&mf)
		if errors.Is(err, io.EOF) {
			break
		}
		if err != nil {
			return Sample{}, fmt.Errorf("%w: %w", ErrMalformed, err)
		}
		name := strings.ReplaceAll(mf.GetName(), ".", "_")
		bit, ok := families[name]
		if !ok {
			continue
		}
		s.Found |= bit
		add(&s, bit, sum(&mf))
	}
	if s.Found == 0 {
		return Sample{}, ErrNoCollectorMetrics
	}
	for name, v := range map[string]float64{
		"accepted spans": s.AcceptedSpans, "refused spans": s.RefusedSpans, "queue size": s.QueueSize,
		"queue capacity": s.QueueCapacity, "cpu seconds": s.CPUSeconds, "rss bytes": s.RSSBytes,
	} {
		if math.IsInf(v, 0) || math.IsNaN(v) {
			return Sample{}, fmt.Errorf("%w: the %s series add up to %v", ErrMalformed, name, v)
		}
	}
	return s, nil
}

// add adds v to the field bit stands for (a family may appear under two names, e.g.
// with and without "_total", and both count).
func add(s *Sample, bit Found, v float64) {
	switch bit {
	case FoundAccepted:
		s.AcceptedSpans += v
	case FoundRefused:
		s.RefusedSpans += v
	case FoundQueueSize:
		s.QueueSize += v
	case FoundQueueCapacity:
		s.QueueCapacity += v
	case FoundCPU:
		s.CPUSeconds += v
	case FoundRSS:
		s.RSSBytes += v
	}
}

// sum adds the values of every counter, gauge or untyped series of mf.
func sum(mf *dto.MetricFamily) float64 {
	var total float64
	for _, m := range mf.GetMetric() {
		var v float64
		switch {
		case m.GetCounter() != nil:
			v = m.GetCounter().GetValue()
		case m.GetGauge() != nil:
			v = m.GetGauge().GetValue()
		case m.GetUntyped() != nil:
			v = m.GetUntyped().GetValue()
		default:
			continue
		}
		if !math.IsNaN(v) && !math.IsInf(v, 0) {
			total += v
		}
	}
	return total
}
