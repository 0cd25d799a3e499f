// Package platform is the runtime every otelfleet service shares, as one fx module:
// settings from flags and environment, a structured logger, an injected Prometheus
// registry, a NATS connection that never gives up, the contract's streams and buckets
// provisioned idempotently, the admin HTTP server (/metrics, /healthz, /readyz), and
// helpers to start a NATS micro service per service.
//
// A service module depends only on what this module provides, so the same module runs
// as a standalone binary (otelfleet-<service>) and inside `otelfleet dev`.
package platform
