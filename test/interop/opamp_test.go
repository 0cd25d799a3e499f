package interop

import (
	"cmp"
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/otelfleet/otelfleet/pkg/events"
	"github.com/otelfleet/otelfleet/pkg/natsconn"
	"github.com/otelfleet/otelfleet/pkg/natstest"
)

// registryTTL is the registry (and agent state) TTL of the interop stack.
const registryTTL = 3 * time.Second

// stack is an in-process NATS server with the contract provisioned and one opamp replica.
type stack struct {
	t         *testing.T
	dir       string
	interop   string // directory of otelcol-opamp and opampsupervisor
	bin       string // directory of the otelfleet binaries
	natsURL   string
	b         *natsconn.Buckets
	opampAddr string
}

// newStack skips the test unless the binaries are there, then starts NATS and the opamp
// service and waits until the service is ready.
func newStack(t *testing.T) *stack {
	interop, bin := os.Getenv("OTELFLEET_INTEROP_BIN"), os.Getenv("OTELFLEET_BIN")
	if interop == "" || bin == "" {
		t.Skip("OTELFLEET_INTEROP_BIN and OTELFLEET_BIN are not set (make interop-opamp sets them)")
	}
	for _, p := range []string{filepath.Join(interop, "otelcol-opamp"), filepath.Join(interop, "opampsupervisor"), filepath.Join(bin, "otelfleet-opamp"), filepath.Join(bin, "otelfleet-config"), filepath.Join(bin, "otelfleet")} {
		if _, err := os.Stat(p); err != nil {
			t.Fatalf("interop binary missing: %v (run test/interop/build-opamp.sh and make build)", err)
		}
	}
	srv := natstest.Run(t)
	_, js := srv.JetStream(t)
	l := natsconn.DefaultLayout()
	l.RegistryTTL = registryTTL
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	b, err := natsconn.Provision(ctx, js, l)
	if err != nil {
		t.Fatalf("provision: %v", err)
	}
	s := &stack{t: t, dir: t.TempDir(), interop: interop, bin: bin, natsURL: srv.URL(), b: b,
		opampAddr: "127.0.0.1:" + strconv.Itoa(freePort(t))}
	admin := "127.0.0.1:" + strconv.Itoa(freePort(t))
	start(t, s.dir, "opamp", filepath.Join(bin, "otelfleet-opamp"), "--nats", srv.URL(), "--admin-addr", admin,
		"--opamp-addr", s.opampAddr, "--instance-id", "opamp-1", "--registry-ttl", registryTTL.String(), "--log-format", "text", "--log-level", "debug")
	waitReady(t, admin)
	return s
}

// waitReady waits until the service with admin address admin answers /readyz with 200.
func waitReady(t *testing.T, admin string) {
	t.Helper()
	natstest.Eventually(t, 30*time.Second, func() bool {
		resp, err := http.Get("http://" + admin + "/readyz")
		if err != nil {
			return false
		}
		resp.Body.Close()
		return resp.StatusCode == http.StatusOK
	}, "the service ready on %s", admin)
}

// render writes testdata/<name> to the stack's directory with the README's addresses and
// paths replaced by the test's, and returns its path.
func (s *stack) render(name string, repl ...string) string {
	s.t.Helper()
	src, err := os.ReadFile("testdata/" + name)
	if err != nil {
		s.t.Fatal(err)
	}
	out := string(src)
	repl = append(repl, "127.0.0.1:4320", s.opampAddr)
	for i := 0; i+1 < len(repl); i += 2 {
		if !strings.Contains(out, repl[i]) {
			s.t.Fatalf("testdata/%s has no %q to replace", name, repl[i])
		}
		out = strings.ReplaceAll(out, repl[i], repl[i+1])
	}
	path := filepath.Join(s.dir, name)
	if err := os.WriteFile(path, []byte(out), 0o600); err != nil {
		s.t.Fatal(err)
	}
	return path
}

// agents returns every agent state in the agents bucket of region eu-west-1 (the
// README's region).
func (s *stack) agents() []events.AgentState {
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	lister, err := s.b.Agents.ListKeys(ctx)
	if err != nil {
		return nil
	}
	var out []events.AgentState
	for k := range lister.Keys() {
		e, err := s.b.Agents.Get(ctx, k)
		if err != nil {
			continue
		}
		var a events.AgentState
		if events.Decode(e.Value(), &a) == nil && a.Region == "eu-west-1" {
			out = append(out, a)
		}
	}
	return out
}

// registration returns the registration of collector.<region>.<id>, or false.
func (s *stack) registration(region, id string) (events.Registration, bool) {
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	key := events.KindCollector + "." + region + "." + id
	e, err := s.b.Registry.Get(ctx, key)
	if err != nil {
		return events.Registration{}, false
	}
	r, err := events.DecodeRegistrationAt(key, e.Value())
	return r, err == nil
}

// oneAgent waits for exactly one agent state that satisfies ok and returns it.
func (s *stack) oneAgent(within time.Duration, what string, ok func(events.AgentState) bool) events.AgentState {
	s.t.Helper()
	var got events.AgentState
	natstest.Eventually(s.t, within, func() bool {
		as := s.agents()
		if len(as) == 1 && ok(as[0]) {
			got = as[0]
			return true
		}
		return false
	}, "%s", what)
	return got
}

// TestCollectorWithOpAMPExtensionRegisters: a stock collector with extensions: [opamp]
// registers with health and effective config hash, and is gone within the TTL of a
// kill -9.
func TestCollectorWithOpAMPExtensionRegisters(t *testing.T) {
	s := newStack(t)
	otlp := "127.0.0.1:" + strconv.Itoa(freePort(t))
	cfg := s.render("collector.yaml", "127.0.0.1:4317", otlp)
	begin := time.Now()
	col := start(t, s.dir, "collector", filepath.Join(s.interop, "otelcol-opamp"), "--config", cfg)

	a := s.oneAgent(30*time.Second, "the collector's agent state", func(a events.AgentState) bool {
		return a.EffectiveConfigHash != "" && a.Health.Healthy
	})
	var reg events.Registration
	natstest.Eventually(t, time.Second, func() bool {
		var ok bool
		reg, ok = s.registration(a.Region, a.ID)
		return ok
	}, "registration collector.%s.%s within a second of the agent state", a.Region, a.ID)
	t.Logf("registered %s %.0f ms after the collector started (its own start-up included)", reg.ID, float64(time.Since(begin).Microseconds())/1000)
	// The first registration may predate the collector's first healthy report (it is
	// written as soon as the agent connects); the healthy one follows at once.
	natstest.Eventually(t, 5*time.Second, func() bool {
		reg, _ = s.registration(a.Region, a.ID)
		return reg.Health.Status == events.HealthHealthy
	}, "registration collector.%s.%s healthy (last seen %q)", a.Region, a.ID, reg.Health.Status)
	if reg.Metadata["managed_by"] != "opamp" || reg.Metadata["opamp_config_hash"] == "" {
		t.Errorf("registration metadata %v: want managed_by=opamp and opamp_config_hash", reg.Metadata)
	}
	if !listening(otlp) {
		t.Errorf("the collector's otlp receiver is not on %s", otlp)
	}

	col.kill9(t)
	killed := time.Now()
	natstest.Eventually(t, registryTTL+2*time.Second, func() bool {
		_, ok := s.registration(a.Region, a.ID)
		return !ok
	}, "registration gone within the TTL (%v) of kill -9", registryTTL)
	t.Logf("registration gone %.0f ms after kill -9", float64(time.Since(killed).Microseconds())/1000)
}

// collectorConfig is a collector config: an otlp receiver on addr into exporter, whose
// settings are exporterBody.
func collectorConfig(addr, exporter, exporterBody string) string {
	return fmt.Sprintf(`receivers:
  otlp:
    protocols:
      grpc:
        endpoint: %s
exporters:
  %s: %s
service:
  pipelines:
    traces:
      receivers: [otlp]
      exporters: [%s]
  telemetry:
    metrics:
      level: none
`, addr, exporter, exporterBody, exporter)
}

// startConfigService runs otelfleet-config against the stack's NATS and waits until it
// is ready.
func (s *stack) startConfigService() {
	s.t.Helper()
	admin := "127.0.0.1:" + strconv.Itoa(freePort(s.t))
	start(s.t, s.dir, "config", filepath.Join(s.bin, "otelfleet-config"), "--nats", s.natsURL, "--admin-addr", admin,
		"--instance-id", "config-1", "--log-format", "text")
	waitReady(s.t, admin)
}

// cli runs the otelfleet CLI against the stack's NATS and returns its stdout, stderr
// and error.
func (s *stack) cli(args ...string) (string, string, error) {
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	cmd := exec.CommandContext(ctx, filepath.Join(s.bin, "otelfleet"), append(args, "--nats", s.natsURL)...)
	cmd.Dir = s.dir
	var stdout, stderr strings.Builder
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	err := cmd.Run()
	return stdout.String(), stderr.String(), err
}

// setConfig stores config as group interop's collector config with `otelfleet
// collectors config set`, as a user does.
func (s *stack) setConfig(name, config string) (string, error) {
	s.t.Helper()
	path := filepath.Join(s.dir, name)
	if err := os.WriteFile(path, []byte(config), 0o600); err != nil {
		s.t.Fatal(err)
	}
	stdout, stderr, err := s.cli("collectors", "config", "set", "-f", path, "--group", "interop",
		"--selector", "region=eu-west-1", "--soak", "1s", "--wave-timeout", "90s", "--by", "interop")
	s.t.Logf("otelfleet collectors config set -f %s: %s%s", name, stdout, stderr)
	if err != nil {
		return stdout + stderr, err
	}
	return stdout, nil
}

// rollout returns group interop's rollout state from `otelfleet collectors rollout
// status -o json`, or false when there is none yet.
func (s *stack) rollout() (events.RolloutState, bool) {
	s.t.Helper()
	stdout, stderr, err := s.cli("collectors", "rollout", "status", "--group", "interop", "-o", "json")
	if err != nil {
		s.t.Logf("rollout status: %v: %s", err, stderr)
		return events.RolloutState{}, false
	}
	var states []events.RolloutState
	if err := json.Unmarshal([]byte(stdout), &states); err != nil {
		s.t.Fatalf("rollout status -o json is not a list of rollout states: %v\n%s", err, stdout)
	}
	if len(states) != 1 {
		return events.RolloutState{}, false
	}
	return states[0], true
}

// step is one distinct rollout state the test saw, as it logs it.
func step(st events.RolloutState) string {
	var b strings.Builder
	fmt.Fprintf(&b, "v%d %s wave %d/%d", st.Target.Version, st.Phase, st.Wave+1, len(st.Waves))
	for _, a := range st.Agents {
		fmt.Fprintf(&b, " | %s w%d v%d %s healthy=%v", a.UID, a.Wave, a.Version, cmp.Or(a.Status, "-"), a.Healthy)
	}
	if st.Reason != "" {
		b.WriteString(" | reason: " + st.Reason)
	}
	return b.String()
}

// waitRollout polls the rollout status until done holds, logging every distinct step,
// and returns the last state and every step seen.
func (s *stack) waitRollout(within time.Duration, what string, done func(events.RolloutState) bool) (events.RolloutState, []events.RolloutState) {
	s.t.Helper()
	var (
		last  events.RolloutState
		seen  []events.RolloutState
		shown string
	)
	natstest.Eventually(s.t, within, func() bool {
		st, ok := s.rollout()
		if !ok {
			return false
		}
		if txt := step(st); txt != shown {
			s.t.Logf("rollout status: %s", txt)
			shown = txt
			seen = append(seen, st)
		}
		last = st
		return done(st)
	}, "%s", what)
	return last, seen
}

// versionsSeen records, per agent UID, every remote config version the agent reported
// and when it first reported each as APPLIED, from a watch on the agents bucket.
type versionsSeen struct {
	mu      sync.Mutex
	seen    map[string]map[uint64]bool
	applied map[string]map[uint64]time.Time
}

// watchVersions watches the agents bucket until the test ends.
func (s *stack) watchVersions() *versionsSeen {
	s.t.Helper()
	v := &versionsSeen{seen: map[string]map[uint64]bool{}, applied: map[string]map[uint64]time.Time{}}
	ctx, cancel := context.WithCancel(context.Background())
	w, err := s.b.Agents.WatchAll(ctx)
	if err != nil {
		cancel()
		s.t.Fatalf("watch agents: %v", err)
	}
	done := make(chan struct{})
	go func() {
		defer close(done)
		for e := range w.Updates() {
			if e == nil || e.Operation() != jetstream.KeyValuePut {
				continue
			}
			var a events.AgentState
			if events.Decode(e.Value(), &a) != nil || a.RemoteConfig.Version == 0 {
				continue
			}
			v.mu.Lock()
			if v.seen[a.UID] == nil {
				v.seen[a.UID], v.applied[a.UID] = map[uint64]bool{}, map[uint64]time.Time{}
			}
			v.seen[a.UID][a.RemoteConfig.Version] = true
			if _, ok := v.applied[a.UID][a.RemoteConfig.Version]; !ok && a.RemoteConfig.Status == events.RemoteConfigApplied {
				v.applied[a.UID][a.RemoteConfig.Version] = time.Now()
			}
			v.mu.Unlock()
		}
	}()
	s.t.Cleanup(func() { _ = w.Stop(); cancel(); <-done })
	return v
}

// saw reports whether agent uid ever reported version.
func (v *versionsSeen) saw(uid string, version uint64) bool {
	v.mu.Lock()
	defer v.mu.Unlock()
	return v.seen[uid][version]
}

// appliedAt returns when agent uid first reported version APPLIED.
func (v *versionsSeen) appliedAt(uid string, version uint64) (time.Time, bool) {
	v.mu.Lock()
	defer v.mu.Unlock()
	at, ok := v.applied[uid][version]
	return at, ok
}

// agentByUID returns the agent state of uid among as.
func agentByUID(as []events.AgentState, uid string) (events.AgentState, bool) {
	for _, a := range as {
		if a.UID == uid {
			return a, true
		}
	}
	return events.AgentState{}, false
}

// TestRolloutUnderSupervisor is what a user does: two supervised collectors, `otelfleet
// collectors config set` of a good config rolls it out wave by wave (canary, then the
// second collector) and both listen where it says; a config naming an exporter the
// collectors lack is refused before anything is stored; a config the collectors cannot
// load is FAILED at the canary, the rollout stops and gives the canary the last good
// version back, and the second collector never sees the bad version.
func TestRolloutUnderSupervisor(t *testing.T) {
	s := newStack(t)
	s.startConfigService()
	versions := s.watchVersions()

	// Each supervisor hands its environment to its collector: the config's
	// ${env:OTELFLEET_INTEROP_OTLP} is a different port per collector on this one host.
	otlp := map[string]string{}
	for i := range 2 {
		name := fmt.Sprintf("supervisor-%d", i+1)
		addr := "127.0.0.1:" + strconv.Itoa(freePort(t))
		cfg := s.render("supervisor.yaml", "/usr/local/bin/otelcol-opamp", filepath.Join(s.interop, "otelcol-opamp"),
			"/var/lib/otelcol-supervisor", filepath.Join(s.dir, name+"-storage"))
		renamed := filepath.Join(s.dir, name+".yaml")
		if err := os.Rename(cfg, renamed); err != nil {
			t.Fatal(err)
		}
		env := []string{"OTELFLEET_INTEROP_OTLP=" + addr}
		sup := startEnv(t, s.dir, name, env, filepath.Join(s.interop, "opampsupervisor"), "--config", renamed)
		otlp[name] = addr
		restarts := 0
		// One at a time: two collectors starting at once on a small machine are slow.
		natstest.Eventually(t, 90*time.Second, func() bool {
			// The supervisor sometimes gives up during its own bootstrap ("collector's
			// OpAMP client never connected to the Supervisor") before it ever talks to
			// us; it exits, and is started again, as a service manager would.
			select {
			case <-sup.done:
				if restarts == 3 {
					t.Fatalf("%s exited during bootstrap %d times", name, restarts+1)
				}
				restarts++
				t.Logf("%s exited before its collector connected; starting it again (%d)", name, restarts)
				sup = startEnv(t, s.dir, fmt.Sprintf("%s-restart-%d", name, restarts), env, filepath.Join(s.interop, "opampsupervisor"), "--config", renamed)
				return false
			default:
			}
			agents := s.agents()
			if len(agents) != i+1 {
				return false
			}
			for _, a := range agents {
				if !slices.Contains(a.Capabilities, "AcceptsRemoteConfig") || len(a.Components) == 0 {
					return false
				}
			}
			return true
		}, "%d supervised collectors accepting remote config, their components reported", i+1)
	}

	// v1, good: the canary first, then the second wave.
	good := collectorConfig("${env:OTELFLEET_INTEROP_OTLP}", "debug", "{}")
	if _, err := s.setConfig("good.yaml", good); err != nil {
		t.Fatalf("config set good.yaml: %v", err)
	}
	st, _ := s.waitRollout(120*time.Second, "v1 completed", func(st events.RolloutState) bool {
		return st.Target.Version == 1 && st.Phase == events.RolloutCompleted
	})
	if len(st.Waves) != 2 || len(st.Waves[0]) != 1 || len(st.Waves[1]) != 1 {
		t.Fatalf("v1 waves %v: want a canary of one collector and a second wave of one", st.Waves)
	}
	canary, second := st.Waves[0][0], st.Waves[1][0]
	for _, a := range st.Agents {
		if a.Version != 1 || a.Status != events.RemoteConfigApplied || !a.Healthy {
			t.Errorf("after v1 completed, agent %s: version %d %s healthy=%v; want 1 APPLIED healthy", a.UID, a.Version, a.Status, a.Healthy)
		}
	}
	canaryAt, ok1 := versions.appliedAt(canary, 1)
	secondAt, ok2 := versions.appliedAt(second, 1)
	if !ok1 || !ok2 {
		t.Fatalf("the agents bucket never showed v1 APPLIED for both (canary %v, second %v)", ok1, ok2)
	}
	if d := secondAt.Sub(canaryAt); d < time.Second {
		t.Errorf("the second wave applied v1 %v after the canary: want at least the 1s soak", d)
	}
	t.Logf("v1: canary %s applied, second wave %s applied %.0f ms later (soak 1s)", canary, second, float64(secondAt.Sub(canaryAt).Microseconds())/1000)
	for name, addr := range otlp {
		natstest.Eventually(t, 30*time.Second, func() bool { return listening(addr) }, "%s's collector listening on %s, as v1 says", name, addr)
	}

	// An exporter the collectors lack: refused before anything is stored.
	out, err := s.setConfig("kafka.yaml", collectorConfig("${env:OTELFLEET_INTEROP_OTLP}", "kafka", "{}"))
	if err == nil || !strings.Contains(out, "exporter/kafka is not among the components of 2 of 2 matching agents") {
		t.Fatalf("config set kafka.yaml: err %v, output %q; want refused, naming exporter/kafka", err, out)
	}

	// v2, a config the collector cannot load (an unknown key of the debug exporter):
	// FAILED at the canary, rolled back there, never sent to the second wave.
	if _, err := s.setConfig("bad.yaml", collectorConfig("${env:OTELFLEET_INTEROP_OTLP}", "debug", "{no_such_setting: true}")); err != nil {
		t.Fatalf("config set bad.yaml: %v", err)
	}
	st, seen := s.waitRollout(120*time.Second, "v2 rolled back", func(st events.RolloutState) bool {
		return st.Target.Version == 2 && st.Phase == events.RolloutRolledBack
	})
	if !strings.Contains(st.Reason, canary) || !strings.Contains(st.Reason, "remote config FAILED") {
		t.Errorf("rolled back for %q: want the canary %s's remote config FAILED", st.Reason, canary)
	}
	if st.Good == nil || st.Good.Version != 1 || st.BadVersion != 2 {
		t.Errorf("rolled back state: good %+v, bad version %d; want good v1, bad v2", st.Good, st.BadVersion)
	}
	failedSeen := versions.saw(canary, 2)
	for _, x := range seen {
		for _, a := range x.Agents {
			if a.UID == canary && a.Version == 2 && a.Status == events.RemoteConfigFailed {
				failedSeen = true
				t.Logf("v2 FAILED at the canary: %s", a.Error)
			}
		}
	}
	if !failedSeen {
		t.Errorf("the canary %s never reported v2", canary)
	}
	s.oneAgentOf(canary, 60*time.Second, "the canary back on v1, APPLIED and healthy", func(a events.AgentState) bool {
		return a.RemoteConfig.Version == 1 && a.RemoteConfig.Status == events.RemoteConfigApplied && a.Health.Healthy
	})
	for name, addr := range otlp {
		natstest.Eventually(t, 30*time.Second, func() bool { return listening(addr) }, "%s's collector listening on %s after the rollback", name, addr)
	}
	if versions.saw(second, 2) {
		t.Errorf("the second wave's collector %s reported v2, which should never have left the canary", second)
	}
	if a, ok := agentByUID(s.agents(), second); !ok || a.RemoteConfig.Version != 1 || a.RemoteConfig.Status != events.RemoteConfigApplied {
		t.Errorf("second wave's collector %s: %+v; want v1 APPLIED", second, a.RemoteConfig)
	}
}

// oneAgentOf waits until agent uid's state satisfies ok.
func (s *stack) oneAgentOf(uid string, within time.Duration, what string, ok func(events.AgentState) bool) {
	s.t.Helper()
	natstest.Eventually(s.t, within, func() bool {
		a, found := agentByUID(s.agents(), uid)
		return found && ok(a)
	}, "%s (%s)", what, uid)
}
