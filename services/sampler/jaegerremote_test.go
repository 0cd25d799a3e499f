package samplersvc

import (
	"context"
	"math"
	"net/http/httptest"
	"testing"
	"time"

	"go.opentelemetry.io/contrib/samplers/jaegerremote"
	sdktrace "go.opentelemetry.io/otel/sdk/trace"

	"github.com/otelfleet/otelfleet/pkg/events"
)

// TestJaegerRemoteSDK runs the OpenTelemetry Go SDK's jaeger_remote sampler, unchanged,
// against the sampler's HTTP API and checks that it samples at the published rate:
// 20,000 root spans with random trace ids, kept fraction within 5σ of the rate.
func TestJaegerRemoteSDK(t *testing.T) {
	tests := []struct {
		name       string
		service    string
		lowerBound float64 // > 0: the adaptive shape with operationSampling
		rate       float64
	}{
		{name: "probabilistic, seen service", service: "search", rate: 0.05},
		{name: "probabilistic, default rate", service: "brand-new", rate: 0.2},
		{name: "probabilistic, high priority", service: "checkout", rate: 1},
		{name: "operation sampling with a lower bound", service: "cart", lowerBound: 1.0 / 60, rate: 0.2},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			api := NewAPI(nil)
			api.Install(testDecision(tt.lowerBound))
			srv := httptest.NewServer(api)
			defer srv.Close()

			sampler := jaegerremote.New(tt.service,
				jaegerremote.WithSamplingServerURL(srv.URL+"/sampling"),
				jaegerremote.WithSamplingRefreshInterval(20*time.Millisecond),
				jaegerremote.WithInitialSampler(sdktrace.NeverSample()),
			)
			defer sampler.Close()
			tp := sdktrace.NewTracerProvider(sdktrace.WithSampler(sampler))
			defer func() { _ = tp.Shutdown(context.Background()) }()
			tracer := tp.Tracer("otelfleet-test")

			// Wait for the sampler's first poll to replace the never-sampling initial one.
			deadline := time.Now().Add(10 * time.Second)
			for {
				_, span := tracer.Start(context.Background(), "probe")
				sampled := span.SpanContext().IsSampled()
				span.End()
				if sampled || tt.rate < 0.01 {
					break
				}
				if time.Now().After(deadline) {
					t.Fatalf("the jaeger_remote sampler never sampled a span: it did not apply the strategy from %s", srv.URL)
				}
				time.Sleep(5 * time.Millisecond)
			}

			const n = 20_000
			kept := 0
			for range n {
				_, span := tracer.Start(context.Background(), "op")
				if span.SpanContext().IsSampled() {
					kept++
				}
				span.End()
			}
			got := float64(kept) / n
			sigma := math.Sqrt(tt.rate * (1 - tt.rate) / n)
			// The lower bound (1/60 traces/s per operation, initial credit 1) may add a
			// trace or two.
			tol := 5*sigma + 3.0/n
			if math.Abs(got-tt.rate) > tol {
				t.Fatalf("SDK kept %.4f of %d spans, want %.4f ± %.4f", got, n, tt.rate, tol)
			}
			t.Logf("SDK kept %d/%d = %.4f (rate %.4f, ±%.4f)", kept, n, got, tt.rate, tol)
		})
	}
}

// TestJaegerRemoteSDKFollowsDecisions checks that the SDK picks up a new decision on its
// next poll.
func TestJaegerRemoteSDKFollowsDecisions(t *testing.T) {
	api := NewAPI(nil)
	d := testDecision(0)
	api.Install(d)
	srv := httptest.NewServer(api)
	defer srv.Close()
	sampler := jaegerremote.New("cart",
		jaegerremote.WithSamplingServerURL(srv.URL),
		jaegerremote.WithSamplingRefreshInterval(20*time.Millisecond),
		jaegerremote.WithInitialSampler(sdktrace.NeverSample()),
	)
	defer sampler.Close()
	tp := sdktrace.NewTracerProvider(sdktrace.WithSampler(sampler))
	defer func() { _ = tp.Shutdown(context.Background()) }()
	tracer := tp.Tracer("otelfleet-test")
	fraction := func() float64 {
		kept := 0
		for range 2000 {
			_, span := tracer.Start(context.Background(), "op")
			if span.SpanContext().IsSampled() {
				kept++
			}
			span.End()
		}
		return float64(kept) / 2000
	}
	waitFor := func(want float64) {
		t.Helper()
		deadline := time.Now().Add(10 * time.Second)
		for {
			got := fraction()
			if math.Abs(got-want) < 0.05 {
				return
			}
			if time.Now().After(deadline) {
				t.Fatalf("SDK keeps %.3f, want about %.3f", got, want)
			}
			time.Sleep(20 * time.Millisecond)
		}
	}
	waitFor(0.2)
	next := *d
	next.Version++
	next.Services = map[string]events.ServiceDecision{"cart": {Rate: 0.8, QPS: 100}}
	api.Install(&next)
	waitFor(0.8)
}
