// Package samplersvc is otelfleet's sampling coordinator: a leader-elected service that
// turns the fleet's load reports and the global configuration's sampling strategies
// into one decision (a sampling rate per service), stores it in the KV bucket
// otlp_sampling under key "decision", and serves it to OpenTelemetry SDKs through the
// Jaeger remote-sampling HTTP API (binary otelfleet-sampler, :5778).
//
// # Replicas and the leader
//
// Run any number of replicas. Every replica
//
//   - follows the fleet (pkg/fleetview: the registry and the OTLP_LOAD stream, by the
//     rule topology and the router use too), whose snapshots hold each registered
//     collector's latest report, which counts for Config.ReportTTL after this replica
//     received it: fleet spans/s per
//     service is the sum over live registered collectors (reports of unregistered ones
//     wait, uncounted and bounded by MaxWaitingCollectors, for their registration);
//   - watches the stored decision and serves it: GET /sampling?service=NAME on
//     Config.Addr (see API) and the micro endpoint otlp.sampler.decision (micro service
//     otlp-sampler);
//   - campaigns for the leadership role "sampler" (pkg/election, KV otlp_leases).
//
// Only the leader computes. Every Config.Interval (and at once when the config
// changes) it computes a decision inside its term and stores it by compare-and-set
// (Store.Write): it refuses to replace a decision whose fencing token is newer than its
// own and was issued by the lease store (while the role's lease holds the leader's own
// token, a larger stored token was never issued and is replaced), and the revision
// check closes the race between that read and the write, so the stored tokens of live
// terms never decrease and a deposed leader can never overwrite its successor. Each
// version is above every trusted version stored before (MaxVersion bounds the trusted).
// A new leader seeds its smoothing and degradation state from the stored decision, so
// a failover neither restarts the EWMA nor re-announces a degradation. After each
// stored decision the leader publishes otlp.events.sampling.decision (a summary), and
// otlp.events.sampling.degraded / .recovered on a transition.
//
// Until any decision is stored, replicas serve the config's static rates (fixed,
// priority rules, sampling_rate), marked "provisional" in the strategy name.
//
// # How the strategies combine
//
// The math is package internal/strategy (pure, clock-free, table-tested). In order, for
// a service S with fleet-wide traffic q_S:
//
//  1. base rate: S's explicit priority rule (first glob match) > fixed's rate > the
//     catch-all ("normal") rule > global sampling_rate;
//  2. adaptive multiplies the base rates of all but high-priority services by one
//     fleet-wide factor so that the kept spans/s meet target_qps (or the cost budget if
//     lower), each clamped to [min_rate, max_rate] and never below a per-service floor
//     of Config.ServiceFloorQPS kept spans/s; high-priority services keep their rule's
//     rate and count against the target, and an explicit rule's rate is never exceeded
//     (adaptive lowers "debug at 0.01" under load but never raises it);
//  3. cost_based caps the total at budget_per_hour / cost_per_span / 3600 kept spans/s,
//     scaling non-high-priority rates first;
//  4. degradation overrides: while the fleet's utilisation (Σ qps / Σ capacity of live
//     collectors) is at or above threshold, and until it falls below
//     recovery_threshold, rates are lowered to target_rate (high priority kept when
//     keep_high_priority);
//  5. a region's regional_sampling_rate multiplies the rate of that region's traffic:
//     the decision carries the multipliers (Decision.Regions), routers apply them by
//     the collector's region, and the Jaeger API applies them when asked with
//     ?region=REGION (an SDK does not know its region otherwise).
//
// A service not seen in the load reports gets its rule's rate (or the default) after
// the same steps without a floor. Observed traffic is smoothed per service by an EWMA
// (alpha Config.Alpha) that jumps to the latest value when traffic changes by
// Config.JumpRatio or more, so a 10× step lands on target in the next interval without
// oscillation. The decision stores the parameters and inputs it used, so Explain (and
// `otelfleet sampling explain SERVICE`) can show how any rate was derived.
//
// # Applying a decision
//
// Routers apply Decision.RateFor(service) × Decision.RegionRate(region) with
// tracesample.NewSampler(rate).Keep(traceID): consistent threshold sampling on the
// trace id, so every router agrees and a lower rate keeps a subset of what a higher
// one kept. Note that an OpenTelemetry SDK's jaeger_remote sampler samples with the
// SDK's TraceIDRatioBased (a different function of the trace id), so a router must not
// sample again traces an SDK already sampled with the same decision: it would keep
// about rate² of them instead of rate.
package samplersvc
