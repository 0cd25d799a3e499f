package topologysvc

import (
	"strings"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/otelfleet/otelfleet/pkg/events"
	"github.com/otelfleet/otelfleet/pkg/kvwatch"
)

// OpAMP is what the topology shows of a collector managed over OpAMP: from its agent
// state (agent.<uid> in the agents bucket, written by the opamp replica holding it).
type OpAMP struct {
	// UID is the agent's instance UID; Transport how it is connected ("websocket" or
	// "http").
	UID       string `json:"uid"`
	Transport string `json:"transport,omitempty"`
	// Group and ConfigVersion name the collector config version it was last given (empty
	// and 0 when it runs no config of ours); ConfigStatus is its remote config status
	// (UNSET, APPLYING, APPLIED, FAILED) and ConfigError the error it reported.
	Group         string `json:"group,omitempty"`
	ConfigVersion uint64 `json:"config_version,omitempty"`
	ConfigStatus  string `json:"config_status,omitempty"`
	ConfigError   string `json:"config_error,omitempty"`
	// EffectiveConfigHash is the hash of the config it runs, as it reported it.
	EffectiveConfigHash string `json:"effective_config_hash,omitempty"`
	// Healthy and HealthStatus are the root of the health tree it reported.
	Healthy      bool   `json:"healthy"`
	HealthStatus string `json:"health_status,omitempty"`
}

// opampOf converts an agent state to what the topology shows.
func opampOf(a *events.AgentState) *OpAMP {
	return &OpAMP{UID: a.UID, Transport: a.Transport, Group: a.RemoteConfig.Group,
		ConfigVersion: a.RemoteConfig.Version, ConfigStatus: a.RemoteConfig.Status, ConfigError: a.RemoteConfig.Error,
		EffectiveConfigHash: a.EffectiveConfigHash, Healthy: a.Health.Healthy, HealthStatus: a.Health.Status}
}

// watchAgents follows the agents bucket: each agent state attaches its OpAMP view to the
// collector collector.<region>.<id> it registers as. A state that does not decode, or
// whose key is not agent.<its uid>, is ignored (what was shown stays); a deleted or expired
// one detaches. After each replay the agents that were not in it are forgotten.
func (s *Service) watchAgents(kv jetstream.KeyValue) {
	if kv == nil {
		return
	}
	var seen map[string]struct{}
	kvwatch.Watch(s.ctx, s.d.NC, kv, events.AgentKeyPrefix+">", kvwatch.Handler{
		Start: func() { seen = make(map[string]struct{}) },
		Entry: func(e jetstream.KeyValueEntry) {
			if e == nil {
				if seen != nil {
					s.state.RetainAgents(seen)
					seen = nil
				}
				return
			}
			uid := strings.TrimPrefix(e.Key(), events.AgentKeyPrefix)
			if e.Operation() != jetstream.KeyValuePut {
				s.state.DeleteAgent(uid)
				return
			}
			var a events.AgentState
			if err := events.Decode(e.Value(), &a); err != nil || a.UID != uid {
				s.log.Debug("ignoring an agent state that does not decode or is not under its own key", "key", e.Key(), "err", err)
				if seen != nil {
					seen[uid] = struct{}{} // keep what was shown
				}
				return
			}
			if seen != nil {
				seen[uid] = struct{}{}
			}
			s.state.PutAgent(collectorKey{a.Region, a.ID}, opampOf(&a))
		},
		Err: func(err error) { s.log.Debug("agent state watch failed, retrying", "err", err) },
	})
}

// agentRef is where the state files an agent's OpAMP view: its collector and the view.
type agentRef struct {
	key collectorKey
	o   *OpAMP
}

// PutAgent attaches o (an agent's OpAMP view, not modified afterwards) to collector k;
// an agent that moved to another identity leaves its old one.
func (s *State) PutAgent(k collectorKey, o *OpAMP) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.agents == nil {
		s.agents = make(map[string]agentRef)
		s.opamp = make(map[collectorKey]*OpAMP)
	}
	if old, ok := s.agents[o.UID]; ok && old.key != k && s.opamp[old.key] == old.o {
		delete(s.opamp, old.key)
	}
	s.agents[o.UID] = agentRef{k, o}
	s.opamp[k] = o
}

// DeleteAgent detaches the agent uid from its collector.
func (s *State) DeleteAgent(uid string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.deleteAgentLocked(uid)
}

func (s *State) deleteAgentLocked(uid string) {
	old, ok := s.agents[uid]
	if !ok {
		return
	}
	delete(s.agents, uid)
	if s.opamp[old.key] == old.o {
		delete(s.opamp, old.key)
	}
}

// RetainAgents forgets every agent whose uid is not in keep.
func (s *State) RetainAgents(keep map[string]struct{}) {
	s.mu.Lock()
	defer s.mu.Unlock()
	for uid := range s.agents {
		if _, ok := keep[uid]; !ok {
			s.deleteAgentLocked(uid)
		}
	}
}
