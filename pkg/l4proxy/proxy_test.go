package l4proxy_test

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"go.uber.org/goleak"

	"github.com/otelfleet/otelfleet/pkg/l4proxy"
	"github.com/otelfleet/otelfleet/pkg/natstest"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

// backend is a line server that answers every line with its name.
type backend struct {
	name string
	ln   net.Listener
	wg   sync.WaitGroup
	mu   sync.Mutex
	cs   []net.Conn
	once sync.Once
}

func listenBackend(t *testing.T, name, addr string) *backend {
	t.Helper()
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		t.Skipf("listen on %s: %v", addr, err)
	}
	b := &backend{name: name, ln: ln}
	b.wg.Add(1)
	go func() {
		defer b.wg.Done()
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			b.mu.Lock()
			b.cs = append(b.cs, c)
			b.mu.Unlock()
			b.wg.Add(1)
			go func() {
				defer b.wg.Done()
				r := bufio.NewReader(c)
				for {
					if _, err := r.ReadString('\n'); err != nil {
						_ = c.Close()
						return
					}
					if _, err := io.WriteString(c, b.name+"\n"); err != nil {
						return
					}
				}
			}()
		}
	}()
	t.Cleanup(b.kill)
	return b
}

func (b *backend) port() string { _, p, _ := net.SplitHostPort(b.ln.Addr().String()); return p }

// kill closes the listener and every connection, as a killed process would.
func (b *backend) kill() {
	b.once.Do(func() {
		_ = b.ln.Close()
		b.mu.Lock()
		for _, c := range b.cs {
			_ = c.Close()
		}
		b.mu.Unlock()
	})
	b.wg.Wait()
}

// dns is a fake resolver whose answer the test changes.
type dns struct {
	mu  sync.Mutex
	ips []string
}

func (d *dns) set(ips ...string) { d.mu.Lock(); d.ips = ips; d.mu.Unlock() }
func (d *dns) lookup(_ context.Context, host string) ([]string, error) {
	d.mu.Lock()
	defer d.mu.Unlock()
	if len(d.ips) == 0 {
		return nil, &net.DNSError{Err: "no such host", Name: host, IsNotFound: true}
	}
	return append([]string(nil), d.ips...), nil
}

// replicas starts one backend per name on 127.0.0.1, 127.0.0.2, ... with one shared port,
// as replicas of a service behind one DNS name (Linux answers the whole of 127/8).
func replicas(t *testing.T, names ...string) ([]*backend, []string) {
	t.Helper()
	bs := []*backend{listenBackend(t, names[0], "127.0.0.1:0")}
	ips := []string{"127.0.0.1"}
	for i, n := range names[1:] {
		ip := "127.0.0." + strconv.Itoa(i+2)
		bs = append(bs, listenBackend(t, n, net.JoinHostPort(ip, bs[0].port())))
		ips = append(ips, ip)
	}
	return bs, ips
}

func start(t *testing.T, d *dns, port string, quarantine time.Duration) *l4proxy.Proxy {
	t.Helper()
	return startWith(t, d, port, quarantine, nil, prometheus.NewRegistry())
}

// startWith is start with mod applied to the config and the metrics in reg.
func startWith(t *testing.T, d *dns, port string, quarantine time.Duration, mod func(*l4proxy.Config), reg prometheus.Registerer) *l4proxy.Proxy {
	t.Helper()
	cfg := l4proxy.DefaultConfig()
	cfg.Forwards = []l4proxy.Forward{{Listen: "127.0.0.1:0", Target: "svc:" + port}}
	cfg.Resolve = 20 * time.Millisecond
	cfg.DialTimeout = 200 * time.Millisecond
	cfg.Quarantine = quarantine
	cfg.Lookup = d.lookup
	if mod != nil {
		mod(&cfg)
	}
	p, err := l4proxy.New(cfg, slog.New(slog.DiscardHandler), reg)
	if err != nil {
		t.Fatal(err)
	}
	if err := p.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(p.Stop)
	return p
}

// ask opens a connection through the proxy and returns the name of the backend that
// answers, or an error.
func ask(addr string) (string, net.Conn, error) {
	c, err := net.DialTimeout("tcp", addr, time.Second)
	if err != nil {
		return "", nil, err
	}
	_ = c.SetDeadline(time.Now().Add(2 * time.Second))
	if _, err := io.WriteString(c, "who\n"); err != nil {
		_ = c.Close()
		return "", nil, err
	}
	line, err := bufio.NewReader(c).ReadString('\n')
	if err != nil {
		_ = c.Close()
		return "", nil, err
	}
	_ = c.SetDeadline(time.Time{})
	return strings.TrimSpace(line), c, nil
}

func TestSpreadsNewConnectionsOverEveryReplica(t *testing.T) {
	bs, ips := replicas(t, "a", "b", "c")
	d := &dns{}
	d.set(ips...)
	p := start(t, d, bs[0].port(), 5*time.Second)
	seen := map[string]int{}
	for range 30 {
		name, c, err := ask(p.Addrs()[0].String())
		if err != nil {
			t.Fatal(err)
		}
		_ = c.Close()
		seen[name]++
	}
	if len(seen) != 3 || seen["a"] != 10 || seen["b"] != 10 || seen["c"] != 10 {
		t.Fatalf("connections per backend %v, want 10 each", seen)
	}
}

func TestReplicaLeavingDNSCutsItsConnections(t *testing.T) {
	bs, ips := replicas(t, "a", "b")
	d := &dns{}
	d.set(ips...)
	p := start(t, d, bs[0].port(), 5*time.Second)
	var onA net.Conn
	for onA == nil {
		name, c, err := ask(p.Addrs()[0].String())
		if err != nil {
			t.Fatal(err)
		}
		if name == "a" {
			onA = c
		} else {
			_ = c.Close()
		}
	}
	defer onA.Close()
	d.set(ips[1]) // a's container is gone from the answer
	_ = onA.SetReadDeadline(time.Now().Add(3 * time.Second))
	if _, err := onA.Read(make([]byte, 1)); err == nil || isTimeout(err) {
		t.Fatalf("connection to the removed replica still open (read: %v)", err)
	}
	for range 5 {
		name, c, err := ask(p.Addrs()[0].String())
		if err != nil {
			t.Fatal(err)
		}
		_ = c.Close()
		if name != "b" {
			t.Fatalf("new connection went to %q after it left DNS", name)
		}
	}
}

func isTimeout(err error) bool {
	var ne net.Error
	return errors.As(err, &ne) && ne.Timeout()
}

func TestDeadReplicaIsSkippedAndBackendDeathEndsTheClient(t *testing.T) {
	bs, ips := replicas(t, "a", "b")
	d := &dns{}
	d.set(ips...) // DNS still lists a after it dies (Docker's answer lags a kill)
	p := start(t, d, bs[0].port(), time.Minute)
	name, c, err := ask(p.Addrs()[0].String())
	if err != nil {
		t.Fatal(err)
	}
	victim := bs[0]
	if name == "b" {
		victim = bs[1]
	}
	victim.kill()
	// the client's connection to the dead replica ends at once
	_ = c.SetReadDeadline(time.Now().Add(3 * time.Second))
	if _, err := c.Read(make([]byte, 1)); err == nil || isTimeout(err) {
		t.Fatalf("client connection outlived its backend (read: %v)", err)
	}
	_ = c.Close()
	// every new connection reaches the live one: one refused dial, then quarantine
	for range 10 {
		got, c, err := ask(p.Addrs()[0].String())
		if err != nil {
			t.Fatal(err)
		}
		_ = c.Close()
		if got == victim.name {
			t.Fatalf("reached the killed replica %q", got)
		}
	}
}

func TestNoAddressRefusesAndRecovers(t *testing.T) {
	bs, ips := replicas(t, "a")
	d := &dns{}
	p := start(t, d, bs[0].port(), time.Second)
	if err := p.Ready(); !errors.Is(err, l4proxy.ErrNoBackend) {
		t.Fatalf("Ready with no address: %v, want ErrNoBackend", err)
	}
	if _, _, err := ask(p.Addrs()[0].String()); err == nil {
		t.Fatal("a connection with no backend was answered")
	}
	d.set(ips...)
	natstest.Eventually(t, 5*time.Second, func() bool { return p.Ready() == nil }, "proxy never saw the replica")
	if name, c, err := ask(p.Addrs()[0].String()); err != nil || name != "a" {
		t.Fatalf("after the replica appeared: %q, %v", name, err)
	} else {
		_ = c.Close()
	}
}

func TestStopEndsForwardedConnections(t *testing.T) {
	bs, ips := replicas(t, "a")
	d := &dns{}
	d.set(ips...)
	p := start(t, d, bs[0].port(), time.Second)
	_, c, err := ask(p.Addrs()[0].String())
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	p.Stop()
	p.Stop() // twice is fine
	_ = c.SetReadDeadline(time.Now().Add(3 * time.Second))
	if _, err := c.Read(make([]byte, 1)); err == nil || isTimeout(err) {
		t.Fatalf("connection survived Stop (read: %v)", err)
	}
}

func TestParseForwards(t *testing.T) {
	for _, tc := range []struct {
		name, in, err string
		n             int
	}{
		{"two", ":4317=router:4317, :4318=router:4318", "", 2},
		{"no equals", ":4317", "want LISTEN=HOST:PORT", 0},
		{"bad listen", "4317=router:4317", "listen address", 0},
		{"no target host", ":4317=:4317", "target must be HOST:PORT", 0},
		{"empty", " , ", "none given", 0},
	} {
		t.Run(tc.name, func(t *testing.T) {
			fs, err := l4proxy.ParseForwards(tc.in)
			if tc.err == "" {
				if err != nil || len(fs) != tc.n {
					t.Fatalf("got %v, %v", fs, err)
				}
				return
			}
			if !errors.Is(err, l4proxy.ErrConfig) || !strings.Contains(err.Error(), tc.err) {
				t.Fatalf("error %v, want ErrConfig containing %q", err, tc.err)
			}
		})
	}
}

func TestValidate(t *testing.T) {
	c := l4proxy.Config{Resolve: time.Millisecond, DialTimeout: 0, Quarantine: -1}
	err := c.Validate()
	for _, f := range []string{"--forward", "--resolve-interval", "--dial-timeout", "--quarantine"} {
		if !strings.Contains(fmt.Sprint(err), f) {
			t.Errorf("Validate: %v, want it to name %s", err, f)
		}
	}
	if !errors.Is(err, l4proxy.ErrConfig) {
		t.Errorf("Validate: %v does not wrap ErrConfig", err)
	}
}

// BenchmarkForward measures bytes through the proxy on loopback: one connection, 64 KiB
// writes to a backend that discards them.
func BenchmarkForward(b *testing.B) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		b.Fatal(err)
	}
	var wg sync.WaitGroup
	wg.Add(1)
	go func() {
		defer wg.Done()
		c, err := ln.Accept()
		if err != nil {
			return
		}
		_, _ = io.Copy(io.Discard, c)
		_ = c.Close()
	}()
	_, port, _ := net.SplitHostPort(ln.Addr().String())
	d := &dns{}
	d.set("127.0.0.1")
	cfg := l4proxy.DefaultConfig()
	cfg.Forwards = []l4proxy.Forward{{Listen: "127.0.0.1:0", Target: "svc:" + port}}
	cfg.Lookup = d.lookup
	p, err := l4proxy.New(cfg, slog.New(slog.DiscardHandler), nil)
	if err != nil {
		b.Fatal(err)
	}
	if err := p.Start(); err != nil {
		b.Fatal(err)
	}
	c, err := net.Dial("tcp", p.Addrs()[0].String())
	if err != nil {
		b.Fatal(err)
	}
	buf := make([]byte, 64<<10)
	b.SetBytes(int64(len(buf)))
	b.ReportAllocs()
	b.ResetTimer()
	for range b.N {
		if _, err := c.Write(buf); err != nil {
			b.Fatal(err)
		}
	}
	b.StopTimer()
	_ = c.Close()
	p.Stop()
	_ = ln.Close()
	wg.Wait()
}
