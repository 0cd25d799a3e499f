package main

import (
	"context"
	"encoding/json"
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
