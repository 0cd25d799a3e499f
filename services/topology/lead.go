package topologysvc

import (
	"context"
	"time"

	"github.com/otelfleet/otelfleet/pkg/election"
	"github.com/otelfleet/otelfleet/pkg/events"
)

// Lead publishes a snapshot every Interval until t.Ctx is done: the leader work handed
// to election.Run. The first snapshot goes out at once.
func (s *Service) Lead(t election.Term) {
	s.leading.Store(true)
	defer s.leading.Store(false)
	s.log.Info("leading: publishing topology snapshots", "token", t.Token, "interval", s.cfg.Interval)
	tick := time.NewTicker(s.cfg.Interval)
	defer tick.Stop()
	var seq uint64
	for {
		select {
		case <-t.Ctx.Done():
			return
		case <-s.ctx.Done():
			return
		case <-s.ready:
		}
		seq++
		if err := s.publishSnapshot(t.Ctx, t.Token, seq); err != nil {
			s.m.snapshots.WithLabelValues("error").Inc()
			if t.Ctx.Err() == nil {
				s.log.Warn("publishing the topology snapshot failed", "err", err)
			}
		} else {
			s.m.snapshots.WithLabelValues("ok").Inc()
		}
		select {
		case <-t.Ctx.Done():
			return
		case <-s.ctx.Done():
			return
		case <-tick.C:
		}
	}
}

// Snapshot returns the compact snapshot of the current view.
func (s *Service) Snapshot(token, seq uint64) (events.TopologySnapshot, error) {
	v, err := s.current()
	if err != nil {
		return events.TopologySnapshot{}, err
	}
	snap := events.TopologySnapshot{V: events.TopologySnapshotVersion, Leader: s.d.Instance, Token: token, Seq: seq,
		Collectors: v.global.Collectors, Global: v.global, Regions: make([]events.RegionStats, len(v.regions)), At: v.built.UTC()}
	for i := range v.regions {
		snap.Regions[i] = v.regions[i].Stats
	}
	return snap, nil
}

func (s *Service) publishSnapshot(ctx context.Context, token, seq uint64) error {
	snap, err := s.Snapshot(token, seq)
	if err != nil {
		return err
	}
	msg, err := events.NewMsg(s.d.NS.EventSubject(events.EventTopologySnapshot), events.Source(events.ServiceTopology, s.d.Instance), snap)
	if err != nil {
		return err
	}
	pctx, cancel := context.WithTimeout(ctx, 5*time.Second)
	defer cancel()
	_, err = s.d.JS.PublishMsg(pctx, msg)
	return err
}
