package events

import (
	"errors"
	"fmt"
	"maps"
	"math"
	"slices"
	"strconv"
	"strings"
	"time"
)

// Registration kinds.
const (
	KindCollector = "collector"
	KindService   = "service"
)

// HealthStatus is the overall or per-check health of a registered instance.
type HealthStatus string

// Health statuses, from best to worst.
const (
	HealthHealthy   HealthStatus = "healthy"
	HealthDegraded  HealthStatus = "degraded"
	HealthUnhealthy HealthStatus = "unhealthy"
)

// Valid reports whether s is one of the three statuses.
func (s HealthStatus) Valid() bool {
	return s == HealthHealthy || s == HealthDegraded || s == HealthUnhealthy
}

// rank orders statuses from best (0) to worst (2); unknown values rank worst.
func (s HealthStatus) rank() int {
	switch s {
	case HealthHealthy:
		return 0
	case HealthDegraded:
		return 1
	default:
		return 2
	}
}

// Worst returns the worse of s and o (unknown values count as unhealthy).
func (s HealthStatus) Worst(o HealthStatus) HealthStatus {
	if o.rank() > s.rank() {
		return o
	}
	return s
}

// CheckResult is the outcome of one health check of a registered instance.
type CheckResult struct {
	// Name identifies the check, e.g. "cpu", "memory", "ready".
	Name string `json:"name"`
	// Status is the check's verdict.
	Status HealthStatus `json:"status"`
	// Message explains the verdict for people (e.g. "host CPU 93% >= 90%").
	Message string `json:"message,omitempty"`
}

// Health is the health an instance reports with every heartbeat. CPU and memory are
// real readings from the process and its host (see pkg/sysstat); Status is the worst of
// the checks' statuses.
type Health struct {
	Status HealthStatus `json:"status"`
	// CPU is the busy fraction of the host's CPUs in [0,1] since the previous heartbeat
	// (information: health judges the process, not its host).
	CPU float64 `json:"cpu"`
	// Memory is the fraction of the host's memory in use in [0,1] (information).
	Memory float64 `json:"memory"`
	// ProcessCPU is the process's share of the whole machine's CPU capacity in [0,1].
	ProcessCPU float64 `json:"process_cpu"`
	// ProcessRSSBytes is the process's resident set size.
	ProcessRSSBytes uint64 `json:"process_rss_bytes"`
	// ProcessCPUShare is the process's CPU use against the CPUs it may use (its cgroup
	// quota, else GOMAXPROCS) in [0,1]: what the "cpu" check judges.
	ProcessCPUShare float64 `json:"process_cpu_share,omitempty"`
	// ProcessMemory is the process's resident memory against its limit (cgroup, else the
	// host's memory) in [0,1]: what the "memory" check judges.
	ProcessMemory float64 `json:"process_memory,omitempty"`
	// Checks lists every check's result, in a stable order.
	Checks []CheckResult `json:"checks,omitempty"`
}

// Registration is the value of a key in the registry bucket: one collector
// (collector.<region>.<id>) or one service instance (service.<name>.<id>). The
// registering client rewrites it with every heartbeat; the bucket TTL removes it when
// the heartbeats stop.
type Registration struct {
	V int `json:"v"`
	// ID is the instance id, unique within its region (collectors) or service (services).
	ID string `json:"id"`
	// Name is the service name for kind "service" (a key segment), and an optional
	// display name for collectors.
	Name string `json:"name,omitempty"`
	// InstanceKind is "collector" or "service" (JSON "kind"; the Go name avoids the
	// Payload method Kind).
	InstanceKind string `json:"kind"`
	// Region is the region the instance runs in; required for collectors.
	Region string `json:"region,omitempty"`
	// Address says where to reach the instance: a collector's OTLP endpoint
	// (host:port), a service's admin address.
	Address string `json:"address,omitempty"`
	// CapacityQPS is how many spans per second the instance can take (0: unknown).
	CapacityQPS float64 `json:"capacity_qps,omitempty"`
	// Metadata carries free-form labels.
	Metadata map[string]string `json:"metadata,omitempty"`
	// Health is the latest health the instance reported.
	Health Health `json:"health"`
	// Version is the instance's software version.
	Version string `json:"version,omitempty"`
	// RegisteredAt is when this registration began (instance clock). A new value for the
	// same key means the instance registered anew (restart or re-registration after
	// expiry).
	RegisteredAt time.Time `json:"registered_at"`
	// UpdatedAt is when the instance last wrote the registration (its last heartbeat).
	UpdatedAt time.Time `json:"updated_at"`
	// Generation counts content changes within one registration: 1 at registration,
	// incremented by the client whenever anything Changed reports differs from what it
	// last wrote (heartbeats that only move timestamps and readings keep it). The
	// registry derives the id of registry.updated events from it, so replicas agree.
	Generation uint64 `json:"generation,omitempty"`
}

// RegistrationVersion is the schema version of Registration.
const RegistrationVersion = 1

// Kind implements Payload.
func (Registration) Kind() string { return "registration" }

// SchemaVersion implements Payload.
func (Registration) SchemaVersion() int { return RegistrationVersion }

// Key returns the registry bucket key of r: collector.<region>.<id> or
// service.<name>.<id>.
func (r Registration) Key() (string, error) {
	switch r.InstanceKind {
	case KindCollector:
		return CollectorKey(r.Region, r.ID)
	case KindService:
		return ServiceKey(r.Name, r.ID)
	default:
		return "", fmt.Errorf("%w: kind %q: want %q or %q", ErrInvalidToken, r.InstanceKind, KindCollector, KindService)
	}
}

// Validate implements Payload.
func (r Registration) Validate() error {
	var errs []error
	if err := CheckToken("id", r.ID); err != nil {
		errs = append(errs, fmt.Errorf("id: %w", err))
	}
	switch r.InstanceKind {
	case KindCollector:
		if err := CheckToken("region", r.Region); err != nil {
			errs = append(errs, fmt.Errorf("region: %w", err))
		}
	case KindService:
		if err := CheckToken("service name", r.Name); err != nil {
			errs = append(errs, fmt.Errorf("name: %w", err))
		}
		if r.Region != "" {
			if err := CheckToken("region", r.Region); err != nil {
				errs = append(errs, fmt.Errorf("region: %w", err))
			}
		}
	default:
		errs = append(errs, fmt.Errorf("kind: %q, want %q or %q", r.InstanceKind, KindCollector, KindService))
	}
	if r.CapacityQPS < 0 || math.IsNaN(r.CapacityQPS) || math.IsInf(r.CapacityQPS, 0) {
		errs = append(errs, fmt.Errorf("capacity_qps: %v, want a number >= 0", r.CapacityQPS))
	}
	for k := range r.Metadata {
		if k == "" {
			errs = append(errs, errors.New("metadata: empty key"))
			break
		}
	}
	if err := r.Health.Validate(); err != nil {
		errs = append(errs, fmt.Errorf("health.%w", err))
	}
	if r.RegisteredAt.IsZero() {
		errs = append(errs, errors.New("registered_at: missing"))
	}
	return errors.Join(errs...)
}

// Validate checks the status and the readings' ranges.
func (h Health) Validate() error {
	var errs []error
	if !h.Status.Valid() {
		errs = append(errs, fmt.Errorf("status: %q, want healthy, degraded or unhealthy", h.Status))
	}
	for _, f := range []struct {
		name string
		v    float64
	}{{"cpu", h.CPU}, {"memory", h.Memory}, {"process_cpu", h.ProcessCPU}} {
		if !(f.v >= 0 && f.v <= 1) {
			errs = append(errs, fmt.Errorf("%s: %v is outside [0,1]", f.name, f.v))
		}
	}
	for i, c := range h.Checks {
		if c.Name == "" {
			errs = append(errs, fmt.Errorf("checks[%d].name: empty", i))
		}
		if !c.Status.Valid() {
			errs = append(errs, fmt.Errorf("checks[%d].status: %q, want healthy, degraded or unhealthy", i, c.Status))
		}
	}
	return errors.Join(errs...)
}

// DecodeRegistration decodes and validates a registry bucket value.
func DecodeRegistration(data []byte) (Registration, error) {
	var r Registration
	if err := Decode(data, &r); err != nil {
		return Registration{}, err
	}
	return r, nil
}

// ErrWrongKey is wrapped by DecodeRegistrationAt when a valid registration is stored
// under a key other than its own (Registration.Key).
var ErrWrongKey = errors.New("registration stored under the wrong key")

// DecodeRegistrationAt decodes and validates the registry value stored at key, and checks
// that key is the registration's own key: the rule every reader of the registry applies
// (a value under another key is refused, not listed). The error names both keys.
func DecodeRegistrationAt(key string, data []byte) (Registration, error) {
	r, err := DecodeRegistration(data)
	if err != nil {
		return Registration{}, err
	}
	own, err := r.Key()
	if err != nil {
		return Registration{}, err
	}
	if own != key {
		return Registration{}, fmt.Errorf("%w: the value describes %s", ErrWrongKey, own)
	}
	return r, nil
}

// Changed lists the fields (JSON names, health ones prefixed "health.") whose values
// differ between prev and r in a way worth an event: the instance's description, its
// registration time, its health status and each check's status. Heartbeat timestamps,
// CPU and memory readings and check messages are ignored, so a plain heartbeat reports
// nothing. The result is sorted; nil means no significant change.
func (r Registration) Changed(prev Registration) []string {
	var out []string
	add := func(name string, differ bool) {
		if differ {
			out = append(out, name)
		}
	}
	add("address", r.Address != prev.Address)
	add("capacity_qps", r.CapacityQPS != prev.CapacityQPS)
	add("health.checks", !sameChecks(r.Health.Checks, prev.Health.Checks))
	add("health.status", r.Health.Status != prev.Health.Status)
	add("id", r.ID != prev.ID)
	add("kind", r.InstanceKind != prev.InstanceKind)
	add("metadata", !maps.Equal(r.Metadata, prev.Metadata))
	add("name", r.Name != prev.Name)
	add("region", r.Region != prev.Region)
	add("registered_at", !r.RegisteredAt.Equal(prev.RegisteredAt))
	add("version", r.Version != prev.Version)
	return out
}

// sameChecks compares check names and statuses, ignoring messages and order.
func sameChecks(a, b []CheckResult) bool {
	if len(a) != len(b) {
		return false
	}
	key := func(cs []CheckResult) []string {
		out := make([]string, len(cs))
		for i, c := range cs {
			out[i] = c.Name + "\x00" + string(c.Status)
		}
		slices.Sort(out)
		return out
	}
	return slices.Equal(key(a), key(b))
}

// RegistryEvent is published by the registry service on
// <root>.events.registry.{registered,updated,expired,deregistered}, once per transition
// of a registry key. Its ce-id (and JetStream Nats-Msg-Id) is derived from the
// transition itself (see EventID), so replicas that publish the same transition
// produce one stored event.
type RegistryEvent struct {
	V int `json:"v"`
	// Event is the transition: registry.registered, .updated, .expired or .deregistered.
	Event EventType `json:"event"`
	// Key is the registry bucket key, e.g. collector.us-east-1.c1.
	Key string `json:"key"`
	// InstanceKind ("kind"), ID, Region and Name identify the instance.
	InstanceKind string `json:"kind"`
	ID           string `json:"id"`
	Region       string `json:"region,omitempty"`
	Name         string `json:"name,omitempty"`
	// Revision is the bucket revision of the transition (the put, or the delete or expiry
	// marker).
	Revision uint64 `json:"revision"`
	// Changed lists what changed, for registry.updated (see Registration.Changed).
	Changed []string `json:"changed,omitempty"`
	// Registration is the registration as written (registered, updated) or as last seen
	// before it ended (expired, deregistered).
	Registration *Registration `json:"registration,omitempty"`
	// At is when the registry observed the transition.
	At time.Time `json:"at"`
}

// RegistryEventVersion is the schema version of RegistryEvent.
const RegistryEventVersion = 1

// Kind implements Payload: the event type, e.g. "registry.expired".
func (e RegistryEvent) Kind() string {
	if e.Event == "" {
		return "registry.event"
	}
	return string(e.Event)
}

// SchemaVersion implements Payload.
func (RegistryEvent) SchemaVersion() int { return RegistryEventVersion }

// Validate implements Payload.
func (e RegistryEvent) Validate() error {
	var errs []error
	switch e.Event {
	case EventRegistryRegistered, EventRegistryUpdated, EventRegistryExpired, EventRegistryDeregistered:
	default:
		errs = append(errs, fmt.Errorf("event: %q is not a registry event", e.Event))
	}
	if e.Key == "" {
		errs = append(errs, errors.New("key: empty"))
	}
	if e.ID == "" {
		errs = append(errs, errors.New("id: empty"))
	}
	if e.InstanceKind != KindCollector && e.InstanceKind != KindService {
		errs = append(errs, fmt.Errorf("kind: %q, want %q or %q", e.InstanceKind, KindCollector, KindService))
	}
	if e.Registration != nil {
		if err := e.Registration.Validate(); err != nil {
			errs = append(errs, fmt.Errorf("registration: %w", err))
		}
	}
	return errors.Join(errs...)
}

// EventID returns the deterministic id of a registry transition, used as ce-id and as the
// JetStream Nats-Msg-Id so that the OTLP_EVENTS stream keeps one copy however many
// registry replicas publish it:
//
//   - registered:   registered/<key>/<registered_at unix ns>
//   - updated:      updated/<key>/<registered_at unix ns>/g<generation> (or /r<revision>
//     when the writer does not count generations)
//   - expired:      expired/<key>/r<marker revision>
//   - deregistered: deregistered/<key>/r<marker revision>
//
// Every part is something all replicas read from the bucket, not from their own clock.
func (e RegistryEvent) EventID() string {
	var b strings.Builder
	b.WriteString(strings.TrimPrefix(string(e.Event), "registry."))
	b.WriteByte('/')
	b.WriteString(e.Key)
	b.WriteByte('/')
	switch e.Event {
	case EventRegistryRegistered, EventRegistryUpdated:
		if e.Registration != nil {
			b.WriteString(strconv.FormatInt(e.Registration.RegisteredAt.UnixNano(), 10))
			if e.Event == EventRegistryUpdated {
				if e.Registration.Generation > 0 {
					b.WriteString("/g" + strconv.FormatUint(e.Registration.Generation, 10))
				} else {
					b.WriteString("/r" + strconv.FormatUint(e.Revision, 10))
				}
			}
			return b.String()
		}
	}
	b.WriteString("r" + strconv.FormatUint(e.Revision, 10))
	return b.String()
}
