package main

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"net"
	"os"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/nats-io/nats.go"
	"go.uber.org/fx"

	"github.com/otelfleet/otelfleet/pkg/configwatch"
	"github.com/otelfleet/otelfleet/pkg/events"
	"github.com/otelfleet/otelfleet/pkg/knobs"
	"github.com/otelfleet/otelfleet/pkg/natsembed"
	"github.com/otelfleet/otelfleet/pkg/otlpsink"
	"github.com/otelfleet/otelfleet/pkg/platform"
	"github.com/otelfleet/otelfleet/pkg/registration"
	"github.com/otelfleet/otelfleet/pkg/simfleet"
	configsvc "github.com/otelfleet/otelfleet/services/config"
	opampsvc "github.com/otelfleet/otelfleet/services/opamp"
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
	opamp    opampsvc.Config
	natsLog  bool
	simulate bool
	// runRouter runs the OTLP router in-process (--router); sinks is how many OTLP sinks
	// run next to it as its backends (--sinks).
	runRouter bool
	sinks     int
	// auth runs the embedded server with the identities of authConfig (--auth,
	// --auth-config) and each in-process service as its own app with its own identity;
	// authEnv holds the passwords (KEY=VALUE, set where the environment has none).
	auth       bool
	authConfig string
	authEnv    string
}

// healthReadings, when set, replaces the real CPU and memory readings behind the health
// of the collectors this CLI registers (dev's sinks, otelfleet sink, otelfleet agent).
// Nil (always, outside tests): real readings. The package's tests set fixed readings: on
// a saturated test machine the host CPU check would mark every backend unhealthy, and
// the router would have none, which is not what those tests are about.
var healthReadings registration.Sampler

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
	{name: "opamp", module: func(o *devOptions) fx.Option { return opampsvc.Module(o.opamp) }},
}

// devServiceNames are the names --services takes: the services, then the router.
func devServiceNames() []string { return append(names(devServices), events.ServiceRouter) }

// selectServices parses --services; router says whether it names the router (always
// with "all"), which runs by its own module (--router).
func selectServices(list string) (_ []devService, router bool, _ error) {
	if strings.TrimSpace(list) == "" || list == "all" {
		return devServices, true, nil
	}
	var out []devService
	for _, name := range strings.Split(list, ",") {
		name = strings.TrimSpace(name)
		if name == events.ServiceRouter {
			router = true
			continue
		}
		i := slices.IndexFunc(devServices, func(s devService) bool { return s.name == name })
		if i < 0 {
			return nil, false, fmt.Errorf("--services: unknown service %q (known: %s)", name, strings.Join(devServiceNames(), ", "))
		}
		out = append(out, devServices[i])
	}
	return out, router, nil
}

func runDev(ctx context.Context, env *cliEnv, args []string) error {
	s := platform.DefaultSettings("dev")
	s.AdminAddr = "127.0.0.1:8080"
	s.LogFormat = "text"
	s.Reconcile = true // dev owns its embedded server: --registry-ttl and --lease-ttl apply
	s.LogOutput = env.stderr
	o := &devOptions{config: configsvc.DefaultConfig(), registry: registrysvc.DefaultConfig(), topology: topologysvc.DefaultConfig(), sampler: samplersvc.DefaultConfig(), router: routersvc.DefaultConfig(), opamp: opampsvc.DefaultConfig()}
	o.sampler.Addr = "127.0.0.1:5778"
	o.router.GRPCAddr, o.router.HTTPAddr = "127.0.0.1:4317", "127.0.0.1:4318"
	o.opamp.Addr = fmt.Sprintf("127.0.0.1:%d", events.OpAMPPort)
	fs, k := env.flags("dev", "dev [flags]")
	k.String(&o.dataDir, "data-dir", "OTELFLEET_DATA_DIR", "./.data", "directory of the embedded NATS JetStream store (state survives restarts)")
	k.String(&o.natsHost, "nats-host", "", "127.0.0.1", "embedded NATS client listen host")
	k.Int(&o.natsPort, "nats-port", "", 4222, "embedded NATS client port")
	k.Bool(&o.natsLog, "nats-log", "", false, "log the embedded NATS server's own messages")
	k.Bool(&o.simulate, "simulate", "OTELFLEET_SIMULATE", true, "run a simulated fleet (3 regions x 4 collectors, steady traffic) that registers and reports load; see otelfleet simulate")
	k.Bool(&o.runRouter, "router", "OTELFLEET_ROUTER", true, "run the OTLP router in-process (OTLP on --otlp-grpc-addr and --otlp-http-addr)")
	k.Int(&o.sinks, "sinks", "OTELFLEET_SINKS", 3, "OTLP sinks to run as the router's backends (collectors sink-1..N in --region, on free loopback ports; counts at /v1/sinks/<id>)")
	k.Bool(&o.auth, "auth", "OTELFLEET_DEV_AUTH", false, "run NATS with the identities and permissions of --auth-config, each service connecting as its own identity (default: open on loopback)")
	k.String(&o.authConfig, "auth-config", "OTELFLEET_DEV_AUTH_CONFIG", "deploy/nats/nats.conf", "nats-server config with the identities, for --auth")
	k.String(&o.authEnv, "auth-env", "OTELFLEET_DEV_AUTH_ENV", "deploy/nats/dev.env", "KEY=VALUE file of the identities' passwords (OTELFLEET_PASSWORD_<USER>), for --auth; variables already set win")
	k.String(&o.services, "services", "OTELFLEET_SERVICES", "all", "comma-separated services to run in-process: "+strings.Join(devServiceNames(), ", ")+" (or all; the router also needs --router, on by default)")
	bindDevSettings(k, &s)
	o.config.Bind(k)
	o.registry.Bind(k)
	o.topology.Bind(k)
	o.router.Bind(k)
	o.sampler.Bind(k)
	o.opamp.Bind(k)
	if _, err := parse(fs, args); err != nil {
		return err
	}
	if err := k.Err(); err != nil {
		return usageError("%v", err)
	}
	selected, router, err := selectServices(o.services)
	if err != nil {
		return usageError("%v", err)
	}
	// The router runs when --services names it (or is all) and --router is not false.
	o.runRouter = o.runRouter && router
	if o.sinks < 0 || o.sinks > 100 {
		return usageError("--sinks %d: want 0..100", o.sinks)
	}
	if o.auth && o.sinks > 3 {
		return usageError("--sinks %d with --auth: deploy/nats/auth.conf has identities sink-1..sink-3 only (docs/SECURITY.md: add a collector identity)", o.sinks)
	}
	err = errors.Join(o.config.Validate(), o.registry.Validate(), o.topology.Validate(), o.sampler.Validate(), o.router.Validate(), o.opamp.Validate(), s.Validate())
	if err == nil {
		err = o.config.Load()
	}
	if err != nil {
		return usageError("%v", err)
	}

	no := natsembed.Options{DataDir: o.dataDir, Host: o.natsHost, Port: o.natsPort, Debug: o.natsLog}
	if o.auth {
		if err := natsembed.LoadEnvFile(o.authEnv); err != nil {
			return usageError("--auth-env: %v", err)
		}
		no.ConfigFile = o.authConfig
	}
	srv, err := natsembed.Start(no)
	if err != nil {
		return err
	}
	defer srv.Stop()
	s.NATS.URL = srv.ClientURL()

	apps, admins, err := startDevApps(ctx, s, devApps(o, selected))
	if err != nil {
		return err
	}
	fmt.Fprintf(env.stderr, "otelfleet dev: NATS %s · admin http://%s · services %s · data %s\n",
		srv.ClientURL(), admins[0].addr, strings.Join(names(selected), ","), o.dataDir)
	if o.auth {
		for _, a := range admins {
			fmt.Fprintf(env.stderr, "otelfleet dev: %s's admin server on http://%s\n", a.identity, a.addr)
		}
	}
	if o.runRouter {
		fmt.Fprintf(env.stderr, "otelfleet dev: OTLP router on %s (gRPC) and http://%s (HTTP), %d sinks as its backends (otelfleet router status)\n",
			o.router.GRPCAddr, o.router.HTTPAddr, o.sinks)
	}
	fmt.Fprintln(env.stderr, "otelfleet dev: press Ctrl-C to stop")
	<-ctx.Done()
	stopCtx, cancelStop := context.WithTimeout(context.Background(), s.StopTimeout)
	defer cancelStop()
	var errs []error
	for i := len(apps) - 1; i >= 0; i-- {
		errs = append(errs, apps[i].Stop(stopCtx))
	}
	if err := errors.Join(errs...); err != nil {
		return fmt.Errorf("dev: stop: %w", err)
	}
	return nil
}

// devApp is one fx app of `otelfleet dev`: its NATS identity ("" without --auth, where
// one app runs everything) and its modules.
type devApp struct {
	identity string
	opts     []fx.Option
}

// devApps lays the stack out: without --auth, one app and one connection for everything;
// with it, one app per identity of deploy/nats/auth.conf (each service, the router, each
// sink, the simulator), so every part runs with exactly the rights it has in production.
func devApps(o *devOptions, selected []devService) []devApp {
	sinkConfig := otlpsink.DefaultConfig()
	sinkConfig.GRPCAddr, sinkConfig.HTTPAddr = "127.0.0.1:0", "127.0.0.1:0"
	sinks := func(offset, n int) fx.Option {
		return fx.Options(otlpsink.Module(otlpsink.Fleet{Count: n, Offset: offset, Config: sinkConfig, CapacityQPS: 50000, Readings: healthReadings}), fx.Invoke(func(otlpsink.Sinks) {}))
	}
	if !o.auth {
		opts := []fx.Option{configwatch.Module}
		for _, svc := range selected {
			opts = append(opts, svc.module(o), registration.SelfModule(svc.name))
		}
		if o.runRouter {
			opts = append(opts, routersvc.Module(o.router)) // it registers itself
		}
		if o.sinks > 0 {
			opts = append(opts, sinks(0, o.sinks))
		}
		if o.simulate {
			opts = append(opts, simfleet.Module(simfleet.DefaultConfig()))
		}
		return []devApp{{opts: opts}}
	}
	var out []devApp
	for _, svc := range selected {
		out = append(out, devApp{identity: svc.name, opts: []fx.Option{configwatch.Module, svc.module(o), registration.SelfModule(svc.name)}})
	}
	if o.runRouter {
		out = append(out, devApp{identity: "router", opts: []fx.Option{configwatch.Module, routersvc.Module(o.router)}})
	}
	for i := range o.sinks {
		out = append(out, devApp{identity: fmt.Sprintf("sink-%d", i+1), opts: []fx.Option{sinks(i, 1)}})
	}
	if o.simulate {
		out = append(out, devApp{identity: "simulate", opts: []fx.Option{simfleet.Module(simfleet.DefaultConfig())}})
	}
	return out
}

// startDevApps builds and starts the apps in order and returns them with their admin
// addresses. With identities, the first app (config) provisions the streams and buckets
// (the config service's right) and the others wait for the buckets; each serves its
// admin endpoints on devAdminAddr (s.AdminAddr's port plus its place in devAdminOrder).
// On a failure the apps already started are stopped.
func startDevApps(ctx context.Context, s platform.Settings, layout []devApp) ([]*fx.App, []devAdmin, error) {
	var apps []*fx.App
	var admins []devAdmin
	stopAll := func() {
		stopCtx, cancel := context.WithTimeout(context.Background(), s.StopTimeout)
		defer cancel()
		for i := len(apps) - 1; i >= 0; i-- {
			_ = apps[i].Stop(stopCtx)
		}
	}
	for i, a := range layout {
		as := s
		if a.identity != "" {
			as.Process = a.identity
			as.NATS.User, as.NATS.Password = a.identity, os.Getenv(passwordVar(a.identity))
			as.Provision = i == 0 && a.identity == "config"
			as.Reconcile = as.Provision
			addr, err := devAdminAddr(s.AdminAddr, a.identity)
			if err != nil {
				stopAll()
				return nil, nil, err
			}
			as.AdminAddr = addr
		}
		var nc *nats.Conn
		var admin *platform.Admin
		app := fx.New(append([]fx.Option{platform.Options(as), platform.Module(as)}, append(a.opts, fx.Populate(&nc, &admin))...)...)
		if err := app.Err(); err != nil {
			stopAll()
			return nil, nil, err
		}
		startCtx, cancel := context.WithTimeout(ctx, 15*time.Second)
		err := app.Start(startCtx)
		cancel()
		if err != nil {
			// fx rolls back the hooks that started; the connection was opened by a
			// constructor, so close it here or it would reconnect forever.
			if nc != nil {
				nc.Close()
			}
			stopAll()
			return nil, nil, fmt.Errorf("dev: start %s: %w", cmp.Or(a.identity, "services"), err)
		}
		apps = append(apps, app)
		admins = append(admins, devAdmin{identity: a.identity, addr: admin.Addr().String()})
	}
	return apps, admins, nil
}

// devAdmin is where one app's admin server listens.
type devAdmin struct{ identity, addr string }

// devAdminOrder is the order of the identities' admin ports under --auth: identity i
// serves on --admin-addr's port + i, whichever of them run (so a port always belongs
// to the same identity).
var devAdminOrder = []string{"config", "registry", "topology", "sampler", "opamp", "router", "sink-1", "sink-2", "sink-3", "simulate"}

// devAdminAddr is identity's admin address under --auth: base's host, base's port plus
// the identity's place in devAdminOrder (port 0 stays 0: every identity a free port).
func devAdminAddr(base, identity string) (string, error) {
	host, portText, err := net.SplitHostPort(base)
	if err != nil {
		return "", fmt.Errorf("--admin-addr %q: %w", base, err)
	}
	port, err := strconv.Atoi(portText)
	if err != nil || port < 0 || port > 65535 {
		return "", fmt.Errorf("--admin-addr %q: port %q is not a number in 0..65535", base, portText)
	}
	i := slices.Index(devAdminOrder, identity)
	if i < 0 {
		return "", fmt.Errorf("dev --auth: identity %q has no admin port (known: %s)", identity, strings.Join(devAdminOrder, ", "))
	}
	if port == 0 {
		return base, nil
	}
	if port+i > 65535 {
		return "", fmt.Errorf("--admin-addr %q: with --auth the identities use ports %d..%d; pick a lower port", base, port, port+len(devAdminOrder)-1)
	}
	return net.JoinHostPort(host, strconv.Itoa(port+i)), nil
}

// devAdminHelp describes the --auth admin ports for --help.
func devAdminHelp() string {
	parts := make([]string, len(devAdminOrder))
	for i, id := range devAdminOrder {
		parts[i] = fmt.Sprintf("%s +%d", id, i)
	}
	return strings.Join(parts, ", ")
}

// passwordVar is the environment variable of an identity's password in
// deploy/nats/auth.conf: OTELFLEET_PASSWORD_<USER>, upper case, '-' as '_'.
func passwordVar(identity string) string {
	return "OTELFLEET_PASSWORD_" + strings.ToUpper(strings.ReplaceAll(identity, "-", "_"))
}

func names(ss []devService) []string {
	out := make([]string, len(ss))
	for i, s := range ss {
		out[i] = s.name
	}
	return out
}

// bindDevSettings registers the shared settings that make sense for the dev stack.
func bindDevSettings(k *knobs.Set, s *platform.Settings) {
	k.String(&s.AdminAddr, "admin-addr", "ADMIN_ADDR", s.AdminAddr, "admin HTTP address shared by every in-process service; with --auth each identity has its own, at this port plus: "+devAdminHelp())
	k.String(&s.Region, "region", "REGION", s.Region, "region of the in-process services")
	k.String(&s.LogLevel, "log-level", "LOG_LEVEL", s.LogLevel, "log level: debug, info, warn, error")
	k.String(&s.LogFormat, "log-format", "LOG_FORMAT", s.LogFormat, "log format: json or text")
	k.Duration(&s.RegistryTTL, "registry-ttl", "REGISTRY_TTL", s.RegistryTTL, "registration TTL")
	k.Duration(&s.LeaseTTL, "lease-ttl", "LEASE_TTL", s.LeaseTTL, "leader lease TTL")
	s.Health.Bind(k)
}
