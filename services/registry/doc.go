// Package registrysvc is the otelfleet registry service: it watches the otlp_registry
// KV bucket, serves the live registrations (micro service otlp-registry, endpoints
// otlp.registry.list and otlp.registry.get), exports otelfleet_registry_* metrics and
// publishes a lifecycle event for every transition of a registration:
//
//   - otlp.events.registry.registered   a key appears, or its registered_at changes
//     (the instance registered anew);
//   - otlp.events.registry.updated      its description or health changed (compared
//     with events.Registration.Changed: heartbeat timestamps and CPU/memory readings
//     alone do not count, so plain heartbeats publish nothing);
//   - otlp.events.registry.expired      the bucket TTL removed it (limit marker);
//   - otlp.events.registry.deregistered the instance deleted it (Deregister).
//
// # Once per transition with several replicas
//
// Every replica watches the bucket and publishes every transition it sees, but each
// event goes to the OTLP_EVENTS stream through JetStream with a Nats-Msg-Id (also used
// as the CloudEvents ce-id) derived from the transition itself, not from the replica
// (events.RegistryEvent.EventID): the key plus the registration's registered_at
// (registered), plus its generation counter (updated), or the revision of the delete or
// expiry marker (deregistered, expired). All replicas read the same bucket, so they
// compute the same id, and the stream stores the first copy and acknowledges the others
// as duplicates (counted as otelfleet_registry_events_total{result="duplicate"}).
// Replicas publish within milliseconds of each other; the stream's duplicates window is
// 2 minutes by default and the service warns at start when it is shorter than 10s.
//
// Unlike a leader-only publisher, there is no failover gap: as long as one replica runs,
// every transition is published. Transitions that happen while no replica runs are
// caught up at start for registrations (registered_at younger than --catch-up, at most
// half the duplicates window, deduplicated against what was published before); expiries
// and updates during such a gap are not replayed. After a NATS outage a replica
// re-creates its watch and reconciles the replay with what it knew, publishing what
// happened meanwhile (a registration that vanished without a marker counts as expired).
//
// # Running it
//
// Module(cfg) is the fx module used by the standalone binary otelfleet-registry
// (services/registry/cmd/otelfleet-registry) and by `otelfleet dev`; New and Run use it
// without fx. Readiness check "registry" passes after the first full load of the bucket;
// until then the endpoints answer 503.
package registrysvc
