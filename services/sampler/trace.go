package samplersvc

import (
	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/codes"
)

// tracedDecide is decide (compute and store one decision) in a span
// "sampling.decision" when Deps.Tracer is set: attributes the term's token and whether
// the decision was stored.
func (s *Service) tracedDecide(lt *leaderTerm) {
	if s.d.Tracer == nil {
		s.decide(lt)
		return
	}
	_, span := s.d.Tracer.Start(lt.t.Ctx, "sampling.decision")
	defer span.End()
	written := lt.written
	s.decide(lt)
	stored := lt.written > written
	span.SetAttributes(attribute.Int64("token", int64(lt.t.Token)), attribute.Bool("stored", stored), attribute.Int("failures", lt.failures))
	if !stored {
		span.SetStatus(codes.Error, "decision not stored")
	}
}
