package main

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"strconv"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/otelfleet/otelfleet/pkg/events"
	"github.com/otelfleet/otelfleet/pkg/kvwatch"
	"github.com/otelfleet/otelfleet/pkg/natsconn"
	registrysvc "github.com/otelfleet/otelfleet/services/registry"
)

const registryUsage = `registry COMMAND [flags]

Commands:
  ls [--kind collector|service] [--region R] [--health H] [-o table|json]
      live registrations, read from the otlp_registry bucket (works without the
      registry service running)`

func runRegistry(ctx context.Context, env *cliEnv, args []string) error {
	return env.dispatch(ctx, "registry", registryUsage, args, "", map[string]subcommand{"ls": registryLs, "list": registryLs})
}

func registryLs(ctx context.Context, env *cliEnv, args []string) error {
	fs, _ := env.flags("registry ls", "registry ls [--kind collector|service] [--region R] [--health H] [-o table|json]")
	kind := fs.String("kind", "", "only this kind: collector or service")
	region := fs.String("region", "", "only this region")
	health := fs.String("health", "", "only this health: healthy, degraded or unhealthy")
	out := outputFlag(fs, "table", "json")
	if _, err := parse(fs, args); err != nil {
		return err
	}
	if *kind != "" && *kind != events.KindCollector && *kind != events.KindService {
		return usageError("--kind %q: want collector or service", *kind)
	}
	if *health != "" && !events.HealthStatus(*health).Valid() {
		return usageError("--health %q: want healthy, degraded or unhealthy", *health)
	}
	nc, js, err := env.jetStream()
	if err != nil {
		return err
	}
	defer nc.Close()
	kv, err := env.bucket(ctx, js, events.Namespace.RegistryBucket)
	if err != nil {
		return err
	}
	all, err := env.readRegistry(ctx, kv)
	if err != nil {
		return err
	}
	regs := make([]events.Registration, 0, len(all))
	for _, r := range all {
		if (*kind == "" || r.InstanceKind == *kind) && (*region == "" || r.Region == *region) && (*health == "" || string(r.Health.Status) == *health) {
			regs = append(regs, r)
		}
	}
	registrysvc.SortRegistrations(regs)
	if *out == "json" {
		return env.printJSON(regs)
	}
	tw := env.table()
	fmt.Fprintln(tw, "KIND\tREGION\tNAME\tID\tADDRESS\tHEALTH\tCPU\tMEM\tCAPACITY\tVERSION\tREGISTERED\tHEARTBEAT")
	for _, r := range regs {
		capacity := "-"
		if r.CapacityQPS > 0 {
			capacity = strconv.FormatFloat(r.CapacityQPS, 'f', -1, 64) + "/s"
		}
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\t%s\t%.0f%%\t%.0f%%\t%s\t%s\t%s\t%s\n",
			r.InstanceKind, dash(r.Region), dash(r.Name), r.ID, dash(r.Address), r.Health.Status,
			r.Health.CPU*100, r.Health.Memory*100, capacity, dash(r.Version), since(r.RegisteredAt), since(r.UpdatedAt))
	}
	if err := tw.Flush(); err != nil {
		return err
	}
	if len(regs) == 0 {
		fmt.Fprintln(env.stderr, "no registrations")
	}
	return nil
}

// readRegistry reads every live registration with one watch (no per-key round trips),
// warning on stderr about values that do not decode.
func (env *cliEnv) readRegistry(ctx context.Context, kv jetstream.KeyValue) ([]events.Registration, error) {
	ctx, cancel := context.WithTimeout(ctx, env.timeout)
	defer cancel()
	entries, err := kvwatch.Current(ctx, kv)
	if err != nil {
		return nil, err
	}
	out := []events.Registration{}
	for _, e := range entries {
		r, err := events.DecodeRegistration(e.Value())
		if err != nil {
			fmt.Fprintf(env.stderr, "warning: %s: %v\n", e.Key(), err)
			continue
		}
		out = append(out, r)
	}
	return out, nil
}

// bucket opens one of the contract's KV buckets without creating it.
func (env *cliEnv) bucket(ctx context.Context, js jetstream.JetStream, name func(events.Namespace) string) (jetstream.KeyValue, error) {
	ns, err := env.namespace()
	if err != nil {
		return nil, err
	}
	ctx, cancel := context.WithTimeout(ctx, env.timeout)
	defer cancel()
	kv, err := js.KeyValue(ctx, name(ns))
	if err != nil {
		if errors.Is(err, jetstream.ErrBucketNotFound) {
			return nil, refused(fmt.Errorf("KV bucket %s does not exist at %s: start an otelfleet service (or otelfleet dev) first", name(ns), env.nats.URL))
		}
		return nil, fmt.Errorf("open KV bucket %s at %s: %w", name(ns), env.nats.URL, err)
	}
	return kv, nil
}

// longLived opens a connection for commands that run until stopped (agent, elect,
// lock): it fails fast with exit code 3 when NATS is unreachable, then reconnects
// forever (with backoff) after every loss, logging state changes on stderr.
func (env *cliEnv) longLived(ctx context.Context, name string) (*nats.Conn, jetstream.JetStream, *slog.Logger, error) {
	probe, err := env.dial()
	if err != nil {
		return nil, nil, nil, err
	}
	probe.Close()
	log := slog.New(slog.NewTextHandler(env.stderr, &slog.HandlerOptions{Level: slog.LevelWarn}))
	opts := env.nats
	opts.Name = "otelfleet-" + name
	nc, err := natsconn.Connect(opts, log, nil)
	if err != nil {
		return nil, nil, nil, err
	}
	wctx, cancel := context.WithTimeout(ctx, env.timeout)
	defer cancel()
	if err := natsconn.WaitConnected(wctx, nc); err != nil {
		nc.Close()
		return nil, nil, nil, &exitError{code: exitUnreachable, err: fmt.Errorf("%w at %s: %v", natsconn.ErrUnreachable, env.nats.URL, err)}
	}
	js, err := jetstream.New(nc)
	if err != nil {
		nc.Close()
		return nil, nil, nil, err
	}
	return nc, js, log, nil
}

func dash(s string) string {
	if s == "" {
		return "-"
	}
	return s
}
