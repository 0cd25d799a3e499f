package main

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/prometheus/client_golang/prometheus"

	"github.com/otelfleet/otelfleet/pkg/events"
	"github.com/otelfleet/otelfleet/pkg/knobs"
	"github.com/otelfleet/otelfleet/pkg/loadreport"
	"github.com/otelfleet/otelfleet/pkg/promscrape"
)

// agentMetricsOptions are the flags `otelfleet agent` adds to turn a real OpenTelemetry
// Collector into a load-reporting fleet member: scrape its own Prometheus metrics and
// publish its load report. The collector's capacity comes from the agent's
// --capacity-qps.
type agentMetricsOptions struct {
	// url is the collector's metrics endpoint; empty disables load reporting.
	url string
	// interval is the time between scrapes and reports.
	interval time.Duration
	// timeout bounds one scrape (0: the interval, at most 5 s).
	timeout time.Duration
	// cpus divides the collector's CPU-seconds rate (0: this host's CPU count).
	cpus int
}

// bind registers the flags on k.
func (o *agentMetricsOptions) bind(k *knobs.Set) {
	k.String(&o.url, "metrics-url", "METRICS_URL", "", "the collector's own Prometheus metrics endpoint, e.g. http://127.0.0.1:8888/metrics; when set, the agent scrapes it and publishes the collector's load on <root>.load.<region>.<id>")
	k.Duration(&o.interval, "metrics-interval", "METRICS_INTERVAL", time.Second, "time between scrapes and load reports (with --metrics-url)")
	k.Duration(&o.timeout, "metrics-timeout", "METRICS_TIMEOUT", 0, "bound of one scrape (0: the interval, at most 5s)")
	k.Int(&o.cpus, "collector-cpus", "COLLECTOR_CPUS", 0, "CPUs the collector's CPU time is a share of (0: this host's count; run the agent beside the collector)")
}

// validate checks the options without connecting, naming the flag at fault.
func (o agentMetricsOptions) validate() error {
	if o.url == "" {
		return nil
	}
	var errs []error
	if err := o.scrapeConfig().Validate(); err != nil {
		errs = append(errs, fmt.Errorf("--metrics-url or --metrics-timeout: %w", err))
	}
	if o.interval < loadreport.MinInterval || o.interval > loadreport.MaxInterval {
		errs = append(errs, fmt.Errorf("--metrics-interval %v: want %v..%v", o.interval, loadreport.MinInterval, loadreport.MaxInterval))
	}
	if o.cpus < 0 {
		errs = append(errs, fmt.Errorf("--collector-cpus %d: must not be negative", o.cpus))
	}
	return errors.Join(errs...)
}

func (o agentMetricsOptions) scrapeConfig() promscrape.Config {
	sc := promscrape.DefaultConfig()
	sc.URL, sc.Timeout = o.url, o.timeout
	if sc.Timeout == 0 {
		sc.Timeout = min(max(o.interval, time.Millisecond), 5*time.Second)
	}
	return sc
}

// agentMetricsTask returns the agent task that scrapes o.url every o.interval and
// publishes the load report of collector id in region (capacity capacityQPS) until its
// context ends; nil, nil when o.url is empty. reg may be nil. `otelfleet agent` runs it
// beside the registration heartbeat:
//
//	t, err := agentMetricsTask(nc, ns, o.region, o.id, o.capacity, mo, log, nil)
//	if err != nil {
//		return usageError("agent: %v", err)
//	}
//	if t != nil {
//		tasks = append(tasks, t)
//	}
func agentMetricsTask(nc *nats.Conn, ns events.Namespace, region, id string, capacityQPS float64, o agentMetricsOptions, log *slog.Logger, reg prometheus.Registerer) (agentTask, error) {
	src, err := o.source(capacityQPS, log)
	if src == nil || err != nil {
		return nil, err
	}
	return agentLoadTask(nc, ns, region, id, src, o, log, reg)
}

// source returns the scraping source of --metrics-url (nil without one).
func (o agentMetricsOptions) source(capacityQPS float64, log *slog.Logger) (*promscrape.Source, error) {
	if o.url == "" {
		return nil, nil
	}
	if err := o.validate(); err != nil {
		return nil, err
	}
	scraper, err := promscrape.New(o.scrapeConfig())
	if err != nil {
		return nil, fmt.Errorf("--metrics-url: %w", err)
	}
	src, err := promscrape.NewSource(scraper, promscrape.SourceConfig{Capacity: capacityQPS, NumCPU: o.cpus}, log)
	if err != nil {
		return nil, fmt.Errorf("--capacity-qps or --collector-cpus: %w", err)
	}
	return src, nil
}

// agentLoadTask publishes src's load reports on the collector's load subject.
func agentLoadTask(nc *nats.Conn, ns events.Namespace, region, id string, src *promscrape.Source, o agentMetricsOptions, log *slog.Logger, reg prometheus.Registerer) (agentTask, error) {
	cfg := loadreport.DefaultConfig()
	cfg.Region, cfg.Collector, cfg.Interval = region, id, o.interval
	cfg.Source = events.Source("agent", region+"/"+id)
	pub, err := loadreport.NewPublisher(nc, ns, cfg, src, log, reg)
	if err != nil {
		return nil, fmt.Errorf("load reporting: %w", err)
	}
	return func(ctx context.Context) error {
		pub.Start()
		log.Info("reporting the collector's load", "metrics_url", o.url, "subject", pub.Subject(), "interval", o.interval)
		<-ctx.Done()
		pub.Stop()
		return nil
	}, nil
}
