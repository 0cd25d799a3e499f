package registration

import (
	"context"

	"github.com/otelfleet/otelfleet/pkg/events"
)

// Beat takes one reading as a heartbeat does (without writing it) and returns the status
// the heartbeat would report.
func (c *Client) Beat(ctx context.Context) events.HealthStatus {
	c.mu.Lock()
	cfg := c.cfg
	c.mu.Unlock()
	h := c.health(ctx, cfg, 0)
	return c.judgeHealth(h.Status, cfg.Hysteresis)
}
