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
// The aggregation (Aggregate, Utilization, WeightedMean) and the best-collector scoring
// (Best, Score) are pure functions over values, tested by tables.
package topologysvc
