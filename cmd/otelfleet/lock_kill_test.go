package main

import (
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/otelfleet/otelfleet/pkg/natstest"
)

// buildOtelfleet builds this command into a temporary directory.
func buildOtelfleet(t *testing.T) string {
	t.Helper()
	goBin, err := exec.LookPath("go")
	if err != nil {
		t.Skip("no go toolchain on PATH to build the binary")
	}
	bin := filepath.Join(t.TempDir(), "otelfleet")
	if out, err := exec.Command(goBin, "build", "-o", bin, ".").CombinedOutput(); err != nil {
		t.Fatalf("go build: %v\n%s", err, out)
	}
	return bin
}

// tickScript writes a timestamp (ns) to FILE every 20 ms from a grandchild of the locked
// command (a background subshell), for at most 30 s.
const tickScript = `(i=0; while [ $i -lt 1500 ]; do date +%s%N >> "$0"; sleep 0.02; i=$((i+1)); done) & wait`

// ticks reads the timestamps of a tick file.
func ticks(t *testing.T, file string) []time.Time {
	t.Helper()
	data, err := os.ReadFile(file)
	if err != nil && !os.IsNotExist(err) {
		t.Fatal(err)
	}
	var out []time.Time
	for _, l := range strings.Fields(string(data)) {
		ns, err := strconv.ParseInt(l, 10, 64)
		if err == nil {
			out = append(out, time.Unix(0, ns))
		}
	}
	return out
}

// TestLockHolderKilledTakesItsCommandAlong: kill -9 of `otelfleet lock` must kill its
// command and the command's children, so that the next holder (who wins one TTL later)
// never runs at the same time. The overlap is measured from the commands' own
// timestamps.
func TestLockHolderKilledTakesItsCommandAlong(t *testing.T) {
	if testing.Short() {
		t.Skip("builds the binary")
	}
	t.Parallel()
	srv, _ := contractServer(t)
	bin := buildOtelfleet(t)
	dir := t.TempDir()
	fileA, fileB := filepath.Join(dir, "a"), filepath.Join(dir, "b")
	start := func(file string) *exec.Cmd {
		cmd := exec.Command(bin, "--nats", srv.URL(), "lock", "nightly", "--", "sh", "-c", tickScript, file)
		if err := cmd.Start(); err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() {
			_ = cmd.Process.Signal(syscall.SIGTERM)
			_ = cmd.Wait()
		})
		return cmd
	}
	a := start(fileA)
	natstest.Eventually(t, 10*time.Second, func() bool { return len(ticks(t, fileA)) >= 3 }, "first holder's command never ticked")
	killed := time.Now()
	if err := a.Process.Kill(); err != nil {
		t.Fatal(err)
	}
	_ = a.Wait()
	start(fileB)
	natstest.Eventually(t, 15*time.Second, func() bool { return len(ticks(t, fileB)) >= 25 }, "second holder's command never ran for 0.5 s")
	ta, tb := ticks(t, fileA), ticks(t, fileB)
	lastA, firstB := ta[len(ta)-1], tb[0]
	overlap := max(0, lastA.Sub(firstB))
	t.Logf("holder killed; its command's last tick %v after the kill; the next holder's first tick %v after it; overlap %v",
		lastA.Sub(killed).Round(time.Millisecond), firstB.Sub(killed).Round(time.Millisecond), overlap)
	if overlap > 0 {
		t.Fatalf("two holders ran at once for %v", overlap)
	}
	if lastA.Sub(killed) > time.Second {
		t.Fatalf("the killed holder's command ran on for %v", lastA.Sub(killed))
	}
}
