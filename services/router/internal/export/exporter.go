package export

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"slices"
	"strings"
	"sync"

	"github.com/prometheus/client_golang/prometheus"
)

// Exporter feeds every backend. Safe for concurrent use.
//
// What a backend does not deliver goes to the Rerouter exactly once per backend: after
// its retries are exhausted, at once when it refuses a batch with a non-retryable error
// (counted failed too: another backend may well take what this one's configuration
// refuses, e.g. a signal it has no pipeline for; Batch.HandedBack lets the router stop
// after every backend refused it), when it leaves (queued batches, and in-flight ones
// whose call then fails), and when Close gives up waiting. Items a backend rejects in
// partial_success are its verdict on those items: counted failed, neither retried nor
// handed back. A call that succeeds is never sent again.
type Exporter struct {
	log     *slog.Logger
	m       *metrics
	reroute Rerouter
	// dial makes a backend's client (a seam for benchmarks; nil: by cfg.Protocol).
	dial func(addr string, cfg Config) (client, error)
	// tracing, if set, traces export calls (WithTracer).
	tracing *tracing

	mu      sync.RWMutex
	cfg     Config
	targets map[string]*target
	leaving []*target // left, still finishing in-flight calls
	closed  bool

	finishing sync.WaitGroup
	closeOnce sync.Once
	closeErr  error
}

// Option tunes New.
type Option func(*Exporter)

// WithRegisterer registers the exporter's metrics with reg (default: a private registry).
func WithRegisterer(reg prometheus.Registerer) Option {
	return func(e *Exporter) { e.m = newMetrics(reg) }
}

// WithLogger sets the logger (default: slog.Default()).
func WithLogger(l *slog.Logger) Option { return func(e *Exporter) { e.log = l } }

// New returns an exporter; reroute receives what a backend gives back. It is called from
// the exporter's goroutines (never with a lock held, so it may call Submit) and must
// take the batch: Payload is the router's from then on.
func New(cfg Config, reroute Rerouter, opts ...Option) (*Exporter, error) {
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	if reroute == nil {
		return nil, fmt.Errorf("%w: rerouter: nil (what a backend gives back must go somewhere)", ErrConfig)
	}
	e := &Exporter{cfg: cfg.withDefaults(), reroute: reroute, targets: map[string]*target{}}
	for _, o := range opts {
		o(e)
	}
	if e.m == nil {
		e.m = newMetrics(nil)
	}
	if e.log == nil {
		e.log = slog.Default()
	}
	return e, nil
}

func (e *Exporter) newClient(addr string, cfg Config) (client, error) {
	if e.dial != nil {
		return e.dial(addr, cfg)
	}
	if cfg.Protocol == ProtocolHTTP {
		return newHTTPClient(addr, cfg), nil
	}
	return newGRPCClient(addr, cfg)
}

// SetConfig applies a new config to every backend (hot reload). Batching and retry
// settings apply to the next batch; a new protocol, compression or TLS config gets every
// backend a new client.
func (e *Exporter) SetConfig(cfg Config) error {
	if err := cfg.Validate(); err != nil {
		return err
	}
	cfg = cfg.withDefaults()
	e.mu.Lock()
	defer e.mu.Unlock()
	old := e.cfg
	e.cfg = cfg
	newClient := old.Protocol != cfg.Protocol || old.Compression != cfg.Compression || old.TLS != cfg.TLS
	var errs []error
	for _, t := range e.targets {
		var cl client
		if newClient {
			c, err := e.newClient(t.Addr, cfg)
			if err != nil {
				errs = append(errs, err)
				continue
			}
			cl = c
		}
		t.setConfig(cfg, cl)
	}
	return errors.Join(errs...)
}

// startTarget builds a target; the caller holds e.mu.
func (e *Exporter) startTarget(tg Target) (*target, error) {
	cl, err := e.newClient(tg.Addr, e.cfg)
	if err != nil {
		return nil, err
	}
	tm := e.m.forTarget(tg.Key)
	tm.tracing = e.tracing
	t := newTarget(tg, e.cfg, cl, tm, e.log, nil)
	t.handback = e.rerouteFrom(t)
	return t, nil
}

// rerouteFrom is t's handback: count and give to the Rerouter.
func (e *Exporter) rerouteFrom(t *target) func(Batch) {
	return func(b Batch) {
		b.HandedBack++
		t.count(&t.rerouted, t.tm.rerouted, int64(b.Items))
		e.reroute(t.Key, b)
	}
}

// moveTo hands what the old target of a key gives back to the new one (its address
// changed); what the new one cannot take goes to the Rerouter.
func (e *Exporter) moveTo(old, next *target) func(Batch) {
	reroute := e.rerouteFrom(old)
	return func(b Batch) {
		if err := next.submit(b); err != nil {
			reroute(b)
			return
		}
		Settle(b.Acks, true) // next holds its own references now
		putBuffer(b.Payload)
	}
}

// SetTargets makes targets the backends in force: new ones get a client, missing ones
// stop taking batches at once and hand their queued and in-flight batches to the
// rerouter (in-flight ones once their call ends unsuccessfully or is abandoned). A
// target whose address changed gets a new client; its queue moves to it.
func (e *Exporter) SetTargets(targets []Target) {
	type leave struct {
		t  *target
		hb func(Batch)
	}
	var leaves []leave
	e.mu.Lock()
	if e.closed {
		e.mu.Unlock()
		return
	}
	next := make(map[string]*target, len(targets))
	for _, tg := range targets {
		if _, dup := next[tg.Key]; dup {
			continue
		}
		cur := e.targets[tg.Key]
		if cur != nil && cur.Addr == tg.Addr {
			cur.Region = tg.Region
			next[tg.Key] = cur
			continue
		}
		t, err := e.startTarget(tg)
		if err != nil {
			e.log.Warn("backend has an unusable address; not a target", "backend", tg.Key, "addr", tg.Addr, "err", err)
			continue
		}
		next[tg.Key] = t
		if cur != nil {
			leaves = append(leaves, leave{cur, e.moveTo(cur, t)})
		}
	}
	for key, cur := range e.targets {
		if _, ok := next[key]; !ok {
			leaves = append(leaves, leave{t: cur})
		}
	}
	e.targets = next
	for _, l := range leaves {
		e.leaving = append(e.leaving, l.t)
		e.finishing.Add(1)
	}
	e.mu.Unlock()
	for _, l := range leaves {
		e.log.Info("backend left; handing back its queue", "backend", l.t.Key, "addr", l.t.Addr)
		l.t.leave(l.hb)
		go e.finish(l.t)
	}
}

// finish waits for a leaving target's in-flight calls, then forgets it.
func (e *Exporter) finish(t *target) {
	defer e.finishing.Done()
	t.finish()
	e.mu.Lock()
	e.leaving = slices.DeleteFunc(e.leaving, func(x *target) bool { return x == t })
	e.mu.Unlock()
}

// Submit queues b for backend key (copying b.Payload: the caller keeps it, and its own
// references on b.Acks: the queued part holds new ones). It returns ErrFull or
// ErrNoTarget without queuing.
func (e *Exporter) Submit(key string, b Batch) error {
	e.mu.RLock()
	t := e.targets[key]
	e.mu.RUnlock()
	if t == nil {
		return ErrNoTarget
	}
	return t.submit(b)
}

// FlushLingering sends every batch holding a part someone waits for (Batch.Acks) now,
// not AckLinger after the part arrived: the caller knows no more parts are coming soon
// (e.g. every waiting client is blocked on its answer).
func (e *Exporter) FlushLingering() {
	e.mu.RLock()
	defer e.mu.RUnlock()
	for _, t := range e.targets {
		t.flushLingering() // takes only t.mu (the order SetConfig takes them in)
	}
}

// InFlight returns backend key's requests in flight (for least_connections).
func (e *Exporter) InFlight(key string) int64 {
	e.mu.RLock()
	t := e.targets[key]
	e.mu.RUnlock()
	if t == nil {
		return 0
	}
	return t.inFlight.Load()
}

// Stats returns every backend's counters, in key order; backends that left and are still
// finishing in-flight calls are listed with Leaving set.
func (e *Exporter) Stats() []TargetStats {
	e.mu.RLock()
	ts := make([]*target, 0, len(e.targets)+len(e.leaving))
	for _, t := range e.targets {
		ts = append(ts, t)
	}
	ts = append(ts, e.leaving...)
	e.mu.RUnlock()
	out := make([]TargetStats, 0, len(ts))
	for _, t := range ts {
		out = append(out, t.stats())
	}
	slices.SortFunc(out, func(a, b TargetStats) int {
		if c := strings.Compare(a.Key, b.Key); c != 0 {
			return c
		}
		if a.Leaving != b.Leaving { // the live one first
			if a.Leaving {
				return 1
			}
			return -1
		}
		return strings.Compare(a.Addr, b.Addr)
	})
	return out
}

// Close flushes every queue within ctx, then stops the clients. Submit returns
// ErrNoTarget from the start of Close. When ctx ends first, calls in flight are
// cancelled and everything not delivered is handed to the Rerouter; Close then returns
// ctx's error. Calling Close again returns the first call's result.
func (e *Exporter) Close(ctx context.Context) error {
	e.closeOnce.Do(func() { e.closeErr = e.close(ctx) })
	return e.closeErr
}

func (e *Exporter) close(ctx context.Context) error {
	e.mu.Lock()
	e.closed = true
	all := make([]*target, 0, len(e.targets)+len(e.leaving))
	for _, t := range e.targets {
		all = append(all, t)
	}
	all = append(all, e.leaving...)
	e.mu.Unlock()
	for _, t := range all {
		t.startDrain()
	}
	done := make(chan struct{})
	go func() {
		for _, t := range all {
			t.wg.Wait()
		}
		close(done)
	}()
	var err error
	select {
	case <-done:
	case <-ctx.Done():
		err = fmt.Errorf("export: close: %w (undelivered batches handed back)", ctx.Err())
		for _, t := range all {
			t.abort()
		}
		<-done
	}
	e.mu.Lock()
	live := e.targets
	e.targets = map[string]*target{}
	e.mu.Unlock()
	for _, t := range live {
		t.finish()
	}
	e.finishing.Wait()
	return err
}
