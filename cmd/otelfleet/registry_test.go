package main

import (
	"context"
	"encoding/json"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/otelfleet/otelfleet/pkg/election"
	"github.com/otelfleet/otelfleet/pkg/events"
	"github.com/otelfleet/otelfleet/pkg/lock"
	"github.com/otelfleet/otelfleet/pkg/natsconn"
	"github.com/otelfleet/otelfleet/pkg/natstest"
	"github.com/otelfleet/otelfleet/pkg/registration"
)

// contractServer starts a NATS server with the contract provisioned (1s TTLs).
func contractServer(t *testing.T) (*natstest.Server, *natsconn.Buckets) {
	t.Helper()
	srv := natstest.Run(t)
	_, js := srv.JetStream(t)
	l := natsconn.DefaultLayout()
	l.RegistryTTL, l.LeaseTTL = time.Second, time.Second
	b, err := natsconn.Provision(context.Background(), js, l)
	if err != nil {
		t.Fatal(err)
	}
	return srv, b
}

// background runs a long-lived command in-process until the returned stop function is
// called, which returns its exit code.
func background(t *testing.T, args ...string) (stdout, stderr *natstest.Buffer, stop func() int, done <-chan struct{}) {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	stdout, stderr = &natstest.Buffer{}, &natstest.Buffer{}
	finished := make(chan struct{})
	var code int
	go func() {
		defer close(finished)
		env := &cliEnv{stdout: stdout, stderr: stderr}
		code = env.main(ctx, args)
	}()
	var once sync.Once
	stop = func() int {
		once.Do(func() { cancel(); <-finished })
		return code
	}
	t.Cleanup(func() { stop() })
	return stdout, stderr, stop, finished
}

func TestRegistryLsJSONAndTable(t *testing.T) {
	t.Parallel()
	srv, b := contractServer(t)
	ctx := context.Background()
	for _, cfg := range []registration.Config{
		{Kind: events.KindCollector, Region: "eu-west-1", ID: "c1", Address: "c1:4317", CapacityQPS: 5000},
		{Kind: events.KindCollector, Region: "us-east-1", ID: "c2", Address: "c2:4317"},
		{Kind: events.KindService, Name: "config", ID: "i1", Region: "eu-west-1", Address: "i1:8080"},
	} {
		c, err := registration.New(b.Registry, cfg, nil)
		if err != nil {
			t.Fatal(err)
		}
		if err := c.Register(ctx); err != nil {
			t.Fatal(err)
		}
		defer c.Deregister(ctx)
	}
	url := srv.URL()

	code, out, stderr := runCLI(t, "--nats", url, "registry", "ls", "-o", "json")
	if code != exitOK {
		t.Fatalf("exit %d: %s", code, stderr)
	}
	var regs []map[string]any
	if err := json.Unmarshal([]byte(out), &regs); err != nil {
		t.Fatalf("output is not a JSON array: %v\n%s", err, out)
	}
	var ids []string
	for _, r := range regs {
		ids = append(ids, r["id"].(string)+"/"+r["kind"].(string))
		if r["v"].(float64) != 1 || r["health"].(map[string]any)["status"] == "" {
			t.Errorf("registration %v lacks v or health", r)
		}
	}
	if got := strings.Join(ids, ","); got != "c1/collector,c2/collector,i1/service" {
		t.Fatalf("ids %s", got)
	}

	code, out, _ = runCLI(t, "--nats", url, "registry", "ls", "--kind", "collector", "--region", "eu-west-1", "-o", "json")
	if err := json.Unmarshal([]byte(out), &regs); code != exitOK || err != nil || len(regs) != 1 || regs[0]["id"] != "c1" || regs[0]["capacity_qps"].(float64) != 5000 {
		t.Fatalf("filtered: exit %d, %s", code, out)
	}

	// A valid registration copied under another key: the services refuse it, so does ls.
	e, err := b.Registry.Get(ctx, "collector.eu-west-1.c1")
	if err != nil {
		t.Fatal(err)
	}
	if _, err := b.Registry.Put(ctx, "collector.eu-west-1.c9", e.Value()); err != nil {
		t.Fatal(err)
	}
	defer b.Registry.Delete(ctx, "collector.eu-west-1.c9")
	code, out, stderr = runCLI(t, "--nats", url, "registry", "ls", "-o", "json")
	if err := json.Unmarshal([]byte(out), &regs); code != exitOK || err != nil || len(regs) != 3 {
		t.Fatalf("with a value under the wrong key: exit %d, %d registrations (want 3)\n%s", code, len(regs), out)
	}
	if !strings.Contains(stderr, "warning: collector.eu-west-1.c9: registration stored under the wrong key: the value describes collector.eu-west-1.c1 (not listed)") {
		t.Fatalf("no warning naming the key: %q", stderr)
	}

	code, out, _ = runCLI(t, "registry", "ls", "--nats", url)
	if code != exitOK || !strings.Contains(out, "KIND") || !strings.Contains(out, "c1:4317") || !strings.Contains(out, "5000/s") {
		t.Fatalf("table: exit %d\n%s", code, out)
	}

	for name, args := range map[string][]string{
		"bad kind":   {"registry", "ls", "--kind", "router"},
		"bad health": {"registry", "ls", "--health", "fine"},
		"bad output": {"registry", "ls", "-o", "xml"},
		"no command": {"registry"},
		"unknown op": {"registry", "rm"},
	} {
		t.Run(name, func(t *testing.T) {
			if code, _, stderr := runCLI(t, append([]string{"--nats", url}, args...)...); code != exitUsage {
				t.Errorf("exit %d, want 2: %s", code, stderr)
			}
		})
	}
}

func TestLeaderLsJSON(t *testing.T) {
	t.Parallel()
	srv, b := contractServer(t)
	nc := srv.Connect(t)
	e, err := election.NewKV(nc, b.Leases, election.Config{Role: "sampler", ID: "s-1"}, nil)
	if err != nil {
		t.Fatal(err)
	}
	terms := make(chan election.Term, 1)
	if err := e.Start(func(tm election.Term) { terms <- tm }); err != nil {
		t.Fatal(err)
	}
	defer e.Stop(context.Background())
	var term election.Term
	select {
	case term = <-terms:
	case <-time.After(5 * time.Second):
		t.Fatal("not elected")
	}
	l, err := lock.NewKV(nc, b.Leases, lock.Config{Name: "migrate", ID: "job-7"}, nil)
	if err != nil {
		t.Fatal(err)
	}
	h, err := l.Acquire(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	defer l.Release(context.Background())

	code, out, stderr := runCLI(t, "--nats", srv.URL(), "leader", "ls", "-o", "json")
	if code != exitOK {
		t.Fatalf("exit %d: %s", code, stderr)
	}
	var rows []leaderRow
	if err := json.Unmarshal([]byte(out), &rows); err != nil {
		t.Fatalf("not JSON: %v\n%s", err, out)
	}
	if len(rows) != 1 || rows[0].Role != "sampler" || rows[0].Holder != "s-1" || rows[0].Token != term.Token || rows[0].Since.IsZero() {
		t.Fatalf("leader ls = %s, want sampler held by s-1 with token %d", out, term.Token)
	}
	if !strings.Contains(out, `"since"`) || !strings.Contains(out, `"token"`) {
		t.Errorf("JSON lacks since or token: %s", out)
	}

	code, out, _ = runCLI(t, "--nats", srv.URL(), "leader", "ls", "--locks", "-o", "json")
	if err := json.Unmarshal([]byte(out), &rows); code != exitOK || err != nil || len(rows) != 2 ||
		rows[1].Role != "migrate" || !rows[1].Lock || rows[1].Holder != "job-7" || rows[1].Token != h.Token() {
		t.Fatalf("leader ls --locks: exit %d\n%s", code, out)
	}
	code, out, _ = runCLI(t, "--nats", srv.URL(), "leader", "ls")
	if code != exitOK || !strings.Contains(out, "ROLE") || !strings.Contains(out, "s-1") {
		t.Fatalf("table: exit %d\n%s", code, out)
	}
}

func TestElectPrintsChangesAndResigns(t *testing.T) {
	t.Parallel()
	srv, _ := contractServer(t)
	url := srv.URL()
	outA, _, stopA, _ := background(t, "--nats", url, "elect", "demo", "--id", "a")
	natstest.Eventually(t, 5*time.Second, func() bool { return strings.Contains(outA.String(), "elected role=demo id=a token=") }, "a not elected: %q", outA.String())
	outB, _, stopB, _ := background(t, "--nats", url, "elect", "demo", "--id", "b")
	natstest.Eventually(t, 5*time.Second, func() bool { return strings.Contains(outB.String(), "leader role=demo id=a token=") }, "b does not report a as leader: %q", outB.String())

	resigned := time.Now()
	if code := stopA(); code != exitOK {
		t.Fatalf("elect a exited %d", code)
	}
	if !strings.Contains(outA.String(), "lost role=demo id=a") || !strings.Contains(outA.String(), "reason=resigned") {
		t.Errorf("a's output lacks the resignation: %q", outA.String())
	}
	natstest.Eventually(t, time.Second, func() bool { return strings.Contains(outB.String(), "elected role=demo id=b") }, "b not elected after a resigned: %q", outB.String())
	t.Logf("handover took %v", time.Since(resigned).Round(time.Millisecond))
	line := outB.String()[strings.Index(outB.String(), "elected"):]
	if !strings.HasPrefix(line, "elected role=demo id=b token=") {
		t.Errorf("line %q", line)
	}
	if _, err := time.Parse(time.RFC3339, strings.Fields(outB.String())[0]); err != nil {
		t.Errorf("lines do not start with an RFC 3339 time: %q", outB.String())
	}
	stopB()

	if code, _, stderr := runCLI(t, "--nats", url, "elect"); code != exitUsage {
		t.Errorf("elect without role: exit %d: %s", code, stderr)
	}
	if code, _, stderr := runCLI(t, "--nats", url, "elect", "a.b"); code != exitUsage {
		t.Errorf("elect with a bad role: exit %d: %s", code, stderr)
	}
}

func TestAgentRegistersAndDeregisters(t *testing.T) {
	t.Parallel()
	srv, b := contractServer(t)
	_, stderr, stop, _ := background(t, "--nats", srv.URL(), "agent", "--region", "eu-west-1", "--id", "a1", "--endpoint", "10.0.0.9:4317", "--capacity-qps", "2500", "--meta", "zone=b")
	var reg events.Registration
	natstest.Eventually(t, 5*time.Second, func() bool {
		e, err := b.Registry.Get(context.Background(), "collector.eu-west-1.a1")
		if err != nil {
			return false
		}
		reg, err = events.DecodeRegistration(e.Value())
		return err == nil
	}, "agent did not register: %s", stderr)
	if reg.Address != "10.0.0.9:4317" || reg.CapacityQPS != 2500 || reg.Metadata["zone"] != "b" {
		t.Errorf("registration %+v", reg)
	}
	if code := stop(); code != exitOK {
		t.Fatalf("agent exited %d: %s", code, stderr)
	}
	if _, err := b.Registry.Get(context.Background(), "collector.eu-west-1.a1"); err != jetstream.ErrKeyNotFound {
		t.Fatalf("after stop: %v, want the key deleted", err)
	}
	for name, args := range map[string][]string{
		"no region":    {"agent", "--id", "a", "--endpoint", "h:1"},
		"no endpoint":  {"agent", "--region", "r", "--id", "a"},
		"bad id":       {"agent", "--region", "r", "--id", "a.b", "--endpoint", "h:1"},
		"bad meta":     {"agent", "--region", "r", "--id", "a", "--endpoint", "h:1", "--meta", "novalue"},
		"extra arg":    {"agent", "--region", "r", "--id", "a", "--endpoint", "h:1", "extra"},
		"negative cap": {"agent", "--region", "r", "--id", "a", "--endpoint", "h:1", "--capacity-qps", "-1"},
	} {
		t.Run(name, func(t *testing.T) {
			if code, _, stderr := runCLI(t, append([]string{"--nats", srv.URL()}, args...)...); code != exitUsage {
				t.Errorf("exit %d, want 2: %s", code, stderr)
			}
		})
	}
}

func TestLockRunsCommandWithItsStatus(t *testing.T) {
	t.Parallel()
	srv, b := contractServer(t)
	url := srv.URL()
	code, out, stderr := runCLI(t, "--nats", url, "lock", "job", "--", "sh", "-c", `echo "token=$OTELFLEET_LOCK_TOKEN name=$OTELFLEET_LOCK_NAME"; exit 3`)
	if code != 3 || !strings.Contains(out, "token=") || !strings.Contains(out, "name=job") {
		t.Fatalf("exit %d (want 3), out %q, stderr %q", code, out, stderr)
	}
	if _, err := b.Leases.Get(context.Background(), "lock.job"); err != jetstream.ErrKeyNotFound {
		t.Fatalf("lock not released: %v", err)
	}
	if code, _, stderr := runCLI(t, "--nats", url, "lock", "job", "--", "true"); code != exitOK {
		t.Fatalf("true under the lock: exit %d: %s", code, stderr)
	}

	// Held by someone else: --wait gives up.
	nc := srv.Connect(t)
	other, err := lock.NewKV(nc, b.Leases, lock.Config{Name: "job", ID: "other"}, nil)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := other.Acquire(context.Background()); err != nil {
		t.Fatal(err)
	}
	code, _, stderr = runCLI(t, "--nats", url, "lock", "--wait", "300ms", "job", "--", "true")
	if code != exitRefused || !strings.Contains(stderr, "not acquired within") {
		t.Fatalf("while held: exit %d, stderr %q", code, stderr)
	}
	// Released meanwhile: a waiting lock command goes ahead at once.
	_, errb, stop, done := background(t, "--nats", url, "lock", "job", "--", "true")
	time.AfterFunc(200*time.Millisecond, func() { _ = other.Release(context.Background()) })
	select {
	case <-done:
	case <-time.After(5 * time.Second):
		t.Fatalf("lock command did not run after the release: %s", errb)
	}
	if code := stop(); code != exitOK {
		t.Fatalf("exit %d: %s", code, errb)
	}

	for name, args := range map[string][]string{
		"no command":       {"lock", "job", "--"},
		"no name":          {"lock", "--", "true"},
		"bad name":         {"lock", "a.b", "--", "true"},
		"unknown command":  {"lock", "job", "--", "no-such-command-xyz"},
		"ttl not bucket's": {"lock", "--ttl", "7s", "job", "--", "true"},
	} {
		t.Run(name, func(t *testing.T) {
			if code, _, stderr := runCLI(t, append([]string{"--nats", url}, args...)...); code != exitUsage {
				t.Errorf("exit %d, want 2: %s", code, stderr)
			}
		})
	}
}

func TestLockLostKillsCommand(t *testing.T) {
	t.Parallel()
	srv, b := contractServer(t)
	_, stderr, stop, done := background(t, "--nats", srv.URL(), "lock", "job", "--", "sleep", "30")
	var rev uint64
	natstest.Eventually(t, 5*time.Second, func() bool {
		e, err := b.Leases.Get(context.Background(), "lock.job")
		if err != nil {
			return false
		}
		rev = e.Revision()
		return true
	}, "lock not taken: %s", stderr)
	// An operator breaks the lock (nats kv del): the holder must stop at once.
	if err := b.Leases.Delete(context.Background(), "lock.job", jetstream.LastRevision(rev)); err != nil {
		t.Logf("revision moved (renewal); deleting unconditionally: %v", err)
		if err := b.Leases.Delete(context.Background(), "lock.job"); err != nil {
			t.Fatal(err)
		}
	}
	select {
	case <-done:
	case <-time.After(3 * time.Second):
		t.Fatal("command still running after the lock was lost")
	}
	if code := stop(); code != exitRefused || !strings.Contains(stderr.String(), "lost while sleep ran") {
		t.Fatalf("exit %d (want 1), stderr %q", code, stderr)
	}
}

func TestCoordinationCommandsNeedNATS(t *testing.T) {
	t.Parallel()
	for name, args := range map[string][]string{
		"registry ls": {"registry", "ls"},
		"leader ls":   {"leader", "ls"},
		"elect":       {"elect", "demo"},
		"agent":       {"agent", "--region", "r", "--id", "a", "--endpoint", "h:1"},
		"lock":        {"lock", "job", "--", "true"},
	} {
		t.Run(name, func(t *testing.T) {
			code, _, stderr := runCLI(t, append([]string{"--nats", "nats://127.0.0.1:1", "--timeout", "300ms"}, args...)...)
			if code != exitUnreachable {
				t.Errorf("exit %d, want 3: %s", code, stderr)
			}
		})
	}
	// A server without the contract's buckets: refused with a hint.
	srv := natstest.Run(t)
	code, _, stderr := runCLI(t, "--nats", srv.URL(), "registry", "ls")
	if code != exitRefused || !strings.Contains(stderr, "otelfleet dev") {
		t.Errorf("missing bucket: exit %d, stderr %q", code, stderr)
	}
}

// TestRegistryShowAndLsOpAMP: an OpAMP collector's registration and agent state, written
// into the buckets as the opamp service writes them, show up in registry show (text and
// JSON) and in the OpAMP columns of registry ls; bad keys, a missing registration and a
// missing or foreign agent state get clear answers.
func TestRegistryShowAndLsOpAMP(t *testing.T) {
	t.Parallel()
	srv := natstest.Run(t)
	_, js := srv.JetStream(t)
	ctx := context.Background()
	b, err := natsconn.Provision(ctx, js, natsconn.DefaultLayout()) // 30s TTL: the values stay while the test reads
	if err != nil {
		t.Fatal(err)
	}
	now := time.Now().UTC().Truncate(time.Second)
	put := func(kv jetstream.KeyValue, key string, p events.Payload) {
		t.Helper()
		data, err := events.Encode(p)
		if err != nil {
			t.Fatal(err)
		}
		if _, err := kv.Put(ctx, key, data); err != nil {
			t.Fatal(err)
		}
	}
	const uid = "0192aa11bb22cc33dd44ee55ff667788"
	reg := func(id, uid string) events.Registration {
		return events.Registration{V: events.RegistrationVersion, ID: id, InstanceKind: events.KindCollector, Region: "eu-west-1",
			Address: "10.0.0.7:4317", Version: "0.149.0", RegisteredAt: now, UpdatedAt: now,
			Health: events.Health{Status: events.HealthDegraded, Checks: []events.CheckResult{{Name: "exporter/otlp", Status: events.HealthUnhealthy, Message: "connection refused"}}},
			Metadata: map[string]string{"managed_by": "opamp", "opamp_uid": uid, "opamp_config_hash": "abc123",
				"opamp_remote_config_status": events.RemoteConfigFailed, "opamp_config_group": "edge", "opamp_config_version": "3"}}
	}
	put(b.Registry, "collector.eu-west-1.c1", reg("c1", uid))
	put(b.Registry, "collector.eu-west-1.c2", reg("c2", "0192aa11bb22cc33dd44ee55ff660000")) // its agent state is gone
	put(b.Registry, "collector.eu-west-1.c3", reg("c3", "0192aa11bb22cc33dd44ee55ff661111")) // agent key holds another agent
	plain, err := registration.New(b.Registry, registration.Config{Kind: events.KindCollector, Region: "us-east-1", ID: "plain", Address: "p:4317"}, nil)
	if err != nil {
		t.Fatal(err)
	}
	if err := plain.Register(ctx); err != nil {
		t.Fatal(err)
	}
	defer plain.Deregister(ctx)
	agent := events.AgentState{V: events.AgentStateVersion, UID: uid, ID: "c1", Region: "eu-west-1", Replica: "opamp-1", Transport: "websocket",
		Identifying: map[string]string{"service.name": "otelcol"}, NonIdentifying: map[string]string{"cloud.region": "eu-west-1", "host.name": "node-7"},
		Version: "0.149.0", Capabilities: []string{"ReportsStatus", "AcceptsRemoteConfig"}, Components: []string{"exporter/debug", "receiver/otlp"},
		EffectiveConfigHash: "abc123", Health: events.AgentHealth{Healthy: false, Status: "StatusRecoverableError", LastError: "exporter down"},
		RemoteConfig: events.RemoteConfigStatus{Group: "edge", Version: 3, Hash: "def456", Status: events.RemoteConfigFailed, Error: "exporter/kafka: unknown type"},
		ConnectedAt:  now, UpdatedAt: now}
	put(b.Agents, "agent."+uid, agent)
	other := agent
	put(b.Agents, "agent.0192aa11bb22cc33dd44ee55ff661111", other) // the state of uid, under another agent's key
	url := srv.URL()

	code, out, stderr := runCLI(t, "--nats", url, "registry", "show", "collector.eu-west-1.c1", "-o", "json")
	if code != exitOK {
		t.Fatalf("show -o json: exit %d: %s", code, stderr)
	}
	var rep registryShowReply
	if err := json.Unmarshal([]byte(out), &rep); err != nil {
		t.Fatalf("show -o json is not a reply: %v\n%s", err, out)
	}
	if rep.Key != "collector.eu-west-1.c1" || rep.Registration.ID != "c1" || rep.Agent == nil {
		t.Fatalf("show -o json: %+v", rep)
	}
	if a := rep.Agent; a.UID != uid || a.Version != "0.149.0" || len(a.Components) != 2 || a.EffectiveConfigHash != "abc123" ||
		a.RemoteConfig.Version != 3 || a.RemoteConfig.Status != events.RemoteConfigFailed || a.RemoteConfig.Error == "" || a.NonIdentifying["host.name"] != "node-7" {
		t.Errorf("show -o json agent: %+v", a)
	}

	code, out, stderr = runCLI(t, "--nats", url, "registry", "show", "collector.eu-west-1.c1")
	if code != exitOK {
		t.Fatalf("show: exit %d: %s", code, stderr)
	}
	for _, want := range []string{"address:", "10.0.0.7:4317", "check exporter/otlp: unhealthy connection refused", "opamp_uid=" + uid,
		"host.name=node-7", "service.name=otelcol", "ReportsStatus, AcceptsRemoteConfig", "exporter/debug, receiver/otlp",
		"effective config: abc123", "unhealthy (StatusRecoverableError): exporter down",
		"remote config: FAILED, edge/v3, hash def456", "remote config error: exporter/kafka: unknown type"} {
		if !strings.Contains(strings.Join(strings.Fields(out), " "), want) {
			t.Errorf("show: no %q in\n%s", want, out)
		}
	}

	// A registration whose agent state is gone, or whose agent key holds another agent:
	// the registration with a warning naming the key.
	for key, warn := range map[string]string{
		"collector.eu-west-1.c2": "read agent.0192aa11bb22cc33dd44ee55ff660000: ",
		"collector.eu-west-1.c3": "agent.0192aa11bb22cc33dd44ee55ff661111 holds the state of agent " + uid,
	} {
		code, out, stderr = runCLI(t, "--nats", url, "registry", "show", key, "-o", "json")
		if err := json.Unmarshal([]byte(out), &rep); code != exitOK || err != nil || rep.Agent != nil || !strings.Contains(stderr, warn) {
			t.Errorf("show %s: exit %d, agent %v, stderr %q; want exit 0, no agent, a warning with %q", key, code, rep.Agent, stderr, warn)
		}
	}

	code, out, stderr = runCLI(t, "--nats", url, "registry", "ls")
	if code != exitOK {
		t.Fatalf("ls: exit %d: %s", code, stderr)
	}
	for _, want := range []string{"MANAGED BY", "REMOTE CONFIG"} {
		if !strings.Contains(out, want) {
			t.Errorf("ls: no column %q\n%s", want, out)
		}
	}
	for _, line := range strings.Split(out, "\n") {
		f := strings.Fields(line)
		switch {
		case strings.Contains(line, " c1 "):
			if !slices.Contains(f, "opamp") || !slices.Contains(f, "edge/v3") || !slices.Contains(f, "FAILED") {
				t.Errorf("ls: c1's line lacks opamp, edge/v3, FAILED: %q", line)
			}
		case strings.Contains(line, " plain "):
			if slices.Contains(f, "opamp") {
				t.Errorf("ls: a collector not managed over OpAMP says opamp: %q", line)
			}
		}
	}
	code, out, _ = runCLI(t, "--nats", url, "registry", "ls", "-o", "json")
	var regs []events.Registration
	if err := json.Unmarshal([]byte(out), &regs); code != exitOK || err != nil || len(regs) != 4 {
		t.Fatalf("ls -o json: exit %d, %d registrations: %v\n%s", code, len(regs), err, out)
	}
	if regs[0].ID != "c1" || regs[0].Metadata["opamp_remote_config_status"] != events.RemoteConfigFailed {
		t.Errorf("ls -o json: first %+v, want c1 with its OpAMP metadata", regs[0])
	}

	for name, tc := range map[string]struct {
		args []string
		code int
		msg  string
	}{
		"missing":      {[]string{"registry", "show", "collector.eu-west-1.nope"}, exitRefused, "no live registration collector.eu-west-1.nope"},
		"no key":       {[]string{"registry", "show"}, exitUsage, "want one KEY"},
		"two keys":     {[]string{"registry", "show", "collector.a.b", "collector.a.c"}, exitUsage, "want one KEY"},
		"bad kind":     {[]string{"registry", "show", "router.a.b"}, exitUsage, `KEY "router.a.b"`},
		"invalid key":  {[]string{"registry", "show", "collector.a b.c"}, exitUsage, "not a valid key"},
		"bad output":   {[]string{"registry", "show", "collector.eu-west-1.c1", "-o", "xml"}, exitUsage, ""},
		"wildcard key": {[]string{"registry", "show", "collector.>"}, exitUsage, "not a valid key"},
	} {
		t.Run(name, func(t *testing.T) {
			code, _, stderr := runCLI(t, append([]string{"--nats", url}, tc.args...)...)
			if code != tc.code || !strings.Contains(stderr, tc.msg) {
				t.Errorf("exit %d, stderr %q; want %d and %q", code, stderr, tc.code, tc.msg)
			}
		})
	}
}
