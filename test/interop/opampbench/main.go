// Program opampbench connects N simulated OpAMP agents (opamp-go WebSocket clients,
// heart-beating) to one running opamp replica and measures, from the replica's /proc
// entry: resident memory per connected agent, CPU time per heartbeat, and the time to roll
// one config out to every agent (desired.<uid> written for each, until each agent has
// received it and reported APPLIED back into its agent state).
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
)

func main() {
	natsURL := flag.String("nats", "nats://127.0.0.1:4222", "NATS URL of the fleet")
	url := flag.String("url", "ws://127.0.0.1:4320/v1/opamp", "OpAMP endpoint of the replica")
	pid := flag.Int("pid", 0, "PID of the replica (its memory and CPU are read from /proc)")
	n := flag.Int("agents", 10000, "simulated agents")
	hb := flag.Duration("heartbeat", 5*time.Second, "heartbeat interval of each agent")
	window := flag.Duration("window", 20*time.Second, "how long CPU per heartbeat is measured")
	flag.Parse()
	if err := run(*natsURL, *url, *pid, *n, *hb, *window); err != nil {
		fmt.Fprintln(os.Stderr, "opampbench:", err)
		os.Exit(1)
	}
}

// agent is one simulated agent.
type agent struct {
	uid  string
	c    client.OpAMPClient
	got  atomic.Value // hash (hex) of the last remote config received
	done chan struct{}
	once sync.Once
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

	began = time.Now()
	for _, a := range agents {
		d := events.DesiredConfig{V: events.DesiredConfigVersion, UID: a.uid, Group: "bench", Version: 1, Hash: hash, Config: config, Rollout: "bench-1", UpdatedAt: time.Now().UTC()}
		data, _ := json.Marshal(d)
		if _, err := rollouts.Put(ctx, events.DesiredKeyPrefix+a.uid, data); err != nil {
			return err
		}
	}
	written := time.Since(began)
	deadline := time.After(5 * time.Minute)
	for i, a := range agents {
		select {
		case <-a.done:
		case <-deadline:
			return fmt.Errorf("rollout: agent %d of %d has not received the config within 5m", i, n)
		}
	}
	fmt.Printf("rollout to %d agents: desired configs written in %v, all received and APPLIED reported in %v\n", n, written.Round(time.Millisecond), time.Since(began).Round(time.Millisecond))
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
			if got == hash {
				a.once.Do(func() { close(a.done) })
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
