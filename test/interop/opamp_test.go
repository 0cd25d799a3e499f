package interop

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"net/http"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

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
	for _, p := range []string{filepath.Join(interop, "otelcol-opamp"), filepath.Join(interop, "opampsupervisor"), filepath.Join(bin, "otelfleet-opamp")} {
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
	s := &stack{t: t, dir: t.TempDir(), interop: interop, b: b,
		opampAddr: "127.0.0.1:" + strconv.Itoa(freePort(t))}
	admin := "127.0.0.1:" + strconv.Itoa(freePort(t))
	start(t, s.dir, "opamp", filepath.Join(bin, "otelfleet-opamp"), "--nats", srv.URL(), "--admin-addr", admin,
		"--opamp-addr", s.opampAddr, "--instance-id", "opamp-1", "--registry-ttl", registryTTL.String(), "--log-format", "text", "--log-level", "debug")
	natstest.Eventually(t, 30*time.Second, func() bool {
		resp, err := http.Get("http://" + admin + "/readyz")
		if err != nil {
			return false
		}
		resp.Body.Close()
		return resp.StatusCode == http.StatusOK
	}, "the opamp service ready on %s", admin)
	return s
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
	if reg.Health.Status != events.HealthHealthy {
		t.Errorf("registration health %q, want healthy", reg.Health.Status)
	}
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

// desiredConfig writes config as agent uid's desired config (version v of group
// interop), as the rollout controller does, and returns its hash.
func (s *stack) desiredConfig(uid string, v uint64, config string) string {
	s.t.Helper()
	sum := sha256.Sum256([]byte(config))
	d := events.DesiredConfig{V: events.DesiredConfigVersion, UID: uid, Group: "interop", Version: v,
		Hash: hex.EncodeToString(sum[:]), Config: config, Rollout: fmt.Sprintf("interop-%d", v), UpdatedAt: time.Now().UTC()}
	data, err := json.Marshal(d)
	if err != nil {
		s.t.Fatal(err)
	}
	key, err := events.DesiredKey(uid)
	if err != nil {
		s.t.Fatal(err)
	}
	if _, err := s.b.Rollouts.Put(context.Background(), key, data); err != nil {
		s.t.Fatal(err)
	}
	return d.Hash
}

// collectorConfig is a remote config: an otlp receiver on addr into exporter.
func collectorConfig(addr, exporter string) string {
	return fmt.Sprintf(`receivers:
  otlp:
    protocols:
      grpc:
        endpoint: %s
exporters:
  %s: {}
service:
  pipelines:
    traces:
      receivers: [otlp]
      exporters: [%s]
  telemetry:
    metrics:
      level: none
`, addr, exporter, exporter)
}

// TestSupervisorAppliesGoodConfigAndRecoversFromBad: under the real supervisor a good
// config is APPLIED and the collector listens where it says; a config with an exporter
// the collector lacks is FAILED, and once the last good one is pushed back the collector
// is healthy and listening again.
func TestSupervisorAppliesGoodConfigAndRecoversFromBad(t *testing.T) {
	s := newStack(t)
	storage := filepath.Join(s.dir, "supervisor-storage")
	cfg := s.render("supervisor.yaml", "/usr/local/bin/otelcol-opamp", filepath.Join(s.interop, "otelcol-opamp"),
		"/var/lib/otelcol-supervisor", storage)
	start(t, s.dir, "supervisor", filepath.Join(s.interop, "opampsupervisor"), "--config", cfg)

	a := s.oneAgent(60*time.Second, "the supervised collector's agent state, accepting remote config", func(a events.AgentState) bool {
		for _, c := range a.Capabilities {
			if c == "AcceptsRemoteConfig" {
				return true
			}
		}
		return false
	})

	good := "127.0.0.1:" + strconv.Itoa(freePort(t))
	goodHash := s.desiredConfig(a.UID, 1, collectorConfig(good, "debug"))
	s.oneAgent(60*time.Second, "config v1 APPLIED", func(a events.AgentState) bool {
		return a.RemoteConfig.Hash == goodHash && a.RemoteConfig.Status == events.RemoteConfigApplied
	})
	natstest.Eventually(t, 30*time.Second, func() bool { return listening(good) }, "the collector listening on %s, as config v1 says", good)

	bad := "127.0.0.1:" + strconv.Itoa(freePort(t))
	badHash := s.desiredConfig(a.UID, 2, collectorConfig(bad, "kafka"))
	failed := s.oneAgent(60*time.Second, "config v2 (exporter kafka, which the collector lacks) FAILED", func(a events.AgentState) bool {
		return a.RemoteConfig.Hash == badHash && a.RemoteConfig.Status == events.RemoteConfigFailed
	})
	t.Logf("v2 failed: %s", failed.RemoteConfig.Error)

	// Roll back: the last good version goes back to the agent.
	s.desiredConfig(a.UID, 1, collectorConfig(good, "debug"))
	s.oneAgent(60*time.Second, "config v1 APPLIED again and the collector healthy", func(a events.AgentState) bool {
		return a.RemoteConfig.Hash == goodHash && a.RemoteConfig.Status == events.RemoteConfigApplied && a.Health.Healthy
	})
	natstest.Eventually(t, 30*time.Second, func() bool { return listening(good) }, "the collector listening on %s again", good)
	if listening(bad) {
		t.Errorf("something listens on %s, where only the failed config wanted a receiver", bad)
	}
}
