// Command otelfleet-config runs the otelfleet config service on its own.
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
	configsvc "github.com/otelfleet/otelfleet/services/config"
)

func main() {
	s := platform.DefaultSettings("config")
	cfg := configsvc.DefaultConfig()
	k := knobs.New(flag.CommandLine)
	s.Bind(k)
	cfg.Bind(k)
	flag.Parse()
	if err := firstError(k.Err(), s.Validate(), cfg.Validate()); err != nil {
		fmt.Fprintln(os.Stderr, "otelfleet-config:", err)
		os.Exit(2)
	}
	fx.New(
		platform.Options(s),
		platform.Module(s),
		configwatch.Module,
		configsvc.Module(cfg),
		registration.SelfModule("config"),
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
