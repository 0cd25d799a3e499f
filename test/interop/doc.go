// Package interop holds otelfleet's interoperability tests against real OpenTelemetry
// Collectors: a stock collector with the opamp extension, and the opampsupervisor, both
// built by build-opamp.sh into a cache directory outside the repository.
//
// The tests run only when OTELFLEET_INTEROP_BIN (the directory of otelcol-opamp and
// opampsupervisor) and OTELFLEET_BIN (the directory of otelfleet-opamp) are set; `make
// interop-opamp` builds everything and sets them. Every process is started on 127.0.0.1,
// tracked by its PID and killed when its test ends.
//
// testdata/collector.yaml and testdata/supervisor.yaml are the configurations the README
// shows; TestREADMEShowsTheInteropYAML keeps them equal.
package interop
