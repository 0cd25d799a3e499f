// Command otelfleet-sampler runs the otelfleet sampler service on its own: any number of
// replicas serve the Jaeger remote-sampling API, the elected leader computes decisions.
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
	samplersvc "github.com/otelfleet/otelfleet/services/sampler"
)

func main() {
	s := platform.DefaultSettings("sampler")
	cfg := samplersvc.DefaultConfig()
	k := knobs.New(flag.CommandLine)
	s.Bind(k)
	cfg.Bind(k)
	flag.Parse()
	if err := firstError(k.Err(), s.Validate(), cfg.Validate()); err != nil {
		fmt.Fprintln(os.Stderr, "otelfleet-sampler:", err)
		os.Exit(2)
	}
	fx.New(
		platform.Options(s),
		platform.Module(s),
		configwatch.Module,
		samplersvc.Module(cfg),
		registration.SelfModule("sampler"),
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
