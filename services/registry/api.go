package registrysvc

import (
	"context"

	"github.com/nats-io/nats.go/micro"

	"github.com/otelfleet/otelfleet/pkg/events"
	"github.com/otelfleet/otelfleet/pkg/microapi"
	"github.com/otelfleet/otelfleet/pkg/platform"
)

// ListRequest is the body of otlp.registry.list: a Filter (every field optional).
type ListRequest = Filter

// GetRequest is the body of otlp.registry.get: either Key, or Kind with ID and Region
// (collectors) or Name (services).
type GetRequest struct {
	Key    string `json:"key,omitempty"`
	Kind   string `json:"kind,omitempty"`
	ID     string `json:"id,omitempty"`
	Region string `json:"region,omitempty"`
	Name   string `json:"name,omitempty"`
}

// Endpoints returns the service's micro endpoints: list and get. Both answer 503 until
// the first load of the bucket is done.
func (s *Service) Endpoints() []platform.Endpoint {
	return []platform.Endpoint{
		{Op: "list", Description: "list live registrations; body {kind, region, health, name}, all optional; reply: array of registrations", Handler: microapi.Handler(s.handleList)},
		{Op: "get", Description: "one registration; body {key} or {kind, id, region|name}", Handler: microapi.Handler(s.handleGet)},
	}
}

func (s *Service) ready() error {
	if s.first() {
		return microapi.Errorf(microapi.CodeUnavailable, "registry not loaded yet")
	}
	return nil
}

func (s *Service) handleList(_ context.Context, req micro.Request) (any, error) {
	if err := s.ready(); err != nil {
		return nil, err
	}
	var f ListRequest
	if err := microapi.DecodeRequest(req, &f); err != nil {
		return nil, err
	}
	if err := f.Validate(); err != nil {
		return nil, microapi.Errorf(microapi.CodeBadRequest, "registry list: %v", err)
	}
	return s.List(f), nil
}

func (s *Service) handleGet(_ context.Context, req micro.Request) (any, error) {
	if err := s.ready(); err != nil {
		return nil, err
	}
	var g GetRequest
	if err := microapi.DecodeRequest(req, &g); err != nil {
		return nil, err
	}
	key := g.Key
	if key == "" {
		var err error
		key, err = events.Registration{InstanceKind: g.Kind, ID: g.ID, Region: g.Region, Name: g.Name}.Key()
		if err != nil {
			return nil, microapi.Errorf(microapi.CodeBadRequest, "registry get: give key, or kind and id with region (collector) or name (service): %v", err)
		}
	}
	r, ok := s.Get(key)
	if !ok {
		return nil, microapi.Errorf(microapi.CodeNotFound, "registry get: %s is not registered", key)
	}
	return r, nil
}
