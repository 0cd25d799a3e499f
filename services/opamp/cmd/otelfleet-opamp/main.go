// Command otelfleet-opamp runs the otelfleet OpAMP server on its own.
package main

import (
	"go.uber.org/fx"

	"github.com/otelfleet/otelfleet/pkg/configwatch"
	"github.com/otelfleet/otelfleet/pkg/platform"
	"github.com/otelfleet/otelfleet/pkg/registration"
	opampsvc "github.com/otelfleet/otelfleet/services/opamp"
)

func main() {
	cfg := opampsvc.DefaultConfig()
	platform.Main("opamp", &cfg, func() fx.Option {
		return fx.Options(configwatch.Module, opampsvc.Module(cfg), registration.SelfModule("opamp"))
	})
}
