package natstest_test

import (
	"context"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

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

// TestRunCluster: three servers form a JetStream cluster; an R3 bucket written through
// one server is read through another, and still written after one server stops.
func TestRunCluster(t *testing.T) {
	c := natstest.RunCluster(t, 3)
	ctx := context.Background()
	kvOn := func(s *natstest.Server) jetstream.KeyValue {
		_, js := s.JetStream(t)
		kv, err := js.CreateOrUpdateKeyValue(ctx, jetstream.KeyValueConfig{Bucket: "r3", Replicas: 3})
		if err != nil {
			t.Fatalf("R3 bucket through %s: %v", s.Name(), err)
		}
		return kv
	}
	if _, err := kvOn(c.Servers[0]).Put(ctx, "k", []byte("v1")); err != nil {
		t.Fatal(err)
	}
	kv2 := kvOn(c.Servers[1])
	if e, err := kv2.Get(ctx, "k"); err != nil || string(e.Value()) != "v1" {
		t.Fatalf("read through s2: %v %v", e, err)
	}
	js, err := jetstream.New(c.Connect(t))
	if err != nil {
		t.Fatal(err)
	}
	info, err := js.Stream(ctx, "KV_r3")
	if err != nil {
		t.Fatal(err)
	}
	if n := len(info.CachedInfo().Cluster.Replicas); n != 2 {
		t.Fatalf("stream has %d followers, want 2", n)
	}
	c.Servers[2].Stop()
	natstest.Eventually(t, 20*time.Second, func() bool {
		_, err := kv2.Put(ctx, "k", []byte("v2"))
		return err == nil
	}, "no write with one of three servers stopped")
}
