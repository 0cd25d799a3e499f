package sampling

import (
	"net/http"
	"net/http/httptest"
	"sync/atomic"
	"testing"
	"time"

	"go.opentelemetry.io/contrib/samplers/jaegerremote"
	sdktrace "go.opentelemetry.io/otel/sdk/trace"
)

// TestRouterBehindJaegerRemote feeds the SDK's jaegerremote sampler a probabilistic
// strategy from a test sampling server and passes what it keeps through the router's
// Sampler at the same rate: the router keeps all of it.
func TestRouterBehindJaegerRemote(t *testing.T) {
	const rate = 0.2
	var fetches atomic.Int32
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		fetches.Add(1)
		w.Header().Set("Connection", "close")
		w.Header().Set("Content-Type", "application/json")
		_, _ = w.Write([]byte(`{"strategyType":"PROBABILISTIC","probabilisticSampling":{"samplingRate":0.2}}`))
	}))
	defer srv.Close()
	remote := jaegerremote.New("checkout",
		jaegerremote.WithSamplingServerURL(srv.URL),
		jaegerremote.WithSamplingRefreshInterval(time.Hour),
		jaegerremote.WithInitialSampler(sdktrace.NeverSample()))
	defer remote.Close()
	remote.UpdateSampler() // synchronous: the strategy is in place when it returns
	if fetches.Load() == 0 {
		t.Fatal("the sampler did not fetch its strategy")
	}

	const n = 50000
	s := New(rate)
	var sdkKept, kept int
	for _, id := range randomIDs(n, 8) {
		if !sdkKeeps(remote, id) {
			continue
		}
		sdkKept++
		if s.Decide(id, nil, nil).Keep {
			kept++
		}
	}
	within3Sigma(t, "jaegerremote at 0.2", sdkKept, n, rate)
	if kept != sdkKept {
		t.Fatalf("router kept %d of the %d traces the SDK kept, want all", kept, sdkKept)
	}
}
