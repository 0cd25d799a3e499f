package opampsvc_test

import (
	"bytes"
	"context"
	"crypto/hmac"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"net/http"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"github.com/open-telemetry/opamp-go/client"
	"github.com/open-telemetry/opamp-go/client/types"
	"github.com/open-telemetry/opamp-go/protobufs"
	"github.com/prometheus/client_golang/prometheus"
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
	auth, postMetrics := meteredAgent(t, addr, "metered")
	uid, _, _ := strings.Cut(strings.TrimPrefix(auth, "Bearer "), ".")
	if code := postMetrics(export(0, 0), "Bearer "+uid+".00"); code != http.StatusUnauthorized {
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

// meteredAgent connects a WebSocket agent id announcing ReportsOwnMetrics to addr and
// returns the Authorization it was offered and a poster of metrics to the offered URL.
func meteredAgent(t *testing.T, addr, id string) (string, func(body []byte, auth string) int) {
	t.Helper()
	var offer atomic.Pointer[protobufs.TelemetryConnectionSettings]
	uid := newUID()
	c := client.NewWebSocket(nil)
	_ = c.SetAgentDescription(&protobufs.AgentDescription{IdentifyingAttributes: []*protobufs.KeyValue{str("service.instance.id", id)}})
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
	t.Cleanup(func() { _ = c.Stop(context.Background()) })
	natstest.Eventually(t, 2*time.Second, func() bool { return offer.Load() != nil }, "own_metrics offered")
	o := offer.Load()
	return o.GetHeaders().GetHeaders()[0].GetValue(), func(body []byte, auth string) int {
		return postMetricsTo(t, o.GetDestinationEndpoint(), body, auth)
	}
}

func postMetricsTo(t *testing.T, url string, body []byte, auth string) int {
	t.Helper()
	req, _ := http.NewRequest(http.MethodPost, url, bytes.NewReader(body))
	req.Header.Set("Content-Type", "application/x-protobuf")
	req.Header.Set("Authorization", auth)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	_ = resp.Body.Close()
	return resp.StatusCode
}

// agentsBucket is the real agents bucket counting Gets per key; fail makes them fail.
type agentsBucket struct {
	jetstream.KeyValue
	mu   sync.Mutex
	gets map[string]int
	fail atomic.Bool
}

func (a *agentsBucket) Get(ctx context.Context, key string) (jetstream.KeyValueEntry, error) {
	a.mu.Lock()
	a.gets[key]++
	a.mu.Unlock()
	if a.fail.Load() {
		return nil, errors.New("agents bucket unreachable")
	}
	return a.KeyValue.Get(ctx, key)
}

func (a *agentsBucket) count(key string) int {
	a.mu.Lock()
	defer a.mu.Unlock()
	return a.gets[key]
}

// TestOwnMetricsForAnAgentHeldElsewhere: a replica taking the metrics of an agent
// another replica holds reads its state from the bucket once per TTL/3, not once per
// post; a failed read is reported as what it is (unavailable), not as an unknown agent.
func TestOwnMetricsForAnAgentHeldElsewhere(t *testing.T) {
	f := newFixture(t)
	_, addr1, _ := f.replica(t, "r1", nil)
	bucket := &agentsBucket{KeyValue: f.b.Agents, gets: map[string]int{}}
	b2 := *f.b
	b2.Agents = bucket
	reg := prometheus.NewRegistry()
	_, addr2, _ := f.replicaOn(t, "r2", nil, reg, &b2)

	auth, _ := meteredAgent(t, addr1, "elsewhere")
	uid, _, _ := strings.Cut(strings.TrimPrefix(auth, "Bearer "), ".")
	natstest.Eventually(t, 2*time.Second, func() bool { _, ok := f.agentState(uid); return ok }, "agent state stored by r1")
	url2 := "http://" + addr2 + "/v1/metrics"
	for i := range 10 {
		if code := postMetricsTo(t, url2, export(float64(1000*(i+1)), 0), auth); code != http.StatusOK {
			t.Fatalf("post %d to r2: HTTP %d", i, code)
		}
	}
	if n := bucket.count(events.AgentKeyPrefix + uid); n != 1 {
		t.Fatalf("r2 read agent.%s %d times for 10 posts within TTL/3, want 1", uid, n)
	}

	// An agent nobody holds, with a good token: first the bucket fails, then it answers.
	stranger := hexUID(newUID())
	m := hmac.New(sha256.New, []byte("test-secret"))
	m.Write([]byte(stranger))
	sauth := "Bearer " + stranger + "." + hex.EncodeToString(m.Sum(nil))
	bucket.fail.Store(true)
	if code := postMetricsTo(t, url2, export(1, 0), sauth); code != http.StatusServiceUnavailable {
		t.Fatalf("bucket failing: HTTP %d, want 503", code)
	}
	bucket.fail.Store(false)
	if code := postMetricsTo(t, url2, export(1, 0), sauth); code != http.StatusServiceUnavailable {
		t.Fatalf("unknown agent: HTTP %d, want 503", code)
	}
	if u, a := ownMetricsCount(t, reg, "unavailable"), ownMetricsCount(t, reg, "unknown_agent"); u != 1 || a != 1 {
		t.Fatalf("counted unavailable %v, unknown_agent %v; want 1 and 1", u, a)
	}
}

// ownMetricsCount reads otelfleet_opamp_own_metrics_total{result} from reg.
func ownMetricsCount(t *testing.T, reg *prometheus.Registry, result string) float64 {
	t.Helper()
	return counterValue(t, reg, "otelfleet_opamp_own_metrics_total", "result", result)
}
