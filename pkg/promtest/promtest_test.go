package promtest

import (
	"testing"

	"github.com/prometheus/client_golang/prometheus"
)

func TestValues(t *testing.T) {
	reg := prometheus.NewRegistry()
	g := prometheus.NewGaugeVec(prometheus.GaugeOpts{Name: "g", Help: "h"}, []string{"k"})
	c := prometheus.NewCounter(prometheus.CounterOpts{Name: "c_total", Help: "h"})
	reg.MustRegister(g, c)
	g.WithLabelValues("a").Set(2)
	g.WithLabelValues("b").Set(3)
	c.Add(4)
	if got := Values(t, reg, "g", "k"); len(got) != 2 || got["a"] != 2 || got["b"] != 3 {
		t.Errorf("g by k = %v; want a:2 b:3", got)
	}
	if got := Values(t, reg, "c_total", "k"); len(got) != 1 || got[""] != 4 {
		t.Errorf("c_total = %v; want \"\":4", got)
	}
	if got := Values(t, reg, "missing", "k"); len(got) != 0 {
		t.Errorf("missing = %v; want none", got)
	}
}
