package promreg

import (
	"testing"

	"github.com/prometheus/client_golang/prometheus"
)

func TestSharedReusesTheRegisteredCollector(t *testing.T) {
	reg := prometheus.NewRegistry()
	opts := prometheus.CounterOpts{Name: "otelfleet_test_total", Help: "test"}
	a, err := Shared(reg, prometheus.NewCounter(opts))
	if err != nil {
		t.Fatal(err)
	}
	b, err := Shared(reg, prometheus.NewCounter(opts))
	if err != nil {
		t.Fatal(err)
	}
	a.Inc()
	b.Inc()
	if a != b {
		t.Fatal("the second registration got its own counter; series would be split")
	}
	if got := testCount(t, reg); got != 2 {
		t.Errorf("registered counter = %v, want 2", got)
	}
}

func TestSharedNilRegistryAndConflicts(t *testing.T) {
	c := prometheus.NewCounter(prometheus.CounterOpts{Name: "otelfleet_x_total", Help: "x"})
	if got, err := Shared(nil, c); err != nil || got != c {
		t.Errorf("nil registry: %v, %v", got, err)
	}
	reg := prometheus.NewRegistry()
	r := &Registrar{Reg: reg}
	Add(r, prometheus.NewCounter(prometheus.CounterOpts{Name: "otelfleet_y", Help: "y"}))
	// Same name, other type: a real conflict, reported.
	Add(r, prometheus.NewGauge(prometheus.GaugeOpts{Name: "otelfleet_y", Help: "y"}))
	if r.Err() == nil {
		t.Error("a conflicting registration was not reported")
	}
}

func testCount(t *testing.T, reg *prometheus.Registry) float64 {
	t.Helper()
	mfs, err := reg.Gather()
	if err != nil || len(mfs) != 1 {
		t.Fatalf("gather: %v, %d families", err, len(mfs))
	}
	return mfs[0].GetMetric()[0].GetCounter().GetValue()
}

func TestSumAddsTheMatchingSeries(t *testing.T) {
	reg := prometheus.NewRegistry()
	c := prometheus.NewCounterVec(prometheus.CounterOpts{Name: "otelfleet_sum_total", Help: "test"}, []string{"a", "b"})
	reg.MustRegister(c)
	c.WithLabelValues("x", "1").Add(2)
	c.WithLabelValues("x", "2").Add(3)
	c.WithLabelValues("y", "1").Add(5)
	for _, tt := range []struct {
		labels map[string]string
		want   float64
	}{
		{nil, 10},
		{map[string]string{"a": "x"}, 5},
		{map[string]string{"a": "x", "b": "2"}, 3},
		{map[string]string{"a": "z"}, 0},
	} {
		if got, err := Sum(reg, "otelfleet_sum_total", tt.labels); err != nil || got != tt.want {
			t.Errorf("Sum(%v) = %v, %v; want %v", tt.labels, got, err, tt.want)
		}
	}
}
