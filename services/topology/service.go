package topologysvc

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"sync"
	"sync/atomic"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"github.com/prometheus/client_golang/prometheus"

	"github.com/otelfleet/otelfleet/pkg/events"
	"github.com/otelfleet/otelfleet/pkg/natsconn"
)

// ErrNotReady is returned by queries before the service has loaded the registry and
// built its first view.
var ErrNotReady = errors.New("topology not ready yet")

// Deps are what New needs besides the Config.
type Deps struct {
	// NC is the NATS connection; JS a JetStream context on it.
	NC *nats.Conn
	JS jetstream.JetStream
	// NS names the subjects, stream and buckets.
	NS events.Namespace
	// Instance is this replica's id (in replies and snapshots).
	Instance string
	// Log may be nil (discard).
	Log *slog.Logger
	// Registerer receives the otelfleet_topology_* metrics; nil means a private
	// registry.
	Registerer prometheus.Registerer
	// Now is the clock; nil means time.Now.
	Now func() time.Time
}

// Service is one topology replica: it ingests registrations and load reports into a
// State, rebuilds its view every RefreshInterval, answers queries from that view, and
// publishes snapshots while it leads (Lead). Create it with New, call Start once the
// buckets exist, and Stop when done.
type Service struct {
	cfg   Config
	d     Deps
	log   *slog.Logger
	m     *metrics
	state *State
	now   func() time.Time

	// routers are the registered OTLP routers' latest statuses.
	routers *routerTable

	view    atomic.Pointer[view]
	leading atomic.Bool
	ready   chan struct{}
	// (the fleet view's CaughtUp is closed once the load follower has delivered the last report of
	// every collector (or found none), so the first view does not show everyone stale.

	ctx    context.Context
	cancel context.CancelFunc
	wg     sync.WaitGroup
	start  sync.Once
	stop   sync.Once
}

// New returns a topology service; nothing runs until Start.
func New(cfg Config, d Deps) (*Service, error) {
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	if d.NC == nil || d.JS == nil {
		return nil, errors.New("topology: a NATS connection and JetStream context are required")
	}
	if d.NS == (events.Namespace{}) {
		d.NS = events.Default
	}
	if d.Log == nil {
		d.Log = slog.New(slog.NewTextHandler(io.Discard, nil))
	}
	if d.Registerer == nil {
		d.Registerer = prometheus.NewRegistry()
	}
	if d.Now == nil {
		d.Now = time.Now
	}
	m, err := newMetrics(d.Registerer)
	if err != nil {
		return nil, fmt.Errorf("topology: metrics: %w", err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	s := &Service{cfg: cfg, d: d, log: d.Log, m: m, now: d.Now,
		ready: make(chan struct{}), ctx: ctx, cancel: cancel}
	s.state = newState(cfg, s.newView(cfg))
	s.routers = newRouterTable(s.state.View())
	return s, nil
}

// Start begins ingesting from the registry bucket b.Registry, the sampling bucket
// b.Sampling, the OpAMP agents bucket b.Agents and the load stream, and rebuilding the view. It returns at once; Ready is
// closed once the registry's current content is loaded, the last load report of every
// collector has been read (or StartupLoadWait has passed), and the first view is built.
// Calling it again does nothing.
func (s *Service) Start(b *natsconn.Buckets) {
	s.start.Do(func() {
		s.wg.Add(5)
		go func() { defer s.wg.Done(); s.followRouters() }()
		go func() { defer s.wg.Done(); s.state.View().Run(s.ctx, s.d.NC, s.d.JS, b.Registry) }()
		go func() { defer s.wg.Done(); s.watchSampling(b.Sampling) }()
		go func() { defer s.wg.Done(); s.watchAgents(b.Agents) }()
		go func() { defer s.wg.Done(); s.buildLoop(s.state.View().Loaded()) }()
	})
}

// Ready is closed once the service answers queries.
func (s *Service) Ready() <-chan struct{} { return s.ready }

// Stop stops every goroutine Start began and waits for them. Safe to call more than
// once, and without Start.
func (s *Service) Stop() {
	s.stop.Do(func() {
		s.cancel()
		s.wg.Wait()
	})
}

// State returns the service's mutable state (for tests and tools).
func (s *Service) State() *State { return s.state }
