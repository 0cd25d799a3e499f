// Package check tests otelfleet's monitoring kit in deploy/monitoring: every PromQL
// expression of the alerting rules (alerts.yaml) and of the Grafana dashboards
// (dashboards/*.json) parses, the dashboards are what Grafana imports, and every metric
// they use is one a running `otelfleet dev` exports. It has no code of its own beyond the
// helpers of its tests; it is a module of its own so that the Prometheus module stays out
// of the services' dependencies.
package check
