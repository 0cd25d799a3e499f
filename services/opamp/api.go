package opampsvc

import (
	"context"
	"errors"
	"slices"
	"strings"
	"time"

	"github.com/nats-io/nats.go/micro"

	"github.com/otelfleet/otelfleet/pkg/events"
	"github.com/otelfleet/otelfleet/pkg/kvwatch"
	"github.com/otelfleet/otelfleet/pkg/microapi"
	"github.com/otelfleet/otelfleet/pkg/platform"
)

// AgentsRequest is the body of otlp.opamp.agents: optional filters.
type AgentsRequest struct {
	Region string `json:"region,omitempty"`
}

// AgentRequest is the body of otlp.opamp.agent: the agent's instance UID or its
// registration id (service.instance.id or UID).
type AgentRequest struct {
	UID string `json:"uid,omitempty"`
	ID  string `json:"id,omitempty"`
}

// Endpoints returns the micro endpoints: agents and agent. Both read the agents bucket,
// so any replica answers for every agent.
func (s *Service) Endpoints() []platform.Endpoint {
	return []platform.Endpoint{
		{Op: "agents", Description: "list OpAMP agent states; body {region} optional; reply: array of agent states", Handler: microapi.Handler(s.handleAgents)},
		{Op: "agent", Description: "one OpAMP agent state; body {uid} or {id}", Handler: microapi.Handler(s.handleAgent)},
	}
}

// States reads every valid agent state from the bucket, sorted by region, id, uid.
// Invalid values are skipped.
func (s *Service) States(ctx context.Context) ([]events.AgentState, error) {
	ctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	entries, err := kvwatch.Current(ctx, s.agentsKV)
	if err != nil {
		return nil, err
	}
	out := make([]events.AgentState, 0, len(entries))
	for _, e := range entries {
		var st events.AgentState
		if !strings.HasPrefix(e.Key(), events.AgentKeyPrefix) || events.Decode(e.Value(), &st) != nil || events.AgentKeyPrefix+st.UID != e.Key() {
			continue
		}
		out = append(out, st)
	}
	slices.SortFunc(out, func(a, b events.AgentState) int {
		return strings.Compare(a.Region+"\x00"+a.ID+"\x00"+a.UID, b.Region+"\x00"+b.ID+"\x00"+b.UID)
	})
	return out, nil
}

func (s *Service) handleAgents(ctx context.Context, req micro.Request) (any, error) {
	var r AgentsRequest
	if err := microapi.DecodeRequest(req, &r); err != nil {
		return nil, err
	}
	all, err := s.States(ctx)
	if err != nil {
		return nil, microapi.Errorf(microapi.CodeUnavailable, "opamp agents: %v", err)
	}
	if r.Region != "" {
		all = slices.DeleteFunc(all, func(st events.AgentState) bool { return st.Region != r.Region })
	}
	return all, nil
}

func (s *Service) handleAgent(ctx context.Context, req micro.Request) (any, error) {
	var r AgentRequest
	if err := microapi.DecodeRequest(req, &r); err != nil {
		return nil, err
	}
	if r.UID != "" {
		if _, err := events.AgentKey(r.UID); err != nil {
			return nil, microapi.Errorf(microapi.CodeBadRequest, "opamp agent: uid: %v", err)
		}
		st, err := s.readAgentState(ctx, r.UID)
		switch {
		case errors.Is(err, errUnknownAgent), errors.Is(err, errBadAgentState):
			return nil, microapi.Errorf(microapi.CodeNotFound, "opamp agent: %v", err)
		case err != nil: // the bucket failed: say so, the agent may well be connected
			return nil, microapi.Errorf(microapi.CodeUnavailable, "opamp agent: %v", err)
		}
		return st, nil
	}
	if r.ID == "" {
		return nil, microapi.Errorf(microapi.CodeBadRequest, "opamp agent: give uid or id")
	}
	all, err := s.States(ctx)
	if err != nil {
		return nil, microapi.Errorf(microapi.CodeUnavailable, "opamp agent: %v", err)
	}
	for _, st := range all {
		if st.ID == r.ID || st.UID == r.ID {
			return st, nil
		}
	}
	return nil, microapi.Errorf(microapi.CodeNotFound, "opamp agent: no agent with id %s", r.ID)
}
