package microapi_test

import (
	"context"
	"errors"
	"strings"
	"testing"
	"time"

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
