package events

import (
	"errors"
	"fmt"
	"strings"
)

// DefaultRoot is the subject root used when none is configured.
const DefaultRoot = "otlp"

// ErrInvalidToken is returned by every name builder when a caller-supplied token cannot be
// used as a NATS subject token and KV key segment.
var ErrInvalidToken = errors.New("invalid name token")

// Service names, as used in micro service names (otlp-<service>) and endpoints
// (otlp.<service>.<op>).
const (
	ServiceConfig   = "config"
	ServiceRegistry = "registry"
	ServiceTopology = "topology"
	ServiceSampler  = "sampler"
	ServiceRouter   = "router"
)

// Fixed KV keys.
const (
	// GlobalConfigKey is the key of the global configuration in the config bucket.
	GlobalConfigKey = "global"
	// DecisionKey is the key of the sampling decision in the sampling bucket.
	DecisionKey = "decision"
)

// CheckToken reports whether s can be used as one NATS subject token and one KV key
// segment: non-empty, at most 128 bytes, made only of ASCII letters, digits, '-', '_' and
// '='. The error names the offending character so a user can fix the value.
func CheckToken(what, s string) error {
	if s == "" {
		return fmt.Errorf("%w: %s is empty", ErrInvalidToken, what)
	}
	if len(s) > 128 {
		return fmt.Errorf("%w: %s %.20q... is longer than 128 bytes", ErrInvalidToken, what, s)
	}
	for i := 0; i < len(s); i++ {
		c := s[i]
		switch {
		case c >= 'a' && c <= 'z', c >= 'A' && c <= 'Z', c >= '0' && c <= '9', c == '-', c == '_', c == '=':
		default:
			return fmt.Errorf("%w: %s %q contains %q at byte %d (allowed: letters, digits, '-', '_', '=')", ErrInvalidToken, what, s, string(rune(c)), i)
		}
	}
	return nil
}

// Namespace builds every subject, stream, bucket and key name from one subject root.
// The zero value is not usable; use NewNamespace or Default.
type Namespace struct {
	root string
}

// Default is the namespace rooted at DefaultRoot ("otlp").
var Default = Namespace{root: DefaultRoot}

// NewNamespace returns the namespace rooted at root, which must be a valid token.
func NewNamespace(root string) (Namespace, error) {
	if err := CheckToken("subject root", root); err != nil {
		return Namespace{}, err
	}
	return Namespace{root: root}, nil
}

// Root returns the subject root, e.g. "otlp".
func (n Namespace) Root() string { return n.root }

func (n Namespace) upper() string { return strings.ToUpper(n.root) }

// LoadStream is the JetStream stream holding load reports, e.g. "OTLP_LOAD".
func (n Namespace) LoadStream() string { return n.upper() + "_LOAD" }

// EventsStream is the JetStream stream holding lifecycle events, e.g. "OTLP_EVENTS".
func (n Namespace) EventsStream() string { return n.upper() + "_EVENTS" }

// ConfigBucket is the KV bucket holding the global and regional configuration.
func (n Namespace) ConfigBucket() string { return n.root + "_config" }

// RegistryBucket is the KV bucket holding registrations (bucket TTL, limit markers on).
func (n Namespace) RegistryBucket() string { return n.root + "_registry" }

// LeasesBucket is the KV bucket holding leader leases and locks, one key per role.
func (n Namespace) LeasesBucket() string { return n.root + "_leases" }

// SamplingBucket is the KV bucket holding the sampling decision.
func (n Namespace) SamplingBucket() string { return n.root + "_sampling" }

// LoadSubject is the subject a collector publishes its load reports on:
// <root>.load.<region>.<collector>.
func (n Namespace) LoadSubject(region, collector string) (string, error) {
	if err := CheckToken("region", region); err != nil {
		return "", err
	}
	if err := CheckToken("collector id", collector); err != nil {
		return "", err
	}
	return n.root + ".load." + region + "." + collector, nil
}

// RouterStatusSubject is the core NATS subject a router publishes its RouterStatus on
// every report interval: <root>.router.status.<instance>.
func (n Namespace) RouterStatusSubject(instance string) (string, error) {
	if err := CheckToken("router id", instance); err != nil {
		return "", err
	}
	return n.root + ".router.status." + instance, nil
}

// RouterStatusSubjects is the wildcard matching every router's status:
// <root>.router.status.*.
func (n Namespace) RouterStatusSubjects() string { return n.root + ".router.status.*" }

// LoadSubjects is the wildcard matching every load report: <root>.load.>.
func (n Namespace) LoadSubjects() string { return n.root + ".load.>" }

// EventSubjects is the wildcard matching every lifecycle event: <root>.events.>.
func (n Namespace) EventSubjects() string { return n.root + ".events.>" }

// EventSubject is the subject an event of type t is published on, e.g.
// otlp.events.config.changed.
func (n Namespace) EventSubject(t EventType) string { return n.root + ".events." + string(t) }

// MicroName is the NATS micro service name of an otelfleet service, e.g. "otlp-config".
func (n Namespace) MicroName(service string) string { return n.root + "-" + service }

// EndpointGroup is the subject prefix of a service's micro endpoints, e.g. "otlp.config".
func (n Namespace) EndpointGroup(service string) string { return n.root + "." + service }

// Endpoint is the request subject of one micro endpoint, e.g. "otlp.config.get".
func (n Namespace) Endpoint(service, op string) string {
	return n.EndpointGroup(service) + "." + op
}

// ConfigReportSubject is the subject every config watcher answers on with the config
// version it has applied; a request to it gathers the rollout across all instances.
func (n Namespace) ConfigReportSubject() string { return n.root + ".config-report" }

// RegionConfigKey is the config bucket key of a region's overrides: region.<region>.
func RegionConfigKey(region string) (string, error) {
	if err := CheckToken("region", region); err != nil {
		return "", err
	}
	return "region." + region, nil
}

// RegionFromConfigKey returns the region of a region.<region> key, or false when key is
// not a regional config key.
func RegionFromConfigKey(key string) (string, bool) {
	r, ok := strings.CutPrefix(key, "region.")
	if !ok || CheckToken("region", r) != nil {
		return "", false
	}
	return r, true
}

// GoodConfigKeyPrefix prefixes the config service's copy of the last good value of a
// config key: good.global, good.region.<r>, good.collector.<group>.
const GoodConfigKeyPrefix = "good."

// GoodConfigKey is the config bucket key under which the config service keeps the last
// good value of key (global, region.<r> or collector.<group>), so that no number of
// invalid values written over key can push every good one out of its kept history.
// Watchers and key listings ignore these keys; readers fall back to them.
func GoodConfigKey(key string) string { return GoodConfigKeyPrefix + key }

// CollectorKey is the registry bucket key of a collector: collector.<region>.<id>.
func CollectorKey(region, id string) (string, error) {
	if err := CheckToken("region", region); err != nil {
		return "", err
	}
	if err := CheckToken("collector id", id); err != nil {
		return "", err
	}
	return "collector." + region + "." + id, nil
}

// ServiceKey is the registry bucket key of a service instance: service.<name>.<id>.
func ServiceKey(name, id string) (string, error) {
	if err := CheckToken("service name", name); err != nil {
		return "", err
	}
	if err := CheckToken("instance id", id); err != nil {
		return "", err
	}
	return "service." + name + "." + id, nil
}

// LeaseKey is the leases bucket key of a leadership role or lock name.
func LeaseKey(role string) (string, error) {
	if err := CheckToken("role", role); err != nil {
		return "", err
	}
	return role, nil
}

// Key filters of the registry bucket, for watches of one kind of registration.
const (
	// CollectorKeys matches every collector registration: collector.>.
	CollectorKeys = KindCollector + ".>"
	// ServiceKeys matches every service registration: service.>.
	ServiceKeys = KindService + ".>"
)

// RouterKeys matches every OTLP router registration: service.router.*.
const RouterKeys = KindService + "." + ServiceRouter + ".*"

// RouterFromKey returns the instance id of a service.router.<id> key, or false when key
// is not a valid router key.
func RouterFromKey(key string) (id string, ok bool) {
	id, ok = strings.CutPrefix(key, KindService+"."+ServiceRouter+".")
	if !ok || CheckToken("router id", id) != nil {
		return "", false
	}
	return id, true
}

// CollectorFromKey returns the region and id of a collector.<region>.<id> key, or false
// when key is not a valid collector key.
func CollectorFromKey(key string) (region, id string, ok bool) {
	rest, ok := strings.CutPrefix(key, KindCollector+".")
	if !ok {
		return "", "", false
	}
	region, id, ok = strings.Cut(rest, ".")
	if !ok || CheckToken("region", region) != nil || CheckToken("collector id", id) != nil {
		return "", "", false
	}
	return region, id, true
}

// Source is the CloudEvents ce-source of what component (a service name or a tool such
// as "simulate", "election", "agent") publishes from instance: otelfleet/<component>/<instance>.
// An empty instance gives otelfleet/<component>.
func Source(component, instance string) string {
	if instance == "" {
		return "otelfleet/" + component
	}
	return "otelfleet/" + component + "/" + instance
}

// Ports of the OTLP router (ServiceRouter): the standard OTLP receiver ports.
const (
	// RouterGRPCPort is the OTLP/gRPC port the router listens on.
	RouterGRPCPort = 4317
	// RouterHTTPPort is the OTLP/HTTP port the router listens on.
	RouterHTTPPort = 4318
)
