package microapi_test

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/nats-io/nats-server/v2/server"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/micro"
	"go.uber.org/goleak"

	"github.com/otelfleet/otelfleet/pkg/microapi"
	"github.com/otelfleet/otelfleet/pkg/natstest"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

func TestHandlerErrorsAndPanics(t *testing.T) {
	srv := natstest.Run(t)
	nc := srv.Connect(t)
	svc, err := micro.AddService(nc, micro.Config{Name: "t", Version: "0.0.1"})
	if err != nil {
		t.Fatal(err)
	}
	defer svc.Stop()
	add := func(name string, h microapi.HandlerFunc) {
		if err := svc.AddEndpoint(name, microapi.Handler(h), micro.WithEndpointSubject("t."+name)); err != nil {
			t.Fatal(err)
		}
	}
	add("ok", func(_ context.Context, req micro.Request) (any, error) {
		var in struct{ N int }
		if err := microapi.DecodeRequest(req, &in); err != nil {
			return nil, err
		}
		return map[string]int{"n": in.N + 1}, nil
	})
	add("plain", func(context.Context, micro.Request) (any, error) { return nil, errors.New("boom") })
	add("panic", func(context.Context, micro.Request) (any, error) { panic("nil map") })

	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	var out map[string]int
	if err := microapi.Request(ctx, nc, "t.ok", map[string]int{"N": 1}, &out); err != nil || out["n"] != 2 {
		t.Fatalf("ok = %v, %v", out, err)
	}
	err = microapi.Request(ctx, nc, "t.ok", nil, &out)
	if err != nil {
		t.Errorf("empty body: %v", err)
	}
	msg, err := nc.Request("t.ok", []byte("{not json"), time.Second)
	if err != nil || msg.Header.Get(micro.ErrorCodeHeader) != "400" {
		t.Errorf("bad body: %v %v", msg, err)
	}
	if err := microapi.Request(ctx, nc, "t.plain", nil, nil); microapi.CodeOf(err) != microapi.CodeInternal || err.Error() != "boom" {
		t.Errorf("plain error = %v", err)
	}
	err = microapi.Request(ctx, nc, "t.panic", nil, nil)
	if microapi.CodeOf(err) != microapi.CodeInternal || !strings.Contains(err.Error(), "internal error handling t.panic: nil map") {
		t.Errorf("panic = %v", err)
	}
	// The service is still up after the panic.
	if err := microapi.Request(ctx, nc, "t.ok", nil, &out); err != nil {
		t.Errorf("after panic: %v", err)
	}
}

// runSmallServer starts a real nats-server whose max payload is maxPayload bytes.
func runSmallServer(t *testing.T, maxPayload int32) *nats.Conn {
	t.Helper()
	srv, err := server.NewServer(&server.Options{Host: "127.0.0.1", Port: -1, MaxPayload: maxPayload, NoLog: true, NoSigs: true})
	if err != nil {
		t.Fatal(err)
	}
	go srv.Start()
	if !srv.ReadyForConnections(10 * time.Second) {
		t.Fatal("server not ready")
	}
	t.Cleanup(srv.Shutdown)
	nc, err := nats.Connect(srv.ClientURL())
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(nc.Close)
	return nc
}

// TestReplyOverMaxPayloadIsShortened: a reply (or an error body) larger than the
// connection's max payload used to vanish (the requester timed out, nothing logged); it
// becomes a short error reply with the first problems and their count, and is logged.
func TestReplyOverMaxPayloadIsShortened(t *testing.T) {
	nc := runSmallServer(t, 8<<10)
	svc, err := micro.AddService(nc, micro.Config{Name: "t", Version: "0.0.1"})
	if err != nil {
		t.Fatal(err)
	}
	defer svc.Stop()
	var logs bytes.Buffer
	var mu sync.Mutex
	log := slog.New(slog.NewTextHandler(writerFunc(func(p []byte) (int, error) { mu.Lock(); defer mu.Unlock(); return logs.Write(p) }), nil))
	type validateReply struct {
		Valid    bool     `json:"valid"`
		Problems []string `json:"problems"`
		Error    string   `json:"error"`
	}
	problems := make([]string, 2500)
	for i := range problems {
		problems[i] = fmt.Sprintf("regions.r%d.sampling_rate: 7 is outside [0,1]", i)
	}
	big := validateReply{Problems: problems, Error: strings.Join(problems, "; ")}
	add := func(name string, h microapi.HandlerFunc) {
		if err := svc.AddEndpoint(name, microapi.Handler(h, microapi.WithLog(log)), micro.WithEndpointSubject("t."+name)); err != nil {
			t.Fatal(err)
		}
	}
	add("result", func(context.Context, micro.Request) (any, error) { return big, nil })
	add("refusal", func(context.Context, micro.Request) (any, error) {
		body, _ := json.Marshal(big)
		return nil, &microapi.Error{Code: microapi.CodeBadRequest, Message: big.Error, Body: body}
	})
	add("list", func(context.Context, micro.Request) (any, error) { return problems, nil })

	for _, tt := range []struct {
		subject string
		code    int
		field   string // the cut array's count field
	}{
		{"t.result", microapi.CodeTooLarge, "problems_total"},
		{"t.refusal", microapi.CodeBadRequest, "problems_total"},
		{"t.list", microapi.CodeTooLarge, "items_total"},
	} {
		t.Run(tt.subject, func(t *testing.T) {
			ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
			defer cancel()
			err := microapi.Request(ctx, nc, tt.subject, nil, nil)
			var me *microapi.Error
			if !errors.As(err, &me) {
				t.Fatalf("want a micro error reply, got %v", err)
			}
			if me.Code != tt.code || !strings.Contains(me.Message, "reply to "+tt.subject+" could not be sent") || !strings.Contains(me.Message, "maximum payload exceeded") {
				t.Fatalf("code %d message %q", me.Code, me.Message)
			}
			var body map[string]any
			if err := json.Unmarshal(me.Body, &body); err != nil {
				t.Fatalf("body is not JSON: %v: %q", err, me.Body)
			}
			if body[tt.field] != float64(2500) {
				t.Fatalf("%s = %v, want 2500", tt.field, body[tt.field])
			}
			list, _ := body["problems"].([]any)
			if list == nil {
				list, _ = body["items"].([]any)
			}
			if len(list) == 0 || len(list) > 20 || list[0] != problems[0] {
				t.Fatalf("kept %d problems (%v), want the first few", len(list), list[:min(len(list), 1)])
			}
		})
	}
	// The handler logs after its reply went out, so the last warning may follow the
	// client's answer by a moment.
	warnings := func() int {
		mu.Lock()
		defer mu.Unlock()
		return strings.Count(logs.String(), "reply could not be sent; sent a shortened error reply")
	}
	natstest.Eventually(t, 5*time.Second, func() bool { return warnings() == 3 }, "3 warnings logged")
	mu.Lock()
	defer mu.Unlock()
	if n := strings.Count(logs.String(), "reply could not be sent; sent a shortened error reply"); n != 3 {
		t.Fatalf("%d warnings logged, want 3:\n%s", n, logs.String())
	}
	if !strings.Contains(logs.String(), "subject=t.result") {
		t.Fatalf("warning does not name the subject:\n%s", logs.String())
	}
}

type writerFunc func([]byte) (int, error)

func (f writerFunc) Write(p []byte) (int, error) { return f(p) }

func FuzzShorten(f *testing.F) {
	for _, s := range []string{`{"problems":["a","b","c"],"error":"xxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxx"}`, `[1,2,3,4]`, `"é long string"`, `not json`, `{"a":[1,2],"a_total":9}`, `{} {}`, ``} {
		f.Add([]byte(s), 1, 8)
	}
	f.Fuzz(func(t *testing.T, data []byte, items, chars int) {
		items, chars = max(0, items%50), max(0, chars%500)
		out := microapi.Shorten(data, items, chars)
		if len(data) == 0 {
			if out != nil {
				t.Fatalf("empty data gave %q", out)
			}
			return
		}
		if !json.Valid(out) {
			t.Fatalf("Shorten(%q) = %q, not JSON", data, out)
		}
		if again := microapi.Shorten(out, items, chars); len(again) > len(out)+64 {
			t.Fatalf("shortening grew: %d -> %d", len(out), len(again))
		}
	})
}
