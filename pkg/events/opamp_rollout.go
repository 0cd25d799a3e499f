package events

import (
	"fmt"
	"strings"
	"time"
)

// Rollout events, published by the rollout controller (opamp leader) on
// <root>.events.rollout.<what>.
const (
	EventRolloutStarted    EventType = "rollout.started"
	EventRolloutWave       EventType = "rollout.wave"
	EventRolloutCompleted  EventType = "rollout.completed"
	EventRolloutFailed     EventType = "rollout.failed"
	EventRolloutRolledBack EventType = "rollout.rolled_back"
)

// CollectorGroupFromConfigKey returns the group of a config bucket key collector.<group>
// and true, or false for any other key.
func CollectorGroupFromConfigKey(key string) (string, bool) {
	g, ok := strings.CutPrefix(key, CollectorConfigKeyPrefix)
	if !ok || CheckToken("collector group", g) != nil {
		return "", false
	}
	return g, true
}

// Rollout phases (RolloutState.Phase).
const (
	// RolloutRunning: waves are going out.
	RolloutRunning = "running"
	// RolloutCompleted: every planned agent runs the version.
	RolloutCompleted = "completed"
	// RolloutRolledBack: an agent failed; the agents that took the version were given
	// the last good one back. The version stays bad until a newer one is stored.
	RolloutRolledBack = "rolled_back"
)

// RolloutConfig is a rendered collector config: what a rollout sends.
type RolloutConfig struct {
	Version uint64 `json:"version"`
	// Hash is the hex sha256 of Config.
	Hash   string `json:"hash"`
	Config string `json:"config,omitempty"`
	// Values are the placeholder values Config was rendered with, by placeholder text.
	Values map[string]string `json:"values,omitempty"`
}

// RolloutAgent is one planned agent of a rollout as the controller last saw it.
type RolloutAgent struct {
	UID    string `json:"uid"`
	ID     string `json:"id"`
	Region string `json:"region"`
	// Wave is the wave the agent is in (0 = canary).
	Wave int `json:"wave"`
	// Version and Hash are what the agent last reported running (its remote config
	// status); Status and Error its remote config status.
	Version uint64 `json:"version,omitempty"`
	Hash    string `json:"hash,omitempty"`
	Status  string `json:"status,omitempty"`
	Error   string `json:"error,omitempty"`
	Healthy bool   `json:"healthy"`
	// Gone is true when the agent's state expired (it is no longer waited for).
	Gone bool `json:"gone,omitempty"`
}

// RolloutState is the value of rollout.<group> in the rollouts bucket.
type RolloutState struct {
	V     int    `json:"v"`
	Group string `json:"group"`
	// ID names the rollout: <group>-<version>-<hash prefix>.
	ID string `json:"id"`
	// Phase is RolloutRunning, RolloutCompleted or RolloutRolledBack; Reason says why a
	// rollout was rolled back.
	Phase  string `json:"phase"`
	Reason string `json:"reason,omitempty"`
	// Target is the config going out.
	Target RolloutConfig `json:"target"`
	// Good is the last config completed in the group (none before the first).
	Good *RolloutConfig `json:"good,omitempty"`
	// BadVersion is the newest version rolled back: no version at or below it is
	// rolled out again.
	BadVersion uint64 `json:"bad_version,omitempty"`
	// Waves are the planned agent UIDs per wave, canary first; Wave is the wave going
	// out; WaveStarted when it was written; SoakStart when every agent of the wave was
	// first seen APPLIED and healthy (zero while not).
	Waves       [][]string `json:"waves"`
	Wave        int        `json:"wave"`
	WaveStarted time.Time  `json:"wave_started"`
	SoakStart   time.Time  `json:"soak_start,omitzero"`
	// Agents are the planned agents as last seen: every one while there are at most
	// MaxListedRolloutAgents, else only those not yet APPLIED and healthy on the target
	// (at most MaxListedRolloutAgents), Settled counting the others, so the state stays
	// far below the NATS payload limit for large groups.
	Agents  []RolloutAgent `json:"agents"`
	Settled int            `json:"settled,omitempty"`
	// Token is the fencing token of the leader term that wrote the state.
	Token     uint64    `json:"token,omitempty"`
	StartedAt time.Time `json:"started_at"`
	UpdatedAt time.Time `json:"updated_at"`
}

// MaxListedRolloutAgents bounds RolloutState.Agents.
const MaxListedRolloutAgents = 500

// RolloutStateVersion is the schema version of RolloutState.
const RolloutStateVersion = 1

// Kind implements Payload.
func (RolloutState) Kind() string { return "opamp.rollout" }

// SchemaVersion implements Payload.
func (RolloutState) SchemaVersion() int { return RolloutStateVersion }

// Validate checks the identity, phase and wave index.
func (r RolloutState) Validate() error {
	if err := CheckToken("collector group", r.Group); err != nil {
		return err
	}
	switch r.Phase {
	case RolloutRunning, RolloutCompleted, RolloutRolledBack:
	default:
		return fmt.Errorf("%w: phase %q is not running, completed or rolled_back", ErrMalformed, r.Phase)
	}
	if r.Phase == RolloutRunning && (r.Wave < 0 || r.Wave >= len(r.Waves)) {
		return fmt.Errorf("%w: wave %d is outside the %d planned waves", ErrMalformed, r.Wave, len(r.Waves))
	}
	if r.Target.Hash == "" {
		return fmt.Errorf("%w: target.hash: must be set", ErrMalformed)
	}
	return nil
}

// RolloutEvent is published on <root>.events.rollout.<started|wave|completed|failed|
// rolled_back>.
type RolloutEvent struct {
	V       int    `json:"v"`
	Type    string `json:"type"`
	Group   string `json:"group"`
	Rollout string `json:"rollout"`
	Version uint64 `json:"version"`
	Hash    string `json:"hash"`
	// Wave is the wave that started (rollout.wave) or failed; Waves the planned count;
	// Agents the planned agents.
	Wave   int `json:"wave"`
	Waves  int `json:"waves"`
	Agents int `json:"agents"`
	// Reason says why a rollout failed or was rolled back; RolledBackTo the version
	// given back (0: none was good, the desired configs were removed).
	Reason       string    `json:"reason,omitempty"`
	RolledBackTo uint64    `json:"rolled_back_to,omitempty"`
	At           time.Time `json:"at"`
}

// RolloutEventVersion is the schema version of RolloutEvent.
const RolloutEventVersion = 1

// Kind implements Payload.
func (e RolloutEvent) Kind() string { return e.Type }

// SchemaVersion implements Payload.
func (RolloutEvent) SchemaVersion() int { return RolloutEventVersion }

// Validate implements Payload.
func (e RolloutEvent) Validate() error {
	if !strings.HasPrefix(e.Type, "rollout.") {
		return fmt.Errorf("%w: type %q is not a rollout event", ErrMalformed, e.Type)
	}
	return CheckToken("collector group", e.Group)
}

// Attribute returns the value of an agent description attribute: the identifying one,
// else the non-identifying one. Selectors of collector config groups match on it.
func (a AgentState) Attribute(key string) (string, bool) {
	if v, ok := a.Identifying[key]; ok {
		return v, true
	}
	v, ok := a.NonIdentifying[key]
	return v, ok
}
