package opampsvc

import (
	"context"
	"encoding/hex"
	"strings"
	"unique"

	"github.com/nats-io/nats.go/jetstream"
	"github.com/open-telemetry/opamp-go/protobufs"

	"github.com/otelfleet/otelfleet/pkg/events"
	"github.com/otelfleet/otelfleet/pkg/kvwatch"
)

// remoteConfigFileName is the one entry of a pushed AgentConfigMap.
const remoteConfigFileName = "collector.yaml"

// watchDesired keeps s.desired in step with desired.> of the rollouts bucket and pushes
// each change to the agent it names when this replica holds it; loaded is closed after
// the first replay.
func (s *Service) watchDesired(ctx context.Context, loaded chan<- struct{}) {
	var seen map[string]bool
	first := true
	kvwatch.Watch(ctx, s.nc, s.rolloutsKV, events.DesiredKeyPrefix+">", kvwatch.Handler{
		Start: func() { seen = map[string]bool{} },
		Entry: func(e jetstream.KeyValueEntry) {
			if e == nil {
				s.mu.Lock()
				for uid := range s.desired {
					if !seen[uid] {
						delete(s.desired, uid)
					}
				}
				s.mu.Unlock()
				if first {
					first = false
					close(loaded)
				}
				return
			}
			uid := strings.TrimPrefix(e.Key(), events.DesiredKeyPrefix)
			seen[uid] = true
			s.desiredEntry(ctx, uid, e)
		},
		Err: func(err error) { s.log.Warn("desired config watch failed, re-creating", "err", err) },
	})
}

// desiredEntry applies one desired.<uid> entry.
func (s *Service) desiredEntry(ctx context.Context, uid string, e jetstream.KeyValueEntry) {
	if e.Operation() != jetstream.KeyValuePut {
		s.mu.Lock()
		delete(s.desired, uid)
		s.mu.Unlock()
		return
	}
	var d events.DesiredConfig
	if err := events.Decode(e.Value(), &d); err != nil || d.UID != uid {
		s.m.refused.WithLabelValues("bad_desired").Inc()
		s.log.Warn("ignoring an invalid desired config", "key", e.Key(), "revision", e.Revision(), "err", err, "uid", d.UID)
		return
	}
	if _, err := hex.DecodeString(d.Hash); err != nil {
		s.m.refused.WithLabelValues("bad_desired").Inc()
		s.log.Warn("ignoring a desired config whose hash is not hex", "key", e.Key(), "revision", e.Revision())
		return
	}
	held := heldDesired{DesiredConfig: d, config: unique.Make(d.Config)}
	held.Config = ""
	s.mu.Lock()
	s.desired[uid] = held
	a := s.agents[uid]
	s.mu.Unlock()
	if a != nil {
		s.push(ctx, a)
	}
}

// heldDesired is a desired config as a replica holds it for every agent of the fleet:
// the text (up to a collector config document's 256 KiB) is held once per distinct
// config, not once per agent, since a rollout gives the same config to a whole group.
type heldDesired struct {
	events.DesiredConfig // Config is empty; the text is config
	config               unique.Handle[string]
}

// remoteConfigFor returns the remote config to send a (locked) when its desired config
// differs from what it reported and was not pushed on this connection yet; nil otherwise
// or when the agent does not accept remote config.
func (s *Service) remoteConfigFor(a *agent) *protobufs.AgentRemoteConfig {
	if a.view.caps&uint64(protobufs.AgentCapabilities_AgentCapabilities_AcceptsRemoteConfig) == 0 {
		return nil
	}
	s.mu.Lock()
	d, ok := s.desired[a.uid]
	s.mu.Unlock()
	if !ok || d.Hash == a.view.state.RemoteConfig.Hash || d.Hash == a.pushed {
		return nil
	}
	hash, err := hex.DecodeString(d.Hash)
	if err != nil {
		return nil
	}
	a.pushed = d.Hash
	s.m.pushes.Inc()
	return &protobufs.AgentRemoteConfig{
		ConfigHash: hash,
		Config: &protobufs.AgentConfigMap{ConfigMap: map[string]*protobufs.AgentConfigFile{
			remoteConfigFileName: {Body: []byte(d.config.Value()), ContentType: "text/yaml"},
		}},
	}
}

// push sends a's desired config now over its WebSocket; a plain HTTP agent gets it with
// its next poll.
func (s *Service) push(ctx context.Context, a *agent) {
	a.mu.Lock()
	defer a.mu.Unlock()
	if a.gone || a.conn == nil {
		return
	}
	rc := s.remoteConfigFor(a)
	if rc == nil {
		return
	}
	msg := &protobufs.ServerToAgent{InstanceUid: mustUID(a.uid), Capabilities: serverCapabilities, RemoteConfig: rc}
	if err := a.conn.Send(ctx, msg); err != nil {
		a.pushed = ""
		s.log.Warn("opamp remote config push failed; retried on the agent's next message", "uid", a.uid, "err", err)
	}
}

// mustUID is the bytes of a uid this service formatted itself.
func mustUID(uid string) []byte {
	b, _ := hex.DecodeString(uid)
	return b
}
