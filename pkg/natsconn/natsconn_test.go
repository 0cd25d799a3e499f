package natsconn_test

import (
	"context"
	"errors"
	"io"
	"log/slog"
	"strings"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"go.uber.org/goleak"

	"github.com/otelfleet/otelfleet/pkg/natsconn"
	"github.com/otelfleet/otelfleet/pkg/natstest"
	"github.com/otelfleet/otelfleet/pkg/testcerts"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

func TestProvisionIsIdempotentAndAppliesTTLs(t *testing.T) {
	srv := natstest.Run(t)
	_, js := srv.JetStream(t)
	ctx := context.Background()
	l := natsconn.DefaultLayout()
	if _, err := natsconn.Provision(ctx, js, l); err != nil {
		t.Fatal(err)
	}
	// Without Reconcile, an existing bucket keeps its settings and the difference is said.
	l.RegistryTTL = 3 * time.Second
	b, err := natsconn.Provision(ctx, js, l)
	if err != nil {
		t.Fatalf("second provision: %v", err)
	}
	if st, _ := b.Registry.Status(ctx); st.TTL() != natsconn.DefaultRegistryTTL {
		t.Errorf("registry TTL changed to %v without Reconcile", st.TTL())
	}
	// The registry TTL sizes the registry and the OpAMP agents buckets.
	if len(b.Differences) != 2 || !strings.Contains(b.Differences[0], "otlp_registry: TTL 30s") || !strings.Contains(b.Differences[1], "otlp_agents: TTL 30s") {
		t.Errorf("differences = %q", b.Differences)
	}
	l.Reconcile = true
	b, err = natsconn.Provision(ctx, js, l)
	if err != nil {
		t.Fatalf("reconciling provision: %v", err)
	}
	st, err := b.Registry.Status(ctx)
	if err != nil || st.TTL() != 3*time.Second || st.LimitMarkerTTL() != 3*time.Second {
		t.Errorf("registry bucket after update: ttl %v marker %v err %v", st.TTL(), st.LimitMarkerTTL(), err)
	}
	cfg, _ := b.Config.Status(ctx)
	if cfg.History() != natsconn.ConfigHistory {
		t.Errorf("config history = %d", cfg.History())
	}
	for _, name := range []string{"OTLP_LOAD", "OTLP_EVENTS"} {
		if _, err := js.Stream(ctx, name); err != nil {
			t.Errorf("stream %s: %v", name, err)
		}
	}
}

func TestLayoutValidate(t *testing.T) {
	l := natsconn.DefaultLayout()
	l.LeaseTTL = 100 * time.Millisecond
	l.Replicas = 0
	err := l.Validate()
	if err == nil || !strings.Contains(err.Error(), "lease TTL") || !strings.Contains(err.Error(), "replicas") {
		t.Errorf("Validate = %v", err)
	}
}

func TestDialUnreachableNamesURL(t *testing.T) {
	_, err := natsconn.Dial(natsconn.Options{URL: "nats://127.0.0.1:1"}, 200*time.Millisecond)
	if !errors.Is(err, natsconn.ErrUnreachable) || !strings.Contains(err.Error(), "nats://127.0.0.1:1") {
		t.Errorf("Dial = %v", err)
	}
}

func TestConnectStartsWithServerDownAndReconnects(t *testing.T) {
	srv := natstest.Run(t)
	url := srv.URL()
	srv.Stop()
	states := make(chan nats.Status, 16)
	nc, err := natsconn.Connect(natsconn.Options{URL: url}, slog.New(slog.NewTextHandler(io.Discard, nil)), func(s nats.Status) { states <- s })
	if err != nil {
		t.Fatalf("Connect with the server down: %v", err)
	}
	defer nc.Close()
	if nc.IsConnected() {
		t.Fatal("connected to a stopped server")
	}
	srv.Restart(t)
	natstest.Eventually(t, 15*time.Second, nc.IsConnected, "connection comes up once the server does")
	srv.Restart(t)
	natstest.Eventually(t, 15*time.Second, func() bool { return nc.IsConnected() && nc.Stats().Reconnects >= 1 }, "reconnects after a restart")
}

func TestOptionsValidate(t *testing.T) {
	if err := (natsconn.Options{URL: "nats://x", Token: "t", CredsFile: "c"}).Validate(); err == nil {
		t.Error("two auth methods accepted")
	}
	if err := (natsconn.Options{URL: "nats://x", Password: "p"}).Validate(); err == nil || !strings.Contains(err.Error(), "NATS_USER") {
		t.Errorf("password without user: %v", err)
	}
}

// TestUseExistingWaitsForTheProvisioner: with UseExisting nothing is created (a missing
// stream or bucket is ErrNotProvisioned); once another process provisioned, it binds.
func TestUseExistingWaitsForTheProvisioner(t *testing.T) {
	srv := natstest.Run(t)
	_, js := srv.JetStream(t)
	ctx := context.Background()
	l := natsconn.DefaultLayout()
	l.UseExisting = true
	if _, err := natsconn.Provision(ctx, js, l); !errors.Is(err, natsconn.ErrNotProvisioned) {
		t.Fatalf("Provision with UseExisting on an empty server: %v, want ErrNotProvisioned", err)
	}
	names := js.StreamNames(ctx)
	for n := range names.Name() {
		t.Errorf("UseExisting created stream %s", n)
	}
	if _, err := natsconn.Provision(ctx, js, natsconn.DefaultLayout()); err != nil {
		t.Fatal(err)
	}
	b, err := natsconn.Provision(ctx, js, l)
	if err != nil {
		t.Fatalf("Provision with UseExisting after provisioning: %v", err)
	}
	if b.Config == nil || b.Sampling == nil || b.Rollouts == nil {
		t.Error("buckets not bound")
	}
}

// TestConnectMutualTLS: a tls:// server that verifies clients accepts a connection with
// --nats-ca, --nats-cert and --nats-key and refuses one without the client certificate.
func TestConnectMutualTLS(t *testing.T) {
	set, err := testcerts.WriteSet(t.TempDir(), time.Hour, "config", "127.0.0.1")
	if err != nil {
		t.Fatal(err)
	}
	cfg, err := set.ServerTLS(true)
	if err != nil {
		t.Fatal(err)
	}
	srv := natstest.Run(t, natstest.TLS(cfg))
	if !strings.HasPrefix(srv.URL(), "tls://") {
		t.Fatalf("URL %s", srv.URL())
	}
	o := natsconn.Options{URL: srv.URL(), CAFile: set.CAFile, CertFile: set.ClientCertFile, KeyFile: set.ClientKeyFile}
	nc, err := natsconn.Dial(o, 5*time.Second)
	if err != nil {
		t.Fatalf("mutual TLS: %v", err)
	}
	if !nc.TLSRequired() {
		t.Error("connection without TLS")
	}
	nc.Close()
	o.CertFile, o.KeyFile = "", ""
	if nc, err := natsconn.Dial(o, 5*time.Second); err == nil {
		nc.Close()
		t.Fatal("a client without a certificate connected")
	}
	if err := (natsconn.Options{URL: srv.URL(), CertFile: set.ClientCertFile}).Validate(); err == nil || !strings.Contains(err.Error(), "NATS_KEY") {
		t.Errorf("cert without key: %v", err)
	}
}
