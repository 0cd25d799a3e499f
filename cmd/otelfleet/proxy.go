package main

import (
	"context"
	"fmt"
	"log/slog"
	"net/http"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"

	"github.com/otelfleet/otelfleet/pkg/l4proxy"
)

const proxyUsage = `proxy [--forward :4317=router:4317,:4318=router:4318] [--resolve-interval 1s]
      [--dial-timeout 1s] [--quarantine 5s] [--admin-addr HOST:PORT]

Publishes one port in front of every replica of a scaled service: each target's host is
resolved again every --resolve-interval (a container runtime's DNS answers a service name
with every replica), new connections go round-robin over the addresses, an address whose
dial fails is skipped for --quarantine, and the connections to an address that leaves the
answer are cut at once. A connection whose backend dies ends at once too, so a gRPC client
reconnects to a live replica. The admin address serves /metrics, /healthz and /readyz
(ready when every target has an address).`

func runProxy(ctx context.Context, env *cliEnv, args []string) error {
	cfg := l4proxy.DefaultConfig()
	var forwards, adminAddr, logLevel string
	fs, k := env.flags("proxy", proxyUsage)
	k.String(&forwards, "forward", "PROXY_FORWARD", ":4317=router:4317,:4318=router:4318", "LISTEN=HOST:PORT pairs, comma-separated: each listen address forwards to every address HOST resolves to")
	k.Duration(&cfg.Resolve, "resolve-interval", "PROXY_RESOLVE_INTERVAL", cfg.Resolve, "how often each target host is resolved again")
	k.Duration(&cfg.DialTimeout, "dial-timeout", "PROXY_DIAL_TIMEOUT", cfg.DialTimeout, "timeout of one dial to a backend (then the next address is tried)")
	k.Duration(&cfg.Quarantine, "quarantine", "PROXY_QUARANTINE", cfg.Quarantine, "how long an address whose dial failed is skipped")
	k.Int(&cfg.MaxConnections, "max-connections", "PROXY_MAX_CONNECTIONS", cfg.MaxConnections, "most connections forwarded at once over every listen address; more are closed at once")
	k.String(&adminAddr, "admin-addr", "ADMIN_ADDR", "127.0.0.1:18889", "admin HTTP address: /metrics, /healthz, /readyz")
	k.String(&logLevel, "log-level", "LOG_LEVEL", "info", "log level: debug, info, warn, error")
	pos, err := parse(fs, args)
	if err != nil {
		return err
	}
	if len(pos) > 0 {
		return usageError("proxy: unexpected argument %q", pos[0])
	}
	if err := k.Err(); err != nil {
		return usageError("%v", err)
	}
	var level slog.Level
	if err := level.UnmarshalText([]byte(logLevel)); err != nil {
		return usageError("--log-level %q: want debug, info, warn or error", logLevel)
	}
	if cfg.Forwards, err = l4proxy.ParseForwards(forwards); err != nil {
		return usageError("--forward: %v", err)
	}
	log := slog.New(slog.NewJSONHandler(env.stderr, &slog.HandlerOptions{Level: level}))
	reg := prometheus.NewRegistry()
	reg.MustRegister(collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))
	p, err := l4proxy.New(cfg, log, reg)
	if err != nil {
		return usageError("proxy: %v", err)
	}
	if err := p.Start(); err != nil {
		return refused(err)
	}
	defer p.Stop()
	admin, err := serveAdmin("proxy", adminAddr, reg, p.Ready, log, func(*http.ServeMux) {})
	if err != nil {
		return refused(err)
	}
	defer stopWithin(5*time.Second, admin.Shutdown)
	fmt.Fprintf(env.stderr, "otelfleet proxy: %s · admin http://%s\n", cfg, admin.addr)
	<-ctx.Done()
	return nil
}
