package topologysvc

import (
	"time"

	"github.com/otelfleet/otelfleet/pkg/events"
	"github.com/otelfleet/otelfleet/pkg/fleetview"
	"github.com/otelfleet/otelfleet/pkg/loadreport"
)

// StartupLoadWait bounds how long a starting replica waits for the last load report of
// every collector before it reports ready anyway.
const StartupLoadWait = 5 * time.Second

// newView returns the fleet view topology's state is built from (registry and load
// stream, pkg/fleetview), counting what it reads in s's metrics.
func (s *Service) newView(cfg Config) *fleetview.View {
	vc := viewConfig(cfg)
	vc.NS, vc.Log, vc.Now = s.d.NS, s.log, s.d.Now
	vc.Registry = func(op string) { s.m.registrations.WithLabelValues(op).Inc() }
	vc.Reports = s.countLoad
	return fleetview.New(vc)
}

// countLoad counts one load report the fleet view read: a rejected one by reason.
func (s *Service) countLoad(o fleetview.Outcome, subject string, data []byte, err error) {
	if err != nil {
		reason := rejectReasonOf(s.d.NS, subject, data, err)
		s.m.rejected.WithLabelValues(reason).Inc()
		s.log.Debug("load report rejected", "subject", subject, "reason", reason, "err", err)
		return
	}
	switch loadResult(o) {
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

// rejectReasonOf classifies why the report data received on subject failed to decode
// with err: one of the Reject* constants.
func rejectReasonOf(ns events.Namespace, subject string, data []byte, err error) string {
	root, region, collector, perr := loadreport.ParseSubject(subject)
	if perr != nil || root != ns.Root() {
		return RejectSubject
	}
	return rejectReason(data, region, collector, err)
}
