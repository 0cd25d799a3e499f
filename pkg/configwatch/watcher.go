package configwatch

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"maps"
	"sync"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"github.com/prometheus/client_golang/prometheus"

	"github.com/otelfleet/otelfleet/pkg/events"
	"github.com/otelfleet/otelfleet/pkg/fleetconfig"
	"github.com/otelfleet/otelfleet/pkg/kvwatch"
)

// Snapshot is the configuration in force at one instance.
type Snapshot struct {
	// Global is the global config; its Version is 0 while the bucket holds none.
	Global fleetconfig.Global
	// Regions holds the regional overrides by region name.
	Regions map[string]fleetconfig.Region
	// AppliedAt is when this snapshot was applied.
	AppliedAt time.Time
}

// Region returns the override of region, or fleetconfig.DefaultRegion() when it has none.
func (s Snapshot) Region(region string) fleetconfig.Region {
	if r, ok := s.Regions[region]; ok {
		return r
	}
	return fleetconfig.DefaultRegion()
}

// Options configure a Watcher.
type Options struct {
	// Service and Instance identify this watcher in config reports.
	Service, Instance string
	// Namespace gives the report subject; zero means events.Default.
	Namespace events.Namespace
	Log       *slog.Logger
	// Registerer receives the watcher's metrics; nil means none.
	Registerer prometheus.Registerer
}

// Watcher follows the config bucket. Create it with New, then Start it.
type Watcher struct {
	kv   jetstream.KeyValue
	nc   *nats.Conn
	opts Options
	m    *metrics

	mu        sync.RWMutex
	listeners []func(Snapshot)
	snap      Snapshot
	rejected  uint64
	lastErr   string

	ready     chan struct{}
	readyOnce sync.Once
	cancel    context.CancelFunc
	done      chan struct{}
	sub       *nats.Subscription
	stopOnce  sync.Once
}

// New returns a watcher of kv (the config bucket) that answers config reports on nc.
func New(nc *nats.Conn, kv jetstream.KeyValue, opts Options) (*Watcher, error) {
	if opts.Log == nil {
		opts.Log = slog.New(slog.DiscardHandler)
	}
	if opts.Namespace == (events.Namespace{}) {
		opts.Namespace = events.Default
	}
	m, err := newMetrics(opts.Registerer)
	if err != nil {
		return nil, err
	}
	return &Watcher{
		kv: kv, nc: nc, opts: opts, m: m,
		snap:  Snapshot{Global: fleetconfig.Defaults().Global, Regions: map[string]fleetconfig.Region{}},
		ready: make(chan struct{}),
		done:  make(chan struct{}),
	}, nil
}

// Start begins watching in a goroutine and answering report requests. It returns
// without waiting for the first load; use WaitReady for that.
func (w *Watcher) Start() error {
	sub, err := w.nc.Subscribe(w.opts.Namespace.ConfigReportSubject(), w.answerReport)
	if err != nil {
		return fmt.Errorf("subscribe to config reports: %w", err)
	}
	w.sub = sub
	ctx, cancel := context.WithCancel(context.Background())
	w.cancel = cancel
	go w.run(ctx)
	return nil
}

// Stop stops watching and waits for the goroutine to end. Safe to call more than once.
func (w *Watcher) Stop() {
	w.stopOnce.Do(func() {
		if w.sub != nil {
			_ = w.sub.Unsubscribe()
		}
		if w.cancel != nil {
			w.cancel()
			<-w.done
		}
	})
}

// Ready reports whether the first full load of the bucket has been applied.
func (w *Watcher) Ready() bool {
	select {
	case <-w.ready:
		return true
	default:
		return false
	}
}

// WaitReady blocks until the first load is applied or ctx ends.
func (w *Watcher) WaitReady(ctx context.Context) error {
	select {
	case <-w.ready:
		return nil
	case <-ctx.Done():
		return ctx.Err()
	}
}

// Current returns the snapshot in force.
func (w *Watcher) Current() Snapshot {
	w.mu.RLock()
	defer w.mu.RUnlock()
	return w.snap
}

// Report returns this instance's config report.
func (w *Watcher) Report() events.ConfigReport {
	w.mu.RLock()
	defer w.mu.RUnlock()
	r := events.ConfigReport{
		V: events.ConfigReportVersion, Service: w.opts.Service, Instance: w.opts.Instance,
		GlobalVersion: w.snap.Global.Version, AppliedAt: w.snap.AppliedAt,
		Rejected: w.rejected, LastError: w.lastErr,
	}
	if len(w.snap.Regions) > 0 {
		r.Regions = make(map[string]uint64, len(w.snap.Regions))
		for name, reg := range w.snap.Regions {
			r.Regions[name] = reg.Version
		}
	}
	return r
}

func (w *Watcher) answerReport(m *nats.Msg) {
	if m.Reply == "" {
		return
	}
	data, err := events.Encode(w.Report())
	if err != nil {
		return
	}
	_ = m.Respond(data)
}

func (w *Watcher) run(ctx context.Context) {
	defer close(w.done)
	kvwatch.Run(ctx, w.nc, w.kv, "", func(e jetstream.KeyValueEntry) {
		if e == nil { // end of a (re)play of the current values
			if !w.Ready() {
				w.publish()
				w.readyOnce.Do(func() { close(w.ready) })
			}
			return
		}
		if w.apply(e) && w.Ready() {
			w.publish()
		}
	}, func(err error) { w.opts.Log.Warn("config watch failed, retrying", "err", err) })
}

// apply folds one entry into the snapshot and reports whether the snapshot changed.
func (w *Watcher) apply(e jetstream.KeyValueEntry) bool {
	key := e.Key()
	deleted := e.Operation() == jetstream.KeyValueDelete || e.Operation() == jetstream.KeyValuePurge
	w.mu.Lock()
	defer w.mu.Unlock()
	switch {
	case key == events.GlobalConfigKey:
		if deleted {
			w.rejectLocked(key, e.Revision(), errors.New("the global config was deleted; keeping the last good one"))
			return false
		}
		g, err := fleetconfig.DecodeGlobalJSON(e.Value())
		if err == nil {
			err = g.Validate()
		}
		if err != nil {
			w.rejectLocked(key, e.Revision(), err)
			return false
		}
		if g.Version == w.snap.Global.Version && w.snap.Global.Version != 0 {
			return false
		}
		w.snap = Snapshot{Global: g, Regions: w.snap.Regions, AppliedAt: time.Now()}
		w.m.applied.WithLabelValues(key).Set(float64(g.Version))
		w.opts.Log.Info("config applied", "key", key, "version", g.Version, "revision", e.Revision())
		return true
	default:
		region, ok := events.RegionFromConfigKey(key)
		if !ok {
			w.opts.Log.Debug("ignoring unknown key in the config bucket", "key", key)
			return false
		}
		regions := maps.Clone(w.snap.Regions)
		if deleted {
			if _, had := regions[region]; !had {
				return false
			}
			delete(regions, region)
		} else {
			r, err := fleetconfig.DecodeRegionJSON(e.Value())
			if err == nil {
				err = r.Validate(region)
			}
			if err != nil {
				w.rejectLocked(key, e.Revision(), err)
				return false
			}
			regions[region] = r
			w.m.applied.WithLabelValues(key).Set(float64(r.Version))
		}
		w.snap = Snapshot{Global: w.snap.Global, Regions: regions, AppliedAt: time.Now()}
		w.opts.Log.Info("regional config applied", "key", key, "deleted", deleted, "revision", e.Revision())
		return true
	}
}

func (w *Watcher) rejectLocked(key string, rev uint64, err error) {
	w.rejected++
	w.lastErr = fmt.Sprintf("%s (revision %d): %v", key, rev, err)
	w.m.rejected.WithLabelValues(key).Inc()
	w.opts.Log.Error("config value rejected; the last good config stays in force", "key", key, "revision", rev, "err", err)
}

// OnChange registers fn to be called from the watch goroutine with every applied
// snapshot, the first one included, one call at a time and in order. Register listeners
// before Start; fn must not block for long.
func (w *Watcher) OnChange(fn func(Snapshot)) {
	w.mu.Lock()
	defer w.mu.Unlock()
	w.listeners = append(w.listeners, fn)
}

func (w *Watcher) publish() {
	w.mu.RLock()
	ls, snap := w.listeners, w.snap
	w.mu.RUnlock()
	for _, fn := range ls {
		fn(snap)
	}
}

type metrics struct {
	applied  *prometheus.GaugeVec
	rejected *prometheus.CounterVec
}

func newMetrics(reg prometheus.Registerer) (*metrics, error) {
	m := &metrics{
		applied: prometheus.NewGaugeVec(prometheus.GaugeOpts{
			Name: "otelfleet_config_applied_version", Help: "Version of each config key in force at this instance.",
		}, []string{"key"}),
		rejected: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "otelfleet_config_rejected_total", Help: "Config values seen in the bucket that failed to decode or validate and were ignored.",
		}, []string{"key"}),
	}
	if reg != nil {
		for _, c := range []prometheus.Collector{m.applied, m.rejected} {
			if err := reg.Register(c); err != nil {
				return nil, fmt.Errorf("config watcher metrics: %w", err)
			}
		}
	}
	return m, nil
}

var errNotLoaded = errors.New("first config load not done yet")
