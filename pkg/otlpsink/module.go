package otlpsink

import (
	"context"
	"errors"
	"fmt"
	"sync"

	"github.com/prometheus/client_golang/prometheus"
	"go.uber.org/fx"

	"github.com/otelfleet/otelfleet/pkg/platform"
	"github.com/otelfleet/otelfleet/pkg/registration"
)

// Fleet describes the sinks Module runs.
type Fleet struct {
	// Count is how many sinks to run, with ids <Prefix>-<Offset+1> .. <Prefix>-<Offset+Count>.
	Count int
	// Offset shifts the ids (default 0: the first sink is <Prefix>-1), so that apps of one
	// sink each, one NATS identity per sink, get the ids their identities allow.
	Offset int
	// Prefix of the sink ids (default "sink").
	Prefix string
	// Region the sinks register in (default the app's Settings.Region).
	Region string
	// Config is each sink's receiver config; its listen addresses should have port 0
	// (each sink then gets free ports), as a fixed port fits only one sink.
	Config Config
	// CapacityQPS is each sink's claimed capacity (0: unknown).
	CapacityQPS float64
	// Readings is MemberConfig.Readings of every sink (nil: real readings).
	Readings registration.Sampler
}

// ModuleParams are what Module needs from platform.Module.
type ModuleParams struct {
	platform.ServiceParams
	Admin *platform.Admin `optional:"true"`
}

// Sinks are the sinks Module runs, in id order.
type Sinks []*Sink

// Module runs f.Count sinks in the app: they listen at start (failing the start when an
// address is taken), join the fleet in the background once the contract's buckets exist,
// and leave it (deregister) on stop. Each sink's metrics carry the label sink=<id> and,
// when the app has an admin server, its counts are served at /v1/sinks/<id>. It provides
// Sinks.
func Module(f Fleet) fx.Option {
	return fx.Module("otlpsink", fx.Provide(func(p ModuleParams) (Sinks, error) { return provide(p, f) }))
}

func provide(p ModuleParams, f Fleet) (Sinks, error) {
	if f.Prefix == "" {
		f.Prefix = "sink"
	}
	if f.Region == "" {
		f.Region = p.Settings.Region
	}
	log := p.Log.With("component", "otlpsink")
	sinks := make(Sinks, f.Count)
	ids := make([]string, f.Count)
	for i := range sinks {
		ids[i] = fmt.Sprintf("%s-%d", f.Prefix, f.Offset+i+1)
		var reg prometheus.Registerer
		if p.Reg != nil {
			reg = prometheus.WrapRegistererWith(prometheus.Labels{"sink": ids[i]}, p.Reg)
		}
		s, err := New(f.Config, log.With("sink", ids[i]), reg)
		if err != nil {
			return nil, err
		}
		sinks[i] = s
		if p.Admin != nil {
			p.Admin.Handle("GET /v1/sinks/"+ids[i], s.Handler())
		}
	}
	var (
		mu      sync.Mutex
		members []*Member
		wg      sync.WaitGroup
	)
	ctx, cancel := context.WithCancel(context.Background())
	p.LC.Append(fx.Hook{
		OnStart: func(context.Context) error {
			for i, s := range sinks {
				if err := s.Start(); err != nil {
					for _, started := range sinks[:i] {
						_ = started.Stop(ctx)
					}
					return fmt.Errorf("sink %s: %w", ids[i], err)
				}
			}
			wg.Add(1)
			go func() {
				defer wg.Done()
				b, err := p.Contract.Buckets(ctx)
				if err != nil {
					return // stopped before NATS was ever ready
				}
				for i, s := range sinks {
					m, err := s.Join(p.NC, b.Registry, p.NS, MemberConfig{
						Region: f.Region, ID: ids[i], CapacityQPS: f.CapacityQPS, Version: platform.Version, Registerer: p.Reg, Readings: f.Readings,
						Health: p.Settings.Health,
					}, log.With("sink", ids[i]))
					if err != nil {
						log.Error("sink cannot join the fleet", "sink", ids[i], "err", err)
						continue
					}
					mu.Lock()
					members = append(members, m)
					mu.Unlock()
				}
			}()
			return nil
		},
		OnStop: func(stopCtx context.Context) error {
			cancel()
			wg.Wait()
			var errs []error
			mu.Lock()
			for _, m := range members {
				errs = append(errs, m.Stop(stopCtx))
			}
			mu.Unlock()
			for _, s := range sinks {
				errs = append(errs, s.Stop(stopCtx))
			}
			return errors.Join(errs...)
		},
	})
	return sinks, nil
}
