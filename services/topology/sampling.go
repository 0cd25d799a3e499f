package topologysvc

import (
	"github.com/nats-io/nats.go/jetstream"

	"github.com/otelfleet/otelfleet/pkg/events"
	"github.com/otelfleet/otelfleet/pkg/kvwatch"
)

// watchSampling follows the sampler's decision (read with events.DecodeDecision) for the
// effective sampling rate: its global rate. A value that does not decode leaves the rate
// shown as it was; a deleted decision clears it.
func (s *Service) watchSampling(kv jetstream.KeyValue) {
	if kv == nil {
		return
	}
	kvwatch.Run(s.ctx, s.d.NC, kv, events.DecisionKey, func(e jetstream.KeyValueEntry) {
		if e == nil {
			return
		}
		if e.Operation() != jetstream.KeyValuePut {
			s.state.SetSamplingRate(nil)
			return
		}
		d, err := events.DecodeDecision(e.Value())
		if err != nil {
			s.log.Debug("ignoring a sampling decision that does not decode; the rate shown is unchanged", "revision", e.Revision(), "err", err)
			return
		}
		s.state.SetSamplingRate(&d.GlobalRate)
	}, func(err error) { s.log.Debug("sampling decision watch failed, retrying", "err", err) })
}
