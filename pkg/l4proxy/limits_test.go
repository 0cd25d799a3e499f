package l4proxy_test

import (
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"

	"github.com/otelfleet/otelfleet/pkg/l4proxy"
	"github.com/otelfleet/otelfleet/pkg/natstest"
	"github.com/otelfleet/otelfleet/pkg/promreg"
)

// TestConnectionsBounded: over --max-connections a new client connection is closed at
// once and counted; a connection that ends frees its place.
func TestConnectionsBounded(t *testing.T) {
	bs, ips := replicas(t, "a")
	d := &dns{}
	d.set(ips...)
	reg := prometheus.NewRegistry()
	p := startWith(t, d, bs[0].port(), 5*time.Second, func(c *l4proxy.Config) { c.MaxConnections = 2 }, reg)
	addr := p.Addrs()[0].String()
	_, c1, err := ask(addr)
	if err != nil {
		t.Fatal(err)
	}
	_, c2, err := ask(addr)
	if err != nil {
		t.Fatal(err)
	}
	defer c2.Close()
	if _, c3, err := ask(addr); err == nil {
		_ = c3.Close()
		t.Fatal("a third connection was forwarded over --max-connections 2")
	}
	if n := refusedCount(t, reg); n != 1 {
		t.Fatalf("refused connections counted %v, want 1", n)
	}
	_ = c1.Close()
	natstest.Eventually(t, 5*time.Second, func() bool {
		_, c, err := ask(addr)
		if err == nil {
			_ = c.Close()
		}
		return err == nil
	}, "a connection forwarded once one closed")
}

// TestConnectionSeriesDoNotGrowWithReplicas: connections to three replicas (three
// addresses) make one series of otelfleet_proxy_connections_total, labelled with the
// target, not one per backend address.
func TestConnectionSeriesDoNotGrowWithReplicas(t *testing.T) {
	bs, ips := replicas(t, "a", "b", "c")
	d := &dns{}
	d.set(ips...)
	reg := prometheus.NewRegistry()
	p := startWith(t, d, bs[0].port(), 5*time.Second, nil, reg)
	seen := map[string]bool{}
	for range 6 {
		name, c, err := ask(p.Addrs()[0].String())
		if err != nil {
			t.Fatal(err)
		}
		_ = c.Close()
		seen[name] = true
	}
	if len(seen) != 3 {
		t.Fatalf("reached %v, want all three replicas", seen)
	}
	if n, err := testutil.GatherAndCount(reg, "otelfleet_proxy_connections_total"); err != nil || n != 1 {
		t.Fatalf("%d series of otelfleet_proxy_connections_total (%v), want 1", n, err)
	}
}

// refusedCount is otelfleet_proxy_refused_total{reason="too_many_connections"} summed
// over listen addresses.
func refusedCount(t *testing.T, reg *prometheus.Registry) float64 {
	t.Helper()
	v, err := promreg.Sum(reg, "otelfleet_proxy_refused_total", map[string]string{"reason": "too_many_connections"})
	if err != nil {
		t.Fatal(err)
	}
	return v
}
