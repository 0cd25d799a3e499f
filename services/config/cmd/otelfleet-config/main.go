// Command otelfleet-config runs the otelfleet config service on its own.
package main

import (
	"go.uber.org/fx"

	"github.com/otelfleet/otelfleet/pkg/configwatch"
	"github.com/otelfleet/otelfleet/pkg/platform"
	"github.com/otelfleet/otelfleet/pkg/registration"
	configsvc "github.com/otelfleet/otelfleet/services/config"
)

func main() {
	cfg := configsvc.DefaultConfig()
	platform.Main("config", &cfg, func() fx.Option {
		return fx.Options(configwatch.Module, configsvc.Module(cfg), registration.SelfModule("config"))
	})
}
