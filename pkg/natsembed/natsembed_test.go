package natsembed

import (
	"net"
	"strings"
	"testing"
	"time"
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
