package simfleet

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"sync"
	"sync/atomic"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/prometheus/client_golang/prometheus"

	"github.com/otelfleet/otelfleet/pkg/events"
	"github.com/otelfleet/otelfleet/pkg/loadreport"
	"github.com/otelfleet/otelfleet/pkg/platform"
	"github.com/otelfleet/otelfleet/pkg/registration"
	"github.com/otelfleet/otelfleet/pkg/sysstat"
)

// Errors returned by Simulator.Start.
var (
	// ErrStarted is returned by Start when the simulator was started before.
	ErrStarted = errors.New("simfleet: already started")
)

// registerParallelism bounds concurrent registrations at Start and deletions at Stop.
const registerParallelism = 32

// simulatedMemoryBytes is the machine size the registrations' memory fraction is
// computed against.
const simulatedMemoryBytes = 8 << 30

// Option configures a Simulator.
type Option func(*Simulator)

// WithClock makes the simulator read time from now instead of time.Now; the fleet's
// reports are stamped with it (ticks still come from a real ticker).
func WithClock(now func() time.Time) Option { return func(s *Simulator) { s.now = now } }

// WithSource sets the ce-source of the load reports (default "otelfleet/simulate").
func WithSource(source string) Option { return func(s *Simulator) { s.source = source } }

// Simulator runs a Fleet against NATS: it registers every simulated collector with a
// registration client (so they appear in the registry, heart-beat, and expire when the
// process dies without deregistering) and publishes every collector's load report each
// interval on <root>.load.<region>.<id>. Create it with New; Start, then Stop.
type Simulator struct {
	nc       *nats.Conn
	ns       events.Namespace
	registry registration.Store
	cfg      Config
	log      *slog.Logger
	m        *metrics
	now      func() time.Time
	source   string

	mu      sync.Mutex
	started bool
	members []*member
	stop    chan struct{}
	done    chan struct{}
}

// member is one simulated collector's registration and latest report.
type member struct {
	Member
	client *registration.Client
	latest atomic.Pointer[events.LoadReport]
}

// New returns a simulator of cfg's fleet publishing on nc with the names of ns and
// registering in registry (the otlp_registry bucket; nil publishes load only and
// registers nothing). Metrics (otelfleet_simfleet_*) go to reg when it is not nil.
func New(nc *nats.Conn, ns events.Namespace, registry registration.Store, cfg Config, log *slog.Logger, reg prometheus.Registerer, opts ...Option) (*Simulator, error) {
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	if nc == nil {
		return nil, fmt.Errorf("%w: a NATS connection is required", ErrConfigValidation)
	}
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	m, err := newMetrics(reg)
	if err != nil {
		return nil, err
	}
	s := &Simulator{nc: nc, ns: ns, registry: registry, cfg: cfg, log: log, m: m, now: time.Now, source: events.Source("simulate", "")}
	for _, o := range opts {
		o(s)
	}
	return s, nil
}

// Members returns the simulated collectors (empty before Start).
func (s *Simulator) Members() []Member {
	s.mu.Lock()
	defer s.mu.Unlock()
	out := make([]Member, len(s.members))
	for i, m := range s.members {
		out[i] = m.Member
	}
	return out
}

// Start builds the fleet, registers every collector (ctx bounds the registrations;
// on failure those already registered are deregistered again), publishes the first
// reports at once and then publishes every interval until Stop.
func (s *Simulator) Start(ctx context.Context) error {
	s.mu.Lock()
	if s.started {
		s.mu.Unlock()
		return ErrStarted
	}
	s.started = true
	s.mu.Unlock()

	fleet, err := NewFleet(s.cfg, s.now())
	if err != nil {
		return err
	}
	members := make([]*member, 0, len(fleet.Members()))
	for _, fm := range fleet.Members() {
		members = append(members, &member{Member: fm})
	}
	first := fleet.Step(s.now())
	for i, r := range first {
		members[i].latest.Store(&r)
	}
	if s.registry != nil {
		if err := s.register(ctx, members); err != nil {
			return err
		}
	}
	stop, done := make(chan struct{}), make(chan struct{})
	s.mu.Lock()
	s.members, s.stop, s.done = members, stop, done
	s.mu.Unlock()
	s.publish(first)
	go s.run(fleet, members, stop, done)
	s.log.Info("simulated fleet running", "regions", s.cfg.Regions, "collectors_per_region", s.cfg.Collectors,
		"pattern", s.cfg.Pattern, "interval", s.cfg.Interval, "base_qps", s.cfg.BaseQPS, "seed", s.cfg.Seed)
	return nil
}

// Stop stops publishing and deregisters every collector, bounded by ctx (collectors not
// deregistered by then expire after the registry TTL). Safe to call more than once and
// without Start.
func (s *Simulator) Stop(ctx context.Context) error {
	s.mu.Lock()
	stop, done, members := s.stop, s.done, s.members
	s.stop, s.members = nil, nil
	s.mu.Unlock()
	if stop == nil {
		return nil
	}
	close(stop)
	<-done
	errs := parallel(members, func(m *member) error {
		if m.client == nil {
			return nil
		}
		return m.client.Deregister(ctx)
	})
	s.m.collectors.Reset()
	if err := errors.Join(errs...); err != nil {
		return fmt.Errorf("simfleet: stop: %w", err)
	}
	s.log.Info("simulated fleet stopped and deregistered", "collectors", len(members))
	return nil
}

func (s *Simulator) register(ctx context.Context, members []*member) error {
	errs := parallel(members, func(m *member) error {
		c, err := registration.New(s.registry, registration.Config{
			Kind:        events.KindCollector,
			ID:          m.ID,
			Region:      m.Region,
			CapacityQPS: m.Capacity,
			Version:     platform.Version,
			Metadata:    map[string]string{"simulated": "true", "pattern": string(s.cfg.Pattern)},
			Checks:      []registration.Check{m.check},
			Sampler:     memberSampler{m},
		}, s.log)
		if err != nil {
			return err
		}
		if err := c.Register(ctx); err != nil {
			return err
		}
		m.client = c
		return nil
	})
	if err := errors.Join(errs...); err != nil {
		dctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 5*time.Second)
		defer cancel()
		parallel(members, func(m *member) error {
			if m.client != nil {
				_ = m.client.Deregister(dctx)
			}
			return nil
		})
		return fmt.Errorf("simfleet: register the simulated collectors: %w", err)
	}
	return nil
}

// parallel runs fn for every member, at most registerParallelism at a time, and returns
// the errors.
func parallel(members []*member, fn func(*member) error) []error {
	errs := make([]error, len(members))
	sem := make(chan struct{}, registerParallelism)
	var wg sync.WaitGroup
	for i, m := range members {
		wg.Add(1)
		sem <- struct{}{}
		go func() {
			defer wg.Done()
			defer func() { <-sem }()
			errs[i] = fn(m)
		}()
	}
	wg.Wait()
	return errs
}

func (s *Simulator) run(fleet *Fleet, members []*member, stop <-chan struct{}, done chan<- struct{}) {
	defer close(done)
	t := time.NewTicker(s.cfg.Interval)
	defer t.Stop()
	for {
		select {
		case <-stop:
			return
		case <-t.C:
			reports := fleet.Step(s.now())
			for i, r := range reports {
				m := members[i]
				prev := m.latest.Swap(&r)
				if m.client != nil && prev != nil && prev.Healthy != r.Healthy {
					// Heart-beat at once so the registry shows the health change now.
					m.client.Update(func(*registration.Config) {})
					s.log.Info("simulated collector health changed", "region", m.Region, "collector", m.ID, "healthy", r.Healthy)
				}
			}
			s.publish(reports)
		}
	}
}

func (s *Simulator) publish(reports []events.LoadReport) {
	healthy := 0
	for _, r := range reports {
		if r.Healthy {
			healthy++
		}
		msg, err := loadreport.NewMsg(s.ns, s.source, r)
		if err == nil {
			err = s.nc.PublishMsg(msg)
		}
		if err != nil {
			s.m.failures.Inc()
			s.log.Debug("simulated load report not published", "collector", r.Collector, "err", err)
			continue
		}
		s.m.reports.Inc()
	}
	s.m.collectors.WithLabelValues("healthy").Set(float64(healthy))
	s.m.collectors.WithLabelValues("unhealthy").Set(float64(len(reports) - healthy))
}

// check is the registration health check of a simulated collector: unhealthy during a
// simulated outage.
func (m *member) check(context.Context) events.CheckResult {
	r := m.latest.Load()
	res := events.CheckResult{Name: "simulated", Status: events.HealthHealthy}
	if r == nil {
		return res
	}
	if !r.Healthy {
		res.Status = events.HealthUnhealthy
		res.Message = "simulated outage"
		return res
	}
	if r.Capacity > 0 {
		res.Message = fmt.Sprintf("utilisation %.0f%%", 100*r.QPS/r.Capacity)
	}
	return res
}

// memberSampler gives the registration client the simulated collector's CPU and
// memory, so that its heartbeats agree with its load reports.
type memberSampler struct{ m *member }

// Sample implements registration.Sampler.
func (s memberSampler) Sample() (sysstat.Reading, error) {
	r := s.m.latest.Load()
	if r == nil {
		return sysstat.Reading{}, errors.New("no simulated reading yet")
	}
	return sysstat.Reading{
		At:                r.At,
		CPUWindow:         time.Duration(r.IntervalMS) * time.Millisecond,
		ProcessCPU:        r.CPU,
		ProcessCPUShare:   r.CPU,
		HostCPU:           r.CPU,
		ProcessRSSBytes:   r.Memory,
		HostMemUsed:       min(float64(r.Memory)/simulatedMemoryBytes, 1),
		HostMemTotalBytes: simulatedMemoryBytes,
	}, nil
}
