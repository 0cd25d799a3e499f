package topologysvc

import (
	"context"
	"testing"
	"time"

	"github.com/otelfleet/otelfleet/pkg/events"
	"github.com/otelfleet/otelfleet/pkg/natstest"
)

// opampOfView returns the OpAMP view of collector region/id in r's current view (nil
// when the collector or its view is absent).
func opampOfView(r *replica, region, id string) *OpAMP {
	v, _ := r.svc.current()
	if v == nil {
		return nil
	}
	for _, reg := range v.regions {
		for _, c := range reg.Collectors {
			if reg.Region == region && c.ID == id {
				return c.OpAMP
			}
		}
	}
	return nil
}

func TestOpAMPAgentsAttachToTheirCollectors(t *testing.T) {
	f := newFixture(t, 30*time.Second)
	r := f.start(t, fastConfig(), "t1")
	now := time.Now().UTC()
	putRegistration(t, f.b.Registry, &events.Registration{V: events.RegistrationVersion, InstanceKind: events.KindCollector,
		ID: "col-a", Region: "eu", Health: events.Health{Status: events.HealthHealthy}, RegisteredAt: now, Metadata: map[string]string{"managed_by": "opamp"}})
	const uid = "0123456789abcdef0123456789abcdef"
	putAgent := func(data []byte) {
		t.Helper()
		if _, err := f.b.Agents.Put(context.Background(), events.AgentKeyPrefix+uid, data); err != nil {
			t.Fatal(err)
		}
	}
	agent := func(version uint64, status string) []byte {
		data, err := events.Encode(&events.AgentState{V: events.AgentStateVersion, UID: uid, ID: "col-a", Region: "eu", Transport: "websocket",
			EffectiveConfigHash: "ab12", Health: events.AgentHealth{Healthy: true, Status: "StatusOK"},
			RemoteConfig: events.RemoteConfigStatus{Group: "edge", Version: version, Hash: "cd34", Status: status}, ConnectedAt: now, UpdatedAt: now})
		if err != nil {
			t.Fatal(err)
		}
		return data
	}
	putAgent(agent(3, events.RemoteConfigApplied))
	natstest.Eventually(t, 5*time.Second, func() bool {
		o := opampOfView(r, "eu", "col-a")
		return o != nil && o.ConfigVersion == 3 && o.ConfigStatus == events.RemoteConfigApplied && o.Group == "edge" &&
			o.EffectiveConfigHash == "ab12" && o.Healthy && o.UID == uid
	}, "the agent's config version and status on its collector")

	// Garbage and a state filed under another uid leave the view as it was; the next good
	// state shows, so the bad ones have been seen.
	putAgent([]byte("garbage"))
	wrong, err := events.Encode(&events.AgentState{V: events.AgentStateVersion, UID: "ffffffffffffffffffffffffffffffff", ID: "col-a", Region: "eu",
		RemoteConfig: events.RemoteConfigStatus{Status: events.RemoteConfigFailed}})
	if err != nil {
		t.Fatal(err)
	}
	putAgent(wrong)
	putAgent(agent(4, events.RemoteConfigFailed))
	natstest.Eventually(t, 5*time.Second, func() bool {
		o := opampOfView(r, "eu", "col-a")
		if o == nil {
			t.Fatal("a bad agent state detached the collector's OpAMP view")
		}
		return o.ConfigVersion == 4 && o.ConfigStatus == events.RemoteConfigFailed
	}, "the next good state")

	if err := f.b.Agents.Delete(context.Background(), events.AgentKeyPrefix+uid); err != nil {
		t.Fatal(err)
	}
	natstest.Eventually(t, 5*time.Second, func() bool { return opampOfView(r, "eu", "col-a") == nil }, "no OpAMP view once the agent state is gone")
}

func TestStateAgentMovesIdentity(t *testing.T) {
	s := NewState(DefaultConfig())
	a, b := collectorKey{"eu", "a"}, collectorKey{"eu", "b"}
	s.PutAgent(a, &OpAMP{UID: "u1"})
	s.PutAgent(b, &OpAMP{UID: "u1", ConfigVersion: 2})
	if _, ok := s.opamp[a]; ok {
		t.Fatal("the agent's old identity kept its view")
	}
	if s.opamp[b].ConfigVersion != 2 {
		t.Fatalf("new identity: %+v", s.opamp[b])
	}
	s.RetainAgents(map[string]struct{}{})
	if len(s.opamp) != 0 || len(s.agents) != 0 {
		t.Fatalf("retain of nothing left %d views, %d agents", len(s.opamp), len(s.agents))
	}
}
