package platform

import (
	"fmt"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/micro"

	"github.com/otelfleet/otelfleet/pkg/events"
)

// Endpoint is one micro endpoint: op is the last subject token (otlp.<service>.<op>).
type Endpoint struct {
	Op          string
	Description string
	Handler     micro.Handler
}

// AddMicro starts the NATS micro service otlp-<service> with the given endpoints under
// the group otlp.<service>. Endpoints use the queue group "q" so that replicas share
// requests. The caller stops the service (Stop) when it stops.
func AddMicro(nc *nats.Conn, ns events.Namespace, s Settings, service, description string, eps ...Endpoint) (micro.Service, error) {
	svc, err := micro.AddService(nc, micro.Config{
		Name:        ns.MicroName(service),
		Version:     microVersion(),
		Description: description,
		Metadata:    map[string]string{"instance": s.Instance, "region": s.Region},
		QueueGroup:  "q",
	})
	if err != nil {
		return nil, fmt.Errorf("micro service %s: %w", ns.MicroName(service), err)
	}
	g := svc.AddGroup(ns.EndpointGroup(service))
	for _, ep := range eps {
		if err := g.AddEndpoint(ep.Op, ep.Handler, micro.WithEndpointMetadata(map[string]string{"description": ep.Description})); err != nil {
			_ = svc.Stop()
			return nil, fmt.Errorf("micro endpoint %s.%s: %w", ns.EndpointGroup(service), ep.Op, err)
		}
	}
	return svc, nil
}

// microVersion maps Version to the semver micro requires.
func microVersion() string {
	if Version == "" || Version == "dev" {
		return "0.0.0-dev"
	}
	if Version[0] == 'v' {
		return Version[1:]
	}
	return Version
}
