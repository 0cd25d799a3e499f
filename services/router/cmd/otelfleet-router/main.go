// Command otelfleet-router runs the otelfleet OTLP router on its own: it takes OTLP on
// :4317 (gRPC) and :4318 (HTTP), samples by the fleet's decision and sends each trace,
// whole, to one healthy backend collector from the registry.
package main

import (
	"go.uber.org/fx"

	"github.com/otelfleet/otelfleet/pkg/configwatch"
	"github.com/otelfleet/otelfleet/pkg/platform"
	routersvc "github.com/otelfleet/otelfleet/services/router"
)

func main() {
	cfg := routersvc.DefaultConfig()
	platform.Main("router", &cfg, func() fx.Option {
		return fx.Options(configwatch.Module, routersvc.Module(cfg))
	})
}
