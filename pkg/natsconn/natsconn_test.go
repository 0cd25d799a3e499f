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

func TestInboxPrefix(t *testing.T) {
	for name, tc := range map[string]struct {
		o    natsconn.Options
		want string
		bad  string // what the error names; "" when valid
	}{
		"no identity":        {natsconn.Options{URL: "nats://x"}, "", ""},
		"from the user":      {natsconn.Options{URL: "nats://x", User: "sink-1", Password: "p"}, "_INBOX_sink-1", ""},
		"explicit wins":      {natsconn.Options{URL: "nats://x", User: "a", Password: "p", InboxPrefix: "_INBOX_team.a"}, "_INBOX_team.a", ""},
		"creds with a knob":  {natsconn.Options{URL: "nats://x", CredsFile: "c", InboxPrefix: "_I_x"}, "_I_x", ""},
		"wildcard prefix":    {natsconn.Options{URL: "nats://x", InboxPrefix: "_INBOX.>"}, "_INBOX.>", "NATS_INBOX_PREFIX"},
		"trailing dot":       {natsconn.Options{URL: "nats://x", InboxPrefix: "_INBOX."}, "_INBOX.", "NATS_INBOX_PREFIX"},
		"user with a space":  {natsconn.Options{URL: "nats://x", User: "a b", Password: "p"}, "_INBOX_a b", "NATS_USER"},
		"user with wildcard": {natsconn.Options{URL: "nats://x", User: "a*", Password: "p"}, "_INBOX_a*", "NATS_USER"},
	} {
		t.Run(name, func(t *testing.T) {
			if got := tc.o.Inbox(); got != tc.want {
				t.Fatalf("Inbox() = %q, want %q", got, tc.want)
			}
			err := tc.o.Validate()
			if tc.bad == "" && err != nil {
				t.Fatal(err)
			}
			if tc.bad != "" && (err == nil || !strings.Contains(err.Error(), tc.bad)) {
				t.Fatalf("err = %v, want one naming %s", err, tc.bad)
			}
		})
	}
}

// A connection's replies arrive under its inbox prefix.
func TestConnectUsesTheInboxPrefix(t *testing.T) {
	srv := natstest.Run(t)
	nc, err := natsconn.Dial(natsconn.Options{URL: srv.ClientURL(), InboxPrefix: "_INBOX_tester"}, 2*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	defer nc.Close()
	sub, err := nc.Subscribe("echo", func(m *nats.Msg) { _ = m.Respond([]byte(m.Reply)) })
	if err != nil {
		t.Fatal(err)
	}
	defer sub.Unsubscribe()
	m, err := nc.Request("echo", nil, 2*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	if !strings.HasPrefix(string(m.Data), "_INBOX_tester.") {
		t.Fatalf("reply subject %q, want one under _INBOX_tester.", m.Data)
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
