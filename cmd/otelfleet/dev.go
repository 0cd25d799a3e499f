package main

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"strings"
	"time"

	"github.com/nats-io/nats.go"
	"go.uber.org/fx"

	"github.com/otelfleet/otelfleet/pkg/configwatch"
	"github.com/otelfleet/otelfleet/pkg/knobs"
	"github.com/otelfleet/otelfleet/pkg/natsembed"
	"github.com/otelfleet/otelfleet/pkg/otlpsink"
	"github.com/otelfleet/otelfleet/pkg/platform"
	"github.com/otelfleet/otelfleet/pkg/registration"
	"github.com/otelfleet/otelfleet/pkg/simfleet"
	configsvc "github.com/otelfleet/otelfleet/services/config"
	registrysvc "github.com/otelfleet/otelfleet/services/registry"
	routersvc "github.com/otelfleet/otelfleet/services/router"
	samplersvc "github.com/otelfleet/otelfleet/services/sampler"
	topologysvc "github.com/otelfleet/otelfleet/services/topology"
)

// devOptions are the flags of `otelfleet dev`.
type devOptions struct {
	dataDir  string
	natsHost string
	natsPort int
	services string
	config   configsvc.Config
	registry registrysvc.Config
	topology topologysvc.Config
	sampler  samplersvc.Config
	router   routersvc.Config
	natsLog  bool
	simulate bool
	// runRouter runs the OTLP router in-process (--router); sinks is how many OTLP sinks
	// run next to it as its backends (--sinks).
	runRouter bool
	sinks     int
}

// devService is one service `otelfleet dev` can run in-process, wired by the same fx
// module as its standalone binary.
type devService struct {
	name   string
	module func(o *devOptions) fx.Option
}

// devServices lists the services in start order.
var devServices = []devService{
	{name: "config", module: func(o *devOptions) fx.Option { return configsvc.Module(o.config) }},
	{name: "registry", module: func(o *devOptions) fx.Option { return registrysvc.Module(o.registry) }},
	{name: "topology", module: func(o *devOptions) fx.Option { return topologysvc.Module(o.topology) }},
	{name: "sampler", module: func(o *devOptions) fx.Option { return samplersvc.Module(o.sampler) }},
}

func devServiceNames() []string { return names(devServices) }

// selectServices parses --services.
func selectServices(list string) ([]devService, error) {
	if strings.TrimSpace(list) == "" || list == "all" {
		return devServices, nil
	}
	var out []devService
	for _, name := range strings.Split(list, ",") {
		name = strings.TrimSpace(name)
		i := slices.IndexFunc(devServices, func(s devService) bool { return s.name == name })
		if i < 0 {
			return nil, fmt.Errorf("--services: unknown service %q (known: %s)", name, strings.Join(devServiceNames(), ", "))
		}
		out = append(out, devServices[i])
	}
	return out, nil
}

func runDev(ctx context.Context, env *cliEnv, args []string) error {
	s := platform.DefaultSettings("dev")
	s.AdminAddr = "127.0.0.1:8080"
	s.LogFormat = "text"
	s.Reconcile = true // dev owns its embedded server: --registry-ttl and --lease-ttl apply
	o := &devOptions{config: configsvc.DefaultConfig(), registry: registrysvc.DefaultConfig(), topology: topologysvc.DefaultConfig(), sampler: samplersvc.DefaultConfig(), router: routersvc.DefaultConfig()}
	o.sampler.Addr = "127.0.0.1:5778"
	o.router.GRPCAddr, o.router.HTTPAddr = "127.0.0.1:4317", "127.0.0.1:4318"
	fs, k := env.flags("dev", "dev [flags]")
	k.String(&o.dataDir, "data-dir", "OTELFLEET_DATA_DIR", "./.data", "directory of the embedded NATS JetStream store (state survives restarts)")
	k.String(&o.natsHost, "nats-host", "", "127.0.0.1", "embedded NATS client listen host")
	k.Int(&o.natsPort, "nats-port", "", 4222, "embedded NATS client port")
	k.Bool(&o.natsLog, "nats-log", "", false, "log the embedded NATS server's own messages")
	k.Bool(&o.simulate, "simulate", "OTELFLEET_SIMULATE", true, "run a simulated fleet (3 regions x 4 collectors, steady traffic) that registers and reports load; see otelfleet simulate")
	k.Bool(&o.runRouter, "router", "OTELFLEET_ROUTER", true, "run the OTLP router in-process (OTLP on --otlp-grpc-addr and --otlp-http-addr)")
	k.Int(&o.sinks, "sinks", "OTELFLEET_SINKS", 3, "OTLP sinks to run as the router's backends (collectors sink-1..N in --region, on free loopback ports; counts at /v1/sinks/<id>)")
	k.String(&o.services, "services", "OTELFLEET_SERVICES", "all", "comma-separated services to run in-process: "+strings.Join(devServiceNames(), ", "))
	bindDevSettings(k, &s)
	o.config.Bind(k)
	o.registry.Bind(k)
	o.topology.Bind(k)
	o.sampler.Bind(k)
	o.router.Bind(k)
	if _, err := parse(fs, args); err != nil {
		return err
	}
	if err := k.Err(); err != nil {
		return usageError("%v", err)
	}
	selected, err := selectServices(o.services)
	if err != nil {
		return usageError("%v", err)
	}
	if o.sinks < 0 || o.sinks > 100 {
		return usageError("--sinks %d: want 0..100", o.sinks)
	}
	err = errors.Join(o.config.Validate(), o.registry.Validate(), o.topology.Validate(), o.sampler.Validate(), o.router.Validate(), s.Validate())
	if err == nil {
		err = o.config.Load()
	}
	if err != nil {
		return usageError("%v", err)
	}

	srv, err := natsembed.Start(natsembed.Options{DataDir: o.dataDir, Host: o.natsHost, Port: o.natsPort, Debug: o.natsLog})
	if err != nil {
		return err
	}
	defer srv.Stop()
	s.NATS.URL = srv.ClientURL()

	opts := []fx.Option{platform.Options(s), platform.Module(s), configwatch.Module}
	for _, svc := range selected {
		opts = append(opts, svc.module(o), registration.SelfModule(svc.name))
	}
	if o.runRouter {
		opts = append(opts, routersvc.Module(o.router)) // it registers itself
	}
	if o.sinks > 0 {
		sc := otlpsink.DefaultConfig()
		sc.GRPCAddr, sc.HTTPAddr = "127.0.0.1:0", "127.0.0.1:0"
		opts = append(opts, otlpsink.Module(otlpsink.Fleet{Count: o.sinks, Config: sc, CapacityQPS: 50000}), fx.Invoke(func(otlpsink.Sinks) {}))
	}
	if o.simulate {
		opts = append(opts, simfleet.Module(simfleet.DefaultConfig()))
	}
	var nc *nats.Conn
	app := fx.New(append(opts, fx.Populate(&nc))...)
	if err := app.Err(); err != nil {
		return err
	}
	startCtx, cancel := context.WithTimeout(ctx, 15*time.Second)
	defer cancel()
	if err := app.Start(startCtx); err != nil {
		// fx rolls back the hooks that started; the connection was opened by a
		// constructor, so close it here or it would reconnect forever.
		nc.Close()
		return fmt.Errorf("dev: start: %w", err)
	}
	fmt.Fprintf(env.stderr, "otelfleet dev: NATS %s · admin http://%s · services %s · data %s\n",
		srv.ClientURL(), s.AdminAddr, strings.Join(names(selected), ","), o.dataDir)
	if o.runRouter {
		fmt.Fprintf(env.stderr, "otelfleet dev: OTLP router on %s (gRPC) and http://%s (HTTP), %d sinks as its backends (otelfleet router status)\n",
			o.router.GRPCAddr, o.router.HTTPAddr, o.sinks)
	}
	fmt.Fprintln(env.stderr, "otelfleet dev: press Ctrl-C to stop")
	<-ctx.Done()
	stopCtx, cancelStop := context.WithTimeout(context.Background(), s.StopTimeout)
	defer cancelStop()
	if err := app.Stop(stopCtx); err != nil {
		return fmt.Errorf("dev: stop: %w", err)
	}
	return nil
}

// bindDevSettings registers the shared settings that make sense for the dev stack.
func bindDevSettings(k *knobs.Set, s *platform.Settings) {
	k.String(&s.AdminAddr, "admin-addr", "ADMIN_ADDR", s.AdminAddr, "admin HTTP address shared by every in-process service")
	k.String(&s.Region, "region", "REGION", s.Region, "region of the in-process services")
	k.String(&s.LogLevel, "log-level", "LOG_LEVEL", s.LogLevel, "log level: debug, info, warn, error")
	k.String(&s.LogFormat, "log-format", "LOG_FORMAT", s.LogFormat, "log format: json or text")
	k.Duration(&s.RegistryTTL, "registry-ttl", "REGISTRY_TTL", s.RegistryTTL, "registration TTL")
	k.Duration(&s.LeaseTTL, "lease-ttl", "LEASE_TTL", s.LeaseTTL, "leader lease TTL")
}

func names(ss []devService) []string {
	out := make([]string, len(ss))
	for i, s := range ss {
		out[i] = s.name
	}
	return out
}
