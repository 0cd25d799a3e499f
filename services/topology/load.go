package topologysvc

import (
	"time"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/otelfleet/otelfleet/pkg/loadreport"
)

// consumeLoad follows the load stream (see loadreport.Follower.Follow).
func (s *Service) consumeLoad() {
	loadreport.Follower{NC: s.d.NC, JS: s.d.JS, NS: s.d.NS, Log: s.log}.Follow(s.ctx, s.ingestLoad, s.markCaughtUp)
}

func (s *Service) markCaughtUp() { s.caughtUpOnce.Do(func() { close(s.caughtUp) }) }

// StartupLoadWait bounds how long a starting replica waits for the last load report of
// every collector before it reports ready anyway.
const StartupLoadWait = 5 * time.Second

// ingestLoad decodes one load report message and records it; a malformed one is counted
// and dropped.
func (s *Service) ingestLoad(msg jetstream.Msg) {
	md, mdErr := msg.Metadata()
	r, reason, err := DecodeLoad(s.d.NS, msg.Subject(), msg.Headers(), msg.Data())
	if err != nil {
		s.m.rejected.WithLabelValues(reason).Inc()
		s.log.Debug("load report rejected", "subject", msg.Subject(), "reason", reason, "err", err)
		return
	}
	now := s.now()
	at := now
	if mdErr == nil && !md.Timestamp.IsZero() {
		at = md.Timestamp
	}
	switch s.state.PutLoad(&r, at, now) {
	case LoadAccepted:
		s.m.reports.WithLabelValues("accepted").Inc()
	case LoadUnregistered:
		s.m.reports.WithLabelValues("unregistered").Inc()
	case LoadOutdated:
		s.m.reports.WithLabelValues("outdated").Inc()
	case LoadOverflow:
		s.m.rejected.WithLabelValues(RejectOverflow).Inc()
	}
}
