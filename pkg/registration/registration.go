package registration

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"maps"
	"sync"
	"time"

	"github.com/cenkalti/backoff/v4"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"github.com/prometheus/client_golang/prometheus"

	"github.com/otelfleet/otelfleet/pkg/events"
	"github.com/otelfleet/otelfleet/pkg/natsconn"
	"github.com/otelfleet/otelfleet/pkg/sysstat"
)

// Errors returned by this package.
var (
	// ErrConfig is wrapped by every Config validation error.
	ErrConfig = errors.New("invalid registration config")
	// ErrStarted is returned by Register and Start when the client already runs.
	ErrStarted = errors.New("registration already started")
	// ErrClosed is returned when the client was deregistered; make a new one to register
	// again.
	ErrClosed = errors.New("registration client closed")
)

// Store is the part of a JetStream KV bucket the client uses; jetstream.KeyValue
// implements it (the otlp_registry bucket: bucket TTL, LimitMarkerTTL on, history 1).
type Store interface {
	Put(ctx context.Context, key string, value []byte) (uint64, error)
	Update(ctx context.Context, key string, value []byte, revision uint64) (uint64, error)
	Delete(ctx context.Context, key string, opts ...jetstream.KVDeleteOpt) error
	Status(ctx context.Context) (jetstream.KeyValueStatus, error)
}

var _ Store = jetstream.KeyValue(nil)

// Check is a custom health check, run before every heartbeat with a context bounded by
// Config.CheckTimeout. It returns the check's verdict; its Name identifies it.
type Check func(ctx context.Context) events.CheckResult

// Sampler reads CPU and memory; *sysstat.Sampler implements it.
type Sampler interface {
	Sample() (sysstat.Reading, error)
}

// Config describes the instance to register and how to judge its health.
type Config struct {
	// Kind is events.KindCollector or events.KindService.
	Kind string
	// ID is the instance id (a name token).
	ID string
	// Name is the service name (kind service; a name token) or a display name.
	Name string
	// Region is the instance's region; required for collectors.
	Region string
	// Address is where to reach the instance: a collector's OTLP endpoint (host:port), a
	// service's admin address.
	Address string
	// CapacityQPS is the instance's capacity in spans per second (0: unknown).
	CapacityQPS float64
	// Metadata are free-form labels.
	Metadata map[string]string
	// Version is the instance's software version.
	Version string

	// Checks are custom health checks, run with every heartbeat besides the built-in
	// "cpu" and "memory" checks.
	Checks []Check
	// CheckTimeout bounds each custom check (default 2s, at most the interval).
	CheckTimeout time.Duration
	// CPUDegraded and CPUUnhealthy are fractions of the process's allowed CPUs (its
	// cgroup quota, else GOMAXPROCS: sysstat.Reading.ProcessCPUShare) at which the "cpu"
	// check reports degraded and unhealthy (defaults 0.90 and 0.98). The host's CPU is
	// reported, never judged: a busy host does not make a process unhealthy.
	CPUDegraded, CPUUnhealthy float64
	// MemoryDegraded and MemoryUnhealthy are fractions of the process's memory limit
	// (its RSS against its cgroup limit, else the host's memory:
	// sysstat.Reading.ProcessMemory) at which the "memory" check reports degraded and
	// unhealthy (defaults 0.90 and 0.97).
	MemoryDegraded, MemoryUnhealthy float64
	// Sampler reads the CPU and memory of the process the registration describes; nil
	// means sysstat.NewSampler() (this process's real /proc readings).
	Sampler Sampler
	// Hysteresis says how many consecutive heartbeats must agree before the reported
	// status changes.
	Hysteresis

	// Interval between heartbeats; zero means a third of the bucket TTL, read from the
	// bucket when registering. An interval at or above the TTL lets the key expire.
	Interval time.Duration
	// Registerer, if set, receives otelfleet_registration_* metrics labelled with the key.
	Registerer prometheus.Registerer
}

// Key returns the registry key the config registers at.
func (c Config) Key() (string, error) {
	return events.Registration{InstanceKind: c.Kind, ID: c.ID, Name: c.Name, Region: c.Region}.Key()
}

// Validate reports every invalid field.
func (c Config) Validate() error {
	var errs []error
	if _, err := c.Key(); err != nil {
		errs = append(errs, fmt.Errorf("%w: %w", ErrConfig, err))
	}
	if c.CapacityQPS < 0 {
		errs = append(errs, fmt.Errorf("%w: capacity %v: negative", ErrConfig, c.CapacityQPS))
	}
	for _, f := range []struct {
		name string
		v    float64
	}{{"cpu degraded", c.CPUDegraded}, {"cpu unhealthy", c.CPUUnhealthy}, {"memory degraded", c.MemoryDegraded}, {"memory unhealthy", c.MemoryUnhealthy}} {
		if f.v < 0 || f.v > 1 {
			errs = append(errs, fmt.Errorf("%w: %s threshold %v: outside [0,1]", ErrConfig, f.name, f.v))
		}
	}
	if err := validateHysteresis(c.Hysteresis); err != nil {
		errs = append(errs, err)
	}
	if c.Interval < 0 || c.CheckTimeout < 0 {
		errs = append(errs, fmt.Errorf("%w: interval and check timeout: must not be negative", ErrConfig))
	}
	return errors.Join(errs...)
}

func (c Config) withDefaults() Config {
	def := func(p *float64, v float64) {
		if *p == 0 {
			*p = v
		}
	}
	def(&c.CPUDegraded, 0.90)
	def(&c.CPUUnhealthy, 0.98)
	def(&c.MemoryDegraded, 0.90)
	def(&c.MemoryUnhealthy, 0.97)
	if c.CheckTimeout == 0 {
		c.CheckTimeout = 2 * time.Second
	}
	if c.WorseAfter == 0 {
		c.WorseAfter = DefaultWorseAfter
	}
	if c.BetterAfter == 0 {
		c.BetterAfter = DefaultBetterAfter
	}
	if c.Sampler == nil {
		c.Sampler = sysstat.NewSampler()
	}
	c.Metadata = maps.Clone(c.Metadata)
	return c
}

// Client registers one instance in the registry bucket and keeps it alive with
// heartbeats. Create it with New; call Register (or Start), later Deregister. Methods
// are safe for concurrent use.
type Client struct {
	kv  Store
	key string
	log *slog.Logger
	m   *metrics

	mu       sync.Mutex
	cfg      Config
	interval time.Duration
	judged   judge               // the reported status and the streaks behind it
	last     events.Registration // last value written
	rev      uint64              // its revision; 0 when not registered
	started  bool
	closed   bool
	stop     context.CancelFunc
	done     chan struct{}
	kick     chan struct{}
}

// New returns a client for cfg on kv. log may be nil.
func New(kv Store, cfg Config, log *slog.Logger) (*Client, error) {
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	key, _ := cfg.Key()
	cfg = cfg.withDefaults()
	if log == nil {
		log = slog.New(slog.DiscardHandler) // a handler writing to io.Discard would still format every record
	}
	m, err := newMetrics(cfg.Registerer, key)
	if err != nil {
		return nil, err
	}
	_, _ = cfg.Sampler.Sample() // establish the CPU time base
	return &Client{kv: kv, key: key, log: log.With("registration", key), m: m, cfg: cfg, kick: make(chan struct{}, 1)}, nil
}

// Key is the registry key, e.g. collector.us-east-1.c1 or service.config.i1.
func (c *Client) Key() string { return c.key }

// Register writes the registration, retrying NATS errors with exponential backoff
// until it succeeds or ctx ends, then heart-beats in the background until Deregister.
// ctx bounds only the first write.
func (c *Client) Register(ctx context.Context) error {
	loopCtx, err := c.begin()
	if err != nil {
		return err
	}
	if err := c.retry(ctx, c.beat); err != nil {
		c.abort()
		return fmt.Errorf("register %s: %w", c.key, err)
	}
	go c.loop(loopCtx, true)
	return nil
}

// Start registers in the background and heart-beats until Deregister: it never blocks,
// so a service starts even when NATS is down, and registers once NATS is back.
func (c *Client) Start() error {
	loopCtx, err := c.begin()
	if err != nil {
		return err
	}
	go c.loop(loopCtx, false)
	return nil
}

// Run registers (retrying until it succeeds), heart-beats until ctx ends, then
// deregisters (bounded by the heartbeat interval) and returns. It returns an error only
// if the client had already been started or closed.
func (c *Client) Run(ctx context.Context) error {
	if err := c.Start(); err != nil {
		return err
	}
	<-ctx.Done()
	dctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), max(c.currentInterval(), 2*time.Second))
	defer cancel()
	return c.Deregister(dctx)
}

func (c *Client) begin() (context.Context, error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	switch {
	case c.closed:
		return nil, ErrClosed
	case c.started:
		return nil, ErrStarted
	}
	ctx, cancel := context.WithCancel(context.Background())
	c.started, c.stop, c.done = true, cancel, make(chan struct{})
	return ctx, nil
}

// abort undoes begin after a failed Register, so that Register may be called again.
func (c *Client) abort() {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.stop()
	close(c.done)
	c.started, c.stop, c.done = false, nil, nil
}

// Deregister stops the heartbeats and deletes the registration, retrying NATS errors
// until ctx ends (then the key simply expires after the TTL). Later calls return nil.
func (c *Client) Deregister(ctx context.Context) error {
	c.mu.Lock()
	if c.closed {
		c.mu.Unlock()
		return nil
	}
	c.closed = true
	stop, done, running := c.stop, c.done, c.started
	c.mu.Unlock()
	if running && done != nil {
		stop()
		<-done
	}
	c.mu.Lock()
	registered := c.rev != 0
	c.mu.Unlock()
	if !registered {
		return nil
	}
	err := c.retry(ctx, func(ctx context.Context) error { return c.kv.Delete(ctx, c.key) })
	if err != nil {
		return fmt.Errorf("deregister %s: %w", c.key, err)
	}
	c.mu.Lock()
	c.rev = 0
	c.mu.Unlock()
	c.log.Info("deregistered")
	return nil
}

// Update changes the registered description (not the key: kind, id, name and region
// stay) and sends a heartbeat at once. fn runs under the client's lock and must not
// block. A later issue's load reporter uses it to publish capacity from a collector's
// metrics.
func (c *Client) Update(fn func(*Config)) {
	c.mu.Lock()
	cfg := c.cfg
	cfg.Metadata = maps.Clone(cfg.Metadata)
	fn(&cfg)
	cfg.Kind, cfg.ID, cfg.Name, cfg.Region = c.cfg.Kind, c.cfg.ID, c.cfg.Name, c.cfg.Region
	c.cfg = cfg
	c.mu.Unlock()
	select {
	case c.kick <- struct{}{}:
	default:
	}
}

// Current returns the registration last written, and whether the instance is
// registered (a write succeeded and Deregister was not called).
func (c *Client) Current() (events.Registration, bool) {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.last, c.rev != 0
}

func (c *Client) currentInterval() time.Duration {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.interval > 0 {
		return c.interval
	}
	return c.cfg.Interval
}

// loop heart-beats until ctx ends. registered says whether Register already wrote.
func (c *Client) loop(ctx context.Context, registered bool) {
	c.mu.Lock()
	done := c.done
	c.mu.Unlock()
	defer close(done)
	b := newBackoff()
	wait := time.Duration(0)
	if registered {
		wait = c.currentInterval()
	}
	timer := time.NewTimer(wait)
	defer timer.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-c.kick:
		case <-timer.C:
		}
		interval := c.currentInterval()
		started := time.Now()
		if err := c.beat(ctx); err != nil {
			if ctx.Err() != nil {
				return
			}
			d := b.NextBackOff()
			if interval > 0 {
				d = min(d, interval)
			}
			c.m.errors.Inc()
			c.log.Warn("heartbeat failed, retrying", "in", d, "err", err)
			timer.Reset(d)
			continue
		}
		b.Reset()
		// Fixed rate: a slow write does not push the next heartbeat further out.
		timer.Reset(max(c.currentInterval()-time.Since(started), 0))
	}
}

// retry runs op with exponential backoff until it succeeds or ctx ends.
func (c *Client) retry(ctx context.Context, op func(context.Context) error) error {
	return backoff.RetryNotify(func() error {
		err := op(ctx)
		if errors.Is(err, nats.ErrConnectionClosed) {
			return backoff.Permanent(err)
		}
		return err
	}, backoff.WithContext(newBackoff(), ctx), func(err error, d time.Duration) {
		c.m.errors.Inc()
		c.log.Warn("registry write failed, retrying", "in", d, "err", err)
	})
}

func newBackoff() *backoff.ExponentialBackOff {
	b := backoff.NewExponentialBackOff()
	b.InitialInterval = 100 * time.Millisecond
	b.MaxInterval = 5 * time.Second
	b.MaxElapsedTime = 0
	b.Reset()
	return b
}

// beat writes one heartbeat: a revision-checked Update of our last write, or a fresh
// registration (Put) when there is none or the key expired or was deleted meanwhile.
func (c *Client) beat(ctx context.Context) error {
	c.mu.Lock()
	cfg, rev, last, interval := c.cfg, c.rev, c.last, c.interval
	c.mu.Unlock()

	if rev == 0 || interval == 0 {
		iv, err := c.resolveInterval(ctx, cfg)
		if err != nil {
			return err
		}
		interval = iv
	}
	health := c.health(ctx, cfg, interval)
	health.Status = c.judgeHealth(health.Status, cfg.Hysteresis)
	now := time.Now().UTC()
	reg := events.Registration{
		V: events.RegistrationVersion, ID: cfg.ID, Name: cfg.Name, InstanceKind: cfg.Kind, Region: cfg.Region,
		Address: cfg.Address, CapacityQPS: cfg.CapacityQPS, Metadata: cfg.Metadata, Health: health,
		Version: cfg.Version, RegisteredAt: last.RegisteredAt, UpdatedAt: now, Generation: last.Generation,
	}
	if rev != 0 {
		if len(reg.Changed(last)) > 0 {
			reg.Generation++
		}
		data, err := events.Encode(reg)
		if err != nil {
			return err
		}
		rctx, cancel := context.WithTimeout(ctx, max(interval, time.Second))
		nrev, err := c.kv.Update(rctx, c.key, data, rev)
		cancel()
		if err == nil {
			c.wrote(reg, nrev, interval, false)
			return nil
		}
		if !natsconn.IsConflict(err) && !errors.Is(err, jetstream.ErrKeyNotFound) {
			return err
		}
		c.log.Warn("registration was gone (expired or deleted) or rewritten; registering anew", "err", err)
	}
	reg.RegisteredAt, reg.Generation = now, 1
	data, err := events.Encode(reg)
	if err != nil {
		return err
	}
	rctx, cancel := context.WithTimeout(ctx, max(interval, time.Second))
	defer cancel()
	nrev, err := c.kv.Put(rctx, c.key, data)
	if err != nil {
		return err
	}
	c.wrote(reg, nrev, interval, true)
	return nil
}

func (c *Client) wrote(reg events.Registration, rev uint64, interval time.Duration, fresh bool) {
	c.mu.Lock()
	c.last, c.rev, c.interval = reg, rev, interval
	c.mu.Unlock()
	c.m.heartbeats.Inc()
	if fresh {
		c.m.registrations.Inc()
		c.log.Info("registered", "address", reg.Address, "health", reg.Health.Status, "heartbeat_every", interval)
	}
}

// resolveInterval returns the configured interval, or a third of the bucket TTL.
func (c *Client) resolveInterval(ctx context.Context, cfg Config) (time.Duration, error) {
	if cfg.Interval > 0 {
		return cfg.Interval, nil
	}
	sctx, cancel := context.WithTimeout(ctx, 5*time.Second)
	defer cancel()
	st, err := c.kv.Status(sctx)
	if err != nil {
		return 0, fmt.Errorf("read the registry bucket TTL: %w", err)
	}
	if st.TTL() <= 0 {
		return 0, errors.New("the registry bucket has no TTL: registrations would never expire")
	}
	return st.TTL() / 3, nil
}
