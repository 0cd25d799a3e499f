package routersvc

import (
	"context"
	"time"

	"github.com/otelfleet/otelfleet/pkg/fleetview"
	"github.com/otelfleet/otelfleet/services/router/internal/ratelimit"
)

// peerMaxAge is how long a router's last report counts: a few report intervals.
func (s *Service) peerMaxAge() time.Duration { return max(5*s.cfg.ReportInterval, 3*time.Second) }

// runPeers hands the other live routers' demand to the limiter every report interval
// until ctx ends, so that each router enforces its share of the fleet-wide rate limits.
// The routers and their demand come from the fleet view: a router counts while
// service.router.<id> is registered in its report's region, and its demand is its latest
// report's per-service rates (received items, before sampling and limiting).
func (s *Service) runPeers(ctx context.Context, view *fleetview.View) {
	t := time.NewTicker(s.cfg.ReportInterval)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case now := <-t.C:
			if f := s.limiter.Load(); f != nil {
				f.SetPeers(peerDemand(view.Snapshot(), s.d.Instance), now, s.peerMaxAge())
			}
		}
	}
}

// peerDemand returns the demand of snap's routers other than self, each dated when this
// router received its report, on its own clock: a peer whose clock runs ahead (or a
// hostile report dated in the future) must not stay "live" after it stops.
func peerDemand(snap *fleetview.Snapshot, self string) map[string]ratelimit.PeerDemand {
	out := make(map[string]ratelimit.PeerDemand, len(snap.Routers))
	for _, r := range snap.Routers {
		if r.ID == self || r.Report == nil {
			continue
		}
		d := ratelimit.PeerDemand{Total: r.Report.QPS, PerService: make(map[string]float64, len(r.Report.Services)), At: r.ReceivedAt}
		for _, sr := range r.Report.Services {
			d.PerService[sr.Name] = sr.SpansPerSec
		}
		out[r.ID] = d
	}
	return out
}
