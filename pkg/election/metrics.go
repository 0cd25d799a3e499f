package election

import (
	"github.com/prometheus/client_golang/prometheus"

	"github.com/otelfleet/otelfleet/pkg/promreg"
)

// metrics are the otelfleet_election_* series of one candidate, labelled with its role.
type metrics struct {
	leader prometheus.Gauge
	terms  prometheus.Counter
	losses *prometheus.CounterVec
	ttl    prometheus.Gauge
}

// newMetrics registers the metrics on reg (nil: unregistered). A second candidate for
// the same role on the same registry shares the first one's series. vacant reads, at
// scrape time, for how long the candidate has seen the role without a holder.
func newMetrics(reg prometheus.Registerer, role string, vacant func() float64) (*metrics, error) {
	labels := prometheus.Labels{"role": role}
	m := &metrics{
		leader: prometheus.NewGauge(prometheus.GaugeOpts{Name: "otelfleet_election_leader", Help: "1 while this process leads the role.", ConstLabels: labels}),
		terms:  prometheus.NewCounter(prometheus.CounterOpts{Name: "otelfleet_election_terms_total", Help: "Terms of leadership won.", ConstLabels: labels}),
		losses: prometheus.NewCounterVec(prometheus.CounterOpts{Name: "otelfleet_election_terms_ended_total", Help: "Terms ended, by reason (resigned, renewal-failed, lease-lost, connection-closed).", ConstLabels: labels}, []string{"reason"}),
	}
	m.ttl = prometheus.NewGauge(prometheus.GaugeOpts{Name: "otelfleet_election_lease_ttl_seconds", Help: "TTL of the role's lease (the leases bucket's), read when campaigning.", ConstLabels: labels})
	r := &promreg.Registrar{Reg: reg}
	m.ttl = promreg.Add(r, m.ttl)
	m.leader = promreg.Add(r, m.leader)
	m.terms = promreg.Add(r, m.terms)
	m.losses = promreg.Add(r, m.losses)
	// Every candidate, leader or not, says whether the role has a holder: an alert on
	// "no leader for longer than N lease TTLs" needs a reading that survives the leader.
	promreg.Add(r, prometheus.NewGaugeFunc(prometheus.GaugeOpts{
		Name: "otelfleet_election_vacant_seconds", ConstLabels: labels,
		Help: "Seconds this candidate has seen the role without a holder (0 while someone, this candidate included, holds the lease).",
	}, vacant))
	// Pre-initialised so rate() and increase() see the series before the first term ends.
	for _, reason := range []string{"resigned", "renewal-failed", "lease-lost", "connection-closed", "unknown"} {
		m.losses.WithLabelValues(reason)
	}
	return m, r.Err()
}

func (m *metrics) won() {
	m.leader.Set(1)
	m.terms.Inc()
}

func (m *metrics) lost(reason string) {
	m.leader.Set(0)
	m.losses.WithLabelValues(reason).Inc()
}
