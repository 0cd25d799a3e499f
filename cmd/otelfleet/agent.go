package main

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"strings"
	"sync"

	"github.com/otelfleet/otelfleet/pkg/events"
	"github.com/otelfleet/otelfleet/pkg/platform"
	"github.com/otelfleet/otelfleet/pkg/registration"
	"github.com/otelfleet/otelfleet/pkg/sysstat"
)

const agentUsage = `agent --region R --id ID --endpoint HOST:PORT [--capacity-qps N] [--name NAME] [--meta k=v,...]
      [--metrics-url URL [--metrics-interval 1s] [--collector-cpus N]]

Registers one collector in the otlp_registry bucket and heart-beats (with the collector's
health: with --metrics-url its process CPU and memory and its exporter queues; changes
only after --health-worse-after / --health-better-after heartbeats agree) until stopped. SIGINT/SIGTERM deregister it at once; a kill -9
leaves it to expire after the registry TTL. With --metrics-url it also scrapes the
collector's own Prometheus metrics (e.g. http://127.0.0.1:8888/metrics) and publishes
its load report (qps, error rate, queue, CPU, memory, capacity) on
<root>.load.<region>.<id> every interval.`

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
	var mo agentMetricsOptions // --metrics-url and friends: agent_metrics.go
	mo.bind(k)
	hy := platform.DefaultHealthHysteresis()
	hy.Bind(k)
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
	if err := mo.validate(); err != nil {
		return usageError("agent: %v", err)
	}
	// The registration describes the collector, not this agent: its health comes from
	// the collector's own metrics (--metrics-url: process CPU and memory, exporter
	// queues). Without them there are no readings of its process to judge.
	src, err := mo.source(o.capacity, slog.New(slog.NewTextHandler(env.stderr, &slog.HandlerOptions{Level: slog.LevelWarn})))
	if err != nil {
		return usageError("agent: %v", err)
	}
	var readings registration.Sampler = noCollectorReadings{}
	var checks []registration.Check
	if src != nil {
		readings, checks = src, []registration.Check{src.QueueCheck}
	}
	if healthReadings != nil {
		readings = healthReadings
	}
	cfg := registration.Config{
		Kind: events.KindCollector, ID: o.id, Region: o.region, Name: o.name, Address: o.endpoint,
		CapacityQPS: o.capacity, Metadata: meta, Version: platform.Version, Sampler: readings, Checks: checks, Hysteresis: hy,
	}
	if err := cfg.Validate(); err != nil {
		return usageError("agent: %v", err)
	}

	nc, js, log, err := env.longLived(ctx, "agent-"+o.id)
	if err != nil {
		return err
	}
	defer nc.Close()
	kv, err := env.bucket(ctx, js, events.Namespace.RegistryBucket)
	if err != nil {
		return err
	}
	client, err := registration.New(kv, cfg, log)
	if err != nil {
		return err
	}
	fmt.Fprintf(env.stderr, "otelfleet agent: registering %s at %s (Ctrl-C deregisters)\n", client.Key(), env.nats.URL)
	tasks := []agentTask{client.Run}
	// --metrics-url: scrape the collector and publish its load (agent_metrics.go).
	ns, err := env.namespace()
	if err != nil {
		return err
	}
	if src != nil {
		load, err := agentLoadTask(nc, ns, o.region, o.id, src, mo, log, nil)
		if err != nil {
			return usageError("agent: %v", err)
		}
		fmt.Fprintf(env.stderr, "otelfleet agent: reporting load scraped from %s every %v\n", mo.url, mo.interval)
		tasks = append(tasks, load)
	}
	return runTasks(ctx, tasks)
}

// noCollectorReadings is the agent's health sampler without --metrics-url: it has no
// readings of the collector's process, so the registration judges none (its own
// process is not the collector).
type noCollectorReadings struct{}

// Sample implements registration.Sampler.
func (noCollectorReadings) Sample() (sysstat.Reading, error) {
	return sysstat.Reading{}, errors.New("no readings of the collector's process without --metrics-url")
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
