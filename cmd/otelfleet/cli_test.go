package main

import (
	"bytes"
	"context"
	"encoding/json"
	"net"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/otelfleet/otelfleet/pkg/natstest"
)

// runCLI runs the CLI in-process and returns its exit code, stdout and stderr.
func runCLI(t *testing.T, args ...string) (int, string, string) {
	t.Helper()
	var out, errb bytes.Buffer
	env := &cliEnv{stdout: &out, stderr: &errb}
	code := env.main(context.Background(), args)
	return code, out.String(), errb.String()
}

func examplePath(t *testing.T) string {
	t.Helper()
	p, err := filepath.Abs("../../examples/global-config.yaml")
	if err != nil {
		t.Fatal(err)
	}
	return p
}

func TestUsageErrorsExit2(t *testing.T) {
	for name, args := range map[string][]string{
		"no command":            {},
		"unknown command":       {"bogus"},
		"unknown config op":     {"config", "bogus"},
		"bad flag":              {"config", "get", "--no-such-flag"},
		"bad output":            {"config", "get", "-o", "xml"},
		"validate without file": {"config", "validate"},
	} {
		t.Run(name, func(t *testing.T) {
			if code, _, stderr := runCLI(t, args...); code != exitUsage {
				t.Errorf("exit %d, want %d; stderr: %s", code, exitUsage, stderr)
			}
		})
	}
}

func TestEveryLineOfAMultiProblemErrorIsPrefixed(t *testing.T) {
	code, _, stderr := runCLI(t, "agent")
	want := "otelfleet: agent: --region is required\notelfleet: --id is required\notelfleet: --endpoint is required\n"
	if code != exitUsage || stderr != want {
		t.Errorf("exit %d, stderr %q; want %d, %q", code, stderr, exitUsage, want)
	}
}

func TestConfigValidateWorksWithoutNATS(t *testing.T) {
	code, out, stderr := runCLI(t, "--nats", "nats://127.0.0.1:1", "config", "validate", "-f", examplePath(t))
	if code != exitOK || !strings.Contains(out, "is valid") {
		t.Fatalf("validate example: exit %d, out %q, stderr %q", code, out, stderr)
	}
	bad := filepath.Join(t.TempDir(), "bad.yaml")
	if err := os.WriteFile(bad, []byte("global:\n  sampling_rate: 2\n  degradation: {enabled: true, threshold: 0.5, target_rate: 0.1, recovery_threshold: 0.9}\n  rate_limiting: {max_qps: 1, burst_size: 1}\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	code, _, stderr = runCLI(t, "config", "validate", "-f", bad)
	if code != exitRefused {
		t.Fatalf("exit %d, want 1", code)
	}
	for _, want := range []string{"global.sampling_rate: 2 is outside [0, 1]", "global.degradation.recovery_threshold"} {
		if !strings.Contains(stderr, want) {
			t.Errorf("stderr %q does not name %q", stderr, want)
		}
	}
	code, out, _ = runCLI(t, "config", "validate", "-f", bad, "-o", "json")
	var rep struct {
		Valid    bool                    `json:"valid"`
		Problems []struct{ Path string } `json:"problems"`
	}
	if code != exitRefused || json.Unmarshal([]byte(out), &rep) != nil || rep.Valid || len(rep.Problems) != 2 {
		t.Errorf("json validate: exit %d, out %s", code, out)
	}
}

func TestUnreachableNATSExit3(t *testing.T) {
	code, _, stderr := runCLI(t, "--nats", "nats://127.0.0.1:1", "--timeout", "300ms", "config", "get")
	if code != exitUnreachable || !strings.Contains(stderr, "nats://127.0.0.1:1") {
		t.Errorf("exit %d, stderr %q; want 3 naming the URL", code, stderr)
	}
}

func freePort(t *testing.T) int {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port
}

// startDev runs `otelfleet dev` in-process until the returned stop function is called,
// which returns its exit code.
func startDev(t *testing.T, dataDir string, port int, extra ...string) func() int {
	t.Helper()
	return startDevWith(t, dataDir, port, nil, extra...)
}

// startDevWith is startDev whose readiness probe (config status) runs with the client
// flags probe, e.g. an identity for `dev --auth`.
func startDevWith(t *testing.T, dataDir string, port int, probe []string, extra ...string) func() int {
	t.Helper()
	stop, _ := startDevLogged(t, dataDir, port, probe, extra...)
	return stop
}

// startDevLogged is startDevWith that also returns what dev has logged so far (at
// --log-level warn unless extra says otherwise).
func startDevLogged(t *testing.T, dataDir string, port int, probe []string, extra ...string) (func() int, func() string) {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	var wg sync.WaitGroup
	var code int
	logs := &natstest.Buffer{}
	wg.Add(1)
	go func() {
		defer wg.Done()
		env := &cliEnv{stdout: logs, stderr: logs}
		args := append([]string{"dev", "--data-dir", dataDir, "--nats-port", strconv.Itoa(port), "--admin-addr", "127.0.0.1:0", "--sampling-addr", "127.0.0.1:0", "--otlp-grpc-addr", "127.0.0.1:0", "--otlp-http-addr", "127.0.0.1:0", "--log-level", "warn"}, extra...)
		code = env.main(ctx, args)
	}()
	url := "nats://127.0.0.1:" + strconv.Itoa(port)
	natstest.Eventually(t, 20*time.Second, func() bool {
		// config status goes through the config service's micro endpoints (config get
		// reads the bucket, which is filled before the endpoints start).
		c, _, _ := runCLI(t, append(append([]string{"--nats", url, "--timeout", "2s"}, probe...), "config", "status")...)
		return c == exitOK
	}, "dev stack serves config")
	var once sync.Once
	stop := func() int {
		once.Do(func() { cancel(); wg.Wait() })
		return code
	}
	t.Cleanup(func() { stop() })
	return stop, logs.String
}

func TestDevStackConfigLifecycle(t *testing.T) {
	if testing.Short() {
		t.Skip("starts the whole dev stack")
	}
	dir := t.TempDir()
	port := freePort(t)
	url := "nats://127.0.0.1:" + strconv.Itoa(port)
	stop := startDev(t, dir, port)

	if code, out, stderr := runCLI(t, "--nats", url, "config", "set", "-f", examplePath(t), "--by", "tester"); code != exitOK {
		t.Fatalf("config set: exit %d, %s %s", code, out, stderr)
	}
	fixed := filepath.Join(t.TempDir(), "fixed.yaml")
	if err := os.WriteFile(fixed, []byte("global:\n  sampling_rate: 0.3\n  degradation: {enabled: false}\n  rate_limiting: {max_qps: 10, burst_size: 1}\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	if code, _, stderr := runCLI(t, "--nats", url, "config", "set", "-f", fixed); code != exitOK {
		t.Fatalf("config set fixed: exit %d %s", code, stderr)
	}
	code, out, _ := runCLI(t, "--nats", url, "config", "get", "-o", "json")
	var got struct {
		Global struct {
			SamplingRate float64 `json:"sampling_rate"`
			Version      uint64  `json:"version"`
		} `json:"global"`
	}
	if code != exitOK || json.Unmarshal([]byte(out), &got) != nil || got.Global.SamplingRate != 0.3 {
		t.Fatalf("config get: exit %d, %s", code, out)
	}
	version := got.Global.Version

	code, out, _ = runCLI(t, "--nats", url, "config", "history", "-o", "json")
	var hist []struct {
		Version uint64 `json:"version"`
	}
	if code != exitOK || json.Unmarshal([]byte(out), &hist) != nil || len(hist) < 2 || hist[len(hist)-1].Version != version {
		t.Fatalf("config history: exit %d, %s", code, out)
	}
	if code, _, stderr := runCLI(t, "--nats", url, "config", "rollback", "--to", strconv.FormatUint(version-1, 10)); code != exitOK {
		t.Fatalf("rollback: exit %d %s", code, stderr)
	}
	code, out, _ = runCLI(t, "--nats", url, "config", "status", "-o", "json")
	if code != exitOK || !strings.Contains(out, `"global_version": `+strconv.FormatUint(version+1, 10)) {
		t.Fatalf("config status: exit %d, %s", code, out)
	}

	if code := stop(); code != exitOK {
		t.Fatalf("dev exited %d on stop, want 0", code)
	}
	// Started again on the same data dir it keeps its state.
	startDev(t, dir, port)
	code, out, _ = runCLI(t, "--nats", url, "config", "get", "-o", "json")
	if code != exitOK || json.Unmarshal([]byte(out), &got) != nil || got.Global.Version != version+1 || got.Global.SamplingRate != 0.1 {
		t.Fatalf("after restart: exit %d, %s; want version %d with the example's rate", code, out, version+1)
	}
}

func TestVersionFlagAndCommand(t *testing.T) {
	for _, args := range [][]string{{"--version"}, {"version"}} {
		code, out, _ := runCLI(t, args...)
		if code != exitOK || !strings.HasPrefix(out, "otelfleet ") {
			t.Errorf("%v: exit %d, out %q", args, code, out)
		}
	}
}
