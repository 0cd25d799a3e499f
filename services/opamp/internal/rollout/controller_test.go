package rollout_test

import (
	"context"
	"encoding/json"
	"fmt"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"github.com/prometheus/client_golang/prometheus"
	"go.opentelemetry.io/otel/trace"
	"go.uber.org/goleak"

	"github.com/otelfleet/otelfleet/pkg/events"
	"github.com/otelfleet/otelfleet/pkg/fleetconfig"
	"github.com/otelfleet/otelfleet/pkg/kvwatch"
	"github.com/otelfleet/otelfleet/pkg/natsconn"
	"github.com/otelfleet/otelfleet/pkg/natstest"
	"github.com/otelfleet/otelfleet/pkg/promtest"
	"github.com/otelfleet/otelfleet/services/opamp/internal/rollout"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

const baseConfig = `
receivers: {otlp: {}}
processors:
  probabilistic_sampler: {sampling_percentage: PCT}
exporters: {debug: {verbosity: LEVEL}}
service: {pipelines: {traces: {receivers: [otlp], processors: [probabilistic_sampler], exporters: [debug]}}}
`

func collectorYAML(level, pct string) string {
	return strings.NewReplacer("LEVEL", level, "PCT", pct).Replace(baseConfig)
}

// fleet is a test bed: a real nats-server with the contract's buckets, fake agents that
// react to desired.<uid> the way op1's replicas and a supervisor would, and rollout
// events collected from the events stream.
type fleet struct {
	t  *testing.T
	nc *nats.Conn
	b  *natsconn.Buckets
	// verdict decides what an agent reports for a desired config: "" = APPLIED and
	// healthy, else FAILED with that error.
	mu      sync.Mutex
	verdict func(uid string, d events.DesiredConfig) string
	events  []events.RolloutEvent
	agents  map[string]events.AgentState
	version uint64
	// reg receives every controller's metrics (shared across terms).
	reg *prometheus.Registry
	// tracer, if set, traces the controllers run starts.
	tracer trace.Tracer
}

func newFleet(t *testing.T) *fleet {
	t.Helper()
	srv := natstest.Run(t)
	nc, js := srv.JetStream(t)
	b, err := natsconn.Provision(context.Background(), js, natsconn.DefaultLayout())
	if err != nil {
		t.Fatal(err)
	}
	f := &fleet{t: t, nc: nc, b: b, reg: prometheus.NewRegistry(), agents: map[string]events.AgentState{}, verdict: func(string, events.DesiredConfig) string { return "" }}
	sub, err := nc.Subscribe(events.Default.EventSubject("rollout.*"), func(m *nats.Msg) {
		var ev events.RolloutEvent
		if events.Decode(m.Data, &ev) == nil {
			f.mu.Lock()
			f.events = append(f.events, ev)
			f.mu.Unlock()
		}
	})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() {
		defer close(done)
		kvwatch.Run(ctx, nc, b.Rollouts, events.DesiredKeyPrefix+">", func(e jetstream.KeyValueEntry) {
			if e == nil {
				return
			}
			uid := strings.TrimPrefix(e.Key(), events.DesiredKeyPrefix)
			var d events.DesiredConfig
			if e.Operation() != jetstream.KeyValuePut || events.Decode(e.Value(), &d) != nil {
				return
			}
			f.react(uid, d)
		}, nil)
	}()
	t.Cleanup(func() { cancel(); <-done; _ = sub.Unsubscribe() })
	return f
}

func uid(i int) string { return fmt.Sprintf("%032x", i+1) }

// addAgents writes n agent states in region, as replicas would.
func (f *fleet) addAgents(n int, region string) {
	f.t.Helper()
	for i := range n {
		a := events.AgentState{V: 1, UID: uid(i), ID: fmt.Sprintf("c%d", i), Region: region, Replica: "r1", Transport: "websocket",
			Capabilities: []string{"ReportsStatus", "AcceptsRemoteConfig"}, Health: events.AgentHealth{Healthy: true},
			RemoteConfig: events.RemoteConfigStatus{Status: events.RemoteConfigUnset}}
		f.putAgent(a)
	}
}

func (f *fleet) putAgent(a events.AgentState) {
	f.t.Helper()
	a.UpdatedAt = time.Now()
	data, err := events.Encode(a)
	if err != nil {
		f.t.Fatal(err)
	}
	f.mu.Lock()
	f.agents[a.UID] = a
	f.mu.Unlock()
	if _, err := f.b.Agents.Put(context.Background(), events.AgentKeyPrefix+a.UID, data); err != nil {
		f.t.Error(err)
	}
}

func (f *fleet) react(uid string, d events.DesiredConfig) {
	f.mu.Lock()
	a, ok := f.agents[uid]
	verdict := f.verdict(uid, d)
	f.mu.Unlock()
	if !ok {
		return
	}
	a.RemoteConfig = events.RemoteConfigStatus{Group: d.Group, Version: d.Version, Hash: d.Hash, Status: events.RemoteConfigApplied}
	if verdict != "" {
		a.RemoteConfig.Status, a.RemoteConfig.Error = events.RemoteConfigFailed, verdict
	}
	f.putAgent(a)
}

func (f *fleet) putDoc(group string, doc fleetconfig.CollectorConfig) {
	f.t.Helper()
	f.mu.Lock()
	f.version++
	doc.Version, doc.UpdatedBy = f.version, "test"
	f.mu.Unlock()
	data, err := json.Marshal(doc)
	if err != nil {
		f.t.Fatal(err)
	}
	if _, err := f.b.Config.Put(context.Background(), events.CollectorConfigKeyPrefix+group, data); err != nil {
		f.t.Fatal(err)
	}
}

func (f *fleet) run(token uint64) (stop func()) {
	f.t.Helper()
	c, err := rollout.New(rollout.Config{Tick: 20 * time.Millisecond, SamplingThreshold: 0.1}, f.nc, events.Default, "t", nil, f.reg)
	if err != nil {
		f.t.Fatal(err)
	}
	if f.tracer != nil {
		c.Trace(f.tracer)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- c.Run(ctx, f.b, token) }()
	var once sync.Once
	stop = func() {
		once.Do(func() {
			cancel()
			if err := <-done; err != nil {
				f.t.Errorf("Run: %v", err)
			}
		})
	}
	f.t.Cleanup(stop)
	return stop
}

func (f *fleet) state(group string) *events.RolloutState {
	e, err := f.b.Rollouts.Get(context.Background(), events.RolloutKeyPrefix+group)
	if err != nil {
		return nil
	}
	var st events.RolloutState
	if events.Decode(e.Value(), &st) != nil {
		return nil
	}
	return &st
}

func (f *fleet) desired(u string) (events.DesiredConfig, uint64) {
	e, err := f.b.Rollouts.Get(context.Background(), events.DesiredKeyPrefix+u)
	if err != nil {
		return events.DesiredConfig{}, 0
	}
	var d events.DesiredConfig
	_ = events.Decode(e.Value(), &d)
	return d, e.Revision()
}

func (f *fleet) eventTypes() []string {
	f.mu.Lock()
	defer f.mu.Unlock()
	out := make([]string, len(f.events))
	for i, e := range f.events {
		out[i] = e.Type + fmt.Sprint(e.Version)
	}
	return out
}

func (f *fleet) waitPhase(group, phase string, version uint64) *events.RolloutState {
	f.t.Helper()
	var st *events.RolloutState
	natstest.Eventually(f.t, 15*time.Second, func() bool {
		st = f.state(group)
		return st != nil && st.Phase == phase && st.Target.Version == version
	}, "rollout of %s reaches %s at version %d (now %+v)", group, phase, version, st)
	return st
}

func policy() fleetconfig.RolloutPolicy {
	return fleetconfig.RolloutPolicy{CanaryPercent: 10, Waves: 3, Soak: fleetconfig.Duration(60 * time.Millisecond), WaveTimeout: fleetconfig.Duration(10 * time.Second)}
}

// TestWavesGoOutCanaryFirstAndComplete rolls a version out to 10 agents: a canary of
// one, then three waves of three, each written only after the previous wave was APPLIED
// and soaked (desired revisions are in wave order), and the events say so.
func TestWavesGoOutCanaryFirstAndComplete(t *testing.T) {
	f := newFleet(t)
	f.addAgents(10, "eu")
	f.run(1)
	f.putDoc("edge", fleetconfig.CollectorConfig{Selector: fleetconfig.Selector{Region: "eu"}, Config: collectorYAML("basic", "10"), Rollout: policy()})
	st := f.waitPhase("edge", events.RolloutCompleted, 1)
	if len(st.Waves) != 4 || len(st.Waves[0]) != 1 || st.Waves[0][0] != uid(0) || len(st.Waves[3]) != 3 {
		t.Fatalf("waves %v: want a canary of one then 3×3", st.Waves)
	}
	lastRev := uint64(0)
	for w, wave := range st.Waves {
		var lo, hi uint64 = 1 << 62, 0
		for _, u := range wave {
			d, rev := f.desired(u)
			if d.Hash != st.Target.Hash || d.Version != 1 {
				t.Fatalf("agent %s desired %+v", u, d)
			}
			lo, hi = min(lo, rev), max(hi, rev)
		}
		if lo < lastRev {
			t.Fatalf("wave %d written (revisions %d..%d) before the previous wave ended (%d)", w, lo, hi, lastRev)
		}
		lastRev = hi
	}
	for _, a := range st.Agents {
		if a.Status != events.RemoteConfigApplied || a.Version != 1 {
			t.Fatalf("agent %+v", a)
		}
	}
	natstest.Eventually(t, 5*time.Second, func() bool {
		return strings.Join(f.eventTypes(), ",") == "rollout.started1,rollout.wave1,rollout.wave1,rollout.wave1,rollout.completed1"
	}, "events %v", f.eventTypes())
}

// TestCanaryFailureStopsAndRollsBack: version 2 fails on the canary; the rollout stops
// there, the canary gets version 1 back, no other agent ever sees version 2, and version
// 2 is not retried until version 3 is stored.
func TestCanaryFailureStopsAndRollsBack(t *testing.T) {
	f := newFleet(t)
	f.addAgents(5, "eu")
	f.run(1)
	doc := fleetconfig.CollectorConfig{Config: collectorYAML("basic", "10"), Rollout: policy()}
	f.putDoc("all", doc)
	good := f.waitPhase("all", events.RolloutCompleted, 1)
	f.mu.Lock()
	f.verdict = func(_ string, d events.DesiredConfig) string {
		if d.Version == 2 {
			return "exporter kafka: unknown type"
		}
		return ""
	}
	f.mu.Unlock()
	doc.Config = collectorYAML("detailed", "10")
	f.putDoc("all", doc)
	st := f.waitPhase("all", events.RolloutRolledBack, 2)
	if !strings.Contains(st.Reason, "remote config FAILED: exporter kafka: unknown type") || st.BadVersion != 2 || st.Good.Version != 1 {
		t.Fatalf("state %+v", st)
	}
	natstest.Eventually(t, 5*time.Second, func() bool {
		for i := range 5 {
			if d, _ := f.desired(uid(i)); d.Hash != good.Target.Hash {
				return false
			}
		}
		return true
	}, "every agent is given version 1 back")
	for i := 1; i < 5; i++ {
		f.mu.Lock()
		a := f.agents[uid(i)]
		f.mu.Unlock()
		if a.RemoteConfig.Version != 1 {
			t.Fatalf("agent %d saw version %d outside the canary", i, a.RemoteConfig.Version)
		}
	}
	natstest.Eventually(t, 5*time.Second, func() bool {
		ev := strings.Join(f.eventTypes(), ",")
		return strings.HasSuffix(ev, "rollout.started2,rollout.failed2,rollout.rolled_back2")
	}, "events %v", f.eventTypes())
	// The alerts' counter: one rollout completed, one failed and rolled back, no wave
	// left uncounted.
	for typ, want := range map[string]float64{"started": 2, "completed": 1, "failed": 1, "rolled_back": 1} {
		if got := promtest.Values(t, f.reg, "otelfleet_rollout_events_total", "type")[typ]; got != want {
			t.Errorf("otelfleet_rollout_events_total{type=%q} = %v, want %v", typ, got, want)
		}
	}
	// An agent joining the group after the rollback is given version 1, and version 2
	// is not tried again.
	joined := events.AgentState{V: 1, UID: uid(5), ID: "late", Region: "eu", Replica: "r1", Transport: "http",
		Capabilities: []string{"AcceptsRemoteConfig"}, Health: events.AgentHealth{Healthy: true}}
	f.putAgent(joined)
	natstest.Eventually(t, 5*time.Second, func() bool { d, _ := f.desired(uid(5)); return d.Version == 1 }, "the late agent gets version 1")
	if ev := strings.Join(f.eventTypes(), ","); strings.Count(ev, "rollout.started2") != 1 || f.state("all").Phase != events.RolloutRolledBack {
		t.Fatalf("version 2 was tried again: %s", ev)
	}
	f.mu.Lock()
	f.verdict = func(string, events.DesiredConfig) string { return "" }
	f.mu.Unlock()
	f.putDoc("all", doc)
	f.waitPhase("all", events.RolloutCompleted, 3)
}

// TestLeaderFailoverResumesRollout stops the controller in the middle of a rollout
// (wave 1 of 3 soaking for long) and starts another one: it resumes from the stored
// state, keeps the plan, and completes.
func TestLeaderFailoverResumesRollout(t *testing.T) {
	f := newFleet(t)
	f.addAgents(4, "eu")
	stop := f.run(1)
	p := policy()
	p.Soak = fleetconfig.Duration(400 * time.Millisecond)
	p.Waves = 3
	f.putDoc("g", fleetconfig.CollectorConfig{Config: collectorYAML("basic", "10"), Rollout: p})
	var planned [][]string
	natstest.Eventually(t, 10*time.Second, func() bool {
		st := f.state("g")
		if st != nil && st.Wave == 1 {
			planned = st.Waves
			return true
		}
		return false
	}, "the rollout reaches wave 1")
	stop()
	f.run(2)
	st := f.waitPhase("g", events.RolloutCompleted, 1)
	if fmt.Sprint(st.Waves) != fmt.Sprint(planned) || st.Token != 2 {
		t.Fatalf("resumed with waves %v token %d, planned %v", st.Waves, st.Token, planned)
	}
	starts := 0
	for _, e := range f.eventTypes() {
		if e == "rollout.started1" {
			starts++
		}
	}
	if starts != 1 {
		t.Fatalf("events %v: the new leader started the rollout over", f.eventTypes())
	}
}

// TestHostileValuesAndUnhealthyAgent writes garbage into every bucket the controller
// reads (agent states, desired configs, rollout state, a collector document) and
// checks it keeps going; then an agent that turns unhealthy after applying rolls the
// rollout back.
func TestHostileValuesAndUnhealthyAgent(t *testing.T) {
	f := newFleet(t)
	f.addAgents(3, "eu")
	ctx := context.Background()
	for _, kv := range []struct {
		kv  jetstream.KeyValue
		key string
	}{
		{f.b.Agents, "agent." + uid(7)}, {f.b.Agents, "agent." + uid(8)},
		{f.b.Rollouts, "desired." + uid(0)}, {f.b.Rollouts, "rollout.g"},
		{f.b.Config, "collector.g"}, {f.b.Sampling, "decision"},
	} {
		if _, err := kv.kv.Put(ctx, kv.key, []byte(`{"v":1,"uid":"`+uid(9)+`","phase":"nope"}`)); err != nil {
			t.Fatal(err)
		}
	}
	if _, err := f.b.Agents.Put(ctx, "agent."+uid(8), []byte("\x00garbage")); err != nil {
		t.Fatal(err)
	}
	f.run(1)
	f.putDoc("g", fleetconfig.CollectorConfig{Config: collectorYAML("basic", "10"), Rollout: policy()})
	f.waitPhase("g", events.RolloutCompleted, 1)
	// A refused newest document leaves version 1 in force.
	if _, err := f.b.Config.Put(ctx, "collector.g", []byte(`{"version":50,"config":"::"}`)); err != nil {
		t.Fatal(err)
	}
	f.mu.Lock()
	f.verdict = func(u string, d events.DesiredConfig) string { return "" }
	f.mu.Unlock()
	doc := fleetconfig.CollectorConfig{Config: collectorYAML("detailed", "10"), Rollout: policy()}
	doc.Rollout.CanaryPercent = 100 // one wave: all three
	f.putDoc("g", doc)
	natstest.Eventually(t, 10*time.Second, func() bool {
		st := f.state("g")
		return st != nil && st.Target.Version == 2
	}, "version 2 starts")
	// The agent applied it, then turns unhealthy.
	natstest.Eventually(t, 10*time.Second, func() bool {
		f.mu.Lock()
		defer f.mu.Unlock()
		return f.agents[uid(0)].RemoteConfig.Version == 2
	}, "agent 0 applies version 2")
	f.mu.Lock()
	a := f.agents[uid(0)]
	f.mu.Unlock()
	a.Health = events.AgentHealth{Healthy: false, LastError: "exporter queue full"}
	f.putAgent(a)
	st := f.waitPhase("g", events.RolloutRolledBack, 2)
	if !strings.Contains(st.Reason, "unhealthy after applying: exporter queue full") {
		t.Fatalf("reason %q", st.Reason)
	}
}

// TestSamplingPlaceholderRerendersBeyondThreshold: a document with a sampling
// placeholder waits for a decision, renders it as a percentage, ignores a move within
// the threshold and rolls out a move beyond it.
func TestSamplingPlaceholderRerendersBeyondThreshold(t *testing.T) {
	f := newFleet(t)
	f.addAgents(2, "eu")
	f.run(1)
	f.putDoc("g", fleetconfig.CollectorConfig{Selector: fleetconfig.Selector{Region: "eu"}, Config: collectorYAML("basic", "${otelfleet:sampling.percent:checkout}"), Rollout: policy()})
	putDecision := func(v uint64, rate float64) {
		d := events.Decision{V: events.DecisionVersion, Version: v, Token: 1, Leader: "s", At: time.Now(), DefaultRate: 0.5, Services: map[string]events.ServiceDecision{"checkout": {Rate: rate}}, Regions: map[string]float64{"eu": 0.5}}
		data, err := events.Encode(d)
		if err != nil {
			t.Fatal(err)
		}
		if _, err := f.b.Sampling.Put(context.Background(), events.DecisionKey, data); err != nil {
			t.Fatal(err)
		}
	}
	putDecision(1, 0.2)
	st := f.waitPhase("g", events.RolloutCompleted, 1)
	if !strings.Contains(st.Target.Config, "sampling_percentage: 10}") {
		t.Fatalf("rendered %q: want 0.2 × 0.5 = 10%%", st.Target.Config)
	}
	first := st.Target.Hash
	putDecision(2, 0.21) // 10.5%: within 10%
	putDecision(3, 0.3)  // 15%: beyond
	natstest.Eventually(t, 10*time.Second, func() bool {
		st := f.state("g")
		return st != nil && st.Phase == events.RolloutCompleted && st.Target.Hash != first
	}, "a new render rolls out")
	st = f.state("g")
	if !strings.Contains(st.Target.Config, "sampling_percentage: 15}") || st.Target.Values["${otelfleet:sampling.percent:checkout}"] != "15" {
		t.Fatalf("rendered %q values %v", st.Target.Config, st.Target.Values)
	}
}
