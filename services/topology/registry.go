package topologysvc

import (
	"github.com/nats-io/nats.go/jetstream"

	"github.com/otelfleet/otelfleet/pkg/events"
	"github.com/otelfleet/otelfleet/pkg/registered"
)

// watchRegistry keeps the state's registrations in step with the registry bucket by the
// shared rule of package registered (the sampler follows the same one). The end of the
// first replay closes loaded.
func (s *Service) watchRegistry(kv jetstream.KeyValue, loaded chan struct{}) {
	registered.Watch(s.ctx, s.d.NC, kv, stateSink{s.state}, registered.Options{
		Log:    s.log,
		Loaded: func() { close(loaded) },
		Count:  func(op string) { s.m.registrations.WithLabelValues(op).Inc() },
	})
}

// stateSink feeds registered.Watch into a State.
type stateSink struct{ s *State }

func (t stateSink) Put(r *events.Registration) { t.s.PutRegistration(r) }

func (t stateSink) Delete(k registered.Key) bool { return t.s.DeleteRegistration(k.Region, k.ID) }

func (t stateSink) Retain(keep map[registered.Key]struct{}) int {
	ks := make(map[collectorKey]struct{}, len(keep))
	for k := range keep {
		ks[collectorKey{k.Region, k.ID}] = struct{}{}
	}
	return t.s.RetainRegistrations(ks)
}
