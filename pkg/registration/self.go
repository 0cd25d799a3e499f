package registration

import (
	"context"
	"fmt"
	"net"
	"os"
	"strings"

	"github.com/prometheus/client_golang/prometheus"
	"go.uber.org/fx"

	"github.com/otelfleet/otelfleet/pkg/events"
	"github.com/otelfleet/otelfleet/pkg/natsconn"
	"github.com/otelfleet/otelfleet/pkg/platform"
)

// SelfParams are what SelfModule needs from platform.Module.
type SelfParams struct {
	fx.In
	platform.Life
	Settings  platform.Settings
	Readiness *platform.Readiness
	Reg       prometheus.Registerer `optional:"true"`
}

// SelfModule registers the running otelfleet service as service.<service>.<instance>
// (instance = Settings.Instance) with its region, admin address, version and health:
// the process's CPU and memory (the host's as information), judged with the hysteresis
// of Settings.Health, plus a "ready" check that is degraded
// while any readiness check of the process fails.
//
// It registers in the background once the contract's buckets exist, so the app starts
// even when NATS is down, heart-beats every third of the registry TTL, and deregisters
// on stop. It provides nothing, so several SelfModules (one per service, as in
// `otelfleet dev`) can share one app.
func SelfModule(service string) fx.Option {
	return fx.Module("registration-"+service, fx.Invoke(func(p SelfParams) error {
		return startSelf(p, service)
	}))
}

func startSelf(p SelfParams, service string) error {
	cfg := Config{
		Kind:     events.KindService,
		ID:       p.Settings.Instance,
		Name:     service,
		Region:   p.Settings.Region,
		Address:  advertised(p.Settings.AdminAddr),
		Version:  platform.Version,
		Metadata: map[string]string{"process": p.Settings.Process},
		Checks: []Check{func(context.Context) events.CheckResult {
			return readyCheck(p.Readiness)
		}},
		Registerer: p.Reg,
		Hysteresis: p.Settings.Health,
	}
	if _, err := cfg.Key(); err != nil {
		return fmt.Errorf("self registration of %s: %w", service, err)
	}
	log := p.Log.With("component", "registration")
	var client *Client // set by Run, read by Stop after Run has returned
	platform.Start(p.Life, platform.Component{
		Name: "registration-" + service,
		Run: func(_ context.Context, b *natsconn.Buckets) error {
			c, err := New(b.Registry, cfg, log)
			if err != nil {
				return fmt.Errorf("self registration disabled: %w", err)
			}
			client = c
			return c.Start()
		},
		Stop: func(ctx context.Context) error {
			if client == nil {
				return nil
			}
			if err := client.Deregister(ctx); err != nil {
				log.Warn("could not deregister; the registration will expire", "err", err)
			}
			return nil
		},
	})
	return nil
}

// readyCheck reports degraded while any readiness check fails.
func readyCheck(r *platform.Readiness) events.CheckResult {
	results, ok := r.Check()
	if ok {
		return events.CheckResult{Name: "ready", Status: events.HealthHealthy}
	}
	var failing []string
	for _, res := range results {
		if !res.OK {
			failing = append(failing, res.Name+": "+res.Error)
		}
	}
	return events.CheckResult{Name: "ready", Status: events.HealthDegraded, Message: "not ready: " + strings.Join(failing, "; ")}
}

// advertised turns a listen address such as ":8080" into one others can dial, using the
// host name for an empty or unspecified host.
func advertised(addr string) string {
	host, port, err := net.SplitHostPort(addr)
	if err != nil {
		return addr
	}
	if host == "" || host == "0.0.0.0" || host == "::" {
		if h, err := os.Hostname(); err == nil {
			host = h
		}
	}
	return net.JoinHostPort(host, port)
}
