package main

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"log/slog"
	"maps"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/otelfleet/otelfleet/pkg/events"
	"github.com/otelfleet/otelfleet/pkg/kvwatch"
	"github.com/otelfleet/otelfleet/pkg/natsconn"
	opampsvc "github.com/otelfleet/otelfleet/services/opamp"
	registrysvc "github.com/otelfleet/otelfleet/services/registry"
)

const registryUsage = `registry COMMAND [flags]

Commands:
  ls [--kind collector|service] [--region R] [--health H] [-o table|json]
      live registrations, read from the otlp_registry bucket (works without the
      registry service running); OpAMP collectors show who manages them, the
      collector config version they run and its remote config status
  show KEY [-o text|json]
      one registration (KEY as in ls -o json, e.g. collector.eu-west-1.c1) and, for a
      collector managed over OpAMP, its agent state from the otlp_agents bucket`

func runRegistry(ctx context.Context, env *cliEnv, args []string) error {
	return env.dispatch(ctx, "registry", registryUsage, args, "", map[string]subcommand{"ls": registryLs, "list": registryLs, "show": registryShow})
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
	nc, _, kv, err := env.openBucket(ctx, events.Namespace.RegistryBucket)
	if err != nil {
		return err
	}
	defer nc.Close()
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
	fmt.Fprintln(tw, "KIND\tREGION\tNAME\tID\tADDRESS\tHEALTH\tCPU\tMEM\tCAPACITY\tVERSION\tMANAGED BY\tCONFIG\tREMOTE CONFIG\tREGISTERED\tHEARTBEAT")
	for _, r := range regs {
		capacity := "-"
		if r.CapacityQPS > 0 {
			capacity = strconv.FormatFloat(r.CapacityQPS, 'f', -1, 64) + "/s"
		}
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\t%s\t%.0f%%\t%.0f%%\t%s\t%s\t%s\t%s\t%s\t%s\t%s\n",
			r.InstanceKind, dash(r.Region), dash(r.Name), r.ID, dash(r.Address), r.Health.Status,
			r.Health.CPU*100, r.Health.Memory*100, capacity, dash(r.Version),
			dash(r.Metadata[opampsvc.MetaManagedBy]), configVersion(r.Metadata), dash(r.Metadata[opampsvc.MetaRemoteConfigStatus]),
			since(r.RegisteredAt), since(r.UpdatedAt))
	}
	if err := tw.Flush(); err != nil {
		return err
	}
	if len(regs) == 0 {
		fmt.Fprintln(env.stderr, "no registrations")
	}
	return nil
}

// configVersion is the collector config an OpAMP collector runs, as group/vN, from its
// registration metadata ("-" when it runs none of ours).
func configVersion(meta map[string]string) string {
	g, v := meta[opampsvc.MetaConfigGroup], meta[opampsvc.MetaConfigVersion]
	if g == "" {
		return "-"
	}
	return g + "/v" + cmp.Or(v, "?")
}

// registryShowReply is `registry show -o json`: the registration and, for a collector
// managed over OpAMP, its agent state (null when there is none or it is unreadable).
type registryShowReply struct {
	Key          string              `json:"key"`
	Registration events.Registration `json:"registration"`
	Agent        *events.AgentState  `json:"agent"`
}

func registryShow(ctx context.Context, env *cliEnv, args []string) error {
	fs, _ := env.flags("registry show", "registry show KEY [-o text|json]   (KEY e.g. collector.eu-west-1.c1)")
	out := outputFlag(fs, "text", "json")
	rest, err := parse(fs, args)
	if err != nil {
		return err
	}
	if len(rest) != 1 {
		return usageError("registry show: want one KEY (e.g. collector.eu-west-1.c1; see otelfleet registry ls -o json), got %d arguments", len(rest))
	}
	key := rest[0]
	if kind, _, _ := strings.Cut(key, "."); kind != events.KindCollector && kind != events.KindService {
		return usageError("registry show: KEY %q: want collector.<region>.<id> or service.<name>.<id>", key)
	}
	nc, js, kv, err := env.openBucket(ctx, events.Namespace.RegistryBucket)
	if err != nil {
		return err
	}
	defer nc.Close()
	rctx, cancel := context.WithTimeout(ctx, env.timeout)
	defer cancel()
	e, err := kv.Get(rctx, key)
	if errors.Is(err, jetstream.ErrInvalidKey) {
		return usageError("registry show: KEY %q: not a valid key", key)
	}
	if errors.Is(err, jetstream.ErrKeyNotFound) {
		return refused(fmt.Errorf("no live registration %s (see otelfleet registry ls)", key))
	}
	if err != nil {
		return fmt.Errorf("read %s: %w", key, err)
	}
	reg, err := events.DecodeRegistrationAt(key, e.Value())
	if err != nil {
		return refused(fmt.Errorf("%s holds an invalid registration: %w", key, err))
	}
	rep := registryShowReply{Key: key, Registration: reg}
	if uid := reg.Metadata[opampsvc.MetaUID]; uid != "" {
		a, err := env.readAgent(rctx, js, uid)
		if err != nil {
			fmt.Fprintf(env.stderr, "warning: %v (OpAMP details not shown)\n", err)
		} else {
			rep.Agent = &a
		}
	}
	if *out == "json" {
		return env.printJSON(rep)
	}
	env.printRegistration(rep)
	return nil
}

// readAgent reads and decodes agent.<uid> of the agents bucket.
func (env *cliEnv) readAgent(ctx context.Context, js jetstream.JetStream, uid string) (events.AgentState, error) {
	key, err := events.AgentKey(uid)
	if err != nil {
		return events.AgentState{}, fmt.Errorf("metadata %s: %w", opampsvc.MetaUID, err)
	}
	kv, err := env.bucket(ctx, js, events.Namespace.AgentsBucket)
	if err != nil {
		return events.AgentState{}, err
	}
	e, err := kv.Get(ctx, key)
	if err != nil {
		return events.AgentState{}, fmt.Errorf("read %s: %w", key, err)
	}
	var a events.AgentState
	if err := events.Decode(e.Value(), &a); err != nil {
		return events.AgentState{}, fmt.Errorf("%s holds an invalid agent state: %w", key, err)
	}
	if a.UID != uid {
		return events.AgentState{}, fmt.Errorf("%s holds the state of agent %s", key, a.UID)
	}
	return a, nil
}

// printRegistration writes `registry show` as text: one field a line, lists indented.
func (env *cliEnv) printRegistration(rep registryShowReply) {
	w := env.stdout
	r := rep.Registration
	field := func(name, value string) { fmt.Fprintf(w, "%-22s %s\n", name+":", dash(value)) }
	field("key", rep.Key)
	field("kind", r.InstanceKind)
	field("region", r.Region)
	field("id", r.ID)
	field("name", r.Name)
	field("address", r.Address)
	field("version", r.Version)
	if r.CapacityQPS > 0 {
		field("capacity", strconv.FormatFloat(r.CapacityQPS, 'f', -1, 64)+"/s")
	}
	field("health", fmt.Sprintf("%s (cpu %.0f%%, mem %.0f%%)", r.Health.Status, r.Health.CPU*100, r.Health.Memory*100))
	for _, c := range r.Health.Checks {
		fmt.Fprintf(w, "  check %s: %s %s\n", c.Name, c.Status, c.Message)
	}
	field("registered", fmt.Sprintf("%s (%s)", r.RegisteredAt.Format(time.RFC3339), since(r.RegisteredAt)))
	field("heartbeat", fmt.Sprintf("%s (%s)", r.UpdatedAt.Format(time.RFC3339), since(r.UpdatedAt)))
	if len(r.Metadata) > 0 {
		fmt.Fprintln(w, "metadata:")
		for _, k := range slices.Sorted(maps.Keys(r.Metadata)) {
			fmt.Fprintf(w, "  %s=%s\n", k, r.Metadata[k])
		}
	}
	a := rep.Agent
	if a == nil {
		return
	}
	fmt.Fprintln(w, "opamp:")
	field("  uid", a.UID)
	field("  agent version", a.Version)
	field("  replica", a.Replica+" ("+a.Transport+")")
	field("  connected", a.ConnectedAt.Format(time.RFC3339))
	attrs := func(name string, m map[string]string) {
		if len(m) == 0 {
			field("  "+name, "")
			return
		}
		fmt.Fprintf(w, "  %s:\n", name)
		for _, k := range slices.Sorted(maps.Keys(m)) {
			fmt.Fprintf(w, "    %s=%s\n", k, m[k])
		}
	}
	attrs("identifying", a.Identifying)
	attrs("non-identifying", a.NonIdentifying)
	field("  capabilities", strings.Join(a.Capabilities, ", "))
	field("  components", strings.Join(a.Components, ", "))
	field("  effective config", a.EffectiveConfigHash)
	h := "healthy"
	if !a.Health.Healthy {
		h = "unhealthy"
	}
	if a.Health.Status != "" {
		h += " (" + a.Health.Status + ")"
	}
	if a.Health.LastError != "" {
		h += ": " + a.Health.LastError
	}
	field("  health", h)
	rc := a.RemoteConfig
	cfg := "-"
	if rc.Group != "" {
		cfg = fmt.Sprintf("%s/v%d", rc.Group, rc.Version)
	}
	field("  remote config", cmp.Or(rc.Status, "-")+", "+cfg+", hash "+dash(rc.Hash))
	if rc.Error != "" {
		field("  remote config error", rc.Error)
	}
}

// readRegistry reads every live registration with one watch (no per-key round trips),
// warning on stderr (naming the key) about values the services would refuse: ones that
// do not decode or are stored under another registration's key.
func (env *cliEnv) readRegistry(ctx context.Context, kv jetstream.KeyValue) ([]events.Registration, error) {
	ctx, cancel := context.WithTimeout(ctx, env.timeout)
	defer cancel()
	entries, err := kvwatch.Current(ctx, kv)
	if err != nil {
		return nil, err
	}
	out := []events.Registration{}
	for _, e := range entries {
		r, err := events.DecodeRegistrationAt(e.Key(), e.Value())
		if err != nil {
			fmt.Fprintf(env.stderr, "warning: %s: %v (not listed)\n", e.Key(), err)
			continue
		}
		out = append(out, r)
	}
	return out, nil
}

// openBucket connects and opens one of the contract's KV buckets; the caller closes nc.
func (env *cliEnv) openBucket(ctx context.Context, name func(events.Namespace) string) (*nats.Conn, jetstream.JetStream, jetstream.KeyValue, error) {
	nc, js, err := env.jetStream()
	if err != nil {
		return nil, nil, nil, err
	}
	kv, err := env.bucket(ctx, js, name)
	if err != nil {
		nc.Close()
		return nil, nil, nil, err
	}
	return nc, js, kv, nil
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
