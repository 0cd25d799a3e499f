package rollout_test

import (
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/otelfleet/otelfleet/pkg/events"
	"github.com/otelfleet/otelfleet/pkg/fleetconfig"
	"github.com/otelfleet/otelfleet/services/opamp/internal/rollout"
)

func TestPlan(t *testing.T) {
	for _, tc := range []struct {
		name string
		n    int
		p    fleetconfig.RolloutPolicy
		want string
	}{
		{"none", 0, fleetconfig.RolloutPolicy{}, "[]"},
		{"one agent is the canary", 1, fleetconfig.RolloutPolicy{}, "[1]"},
		{"defaults over 25", 25, fleetconfig.RolloutPolicy{}, "[3 7 7 8]"},
		{"fewer agents than waves", 3, fleetconfig.RolloutPolicy{CanaryPercent: 10, Waves: 5}, "[1 1 1]"},
		{"all at once", 4, fleetconfig.RolloutPolicy{CanaryPercent: 100}, "[4]"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			uids := make([]string, tc.n)
			for i := range uids {
				uids[tc.n-1-i] = uid(i) // reversed: Plan sorts
			}
			waves := rollout.Plan(uids, tc.p)
			sizes := make([]int, len(waves))
			for i, w := range waves {
				sizes[i] = len(w)
			}
			if fmt.Sprint(sizes) != tc.want {
				t.Fatalf("sizes %v, want %s", sizes, tc.want)
			}
			if tc.n > 0 && waves[0][0] != uid(0) {
				t.Fatalf("canary %v, want the lowest uid", waves[0])
			}
		})
	}
}

// TestStepWaveTimeoutAndSoakWithFakeClock drives Step by hand: the soak restarts when an
// agent stops being healthy before it ends, and a wave that never gets APPLIED fails at
// its timeout and gives the good config back.
func TestStepWaveTimeoutAndSoakWithFakeClock(t *testing.T) {
	t0 := time.Unix(1000, 0)
	good := events.RolloutConfig{Version: 1, Hash: "aa", Config: "good"}
	target := events.RolloutConfig{Version: 2, Hash: "bb", Config: "new"}
	agents := map[string]events.AgentState{}
	for i := range 2 {
		agents[uid(i)] = events.AgentState{UID: uid(i), ID: fmt.Sprint(i), Region: "eu", Health: events.AgentHealth{Healthy: true},
			RemoteConfig: events.RemoteConfigStatus{Hash: "aa", Status: events.RemoteConfigApplied}}
	}
	p := fleetconfig.RolloutPolicy{CanaryPercent: 50, Waves: 1, Soak: fleetconfig.Duration(10 * time.Second), WaveTimeout: fleetconfig.Duration(time.Minute)}
	st := &events.RolloutState{V: 1, Group: "g", Phase: events.RolloutCompleted, Target: good, Good: &good}
	in := rollout.Input{Now: t0, Group: "g", Policy: p, Target: &target, State: st, Agents: agents, Desired: map[string]events.DesiredConfig{}}
	out := rollout.Step(in)
	if out.State == nil || out.State.Phase != events.RolloutRunning || len(out.Write) != 1 || out.Write[0].UID != uid(0) || out.Write[0].Hash != "bb" {
		t.Fatalf("start: %+v", out)
	}
	st = out.State
	apply := func(u string, healthy bool) {
		a := agents[u]
		a.RemoteConfig = events.RemoteConfigStatus{Version: 2, Hash: "bb", Status: events.RemoteConfigApplied}
		a.Health.Healthy = healthy
		agents[u] = a
	}
	in.Desired = map[string]events.DesiredConfig{uid(0): out.Write[0]}
	step := func(at time.Duration) rollout.Output {
		in.Now, in.State = t0.Add(at), st
		o := rollout.Step(in)
		if o.State != nil {
			st = o.State
		}
		return o
	}
	apply(uid(0), true)
	step(time.Second) // soak starts
	if st.SoakStart != t0.Add(time.Second) {
		t.Fatalf("soak start %v", st.SoakStart)
	}
	a := agents[uid(0)]
	a.RemoteConfig.Status = events.RemoteConfigApplying // reapplying: not APPLIED, soak resets
	agents[uid(0)] = a
	step(5 * time.Second)
	if !st.SoakStart.IsZero() {
		t.Fatal("soak did not reset")
	}
	apply(uid(0), true)
	step(6 * time.Second)
	if o := step(15 * time.Second); st.Wave != 0 || len(o.Write) != 0 {
		t.Fatalf("moved on before the soak ended: %+v", o)
	}
	o := step(16 * time.Second)
	if st.Wave != 1 || len(o.Write) != 1 || o.Write[0].UID != uid(1) || o.Events[0].Type != string(events.EventRolloutWave) {
		t.Fatalf("next wave: %+v", o)
	}
	// Agent 1 never applies: the wave times out after a minute.
	if o := step(16*time.Second + time.Minute); st.Phase != events.RolloutRunning || len(o.Events) != 0 {
		t.Fatalf("failed too early: %+v", o)
	}
	in.Desired[uid(1)] = events.DesiredConfig{UID: uid(1), Version: 2, Hash: "bb"}
	o = step(17*time.Second + time.Minute)
	if st.Phase != events.RolloutRolledBack || !strings.Contains(st.Reason, "wave 1 timed out after 1m0s: 1 agents not APPLIED and healthy (agent eu/1") || st.BadVersion != 2 {
		t.Fatalf("state %+v", st)
	}
	if len(o.Write) != 2 || o.Write[0].Hash != "aa" || o.Write[1].Hash != "aa" {
		t.Fatalf("rollback writes %+v: want version 1 back on both agents", o.Write)
	}
	// The same target again is not retried.
	in.Desired = map[string]events.DesiredConfig{uid(0): o.Write[0], uid(1): o.Write[1]}
	if o := step(20 * time.Minute); len(o.Write) != 0 || st.Phase != events.RolloutRolledBack {
		t.Fatalf("retried: %+v", o)
	}
}

// BenchmarkStep10kAgents is one evaluation of a running rollout over 10,000 agents, all
// APPLIED and soaking: the work the leader does per tick and per bucket change.
func BenchmarkStep10kAgents(b *testing.B) {
	const n = 10000
	target := events.RolloutConfig{Version: 2, Hash: "bb", Config: "new"}
	agents := make(map[string]events.AgentState, n)
	desired := make(map[string]events.DesiredConfig, n)
	uids := make([]string, n)
	for i := range n {
		u := uid(i)
		uids[i] = u
		agents[u] = events.AgentState{UID: u, ID: fmt.Sprint(i), Region: "eu", Health: events.AgentHealth{Healthy: true},
			RemoteConfig: events.RemoteConfigStatus{Version: 2, Hash: "bb", Status: events.RemoteConfigApplied}}
		desired[u] = events.DesiredConfig{UID: u, Version: 2, Hash: "bb"}
	}
	p := fleetconfig.RolloutPolicy{Soak: fleetconfig.Duration(time.Hour)}
	st := &events.RolloutState{V: 1, Group: "g", ID: "g-2-bb", Phase: events.RolloutRunning, Target: target, Waves: rollout.Plan(uids, p), Wave: 3, SoakStart: time.Unix(1, 0)}
	in := rollout.Input{Now: time.Unix(2, 0), Group: "g", Policy: p, Target: &target, State: st, Agents: agents, Desired: desired}
	b.ReportAllocs()
	for b.Loop() {
		if out := rollout.Step(in); len(out.Write) != 0 {
			b.Fatal("unexpected writes")
		}
	}
}

// TestStepStartsOverAStateFromTheFuture: a rollout state whose target or bad version is
// above the document's version (the document was deleted and stored anew, or the value
// was written by hand) does not block the rollout.
func TestStepStartsOverAStateFromTheFuture(t *testing.T) {
	target := events.RolloutConfig{Version: 1, Hash: "cc", Config: "c"}
	agents := map[string]events.AgentState{uid(0): {UID: uid(0), ID: "a", Region: "eu"}}
	for name, st := range map[string]*events.RolloutState{
		"bad version above everything": {V: 1, Group: "g", Phase: events.RolloutRolledBack, Target: events.RolloutConfig{Version: 1, Hash: "zz"}, BadVersion: 1 << 50},
		"target from the future":       {V: 1, Group: "g", Phase: events.RolloutCompleted, Target: events.RolloutConfig{Version: 9, Hash: "zz"}, BadVersion: 9},
	} {
		t.Run(name, func(t *testing.T) {
			out := rollout.Step(rollout.Input{Now: time.Unix(1, 0), Group: "g", Target: &target, State: st, Agents: agents, Desired: map[string]events.DesiredConfig{}})
			if out.State == nil || out.State.Phase != events.RolloutRunning || out.State.BadVersion != 0 || len(out.Write) != 1 {
				t.Fatalf("%+v", out)
			}
		})
	}
}

// TestStateOf10kAgentsFitsInAMessage: the stored state of a rollout over 10,000 agents
// stays far below the NATS payload limit (1 MiB by default).
func TestStateOf10kAgentsFitsInAMessage(t *testing.T) {
	agents := map[string]events.AgentState{}
	for i := range 10000 {
		agents[uid(i)] = events.AgentState{UID: uid(i), ID: fmt.Sprintf("collector-%d", i), Region: "eu-west-1", Health: events.AgentHealth{Healthy: true}}
	}
	target := events.RolloutConfig{Version: 1, Hash: strings.Repeat("ab", 32), Config: strings.Repeat("x", 20000)}
	out := rollout.Step(rollout.Input{Now: time.Unix(1, 0), Group: "g", Target: &target, Agents: agents, Desired: map[string]events.DesiredConfig{}})
	data, err := events.Encode(*out.State)
	if err != nil {
		t.Fatal(err)
	}
	if len(data) > 600<<10 || len(out.State.Agents) != events.MaxListedRolloutAgents {
		t.Fatalf("state is %d bytes with %d listed agents", len(data), len(out.State.Agents))
	}
	t.Logf("state of 10,000 agents: %d bytes", len(data))
}
