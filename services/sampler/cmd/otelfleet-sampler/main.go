// Command otelfleet-sampler runs the otelfleet sampler service on its own: any number of
// replicas serve the Jaeger remote-sampling API, the elected leader computes decisions.
package main

import (
	"go.uber.org/fx"

	"github.com/otelfleet/otelfleet/pkg/configwatch"
	"github.com/otelfleet/otelfleet/pkg/platform"
	"github.com/otelfleet/otelfleet/pkg/registration"
	samplersvc "github.com/otelfleet/otelfleet/services/sampler"
)

func main() {
	cfg := samplersvc.DefaultConfig()
	platform.Main("sampler", &cfg, func() fx.Option {
		return fx.Options(configwatch.Module, samplersvc.Module(cfg), registration.SelfModule("sampler"))
	})
}
