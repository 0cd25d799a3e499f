// Package loadreport publishes a collector's load reports (events.LoadReport) on
// <root>.load.<region>.<collector> and decodes them for consumers.
//
// # Publishing
//
// A [Publisher] asks a [Source] for a report every interval (default 1 s), stamps it with
// the collector's region and id, validates it and publishes it with the CloudEvents
// headers of events.NewMsg. Two sources are provided:
//
//   - [MonitorSource] ticks a loadmon.Monitor that the collector's hot path feeds
//     (RecordSpans, RecordService, SetQueueDepth) and adds real CPU and memory readings
//     from a sysstat.Sampler;
//   - promscrape.Source (package pkg/promscrape) scrapes a real OpenTelemetry
//     Collector's own Prometheus metrics.
//
// Reports are sent with a core NATS publish, not a JetStream publish. The OTLP_LOAD
// stream captures <root>.load.> either way; what a JetStream publish adds is an ack
// round trip per report, which would make every collector wait on the server once a
// second and, while NATS is away, block or fail the loop instead of buffering. A load
// report is superseded by the next one within an interval, so a report lost in transit
// costs nothing that the next one does not repair, and consumers read the stream (or
// subscribe) either way. Publish failures are counted in
// otelfleet_loadreport_failures_total{stage="publish"}.
//
// # Decoding
//
// [Decode], [DecodeJetStream] and [DecodeData] are the one way consumers (topology,
// sampler, router, the CLI) turn a message into a LoadReport: they check the subject's
// shape, decode and validate the payload (events.Decode: schema version, finite and
// sane numbers, valid tokens) and require the subject's region and collector tokens to
// match the payload's. Every error wraps [ErrInvalid] and events.ErrMalformed and says
// what was wrong.
package loadreport
