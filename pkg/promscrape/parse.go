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

// readings is the table of the families this package reads: one row per reading, its
// base name, its Found bit, a name for errors and the Sample field it adds to. A new
// reading is a Sample field, a Metric constant, a Found bit and one row here (and its
// use in Load).
var readings = []struct {
	base  string
	bit   Found
	what  string
	field func(*Sample) *float64
}{
	{MetricAcceptedSpans, FoundAccepted, "accepted spans", func(s *Sample) *float64 { return &s.AcceptedSpans }},
	{MetricRefusedSpans, FoundRefused, "refused spans", func(s *Sample) *float64 { return &s.RefusedSpans }},
	{MetricQueueSize, FoundQueueSize, "queue size", func(s *Sample) *float64 { return &s.QueueSize }},
	{MetricQueueCapacity, FoundQueueCapacity, "queue capacity", func(s *Sample) *float64 { return &s.QueueCapacity }},
	{MetricCPUSeconds, FoundCPU, "cpu seconds", func(s *Sample) *float64 { return &s.CPUSeconds }},
	{MetricMemoryRSS, FoundRSS, "rss bytes", func(s *Sample) *float64 { return &s.RSSBytes }},
}

// families maps each accepted family name (a base name with or without the "_total" and
// "_bytes" suffixes) to its row of readings.
var families = func() map[string]int {
	m := map[string]int{}
	for i, r := range readings {
		for _, suffix := range []string{"", "_total", "_bytes", "_bytes_total"} {
			m[r.base+suffix] = i
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
		row, ok := families[name]
		if !ok {
			continue
		}
		add(&s, row, sum(&mf))
	}
	if s.Found == 0 {
		return Sample{}, ErrNoCollectorMetrics
	}
	for _, r := range readings {
		if v := *r.field(&s); math.IsInf(v, 0) || math.IsNaN(v) {
			return Sample{}, fmt.Errorf("%w: the %s series add up to %v", ErrMalformed, r.what, v)
		}
	}
	return s, nil
}

// add adds v to the field of readings[row] and marks it found (a family may appear
// under two names, e.g. with and without "_total", and both count).
func add(s *Sample, row int, v float64) {
	s.Found |= readings[row].bit
	*readings[row].field(s) += v
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
