package main

import (
	"context"
	"encoding/json"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/otelfleet/otelfleet/pkg/events"
)

const cliCollectorYAML = `receivers: {otlp: {}}
exporters: {debug: {}}
service: {pipelines: {traces: {receivers: [otlp], exporters: [debug]}}}
`

func TestCollectorsConfigValidateOfflineNamesEveryProblem(t *testing.T) {
	bad := filepath.Join(t.TempDir(), "bad.yaml")
	if err := os.WriteFile(bad, []byte(strings.Replace(cliCollectorYAML, "exporters: [debug]", "exporters: [debug, otlp/x]", 1)), 0o644); err != nil {
		t.Fatal(err)
	}
	code, _, stderr := runCLI(t, "--nats", "nats://127.0.0.1:1", "--timeout", "200ms", "collectors", "config", "validate", "-f", bad, "--group", "edge")
	if code != exitRefused || !strings.Contains(stderr, bad+`: config.service.pipelines.traces.exporters[1]: "otlp/x" is not defined`) {
		t.Fatalf("exit %d, stderr %s", code, stderr)
	}
	if code, _, stderr := runCLI(t, "collectors", "config", "validate", "-f", bad); code != exitUsage || !strings.Contains(stderr, "--group G is required") {
		t.Fatalf("no group: exit %d %s", code, stderr)
	}
	good := filepath.Join(t.TempDir(), "good.yaml")
	if err := os.WriteFile(good, []byte(cliCollectorYAML), 0o644); err != nil {
		t.Fatal(err)
	}
	code, out, stderr := runCLI(t, "--nats", "nats://127.0.0.1:1", "--timeout", "200ms", "collectors", "config", "validate", "-f", good, "--group", "edge", "--selector", "region=eu")
	if code != exitOK || !strings.Contains(stderr, "component types were not checked") || !strings.Contains(out, "is valid") {
		t.Fatalf("exit %d, out %s, stderr %s", code, out, stderr)
	}
}

func TestCollectorsConfigLifecycleAndRolloutStatus(t *testing.T) {
	if testing.Short() {
		t.Skip("starts the whole dev stack")
	}
	port := freePort(t)
	url := "nats://127.0.0.1:" + strconv.Itoa(port)
	startDev(t, t.TempDir(), port)
	file := filepath.Join(t.TempDir(), "c.yaml")
	if err := os.WriteFile(file, []byte(cliCollectorYAML), 0o644); err != nil {
		t.Fatal(err)
	}
	if code, out, stderr := runCLI(t, "--nats", url, "collectors", "config", "set", "-f", file, "--group", "edge", "--selector", "region=eu", "--soak", "1s", "--by", "tester"); code != exitOK || !strings.Contains(out, "collector.edge: version 0 → 1") {
		t.Fatalf("set: exit %d %s %s", code, out, stderr)
	}
	t.Setenv("OTELFLEET_ROLLOUT_WAVES", "5")
	if code, out, stderr := runCLI(t, "--nats", url, "collectors", "config", "set", "-f", file, "--group", "edge", "--selector", "region=eu"); code != exitOK || !strings.Contains(out, "changed: rollout") {
		t.Fatalf("set with env: exit %d %s %s", code, out, stderr)
	}
	code, out, _ := runCLI(t, "--nats", url, "collectors", "config", "get", "--group", "edge", "-o", "json")
	var doc struct {
		Version  uint64 `json:"version"`
		Selector struct {
			Region string `json:"region"`
		} `json:"selector"`
		Rollout struct {
			Waves int `json:"waves"`
		} `json:"rollout"`
	}
	if code != exitOK || json.Unmarshal([]byte(out), &doc) != nil || doc.Version != 2 || doc.Selector.Region != "eu" || doc.Rollout.Waves != 5 {
		t.Fatalf("get: exit %d %s", code, out)
	}
	if code, out, _ := runCLI(t, "--nats", url, "collectors", "config", "history", "--group", "edge"); code != exitOK || strings.Count(out, "\n") != 3 {
		t.Fatalf("history: exit %d %s", code, out)
	}
	if code, out, stderr := runCLI(t, "--nats", url, "collectors", "config", "rollback", "--group", "edge", "--to", "1"); code != exitOK || !strings.Contains(out, "version 2 → 3") {
		t.Fatalf("rollback: exit %d %s %s", code, out, stderr)
	}
	if code, out, _ := runCLI(t, "--nats", url, "collectors", "config", "ls"); code != exitOK || !strings.Contains(out, "edge") || !strings.Contains(out, "region=eu") {
		t.Fatalf("ls: exit %d %s", code, out)
	}

	// A rollout state as the opamp leader writes it.
	nc, err := nats.Connect(url)
	if err != nil {
		t.Fatal(err)
	}
	defer nc.Close()
	js, _ := jetstream.New(nc)
	kv, err := js.KeyValue(context.Background(), events.Default.RolloutsBucket())
	if err != nil {
		t.Fatal(err)
	}
	st := events.RolloutState{V: 1, Group: "edge", ID: "edge-3-ab", Phase: events.RolloutRolledBack, Reason: "agent eu/c1 (u1): remote config FAILED: boom",
		Target: events.RolloutConfig{Version: 3, Hash: "ab"}, Waves: [][]string{{"u1"}}, BadVersion: 3, UpdatedAt: time.Now(),
		Agents: []events.RolloutAgent{{UID: "u1", ID: "c1", Region: "eu", Version: 3, Hash: "ab", Status: "FAILED", Error: "boom"}}}
	data, _ := events.Encode(st)
	if _, err := kv.Put(context.Background(), "rollout.edge", data); err != nil {
		t.Fatal(err)
	}
	code, out, _ = runCLI(t, "--nats", url, "collectors", "rollout", "status")
	if code != exitOK || !strings.Contains(out, "group edge: version 3 ROLLED_BACK") || !strings.Contains(out, "remote config FAILED: boom") || !strings.Contains(out, "c1") {
		t.Fatalf("status: exit %d %s", code, out)
	}
	code, out, _ = runCLI(t, "--nats", url, "collectors", "rollout", "status", "--group", "edge", "-o", "json")
	var sts []events.RolloutState
	if code != exitOK || json.Unmarshal([]byte(out), &sts) != nil || len(sts) != 1 || sts[0].Agents[0].Error != "boom" {
		t.Fatalf("status json: exit %d %s", code, out)
	}
	if code, _, _ := runCLI(t, "--nats", url, "collectors", "rollout", "status", "--group", "other"); code != exitRefused {
		t.Fatalf("unknown group: exit %d", code)
	}

	// A group no agent of which accepts remote config: completed with no waves, said so.
	empty := events.RolloutState{V: 1, Group: "idle", ID: "idle-1-cd", Phase: events.RolloutCompleted, Target: events.RolloutConfig{Version: 1, Hash: "cd"}, UpdatedAt: time.Now()}
	data, _ = events.Encode(empty)
	if _, err := kv.Put(context.Background(), "rollout.idle", data); err != nil {
		t.Fatal(err)
	}
	code, out, _ = runCLI(t, "--nats", url, "collectors", "rollout", "status", "--group", "idle")
	if code != exitOK || !strings.Contains(out, "version 1 COMPLETED, no agent of the group accepts remote config") || strings.Contains(out, "of 0") {
		t.Fatalf("status of a group without agents: exit %d %s", code, out)
	}
}
