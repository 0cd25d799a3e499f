package loadreport

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"log/slog"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/prometheus/client_golang/prometheus"

	"github.com/otelfleet/otelfleet/pkg/events"
)

// ErrConfigValidation is wrapped by every error Config.Validate (and so NewPublisher)
// returns; the message names the offending field.
var ErrConfigValidation = errors.New("loadreport: invalid config")

// Bounds of Config.Interval.
const (
	// MinInterval is the shortest publishing interval accepted.
	MinInterval = 10 * time.Millisecond
	// MaxInterval is the longest; events.LoadReport.Validate rejects longer intervals.
	MaxInterval = time.Hour
)

// Config says which collector a Publisher reports for and how often.
type Config struct {
	// Region and Collector are the collector's region and id, the last two tokens of
	// the subject <root>.load.<region>.<collector>. Required; valid name tokens.
	Region, Collector string
	// Interval is the time between reports (default 1 s, within [MinInterval,
	// MaxInterval]). Shorter intervals make the topology react faster and cost one
	// message per collector per interval on the OTLP_LOAD stream.
	Interval time.Duration
	// TopServices is how many services, busiest first, a report lists (default 10;
	// 0 lists none). The Source's list is cut to this length.
	TopServices int
	// Source is the ce-source header of each report (default
	// "otelfleet/load/<region>/<collector>").
	Source string
}

// DefaultConfig returns a one-second interval and the top ten services; Region and
// Collector must still be set.
func DefaultConfig() Config {
	return Config{Interval: time.Second, TopServices: 10}
}

// Validate reports every invalid field, each error wrapping ErrConfigValidation.
func (c Config) Validate() error {
	var errs []error
	if err := events.CheckToken("region", c.Region); err != nil {
		errs = append(errs, fmt.Errorf("%w: region: %w", ErrConfigValidation, err))
	}
	if err := events.CheckToken("collector id", c.Collector); err != nil {
		errs = append(errs, fmt.Errorf("%w: collector: %w", ErrConfigValidation, err))
	}
	if c.Interval < MinInterval || c.Interval > MaxInterval {
		errs = append(errs, fmt.Errorf("%w: interval: %v is outside [%v, %v]", ErrConfigValidation, c.Interval, MinInterval, MaxInterval))
	}
	if c.TopServices < 0 || c.TopServices > events.MaxReportedServices {
		errs = append(errs, fmt.Errorf("%w: top services: %d is outside [0, %d]", ErrConfigValidation, c.TopServices, events.MaxReportedServices))
	}
	return errors.Join(errs...)
}

// Publisher publishes one collector's load reports every Config.Interval. Create it with
// NewPublisher, then Start it; Stop stops the loop and waits for it. PublishOnce runs one
// tick by hand (tests, benchmarks, a caller with its own loop).
type Publisher struct {
	nc      *nats.Conn
	cfg     Config
	subject string
	src     Source
	log     *slog.Logger
	m       *metrics

	mu     sync.Mutex // serialises ticks (Source.Report is single-threaded)
	failed string     // last failure message, to log transitions only

	startOnce, stopOnce sync.Once
	stop                chan struct{}
	done                chan struct{}
}

// NewPublisher returns a Publisher of src's reports for cfg's collector on nc, with
// subjects from ns. Metrics (otelfleet_loadreport_*) are registered on reg when it is
// not nil; Publishers sharing a Registerer share the metrics. log may be nil.
func NewPublisher(nc *nats.Conn, ns events.Namespace, cfg Config, src Source, log *slog.Logger, reg prometheus.Registerer) (*Publisher, error) {
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	if nc == nil || src == nil {
		return nil, fmt.Errorf("%w: a NATS connection and a source are required", ErrConfigValidation)
	}
	subject, err := ns.LoadSubject(cfg.Region, cfg.Collector)
	if err != nil {
		return nil, fmt.Errorf("%w: %w", ErrConfigValidation, err)
	}
	if cfg.Source == "" {
		cfg.Source = events.Source("load", cfg.Region+"/"+cfg.Collector)
	}
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	m, err := newMetrics(reg)
	if err != nil {
		return nil, err
	}
	return &Publisher{
		nc: nc, cfg: cfg, subject: subject, src: src, m: m,
		log:  log.With("region", cfg.Region, "collector", cfg.Collector),
		stop: make(chan struct{}), done: make(chan struct{}),
	}, nil
}

// Subject returns the subject reports are published on.
func (p *Publisher) Subject() string { return p.subject }

// Start starts the publishing loop in a goroutine: a first tick at once (which a
// baseline-setting Source answers with ok false), then one every interval. Calling Start
// again, or after Stop, does nothing.
func (p *Publisher) Start() {
	p.startOnce.Do(func() {
		select {
		case <-p.stop:
			close(p.done)
			return
		default:
		}
		go p.run()
	})
}

// Stop stops the loop and waits until it has returned. It is idempotent and safe to call
// without Start. Reports already handed to the connection are flushed by the
// connection's owner (Drain or Flush), not by Stop.
func (p *Publisher) Stop() {
	p.stopOnce.Do(func() { close(p.stop) })
	p.startOnce.Do(func() { close(p.done) })
	<-p.done
}

func (p *Publisher) run() {
	defer close(p.done)
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	go func() {
		select {
		case <-p.stop:
			cancel()
		case <-ctx.Done():
		}
	}()
	_ = p.PublishOnce(ctx, time.Now())
	t := time.NewTicker(p.cfg.Interval)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case now := <-t.C:
			_ = p.PublishOnce(ctx, now)
		}
	}
}

// PublishOnce asks the Source for the report of the interval ending at now and publishes
// it. It returns nil when the Source skipped the tick, and the Source, validation or
// publish error otherwise (also counted and logged; a Source error caused by ctx ending
// is returned but neither counted nor logged). Safe for concurrent use; calls are
// serialised.
func (p *Publisher) PublishOnce(ctx context.Context, now time.Time) error {
	p.mu.Lock()
	defer p.mu.Unlock()
	r, ok, err := p.src.Report(ctx, now)
	if err != nil {
		if ctx.Err() != nil {
			return err
		}
		return p.fail(stageSource, fmt.Errorf("load report source: %w", err))
	}
	if !ok {
		return nil
	}
	p.stamp(&r, now)
	msg, err := events.NewMsg(p.subject, p.cfg.Source, r)
	if err != nil {
		return p.fail(stageValidate, err)
	}
	if err := p.nc.PublishMsg(msg); err != nil {
		return p.fail(stagePublish, fmt.Errorf("publish %s: %w", p.subject, err))
	}
	p.m.published.Inc()
	if p.failed != "" {
		p.log.Info("load reports flowing again")
		p.failed = ""
	}
	return nil
}

// stamp fills the identity and defaults, and cuts the services list.
func (p *Publisher) stamp(r *events.LoadReport, now time.Time) {
	r.V = events.LoadReportVersion
	r.Region, r.Collector = p.cfg.Region, p.cfg.Collector
	if r.At.IsZero() {
		r.At = now
	}
	if r.IntervalMS == 0 {
		r.IntervalMS = p.cfg.Interval.Milliseconds()
	}
	if len(r.Services) > p.cfg.TopServices {
		byRate := func(a, b events.ServiceRate) int {
			if c := cmp.Compare(b.SpansPerSec, a.SpansPerSec); c != 0 {
				return c
			}
			return strings.Compare(a.Name, b.Name)
		}
		if !slices.IsSortedFunc(r.Services, byRate) {
			r.Services = slices.Clone(r.Services)
			slices.SortFunc(r.Services, byRate)
		}
		r.Services = r.Services[:p.cfg.TopServices]
	}
	if len(r.Services) == 0 {
		r.Services = nil
	}
	r.Forwarded = alongside(r.Forwarded, r.Services)
}

// alongside returns the rates of fwd whose services are listed in services (a router's
// forwarded rates are subtracted per service from what it received, so a forwarded
// service cut from the received list must go too); nil when none is.
func alongside(fwd, services []events.ServiceRate) []events.ServiceRate {
	if len(fwd) == 0 {
		return nil
	}
	listed := make(map[string]struct{}, len(services))
	for _, s := range services {
		listed[s.Name] = struct{}{}
	}
	var out []events.ServiceRate
	for _, f := range fwd {
		if _, ok := listed[f.Name]; ok {
			out = append(out, f)
		}
	}
	return out
}

func (p *Publisher) fail(stage string, err error) error {
	p.m.failures.WithLabelValues(stage).Inc()
	if msg := err.Error(); msg != p.failed {
		p.log.Warn("load report not published", "stage", stage, "err", err)
		p.failed = msg
	}
	return err
}

// NewMsg builds the message for report r, for callers that publish many collectors'
// reports from their own loop (the simulator): subject <root>.load.<region>.<collector>
// from ns and r's Region and Collector, V set to the current schema version, CloudEvents
// headers with ce-source source. It fails when r is invalid.
func NewMsg(ns events.Namespace, source string, r events.LoadReport) (*nats.Msg, error) {
	subject, err := ns.LoadSubject(r.Region, r.Collector)
	if err != nil {
		return nil, fmt.Errorf("%w: %w", ErrInvalid, err)
	}
	r.V = events.LoadReportVersion
	return events.NewMsg(subject, source, r)
}
