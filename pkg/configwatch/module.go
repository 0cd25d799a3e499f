package configwatch

import (
	"context"
	"log/slog"

	"github.com/nats-io/nats.go"
	"github.com/prometheus/client_golang/prometheus"
	"go.uber.org/fx"

	"github.com/otelfleet/otelfleet/pkg/events"
	"github.com/otelfleet/otelfleet/pkg/platform"
)

// Module provides one *Watcher per process, started with the app once the contract's
// buckets exist, and a "config" readiness check that passes after its first load. Every
// service in the process shares it, so a process reports one applied version.
var Module = fx.Module("configwatch", fx.Provide(provide), fx.Invoke(func(*Watcher) {}))

type params struct {
	fx.In
	LC        fx.Lifecycle
	Settings  platform.Settings
	NC        *nats.Conn
	NS        events.Namespace
	Contract  *platform.Contract
	Readiness *platform.Readiness
	Log       *slog.Logger
	Reg       prometheus.Registerer
}

func provide(p params) (*Watcher, error) {
	ctx, cancel := context.WithCancel(context.Background())
	var w *Watcher
	// The watcher needs the bucket, which exists only once the contract is provisioned;
	// a placeholder watcher object is created now so services can register listeners.
	w, err := New(p.NC, nil, Options{
		Service: p.Settings.Process, Instance: p.Settings.Instance, Namespace: p.NS,
		Log: p.Log.With("component", "configwatch"), Registerer: p.Reg,
	})
	if err != nil {
		cancel()
		return nil, err
	}
	p.Readiness.Add("config", func() error {
		if !w.Ready() {
			return errNotLoaded
		}
		return nil
	})
	started := make(chan struct{})
	p.LC.Append(fx.Hook{
		OnStart: func(context.Context) error {
			go func() {
				defer close(started)
				b, err := p.Contract.Buckets(ctx)
				if err != nil {
					return
				}
				w.kv = b.Config
				if err := w.Start(); err != nil {
					p.Log.Error("config watcher failed to start", "err", err)
				}
			}()
			return nil
		},
		OnStop: func(context.Context) error {
			cancel()
			<-started
			w.Stop()
			return nil
		},
	})
	return w, nil
}
