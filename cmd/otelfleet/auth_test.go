package main

import (
	"context"
	"errors"
	"net/http"
	"os"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/otelfleet/otelfleet/pkg/events"
	"github.com/otelfleet/otelfleet/pkg/natsconn"
	"github.com/otelfleet/otelfleet/pkg/natstest"
	"github.com/otelfleet/otelfleet/pkg/testcerts"
)

const (
	authConfig = "../../deploy/nats/nats.conf"
	authEnv    = "../../deploy/nats/dev.env"
)

// identity is a client connected as one user of deploy/nats/auth.conf that records the
// server's permission violations.
type identity struct {
	name       string
	nc         *nats.Conn
	js         jetstream.JetStream
	violations chan error
}

func connectAs(t *testing.T, url, user string) *identity {
	t.Helper()
	id := &identity{name: user, violations: make(chan error, 64)}
	nc, err := nats.Connect(url, nats.UserInfo(user, envOf(t, passwordVar(user))), nats.CustomInboxPrefix("_INBOX_"+user),
		nats.ErrorHandler(func(_ *nats.Conn, _ *nats.Subscription, err error) {
			if errors.Is(err, nats.ErrPermissionViolation) {
				select {
				case id.violations <- err:
				default:
				}
			}
		}))
	if err != nil {
		t.Fatalf("connect as %s: %v", user, err)
	}
	t.Cleanup(nc.Close)
	id.nc = nc
	if id.js, err = jetstream.New(nc); err != nil {
		t.Fatal(err)
	}
	return id
}

func envOf(t *testing.T, key string) string {
	t.Helper()
	v, ok := natsEnv[key]
	if !ok {
		t.Fatalf("%s not in %s", key, authEnv)
	}
	return v
}

var natsEnv map[string]string

// refused runs op, which must publish to subject, and checks that the server refuses it
// with a permission violation naming the subject and that op, if it waits for an answer
// (a request, a KV operation), fails.
func (id *identity) refused(t *testing.T, what, subject string, op func(ctx context.Context) error) {
	t.Helper()
	id.check(t, what, subject, true, op)
}

// refusedPublish is refused for a core publish, which returns before the server answers.
func (id *identity) refusedPublish(t *testing.T, what, subject string) {
	t.Helper()
	id.check(t, what, subject, false, func(context.Context) error {
		if err := id.nc.Publish(subject, []byte(`{}`)); err != nil {
			return err
		}
		return id.nc.Flush()
	})
}

func (id *identity) check(t *testing.T, what, subject string, waits bool, op func(ctx context.Context) error) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	done := make(chan error, 1)
	go func() { done <- op(ctx) }()
	want := `"` + subject + `"`
	for {
		select {
		case v := <-id.violations:
			if !strings.Contains(v.Error(), want) {
				continue
			}
			cancel()
			if err := <-done; err == nil && waits {
				t.Errorf("%s: %s succeeded although the server refused %s", id.name, what, subject)
			}
			return
		case err := <-done:
			// A core publish returns before the server answers; a request gave up first.
			// Either way the violation must arrive.
			timeout := time.After(5 * time.Second)
			for {
				select {
				case v := <-id.violations:
					if strings.Contains(v.Error(), want) {
						return
					}
				case <-timeout:
					t.Errorf("%s: %s ended with %v and no permission violation on %s", id.name, what, err, subject)
					return
				}
			}
		}
	}
}

func (id *identity) kv(t *testing.T, bucket string) jetstream.KeyValue {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	kv, err := id.js.KeyValue(ctx, bucket)
	if err != nil {
		t.Fatalf("%s: open %s: %v", id.name, bucket, err)
	}
	return kv
}

// TestDevAuthLeastPrivilege runs `otelfleet dev --auth` (every service, the router, three
// sinks and the simulator, each connecting with its own identity of the shipped
// deploy/nats config) and checks that the stack works under its permissions, then that
// every identity is refused what it must not do.
func TestDevAuthLeastPrivilege(t *testing.T) {
	if testing.Short() {
		t.Skip("starts the whole dev stack")
	}
	natsEnv = natstest.EnvFile(t, authEnv)
	port := freePort(t)
	url := "nats://127.0.0.1:" + strconv.Itoa(port)
	stop, logs := startDevLogged(t, t.TempDir(), port, []string{"--nats-user", "admin", "--nats-password", envOf(t, "OTELFLEET_PASSWORD_ADMIN")},
		"--auth", "--auth-config", authConfig, "--auth-env", authEnv, "--sinks", "3")

	// admin writes the config through the config service (which writes the bucket).
	if code, out, stderr := runCLI(t, "--nats", url, "--nats-user", "admin", "--nats-password", envOf(t, "OTELFLEET_PASSWORD_ADMIN"),
		"config", "set", "-f", examplePath(t), "--by", "tester"); code != exitOK {
		t.Fatalf("admin config set: exit %d, %s %s", code, out, stderr)
	}
	// admin validates a collector config: the config service checks it against the
	// OpAMP agents it reads from otlp_agents, within its rights.
	collectorFile := filepath.Join(t.TempDir(), "collector.yaml")
	if err := os.WriteFile(collectorFile, []byte(cliCollectorYAML), 0o644); err != nil {
		t.Fatal(err)
	}
	if code, out, stderr := runCLI(t, "--nats", url, "--nats-user", "admin", "--nats-password", envOf(t, "OTELFLEET_PASSWORD_ADMIN"),
		"collectors", "config", "validate", "-f", collectorFile, "--group", "edge", "-o", "json"); code != exitOK || !strings.Contains(out, `"agents": []`) {
		// "agents": null with a note naming the request's error is a service that could not
		// read the agents bucket.
		t.Fatalf("admin collectors config validate: exit %d, %s %s", code, out, stderr)
	}
	// viewer may read the config but not write it.
	if code, out, stderr := runCLI(t, "--nats", url, "--nats-user", "viewer", "--nats-password", envOf(t, "OTELFLEET_PASSWORD_VIEWER"), "config", "get"); code != exitOK {
		t.Fatalf("viewer config get: exit %d, %s %s", code, out, stderr)
	}
	if code, _, _ := runCLI(t, "--nats", url, "--timeout", "1s", "--nats-user", "viewer", "--nats-password", envOf(t, "OTELFLEET_PASSWORD_VIEWER"),
		"config", "set", "-f", examplePath(t), "--by", "viewer"); code == exitOK {
		t.Fatal("viewer config set succeeded")
	}

	viewer := connectAs(t, url, "viewer")
	ctx := context.Background()
	b, err := natsconn.OpenBuckets(ctx, viewer.js, events.Default)
	if err != nil {
		t.Fatalf("viewer opens the buckets: %v", err)
	}
	has := func(kv jetstream.KeyValue, prefix string) bool {
		keys, err := kv.Keys(ctx)
		if err != nil {
			return false
		}
		for _, k := range keys {
			if strings.HasPrefix(k, prefix) {
				return true
			}
		}
		return false
	}
	for _, want := range []string{"collector.local.sink-1", "collector.local.sink-3", "collector.us-east-1.", "service.router.", "service.sampler.", "service.topology.", "service.registry.", "service.config."} {
		natstest.Eventually(t, 30*time.Second, func() bool { return has(b.Registry, want) }, "registration %s under its identity", want)
	}
	for _, role := range []string{"sampler", "topology"} {
		natstest.Eventually(t, 30*time.Second, func() bool { return has(b.Leases, role) }, "%s leads under its identity", role)
	}
	natstest.Eventually(t, 30*time.Second, func() bool { return has(b.Sampling, events.DecisionKey) }, "the sampler writes a decision")

	// Every service's events and every reporter's load reach their streams.
	subjects := func(stream string) map[string]uint64 {
		st, err := viewer.js.Stream(ctx, stream)
		if err != nil {
			return nil
		}
		info, err := st.Info(ctx, jetstream.WithSubjectFilter(">"))
		if err != nil {
			return nil
		}
		return info.State.Subjects
	}
	ns := events.Default
	for _, typ := range []events.EventType{events.EventConfigChanged, events.EventLeaderElected, events.EventRegistryRegistered, events.EventTopologySnapshot, events.EventSamplingDecision} {
		natstest.Eventually(t, 30*time.Second, func() bool { return subjects(ns.EventsStream())[ns.EventSubject(typ)] > 0 }, "event %s", typ)
	}
	for _, subj := range []string{"otlp.load.local.sink-1", "otlp.load.local.sink-3", "otlp.load.us-east-1.sim-us-east-1-1"} {
		natstest.Eventually(t, 30*time.Second, func() bool { return subjects(ns.LoadStream())[subj] > 0 }, "load on %s", subj)
	}
	natstest.Eventually(t, 30*time.Second, func() bool {
		code, _, _ := runCLI(t, "--nats", url, "--timeout", "2s", "--nats-user", "viewer", "--nats-password", envOf(t, "OTELFLEET_PASSWORD_VIEWER"), "router", "status")
		return code == exitOK
	}, "viewer asks the router's micro service")

	cfgKey := "$KV." + ns.ConfigBucket() + ".global"
	decisionKey := "$KV." + ns.SamplingBucket() + "." + events.DecisionKey
	put := func(kv jetstream.KeyValue, key string) func(context.Context) error {
		return func(ctx context.Context) error { _, err := kv.Put(ctx, key, []byte(`{}`)); return err }
	}
	del := func(kv jetstream.KeyValue, key string) func(context.Context) error {
		return func(ctx context.Context) error { return kv.Delete(ctx, key) }
	}
	for _, user := range []string{"agent", "sink-1", "router", "viewer", "simulate", "admin", "registry", "topology", "sampler"} {
		id := connectAs(t, url, user)
		id.refused(t, "write the config", cfgKey, put(id.kv(t, ns.ConfigBucket()), "global"))
		if user != "sampler" {
			id.refused(t, "forge a decision", decisionKey, put(id.kv(t, ns.SamplingBucket()), events.DecisionKey))
		}
		role := "sampler"
		if user == "sampler" {
			role = "topology"
		}
		leases := id.kv(t, ns.LeasesBucket())
		id.refused(t, "take another role's lease", "$KV."+ns.LeasesBucket()+"."+role, func(ctx context.Context) error { _, err := leases.Create(ctx, role, []byte(`{}`)); return err })
		id.refused(t, "delete another collector's registration", "$KV."+ns.RegistryBucket()+".collector.local.sink-2", del(id.kv(t, ns.RegistryBucket()), "collector.local.sink-2"))
		id.refused(t, "create a stream", "$JS.API.STREAM.CREATE.EVIL", func(ctx context.Context) error {
			_, err := id.js.CreateStream(ctx, jetstream.StreamConfig{Name: "EVIL", Subjects: []string{"evil.>"}})
			return err
		})
	}
	agent := connectAs(t, url, "agent")
	reg := agent.kv(t, ns.RegistryBucket())
	agent.refused(t, "register as another collector", "$KV."+ns.RegistryBucket()+".collector.local.sink-1", put(reg, "collector.local.sink-1"))
	agent.refusedPublish(t, "publish another collector's load", "otlp.load.local.sink-1")
	agent.refusedPublish(t, "forge an event", ns.EventSubject(events.EventConfigChanged))
	agent.refused(t, "call config put", ns.Endpoint(events.ServiceConfig, "put"), func(ctx context.Context) error {
		_, err := agent.nc.RequestWithContext(ctx, ns.Endpoint(events.ServiceConfig, "put"), []byte(`{}`))
		return err
	})
	// What an agent may do: run `otelfleet agent` for its own collector, which registers
	// and heart-beats.
	agentCtx, stopAgent := context.WithCancel(context.Background())
	agentDone := make(chan int, 1)
	go func() {
		var out natstest.Buffer
		env := &cliEnv{stdout: &out, stderr: &out}
		agentDone <- env.main(agentCtx, []string{"agent", "--nats", url, "--nats-user", "agent", "--nats-password", envOf(t, "OTELFLEET_PASSWORD_AGENT"),
			"--region", "local", "--id", "agent-1", "--endpoint", "127.0.0.1:4317"})
	}()
	natstest.Eventually(t, 20*time.Second, func() bool {
		e, err := b.Registry.Get(ctx, "collector.local.agent-1")
		return err == nil && len(e.Value()) > 0
	}, "otelfleet agent registers under the agent identity")
	stopAgent()
	if code := <-agentDone; code != exitOK {
		t.Errorf("otelfleet agent exited %d", code)
	}
	// It may delete its own key (Deregister did, unless it stopped before its first put
	// was acknowledged; then the key would expire after the TTL).
	if err := reg.Delete(ctx, "collector.local.agent-1"); err != nil {
		t.Errorf("agent deletes its own registration key: %v", err)
	}
	natstest.Eventually(t, 10*time.Second, func() bool { return !has(b.Registry, "collector.local.agent-1") }, "the agent's key is gone")

	// The read commands work as viewer; admin runs a command under a lock.
	asViewer := []string{"--nats", url, "--nats-user", "viewer", "--nats-password", envOf(t, "OTELFLEET_PASSWORD_VIEWER")}
	for _, cmd := range [][]string{{"registry", "ls"}, {"topology"}, {"sampling"}, {"leader", "ls", "--locks"}, {"route", "0102030405060708090a0b0c0d0e0f10"}, {"config", "history"}} {
		if code, out, stderr := runCLI(t, append(append([]string{}, asViewer...), cmd...)...); code != exitOK {
			t.Errorf("viewer %v: exit %d, %s %s", cmd, code, out, stderr)
		}
	}
	if code, out, stderr := runCLI(t, "--nats", url, "--nats-user", "admin", "--nats-password", envOf(t, "OTELFLEET_PASSWORD_ADMIN"), "lock", "nightly", "--", "true"); code != exitOK {
		t.Errorf("admin lock: exit %d, %s %s", code, out, stderr)
	}
	sim := connectAs(t, url, "simulate")
	sim.refused(t, "register a real region's collector", "$KV."+ns.RegistryBucket()+".collector.local.sink-1", put(sim.kv(t, ns.RegistryBucket()), "collector.local.sink-1"))

	// Each identity's admin server is where dev says, and serves.
	for _, id := range devAdminOrder {
		re := regexp.MustCompile(regexp.QuoteMeta(id) + `'s admin server on (http://\S+)`)
		var m []string
		natstest.Eventually(t, 20*time.Second, func() bool { m = re.FindStringSubmatch(logs()); return m != nil }, "dev does not list %s's admin server", id)
		resp, err := http.Get(m[1] + "/healthz")
		if err != nil {
			t.Fatalf("%s's admin server %s: %v", id, m[1], err)
		}
		resp.Body.Close()
		if resp.StatusCode != http.StatusOK {
			t.Errorf("%s's admin server %s: /healthz %s", id, m[1], resp.Status)
		}
	}

	// Replies: each identity reads only its own inbox.
	router := connectAs(t, url, "router")
	for _, inbox := range []string{"_INBOX_config.>", "_INBOX_admin.*", "_INBOX.>", ">"} {
		router.refusedSubscribe(t, "read another identity's replies", inbox)
	}
	// A collector makes no watch, so it may not delete anyone's consumers.
	sink := connectAs(t, url, "sink-1")
	sink.refused(t, "delete a watch's consumer", "$JS.API.CONSUMER.DELETE.KV_"+ns.ConfigBucket()+".somebodys", func(ctx context.Context) error {
		return sink.js.DeleteConsumer(ctx, "KV_"+ns.ConfigBucket(), "somebodys")
	})

	if code := stop(); code != exitOK {
		t.Errorf("dev --auth exited %d", code)
	}
	// Every service came up, watched, consumed and stopped (deleting its consumers)
	// within its rights.
	if l := logs(); strings.Contains(strings.ToLower(l), "permissions violation") {
		t.Errorf("dev --auth logged a permission violation:\n%s", l)
	}
}

// refusedSubscribe checks that the server refuses a subscription to subject (reported
// asynchronously) and that nothing published there arrives.
func (id *identity) refusedSubscribe(t *testing.T, what, subject string) {
	t.Helper()
	id.check(t, what, subject, false, func(context.Context) error {
		sub, err := id.nc.SubscribeSync(subject)
		if err != nil {
			return err
		}
		t.Cleanup(func() { _ = sub.Unsubscribe() })
		return id.nc.Flush()
	})
}

// TestShippedTLSConfig: deploy/nats/nats-tls.conf with throw-away certificates requires
// TLS and a client certificate on top of the identity; a service's connection options
// (tls:// URL, NATS_CA, NATS_CERT, NATS_KEY, user and password) get through and the
// identity's permissions still apply.
func TestShippedTLSConfig(t *testing.T) {
	set, err := testcerts.WriteSet(t.TempDir(), time.Hour, "config", "127.0.0.1")
	if err != nil {
		t.Fatal(err)
	}
	natsEnv = natstest.EnvFile(t, authEnv)
	t.Setenv("NATS_TLS_CERT", set.ServerCertFile)
	t.Setenv("NATS_TLS_KEY", set.ServerKeyFile)
	t.Setenv("NATS_TLS_CA", set.CAFile)
	srv := natstest.Run(t, natstest.ConfigFile(t, "../../deploy/nats/nats-tls.conf"))
	if !strings.HasPrefix(srv.URL(), "tls://") {
		t.Fatalf("URL %s: want tls://", srv.URL())
	}
	o := natsconn.Options{URL: srv.URL(), User: "config", Password: envOf(t, "OTELFLEET_PASSWORD_CONFIG"), CAFile: set.CAFile}
	if nc, err := natsconn.Dial(o, 5*time.Second); err == nil {
		nc.Close()
		t.Fatal("connected without a client certificate")
	}
	o.CertFile, o.KeyFile = set.ClientCertFile, set.ClientKeyFile
	nc, err := natsconn.Dial(o, 5*time.Second)
	if err != nil {
		t.Fatalf("config over mutual TLS: %v", err)
	}
	defer nc.Close()
	js, err := jetstream.New(nc)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	b, err := natsconn.Provision(ctx, js, natsconn.DefaultLayout())
	if err != nil {
		t.Fatalf("config provisions over TLS: %v", err)
	}
	if _, err := b.Config.Put(ctx, "global", []byte(`{}`)); err != nil {
		t.Errorf("config writes the config bucket over TLS: %v", err)
	}
	o.User, o.Password = "viewer", envOf(t, "OTELFLEET_PASSWORD_VIEWER")
	vc, err := natsconn.Dial(o, 5*time.Second)
	if err != nil {
		t.Fatalf("viewer over mutual TLS: %v", err)
	}
	vc.Close()
}

// TestProvisionWithoutCreateRights: on the shipped config a service identity cannot
// create the contract's streams (the server refuses), the config identity can, and
// afterwards the service binds to them with the default layout and with UseExisting.
func TestProvisionWithoutCreateRights(t *testing.T) {
	natsEnv = natstest.EnvFile(t, authEnv)
	srv := natstest.Run(t, natstest.ConfigFile(t, authConfig))
	sampler := connectAs(t, srv.URL(), "sampler")
	// CreateOrUpdateStream tries the update first.
	sampler.refused(t, "provision", "$JS.API.STREAM.UPDATE."+events.Default.LoadStream(), func(ctx context.Context) error {
		_, err := natsconn.Provision(ctx, sampler.js, natsconn.DefaultLayout())
		return err
	})
	config := connectAs(t, srv.URL(), "config")
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if _, err := natsconn.Provision(ctx, config.js, natsconn.DefaultLayout()); err != nil {
		t.Fatalf("config provisions: %v", err)
	}
	for _, l := range []natsconn.Layout{natsconn.DefaultLayout(), {Namespace: events.Default, RegistryTTL: time.Second, LeaseTTL: time.Second, Replicas: 1, UseExisting: true}} {
		b, err := natsconn.Provision(ctx, sampler.js, l)
		if err != nil {
			t.Fatalf("sampler binds (UseExisting %v): %v", l.UseExisting, err)
		}
		if l.UseExisting && len(b.Differences) == 0 {
			t.Error("UseExisting: the sampler's other TTLs are not reported as differences")
		}
	}
	select {
	case v := <-sampler.violations:
		t.Errorf("binding to existing streams was refused: %v", v)
	default:
	}
}
