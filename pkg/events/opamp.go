package events

import (
	"fmt"
	"time"
)

// OpAMP: stock OpenTelemetry Collectors (opamp extension or supervisor) managed by the
// opamp service (micro otlp-opamp). The replica holding an agent's connection writes its
// AgentState to the agents bucket and its registration to the registry; the rollout
// controller writes each agent's DesiredConfig to the rollouts bucket, and the replica
// holding the agent pushes it.

// ServiceOpAMP is the OpAMP server's service name: micro otlp-opamp, endpoints
// otlp.opamp.<op>.
const ServiceOpAMP = "opamp"

// OpAMPPort is the port of the OpAMP server's /v1/opamp endpoint (WebSocket and plain
// HTTP).
const OpAMPPort = 4320

// AgentsBucket is the KV bucket of agent states (key agent.<uid>, bucket TTL = registry
// TTL: a replica refreshes the agents it holds; an agent nobody holds expires).
func (n Namespace) AgentsBucket() string { return n.root + "_agents" }

// RolloutsBucket is the KV bucket of rollouts (key rollout.<group>) and each agent's
// desired config (key desired.<uid>); no TTL.
func (n Namespace) RolloutsBucket() string { return n.root + "_rollouts" }

// Key prefixes of the OpAMP buckets and of collector config documents in the config
// bucket.
const (
	// AgentKeyPrefix prefixes agent.<uid> in the agents bucket.
	AgentKeyPrefix = "agent."
	// DesiredKeyPrefix prefixes desired.<uid> in the rollouts bucket.
	DesiredKeyPrefix = "desired."
	// RolloutKeyPrefix prefixes rollout.<group> in the rollouts bucket.
	RolloutKeyPrefix = "rollout."
	// CollectorConfigKeyPrefix prefixes collector.<group> in the config bucket: the
	// collector configuration document of one group of agents.
	CollectorConfigKeyPrefix = "collector."
)

func prefixedKey(prefix, what, token string) (string, error) {
	if err := CheckToken(what, token); err != nil {
		return "", err
	}
	return prefix + token, nil
}

// AgentKey returns agent.<uid>; uid is the agent's instance UID as 32 lowercase hex
// digits (or another valid token).
func AgentKey(uid string) (string, error) { return prefixedKey(AgentKeyPrefix, "agent uid", uid) }

// DesiredKey returns desired.<uid>.
func DesiredKey(uid string) (string, error) {
	return prefixedKey(DesiredKeyPrefix, "agent uid", uid)
}

// RolloutKey returns rollout.<group>.
func RolloutKey(group string) (string, error) {
	return prefixedKey(RolloutKeyPrefix, "collector group", group)
}

// CollectorConfigKey returns collector.<group>, the config bucket key of a group's
// collector configuration.
func CollectorConfigKey(group string) (string, error) {
	return prefixedKey(CollectorConfigKeyPrefix, "collector group", group)
}

// Remote config states an agent reports (OpAMP RemoteConfigStatuses), as stored.
const (
	RemoteConfigUnset    = "UNSET"
	RemoteConfigApplying = "APPLYING"
	RemoteConfigApplied  = "APPLIED"
	RemoteConfigFailed   = "FAILED"
)

// AgentHealth is an agent's health as it reported it (the root of its health tree).
type AgentHealth struct {
	Healthy   bool      `json:"healthy"`
	Status    string    `json:"status,omitempty"`
	LastError string    `json:"last_error,omitempty"`
	StartTime time.Time `json:"start_time,omitzero"`
}

// RemoteConfigStatus is what an agent last said of the remote config it was given.
type RemoteConfigStatus struct {
	// Group and Version name the collector config version (CollectorConfig) the hash
	// belongs to, as the rollout pushed it; 0 when the agent runs no config of ours.
	Group   string `json:"group,omitempty"`
	Version uint64 `json:"version,omitempty"`
	// Hash is the config hash the agent reported its status for (hex).
	Hash   string `json:"hash,omitempty"`
	Status string `json:"status"`
	Error  string `json:"error,omitempty"`
}

// AgentState is the value of agent.<uid> in the agents bucket.
type AgentState struct {
	V int `json:"v"`
	// UID is the agent's instance UID (32 lowercase hex digits).
	UID string `json:"uid"`
	// ID and Region are its registration identity: collector.<region>.<id>.
	ID     string `json:"id"`
	Region string `json:"region"`
	// Replica is the opamp replica (instance id) holding its connection; Transport is
	// "websocket" or "http".
	Replica   string `json:"replica"`
	Transport string `json:"transport"`
	// Identifying and NonIdentifying are its agent description's attributes.
	Identifying    map[string]string `json:"identifying,omitempty"`
	NonIdentifying map[string]string `json:"non_identifying,omitempty"`
	// Version is its service.version.
	Version string `json:"version,omitempty"`
	// Capabilities are the OpAMP capabilities it announced (names without the
	// AgentCapabilities_ prefix, e.g. "AcceptsRemoteConfig").
	Capabilities []string `json:"capabilities,omitempty"`
	// Components are the components it says it has, as "<kind>/<type>" (e.g.
	// "receiver/otlp", "exporter/debug").
	Components []string `json:"components,omitempty"`
	// EffectiveConfigHash is a hash (hex sha256) of its effective config.
	EffectiveConfigHash string             `json:"effective_config_hash,omitempty"`
	Health              AgentHealth        `json:"health"`
	RemoteConfig        RemoteConfigStatus `json:"remote_config"`
	ConnectedAt         time.Time          `json:"connected_at"`
	UpdatedAt           time.Time          `json:"updated_at"`
}

// AgentStateVersion is the schema version of AgentState.
const AgentStateVersion = 1

// Kind implements Payload.
func (AgentState) Kind() string { return "opamp.agent" }

// SchemaVersion implements Payload.
func (AgentState) SchemaVersion() int { return AgentStateVersion }

// Validate checks identity fields.
func (a AgentState) Validate() error {
	if err := CheckToken("agent uid", a.UID); err != nil {
		return err
	}
	if err := CheckToken("collector id", a.ID); err != nil {
		return err
	}
	if err := CheckToken("region", a.Region); err != nil {
		return err
	}
	switch a.RemoteConfig.Status {
	case "", RemoteConfigUnset, RemoteConfigApplying, RemoteConfigApplied, RemoteConfigFailed:
	default:
		return fmt.Errorf("%w: remote_config.status %q is not one of UNSET, APPLYING, APPLIED, FAILED", ErrMalformed, a.RemoteConfig.Status)
	}
	return nil
}

// DesiredConfig is the value of desired.<uid> in the rollouts bucket: the collector config
// an agent should run. The replica holding the agent pushes it when Hash differs from what
// the agent runs.
type DesiredConfig struct {
	V       int    `json:"v"`
	UID     string `json:"uid"`
	Group   string `json:"group"`
	Version uint64 `json:"version"`
	// Hash is the hex sha256 of Config; Config is the rendered collector YAML.
	Hash   string `json:"hash"`
	Config string `json:"config"`
	// Rollout is the id of the rollout that set it.
	Rollout   string    `json:"rollout,omitempty"`
	UpdatedAt time.Time `json:"updated_at"`
}

// DesiredConfigVersion is the schema version of DesiredConfig.
const DesiredConfigVersion = 1

// Kind implements Payload.
func (DesiredConfig) Kind() string { return "opamp.desired" }

// SchemaVersion implements Payload.
func (DesiredConfig) SchemaVersion() int { return DesiredConfigVersion }

// Validate checks the identity and that Hash is set.
func (d DesiredConfig) Validate() error {
	if err := CheckToken("agent uid", d.UID); err != nil {
		return err
	}
	if err := CheckToken("collector group", d.Group); err != nil {
		return err
	}
	if d.Hash == "" || d.Config == "" {
		return fmt.Errorf("%w: desired config needs hash and config", ErrMalformed)
	}
	return nil
}
