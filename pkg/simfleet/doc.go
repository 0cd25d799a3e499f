// Package simfleet simulates a fleet of OpenTelemetry collectors for demos, tests and
// load experiments of the control plane: `otelfleet simulate`, and `otelfleet dev`,
// which runs one by default.
//
// A [Fleet] is the model, a pure, deterministic function of its [Config] (including a
// seed) and the times [Fleet.Step] is called with: regions named us-east-1, eu-west-1,
// ap-south-1, us-west-2, eu-central-1, ap-northeast-1, then region-<k>; collectors named
// <prefix>-<region>-<n>; a Zipf-weighted mix of services; capacities, latencies and
// footprints that vary between collectors; traffic shaped by a [Pattern] (steady,
// diurnal, spike, step); and occasional outages that a collector recovers from. The
// load is synthetic by design, but each report is internally consistent: accepted
// spans never exceed the collector's capacity (the excess is refused and shows in the
// error rate), latency climbs with utilisation as in a queue (base / (1 − ρ)), queue
// depth follows from Little's law and CPU from utilisation. See [Fleet] for the model.
//
// A [Simulator] runs a Fleet against NATS: it registers every simulated collector with a
// pkg/registration client (so they show in `otelfleet registry ls`, heart-beat, and
// expire if the process is killed), publishes each collector's load report every
// interval on <root>.load.<region>.<collector> with CloudEvents headers, and
// deregisters them on Stop. [Module] runs one in an fx app built on platform.Module.
//
// Simulated collectors register with metadata simulated=true and no address: they
// accept no OTLP, so a router must not send them real traffic.
package simfleet
