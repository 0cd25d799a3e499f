package loadreport

import (
	"context"
	"time"

	"github.com/otelfleet/otelfleet/pkg/events"
	"github.com/otelfleet/otelfleet/pkg/loadmon"
	"github.com/otelfleet/otelfleet/pkg/sysstat"
)

// Source produces the load of one collector, once per Publisher interval.
type Source interface {
	// Report returns the load over the interval that ends at now. ok false skips this
	// tick without an error (for example the first call, which only sets a baseline).
	// An error skips the tick and is counted and logged by the Publisher. The Publisher
	// sets V, Region and Collector itself, and At and IntervalMS when they are zero.
	// Report is called from the Publisher's goroutine only; ctx is cancelled when the
	// Publisher stops, so a Source doing I/O returns promptly.
	Report(ctx context.Context, now time.Time) (r events.LoadReport, ok bool, err error)
}

// SourceFunc adapts a function to Source.
type SourceFunc func(ctx context.Context, now time.Time) (events.LoadReport, bool, error)

// Report implements Source.
func (f SourceFunc) Report(ctx context.Context, now time.Time) (events.LoadReport, bool, error) {
	return f(ctx, now)
}

var _ Source = (*MonitorSource)(nil)

// MonitorSource reports what a loadmon.Monitor measured on the collector's hot path,
// with the process's real CPU and memory from Readings. Report ticks the Monitor, so
// the Monitor must not also be ticked elsewhere (by Monitor.Run or another Tick caller):
// two tickers would split each interval between them.
type MonitorSource struct {
	// Monitor is fed by the hot path (RecordSpans, RecordError, RecordService,
	// SetQueueDepth). Required.
	Monitor *loadmon.Monitor
	// Readings supplies CPU and memory (a *sysstat.Sampler in production). When nil or
	// when a reading fails, cpu and memory are reported as 0 (unknown) while the span
	// rates stay valid.
	Readings loadmon.ReadingSource
	// Capacity is the spans per second the collector can take; 0 means unknown.
	Capacity float64
	// Healthy, when set, is asked for the collector's own health at every report; nil
	// means healthy.
	Healthy func() bool
}

// Report implements Source. The first call primes the Monitor's baseline and returns
// ok false; every later call returns the interval since the previous one.
func (s *MonitorSource) Report(_ context.Context, now time.Time) (events.LoadReport, bool, error) {
	var reading sysstat.Reading
	if s.Readings != nil {
		if r, err := s.Readings.Sample(); err == nil {
			reading = r
		}
	}
	snap, ok := s.Monitor.Tick(now, reading)
	if !ok {
		return events.LoadReport{}, false, nil
	}
	healthy := true
	if s.Healthy != nil {
		healthy = s.Healthy()
	}
	return FromSnapshot(snap, s.Capacity, healthy), true, nil
}

// FromSnapshot converts a loadmon snapshot into a load report without identity (V,
// Region and Collector are left for the Publisher). CPU is clamped to [0, 1] and a
// negative queue depth (an owner's AddQueueDepth bookkeeping gone below zero) is
// reported as 0.
func FromSnapshot(s loadmon.Snapshot, capacity float64, healthy bool) events.LoadReport {
	r := events.LoadReport{
		At:           s.At,
		IntervalMS:   s.Interval.Milliseconds(),
		QPS:          s.QPS,
		BytesPerSec:  s.BytesPerSec,
		QueueDepth:   max(s.QueueDepth, 0),
		CPU:          min(max(s.CPU, 0), 1),
		Memory:       s.Memory,
		AvgLatencyMS: s.AvgLatencyMS,
		ErrorRate:    s.ErrorRate,
		Capacity:     capacity,
		Healthy:      healthy,
	}
	if len(s.Services) > 0 {
		r.Services = make([]events.ServiceRate, len(s.Services))
		for i, sr := range s.Services {
			r.Services[i] = events.ServiceRate{Name: sr.Name, SpansPerSec: sr.SpansPerSec}
		}
	}
	return r
}

var _ Source = (*RouterSource)(nil)

// RouterSource reports an OTLP router's load: what Received measured (spans received,
// before sampling) as a MonitorSource does, with Role events.RoleRouter and the spans
// handed to backends, counted by Forwarded, as ForwardedQPS and Forwarded (per service,
// for the services the received list names). Report ticks both Monitors at the same
// instant, so neither may be ticked elsewhere.
type RouterSource struct {
	// Received is the router's MonitorSource; its Monitor counts spans received.
	Received MonitorSource
	// Forwarded counts, with RecordSpans and RecordService, the spans handed to
	// backends. Required. Configure it with HistorySize 1 and TopServices equal to
	// MaxServices, so that every service's forwarded rate is there to match.
	Forwarded *loadmon.Monitor
}

// Report implements Source; the first call primes both baselines and returns ok false.
func (s *RouterSource) Report(ctx context.Context, now time.Time) (events.LoadReport, bool, error) {
	fwd, fok := s.Forwarded.Tick(now, sysstat.Reading{})
	r, ok, err := s.Received.Report(ctx, now)
	if err != nil || !ok || !fok {
		return events.LoadReport{}, false, err
	}
	r.Role = events.RoleRouter
	r.ForwardedQPS = fwd.QPS
	if len(r.Services) > 0 && len(fwd.Services) > 0 {
		byName := make(map[string]float64, len(fwd.Services))
		for _, f := range fwd.Services {
			byName[f.Name] = f.SpansPerSec
		}
		for _, sr := range r.Services {
			if v := byName[sr.Name]; v > 0 {
				r.Forwarded = append(r.Forwarded, events.ServiceRate{Name: sr.Name, SpansPerSec: v})
			}
		}
	}
	return r, true, nil
}
