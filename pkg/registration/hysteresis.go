package registration

import (
	"fmt"

	"github.com/otelfleet/otelfleet/pkg/events"
	"github.com/otelfleet/otelfleet/pkg/platform"
)

// Defaults of Hysteresis.
const (
	// DefaultWorseAfter is how many consecutive heartbeats must judge a worse status
	// before it is reported.
	DefaultWorseAfter = platform.DefaultHealthWorseAfter
	// DefaultBetterAfter is how many consecutive heartbeats must judge a better status
	// before it is reported.
	DefaultBetterAfter = platform.DefaultHealthBetterAfter
)

// Hysteresis keeps a registration's health from flapping (platform.HealthHysteresis,
// bound to --health-worse-after and --health-better-after): the status a heartbeat
// reports changes only after consecutive heartbeats agree. Zero fields take the
// defaults.
type Hysteresis = platform.HealthHysteresis

// validateHysteresis reports counts outside [0, 100] (0 is the default).
func validateHysteresis(h Hysteresis) error {
	if err := h.Validate(); err != nil {
		return fmt.Errorf("%w: %w", ErrConfig, err)
	}
	return nil
}

// judge is the reported status and the consecutive readings pulling it away. The zero
// value has reported nothing: the first reading is reported as it is (there is nothing
// to flap from, and a registration must not claim a health it was never judged to have).
type judge struct {
	reported      events.HealthStatus
	worse, better int
}

// rank orders statuses, healthy first.
func rank(s events.HealthStatus) int {
	switch s {
	case events.HealthHealthy:
		return 0
	case events.HealthDegraded:
		return 1
	}
	return 2
}

// next returns the judge after one reading of status raw under h, and the status to
// report.
func (j judge) next(raw events.HealthStatus, h Hysteresis) (judge, events.HealthStatus) {
	if j.reported == "" {
		j.reported = raw
		return j, raw
	}
	switch r, cur := rank(raw), rank(j.reported); {
	case r > cur:
		j.worse, j.better = j.worse+1, 0
		if j.worse >= max(h.WorseAfter, 1) {
			j.reported, j.worse = raw, 0
		}
	case r < cur:
		j.worse, j.better = 0, j.better+1
		if j.better >= max(h.BetterAfter, 1) {
			j.reported, j.better = raw, 0
		}
	default:
		j.worse, j.better = 0, 0
	}
	return j, j.reported
}
