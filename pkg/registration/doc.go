// Package registration registers collectors and otelfleet services in the
// otlp_registry KV bucket and keeps them alive with heartbeats.
//
// A Client writes events.Registration JSON at collector.<region>.<id> or
// service.<name>.<id>. The bucket has a TTL (--registry-ttl) and limit markers: a key
// not rewritten within the TTL expires and the registry service publishes
// registry.expired. The client heart-beats every third of that TTL (read from the bucket
// status) with a revision-checked Update of its last write; when that fails because the
// key expired or was deleted meanwhile (NATS down longer than the TTL, say) it registers
// anew with a fresh registered_at. NATS errors are retried with exponential backoff
// (cenkalti/backoff). Deregister stops the heartbeats and deletes the key (the
// registry publishes registry.deregistered); a process killed with -9 simply expires.
//
// Every heartbeat carries the current health of the process the registration
// describes: the built-in "cpu" check compares its CPU share of its allowed CPUs, the
// "memory" check its RSS against its limit (pkg/sysstat, or another Sampler such as an
// agent's promscrape.Source), with thresholds, and custom checks (Config.Checks, each a
// func(ctx) events.CheckResult) add their own verdicts; a reading's status is the worst
// of them. The host's CPU and memory are carried as information and judge nothing. The
// status a heartbeat reports changes only after Hysteresis.WorseAfter consecutive
// readings judge worse (BetterAfter: better), so one busy second changes nothing. Generation counts changes of anything but
// timestamps and readings, so the registry publishes registry.updated only when
// something changed.
//
// Use Register (blocks until the first write) or Start (never blocks; for services that
// must start while NATS is down), then Deregister; or Run(ctx) for a command-line agent.
// Every otelfleet service registers itself with SelfModule(service) in its fx app.
package registration
