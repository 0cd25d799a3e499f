package loadmon

import (
	"errors"
	"fmt"
)

// ErrConfigValidation is wrapped by every error [Config.Validate] (and so
// [New]) returns; the message names the offending field.
var ErrConfigValidation = errors.New("loadmon: invalid config")

// Config sizes a [Monitor].
type Config struct {
	// HistorySize is how many snapshots the ring keeps; older ones are
	// overwritten. At one tick per second the default of 600 is ten minutes.
	// Each snapshot holds up to TopServices service rates, so memory grows
	// with HistorySize × TopServices. Must be at least 1.
	HistorySize int

	// TopServices is how many services, busiest first, each snapshot lists
	// in Snapshot.Services. Default 20. Must be at least 0; 0 disables the
	// per-service breakdown in snapshots (RecordService still counts).
	TopServices int

	// MaxServices bounds how many distinct service names are tracked, so
	// that a client sending random service names cannot grow memory without
	// limit. Spans of names first seen after the limit is reached are
	// counted under [OtherServices]. Default 10000. Must be at least 1.
	MaxServices int
}

// DefaultConfig returns the defaults: 600 snapshots of history, the top 20
// services per snapshot, and at most 10000 tracked service names.
func DefaultConfig() Config {
	return Config{
		HistorySize: 600,
		TopServices: 20,
		MaxServices: 10000,
	}
}

// Validate reports the first invalid field, as an error wrapping
// [ErrConfigValidation].
func (c Config) Validate() error {
	switch {
	case c.HistorySize < 1:
		return fmt.Errorf("%w: history size: %d is below the minimum of 1", ErrConfigValidation, c.HistorySize)
	case c.TopServices < 0:
		return fmt.Errorf("%w: top services: %d is negative", ErrConfigValidation, c.TopServices)
	case c.MaxServices < 1:
		return fmt.Errorf("%w: max services: %d is below the minimum of 1", ErrConfigValidation, c.MaxServices)
	}
	return nil
}
