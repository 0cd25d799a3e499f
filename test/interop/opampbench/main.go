// Program opampbench connects N simulated OpAMP agents (opamp-go WebSocket clients,
// heart-beating) to one running opamp replica and measures, from the replica's /proc
// entry: resident memory per connected agent, CPU time per heartbeat, and the time to roll
// one config out to every agent.
//
// With --group G (the default) the rollout is the real one: the bench stores collector.G
// through the config service (otlp.config.collector.put, as `otelfleet collectors config
// set` does) with a selector matching only its agents and the policy of --canary,
// --waves and --soak; the opamp leader's controller plans the waves and writes each
// agent's desired config, the replica pushes it, the agent reports APPLIED, and the
// bench waits until rollout.G says completed. It reports the time from the put to the
// first and to the last agent applying, and to completion. With --group "" it writes
// desired.<uid> for every agent itself (the push path alone, no controller).
//
//	opampbench --nats nats://127.0.0.1:4222 --url ws://127.0.0.1:4320/v1/opamp --pid <replica pid> --agents 10000
package main

import (
	"context"
	"crypto/rand"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"flag"
	"fmt"
	"os"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"github.com/open-telemetry/opamp-go/client"
	"github.com/open-telemetry/opamp-go/client/types"
	"github.com/open-telemetry/opamp-go/protobufs"

	"github.com/otelfleet/otelfleet/pkg/events"
	"github.com/otelfleet/otelfleet/pkg/fleetconfig"
	"github.com/otelfleet/otelfleet/pkg/microapi"
)

func main() {
	natsURL := flag.String("nats", "nats://127.0.0.1:4222", "NATS URL of the fleet")
	url := flag.String("url", "ws://127.0.0.1:4320/v1/opamp", "OpAMP endpoint of the replica")
	pid := flag.Int("pid", 0, "PID of the replica (its memory and CPU are read from /proc)")
	n := flag.Int("agents", 10000, "simulated agents")
	hb := flag.Duration("heartbeat", 5*time.Second, "heartbeat interval of each agent")
	window := flag.Duration("window", 20*time.Second, "how long CPU per heartbeat is measured")
	flag.StringVar(&ro.group, "group", "bench", "collector group rolled out through the controller (empty: write desired configs directly)")
	flag.Float64Var(&ro.canary, "canary", 1, "rollout policy: canary share in percent")
	flag.IntVar(&ro.waves, "waves", 1, "rollout policy: waves after the canary")
	flag.DurationVar(&ro.soak, "soak", time.Second, "rollout policy: soak per wave")
	flag.DurationVar(&ro.timeout, "rollout-timeout", 5*time.Minute, "how long to wait for the rollout to complete")
	flag.Parse()
	if err := run(*natsURL, *url, *pid, *n, *hb, *window); err != nil {
		fmt.Fprintln(os.Stderr, "opampbench:", err)
		os.Exit(1)
	}
}

// marker is the first line of the config this run rolls out (set before it is stored);
// an agent counts as applied only for a config starting with it, not for the group's
// config in force that agents get while they connect.
var marker atomic.Pointer[string]

// ro is the rollout the bench runs.
var ro struct {
	group         string
	canary        float64
	waves         int
	soak, timeout time.Duration
}

// agent is one simulated agent.
type agent struct {
	uid     string
	c       client.OpAMPClient
	applied atomic.Int64 // unix nanoseconds when the wanted config was applied (0: not yet)
	done    chan struct{}
	once    sync.Once
}

func run(natsURL, url string, pid, n int, hb, window time.Duration) error {
	nc, err := nats.Connect(natsURL)
	if err != nil {
		return err
	}
	defer nc.Close()
	js, err := jetstream.New(nc)
	if err != nil {
		return err
	}
	ctx := context.Background()
	rollouts, err := js.KeyValue(ctx, events.Default.RolloutsBucket())
	if err != nil {
		return fmt.Errorf("rollouts bucket: %w", err)
	}
	rss0, _ := procStat(pid)
	config := "receivers: {otlp: {protocols: {grpc: {}}}}\nexporters: {debug: {}}\nservice: {pipelines: {traces: {receivers: [otlp], exporters: [debug]}}}\n"
	sum := sha256.Sum256([]byte(config))
	hash := hex.EncodeToString(sum[:])

	agents := make([]*agent, n)
	began := time.Now()
	for i := range agents {
		a, err := connect(ctx, url, i, hb, hash)
		if err != nil {
			return fmt.Errorf("agent %d: %w", i, err)
		}
		agents[i] = a
	}
	defer func() {
		for _, a := range agents {
			_ = a.c.Stop(ctx)
		}
	}()
	fmt.Printf("connected %d agents in %v\n", n, time.Since(began).Round(time.Millisecond))
	time.Sleep(2 * hb) // settle: every agent has sent its first heartbeats
	rss1, _ := procStat(pid)
	fmt.Printf("replica RSS %.1f MiB -> %.1f MiB: %.1f KiB per agent\n", mib(rss0), mib(rss1), float64(rss1-rss0)/1024/float64(n))

	_, cpuA := procStat(pid)
	time.Sleep(window)
	_, cpuB := procStat(pid)
	beats := float64(n) * window.Seconds() / hb.Seconds()
	fmt.Printf("replica CPU %.2f s over %v for ~%.0f heartbeats: %.1f µs per heartbeat (%.0f%% of a core)\n",
		cpuB-cpuA, window, beats, (cpuB-cpuA)/beats*1e6, (cpuB-cpuA)/window.Seconds()*100)

	if ro.group != "" {
		return rolloutGroup(ctx, nc, rollouts, agents, config)
	}
	began = time.Now()
	for _, a := range agents {
		d := events.DesiredConfig{V: events.DesiredConfigVersion, UID: a.uid, Group: "bench", Version: 1, Hash: hash, Config: config, Rollout: "bench-1", UpdatedAt: time.Now().UTC()}
		data, _ := json.Marshal(d)
		if _, err := rollouts.Put(ctx, events.DesiredKeyPrefix+a.uid, data); err != nil {
			return err
		}
	}
	written := time.Since(began)
	if err := waitApplied(agents, ro.timeout); err != nil {
		return err
	}
	fmt.Printf("rollout to %d agents: desired configs written in %v, all received and APPLIED reported in %v\n", n, written.Round(time.Millisecond), time.Since(began).Round(time.Millisecond))
	return nil
}

// waitApplied waits until every agent applied the config it waits for.
func waitApplied(agents []*agent, timeout time.Duration) error {
	deadline := time.After(timeout)
	for i, a := range agents {
		select {
		case <-a.done:
		case <-deadline:
			return fmt.Errorf("rollout: agent %d of %d (%s) has not applied the config within %v", i, len(agents), a.uid, timeout)
		}
	}
	return nil
}

// collectorPut is the body of otlp.config.collector.put (services/config CollectorRequest).
type collectorPut struct {
	Group    string                    `json:"group"`
	Selector fleetconfig.Selector      `json:"selector"`
	Config   string                    `json:"config"`
	Rollout  fleetconfig.RolloutPolicy `json:"rollout"`
	By       string                    `json:"by"`
}

// rolloutGroup stores collector.<group> for the bench's agents (a new version with a
// config comment naming the run, so every run is a new rollout) and measures the
// controller's rollout until rollout.<group> says completed.
func rolloutGroup(ctx context.Context, nc *nats.Conn, rollouts jetstream.KeyValue, agents []*agent, config string) error {
	mark := new(fmt.Sprintf("# opampbench run %s\n", time.Now().UTC().Format(time.RFC3339Nano)))
	marker.Store(mark)
	req := collectorPut{
		Group:    ro.group,
		Selector: fleetconfig.Selector{Attributes: map[string]string{"service.name": "opampbench"}},
		Config:   *mark + config,
		Rollout: fleetconfig.RolloutPolicy{CanaryPercent: ro.canary, Waves: ro.waves,
			Soak: fleetconfig.Duration(ro.soak), WaveTimeout: fleetconfig.Duration(ro.timeout)},
		By: "opampbench",
	}
	began := time.Now()
	rctx, cancel := context.WithTimeout(ctx, 30*time.Second)
	var change json.RawMessage
	err := microapi.Request(rctx, nc, events.Default.Endpoint(events.ServiceConfig, "collector.put"), req, &change)
	cancel()
	if err != nil {
		return fmt.Errorf("store collector.%s: %w", ro.group, err)
	}
	fmt.Printf("stored collector.%s (canary %v%%, %d waves after it, soak %v): %s\n", ro.group, ro.canary, ro.waves, ro.soak, change)
	if err := waitApplied(agents, ro.timeout); err != nil {
		return err
	}
	var first, last int64
	for _, a := range agents {
		t := a.applied.Load()
		if first == 0 || t < first {
			first = t
		}
		last = max(last, t)
	}
	key, _ := events.RolloutKey(ro.group)
	var st events.RolloutState
	deadline := time.Now().Add(ro.timeout)
	for {
		e, err := rollouts.Get(ctx, key)
		if err == nil && json.Unmarshal(e.Value(), &st) == nil && st.Phase != events.RolloutRunning {
			break
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("rollout.%s not settled within %v (phase %q)", ro.group, ro.timeout, st.Phase)
		}
		time.Sleep(50 * time.Millisecond)
	}
	settled := time.Since(began)
	if st.Phase != events.RolloutCompleted {
		return fmt.Errorf("rollout.%s ended %s: %s", ro.group, st.Phase, st.Reason)
	}
	at := func(ns int64) time.Duration { return time.Unix(0, ns).Sub(began).Round(time.Millisecond) }
	fmt.Printf("rollout %s to %d agents in %d waves: put -> first applied %v, -> last applied %v (first -> last %v), -> completed %v\n",
		st.ID, len(agents), len(st.Waves), at(first), at(last), time.Duration(last-first).Round(time.Millisecond), settled.Round(time.Millisecond))
	return nil
}

func connect(ctx context.Context, url string, i int, hb time.Duration, hash string) (*agent, error) {
	var raw [16]byte
	_, _ = rand.Read(raw[:])
	a := &agent{uid: hex.EncodeToString(raw[:]), c: client.NewWebSocket(nil), done: make(chan struct{})}
	if err := a.c.SetAgentDescription(&protobufs.AgentDescription{
		IdentifyingAttributes: []*protobufs.KeyValue{
			str("service.name", "opampbench"), str("service.instance.id", "bench-"+strconv.Itoa(i)), str("service.version", "0"),
		},
		NonIdentifyingAttributes: []*protobufs.KeyValue{str("cloud.region", "bench")},
	}); err != nil {
		return nil, err
	}
	if err := a.c.SetHealth(&protobufs.ComponentHealth{Healthy: true, Status: "StatusOK", StartTimeUnixNano: uint64(time.Now().UnixNano())}); err != nil {
		return nil, err
	}
	err := a.c.Start(ctx, types.StartSettings{
		OpAMPServerURL:    url,
		InstanceUid:       types.InstanceUid(raw),
		HeartbeatInterval: &hb,
		Capabilities: protobufs.AgentCapabilities_AgentCapabilities_ReportsStatus | protobufs.AgentCapabilities_AgentCapabilities_AcceptsRemoteConfig |
			protobufs.AgentCapabilities_AgentCapabilities_ReportsRemoteConfig | protobufs.AgentCapabilities_AgentCapabilities_ReportsHealth |
			protobufs.AgentCapabilities_AgentCapabilities_ReportsHeartbeat,
		Callbacks: types.Callbacks{OnMessage: func(_ context.Context, m *types.MessageData) {
			if m.RemoteConfig == nil {
				return
			}
			got := hex.EncodeToString(m.RemoteConfig.ConfigHash)
			_ = a.c.SetRemoteConfigStatus(&protobufs.RemoteConfigStatus{LastRemoteConfigHash: m.RemoteConfig.ConfigHash, Status: protobufs.RemoteConfigStatuses_RemoteConfigStatuses_APPLIED})
			wanted := got == hash
			if mark := marker.Load(); ro.group != "" {
				f := m.RemoteConfig.GetConfig().GetConfigMap()["collector.yaml"]
				wanted = mark != nil && strings.HasPrefix(string(f.GetBody()), *mark)
			}
			if wanted {
				a.once.Do(func() { a.applied.Store(time.Now().UnixNano()); close(a.done) })
			}
		}},
	})
	return a, err
}

func str(k, v string) *protobufs.KeyValue {
	return &protobufs.KeyValue{Key: k, Value: &protobufs.AnyValue{Value: &protobufs.AnyValue_StringValue{StringValue: v}}}
}

func mib(b uint64) float64 { return float64(b) / (1 << 20) }

// procStat returns pid's resident set (bytes) and CPU time (user+system, seconds); zeros
// when pid is 0 or unreadable.
func procStat(pid int) (rss uint64, cpu float64) {
	if pid == 0 {
		return 0, 0
	}
	if b, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", pid)); err == nil {
		for _, l := range strings.Split(string(b), "\n") {
			if f := strings.Fields(l); len(f) >= 2 && f[0] == "VmRSS:" {
				kb, _ := strconv.ParseUint(f[1], 10, 64)
				rss = kb * 1024
			}
		}
	}
	if b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid)); err == nil {
		s := string(b)
		if i := strings.LastIndexByte(s, ')'); i >= 0 {
			f := strings.Fields(s[i+1:])
			if len(f) > 13 {
				u, _ := strconv.ParseFloat(f[11], 64)
				st, _ := strconv.ParseFloat(f[12], 64)
				cpu = (u + st) / 100 // clock ticks (USER_HZ = 100)
			}
		}
	}
	return rss, cpu
}
