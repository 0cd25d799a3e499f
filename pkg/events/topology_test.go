package events_test

import (
	"errors"
	"math"
	"reflect"
	"testing"
	"time"

	"github.com/otelfleet/otelfleet/pkg/events"
)

func sampleSnapshot() events.TopologySnapshot {
	rate := 0.25
	return events.TopologySnapshot{
		V: events.TopologySnapshotVersion, Leader: "topology-a", Token: 9, Seq: 3, Collectors: 3,
		Global: events.GlobalStats{Regions: 2, Collectors: 3, Healthy: 2, Stale: 1, SpansPerSec: 1500, CapacityQPS: 3000,
			Utilization: 0.5, AvgLatencyMS: 4, ErrorRate: 0.01, EffectiveSamplingRate: &rate},
		Regions: []events.RegionStats{
			{Region: "eu-west-1", Collectors: 2, Healthy: 1, Stale: 1, QPS: 500, CapacityQPS: 1000, Utilization: 0.5, AvgLatencyMS: 3},
			{Region: "us-east-1", Collectors: 1, Healthy: 1, QPS: 1000, CapacityQPS: 2000, Utilization: 0.5, AvgLatencyMS: 4.5},
		},
		At: time.Date(2025, 1, 2, 3, 4, 5, 0, time.UTC),
	}
}

func TestTopologySnapshotRoundTrip(t *testing.T) {
	in := sampleSnapshot()
	msg, err := events.NewMsg(events.Default.EventSubject(events.EventTopologySnapshot), "otelfleet/topology/a", in)
	if err != nil {
		t.Fatal(err)
	}
	if got := msg.Header.Get(events.HeaderType); got != "io.otelfleet.topology.snapshot.v1" {
		t.Fatalf("ce-type = %q", got)
	}
	if msg.Subject != "otlp.events.topology.snapshot" {
		t.Fatalf("subject = %q", msg.Subject)
	}
	var out events.TopologySnapshot
	if err := events.Decode(msg.Data, &out); err != nil {
		t.Fatal(err)
	}
	if !reflect.DeepEqual(in, out) {
		t.Fatalf("round trip:\n%+v\n%+v", in, out)
	}
}

func TestTopologySnapshotValidate(t *testing.T) {
	tests := []struct {
		name   string
		mutate func(s *events.TopologySnapshot)
		ok     bool
	}{
		{"valid", func(*events.TopologySnapshot) {}, true},
		{"no regions", func(s *events.TopologySnapshot) { s.Regions = nil; s.Collectors = 0 }, true},
		{"no leader", func(s *events.TopologySnapshot) { s.Leader = "" }, false},
		{"no time", func(s *events.TopologySnapshot) { s.At = time.Time{} }, false},
		{"negative count", func(s *events.TopologySnapshot) { s.Collectors = -1 }, false},
		{"bad region token", func(s *events.TopologySnapshot) { s.Regions[0].Region = "eu west" }, false},
		{"NaN qps", func(s *events.TopologySnapshot) { s.Regions[1].QPS = math.NaN() }, false},
		{"negative latency", func(s *events.TopologySnapshot) { s.Regions[1].AvgLatencyMS = -1 }, false},
		{"sampling rate above 1", func(s *events.TopologySnapshot) { r := 1.5; s.Global.EffectiveSamplingRate = &r }, false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			s := sampleSnapshot()
			tt.mutate(&s)
			err := s.Validate()
			if (err == nil) != tt.ok {
				t.Fatalf("Validate = %v, want ok %v", err, tt.ok)
			}
			if _, encErr := events.Encode(s); (encErr == nil) != tt.ok {
				t.Fatalf("Encode = %v", encErr)
			}
			if err != nil && errors.Is(err, events.ErrMalformed) {
				t.Fatalf("Validate errors must not claim a decode failure: %v", err)
			}
		})
	}
}
