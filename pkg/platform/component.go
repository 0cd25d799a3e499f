package platform

import (
	"context"
	"log/slog"
	"sync"

	"go.uber.org/fx"

	"github.com/otelfleet/otelfleet/pkg/natsconn"
)

// Component is one part of a process built on Module that needs the contract's streams
// and buckets: a service (through RunService), the config watcher, self registration, the
// simulated fleet. Start gives every component the same life:
//
//  1. On app start nothing blocks: a goroutine waits until the buckets exist (NATS may be
//     down for a long time), then calls Run with a context that ends when the app stops.
//  2. Run either starts the component's own goroutines and returns nil, or does the work
//     itself until ctx ends and returns nil then. An error returned while ctx is live
//     means the component stopped working: it is logged (and RunService shows it on
//     /readyz).
//  3. On app stop the context is cancelled, Run is waited for, then Stop runs.
//
// fx runs stop hooks in the reverse order of start hooks, so components stop in the
// reverse order they were started in (a service stops before the config watcher it
// listens to, and both before the NATS connection).
type Component struct {
	// Name names the component in logs (attribute component=<Name>).
	Name string
	// Run is called once, in the background, when the buckets exist. Required.
	Run func(ctx context.Context, b *natsconn.Buckets) error
	// Stop, if set, is called on app stop after Run's context has ended and Run has
	// returned, with the stop hook's context (bounded by the app's stop timeout). It is
	// called even when the app stops before the buckets ever existed (Run never called),
	// so it must cope with a component that never started.
	Stop func(ctx context.Context) error
}

// Life is what Start needs; Module provides all of it.
type Life struct {
	fx.In
	LC       fx.Lifecycle
	Contract *Contract
	Log      *slog.Logger
}

// Start ties c to the app's lifecycle (see Component). Call it from an fx constructor or
// invoke, once per component.
func Start(l Life, c Component) {
	log := l.Log.With("component", c.Name)
	ctx, cancel := context.WithCancel(context.Background())
	var wg sync.WaitGroup
	l.LC.Append(fx.Hook{
		OnStart: func(context.Context) error {
			wg.Add(1)
			go func() {
				defer wg.Done()
				b, err := l.Contract.Buckets(ctx)
				if err != nil {
					return // stopped before the buckets ever existed
				}
				if err := c.Run(ctx, b); err != nil && ctx.Err() == nil {
					log.Error("component stopped working", "err", err)
				}
			}()
			return nil
		},
		OnStop: func(stopCtx context.Context) error {
			cancel()
			wg.Wait()
			if c.Stop == nil {
				return nil
			}
			return c.Stop(stopCtx)
		},
	})
}
