package configsvc

import (
	"context"
	"log/slog"
	"strings"
	"sync"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"github.com/prometheus/client_golang/prometheus"

	"github.com/otelfleet/otelfleet/pkg/events"
	"github.com/otelfleet/otelfleet/pkg/fleetconfig"
	"github.com/otelfleet/otelfleet/pkg/kvwatch"
	"github.com/otelfleet/otelfleet/pkg/promreg"
)

// storedVersions keeps otelfleet_config_stored_version{key}: per config key the watchers
// apply (global, region.<r>) the version in force in the bucket, the highest valid version
// of the key's kept history or of its good.<key> copy (configwatch.LastGood, the rule of the
// store and of every watcher). Each instance's
// otelfleet_config_applied_version is compared with it: an instance below it for long is
// out of sync.
type storedVersions struct {
	gauge *prometheus.GaugeVec
	log   *slog.Logger

	mu sync.Mutex
	// By key, while a watch replays or runs: the highest valid version of the key's
	// history (forgotten when the key is deleted) and of its good.<key> copy. In force is
	// the higher of the two, none for a deleted key (configwatch.LastGood's rule).
	history, good map[string]uint64
	deleted       map[string]bool
	replayed      bool
}

func newStoredVersions(reg prometheus.Registerer, log *slog.Logger) (*storedVersions, error) {
	g, err := promreg.Shared(reg, prometheus.NewGaugeVec(prometheus.GaugeOpts{
		Name: "otelfleet_config_stored_version",
		Help: "Version in force in the config bucket per key (global, region.<r>): the highest valid version of the key's kept history or of its good.<key> copy.",
	}, []string{"key"}))
	if err != nil {
		return nil, err
	}
	return &storedVersions{gauge: g, log: log, history: map[string]uint64{}, good: map[string]uint64{}, deleted: map[string]bool{}}, nil
}

// run watches the config bucket, history included, until ctx ends.
func (s *storedVersions) run(ctx context.Context, nc *nats.Conn, kv jetstream.KeyValue) {
	kvwatch.Watch(ctx, nc, kv, "", kvwatch.Handler{
		Start: func() {
			s.mu.Lock()
			clear(s.history)
			clear(s.good)
			clear(s.deleted)
			s.replayed = false
			s.mu.Unlock()
		},
		Entry: s.entry,
		Err:   func(err error) { s.log.Warn("config bucket watch (stored versions) failed, retrying", "err", err) },
	}, jetstream.IncludeHistory())
}

// entry folds one value (or, nil, the end of a replay) into the versions; the gauge shows
// a key once a replay has ended, so a half-replayed history never reads as in force.
func (s *storedVersions) entry(e jetstream.KeyValueEntry) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if e == nil {
		s.replayed = true
		s.gauge.Reset()
		for k := range s.keysLocked() {
			s.showLocked(k)
		}
		return
	}
	key, copied := strings.CutPrefix(e.Key(), events.GoodConfigKeyPrefix)
	if e.Operation() != jetstream.KeyValuePut {
		if !copied {
			delete(s.history, key) // a deleted key: nothing older is in force
			s.deleted[key] = true
		}
	} else if version, ok := validVersion(key, e.Value()); ok {
		into := s.history
		if copied {
			into = s.good
		} else {
			delete(s.deleted, key)
		}
		into[key] = max(into[key], version)
	}
	if s.replayed {
		s.showLocked(key)
	}
}

// keysLocked returns every key with a version or a deletion.
func (s *storedVersions) keysLocked() map[string]struct{} {
	keys := map[string]struct{}{}
	for _, m := range []map[string]uint64{s.history, s.good} {
		for k := range m {
			keys[k] = struct{}{}
		}
	}
	return keys
}

// showLocked sets key's gauge to its version in force, or removes it when none is.
func (s *storedVersions) showLocked(key string) {
	v := max(s.history[key], s.good[key])
	if s.deleted[key] || v == 0 {
		s.gauge.DeleteLabelValues(key)
		return
	}
	s.gauge.WithLabelValues(key).Set(float64(v))
}

// validVersion is the version of a valid global or regional value; false for other keys
// (collector configs are not applied by watchers) and for values no watcher applies.
func validVersion(key string, b []byte) (uint64, bool) {
	if key == events.GlobalConfigKey {
		g, err := fleetconfig.DecodeStoredGlobal(key, b)
		return g.Version, err == nil
	}
	region, ok := events.RegionFromConfigKey(key)
	if !ok {
		return 0, false
	}
	r, err := fleetconfig.DecodeStoredRegion(key, region, b)
	return r.Version, err == nil
}
