// Command otelfleet-registry runs the otelfleet registry service on its own.
package main

import (
	"go.uber.org/fx"

	"github.com/otelfleet/otelfleet/pkg/configwatch"
	"github.com/otelfleet/otelfleet/pkg/platform"
	"github.com/otelfleet/otelfleet/pkg/registration"
	registrysvc "github.com/otelfleet/otelfleet/services/registry"
)

func main() {
	cfg := registrysvc.DefaultConfig()
	platform.Main("registry", &cfg, func() fx.Option {
		return fx.Options(configwatch.Module, registrysvc.Module(cfg), registration.SelfModule("registry"))
	})
}
