package events

import (
	"errors"
	"fmt"
	"math"
	"time"
)

// RegionStats summarises one region of the topology. Traffic figures (qps, bytes, queue,
// latency, error rate) cover only collectors whose last load report is fresh; counts
// cover every registered collector.
type RegionStats struct {
	// Region is the region name.
	Region string `json:"region"`
	// Collectors counts the registered collectors of the region.
	Collectors int `json:"collectors"`
	// Healthy counts collectors that are healthy and whose last report is fresh.
	Healthy int `json:"healthy"`
	// Degraded and Unhealthy count fresh collectors in those states.
	Degraded  int `json:"degraded"`
	Unhealthy int `json:"unhealthy"`
	// Stale counts collectors with no load report within their staleness window
	// (including those that never reported).
	Stale int `json:"stale"`
	// QPS is the spans per second received by the region's fresh collectors.
	QPS float64 `json:"qps"`
	// BytesPerSec is the payload bytes per second received by them.
	BytesPerSec float64 `json:"bytes_per_sec"`
	// QueueDepth is the spans waiting to be exported, summed.
	QueueDepth int64 `json:"queue_depth"`
	// CapacityQPS is the summed capacity of fresh collectors with a known capacity.
	CapacityQPS float64 `json:"capacity_qps"`
	// SpareQPS is the capacity left on healthy fresh collectors (capacity - qps, at
	// least 0 each): what a router can still send to the region.
	SpareQPS float64 `json:"spare_qps"`
	// Utilization is the qps of fresh collectors with a known capacity over that
	// capacity (0 when no capacity is known); above 1 means overloaded.
	Utilization float64 `json:"utilization"`
	// AvgLatencyMS is the traffic-weighted (by qps) average latency in ms.
	AvgLatencyMS float64 `json:"avg_latency_ms"`
	// ErrorRate is the traffic-weighted (by qps) error rate in [0, 1].
	ErrorRate float64 `json:"error_rate"`
}

// GlobalStats summarises the whole topology, with the same rules as RegionStats.
type GlobalStats struct {
	Regions    int `json:"regions"`
	Collectors int `json:"collectors"`
	Healthy    int `json:"healthy"`
	Degraded   int `json:"degraded"`
	Unhealthy  int `json:"unhealthy"`
	Stale      int `json:"stale"`
	// SpansPerSec is the spans per second received by every fresh collector.
	SpansPerSec float64 `json:"spans_per_sec"`
	// BytesPerSec is the payload bytes per second received by every fresh collector.
	BytesPerSec float64 `json:"bytes_per_sec"`
	QueueDepth  int64   `json:"queue_depth"`
	CapacityQPS float64 `json:"capacity_qps"`
	SpareQPS    float64 `json:"spare_qps"`
	Utilization float64 `json:"utilization"`
	// AvgLatencyMS is the traffic-weighted average latency in ms.
	AvgLatencyMS float64 `json:"avg_latency_ms"`
	// ErrorRate is the traffic-weighted error rate in [0, 1].
	ErrorRate float64 `json:"error_rate"`
	// EffectiveSamplingRate is the global rate of the sampler's last decision (KV
	// otlp_sampling key "decision"); absent until a sampler has published one.
	EffectiveSamplingRate *float64 `json:"effective_sampling_rate,omitempty"`
}

// TopologySnapshot is published by the topology leader on
// <root>.events.topology.snapshot every interval: the region and global statistics and
// the collector count, never the collectors themselves (ask otlp.topology.get for
// those).
type TopologySnapshot struct {
	V int `json:"v"`
	// Leader is the instance id of the topology replica that published the snapshot.
	Leader string `json:"leader"`
	// Token is the leader's fencing token (the lease revision of its term): a consumer
	// may ignore snapshots with a lower token than one it has seen.
	Token uint64 `json:"token"`
	// Seq numbers the snapshots of one term, from 1.
	Seq uint64 `json:"seq"`
	// Collectors counts the registered collectors.
	Collectors int `json:"collectors"`
	// Global is the fleet-wide summary.
	Global GlobalStats `json:"global"`
	// Regions summarises each region, sorted by name.
	Regions []RegionStats `json:"regions"`
	// At is when the snapshot was built.
	At time.Time `json:"at"`
}

// TopologySnapshotVersion is the schema version of TopologySnapshot.
const TopologySnapshotVersion = 1

// Kind implements Payload.
func (TopologySnapshot) Kind() string { return string(EventTopologySnapshot) }

// SchemaVersion implements Payload.
func (TopologySnapshot) SchemaVersion() int { return TopologySnapshotVersion }

// Validate implements Payload.
func (s TopologySnapshot) Validate() error {
	var errs []error
	if s.Leader == "" {
		errs = append(errs, errors.New("leader: empty"))
	}
	if s.At.IsZero() {
		errs = append(errs, errors.New("at: missing"))
	}
	if s.Collectors < 0 {
		errs = append(errs, fmt.Errorf("collectors: %d is negative", s.Collectors))
	}
	for i, r := range s.Regions {
		if err := CheckToken("region", r.Region); err != nil {
			errs = append(errs, fmt.Errorf("regions[%d].region: %w", i, err))
		}
		for _, f := range []struct {
			name string
			v    float64
		}{{"qps", r.QPS}, {"capacity_qps", r.CapacityQPS}, {"utilization", r.Utilization}, {"avg_latency_ms", r.AvgLatencyMS}, {"error_rate", r.ErrorRate}} {
			if math.IsNaN(f.v) || math.IsInf(f.v, 0) || f.v < 0 {
				errs = append(errs, fmt.Errorf("regions[%d].%s: %v, want a finite number >= 0", i, f.name, f.v))
			}
		}
	}
	if r := s.Global.EffectiveSamplingRate; r != nil && !(*r >= 0 && *r <= 1) {
		errs = append(errs, fmt.Errorf("global.effective_sampling_rate: %v is outside [0,1]", *r))
	}
	return errors.Join(errs...)
}
