package opampsvc

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/json"
	"errors"
	"fmt"
	"strconv"
	"sync"
	"sync/atomic"
	"time"

	"github.com/nats-io/nats.go/jetstream"
	"github.com/open-telemetry/opamp-go/server/types"

	"github.com/otelfleet/otelfleet/pkg/events"
)

// Registration metadata written for OpAMP collectors.
const (
	MetaManagedBy          = "managed_by"
	MetaUID                = "opamp_uid"
	MetaVersion            = "opamp_version"
	MetaConfigHash         = "opamp_config_hash"
	MetaRemoteConfigStatus = "opamp_remote_config_status"
	MetaConfigGroup        = "opamp_config_group"
	MetaConfigVersion      = "opamp_config_version"
	// ManagedByOpAMP is the value of MetaManagedBy.
	ManagedByOpAMP = "opamp"
)

// errTakenOver is returned by flush when another replica now holds the agent.
var errTakenOver = errors.New("agent taken over by another replica")

// agent is one agent held by this replica. Its fields are guarded by mu; the agent's
// messages, the sweeper and pushes take it in turn, so writes of one agent are serial.
type agent struct {
	mu          sync.Mutex
	uid         string
	conn        types.Connection // nil for plain HTTP
	transport   string
	view        agentView
	connectedAt time.Time
	lastMsg     time.Time
	lastSeq     uint64
	gone        bool

	offered bool   // own-metrics settings offered on the current connection
	pushed  string // hash of the desired config last pushed on the current connection

	rev          uint64 // revision of our last agent.<uid> write (0: none yet)
	lastWrite    time.Time
	lastContent  [sha256.Size]byte // hash of the state last written without updated_at (encodeState)
	regKey       string            // registry key last written
	registeredAt time.Time
	generation   uint64
	lastReg      events.Registration
	// storedHealth is lastReg's health status once stored (events.HealthStatus), read
	// without mu by the metrics.
	storedHealth atomic.Value

	// processCPU and rss come from the agent's own metrics.
	processCPU float64
	rss        uint64
}

// stateNow returns the AgentState to store.
func (s *Service) stateNow(a *agent, now time.Time) events.AgentState {
	st := a.view.state
	st.V = events.AgentStateVersion
	st.Replica, st.Transport = s.instance, a.transport
	st.ConnectedAt, st.UpdatedAt = a.connectedAt, now
	s.mu.Lock()
	d, ok := s.desired[a.uid]
	s.mu.Unlock()
	if ok && st.RemoteConfig.Hash != "" && d.Hash == st.RemoteConfig.Hash {
		st.RemoteConfig.Group, st.RemoteConfig.Version = d.Group, d.Version
	}
	return st
}

// encodeState returns st as stored and its content: the same bytes without updated_at
// (the last field), what decides whether a write is a change. One encoding serves both.
func encodeState(st events.AgentState) (val, content []byte, err error) {
	val, err = json.Marshal(st)
	if err != nil {
		return nil, nil, err
	}
	ts, err := json.Marshal(st.UpdatedAt)
	if err != nil {
		return nil, nil, err
	}
	tail := append(append([]byte(`,"updated_at":`), ts...), '}')
	if !bytes.HasSuffix(val, tail) {
		return nil, nil, fmt.Errorf("agent state encoding: updated_at is not the last field")
	}
	return val, val[:len(val)-len(tail)], nil
}

// flush writes the agent's state and registration when they changed (at once) or when
// the last write is TTL/3 old. a must be locked. A write that finds another replica's newer state releases the agent and
// returns errTakenOver.
func (s *Service) flush(ctx context.Context, a *agent, now time.Time) error {
	st := s.stateNow(a, now)
	if err := st.Validate(); err != nil {
		return err
	}
	val, enc, err := encodeState(st)
	if err != nil {
		return err
	}
	c := sha256.Sum256(enc)
	changed := c != a.lastContent
	if !changed && now.Sub(a.lastWrite) < s.ttl/3 {
		return nil
	}
	key, _ := events.AgentKey(a.uid)
	wctx, cancel := context.WithTimeout(ctx, 5*time.Second)
	defer cancel()
	rev, err := s.writeAgent(wctx, a, key, val)
	if err != nil {
		return err
	}
	a.rev, a.lastWrite, a.lastContent = rev, now, c
	if changed {
		s.m.writes.WithLabelValues("change").Inc()
	} else {
		s.m.writes.WithLabelValues("refresh").Inc()
	}
	return s.register(wctx, a, st, now)
}

// writeAgent writes agent.<uid>: a compare-and-set on our last revision, so a write by
// another replica in between is noticed; its state wins when it is newer than the
// agent's last message to us (the agent moved), else ours is put over it.
func (s *Service) writeAgent(ctx context.Context, a *agent, key string, val []byte) (uint64, error) {
	if a.rev != 0 {
		rev, err := s.agentsKV.Update(ctx, key, val, a.rev)
		if err == nil {
			return rev, nil
		}
		if !errors.Is(err, jetstream.ErrKeyExists) && !errors.Is(err, jetstream.ErrKeyRevisionMismatch) && !errors.Is(err, jetstream.ErrKeyNotFound) {
			return 0, fmt.Errorf("write %s: %w", key, err)
		}
		if e, gerr := s.agentsKV.Get(ctx, key); gerr == nil {
			var other events.AgentState
			if events.Decode(e.Value(), &other) == nil && other.Replica != s.instance && other.UpdatedAt.After(a.lastMsg) {
				s.release(a, "taken_over")
				return 0, errTakenOver
			}
		}
	}
	rev, err := s.agentsKV.Put(ctx, key, val)
	if err != nil {
		return 0, fmt.Errorf("write %s: %w", key, err)
	}
	return rev, nil
}

// register writes the agent's registration collector.<region>.<id>. The first write of
// an agent by this replica keeps the registered_at and generation of a valid stored
// registration of the same agent (a reconnect, here or to another replica, is no new
// registration).
func (s *Service) register(ctx context.Context, a *agent, st events.AgentState, now time.Time) error {
	key, err := events.CollectorKey(st.Region, st.ID)
	if err != nil {
		return err
	}
	if a.regKey != "" && a.regKey != key {
		_ = s.registryKV.Delete(ctx, a.regKey) // the agent changed its identity
		a.registeredAt, a.generation = time.Time{}, 0
	}
	if a.registeredAt.IsZero() {
		a.registeredAt, a.generation = now, 1
		if e, err := s.registryKV.Get(ctx, key); err == nil {
			if prev, err := events.DecodeRegistrationAt(key, e.Value()); err == nil && prev.Metadata[MetaUID] == a.uid {
				a.registeredAt, a.generation, a.lastReg = prev.RegisteredAt, prev.Generation, prev
			}
		}
	}
	reg := s.registration(a, st, now)
	if a.lastReg.ID != "" && len(reg.Changed(a.lastReg)) > 0 {
		a.generation++
	}
	reg.Generation = a.generation
	val, err := json.Marshal(reg)
	if err != nil {
		return err
	}
	if _, err := s.registryKV.Put(ctx, key, val); err != nil {
		return fmt.Errorf("write %s: %w", key, err)
	}
	a.regKey, a.lastReg = key, reg
	a.storedHealth.Store(reg.Health.Status)
	return nil
}

// registration is the agent's registration as stored.
func (s *Service) registration(a *agent, st events.AgentState, now time.Time) events.Registration {
	meta := map[string]string{MetaManagedBy: ManagedByOpAMP, MetaUID: a.uid}
	if st.Version != "" {
		meta[MetaVersion] = st.Version
	}
	if st.EffectiveConfigHash != "" {
		meta[MetaConfigHash] = st.EffectiveConfigHash
	}
	if st.RemoteConfig.Status != "" {
		meta[MetaRemoteConfigStatus] = st.RemoteConfig.Status
	}
	if st.RemoteConfig.Group != "" {
		meta[MetaConfigGroup] = st.RemoteConfig.Group
		meta[MetaConfigVersion] = strconv.FormatUint(st.RemoteConfig.Version, 10)
	}
	health := a.view.health
	if health.Status == "" {
		health = events.Health{Status: events.HealthHealthy, Checks: []events.CheckResult{{Name: "opamp", Status: events.HealthHealthy, Message: "connected; the agent reports no health"}}}
	}
	health.ProcessCPU, health.ProcessRSSBytes = a.processCPU, a.rss
	name, _ := a.view.attr(attrServiceName)
	return events.Registration{
		V: events.RegistrationVersion, ID: st.ID, Name: truncate(name, maxAttrKey), InstanceKind: events.KindCollector,
		Region: st.Region, Address: a.view.address, CapacityQPS: s.cfg.Capacity, Metadata: meta,
		Health: health, Version: st.Version, RegisteredAt: a.registeredAt, UpdatedAt: now,
	}
}

// disconnected handles a clean goodbye: both keys are deleted at once (the agent key only
// if our write is still the last one) and the agent is released. a must be locked.
func (s *Service) disconnected(ctx context.Context, a *agent) {
	ctx, cancel := context.WithTimeout(ctx, 5*time.Second)
	defer cancel()
	if key, err := events.AgentKey(a.uid); err == nil && a.rev != 0 {
		if err := s.agentsKV.Delete(ctx, key, jetstream.LastRevision(a.rev)); err != nil {
			s.log.Debug("opamp agent key not deleted (written elsewhere since)", "key", key, "err", err)
		}
	}
	if a.regKey != "" {
		if err := s.registryKV.Delete(ctx, a.regKey); err != nil {
			s.log.Warn("opamp registration not deleted; it expires with the TTL", "key", a.regKey, "err", err)
		}
	}
	s.release(a, "disconnected")
}
