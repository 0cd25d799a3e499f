package configsvc_test

import (
	"context"
	"errors"
	"fmt"
	"strconv"
	"sync"
	"testing"
	"time"

	"go.opentelemetry.io/otel/trace"

	"github.com/otelfleet/otelfleet/pkg/fleetconfig"
	"github.com/otelfleet/otelfleet/pkg/natsconn"
	"github.com/otelfleet/otelfleet/pkg/natstest"
	configsvc "github.com/otelfleet/otelfleet/services/config"
)

// With TraceWrites, a write under a span stores the span's traceparent with the value
// and keeps the store's rules: racing writers expecting one version, exactly one wins;
// a write without a span carries none; a key deleted by hand can be written again.
func TestTracedWritesCarryTheTraceAndKeepCompareAndSet(t *testing.T) {
	srv := natstest.Run(t)
	nc, js := srv.JetStream(t)
	b, err := natsconn.Provision(context.Background(), js, natsconn.DefaultLayout())
	if err != nil {
		t.Fatal(err)
	}
	store := configsvc.NewStore(b.Config).TraceWrites(js)
	tid, _ := trace.TraceIDFromHex("4bf92f3577b34da6a3ce929d0e0e4736")
	sid, _ := trace.SpanIDFromHex("00f067aa0ba902b7")
	ctx := trace.ContextWithSpanContext(context.Background(), trace.NewSpanContext(trace.SpanContextConfig{TraceID: tid, SpanID: sid, TraceFlags: trace.FlagsSampled}))
	want := "00-" + tid.String() + "-" + sid.String() + "-01"
	traceOf := func(rev uint64) string {
		t.Helper()
		m, err := nc.Request("$JS.API.DIRECT.GET.KV_"+b.Config.Bucket(), []byte(`{"seq":`+strconv.FormatUint(rev, 10)+`}`), 5*time.Second)
		if err != nil {
			t.Fatal(err)
		}
		return m.Header.Get("traceparent")
	}

	c, err := store.PutGlobal(ctx, globalWith(0.3), "tester", nil) // a new key
	if err != nil {
		t.Fatal(err)
	}
	if got := traceOf(c.Revision); got != want {
		t.Fatalf("traceparent %q, want %q", got, want)
	}
	c, err = store.PutGlobal(context.Background(), globalWith(0.4), "tester", nil)
	if err != nil {
		t.Fatal(err)
	}
	if got := traceOf(c.Revision); got != "" {
		t.Fatalf("traceparent %q stored by a write without a span", got)
	}

	const writers = 6
	var wg sync.WaitGroup
	errs := make([]error, writers)
	expect := c.NewVersion
	for i := range writers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			_, errs[i] = store.PutGlobal(ctx, globalWith(float64(i+1)/100), fmt.Sprintf("writer-%d", i), &expect)
		}()
	}
	wg.Wait()
	if wins := winners(t, errs); wins != 1 {
		t.Fatalf("%d of %d racing traced writers won, want exactly 1", wins, writers)
	}

	region := fleetconfig.DefaultRegion()
	region.RegionalSamplingRate = 0.5
	r, err := store.PutRegion(ctx, "eu", region, "tester", nil)
	if err != nil {
		t.Fatal(err)
	}
	if err := b.Config.Delete(context.Background(), "region.eu"); err != nil {
		t.Fatal(err)
	}
	region.RegionalSamplingRate = 0.6
	if r, err = store.PutRegion(ctx, "eu", region, "tester", nil); err != nil {
		t.Fatalf("traced write over a delete marker: %v", err)
	}
	if got := traceOf(r.Revision); got != want {
		t.Fatalf("traceparent %q after the delete, want %q", got, want)
	}
}

// winners counts the writes that succeeded; every other must be a conflict.
func winners(t *testing.T, errs []error) int {
	t.Helper()
	wins := 0
	for _, err := range errs {
		switch {
		case err == nil:
			wins++
		case !errors.Is(err, configsvc.ErrConflict):
			t.Errorf("unexpected error: %v", err)
		}
	}
	return wins
}
