package routersvc

import (
	"context"
	"time"

	"github.com/otelfleet/otelfleet/pkg/events"
)

// publishStatus publishes this router's RouterStatus on core NATS
// (<root>.router.status.<instance>) every report interval until ctx ends, so that
// topology can show the routers and their backends without asking each one. A failed
// publish is logged once per run of failures; the next tick tries again.
func (s *Service) publishStatus(ctx context.Context) {
	subject, err := s.d.NS.RouterStatusSubject(s.d.Instance)
	if err != nil {
		s.log.Error("router status not published", "err", err)
		return
	}
	source := events.Source(events.ServiceRouter, s.d.Instance)
	t := time.NewTicker(s.cfg.ReportInterval)
	defer t.Stop()
	failing := false
	for {
		select {
		case <-ctx.Done():
			return
		case now := <-t.C:
			st := s.Status()
			st.At = now
			msg, err := events.NewMsg(subject, source, st)
			if err == nil {
				err = s.d.NC.PublishMsg(msg)
			}
			switch {
			case err != nil && !failing:
				s.log.Warn("router status not published", "subject", subject, "err", err)
				failing = true
			case err == nil && failing:
				s.log.Info("router status published again", "subject", subject)
				failing = false
			}
		}
	}
}
