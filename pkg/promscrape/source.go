package promscrape

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"math"
	"runtime"
	"sync"
	"time"

	"github.com/otelfleet/otelfleet/pkg/events"
	"github.com/otelfleet/otelfleet/pkg/sysstat"
)

// SourceConfig sizes a Source.
type SourceConfig struct {
	// Capacity is the spans per second the collector can take, reported as capacity
	// (0: unknown). Set it from load tests of the collector's hardware.
	Capacity float64
	// NumCPU divides the CPU-seconds rate into a share of the machine (default
	// runtime.NumCPU() of the process running the Source: the agent's host, which is the
	// collector's host when the agent runs beside it).
	NumCPU int
}

// Validate reports every invalid field.
func (c SourceConfig) Validate() error {
	var errs []error
	if c.Capacity < 0 || math.IsNaN(c.Capacity) || c.Capacity > events.MaxReportedQPS {
		errs = append(errs, fmt.Errorf("%w: capacity: %v is outside [0, %g]", ErrConfigValidation, c.Capacity, events.MaxReportedQPS))
	}
	if c.NumCPU < 0 {
		errs = append(errs, fmt.Errorf("%w: num cpu: %d is negative", ErrConfigValidation, c.NumCPU))
	}
	return errors.Join(errs...)
}

// Source turns consecutive scrapes into load reports; it implements loadreport.Source.
// Report must not be called concurrently (a loadreport.Publisher calls it from one
// goroutine).
type Source struct {
	scraper *Scraper
	cfg     SourceConfig
	log     *slog.Logger

	prev    Sample
	primed  bool
	lastErr error

	// mu guards last and lastCPU for readers on other goroutines (QueueCheck, Sample).
	mu      sync.Mutex
	last    Sample  // the latest successful scrape
	lastCPU float64 // the collector's CPU share over the latest interval; -1 before one
	failing error   // the latest scrape's error
}

// NewSource returns a Source reading scraper. log (may be nil) gets one line when
// scrapes start failing and one when they recover.
func NewSource(scraper *Scraper, cfg SourceConfig, log *slog.Logger) (*Source, error) {
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	if cfg.NumCPU == 0 {
		cfg.NumCPU = runtime.NumCPU()
	}
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	return &Source{scraper: scraper, cfg: cfg, log: log.With("metrics_url", scraper.URL()), lastCPU: -1}, nil
}

// record keeps what QueueCheck and Sample read.
func (s *Source) record(cur *Sample, cpu float64, err error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.failing = err
	if err == nil {
		s.last = *cur
		if cpu >= 0 {
			s.lastCPU = cpu
		}
	}
}

// QueueCheck is a registration health check of the collector the Source scrapes:
// unhealthy while its metrics cannot be read or its exporter queues are full, degraded
// from 90 % fill. Safe for concurrent use with Report.
func (s *Source) QueueCheck(context.Context) events.CheckResult {
	s.mu.Lock()
	defer s.mu.Unlock()
	res := events.CheckResult{Name: "collector-queue", Status: events.HealthHealthy, Message: "no metrics read yet"}
	switch {
	case s.failing != nil:
		res.Status, res.Message = events.HealthUnhealthy, "metrics endpoint failing: "+truncate(s.failing.Error(), 200)
	case s.last.Found.Has(FoundQueueSize | FoundQueueCapacity):
		fill := 0.0
		if s.last.QueueCapacity > 0 {
			fill = s.last.QueueSize / s.last.QueueCapacity
		}
		res.Message = fmt.Sprintf("exporter queues %.0f%% full", fill*100)
		switch {
		case fill >= 1:
			res.Status = events.HealthUnhealthy
		case fill >= 0.9:
			res.Status = events.HealthDegraded
		}
	case s.last.Found != 0:
		res.Message = "the collector exposes no exporter queue metrics"
	}
	return res
}

func truncate(s string, n int) string {
	if len(s) <= n {
		return s
	}
	return s[:n] + "…"
}

// ErrNoReadings is returned by Sample until two scrapes have given the collector's CPU.
var ErrNoReadings = errors.New("promscrape: no readings of the collector's process yet")

// Sample returns the scraped collector's process readings for its registration's health
// (it implements registration.Sampler): its CPU share of Config.NumCPU (the CPUs it may
// use) over the latest interval and its resident memory. The host fields are left 0.
// Safe for concurrent use with Report.
func (s *Source) Sample() (sysstat.Reading, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.failing != nil || s.lastCPU < 0 {
		return sysstat.Reading{}, ErrNoReadings
	}
	return sysstat.Reading{At: s.last.At, CPUWindow: time.Second, ProcessCPUShare: s.lastCPU, ProcessCPU: s.lastCPU,
		ProcessRSSBytes: uint64(max(s.last.RSSBytes, 0)), AllowedCPUs: float64(s.cfg.NumCPU)}, nil
}

// LastError returns the error of the latest scrape, nil when it succeeded.
func (s *Source) LastError() error { return s.lastErr }

// Report scrapes the collector and reports the interval since the previous successful
// scrape. The first successful scrape only sets the baseline (ok false). A failed
// scrape is not an error of the Source: it reports the collector unhealthy, with zero
// rates and the configured capacity, so that the fleet routes around a collector whose
// metrics endpoint is down; the next successful scrape computes rates over the whole gap.
// A collector whose exporter queues are full (size ≥ capacity) is reported unhealthy too.
func (s *Source) Report(ctx context.Context, now time.Time) (events.LoadReport, bool, error) {
	cur, err := s.scraper.Scrape(ctx)
	if err != nil {
		if ctx.Err() != nil {
			return events.LoadReport{}, false, ctx.Err()
		}
		if s.lastErr == nil {
			s.log.Warn("collector metrics scrape failed; reporting the collector unhealthy", "err", err)
		}
		s.lastErr = err
		s.record(nil, -1, err)
		return events.LoadReport{At: now, Capacity: s.cfg.Capacity, Healthy: false}, true, nil
	}
	if s.lastErr != nil {
		s.log.Info("collector metrics scrape recovered")
		s.lastErr = nil
	}
	prev, primed := s.prev, s.primed
	if !cur.At.After(prev.At) && primed {
		return events.LoadReport{}, false, nil
	}
	s.prev, s.primed = cur, true
	if !primed {
		s.record(&cur, -1, nil)
		return events.LoadReport{}, false, nil
	}
	r := Load(prev, cur, s.cfg)
	cpu := -1.0
	if cur.Found.Has(FoundCPU) {
		cpu = r.CPU
	}
	s.record(&cur, cpu, nil)
	return r, true, nil
}

// Load computes the load report of the interval between two scrapes (identity left for
// the publisher). See the package documentation for what each field is made of.
func Load(prev, cur Sample, cfg SourceConfig) events.LoadReport {
	interval := cur.At.Sub(prev.At)
	secs := interval.Seconds()
	numCPU := cfg.NumCPU
	if numCPU <= 0 {
		numCPU = runtime.NumCPU()
	}
	r := events.LoadReport{
		At:         cur.At,
		IntervalMS: interval.Milliseconds(),
		QueueDepth: int64(max(cur.QueueSize, 0)),
		Memory:     uint64(max(cur.RSSBytes, 0)),
		Capacity:   cfg.Capacity,
		Healthy:    !(cur.QueueCapacity > 0 && cur.QueueSize >= cur.QueueCapacity),
	}
	if secs <= 0 {
		return r
	}
	accepted := increase(prev.AcceptedSpans, cur.AcceptedSpans)
	refused := increase(prev.RefusedSpans, cur.RefusedSpans)
	r.QPS = min(accepted/secs, events.MaxReportedQPS)
	if total := accepted + refused; total > 0 {
		r.ErrorRate = refused / total
	}
	if cur.Found.Has(FoundCPU) {
		r.CPU = min(max(increase(prev.CPUSeconds, cur.CPUSeconds)/secs/float64(numCPU), 0), 1)
	}
	if r.QPS > 0 && r.QueueDepth > 0 {
		r.AvgLatencyMS = min(float64(r.QueueDepth)/r.QPS*1000, 1e8)
	}
	return r
}

// increase is a counter's increase from prev to cur; a decrease means the counter was
// reset (the process restarted), so it rose from 0 to cur.
func increase(prev, cur float64) float64 {
	if cur < prev {
		return max(cur, 0)
	}
	return cur - prev
}
