// Package strategy is the sampler's math, free of I/O and of the wall clock: it turns
// the configuration's sampling strategies and the fleet's observed span rates into
// per-service sampling rates, keeps the smoothing and degradation state from one
// interval to the next, and explains how any rate was derived.
//
// # How the strategies combine
//
// A config lists its strategies side by side in one YAML list; here each has
// one job, applied in this order to every service S (fleet-wide spans/s q_S, summed over
// live collectors and smoothed, see below):
//
//  1. Base rate. priority_based rules are matched by glob in order: the first rule
//     whose services match S gives S its rate and priority. Otherwise fixed's rate is
//     the base; without fixed, the catch-all rule's (the rule listing no services, the
//     "normal" class); without either, global sampling_rate. S's priority is that of
//     the rule that applies (explicit or catch-all); "" when none does.
//  2. adaptive (min_rate, max_rate, target_qps) multiplies every base rate by one
//     fleet-wide factor m, chosen so that the predicted kept spans per second,
//     Σ rate_S·q_S, equal target_qps (or the cost budget when that is lower). Each
//     scaled rate is clamped to [max(min_rate, floor_S), max(max_rate, floor_S)], where
//     floor_S = min(1, service_floor_qps/q_S) guarantees every seen service keeps at
//     least service_floor_qps spans/s (like Jaeger's lower bound of traces per second),
//     so a small service is never starved by a big one. High-priority services (rule
//     priority "high") and explicit zero rates are not scaled: they keep their rule's
//     rate and count against the target. A service matched by an explicit rule is never
//     raised above that rule's rate ("debug at 0.01" stays at most 0.01 when traffic is
//     low) but is lowered with everyone else under load, so with m shared, relative
//     priorities survive. The default class (catch-all rule, fixed or sampling_rate)
//     ranges over the whole [min_rate, max_rate]. The plain
//     clamp(target/observed, min, max) is the special case of one class of services and
//     no floor.
//  3. cost_based (budget_per_hour, cost_per_span) caps the total: the budget allows
//     B = budget_per_hour / cost_per_span / 3600 kept spans per second. When the
//     predicted kept spans exceed B, the rates of non-high-priority services are
//     multiplied by one factor below 1 (never below their floor) so that they fit; if
//     high-priority traffic and floors alone exceed B, every rate is multiplied by B/K.
//     For a single service class this is the plain min(1, B/qps).
//  4. Degradation overrides: while degraded, every rate is lowered to at most
//     target_rate, except high-priority services when keep_high_priority is set.
//     Degradation starts when fleet utilisation (Σ qps / Σ capacity over live
//     collectors that report a capacity) reaches threshold and ends only when it falls
//     below recovery_threshold (hysteresis).
//  5. A region's regional_sampling_rate multiplies the result for traffic in that
//     region. The decision carries the multipliers (Decision.Regions); routers apply
//     them by the region of the collector, and the Jaeger API applies them when the
//     SDK passes ?region=.
//
// Rates for services not seen in the load reports (a new service, an SDK that asks
// before sending anything) follow the same steps with no floor: the decision stores
// one rate per priority rule and a default rate, so any service name gets an answer.
//
// # Smoothing
//
// Each service's observed rate is smoothed with an EWMA (Tuning.Alpha, default 0.5)
// that is replaced by the latest observation when traffic jumps by Tuning.JumpRatio
// (default 2×) or more either way, when a service appears, or when it vanishes. The
// rate is computed from the smoothed traffic directly (open loop, no feedback on the
// previous rate), so it cannot oscillate: after a 10× step it lands on target in the
// next interval, and small fluctuations are damped by the EWMA (a 1.9× step lands
// within ±10% in three intervals).
//
// The load reports are taken as the traffic offered to sampling (what the reporting
// collectors receive before this decision is applied, as pkg/simfleet and routers that
// sample after measuring report it).
package strategy
