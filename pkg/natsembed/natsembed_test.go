package natsembed

import (
	"net"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
)

// TestPortTakenFailsAtOnce: a taken client port is reported at once, naming the address
// and the flag, instead of after the 15 s readiness timeout.
func TestPortTakenFailsAtOnce(t *testing.T) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	port := l.Addr().(*net.TCPAddr).Port
	start := time.Now()
	s, err := Start(Options{DataDir: t.TempDir(), Host: "127.0.0.1", Port: port})
	if err == nil {
		s.Stop()
		t.Fatal("Start on a taken port succeeded")
	}
	if took := time.Since(start); took > 5*time.Second {
		t.Errorf("Start took %v to fail", took)
	}
	if msg := err.Error(); !strings.Contains(msg, l.Addr().String()) || !strings.Contains(msg, "--nats-port") {
		t.Errorf("error %q does not name the address and --nats-port", msg)
	}
}

func TestStartAndStop(t *testing.T) {
	s, err := Start(Options{DataDir: t.TempDir(), Port: -1})
	if err != nil {
		t.Fatal(err)
	}
	if !s.JetStreamEnabled() {
		t.Error("JetStream not enabled")
	}
	s.Stop()
}

// TestLoadEnvFile: KEY=VALUE lines are set, comments and blank lines skipped, a variable
// already in the environment wins, and a line without '=' is an error naming the line.
func TestLoadEnvFile(t *testing.T) {
	dir := t.TempDir()
	good := filepath.Join(dir, "good.env")
	if err := os.WriteFile(good, []byte("# comment\n\nOTELFLEET_T_A=one\nOTELFLEET_T_B=two=2\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	t.Setenv("OTELFLEET_T_B", "kept")
	t.Setenv("OTELFLEET_T_A", "")
	os.Unsetenv("OTELFLEET_T_A")
	if err := LoadEnvFile(good); err != nil {
		t.Fatal(err)
	}
	if a, b := os.Getenv("OTELFLEET_T_A"), os.Getenv("OTELFLEET_T_B"); a != "one" || b != "kept" {
		t.Errorf("A=%q B=%q, want one and kept", a, b)
	}
	bad := filepath.Join(dir, "bad.env")
	if err := os.WriteFile(bad, []byte("OK=1\nnot a pair\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	if err := LoadEnvFile(bad); err == nil || !strings.Contains(err.Error(), "line 2") {
		t.Errorf("bad line: %v, want an error naming line 2", err)
	}
	if _, err := ReadEnvFile(filepath.Join(dir, "missing.env")); err == nil {
		t.Error("a missing file was read")
	}
}

// TestStartWithConfigFile: a config file's authorization applies to the embedded server.
func TestStartWithConfigFile(t *testing.T) {
	conf := filepath.Join(t.TempDir(), "auth.conf")
	if err := os.WriteFile(conf, []byte("authorization { users: [ {user: a, password: b} ] }\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	s, err := Start(Options{DataDir: t.TempDir(), Port: -1, ConfigFile: conf})
	if err != nil {
		t.Fatal(err)
	}
	defer s.Stop()
	if nc, err := nats.Connect(s.ClientURL()); err == nil {
		nc.Close()
		t.Error("a client without credentials connected")
	}
	nc, err := nats.Connect(s.ClientURL(), nats.UserInfo("a", "b"))
	if err != nil {
		t.Fatalf("with the file's user: %v", err)
	}
	nc.Close()
	if _, err := Start(Options{DataDir: t.TempDir(), Port: -1, ConfigFile: filepath.Join(t.TempDir(), "none.conf")}); err == nil || !strings.Contains(err.Error(), "none.conf") {
		t.Errorf("missing config file: %v", err)
	}
}
