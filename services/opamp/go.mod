module github.com/otelfleet/otelfleet/services/opamp

go 1.26.0

require github.com/otelfleet/otelfleet/pkg v0.0.0

replace github.com/otelfleet/otelfleet/pkg => ../../pkg
