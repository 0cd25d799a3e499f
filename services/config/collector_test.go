package configsvc_test

import (
	"context"
	"encoding/json"
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/nats-io/nats.go"

	"github.com/otelfleet/otelfleet/pkg/events"
	"github.com/otelfleet/otelfleet/pkg/fleetconfig"
	"github.com/otelfleet/otelfleet/pkg/microapi"
	"github.com/otelfleet/otelfleet/pkg/natsconn"
	"github.com/otelfleet/otelfleet/pkg/natstest"
	configsvc "github.com/otelfleet/otelfleet/services/config"
)

const goodCollector = `
receivers:
  otlp:
    protocols: {grpc: {endpoint: 127.0.0.1:4317}}
processors:
  probabilistic_sampler:
    sampling_percentage: ${otelfleet:sampling.percent:checkout}
exporters:
  debug: {}
service:
  pipelines:
    traces:
      receivers: [otlp]
      processors: [probabilistic_sampler]
      exporters: [debug]
`

func collectorCall(t *testing.T, nc *nats.Conn, op string, in, out any) error {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	return microapi.Request(ctx, nc, events.Default.Endpoint("config", "collector."+op), in, out)
}

// TestCollectorConfigStoredVersionedAndCheckedAgainstAgents stores a group's collector
// config through the endpoints: a document with an undefined exporter and a component
// the matching agent lacks is refused with every problem and its path; a good one gets
// versions 1 and 2, history and a rollback to 1 as version 3; a hostile value written
// into the bucket is not in force; and the process's config watcher ignores the
// collector.* keys (its global config and readiness are untouched).
func TestCollectorConfigStoredVersionedAndCheckedAgainstAgents(t *testing.T) {
	srv := natstest.Run(t)
	in := startInstance(t, srv.ClientURL(), "c1")
	nc, js := srv.JetStream(t)
	b, err := natsconn.Provision(context.Background(), js, natsconn.DefaultLayout())
	if err != nil {
		t.Fatal(err)
	}
	agent := events.AgentState{V: 1, UID: "0123456789abcdef0123456789abcdef", ID: "c1", Region: "eu-west-1", Replica: "r", Transport: "websocket",
		Components: []string{"receiver/otlp", "processor/probabilistic_sampler", "exporter/debug"}}
	data, _ := events.Encode(agent)
	if _, err := b.Agents.Put(context.Background(), "agent."+agent.UID, data); err != nil {
		t.Fatal(err)
	}
	globalBefore := in.watcher.Current().Global.Version

	bad := strings.Replace(goodCollector, "exporters: [debug]", "exporters: [debug, otlp/x]", 1) + "extensions: {}\n"
	bad = strings.Replace(bad, "debug: {}", "debug: {}\n  kafka: {}", 1)
	req := configsvc.CollectorRequest{Group: "edge", Selector: fleetconfig.Selector{Region: "eu-west-1"}, Config: bad, By: "test"}
	err = collectorCall(t, nc, "put", req, nil)
	var me *microapi.Error
	if !errors.As(err, &me) || me.Code != microapi.CodeBadRequest {
		t.Fatalf("bad put: %v, want a 400", err)
	}
	var rep configsvc.CollectorValidateReply
	if err := json.Unmarshal(me.Body, &rep); err != nil {
		t.Fatalf("refusal body %q: %v", me.Body, err)
	}
	paths := map[string]string{}
	for _, p := range rep.Problems {
		paths[p.Path] = p.Message
	}
	if !strings.Contains(paths["config.service.pipelines.traces.exporters[1]"], `"otlp/x" is not defined`) {
		t.Errorf("problems %v: want the undefined exporter by path", rep.Problems)
	}
	if len(rep.Problems) != 1 { // component types are not checked while the document is broken
		t.Errorf("problems %v: want only the undefined exporter", rep.Problems)
	}
	missing := strings.Replace(goodCollector, "debug: {}", "debug: {}\n  kafka: {}", 1)
	req.Config = missing
	err = collectorCall(t, nc, "put", req, nil)
	if !errors.As(err, &me) || !strings.Contains(me.Message, "config.exporters.kafka: exporter/kafka is not among the components of 1 of 1 matching agents (eu-west-1/c1)") {
		t.Fatalf("put with a missing component: %v", err)
	}
	if _, _, err := configsvc.NewStore(b.Config).Collector(context.Background(), "edge"); !errors.Is(err, configsvc.ErrNotFound) {
		t.Fatalf("refused puts stored something: %v", err)
	}

	var vrep configsvc.CollectorValidateReply
	other := req
	other.Selector = fleetconfig.Selector{Region: "us-east-1"}
	if err := collectorCall(t, nc, "validate", other, &vrep); err != nil || !vrep.Valid || len(vrep.Notes) == 0 {
		t.Fatalf("validate with no matching agent: %+v %v, want valid with a note", vrep, err)
	}

	req.Config = goodCollector
	var c configsvc.Change
	if err := collectorCall(t, nc, "put", req, &c); err != nil || c.NewVersion != 1 {
		t.Fatalf("good put: %+v %v", c, err)
	}
	req.Rollout = fleetconfig.RolloutPolicy{CanaryPercent: 50, Soak: fleetconfig.Duration(time.Second)}
	if err := collectorCall(t, nc, "put", req, &c); err != nil || c.NewVersion != 2 || c.Changed[0] != "rollout" {
		t.Fatalf("second put: %+v %v", c, err)
	}
	var hist []configsvc.HistoryEntry
	if err := collectorCall(t, nc, "history", configsvc.CollectorGroupRequest{Group: "edge"}, &hist); err != nil || len(hist) != 2 {
		t.Fatalf("history: %+v %v", hist, err)
	}
	if err := collectorCall(t, nc, "rollback", configsvc.CollectorRollbackRequest{Group: "edge", To: 1, By: "test"}, &c); err != nil || c.NewVersion != 3 {
		t.Fatalf("rollback: %+v %v", c, err)
	}
	if _, err := b.Config.Put(context.Background(), "collector.edge", []byte(`{"version": 99, "config": "::"}`)); err != nil {
		t.Fatal(err)
	}
	var got configsvc.CollectorGetReply
	if err := collectorCall(t, nc, "get", configsvc.CollectorGroupRequest{Group: "edge"}, &got); err != nil || got.Document.Version != 3 || got.Document.Rollout.CanaryPercent != 0 || len(got.Warnings) != 1 {
		t.Fatalf("get over a hostile value: %+v %v", got, err)
	}
	var list []configsvc.CollectorListEntry
	if err := collectorCall(t, nc, "list", nil, &list); err != nil || len(list) != 1 || list[0].Selector != "region=eu-west-1" {
		t.Fatalf("list: %+v %v", list, err)
	}
	if err := collectorCall(t, nc, "put", configsvc.CollectorRequest{Group: "bad.group", Config: goodCollector}, nil); microapi.CodeOf(err) != microapi.CodeBadRequest {
		t.Fatalf("bad group: %v", err)
	}
	rpt := in.watcher.Report()
	if g := in.watcher.Current().Global.Version; g != globalBefore || rpt.LastError != "" {
		t.Fatalf("the config watcher reacted to collector keys: global %d (was %d), last error %q", g, globalBefore, rpt.LastError)
	}
}
