package opampsvc_test

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"google.golang.org/protobuf/proto"
	"io"
	"log/slog"
	"net"
	"net/http"
	"os"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/nats-io/nats.go/jetstream"
	"github.com/open-telemetry/opamp-go/client"
	"github.com/open-telemetry/opamp-go/client/types"
	"github.com/open-telemetry/opamp-go/protobufs"
	"github.com/prometheus/client_golang/prometheus"
	"go.uber.org/goleak"

	"github.com/otelfleet/otelfleet/pkg/events"
	"github.com/otelfleet/otelfleet/pkg/natsconn"
	"github.com/otelfleet/otelfleet/pkg/natstest"
	"github.com/otelfleet/otelfleet/pkg/promtest"
	opampsvc "github.com/otelfleet/otelfleet/services/opamp"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

const ttl = 1500 * time.Millisecond

func testLog() *slog.Logger {
	if os.Getenv("TEST_LOG") != "" {
		return slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelDebug}))
	}
	return slog.New(slog.NewTextHandler(io.Discard, nil))
}

// fixture is one nats-server with the contract provisioned (registry TTL = ttl).
type fixture struct {
	srv *natstest.Server
	b   *natsconn.Buckets
	// reg, when set, receives the replicas' metrics.
	reg prometheus.Registerer
}

func newFixture(t *testing.T) *fixture {
	t.Helper()
	srv := natstest.Run(t)
	_, js := srv.JetStream(t)
	l := natsconn.DefaultLayout()
	l.RegistryTTL, l.LeaseTTL = ttl, ttl
	b, err := natsconn.Provision(context.Background(), js, l)
	if err != nil {
		t.Fatal(err)
	}
	return &fixture{srv: srv, b: b}
}

// replica runs one OpAMP service until stop or the end of the test; it returns the
// service and its server address.
func (f *fixture) replica(t *testing.T, name string, mod func(*opampsvc.Config)) (*opampsvc.Service, string, func()) {
	t.Helper()
	return f.replicaWithMetrics(t, name, mod, nil)
}

// replicaWithMetrics is replica with the service's metrics registered in reg.
func (f *fixture) replicaWithMetrics(t *testing.T, name string, mod func(*opampsvc.Config), reg prometheus.Registerer) (*opampsvc.Service, string, func()) {
	t.Helper()
	return f.replicaOn(t, name, mod, reg, f.b)
}

// replicaOn is replicaWithMetrics on buckets b (f.b, or a wrapper of its buckets).
func (f *fixture) replicaOn(t *testing.T, name string, mod func(*opampsvc.Config), reg prometheus.Registerer, b *natsconn.Buckets) (*opampsvc.Service, string, func()) {
	t.Helper()
	cfg := opampsvc.DefaultConfig()
	cfg.Addr = "127.0.0.1:0"
	cfg.SilenceTimeout = 5 * time.Second
	cfg.MetricsSecret = "test-secret"
	if mod != nil {
		mod(&cfg)
	}
	nc := f.srv.Connect(t)
	if reg == nil {
		reg = f.reg
	}
	svc, err := opampsvc.New(cfg, opampsvc.Deps{NC: nc, Instance: name, Region: "local", Log: testLog().With("replica", name), Registerer: reg})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { defer close(done); _ = svc.Run(ctx, b) }()
	var once sync.Once
	stop := func() { once.Do(func() { cancel(); <-done }) }
	t.Cleanup(stop)
	select {
	case <-svc.Ready():
	case <-time.After(10 * time.Second):
		t.Fatal("opamp service not ready")
	}
	return svc, svc.Addr().String(), stop
}

// agentOpts describe a test agent.
type agentOpts struct {
	http        bool
	uid         types.InstanceUid
	region      string
	instanceID  string
	caps        protobufs.AgentCapabilities
	health      *protobufs.ComponentHealth
	config      string
	onRemote    func(c client.OpAMPClient, rc *protobufs.AgentRemoteConfig)
	heartbeat   time.Duration
	description *protobufs.AgentDescription
	components  *protobufs.AvailableComponents
}

func str(k, v string) *protobufs.KeyValue {
	return &protobufs.KeyValue{Key: k, Value: &protobufs.AnyValue{Value: &protobufs.AnyValue_StringValue{StringValue: v}}}
}

var uidSeq atomic.Uint32

func newUID() types.InstanceUid {
	var u types.InstanceUid
	n := uidSeq.Add(1)
	u[0], u[14], u[15] = 0xab, byte(n>>8), byte(n)
	return u
}

// startAgent connects an opamp-go client to addr; it is stopped at the end of the test.
func startAgent(t *testing.T, addr string, o agentOpts) client.OpAMPClient {
	t.Helper()
	var c client.OpAMPClient
	url := "ws://" + addr + "/v1/opamp"
	if o.http {
		hc := client.NewHTTP(nil)
		hc.SetPollingInterval(100 * time.Millisecond)
		c, url = hc, "http://"+addr+"/v1/opamp"
	} else {
		c = client.NewWebSocket(nil)
	}
	desc := o.description
	if desc == nil {
		ident := []*protobufs.KeyValue{str("service.name", "otelcol-test"), str("service.version", "0.149.0")}
		if o.instanceID != "" {
			ident = append(ident, str("service.instance.id", o.instanceID))
		}
		var non []*protobufs.KeyValue
		if o.region != "" {
			non = append(non, str("cloud.region", o.region))
		}
		desc = &protobufs.AgentDescription{IdentifyingAttributes: ident, NonIdentifyingAttributes: non}
	}
	if err := c.SetAgentDescription(desc); err != nil {
		t.Fatal(err)
	}
	if o.components != nil {
		if err := c.SetAvailableComponents(o.components); err != nil {
			t.Fatal(err)
		}
	}
	caps := o.caps | protobufs.AgentCapabilities_AgentCapabilities_ReportsStatus
	if o.health != nil {
		caps |= protobufs.AgentCapabilities_AgentCapabilities_ReportsHealth
		if err := c.SetHealth(o.health); err != nil {
			t.Fatal(err)
		}
	}
	if o.config != "" {
		caps |= protobufs.AgentCapabilities_AgentCapabilities_ReportsEffectiveConfig
	}
	if o.heartbeat > 0 {
		caps |= protobufs.AgentCapabilities_AgentCapabilities_ReportsHeartbeat
	}
	hb := o.heartbeat
	settings := types.StartSettings{
		OpAMPServerURL: url, InstanceUid: o.uid, Capabilities: caps, HeartbeatInterval: &hb,
		Callbacks: types.Callbacks{
			GetEffectiveConfig: func(context.Context) (*protobufs.EffectiveConfig, error) {
				return &protobufs.EffectiveConfig{ConfigMap: &protobufs.AgentConfigMap{ConfigMap: map[string]*protobufs.AgentConfigFile{
					"": {Body: []byte(o.config), ContentType: "text/yaml"},
				}}}, nil
			},
			OnMessage: func(_ context.Context, m *types.MessageData) {
				if m.RemoteConfig != nil && o.onRemote != nil {
					o.onRemote(c, m.RemoteConfig)
				}
			},
		},
	}
	if err := c.Start(context.Background(), settings); err != nil {
		t.Fatal(err)
	}
	var once sync.Once
	t.Cleanup(func() { once.Do(func() { _ = c.Stop(context.Background()) }) })
	return stopOnce{c, &once}
}

func hexUID(u types.InstanceUid) string { return hex.EncodeToString(u[:]) }

// agentState reads agent.<uid>.
func (f *fixture) agentState(uid string) (events.AgentState, bool) {
	e, err := f.b.Agents.Get(context.Background(), events.AgentKeyPrefix+uid)
	if err != nil {
		return events.AgentState{}, false
	}
	var st events.AgentState
	if events.Decode(e.Value(), &st) != nil {
		return events.AgentState{}, false
	}
	return st, true
}

// registration reads collector.<region>.<id>.
func (f *fixture) registration(region, id string) (events.Registration, bool) {
	key, _ := events.CollectorKey(region, id)
	e, err := f.b.Registry.Get(context.Background(), key)
	if err != nil {
		return events.Registration{}, false
	}
	r, err := events.DecodeRegistrationAt(key, e.Value())
	return r, err == nil
}

const collectorYAML = `receivers:
  otlp:
    protocols:
      grpc:
        endpoint: 0.0.0.0:4317
exporters:
  debug: {}
service:
  pipelines:
    traces: {receivers: [otlp], exporters: [debug]}
`

func TestRegistersWithinASecondOverBothTransports(t *testing.T) {
	f := newFixture(t)
	_, addr, _ := f.replica(t, "r1", nil)
	for _, transport := range []string{"websocket", "http"} {
		t.Run(transport, func(t *testing.T) {
			uid := newUID()
			start := time.Now()
			startAgent(t, addr, agentOpts{http: transport == "http", uid: uid, region: "eu-west-1", instanceID: "col-" + transport, config: collectorYAML,
				health: &protobufs.ComponentHealth{Healthy: true, Status: "StatusOK"}})
			natstest.Eventually(t, time.Second, func() bool {
				_, ok := f.registration("eu-west-1", "col-"+transport)
				return ok
			}, "registration collector.eu-west-1.col-%s", transport)
			t.Logf("registered after %v", time.Since(start))
			r, _ := f.registration("eu-west-1", "col-"+transport)
			if r.Metadata[opampsvc.MetaManagedBy] != "opamp" || r.Metadata[opampsvc.MetaUID] != hexUID(uid) || r.Version != "0.149.0" {
				t.Fatalf("registration metadata: %+v version %q", r.Metadata, r.Version)
			}
			if r.Address != "127.0.0.1:4317" {
				t.Fatalf("address %q, want the remote host with the otlp receiver's port", r.Address)
			}
			if r.Health.Status != events.HealthHealthy {
				t.Fatalf("health %v", r.Health.Status)
			}
			st, ok := f.agentState(hexUID(uid))
			if !ok || st.Transport != transport || st.Replica != "r1" || st.Region != "eu-west-1" || st.ID != "col-"+transport {
				t.Fatalf("agent state %+v", st)
			}
			if len(st.EffectiveConfigHash) != 64 || r.Metadata[opampsvc.MetaConfigHash] != st.EffectiveConfigHash {
				t.Fatalf("effective config hash %q / %q", st.EffectiveConfigHash, r.Metadata[opampsvc.MetaConfigHash])
			}
		})
	}
}

func TestHealthMapping(t *testing.T) {
	f := newFixture(t)
	reg := prometheus.NewRegistry()
	f.reg = reg
	_, addr, _ := f.replica(t, "r1", nil)
	cases := map[string]struct {
		health *protobufs.ComponentHealth
		want   events.HealthStatus
	}{
		"healthy": {&protobufs.ComponentHealth{Healthy: true}, events.HealthHealthy},
		"component error": {&protobufs.ComponentHealth{Healthy: true, ComponentHealthMap: map[string]*protobufs.ComponentHealth{
			"pipeline:traces": {Healthy: true, ComponentHealthMap: map[string]*protobufs.ComponentHealth{
				"exporter:otlp": {Healthy: false, LastError: "connection refused"},
			}},
		}}, events.HealthDegraded},
		"unhealthy": {&protobufs.ComponentHealth{Healthy: false, LastError: "boom"}, events.HealthUnhealthy},
	}
	for name, tc := range cases {
		t.Run(name, func(t *testing.T) {
			id := "h-" + map[string]string{"healthy": "ok", "component error": "deg", "unhealthy": "bad"}[name]
			startAgent(t, addr, agentOpts{uid: newUID(), instanceID: id, health: tc.health})
			natstest.Eventually(t, 2*time.Second, func() bool {
				r, ok := f.registration("local", id)
				return ok && r.Health.Status == tc.want
			}, "health of %s becomes %s", id, tc.want)
			// The replica counts the agent it holds under the health it stored (the
			// agents of earlier cases have gone).
			natstest.Eventually(t, 2*time.Second, func() bool {
				got := agentsHealth(t, reg)
				return got[string(tc.want)] == 1 && got["healthy"]+got["degraded"]+got["unhealthy"] == 1
			}, "otelfleet_opamp_agents_health = %v, want one %s agent", agentsHealth(t, reg), tc.want)
			if tc.want != events.HealthDegraded {
				return
			}
			r, _ := f.registration("local", id)
			for _, c := range r.Health.Checks {
				if c.Name == "pipeline:traces/exporter:otlp" && c.Message == "connection refused" {
					return
				}
			}
			t.Fatalf("degraded checks %+v lack the failing component", r.Health.Checks)
		})
	}
}

func TestDescriptionAndComponentsStored(t *testing.T) {
	f := newFixture(t)
	_, addr, _ := f.replica(t, "r1", nil)
	uid := newUID()
	startAgent(t, addr, agentOpts{uid: uid, instanceID: "comp", region: "us-east-1",
		caps: protobufs.AgentCapabilities_AgentCapabilities_ReportsAvailableComponents,
		components: &protobufs.AvailableComponents{Hash: []byte{1}, Components: map[string]*protobufs.ComponentDetails{
			"receivers": {SubComponentMap: map[string]*protobufs.ComponentDetails{"otlp": {}}},
			"exporters": {SubComponentMap: map[string]*protobufs.ComponentDetails{"debug": {}, "otlp": {}}},
		}}})
	natstest.Eventually(t, 2*time.Second, func() bool {
		st, ok := f.agentState(hexUID(uid))
		return ok && len(st.Components) == 3
	}, "components stored")
	st, _ := f.agentState(hexUID(uid))
	want := []string{"exporter/debug", "exporter/otlp", "receiver/otlp"}
	for i := range want {
		if st.Components[i] != want[i] {
			t.Fatalf("components %v, want %v", st.Components, want)
		}
	}
	if st.Identifying["service.name"] != "otelcol-test" || st.NonIdentifying["cloud.region"] != "us-east-1" {
		t.Fatalf("attributes %v %v", st.Identifying, st.NonIdentifying)
	}
}

// proxy forwards TCP to a target; freeze drops everything from then on without closing
// the agent's side (a silent, half-open connection); kill closes everything.
type proxy struct {
	ln     net.Listener
	frozen atomic.Bool
	mu     sync.Mutex
	conns  []net.Conn
	wg     sync.WaitGroup
}

func newProxy(t *testing.T, target string) *proxy {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	p := &proxy{ln: ln}
	p.wg.Add(1)
	go func() {
		defer p.wg.Done()
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			u, err := net.Dial("tcp", target)
			if err != nil {
				_ = c.Close()
				continue
			}
			p.mu.Lock()
			p.conns = append(p.conns, c, u)
			p.mu.Unlock()
			p.wg.Add(2)
			go p.pipe(c, u)
			go p.pipe(u, c)
		}
	}()
	t.Cleanup(p.kill)
	return p
}

func (p *proxy) pipe(from, to net.Conn) {
	defer p.wg.Done()
	buf := make([]byte, 32<<10)
	for {
		n, err := from.Read(buf)
		if n > 0 && !p.frozen.Load() {
			_, _ = to.Write(buf[:n])
		}
		if err != nil {
			if !p.frozen.Load() {
				_ = to.Close()
			}
			return
		}
	}
}

func (p *proxy) addr() string { return p.ln.Addr().String() }

func (p *proxy) kill() {
	_ = p.ln.Close()
	p.mu.Lock()
	for _, c := range p.conns {
		_ = c.Close()
	}
	p.mu.Unlock()
	p.wg.Wait()
}

func TestKilledAgentExpiresWithinTTL(t *testing.T) {
	f := newFixture(t)
	_, addr, _ := f.replica(t, "r1", nil)
	p := newProxy(t, addr)
	uid := newUID()
	startAgent(t, p.addr(), agentOpts{uid: uid, instanceID: "killed"})
	natstest.Eventually(t, time.Second, func() bool { _, ok := f.registration("local", "killed"); return ok }, "registered")
	p.kill() // no goodbye
	killed := time.Now()
	natstest.Eventually(t, ttl+time.Second, func() bool {
		_, reg := f.registration("local", "killed")
		_, st := f.agentState(hexUID(uid))
		return !reg && !st
	}, "both keys expire")
	if d := time.Since(killed); d > ttl+500*time.Millisecond {
		t.Fatalf("expired after %v, TTL %v", d, ttl)
	}
}

func TestSilentConnectionExpires(t *testing.T) {
	f := newFixture(t)
	_, addr, _ := f.replica(t, "r1", func(c *opampsvc.Config) { c.SilenceTimeout = 300 * time.Millisecond })
	p := newProxy(t, addr)
	uid := newUID()
	startAgent(t, p.addr(), agentOpts{uid: uid, instanceID: "silent"})
	natstest.Eventually(t, time.Second, func() bool { _, ok := f.registration("local", "silent"); return ok }, "registered")
	p.frozen.Store(true)
	natstest.Eventually(t, 300*time.Millisecond+ttl+time.Second, func() bool {
		_, reg := f.registration("local", "silent")
		_, st := f.agentState(hexUID(uid))
		return !reg && !st
	}, "silent agent's keys expire")
}

// post sends one AgentToServer over plain HTTP and decodes the reply.
func post(t *testing.T, addr string, m *protobufs.AgentToServer) (*protobufs.ServerToAgent, int) {
	t.Helper()
	body, err := proto.Marshal(m)
	if err != nil {
		t.Fatal(err)
	}
	return postRaw(t, addr, body)
}

func postRaw(t *testing.T, addr string, body []byte) (*protobufs.ServerToAgent, int) {
	t.Helper()
	resp, err := http.Post("http://"+addr+"/v1/opamp", "application/x-protobuf", bytes.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	data, _ := io.ReadAll(resp.Body)
	var out protobufs.ServerToAgent
	if resp.StatusCode == http.StatusOK {
		if err := proto.Unmarshal(data, &out); err != nil {
			t.Fatal(err)
		}
	}
	return &out, resp.StatusCode
}

func TestCleanDisconnectDeletesAtOnce(t *testing.T) {
	f := newFixture(t)
	_, addr, _ := f.replica(t, "r1", nil)
	uid := newUID()
	desc := &protobufs.AgentDescription{IdentifyingAttributes: []*protobufs.KeyValue{str("service.instance.id", "bye")}}
	post(t, addr, &protobufs.AgentToServer{InstanceUid: uid[:], SequenceNum: 1, AgentDescription: desc})
	natstest.Eventually(t, time.Second, func() bool { _, ok := f.registration("local", "bye"); return ok }, "registered")
	post(t, addr, &protobufs.AgentToServer{InstanceUid: uid[:], SequenceNum: 2, AgentDisconnect: &protobufs.AgentDisconnect{}})
	natstest.Eventually(t, ttl/2, func() bool {
		_, reg := f.registration("local", "bye")
		_, st := f.agentState(hexUID(uid))
		return !reg && !st
	}, "keys deleted before the TTL")
}

func TestHostileMessagesAreRefused(t *testing.T) {
	f := newFixture(t)
	_, addr, _ := f.replica(t, "r1", func(c *opampsvc.Config) { c.MaxMessageBytes = 64 << 10 })
	many := make([]*protobufs.KeyValue, 200)
	for i := range many {
		many[i] = str(fmt.Sprintf("k%d", i), "v")
	}
	cases := map[string]*protobufs.AgentToServer{
		"short uid":       {InstanceUid: []byte{1, 2, 3}},
		"bad region":      {InstanceUid: []byte("0123456789abcdef"), AgentDescription: &protobufs.AgentDescription{NonIdentifyingAttributes: []*protobufs.KeyValue{str("cloud.region", "us east.1")}}},
		"bad instance id": {InstanceUid: []byte("0123456789abcdeg"), AgentDescription: &protobufs.AgentDescription{IdentifyingAttributes: []*protobufs.KeyValue{str("service.instance.id", "a.b>c")}}},
		"many attributes": {InstanceUid: []byte("0123456789abcdeh"), AgentDescription: &protobufs.AgentDescription{IdentifyingAttributes: many}},
		"huge value":      {InstanceUid: []byte("0123456789abcdei"), AgentDescription: &protobufs.AgentDescription{IdentifyingAttributes: []*protobufs.KeyValue{str("service.name", strings.Repeat("x", 5000))}}},
		"bad component":   {InstanceUid: []byte("0123456789abcdej"), AgentDescription: &protobufs.AgentDescription{}, AvailableComponents: &protobufs.AvailableComponents{Hash: []byte{1}, Components: map[string]*protobufs.ComponentDetails{"receivers": {SubComponentMap: map[string]*protobufs.ComponentDetails{"ot lp>": {}}}}}},
	}
	for name, m := range cases {
		t.Run(name, func(t *testing.T) {
			reply, code := post(t, addr, m)
			if code != http.StatusOK || reply.GetErrorResponse() == nil || reply.GetErrorResponse().GetErrorMessage() == "" {
				t.Fatalf("reply %v (HTTP %d), want an error response", reply, code)
			}
		})
	}
	// Too large for the body limit: refused before decoding.
	if _, code := postRaw(t, addr, make([]byte, 100<<10)); code != http.StatusRequestEntityTooLarge {
		t.Fatalf("oversized body: HTTP %d", code)
	}
	// Garbage: the opamp-go server answers 400.
	if _, code := postRaw(t, addr, []byte{0xff, 0xff, 0xff}); code != http.StatusBadRequest {
		t.Fatalf("garbage: HTTP %d", code)
	}
	st, _ := kvwatchKeys(t, f.b.Registry)
	if len(st) != 0 {
		t.Fatalf("registrations written for refused messages: %v", st)
	}
	// A good agent still registers afterwards.
	uid := newUID()
	post(t, addr, &protobufs.AgentToServer{InstanceUid: uid[:], AgentDescription: &protobufs.AgentDescription{}})
	natstest.Eventually(t, time.Second, func() bool { _, ok := f.registration("local", hexUID(uid)); return ok }, "good agent registers (id = uid)")
}

func kvwatchKeys(t *testing.T, kv jetstream.KeyValue) ([]string, error) {
	t.Helper()
	keys, err := kv.Keys(context.Background())
	if err != nil && !errors.Is(err, jetstream.ErrNoKeysFound) {
		t.Fatal(err)
	}
	return keys, nil
}

func TestReconnectToAnotherReplicaTakesOver(t *testing.T) {
	f := newFixture(t)
	_, addr1, _ := f.replica(t, "r1", nil)
	_, addr2, _ := f.replica(t, "r2", nil)
	p := newProxy(t, addr1)
	uid := newUID()
	startAgent(t, p.addr(), agentOpts{uid: uid, instanceID: "mover"})
	natstest.Eventually(t, time.Second, func() bool { st, ok := f.agentState(hexUID(uid)); return ok && st.Replica == "r1" }, "held by r1")
	first, _ := f.registration("local", "mover")
	p.kill()
	startAgent(t, addr2, agentOpts{uid: uid, instanceID: "mover"})
	natstest.Eventually(t, time.Second, func() bool { st, ok := f.agentState(hexUID(uid)); return ok && st.Replica == "r2" }, "held by r2")
	// r2 keeps it alive past the TTL, and it stays r2's.
	deadline := time.Now().Add(ttl + 500*time.Millisecond)
	for time.Now().Before(deadline) {
		st, ok := f.agentState(hexUID(uid))
		if !ok || st.Replica != "r2" {
			t.Fatalf("after takeover: state %+v present %v", st, ok)
		}
		time.Sleep(50 * time.Millisecond)
	}
	r, ok := f.registration("local", "mover")
	if !ok || !r.RegisteredAt.Equal(first.RegisteredAt) {
		t.Fatalf("registration after takeover %+v (registered_at %v, first %v)", r, r.RegisteredAt, first.RegisteredAt)
	}
}

func TestDesiredConfigPushedAndStatusRecorded(t *testing.T) {
	f := newFixture(t)
	_, addr, _ := f.replica(t, "r1", nil)
	for name, fail := range map[string]bool{"applied": false, "failed": true} {
		t.Run(name, func(t *testing.T) {
			for _, transport := range []string{"websocket", "http"} {
				t.Run(transport, func(t *testing.T) {
					uid := newUID()
					var got atomic.Int32
					startAgent(t, addr, agentOpts{http: transport == "http", uid: uid, instanceID: "push-" + name + "-" + transport,
						caps: protobufs.AgentCapabilities_AgentCapabilities_AcceptsRemoteConfig | protobufs.AgentCapabilities_AgentCapabilities_ReportsRemoteConfig,
						onRemote: func(c client.OpAMPClient, rc *protobufs.AgentRemoteConfig) {
							got.Add(1)
							st := &protobufs.RemoteConfigStatus{LastRemoteConfigHash: rc.ConfigHash, Status: protobufs.RemoteConfigStatuses_RemoteConfigStatuses_APPLIED}
							if fail {
								st.Status, st.ErrorMessage = protobufs.RemoteConfigStatuses_RemoteConfigStatuses_FAILED, "exporter nope: unknown type"
							}
							_ = c.SetRemoteConfigStatus(st)
						}})
					natstest.Eventually(t, time.Second, func() bool { _, ok := f.agentState(hexUID(uid)); return ok }, "connected")
					h := sha256.Sum256([]byte(collectorYAML))
					d := events.DesiredConfig{V: 1, UID: hexUID(uid), Group: "edge", Version: 7, Hash: hex.EncodeToString(h[:]), Config: collectorYAML, UpdatedAt: time.Now()}
					b, _ := json.Marshal(d)
					if _, err := f.b.Rollouts.Put(context.Background(), events.DesiredKeyPrefix+hexUID(uid), b); err != nil {
						t.Fatal(err)
					}
					want := events.RemoteConfigApplied
					if fail {
						want = events.RemoteConfigFailed
					}
					natstest.Eventually(t, 3*time.Second, func() bool {
						st, ok := f.agentState(hexUID(uid))
						return ok && st.RemoteConfig.Status == want && st.RemoteConfig.Hash == d.Hash && st.RemoteConfig.Group == "edge" && st.RemoteConfig.Version == 7
					}, "remote config status %s recorded", want)
					st, _ := f.agentState(hexUID(uid))
					if fail && st.RemoteConfig.Error == "" {
						t.Fatal("FAILED without its error")
					}
					if n := got.Load(); n != 1 {
						t.Fatalf("config pushed %d times, want once", n)
					}
				})
			}
		})
	}
}

func TestNoPushWithoutAcceptsRemoteConfig(t *testing.T) {
	f := newFixture(t)
	_, addr, _ := f.replica(t, "r1", nil)
	uid := newUID()
	var got atomic.Int32
	startAgent(t, addr, agentOpts{uid: uid, instanceID: "nopush", onRemote: func(client.OpAMPClient, *protobufs.AgentRemoteConfig) { got.Add(1) }})
	natstest.Eventually(t, time.Second, func() bool { _, ok := f.agentState(hexUID(uid)); return ok }, "connected")
	d := events.DesiredConfig{V: 1, UID: hexUID(uid), Group: "edge", Version: 1, Hash: "00ff", Config: "x: 1", UpdatedAt: time.Now()}
	b, _ := json.Marshal(d)
	rev, err := f.b.Rollouts.Put(context.Background(), events.DesiredKeyPrefix+hexUID(uid), b)
	if err != nil {
		t.Fatal(err)
	}
	// A second agent that accepts remote config proves the first desired value was seen.
	uid2 := newUID()
	startAgent(t, addr, agentOpts{uid: uid2, instanceID: "yespush", caps: protobufs.AgentCapabilities_AgentCapabilities_AcceptsRemoteConfig,
		onRemote: func(client.OpAMPClient, *protobufs.AgentRemoteConfig) { got.Add(100) }})
	d.UID = hexUID(uid2)
	b, _ = json.Marshal(d)
	if _, err := f.b.Rollouts.Put(context.Background(), events.DesiredKeyPrefix+hexUID(uid2), b); err != nil || rev == 0 {
		t.Fatal(err)
	}
	natstest.Eventually(t, 2*time.Second, func() bool { return got.Load() >= 100 }, "second agent gets its push")
	if got.Load() != 100 {
		t.Fatalf("the agent without AcceptsRemoteConfig got a push (%d)", got.Load())
	}
}

// stopOnce stops its client once (the test may stop it before its cleanup does).
type stopOnce struct {
	client.OpAMPClient
	once *sync.Once
}

func (s stopOnce) Stop(ctx context.Context) error {
	var err error
	s.once.Do(func() { err = s.OpAMPClient.Stop(ctx) })
	return err
}

// agentsHealth reads otelfleet_opamp_agents_health by health.
func agentsHealth(t *testing.T, reg *prometheus.Registry) map[string]float64 {
	t.Helper()
	return promtest.Values(t, reg, "otelfleet_opamp_agents_health", "health")
}

// TestLargeConfigPushedWholeToEveryAgent: a config far larger than a WebSocket's write
// buffer (sent as many frames of one message) reaches each of two agents byte for byte,
// and each records it APPLIED.
func TestLargeConfigPushedWholeToEveryAgent(t *testing.T) {
	f := newFixture(t)
	_, addr, _ := f.replica(t, "r1", nil)
	var sb strings.Builder
	sb.WriteString(collectorYAML)
	for i := 0; sb.Len() < 100<<10; i++ {
		fmt.Fprintf(&sb, "# padding line %06d to make the document larger than any WebSocket buffer\n", i)
	}
	config := sb.String()
	h := sha256.Sum256([]byte(config))
	hash := hex.EncodeToString(h[:])
	var uids []types.InstanceUid
	var mu sync.Mutex
	got := map[string]string{}
	for i := range 2 {
		uid := newUID()
		uids = append(uids, uid)
		startAgent(t, addr, agentOpts{uid: uid, instanceID: fmt.Sprintf("large-%d", i),
			caps: protobufs.AgentCapabilities_AgentCapabilities_AcceptsRemoteConfig | protobufs.AgentCapabilities_AgentCapabilities_ReportsRemoteConfig,
			onRemote: func(c client.OpAMPClient, rc *protobufs.AgentRemoteConfig) {
				mu.Lock()
				got[hexUID(uid)] = string(rc.GetConfig().GetConfigMap()["collector.yaml"].GetBody())
				mu.Unlock()
				_ = c.SetRemoteConfigStatus(&protobufs.RemoteConfigStatus{LastRemoteConfigHash: rc.ConfigHash, Status: protobufs.RemoteConfigStatuses_RemoteConfigStatuses_APPLIED})
			}})
		natstest.Eventually(t, 2*time.Second, func() bool { _, ok := f.agentState(hexUID(uid)); return ok }, "agent %d connected", i)
		d := events.DesiredConfig{V: 1, UID: hexUID(uid), Group: "big", Version: 1, Hash: hash, Config: config, UpdatedAt: time.Now()}
		b, _ := json.Marshal(d)
		if _, err := f.b.Rollouts.Put(context.Background(), events.DesiredKeyPrefix+hexUID(uid), b); err != nil {
			t.Fatal(err)
		}
	}
	for _, uid := range uids {
		natstest.Eventually(t, 5*time.Second, func() bool {
			st, ok := f.agentState(hexUID(uid))
			return ok && st.RemoteConfig.Status == events.RemoteConfigApplied && st.RemoteConfig.Hash == hash && st.RemoteConfig.Group == "big"
		}, "agent %s applied the large config", hexUID(uid))
		mu.Lock()
		body := got[hexUID(uid)]
		mu.Unlock()
		if body != config {
			t.Fatalf("agent %s received %d bytes, want the %d sent", hexUID(uid), len(body), len(config))
		}
	}
}
