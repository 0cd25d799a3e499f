package topologysvc

import (
	"time"
)

// buildLoop rebuilds the view every RefreshInterval once the registry is loaded.
func (s *Service) buildLoop(registryLoaded <-chan struct{}) {
	select {
	case <-registryLoaded:
	case <-s.ctx.Done():
		return
	}
	select {
	case <-s.state.View().CaughtUp():
	case <-time.After(StartupLoadWait):
		s.log.Warn("the last load reports were not all read in time; starting with what has arrived", "waited", StartupLoadWait)
	case <-s.ctx.Done():
		return
	}
	s.rebuild()
	close(s.ready)
	t := time.NewTicker(s.cfg.RefreshInterval)
	defer t.Stop()
	for {
		select {
		case <-s.ctx.Done():
			return
		case <-t.C:
			s.rebuild()
		}
	}
}

// rebuild builds a new view from the state and publishes it to queries.
func (s *Service) rebuild() *view {
	start := time.Now()
	v, dropped := s.state.Build(s.now())
	s.m.buildSeconds.Observe(time.Since(start).Seconds())
	if dropped > 0 {
		s.m.rejected.WithLabelValues(RejectUnregistered).Add(float64(dropped))
	}
	_, unregistered := s.state.Counts()
	s.m.unregistered.Set(float64(unregistered))
	s.m.observe(v)
	s.view.Store(v)
	return v
}

// current returns the latest view, or ErrNotReady.
func (s *Service) current() (*view, error) {
	v := s.view.Load()
	if v == nil {
		return nil, ErrNotReady
	}
	return v, nil
}
