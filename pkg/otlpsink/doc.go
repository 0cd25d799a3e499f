// Package otlpsink is a real OTLP backend for demos, tests and compose: a receiver of
// OTLP/gRPC and OTLP/HTTP (protobuf and JSON bodies; gzip and zstd) built on pdata's
// own OTLP servers and codecs, so it is an implementation independent of the router's
// wire code and tests can cross-check one against the other.
//
// A [Sink] counts what it really receives: spans per trace ID and per service, the
// distinct traces seen, spans seen twice (same trace and span ID: a duplicate delivery),
// log records and metric data points. [Sink.Stats] and the JSON handler
// ([Sink.Handler], served at /v1/sink) report the counts with the span count of each of
// the last N traces. Memory is bounded: at most Config.MaxTraces traces are remembered
// (oldest forgotten first), so a trace seen again after being forgotten counts as new.
//
// A [Member] makes a running Sink a fleet member: it registers the sink as a collector
// (collector.<region>.<id> in otlp_registry, with its OTLP/gRPC address, and its
// OTLP/HTTP address in the metadata key [MetaHTTPAddr]) and publishes its load report
// every interval from a loadmon.Monitor fed by the receivers: spans and bytes received,
// spans per service, spans being processed as the queue depth, refused requests as
// errors, and the process's real CPU and memory.
package otlpsink
