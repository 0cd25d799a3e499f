// Package fleetview is the one view of the fleet every consumer reads: who is in it
// (collectors, OTLP routers, other services) and how loaded each one is.
//
// A View follows the registry bucket (otlp_registry) with one watch and the load stream
// (OTLP_LOAD) with one follower, and publishes immutable Snapshots: per collector its
// registration, its latest load report and when this process received it; per router its
// region and its latest report (its demand). Topology's state, the sampler's loads, the
// router's backend set and its peer demand are built from Snapshots.
//
// One rule decides who counts. A collector counts only while the registry key
// collector.<region>.<id> holds that collector's valid registration
// (events.DecodeRegistrationAt, the contract's decoder: a value describing another
// instance is rejected). A router's report counts only while service.router.<id> holds
// that router's registration and names the report's region. A report of anybody else
// waits, uncounted and bounded (Config.MaxWaiting, for Config.WaitFor), for its
// registration, so a flood of made-up reports cannot change the fleet's statistics nor
// push registered collectors out of a bounded table (Config.MaxReporting).
//
// Readings are dated by the clock of whoever expires them: a report's ReceivedAt is this
// process's clock when it arrived (a report replayed from the stream at start is dated
// by when the server stored it, but never later than its arrival), and every consumer
// ages readings by ReceivedAt against its own clock.
//
// Score and Weights are the one scoring formula of load, latency and spare capacity,
// shared by topology's best-collector query and the router's intelligent strategy.
package fleetview
