// Package routersvc is the OTLP router: it takes OTLP over gRPC (:4317) and HTTP (:4318),
// applies the fleet's sampling decision consistently by trace ID, enforces the fleet-wide
// rate limits and routing rules, and sends each trace, whole, to one healthy backend
// collector from the registry, chosen by a load-aware strategy, with retries and fail-over.
//
// Layout:
//   - internal/otlpwire: reads and splits OTLP protobuf requests without decoding them into
//     objects (the per-span work is small: trace ID, trace state, service).
//   - internal/sampling: the per-trace keep decision and the tracestate it writes.
//   - internal/balance: the backend tables (strategies) that map a trace ID to a backend.
//   - internal/ratelimit: fleet-wide limits, each router enforcing its live share.
//   - internal/export: the backend set from the registry, per-backend queues, OTLP clients,
//     retries and re-routing.
package routersvc
