package loadmon

import (
	"context"
	"fmt"
	"time"

	"github.com/otelfleet/otelfleet/pkg/sysstat"
)

// ReadingSource supplies the CPU and memory figures [Monitor.Run] passes to
// [Monitor.Tick]. [*sysstat.Sampler] implements it.
type ReadingSource interface {
	// Sample returns a current reading, or an error if none is available.
	Sample() (sysstat.Reading, error)
}

var _ ReadingSource = (*sysstat.Sampler)(nil)

// Run ticks the Monitor every interval, using the wall clock and readings
// from src, until ctx is done; it then returns nil. It primes the baseline
// with a first Tick straight away, so the first snapshot appears after one
// interval.
//
// When src is nil the tick happens with a zero Reading (CPU and Memory 0, span
// rates valid). When Sample fails, the last good reading is used again. Run returns an error without ticking if interval is not
// positive. Run blocks; the caller owns the goroutine it runs on. Running
// two Runs on one Monitor is safe but halves each interval's length.
func (m *Monitor) Run(ctx context.Context, interval time.Duration, src ReadingSource) error {
	if interval <= 0 {
		return fmt.Errorf("loadmon: run: interval %v must be positive", interval)
	}
	// A failed reading repeats the last good one rather than reporting zeros.
	var last sysstat.Reading
	tick := func(now time.Time) {
		if src != nil {
			if got, err := src.Sample(); err == nil {
				last = got
			}
		}
		m.Tick(now, last)
	}

	tick(time.Now())
	t := time.NewTicker(interval)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return nil
		case now := <-t.C:
			tick(now)
		}
	}
}
