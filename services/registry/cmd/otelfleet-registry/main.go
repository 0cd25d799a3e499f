// Command otelfleet-registry runs the otelfleet registry service on its own.
package main

import (
	"errors"
	"flag"
	"fmt"
	"os"

	"go.uber.org/fx"

	"github.com/otelfleet/otelfleet/pkg/configwatch"
	"github.com/otelfleet/otelfleet/pkg/knobs"
	"github.com/otelfleet/otelfleet/pkg/platform"
	"github.com/otelfleet/otelfleet/pkg/registration"
	registrysvc "github.com/otelfleet/otelfleet/services/registry"
)

func main() {
	s := platform.DefaultSettings("registry")
	cfg := registrysvc.DefaultConfig()
	k := knobs.New(flag.CommandLine)
	s.Bind(k)
	cfg.Bind(k)
	flag.Parse()
	if err := errors.Join(k.Err(), s.Validate(), cfg.Validate()); err != nil {
		fmt.Fprintln(os.Stderr, "otelfleet-registry:", err)
		os.Exit(2)
	}
	fx.New(
		platform.Options(s),
		platform.Module(s),
		configwatch.Module,
		registrysvc.Module(cfg),
		registration.SelfModule("registry"),
	).Run()
}
