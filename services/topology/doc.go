// Package topologysvc is otelfleet's topology service: a live, global view of the
// fleet (regions → collectors → capacity, load, health) built from two sources,
//
//   - the registry bucket otlp_registry, watched for collector.<region>.<id> keys: a put
//     adds or updates a collector (id, region, address, capacity, health), a delete or
//     an expiry marker forgets it;
//   - the load stream OTLP_LOAD, read by an ephemeral ordered consumer that starts with
//     the last report of every collector and then delivers new reports only. Each report
//     is decoded and validated; a malformed one is dropped and counted in
//     otelfleet_topology_load_reports_rejected_total{reason}, never shown.
//
// A load report from a collector that is not (yet) registered is kept, unshown, for a
// grace period (Config.UnregisteredGrace) so that a collector whose first report beats
// its registration shows its load at once; if no registration arrives in time the report
// is dropped. Such reports are never shown and never chosen.
//
// Every replica keeps the whole view in memory and rebuilds an immutable snapshot of it
// every Config.RefreshInterval; queries read the latest snapshot without locks. It
// answers the NATS micro service otlp-topology (endpoints otlp.topology.get and
// otlp.topology.best) and, on the admin port, GET /v1/topology (JSON) and a live page
// at /. The replica elected leader for the role "topology" publishes a compact
// events.TopologySnapshot (region and global statistics) on
// otlp.events.topology.snapshot every Config.Interval.
//
// A collector's health is the worse of its registration's status and its last report's
// own verdict (healthy=false makes it unhealthy); its capacity is the registered
// capacity_qps, or the report's capacity when the registration gives none. It is stale
// when its last report is older than Config.StaleAfter (or three of its own report
// intervals, if longer) or when it never reported: stale collectors are shown and
// counted, but carry no traffic in the statistics and are never chosen.
//
// A replica reports ready (readiness check "topology") once the registry is loaded and
// the consumer has delivered the last report of every collector, so a new replica never
// starts with everyone stale. After a reconnect the consumer and the registry watch are
// re-created; registrations that vanished meanwhile are reconciled against the bucket.
//
// Best-collector candidates are healthy, fresh collectors with a known capacity and
// utilisation below 1. A collector registered without an address (a simulated one) can
// be chosen; the reply then carries an empty address, and a caller that must connect
// should skip it.
//
// The aggregation (Aggregate, Utilization, WeightedMean) and the best-collector scoring
// (Best, Score) are pure functions over values, tested by tables.
package topologysvc
