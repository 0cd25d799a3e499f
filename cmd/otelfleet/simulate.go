package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"strings"
	"sync"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/otelfleet/otelfleet/pkg/events"
	"github.com/otelfleet/otelfleet/pkg/natsconn"
	"github.com/otelfleet/otelfleet/pkg/platform"
	"github.com/otelfleet/otelfleet/pkg/simfleet"
)

const simulateUsage = `simulate [--regions N] [--collectors M] [--pattern steady|diurnal|spike|step]
                   [--services LIST] [--interval 1s] [--base-qps Q] [--seed S] [--id-prefix P]

Runs a simulated fleet: M collectors in each of N regions, registered in the registry
(ids <id-prefix>-<region>-<n>; they show in "otelfleet registry ls"; ids already
registered, e.g. by otelfleet dev's own "sim" fleet, are refused) and publishing a load
report every interval on <root>.load.<region>.<id>. The traffic is synthetic but each
report is consistent: utilisation drives latency (queueing), queue depth (Little's
law) and CPU; overload is refused; now and then a collector has an outage and
recovers. Ctrl-C or SIGTERM deregisters the collectors; kill -9 leaves them to expire
after the registry TTL. Needs a running otelfleet (the registry bucket must exist).`

func runSimulate(ctx context.Context, env *cliEnv, args []string) error {
	cfg := simfleet.DefaultConfig()
	fs, k := env.flags("simulate", simulateUsage)
	cfg.Bind(k)
	logLevel := fs.String("log-level", "info", "log level: debug, info, warn, error")
	pos, err := parse(fs, args)
	if err != nil {
		return err
	}
	if len(pos) > 0 {
		return usageError("simulate: unexpected argument %q", pos[0])
	}
	if err := k.Err(); err != nil {
		return usageError("%v", err)
	}
	if err := cfg.Validate(); err != nil {
		return usageError("%v", err)
	}
	var level slog.Level
	if err := level.UnmarshalText([]byte(*logLevel)); err != nil {
		return usageError("--log-level %q: want debug, info, warn or error", *logLevel)
	}
	logw := &gatedWriter{w: env.stderr}
	log := slog.New(slog.NewTextHandler(logw, &slog.HandlerOptions{Level: level}))
	ns, err := env.namespace()
	if err != nil {
		return err
	}

	// A long-lived connection that rides out NATS restarts, unlike the CLI's dial.
	opts := env.nats
	opts.Name = "otelfleet-simulate"
	closed := make(chan struct{})
	var closeOnce sync.Once
	nc, err := natsconn.Connect(opts, log, func(st nats.Status) {
		if st == nats.CLOSED {
			closeOnce.Do(func() { close(closed) })
		}
	})
	if err != nil {
		return usageError("%v", err)
	}
	defer func() {
		// The connection logs its closing from callbacks; let them finish, then silence
		// the log before the command's own last words go to the same stderr.
		nc.Close()
		select {
		case <-closed:
		case <-time.After(time.Second):
		}
		logw.close()
	}()
	wctx, cancel := context.WithTimeout(ctx, env.timeout)
	err = natsconn.WaitConnected(wctx, nc)
	cancel()
	if err != nil {
		if ctx.Err() != nil {
			return nil
		}
		return &exitError{code: exitUnreachable, err: fmt.Errorf("%w at %s: not connected within %v", natsconn.ErrUnreachable, env.nats.URL, env.timeout)}
	}
	js, err := jetstream.New(nc)
	if err != nil {
		return err
	}
	octx, cancel := context.WithTimeout(ctx, env.timeout)
	registry, err := js.KeyValue(octx, ns.RegistryBucket())
	cancel()
	if err != nil {
		return refused(fmt.Errorf("open KV bucket %s at %s (is an otelfleet service running? try otelfleet dev): %w", ns.RegistryBucket(), env.nats.URL, err))
	}
	if err := simulatedIDsFree(ctx, registry, cfg, env.timeout); err != nil {
		if ctx.Err() != nil {
			return nil
		}
		return err
	}

	sim, err := simfleet.New(nc, ns, registry, cfg, log, nil, simfleet.WithSource(events.Source("simulate", platform.DefaultInstanceID())))
	if err != nil {
		return usageError("%v", err)
	}
	sctx, cancel := context.WithTimeout(ctx, max(env.timeout, 10*time.Second))
	err = sim.Start(sctx)
	cancel()
	if err != nil {
		if ctx.Err() != nil {
			return nil
		}
		return err
	}
	fmt.Fprintf(env.stderr, "otelfleet simulate: %d collectors in %s, pattern %s, %v reports; Ctrl-C deregisters them\n",
		cfg.Regions*cfg.Collectors, strings.Join(simfleet.RegionNames(cfg.Regions), ", "), cfg.Pattern, cfg.Interval)
	<-ctx.Done()
	stopCtx, cancel := context.WithTimeout(context.Background(), max(env.timeout, 5*time.Second))
	defer cancel()
	if err := sim.Stop(stopCtx); err != nil {
		return errors.New("simulate: some collectors were not deregistered and will expire: " + err.Error())
	}
	if err := nc.FlushTimeout(time.Second); err != nil {
		log.Debug("final flush", "err", err)
	}
	return nil
}

// simulatedIDsFree refuses a fleet whose collector ids are already registered. Two
// fleets with the same ids (this one next to otelfleet dev's, both "sim-…") would
// overwrite each other's registrations and load reports, and stopping one would
// deregister the other's collectors.
func simulatedIDsFree(ctx context.Context, registry jetstream.KeyValue, cfg simfleet.Config, timeout time.Duration) error {
	lctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	lister, err := registry.ListKeysFiltered(lctx, events.CollectorKeys)
	if err != nil {
		return fmt.Errorf("list the registered collectors: %w", err)
	}
	registered := map[string]bool{}
	for k := range lister.Keys() {
		registered[k] = true
	}
	if err := lctx.Err(); err != nil {
		return fmt.Errorf("list the registered collectors: %w", err)
	}
	var taken []string
	for _, region := range simfleet.RegionNames(cfg.Regions) {
		for n := 1; n <= cfg.Collectors; n++ {
			key, err := events.CollectorKey(region, simfleet.CollectorID(cfg.IDPrefix, region, n))
			if err == nil && registered[key] {
				taken = append(taken, key)
			}
		}
	}
	if len(taken) == 0 {
		return nil
	}
	what := taken[0] + " is"
	if len(taken) > 1 {
		what = fmt.Sprintf("%s and %d more are", taken[0], len(taken)-1)
	}
	return refused(fmt.Errorf("simulate: %s already registered (another simulated fleet? otelfleet dev runs one with the default prefix sim); pick other ids with --id-prefix, or wait for them to expire", what))
}

// gatedWriter serialises log writes and drops them once closed, so that a NATS callback
// logging late cannot interleave with (or race) the command's final output.
type gatedWriter struct {
	mu     sync.Mutex
	w      io.Writer
	closed bool
}

func (g *gatedWriter) Write(p []byte) (int, error) {
	g.mu.Lock()
	defer g.mu.Unlock()
	if g.closed {
		return len(p), nil
	}
	return g.w.Write(p)
}

func (g *gatedWriter) close() {
	g.mu.Lock()
	defer g.mu.Unlock()
	g.closed = true
}
