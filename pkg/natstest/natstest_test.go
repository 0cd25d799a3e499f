package natstest_test

import (
	"testing"

	"github.com/nats-io/nats.go"

	"github.com/otelfleet/otelfleet/pkg/natstest"
)

// TestConfigFileShipped: the shipped deploy/nats configuration loads with the dev
// passwords, requires an identity and accepts one.
func TestConfigFileShipped(t *testing.T) {
	env := natstest.EnvFile(t, "../../deploy/nats/dev.env")
	s := natstest.Run(t, natstest.ConfigFile(t, "../../deploy/nats/nats.conf"))
	if !s.JetStreamEnabled() {
		t.Fatal("JetStream not enabled")
	}
	if nc, err := nats.Connect(s.URL()); err == nil {
		nc.Close()
		t.Fatal("a client without an identity was let in")
	}
	nc, err := nats.Connect(s.URL(), nats.UserInfo("viewer", env["OTELFLEET_PASSWORD_VIEWER"]))
	if err != nil {
		t.Fatalf("viewer with the dev password: %v", err)
	}
	nc.Close()
	if nc, err := nats.Connect(s.URL(), nats.UserInfo("viewer", "wrong")); err == nil {
		nc.Close()
		t.Fatal("a wrong password was accepted")
	}
}
