package registrysvc

import (
	"errors"
	"fmt"
	"time"

	"github.com/otelfleet/otelfleet/pkg/knobs"
)

// ErrConfig is wrapped by every Config validation error.
var ErrConfig = errors.New("invalid registry config")

// Config configures the registry service.
type Config struct {
	// CatchUp is how far back the service looks at start for registrations whose
	// registry.registered event it may have missed while no replica ran (flag
	// --catch-up, env REGISTRY_CATCH_UP): a registration whose registered_at is younger
	// than CatchUp gets its event published at start, deduplicated against any replica
	// that already published it. It must stay below the OTLP_EVENTS stream's duplicates
	// window (2m by default), or a replica restarting could publish a second copy; the
	// service clamps it to half the window. Zero disables the catch-up.
	CatchUp time.Duration
	// PublishTimeout bounds the publishing of one event, retries included (flag
	// --publish-timeout, env REGISTRY_PUBLISH_TIMEOUT); an event not acknowledged by
	// then is dropped and counted in otelfleet_registry_events_total{result="failed"}.
	PublishTimeout time.Duration
}

// DefaultConfig returns the defaults: 1m catch-up, 5s publish timeout.
func DefaultConfig() Config {
	return Config{CatchUp: time.Minute, PublishTimeout: 5 * time.Second}
}

// Validate reports every invalid field, naming its flag.
func (c Config) Validate() error {
	var errs []error
	if c.CatchUp < 0 || c.CatchUp > time.Hour {
		errs = append(errs, fmt.Errorf("%w: --catch-up %v: must be in [0, 1h]", ErrConfig, c.CatchUp))
	}
	if c.PublishTimeout < 100*time.Millisecond || c.PublishTimeout > time.Minute {
		errs = append(errs, fmt.Errorf("%w: --publish-timeout %v: must be in [100ms, 1m]", ErrConfig, c.PublishTimeout))
	}
	return errors.Join(errs...)
}

// Bind registers the service's knobs.
func (c *Config) Bind(k *knobs.Set) {
	k.Duration(&c.CatchUp, "catch-up", "REGISTRY_CATCH_UP", c.CatchUp, "at start, publish registry.registered for registrations younger than this (deduplicated); 0 disables")
	k.Duration(&c.PublishTimeout, "publish-timeout", "REGISTRY_PUBLISH_TIMEOUT", c.PublishTimeout, "how long to retry publishing one lifecycle event")
}
