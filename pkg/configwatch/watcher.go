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
	"go.opentelemetry.io/otel/trace"

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
	// Tracer, if set, traces the application of every live change (see handle).
	Tracer trace.Tracer
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
	// looked holds the keys whose last good value was read in the current replay: a
	// refused value triggers at most one such read per key per replay.
	looked map[string]bool

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
	kvwatch.Watch(ctx, w.nc, w.kv, "", kvwatch.Handler{
		Start: func() {
			w.mu.Lock()
			w.looked = map[string]bool{}
			w.mu.Unlock()
		},
		Entry: func(e jetstream.KeyValueEntry) {
			if e == nil { // end of a (re)play of the current values
				if !w.Ready() {
					w.publish()
					w.readyOnce.Do(func() { close(w.ready) })
				}
				return
			}
			w.handle(ctx, e)
		},
		Err: func(err error) { w.opts.Log.Warn("config watch failed, retrying", "err", err) },
	})
}

// lastGood reads the last good value of key (configwatch.LastGood) unless it was
// already read in this replay: refused values cost at most one history read per key
// per replay, however many arrive.
func lastGood[T any](ctx context.Context, w *Watcher, key string, decode func([]byte) (T, error), version func(T) uint64) (Good[T], bool) {
	w.mu.Lock()
	done := w.looked[key]
	if w.looked == nil {
		w.looked = map[string]bool{}
	}
	w.looked[key] = true
	w.mu.Unlock()
	if done {
		return Good[T]{}, false
	}
	ctx, cancel := context.WithTimeout(ctx, 5*time.Second)
	defer cancel()
	w.m.historyReads.WithLabelValues(key).Inc()
	g, err := LastGood(ctx, w.kv, key, decode, version)
	if err != nil {
		w.opts.Log.Warn("no good value of the key to fall back to", "key", key, "err", err)
		return Good[T]{}, false
	}
	return g, true
}

// apply folds one entry into the snapshot and reports whether the snapshot changed.
//
// A value is applied only if it decodes, validates, carries a version in
// 1..fleetconfig.MaxVersion and is within fleetconfig.MaxDocumentBytes, and only if its
// version is above the one in force for its key (the same version with the same
// content is no change; with different content it is refused). So no value written
// straight into the bucket can move a service to a lower version or swap the content
// of the version in force. A value refused while nothing from the bucket is in force for
// its key (a replica starting over a bad newest value) is replaced by the newest good
// value of the key's history.
func (w *Watcher) apply(ctx context.Context, e jetstream.KeyValueEntry) bool {
	key := e.Key()
	deleted := e.Operation() == jetstream.KeyValueDelete || e.Operation() == jetstream.KeyValuePurge
	switch {
	case key == events.GlobalConfigKey:
		if deleted {
			w.reject(key, e.Revision(), errors.New("the global config was deleted; keeping the last good one"))
			return false
		}
		g, err := fleetconfig.DecodeStoredGlobal(key, e.Value())
		if err != nil {
			w.reject(key, e.Revision(), err)
			if w.Current().Global.Version != 0 {
				return false
			}
			good, ok := lastGood(ctx, w, key, func(b []byte) (fleetconfig.Global, error) { return fleetconfig.DecodeStoredGlobal(key, b) }, globalVersion)
			if !ok {
				return false
			}
			g = good.Doc
			w.opts.Log.Warn("the newest global config is refused; applying the last good one", "from", good.Key, "revision", good.Revision, "version", g.Version)
		}
		w.mu.Lock()
		defer w.mu.Unlock()
		in := w.snap.Global
		if in.Version != 0 {
			if err := checkNewer(g.Version, in.Version, len(fleetconfig.Diff(in, g)) > 0); err != nil {
				if !errors.Is(err, errSame) {
					w.rejectLocked(key, e.Revision(), err)
				}
				return false
			}
		}
		w.snap = Snapshot{Global: g, Regions: w.snap.Regions, AppliedAt: time.Now()}
		w.m.applied.WithLabelValues(key).Set(float64(g.Version))
		w.opts.Log.Info("config applied", "key", key, "version", g.Version, "previous", in.Version, "revision", e.Revision())
		return true
	default:
		region, ok := events.RegionFromConfigKey(key)
		if !ok {
			w.opts.Log.Debug("ignoring unknown key in the config bucket", "key", key)
			return false
		}
		if deleted {
			w.mu.Lock()
			defer w.mu.Unlock()
			if _, had := w.snap.Regions[region]; !had {
				return false
			}
			regions := maps.Clone(w.snap.Regions)
			delete(regions, region)
			w.snap = Snapshot{Global: w.snap.Global, Regions: regions, AppliedAt: time.Now()}
			w.opts.Log.Info("regional config deleted", "key", key, "revision", e.Revision())
			return true
		}
		decode := func(b []byte) (fleetconfig.Region, error) { return fleetconfig.DecodeStoredRegion(key, region, b) }
		r, err := decode(e.Value())
		if err != nil {
			w.reject(key, e.Revision(), err)
			if _, had := w.Current().Regions[region]; had {
				return false
			}
			good, ok := lastGood(ctx, w, key, decode, regionVersion)
			if !ok {
				return false
			}
			r = good.Doc
			w.opts.Log.Warn("the newest regional config is refused; applying the last good one", "key", key, "from", good.Key, "revision", good.Revision, "version", r.Version)
		}
		w.mu.Lock()
		defer w.mu.Unlock()
		if in, had := w.snap.Regions[region]; had {
			if err := checkNewer(r.Version, in.Version, len(fleetconfig.DiffRegion(in, r)) > 0); err != nil {
				if !errors.Is(err, errSame) {
					w.rejectLocked(key, e.Revision(), err)
				}
				return false
			}
		}
		regions := maps.Clone(w.snap.Regions)
		regions[region] = r
		w.m.applied.WithLabelValues(key).Set(float64(r.Version))
		w.m.rejected.WithLabelValues(key) // exported at 0 from the key's first good value on
		w.snap = Snapshot{Global: w.snap.Global, Regions: regions, AppliedAt: time.Now()}
		w.opts.Log.Info("regional config applied", "key", key, "version", r.Version, "revision", e.Revision())
		return true
	}
}

// errSame is checkNewer's answer for the version in force, unchanged.
var errSame = errors.New("the version in force")

// checkNewer accepts a version above the one in force; the version in force itself is
// errSame when its content is unchanged and an error otherwise, as is a lower version.
func checkNewer(version, inForce uint64, differs bool) error {
	switch {
	case version > inForce:
		return nil
	case version == inForce && !differs:
		return errSame
	case version == inForce:
		return fmt.Errorf("version %d is the version in force with different content; a new version must be written for a change", version)
	default:
		return fmt.Errorf("version %d is below the version in force, %d; versions only go up", version, inForce)
	}
}

func globalVersion(g fleetconfig.Global) uint64 { return g.Version }
func regionVersion(r fleetconfig.Region) uint64 { return r.Version }

func (w *Watcher) reject(key string, rev uint64, err error) {
	w.mu.Lock()
	defer w.mu.Unlock()
	w.rejectLocked(key, rev, err)
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
	applied      *prometheus.GaugeVec
	rejected     *prometheus.CounterVec
	historyReads *prometheus.CounterVec
}

func newMetrics(reg prometheus.Registerer) (*metrics, error) {
	m := &metrics{
		applied: prometheus.NewGaugeVec(prometheus.GaugeOpts{
			Name: "otelfleet_config_applied_version", Help: "Version of each config key in force at this instance.",
		}, []string{"key"}),
		rejected: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "otelfleet_config_rejected_total", Help: "Config values seen in the bucket that failed to decode or validate and were ignored.",
		}, []string{"key"}),
		historyReads: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "otelfleet_config_history_reads_total", Help: "Reads of a config key's kept history (and its last good copy) after a refused value while nothing was in force for the key: at most one per key per replay of the watch.",
		}, []string{"key"}),
	}
	// The global key always exists: its rejections are exported from the start, so that
	// increase() sees the first one.
	m.rejected.WithLabelValues(events.GlobalConfigKey)
	if reg != nil {
		for _, c := range []prometheus.Collector{m.applied, m.rejected, m.historyReads} {
			if err := reg.Register(c); err != nil {
				return nil, fmt.Errorf("config watcher metrics: %w", err)
			}
		}
	}
	return m, nil
}

var errNotLoaded = errors.New("first config load not done yet")
