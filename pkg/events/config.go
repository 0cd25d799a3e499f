package events

import (
	"errors"
	"fmt"
	"time"
)

// EventType names an event; it is the subject suffix after <root>.events.
type EventType string

// The lifecycle events of the contract.
const (
	EventConfigChanged        EventType = "config.changed"
	EventRegistryRegistered   EventType = "registry.registered"
	EventRegistryUpdated      EventType = "registry.updated"
	EventRegistryExpired      EventType = "registry.expired"
	EventRegistryDeregistered EventType = "registry.deregistered"
	EventSamplingDecision     EventType = "sampling.decision"
	EventSamplingDegraded     EventType = "sampling.degraded"
	EventSamplingRecovered    EventType = "sampling.recovered"
	EventTopologySnapshot     EventType = "topology.snapshot"
	EventLeaderElected        EventType = "leader.elected"
	EventLeaderLost           EventType = "leader.lost"
)

// ConfigChanged is published on <root>.events.config.changed for every accepted change
// of the global or a regional configuration.
type ConfigChanged struct {
	V int `json:"v"`
	// Key is the config bucket key that changed: "global" or "region.<region>".
	Key string `json:"key"`
	// OldVersion is the version replaced (0 when the key was created).
	OldVersion uint64 `json:"old_version"`
	// NewVersion is the version now in force.
	NewVersion uint64 `json:"new_version"`
	// Changed lists the top-level fields whose values differ.
	Changed []string `json:"changed"`
	// Action is "put", "rollback" or "init" (first start loading a file or defaults).
	Action string `json:"action"`
	// By says who made the change (the updated_by of the new version).
	By string `json:"by"`
	// RolledBackTo is the version whose content a rollback restored.
	RolledBackTo uint64    `json:"rolled_back_to,omitempty"`
	At           time.Time `json:"at"`
}

// ConfigChangedVersion is the schema version of ConfigChanged.
const ConfigChangedVersion = 1

// Kind implements Payload.
func (ConfigChanged) Kind() string { return string(EventConfigChanged) }

// SchemaVersion implements Payload.
func (ConfigChanged) SchemaVersion() int { return ConfigChangedVersion }

// Validate implements Payload.
func (e ConfigChanged) Validate() error {
	var errs []error
	if e.Key == "" {
		errs = append(errs, errors.New("key: empty"))
	}
	if e.NewVersion == 0 {
		errs = append(errs, errors.New("new_version: must be > 0"))
	}
	if e.OldVersion >= e.NewVersion {
		errs = append(errs, fmt.Errorf("old_version: %d is not below new_version %d", e.OldVersion, e.NewVersion))
	}
	return errors.Join(errs...)
}

// ConfigReport is one instance's answer on ConfigReportSubject: which config versions it
// has applied.
type ConfigReport struct {
	V        int    `json:"v"`
	Service  string `json:"service"`
	Instance string `json:"instance"`
	// GlobalVersion is the version of the global config in force at this instance.
	GlobalVersion uint64 `json:"global_version"`
	// Regions maps region name to the regional config version in force.
	Regions   map[string]uint64 `json:"regions,omitempty"`
	AppliedAt time.Time         `json:"applied_at"`
	// Rejected counts values seen in the bucket that failed to decode or validate.
	Rejected uint64 `json:"rejected"`
	// LastError describes the last rejected value, if any.
	LastError string `json:"last_error,omitempty"`
}

// ConfigReportVersion is the schema version of ConfigReport.
const ConfigReportVersion = 1

// Kind implements Payload.
func (ConfigReport) Kind() string { return "config.report" }

// SchemaVersion implements Payload.
func (ConfigReport) SchemaVersion() int { return ConfigReportVersion }

// Validate implements Payload.
func (r ConfigReport) Validate() error {
	if r.Instance == "" || r.Service == "" {
		return errors.New("service and instance: must be set")
	}
	return nil
}

// LeaderChange is published on <root>.events.leader.elected and .leader.lost.
type LeaderChange struct {
	V    int    `json:"v"`
	Role string `json:"role"`
	// Holder is the candidate id that won or lost the term.
	Holder string `json:"holder"`
	// Token is the fencing token of the term: the KV revision at which it was won.
	Token uint64 `json:"token"`
	// Reason says why a term ended: "resigned", "renewal-failed", "lease-taken", ...
	Reason string    `json:"reason,omitempty"`
	At     time.Time `json:"at"`
}

// LeaderChangeVersion is the schema version of LeaderChange.
const LeaderChangeVersion = 1

// Kind implements Payload.
func (LeaderChange) Kind() string { return "leader.change" }

// SchemaVersion implements Payload.
func (LeaderChange) SchemaVersion() int { return LeaderChangeVersion }

// Validate implements Payload.
func (e LeaderChange) Validate() error {
	var errs []error
	if err := CheckToken("role", e.Role); err != nil {
		errs = append(errs, fmt.Errorf("role: %w", err))
	}
	if e.Holder == "" {
		errs = append(errs, errors.New("holder: empty"))
	}
	if e.Token == 0 {
		errs = append(errs, errors.New("token: must be > 0"))
	}
	return errors.Join(errs...)
}
