// Command otelfleet-topology runs the otelfleet topology service on its own: the live
// fleet topology, best-collector queries, snapshots on otlp.events.topology.snapshot
// while elected leader, and the topology page on the admin port.
package main

import (
	"flag"
	"fmt"
	"os"

	"go.uber.org/fx"

	"github.com/otelfleet/otelfleet/pkg/configwatch"
	"github.com/otelfleet/otelfleet/pkg/knobs"
	"github.com/otelfleet/otelfleet/pkg/platform"
	"github.com/otelfleet/otelfleet/pkg/registration"
	topologysvc "github.com/otelfleet/otelfleet/services/topology"
)

func main() {
	s := platform.DefaultSettings("topology")
	cfg := topologysvc.DefaultConfig()
	k := knobs.New(flag.CommandLine)
	s.Bind(k)
	cfg.Bind(k)
	flag.Parse()
	if err := firstError(k.Err(), s.Validate(), cfg.Validate()); err != nil {
		fmt.Fprintln(os.Stderr, "otelfleet-topology:", err)
		os.Exit(2)
	}
	fx.New(
		platform.Options(s),
		platform.Module(s),
		configwatch.Module,
		topologysvc.Module(cfg),
		registration.SelfModule("topology"),
	).Run()
}

func firstError(errs ...error) error {
	for _, err := range errs {
		if err != nil {
			return err
		}
	}
	return nil
}
