// Package registered is the one rule, shared by topology and the sampler, for which
// collectors count: a collector counts only while its registration is in the registry
// bucket (otlp_registry) under key collector.<region>.<id> and describes that very
// collector. Load reports from any other collector — one that never registered, whose
// registration expired or was deleted, or whose stored value is malformed — are not
// counted, so a flood of made-up reports cannot change the fleet's statistics or the
// sampling rate, nor push registered collectors out of a bounded table.
//
// Watch keeps a Sink (topology's state, or a Set) in step with the bucket: it replays
// the registrations, then follows puts, deletes and expiry markers; after a reconnect it
// replays again and forgets the collectors whose keys vanished meanwhile (Sink.Retain).
//
// The same rule holds for OTLP routers (WatchRouters, RouterSet): a router counts only
// while service.router.<id> holds that router's registration, and only in the region
// that registration names. Routers are never collectors: Watch ignores their keys, so
// topology does not list them as collectors.
package registered
