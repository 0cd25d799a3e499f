package election

import (
	"errors"

	"github.com/prometheus/client_golang/prometheus"
)

// metrics are the otelfleet_election_* series of one candidate, labelled with its role.
type metrics struct {
	leader prometheus.Gauge
	terms  prometheus.Counter
	losses *prometheus.CounterVec
}

// newMetrics registers the metrics on reg (nil: unregistered). A second candidate for
// the same role on the same registry shares the first one's series.
func newMetrics(reg prometheus.Registerer, role string) (*metrics, error) {
	labels := prometheus.Labels{"role": role}
	m := &metrics{
		leader: prometheus.NewGauge(prometheus.GaugeOpts{Name: "otelfleet_election_leader", Help: "1 while this process leads the role.", ConstLabels: labels}),
		terms:  prometheus.NewCounter(prometheus.CounterOpts{Name: "otelfleet_election_terms_total", Help: "Terms of leadership won.", ConstLabels: labels}),
		losses: prometheus.NewCounterVec(prometheus.CounterOpts{Name: "otelfleet_election_terms_ended_total", Help: "Terms ended, by reason (resigned, renewal-failed, lease-lost, connection-closed).", ConstLabels: labels}, []string{"reason"}),
	}
	if reg == nil {
		return m, nil
	}
	var err error
	m.leader, err = register(reg, m.leader)
	if err != nil {
		return nil, err
	}
	if m.terms, err = register(reg, m.terms); err != nil {
		return nil, err
	}
	if m.losses, err = register(reg, m.losses); err != nil {
		return nil, err
	}
	return m, nil
}

func register[C prometheus.Collector](reg prometheus.Registerer, c C) (C, error) {
	if err := reg.Register(c); err != nil {
		var are prometheus.AlreadyRegisteredError
		if errors.As(err, &are) {
			if existing, ok := are.ExistingCollector.(C); ok {
				return existing, nil
			}
		}
		return c, err
	}
	return c, nil
}

func (m *metrics) won() {
	m.leader.Set(1)
	m.terms.Inc()
}

func (m *metrics) lost(reason string) {
	m.leader.Set(0)
	m.losses.WithLabelValues(reason).Inc()
}
