package main

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"sync"

	"github.com/otelfleet/otelfleet/pkg/events"
	"github.com/otelfleet/otelfleet/pkg/platform"
	"github.com/otelfleet/otelfleet/pkg/registration"
)

const agentUsage = `agent --region R --id ID --endpoint HOST:PORT [--capacity-qps N] [--name NAME] [--meta k=v,...]

Registers one collector in the otlp_registry bucket and heart-beats (with CPU and memory
health of this host) until stopped. SIGINT/SIGTERM deregister it at once; a kill -9
leaves it to expire after the registry TTL.`

// agentOptions are the flags of `otelfleet agent`.
type agentOptions struct {
	region, id, endpoint, name, meta string
	capacity                         float64
}

// agentTask is one activity of the agent, run until ctx ends. The registration
// heartbeat is one; a later --metrics-url adds a load reporter that scrapes the
// collector and publishes load reports (and may call client.Update with capacity).
type agentTask func(ctx context.Context) error

func runAgent(ctx context.Context, env *cliEnv, args []string) error {
	var o agentOptions
	fs, k := env.flags("agent", agentUsage)
	k.String(&o.region, "region", "REGION", "", "region of the collector (required)")
	k.String(&o.id, "id", "COLLECTOR_ID", "", "collector id, unique in its region (required)")
	k.String(&o.endpoint, "endpoint", "COLLECTOR_ENDPOINT", "", "the collector's OTLP endpoint HOST:PORT (required)")
	k.Float(&o.capacity, "capacity-qps", "COLLECTOR_CAPACITY_QPS", 0, "spans per second the collector can take (0: unknown)")
	k.String(&o.name, "name", "", "", "display name")
	k.String(&o.meta, "meta", "", "", "metadata labels k=v, comma-separated")
	pos, err := parse(fs, args)
	if err != nil {
		return err
	}
	if len(pos) > 0 {
		return usageError("agent: unexpected argument %q", pos[0])
	}
	if err := k.Err(); err != nil {
		return usageError("%v", err)
	}
	meta, err := o.validate()
	if err != nil {
		return usageError("agent: %v", err)
	}
	cfg := registration.Config{
		Kind: events.KindCollector, ID: o.id, Region: o.region, Name: o.name, Address: o.endpoint,
		CapacityQPS: o.capacity, Metadata: meta, Version: platform.Version,
	}
	if err := cfg.Validate(); err != nil {
		return usageError("agent: %v", err)
	}

	nc, js, log, err := env.longLived(ctx, "agent-"+o.id)
	if err != nil {
		return err
	}
	defer nc.Close()
	kv, err := env.bucket(ctx, js, func(ns events.Namespace) string { return ns.RegistryBucket() })
	if err != nil {
		return err
	}
	client, err := registration.New(kv, cfg, log)
	if err != nil {
		return err
	}
	fmt.Fprintf(env.stderr, "otelfleet agent: registering %s at %s (Ctrl-C deregisters)\n", client.Key(), env.nats.URL)
	tasks := []agentTask{client.Run}
	return runTasks(ctx, tasks)
}

// validate checks the required flags and parses --meta.
func (o agentOptions) validate() (map[string]string, error) {
	var errs []error
	for _, f := range []struct{ flag, v string }{{"--region", o.region}, {"--id", o.id}, {"--endpoint", o.endpoint}} {
		if f.v == "" {
			errs = append(errs, fmt.Errorf("%s is required", f.flag))
		}
	}
	if o.capacity < 0 {
		errs = append(errs, fmt.Errorf("--capacity-qps %v: must be >= 0", o.capacity))
	}
	var meta map[string]string
	if o.meta != "" {
		meta = map[string]string{}
		for _, kv := range strings.Split(o.meta, ",") {
			k, v, ok := strings.Cut(kv, "=")
			if !ok || k == "" {
				errs = append(errs, fmt.Errorf("--meta %q: want k=v", kv))
				continue
			}
			meta[k] = v
		}
	}
	return meta, errors.Join(errs...)
}

// runTasks runs every task until ctx ends or one fails; the others are then stopped
// and waited for. It returns the first error.
func runTasks(ctx context.Context, tasks []agentTask) error {
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	var wg sync.WaitGroup
	errs := make(chan error, len(tasks))
	for _, task := range tasks {
		wg.Add(1)
		go func() {
			defer wg.Done()
			err := task(ctx)
			if err != nil {
				cancel()
			}
			errs <- err
		}()
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		if err != nil {
			return err
		}
	}
	return nil
}
