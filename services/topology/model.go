package topologysvc

import (
	"time"

	"github.com/otelfleet/otelfleet/pkg/events"
)

// Status is a collector's status as shown: its health, or "stale" when its last load
// report is too old (or it never reported).
type Status string

// Statuses, from best to worst.
const (
	StatusHealthy   Status = "healthy"
	StatusDegraded  Status = "degraded"
	StatusUnhealthy Status = "unhealthy"
	StatusStale     Status = "stale"
)

// Collector is one registered collector as the topology shows it.
type Collector struct {
	ID      string `json:"id"`
	Region  string `json:"region"`
	Address string `json:"address,omitempty"`
	Name    string `json:"name,omitempty"`
	Version string `json:"version,omitempty"`
	// Health is the worse of the registration's health status and the load report's
	// own verdict (a report with healthy=false makes it unhealthy).
	Health events.HealthStatus `json:"health"`
	// Stale is true when the last load report is older than the staleness window, or
	// there has been none.
	Stale bool `json:"stale"`
	// Status is Health, or "stale" when Stale: what the page colours by.
	Status Status `json:"status"`
	// CapacityQPS is the registered capacity_qps, or the load report's capacity when
	// the registration gives none; 0 means unknown.
	CapacityQPS float64 `json:"capacity_qps"`
	// The load figures of the last report (zero when none).
	QPS          float64 `json:"qps"`
	BytesPerSec  float64 `json:"bytes_per_sec"`
	QueueDepth   int64   `json:"queue_depth"`
	CPU          float64 `json:"cpu"`
	MemoryBytes  uint64  `json:"memory_bytes"`
	AvgLatencyMS float64 `json:"avg_latency_ms"`
	ErrorRate    float64 `json:"error_rate"`
	// Utilization is QPS / CapacityQPS (0 when the capacity is unknown).
	Utilization float64 `json:"utilization"`
	// LastReport is when the last load report was stored by JetStream (server clock);
	// absent when there has been none.
	LastReport time.Time `json:"last_report,omitzero"`
	// ReportAgeMS is the age of the last report when the view was built, in ms; -1 when
	// there has been none.
	ReportAgeMS int64 `json:"report_age_ms"`
	// RegisteredAt is when the collector's current registration began.
	RegisteredAt time.Time `json:"registered_at"`
	// OpAMP is set for a collector managed over OpAMP: its agent, config version and
	// remote config status.
	OpAMP *OpAMP `json:"opamp,omitempty"`
}

// Region is one region of the topology: its statistics and its collectors sorted by id.
type Region struct {
	Region string             `json:"region"`
	Stats  events.RegionStats `json:"stats"`
	// Collectors lists the region's collectors (all of them, or a page: see Omitted).
	Collectors []Collector `json:"collectors"`
	// Omitted counts collectors left out of Collectors by a limit of the request.
	Omitted int `json:"omitted,omitempty"`
}

// Topology is the whole view: global statistics and every region sorted by name. It is
// the reply of otlp.topology.get and of GET /v1/topology.
type Topology struct {
	// GeneratedAt is when the view was built.
	GeneratedAt time.Time `json:"generated_at"`
	// Instance is the replica that answered; Leader is whether it leads.
	Instance string             `json:"instance"`
	Leader   bool               `json:"leader"`
	Global   events.GlobalStats `json:"global"`
	Regions  []Region           `json:"regions"`
	// Next is set when a page limit cut the collector list: pass it as "after" to get
	// the next page.
	Next string `json:"next,omitempty"`
}

// GetRequest is the optional body of otlp.topology.get. With no body the reply holds
// every region and up to DefaultPageLimit collectors.
type GetRequest struct {
	// Region restricts the reply to one region.
	Region string `json:"region,omitempty"`
	// After is the cursor of the previous page (its Next), "<region>/<id>": only
	// collectors after it are listed. Statistics always cover everything.
	After string `json:"after,omitempty"`
	// Limit bounds the collectors listed (default DefaultPageLimit, at most
	// MaxPageLimit, so a reply fits in a NATS message); 0 means the default.
	Limit int `json:"limit,omitempty"`
	// StatsOnly leaves collectors out entirely.
	StatsOnly bool `json:"stats_only,omitempty"`
}

// Page limits of otlp.topology.get: a collector is about 450 bytes of JSON, so a page
// of MaxPageLimit fits the default 1 MiB NATS payload.
const (
	DefaultPageLimit = 1000
	MaxPageLimit     = 2000
)

// BestRequest is the optional body of otlp.topology.best.
type BestRequest struct {
	// Region is the preferred region; empty means any region.
	Region string `json:"region,omitempty"`
	// The weights; a nil weight takes the service's default (see Weights).
	LoadWeight     *float64 `json:"load_weight,omitempty"`
	LatencyWeight  *float64 `json:"latency_weight,omitempty"`
	CapacityWeight *float64 `json:"capacity_weight,omitempty"`
}

// BestReply is the reply of otlp.topology.best: the chosen collector.
type BestReply struct {
	Region  string `json:"region"`
	ID      string `json:"id"`
	Address string `json:"address"`
	// Score is the chosen collector's score in [0, 1] (see Score).
	Score float64 `json:"score"`
	// Fallback is true when the requested region had no eligible collector and the
	// choice comes from another region; Reason says why.
	Fallback bool   `json:"fallback"`
	Reason   string `json:"reason,omitempty"`
	// RequestedRegion echoes the request's region.
	RequestedRegion string `json:"requested_region,omitempty"`
	// Candidates counts the eligible collectors the choice was made among.
	Candidates   int     `json:"candidates"`
	Utilization  float64 `json:"utilization"`
	QPS          float64 `json:"qps"`
	CapacityQPS  float64 `json:"capacity_qps"`
	AvgLatencyMS float64 `json:"avg_latency_ms"`
	Weights      Weights `json:"weights"`
}
