package opampsvc_test

import (
	"bytes"
	"context"
	"net/http"
	"sync/atomic"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/open-telemetry/opamp-go/client"
	"github.com/open-telemetry/opamp-go/client/types"
	"github.com/open-telemetry/opamp-go/protobufs"
	metricspb "go.opentelemetry.io/proto/otlp/metrics/v1"
	"google.golang.org/protobuf/proto"

	"github.com/otelfleet/otelfleet/pkg/events"
	"github.com/otelfleet/otelfleet/pkg/loadreport"
	"github.com/otelfleet/otelfleet/pkg/natstest"
)

func sum(name string, v float64) *metricspb.Metric {
	return &metricspb.Metric{Name: name, Data: &metricspb.Metric_Sum{Sum: &metricspb.Sum{
		AggregationTemporality: metricspb.AggregationTemporality_AGGREGATION_TEMPORALITY_CUMULATIVE, IsMonotonic: true,
		DataPoints: []*metricspb.NumberDataPoint{{Value: &metricspb.NumberDataPoint_AsDouble{AsDouble: v}}},
	}}}
}

func export(accepted, refused float64) []byte {
	md := &metricspb.MetricsData{ResourceMetrics: []*metricspb.ResourceMetrics{{ScopeMetrics: []*metricspb.ScopeMetrics{{Metrics: []*metricspb.Metric{
		sum("otelcol_receiver_accepted_spans", accepted), sum("otelcol_receiver_refused_spans", refused),
		{Name: "otelcol_process_memory_rss", Data: &metricspb.Metric_Gauge{Gauge: &metricspb.Gauge{DataPoints: []*metricspb.NumberDataPoint{{Value: &metricspb.NumberDataPoint_AsInt{AsInt: 1 << 20}}}}}},
	}}}}}}
	b, _ := proto.Marshal(md)
	return b
}

func TestOwnMetricsBecomeLoadReports(t *testing.T) {
	f := newFixture(t)
	_, addr, _ := f.replica(t, "r1", nil)
	nc := f.srv.Connect(t)
	reports := make(chan events.LoadReport, 16)
	sub, err := nc.Subscribe("otlp.load.local.metered", func(m *nats.Msg) {
		if r, err := loadreport.Decode(m); err == nil {
			reports <- r
		}
	})
	if err != nil {
		t.Fatal(err)
	}
	defer func() { _ = sub.Unsubscribe() }()
	var offer atomic.Pointer[protobufs.TelemetryConnectionSettings]
	uid := newUID()
	c := client.NewWebSocket(nil)
	_ = c.SetAgentDescription(&protobufs.AgentDescription{IdentifyingAttributes: []*protobufs.KeyValue{str("service.instance.id", "metered")}})
	if err := c.Start(context.Background(), types.StartSettings{
		OpAMPServerURL: "ws://" + addr + "/v1/opamp", InstanceUid: uid,
		Capabilities: protobufs.AgentCapabilities_AgentCapabilities_ReportsStatus | protobufs.AgentCapabilities_AgentCapabilities_ReportsOwnMetrics,
		Callbacks: types.Callbacks{OnMessage: func(_ context.Context, m *types.MessageData) {
			if m.OwnMetricsConnSettings != nil {
				offer.Store(m.OwnMetricsConnSettings)
			}
		}},
	}); err != nil {
		t.Fatal(err)
	}
	defer func() { _ = c.Stop(context.Background()) }()
	natstest.Eventually(t, 2*time.Second, func() bool { return offer.Load() != nil }, "own_metrics offered")
	o := offer.Load()
	postMetrics := func(body []byte, auth string) int {
		req, _ := http.NewRequest(http.MethodPost, o.GetDestinationEndpoint(), bytes.NewReader(body))
		req.Header.Set("Content-Type", "application/x-protobuf")
		req.Header.Set("Authorization", auth)
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		_ = resp.Body.Close()
		return resp.StatusCode
	}
	auth := o.GetHeaders().GetHeaders()[0].GetValue()
	if code := postMetrics(export(0, 0), "Bearer "+hexUID(uid)+".00"); code != http.StatusUnauthorized {
		t.Fatalf("forged token: HTTP %d", code)
	}
	if code := postMetrics([]byte{0xff, 0xff}, auth); code != http.StatusBadRequest {
		t.Fatalf("garbage: HTTP %d", code)
	}
	if code := postMetrics(export(1000, 0), auth); code != http.StatusOK {
		t.Fatalf("first export: HTTP %d", code)
	}
	time.Sleep(100 * time.Millisecond) // the rate needs time between two readings
	if code := postMetrics(export(2000, 1000), auth); code != http.StatusOK {
		t.Fatalf("second export: HTTP %d", code)
	}
	select {
	case r := <-reports:
		if r.QPS <= 0 || r.ErrorRate != 0.5 || r.Memory != 1<<20 || r.Collector != "metered" {
			t.Fatalf("load report %+v", r)
		}
	case <-time.After(2 * time.Second):
		t.Fatal("no load report")
	}
}
