package registration

import (
	"context"
	"fmt"
	"slices"
	"time"

	"github.com/otelfleet/otelfleet/pkg/events"
)

// Health runs every check now and returns the health a heartbeat would carry (its status
// after this reading under the hysteresis; the reading itself moves nothing).
func (c *Client) Health(ctx context.Context) events.Health {
	c.mu.Lock()
	cfg, interval := c.cfg, c.interval
	c.mu.Unlock()
	h := c.health(ctx, cfg, interval)
	c.mu.Lock()
	_, h.Status = c.judged.next(h.Status, cfg.Hysteresis)
	c.mu.Unlock()
	return h
}

// judgeHealth folds a heartbeat's reading into the hysteresis and returns the status to
// report.
func (c *Client) judgeHealth(raw events.HealthStatus, h Hysteresis) events.HealthStatus {
	c.mu.Lock()
	defer c.mu.Unlock()
	j, status := c.judged.next(raw, h)
	if status != c.judged.reported && c.judged.reported != "" {
		c.log.Info("health changed after consecutive readings agreed", "from", c.judged.reported, "to", status)
	}
	c.judged = j
	return status
}

// health samples the CPU and memory of the process the registration describes, runs the
// built-in and custom checks and folds them into one status (the worst) for this reading.
// The host's CPU and memory are reported as information only.
func (c *Client) health(ctx context.Context, cfg Config, interval time.Duration) events.Health {
	var h events.Health
	r, err := cfg.Sampler.Sample()
	if err == nil && r.CPUWindow > 0 && r.CPUWindow < minCPUWindow {
		// The first heartbeat comes right after New primed the sampler: a few
		// milliseconds of ticks say nothing. Measure over minCPUWindow instead.
		select {
		case <-time.After(minCPUWindow - r.CPUWindow):
			r, err = cfg.Sampler.Sample()
		case <-ctx.Done():
		}
	}
	if err != nil {
		c.log.Debug("CPU and memory readings unavailable", "err", err)
	} else {
		h.CPU, h.Memory, h.ProcessCPU, h.ProcessRSSBytes = clamp01(r.HostCPU), clamp01(r.HostMemUsed), clamp01(r.ProcessCPU), r.ProcessRSSBytes
		h.ProcessCPUShare, h.ProcessMemory = clamp01(r.ProcessCPUShare), clamp01(r.ProcessMemory())
		h.Checks = append(h.Checks,
			threshold("cpu", "process CPU (of its allowed CPUs)", h.ProcessCPUShare, cfg.CPUDegraded, cfg.CPUUnhealthy),
			threshold("memory", "process memory (of its limit)", h.ProcessMemory, cfg.MemoryDegraded, cfg.MemoryUnhealthy),
		)
	}
	timeout := cfg.CheckTimeout
	if interval > 0 {
		timeout = min(timeout, interval)
	}
	for i, check := range cfg.Checks {
		h.Checks = append(h.Checks, runCheck(ctx, check, i, timeout))
	}
	slices.SortStableFunc(h.Checks, func(a, b events.CheckResult) int {
		switch {
		case a.Name < b.Name:
			return -1
		case a.Name > b.Name:
			return 1
		}
		return 0
	})
	h.Status = events.HealthHealthy
	for _, ch := range h.Checks {
		h.Status = h.Status.Worst(ch.Status)
	}
	return h
}

// minCPUWindow is the shortest interval CPU fractions are averaged over (the kernel
// counts CPU time in 10ms ticks).
const minCPUWindow = 250 * time.Millisecond

// runCheck runs one custom check with a timeout; a check that panics, overruns or
// returns an invalid result is reported unhealthy rather than breaking the heartbeat.
func runCheck(ctx context.Context, check Check, i int, timeout time.Duration) (res events.CheckResult) {
	name := fmt.Sprintf("check-%d", i)
	cctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	out := make(chan events.CheckResult, 1)
	go func() {
		defer func() {
			if p := recover(); p != nil {
				out <- events.CheckResult{Name: name, Status: events.HealthUnhealthy, Message: fmt.Sprintf("check panicked: %v", p)}
			}
		}()
		out <- check(cctx)
	}()
	select {
	case res = <-out:
	case <-cctx.Done():
		return events.CheckResult{Name: name, Status: events.HealthUnhealthy, Message: fmt.Sprintf("check did not answer within %v", timeout)}
	}
	if res.Name == "" {
		res.Name = name
	}
	if !res.Status.Valid() {
		res.Message = fmt.Sprintf("invalid status %q: %s", res.Status, res.Message)
		res.Status = events.HealthUnhealthy
	}
	return res
}

func threshold(name, what string, v, degraded, unhealthy float64) events.CheckResult {
	res := events.CheckResult{Name: name, Status: events.HealthHealthy, Message: fmt.Sprintf("%s %.0f%%", what, v*100)}
	switch {
	case v >= unhealthy:
		res.Status, res.Message = events.HealthUnhealthy, fmt.Sprintf("%s %.0f%%, unhealthy from %.0f%%", what, v*100, unhealthy*100)
	case v >= degraded:
		res.Status, res.Message = events.HealthDegraded, fmt.Sprintf("%s %.0f%%, degraded from %.0f%%", what, v*100, degraded*100)
	}
	return res
}

func clamp01(v float64) float64 {
	switch {
	case v > 1:
		return 1
	case v >= 0:
		return v
	default: // negative or NaN
		return 0
	}
}
