// Command otelfleet-topology runs the otelfleet topology service on its own: the live
// fleet topology, best-collector queries, snapshots on otlp.events.topology.snapshot
// while elected leader, and the topology page on the admin port.
package main

import (
	"go.uber.org/fx"

	"github.com/otelfleet/otelfleet/pkg/configwatch"
	"github.com/otelfleet/otelfleet/pkg/platform"
	"github.com/otelfleet/otelfleet/pkg/registration"
	topologysvc "github.com/otelfleet/otelfleet/services/topology"
)

func main() {
	cfg := topologysvc.DefaultConfig()
	platform.Main("topology", &cfg, func() fx.Option {
		return fx.Options(configwatch.Module, topologysvc.Module(cfg), registration.SelfModule("topology"))
	})
}
