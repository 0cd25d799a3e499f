package routersvc

import (
	"context"
	"sync"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/otelfleet/otelfleet/pkg/events"
	"github.com/otelfleet/otelfleet/pkg/kvwatch"
	"github.com/otelfleet/otelfleet/pkg/loadreport"
	"github.com/otelfleet/otelfleet/services/router/internal/ratelimit"
)

// peers follows the other live routers' demand, so that each router enforces its share
// of the fleet-wide rate limits: the routers are the registry's service.router.<id>
// entries, and their demand is the per-service rates of their load reports (received
// items, before sampling and limiting).
type peers struct {
	s *Service

	mu      sync.Mutex
	routers map[string]bool // instance ids of the other registered routers
	demand  map[string]ratelimit.PeerDemand
}

// peerMaxAge is how long a router's last report counts: a few report intervals.
func (s *Service) peerMaxAge() time.Duration { return max(5*s.cfg.ReportInterval, 3*time.Second) }

// runPeers watches the registry for routers and their load reports until ctx ends, and
// hands the live ones' demand to the limiter every report interval.
func (s *Service) runPeers(ctx context.Context, registry jetstream.KeyValue) {
	p := &peers{s: s, routers: map[string]bool{}, demand: map[string]ratelimit.PeerDemand{}}
	sub, err := s.d.NC.Subscribe(s.d.NS.LoadSubjects(), p.onReport)
	if err != nil {
		s.log.Error("peer routers' load reports not followed; this router counts itself alone for rate limits", "err", err)
	} else {
		defer func() { _ = sub.Unsubscribe() }()
	}
	s.goRun(func() {
		kvwatch.Run(ctx, s.d.NC, registry, events.RouterKeys, func(e jetstream.KeyValueEntry) {
			if e == nil {
				return
			}
			id, ok := events.RouterFromKey(e.Key())
			if !ok {
				return
			}
			p.mu.Lock()
			defer p.mu.Unlock()
			if e.Operation() == jetstream.KeyValuePut && id != s.d.Instance {
				p.routers[id] = true
				return
			}
			delete(p.routers, id)
			delete(p.demand, id)
		}, func(err error) { s.log.Warn("router registry watch failed; retrying", "err", err) })
	})
	t := time.NewTicker(s.cfg.ReportInterval)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case now := <-t.C:
			if f := s.limiter.Load(); f != nil {
				f.SetPeers(p.snapshot(), now, s.peerMaxAge())
			}
		}
	}
}

// onReport keeps a peer router's latest demand.
func (p *peers) onReport(m *nats.Msg) {
	r, err := loadreport.Decode(m)
	if err != nil {
		return // not ours to judge: the registry and topology count bad reports
	}
	p.mu.Lock()
	defer p.mu.Unlock()
	if !p.routers[r.Collector] {
		return
	}
	// At is when this router heard it, on its own clock: a peer whose clock runs ahead (or
	// a hostile report dated in the future) must not stay "live" after it stops.
	d := ratelimit.PeerDemand{Total: r.QPS, PerService: make(map[string]float64, len(r.Services)), At: time.Now()}
	for _, sr := range r.Services {
		d.PerService[sr.Name] = sr.SpansPerSec
	}
	p.demand[r.Collector] = d
}

func (p *peers) snapshot() map[string]ratelimit.PeerDemand {
	p.mu.Lock()
	defer p.mu.Unlock()
	out := make(map[string]ratelimit.PeerDemand, len(p.demand))
	for k, v := range p.demand {
		out[k] = v
	}
	return out
}
