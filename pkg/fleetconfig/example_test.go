package fleetconfig_test

import (
	"errors"
	"fmt"

	"github.com/otelfleet/otelfleet/pkg/fleetconfig"
)

func ExampleLoadFile() {
	_, err := fleetconfig.LoadFile([]byte(`
global:
  sampling_rate: 1.5
  sampling_strategies:
    - {type: adaptive, min_rate: 0.6, max_rate: 0.5, target_qps: 1000}
  rate_limiting: {max_qps: 1000, burst_size: 100}
regions:
  eu-west:
    regional_sampling_rate: 1
    buffer_size: 1000
    batch: {max_batch_size: 100}
    retry: {initial_backoff: 100ms, max_backoff: 1s}
`))
	if ve, ok := errors.AsType[*fleetconfig.ValidationError](err); ok {
		fmt.Println(ve.Multiline())
	}
	// Output:
	// global.sampling_rate: 1.5 is outside [0, 1]
	// global.sampling_strategies[0].min_rate: 0.6 is greater than max_rate 0.5
	// regions.eu-west.batch.max_wait_time: must be positive
}

func ExampleGlobal_PriorityFor() {
	g := fleetconfig.Defaults().Global
	for _, service := range []string{"payment", "frontend", "debug"} {
		rule, _ := g.PriorityFor(service)
		fmt.Println(service, rule.Priority, rule.Rate)
	}
	// Output:
	// payment high 1
	// frontend normal 0.1
	// debug low 0.01
}
