package opampsvc

import (
	"bytes"
	"encoding/json"
	"testing"
	"time"

	"github.com/open-telemetry/opamp-go/protobufs"
	"google.golang.org/protobuf/proto"

	"github.com/otelfleet/otelfleet/pkg/events"
)

// FuzzAgentToServer decodes bytes as an AgentToServer, as the opamp-go server does, and
// runs the service's handling of it: folding into the agent view, the stored state and
// the registration. Whatever the bytes, nothing panics, and what is accepted is valid.
func FuzzAgentToServer(f *testing.F) {
	seeds := []*protobufs.AgentToServer{
		{InstanceUid: make([]byte, 16), AgentDescription: &protobufs.AgentDescription{
			IdentifyingAttributes: []*protobufs.KeyValue{{Key: "service.instance.id", Value: &protobufs.AnyValue{Value: &protobufs.AnyValue_StringValue{StringValue: "c1"}}}},
		}},
		{InstanceUid: make([]byte, 16), Health: &protobufs.ComponentHealth{Healthy: true, ComponentHealthMap: map[string]*protobufs.ComponentHealth{"a": {Healthy: false}}}},
		{InstanceUid: make([]byte, 16), EffectiveConfig: &protobufs.EffectiveConfig{ConfigMap: &protobufs.AgentConfigMap{ConfigMap: map[string]*protobufs.AgentConfigFile{"": {Body: []byte("receivers: {otlp: {protocols: {grpc: {endpoint: 0.0.0.0:4317}}}}")}}}}},
		{InstanceUid: make([]byte, 16), RemoteConfigStatus: &protobufs.RemoteConfigStatus{Status: 3, LastRemoteConfigHash: []byte{1}}},
		{InstanceUid: make([]byte, 16), AvailableComponents: &protobufs.AvailableComponents{Hash: []byte{1}, Components: map[string]*protobufs.ComponentDetails{"receivers": {SubComponentMap: map[string]*protobufs.ComponentDetails{"otlp": {}}}}}},
	}
	for _, m := range seeds {
		b, _ := proto.Marshal(m)
		f.Add(b)
	}
	f.Add([]byte{0xff, 0x01})
	s, err := New(DefaultConfig(), Deps{Instance: "fuzz"})
	if err != nil {
		f.Fatal(err)
	}
	f.Fuzz(func(t *testing.T, data []byte) {
		var m protobufs.AgentToServer
		if proto.Unmarshal(data, &m) != nil {
			return
		}
		uid, err := uidString(m.GetInstanceUid())
		if err != nil {
			return
		}
		a := &agent{uid: uid, transport: TransportWebSocket, connectedAt: time.Now()}
		a.view.state.UID = uid
		if err := a.view.apply(&m, "10.0.0.1:5000", "cloud.region", "local", time.Now()); err != nil {
			return
		}
		if !a.view.described {
			return
		}
		st := s.stateNow(a, time.Now())
		if err := st.Validate(); err != nil {
			t.Fatalf("accepted message gives an invalid state: %v", err)
		}
		a.registeredAt = time.Now()
		reg := s.registration(a, st, time.Now())
		if err := reg.Validate(); err != nil {
			t.Fatalf("accepted message gives an invalid registration: %v", err)
		}
		if _, err := events.CollectorKey(reg.Region, reg.ID); err != nil {
			t.Fatal(err)
		}
		_ = s.remoteConfigFor(a)
	})
}

// FuzzWebSocketFrames feeds bytes, in reads of fuzzed sizes, through the frame parser of
// limitedConn: whatever arrives, it never panics, a message it lets through never sums
// over the limit, and once it refuses it keeps refusing.
func FuzzWebSocketFrames(f *testing.F) {
	f.Add([]byte{0x82, 0x85, 0, 0, 0, 0, 1, 2, 3, 4, 5, 0x89, 0x80, 0, 0, 0, 0}, uint8(3))
	f.Add([]byte{0x02, 0xfe, 0x40, 0x00, 0, 0, 0, 0, 0x80, 0xff, 0, 0, 0, 0, 0, 1, 0, 0, 0, 0, 0, 0}, uint8(7))
	f.Add([]byte{0x88, 0xfe, 0, 200}, uint8(1))
	f.Fuzz(func(t *testing.T, data []byte, step uint8) {
		const limit = 1 << 10
		c := &limitedConn{max: limit}
		n := int(step)%16 + 1
		refused := false
		for len(data) > 0 {
			k := min(n, len(data))
			err := c.scan(data[:k])
			data = data[k:]
			if refused && err == nil {
				t.Fatal("accepted bytes after a refusal")
			}
			if err != nil {
				refused = true
				c.err = err
				continue
			}
			if c.msgBytes > limit {
				t.Fatalf("message of %d bytes passed, limit %d", c.msgBytes, limit)
			}
		}
	})
}

// TestStateContentIgnoresOnlyTheTimestamp: the one encoding of a state gives the stored
// value and its content; two states differing only in updated_at have the same content,
// any other difference changes it.
func TestStateContentIgnoresOnlyTheTimestamp(t *testing.T) {
	st := events.AgentState{V: 1, UID: "0123456789abcdef0123456789abcdef", ID: "c1", Region: "eu",
		Identifying: map[string]string{"note": `"updated_at":"x"}`}, ConnectedAt: time.Unix(1, 0), UpdatedAt: time.Unix(2, 0)}
	val, c1, err := encodeState(st)
	if err != nil {
		t.Fatal(err)
	}
	var back events.AgentState
	if err := json.Unmarshal(val, &back); err != nil || !back.UpdatedAt.Equal(st.UpdatedAt) || back.Identifying["note"] != st.Identifying["note"] {
		t.Fatalf("stored value %s does not decode to the state: %v", val, err)
	}
	later := st
	later.UpdatedAt = time.Unix(3, 5)
	if _, c2, _ := encodeState(later); !bytes.Equal(c1, c2) {
		t.Fatalf("content changed with updated_at alone:\n%s\n%s", c1, c2)
	}
	moved := st
	moved.Region = "us"
	if _, c3, _ := encodeState(moved); bytes.Equal(c1, c3) {
		t.Fatal("content unchanged though the region changed")
	}
}
