package configsvc

import (
	"context"
	"errors"
	"fmt"
	"sort"
	"time"

	"github.com/nats-io/nats.go/jetstream"
	"github.com/nats-io/nats.go/micro"

	"github.com/otelfleet/otelfleet/pkg/events"
	"github.com/otelfleet/otelfleet/pkg/fleetconfig"
	"github.com/otelfleet/otelfleet/pkg/kvwatch"
	"github.com/otelfleet/otelfleet/pkg/microapi"
)

// collectorDoc is the stored document type of group's collector config.
func collectorDoc(group string) (docType[fleetconfig.CollectorConfig], error) {
	key, err := events.CollectorConfigKey(group)
	if err != nil {
		return docType[fleetconfig.CollectorConfig]{}, fmt.Errorf("%w: %w", fleetconfig.ErrInvalid, err)
	}
	return docType[fleetconfig.CollectorConfig]{
		key: key,
		load: func(b []byte) (fleetconfig.CollectorConfig, error) {
			return fleetconfig.DecodeStoredCollector(key, group, b)
		},
		stamp: func(c *fleetconfig.CollectorConfig) (*uint64, *time.Time, *string) {
			return &c.Version, &c.UpdatedAt, &c.UpdatedBy
		},
		diff: fleetconfig.DiffCollector,
	}, nil
}

// PutCollector validates c (not against agents: the service does that) and writes it as
// the next version of group's collector config.
func (s *Store) PutCollector(ctx context.Context, group string, c fleetconfig.CollectorConfig, by string, ifVersion *uint64) (Change, error) {
	d, err := collectorDoc(group)
	if err != nil {
		return Change{}, err
	}
	if err := c.Validate(group); err != nil {
		return Change{}, err
	}
	return put(ctx, s, d, c, by, ifVersion)
}

// Collector returns group's collector config in force (the newest valid version) and,
// when the newest stored value is invalid, its history entry as a warning.
func (s *Store) Collector(ctx context.Context, group string) (fleetconfig.CollectorConfig, *HistoryEntry, error) {
	d, err := collectorDoc(group)
	if err != nil {
		return fleetconfig.CollectorConfig{}, nil, err
	}
	return inForce(ctx, s.kv, d)
}

// Collectors returns every group's collector config in force, with warnings for invalid
// newest values.
func (s *Store) Collectors(ctx context.Context) (map[string]fleetconfig.CollectorConfig, []HistoryEntry, error) {
	lister, err := s.kv.ListKeysFiltered(ctx, events.CollectorConfigKeyPrefix+"*")
	if err != nil {
		return nil, nil, fmt.Errorf("list collector config keys: %w", err)
	}
	out := map[string]fleetconfig.CollectorConfig{}
	var warns []HistoryEntry
	for key := range lister.Keys() {
		group, ok := events.CollectorGroupFromConfigKey(key)
		if !ok {
			continue
		}
		c, warn, err := s.Collector(ctx, group)
		if warn != nil {
			warns = append(warns, *warn)
		}
		if err == nil {
			out[group] = c
		}
	}
	return out, warns, nil
}

// collectorHistory and collectorRollback serve History and Rollback for collector.<g>.
func (s *Store) collectorHistory(ctx context.Context, group string) ([]HistoryEntry, error) {
	d, _ := collectorDoc(group)
	h, _, err := history(ctx, s.kv, d)
	return h, err
}

func (s *Store) collectorRollback(ctx context.Context, group string, to uint64, by string) (Change, error) {
	d, _ := collectorDoc(group)
	return rollback(ctx, s, d, to, by)
}

// MatchedAgent is an agent a selector matches, as the validator saw it.
type MatchedAgent struct {
	UID    string `json:"uid"`
	ID     string `json:"id"`
	Region string `json:"region"`
	// Components is how many components it reported (0: it was not checked).
	Components int `json:"components"`
}

// CollectorRequest is the body of otlp.config.collector.put and .validate: a group's
// collector config document.
type CollectorRequest struct {
	Group    string                    `json:"group"`
	Selector fleetconfig.Selector      `json:"selector"`
	Config   string                    `json:"config"`
	Rollout  fleetconfig.RolloutPolicy `json:"rollout"`
	By       string                    `json:"by"`
	// IfVersion, when set, makes the write fail with a conflict unless the group's
	// stored version equals it.
	IfVersion *uint64 `json:"if_version,omitempty"`
}

// CollectorValidateReply is the reply of otlp.config.collector.validate and the body of
// a refused collector.put.
type CollectorValidateReply struct {
	ValidateReply
	// Agents are the agents the selector matches now; Notes say what was not checked.
	Agents []MatchedAgent `json:"agents"`
	Notes  []string       `json:"notes,omitempty"`
}

// matchingAgents returns the agents of the agents bucket the selector matches; hostile
// values are skipped.
func (s *Service) matchingAgents(ctx context.Context, sel fleetconfig.Selector) ([]events.AgentState, error) {
	if s.agents == nil {
		return nil, errors.New("the agents bucket is not available")
	}
	entries, err := kvwatch.Current(ctx, s.agents)
	if err != nil {
		return nil, err
	}
	var out []events.AgentState
	for _, e := range entries {
		var a events.AgentState
		if e.Operation() != jetstream.KeyValuePut || events.Decode(e.Value(), &a) != nil || e.Key() != events.AgentKeyPrefix+a.UID {
			continue
		}
		if sel.Matches(a.Region, a.Attribute) {
			out = append(out, a)
		}
	}
	sort.Slice(out, func(i, j int) bool { return out[i].UID < out[j].UID })
	return out, nil
}

// ValidateCollector checks req as a document and against the components of the agents
// its selector matches. The error is a *fleetconfig.ValidationError with every problem.
func (s *Service) ValidateCollector(ctx context.Context, req CollectorRequest) (fleetconfig.CollectorConfig, CollectorValidateReply, error) {
	doc := fleetconfig.CollectorConfig{Selector: req.Selector, Config: req.Config, Rollout: req.Rollout}
	rep := CollectorValidateReply{Agents: []MatchedAgent{}}
	var ps []fleetconfig.Problem
	var ve *fleetconfig.ValidationError
	if err := doc.Validate(req.Group); errors.As(err, &ve) {
		ps = append(ps, ve.Problems...)
	}
	agents, err := s.matchingAgents(ctx, req.Selector)
	switch {
	case err != nil:
		rep.Notes = append(rep.Notes, "component types were not checked: "+err.Error())
	case len(agents) == 0:
		rep.Notes = append(rep.Notes, fmt.Sprintf("no agent matches the selector %s now; component types were not checked", req.Selector))
	default:
		shape, sps := fleetconfig.ParseCollectorYAML(req.Config)
		comps := make([]fleetconfig.AgentComponents, 0, len(agents))
		unchecked := 0
		for _, a := range agents {
			rep.Agents = append(rep.Agents, MatchedAgent{UID: a.UID, ID: a.ID, Region: a.Region, Components: len(a.Components)})
			comps = append(comps, fleetconfig.AgentComponents{Name: a.Region + "/" + a.ID, Components: a.Components})
			if len(a.Components) == 0 {
				unchecked++
			}
		}
		if len(sps) == 0 {
			ps = append(ps, fleetconfig.CheckComponents(shape, comps)...)
		}
		if unchecked > 0 {
			rep.Notes = append(rep.Notes, fmt.Sprintf("%d of %d matching agents report no available components; they were not checked", unchecked, len(agents)))
		}
	}
	if len(ps) > 0 {
		err := &fleetconfig.ValidationError{Problems: ps}
		rep.ValidateReply = validationReply(err)
		return doc, rep, err
	}
	rep.Valid = true
	return doc, rep, nil
}

// PutCollector validates req (document and agents) and stores it as the group's next
// version; nothing is written unless every check passes.
func (s *Service) PutCollector(ctx context.Context, req CollectorRequest) (Change, error) {
	doc, rep, err := s.ValidateCollector(ctx, req)
	if err != nil {
		body, _ := jsonMarshal(rep)
		return Change{}, &microapi.Error{Code: microapi.CodeBadRequest, Message: err.Error(), Body: body}
	}
	by := req.By
	if by == "" {
		by = "unknown"
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	c, err := s.store.PutCollector(ctx, req.Group, doc, by, req.IfVersion)
	if err != nil {
		return Change{}, s.storeError(err)
	}
	if !c.Unchanged {
		s.announce(ctx, c, "put", 0)
	}
	return c, nil
}

// CollectorGroupRequest names a group (get, history).
type CollectorGroupRequest struct {
	Group string `json:"group"`
}

// CollectorGetReply is the reply of otlp.config.collector.get.
type CollectorGetReply struct {
	Group    string                      `json:"group"`
	Document fleetconfig.CollectorConfig `json:"document"`
	Warnings []string                    `json:"warnings,omitempty"`
}

// CollectorListEntry is one group of otlp.config.collector.list.
type CollectorListEntry struct {
	Group     string    `json:"group"`
	Version   uint64    `json:"version"`
	Selector  string    `json:"selector"`
	UpdatedAt time.Time `json:"updated_at"`
	UpdatedBy string    `json:"updated_by"`
}

// CollectorRollbackRequest is the body of otlp.config.collector.rollback.
type CollectorRollbackRequest struct {
	Group string `json:"group"`
	To    uint64 `json:"to"`
	By    string `json:"by"`
}

func warnings(ws ...*HistoryEntry) []string {
	var out []string
	for _, w := range ws {
		if w != nil {
			out = append(out, fmt.Sprintf("revision %d is invalid and not in force: %s", w.Revision, w.Error))
		}
	}
	return out
}

func (s *Service) collectorEndpoints() []endpoint {
	return []endpoint{
		{"collector.put", "validate a group's collector config (against the components of the agents its selector matches) and store it by compare-and-set", func(ctx context.Context, req micro.Request) (any, error) {
			var in CollectorRequest
			if err := microapi.DecodeRequest(req, &in); err != nil {
				return nil, err
			}
			return s.PutCollector(ctx, in)
		}},
		{"collector.validate", "validate a group's collector config without storing it", func(ctx context.Context, req micro.Request) (any, error) {
			var in CollectorRequest
			if err := microapi.DecodeRequest(req, &in); err != nil {
				return nil, err
			}
			_, rep, _ := s.ValidateCollector(ctx, in)
			return rep, nil
		}},
		{"collector.get", "a group's collector config in force", func(ctx context.Context, req micro.Request) (any, error) {
			var in CollectorGroupRequest
			if err := microapi.DecodeRequest(req, &in); err != nil {
				return nil, err
			}
			c, warn, err := s.store.Collector(ctx, in.Group)
			if err != nil {
				return nil, s.storeError(err)
			}
			return CollectorGetReply{Group: in.Group, Document: c, Warnings: warnings(warn)}, nil
		}},
		{"collector.list", "every group's collector config version and selector", func(ctx context.Context, req micro.Request) (any, error) {
			all, warns, err := s.store.Collectors(ctx)
			if err != nil {
				return nil, err
			}
			out := make([]CollectorListEntry, 0, len(all))
			for g, c := range all {
				out = append(out, CollectorListEntry{Group: g, Version: c.Version, Selector: c.Selector.String(), UpdatedAt: c.UpdatedAt, UpdatedBy: c.UpdatedBy})
			}
			sort.Slice(out, func(i, j int) bool { return out[i].Group < out[j].Group })
			for _, w := range warns {
				s.log.Warn("invalid collector config value", "revision", w.Revision, "err", w.Error)
			}
			return out, nil
		}},
		{"collector.history", "the kept versions of a group's collector config", func(ctx context.Context, req micro.Request) (any, error) {
			var in CollectorGroupRequest
			if err := microapi.DecodeRequest(req, &in); err != nil {
				return nil, err
			}
			key, err := events.CollectorConfigKey(in.Group)
			if err != nil {
				return nil, microapi.Errorf(microapi.CodeBadRequest, "group: %v", err)
			}
			h, err := s.store.History(ctx, key)
			if err != nil {
				return nil, s.storeError(err)
			}
			return h, nil
		}},
		{"collector.rollback", "store a kept version of a group's collector config again as the newest", func(ctx context.Context, req micro.Request) (any, error) {
			var in CollectorRollbackRequest
			if err := microapi.DecodeRequest(req, &in); err != nil {
				return nil, err
			}
			key, err := events.CollectorConfigKey(in.Group)
			if err != nil {
				return nil, microapi.Errorf(microapi.CodeBadRequest, "group: %v", err)
			}
			return s.Rollback(ctx, RollbackRequest{Key: key, To: in.To, By: in.By})
		}},
	}
}
