package platform

import (
	"fmt"
	"regexp"
	"strings"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/micro"

	"github.com/otelfleet/otelfleet/pkg/events"
)

// Endpoint is one micro endpoint: op is the subject after the group (otlp.<service>.<op>),
// one token or several separated by dots.
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
		Version:     MicroVersion(Version),
		Description: description,
		Metadata:    map[string]string{"instance": s.Instance, "region": s.Region},
		QueueGroup:  "q",
	})
	if err != nil {
		return nil, fmt.Errorf("micro service %s: %w", ns.MicroName(service), err)
	}
	g := svc.AddGroup(ns.EndpointGroup(service))
	for _, ep := range eps {
		// An op of several tokens (collector.put) is the subject; micro names allow no dots.
		if err := g.AddEndpoint(strings.ReplaceAll(ep.Op, ".", "-"), ep.Handler, micro.WithEndpointSubject(ep.Op), micro.WithEndpointMetadata(map[string]string{"description": ep.Description})); err != nil {
			_ = svc.Stop()
			return nil, fmt.Errorf("micro endpoint %s.%s: %w", ns.EndpointGroup(service), ep.Op, err)
		}
	}
	return svc, nil
}

// semver matches the versions NATS micro accepts.
var semver = regexp.MustCompile(`^(0|[1-9]\d*)\.(0|[1-9]\d*)\.(0|[1-9]\d*)(-[0-9A-Za-z-]+(\.[0-9A-Za-z-]+)*)?(\+[0-9A-Za-z-]+(\.[0-9A-Za-z-]+)*)?$`)

// MicroVersion maps the build Version to the semantic version micro requires: "v1.2.3"
// becomes "1.2.3", and anything that is not semver (a commit hash from git describe,
// "dev") becomes a pre-release of 0.0.0, e.g. "0.0.0-fd6b4bf-dirty".
func MicroVersion(version string) string {
	v := strings.TrimPrefix(version, "v")
	if semver.MatchString(v) {
		return v
	}
	var sb strings.Builder
	for _, r := range version {
		if r < 128 && (r == '-' || r >= '0' && r <= '9' || r >= 'a' && r <= 'z' || r >= 'A' && r <= 'Z') {
			sb.WriteRune(r)
		} else {
			sb.WriteByte('-')
		}
	}
	if sb.Len() == 0 {
		return "0.0.0-dev"
	}
	return "0.0.0-" + sb.String()
}
