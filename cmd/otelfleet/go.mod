module github.com/otelfleet/otelfleet/cmd/otelfleet

go 1.26.0

require (
	github.com/otelfleet/otelfleet/pkg v0.0.0
	github.com/otelfleet/otelfleet/services/config v0.0.0
	github.com/otelfleet/otelfleet/services/registry v0.0.0
	github.com/otelfleet/otelfleet/services/sampler v0.0.0
	github.com/otelfleet/otelfleet/services/topology v0.0.0
)

replace (
	github.com/otelfleet/otelfleet/pkg => ../../pkg
	github.com/otelfleet/otelfleet/services/config => ../../services/config
	github.com/otelfleet/otelfleet/services/registry => ../../services/registry
	github.com/otelfleet/otelfleet/services/sampler => ../../services/sampler
	github.com/otelfleet/otelfleet/services/topology => ../../services/topology
)
