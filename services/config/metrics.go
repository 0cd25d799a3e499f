package configsvc

import (
	"encoding/json"

	"github.com/prometheus/client_golang/prometheus"
)

type metrics struct {
	changes   *prometheus.CounterVec
	conflicts prometheus.Counter
}

func newMetrics(reg prometheus.Registerer) (*metrics, error) {
	m := &metrics{
		changes: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "otelfleet_config_changes_total", Help: "Accepted config changes by action (init, put, rollback).",
		}, []string{"action"}),
		conflicts: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "otelfleet_config_conflicts_total", Help: "Writes refused because another writer changed the key first.",
		}),
	}
	for _, c := range []prometheus.Collector{m.changes, m.conflicts} {
		if err := reg.Register(c); err != nil {
			return nil, err
		}
	}
	return m, nil
}

func jsonMarshal(v any) ([]byte, error) { return json.Marshal(v) }
