package export

import (
	"context"
	"errors"
	"io"
	"log/slog"
	"net"
	"net/http"
	"strconv"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/klauspost/compress/gzip"
	"github.com/klauspost/compress/zstd"
	"go.opentelemetry.io/collector/pdata/ptrace/ptraceotlp"
	"google.golang.org/genproto/googleapis/rpc/errdetails"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/types/known/durationpb"

	"github.com/otelfleet/otelfleet/pkg/natstest"
)

func quiet() Option { return WithLogger(slog.New(slog.DiscardHandler)) }

func newQuiet(t *testing.T, cfg Config, rr Rerouter, opts ...Option) *Exporter {
	t.Helper()
	e, err := New(cfg, rr, append([]Option{quiet()}, opts...)...)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		_ = e.Close(ctx)
	})
	return e
}

func unavailable(int) (int64, error) { return 0, status.Error(codes.Unavailable, "down on demand") }

func TestRetriesOnlyTheFailedBackendsBatch(t *testing.T) {
	a, b := startFake(t), startFake(t)
	a.set(func(n int) (int64, error) {
		if n < 2 {
			return unavailable(n)
		}
		return 0, nil
	})
	cfg := testConfig()
	cfg.MaxBatchItems = 10
	var rr collector
	e := newQuiet(t, cfg, rr.reroute)
	e.SetTargets([]Target{{Key: "a", Addr: a.addr}, {Key: "b", Addr: b.addr}})
	if err := e.Submit("a", traceBatch(t, 0, 10)); err != nil {
		t.Fatal(err)
	}
	if err := e.Submit("b", traceBatch(t, 100, 10)); err != nil {
		t.Fatal(err)
	}
	natstest.Eventually(t, 10*time.Second, func() bool { return stat(e, "a").Sent == 10 && stat(e, "b").Sent == 10 }, "both delivered")
	if sa, sb := stat(e, "a"), stat(e, "b"); sa.Retried != 20 || sb.Retried != 0 || sa.Failed != 0 || sa.Rerouted != 0 {
		t.Fatalf("a %+v, b %+v: want a's 10 items retried twice, nothing else", sa, sb)
	}
	if n := b.callCount(); n != 1 {
		t.Fatalf("b got %d calls: a's retries replayed to it", n)
	}
	for _, f := range []*fakeBackend{a, b} {
		if d, dups := f.received(); d != 10 || dups != 0 {
			t.Fatalf("received %d distinct, %d duplicates", d, dups)
		}
	}
}

func TestRetryInfoIsHonoured(t *testing.T) {
	a := startFake(t)
	const wait = 300 * time.Millisecond
	var mu sync.Mutex
	var times []time.Time
	a.set(func(n int) (int64, error) {
		mu.Lock()
		times = append(times, time.Now())
		mu.Unlock()
		if n == 0 {
			st, _ := status.New(codes.ResourceExhausted, "slow down").WithDetails(&errdetails.RetryInfo{RetryDelay: durationpb.New(wait)})
			return 0, st.Err()
		}
		return 0, nil
	})
	var rr collector
	e := newQuiet(t, testConfig(), rr.reroute)
	e.SetTargets([]Target{{Key: "a", Addr: a.addr}})
	if err := e.Submit("a", traceBatch(t, 0, 5)); err != nil {
		t.Fatal(err)
	}
	natstest.Eventually(t, 10*time.Second, func() bool { return stat(e, "a").Sent == 5 }, "delivered after the throttle")
	mu.Lock()
	defer mu.Unlock()
	if gap := times[1].Sub(times[0]); gap < wait {
		t.Fatalf("retried after %v, RetryInfo asked for %v", gap, wait)
	}
}

func TestNonRetryableAndPartialSuccess(t *testing.T) {
	a := startFake(t)
	a.set(func(n int) (int64, error) {
		switch n {
		case 0:
			return 3, nil // partial: the backend's verdict on 3 spans
		case 1:
			return 0, status.Error(codes.ResourceExhausted, "no RetryInfo: not retryable")
		}
		return 0, status.Error(codes.InvalidArgument, "refused")
	})
	cfg := testConfig()
	cfg.Senders = 1
	var rr collector
	e := newQuiet(t, cfg, rr.reroute)
	e.SetTargets([]Target{{Key: "a", Addr: a.addr}})
	for i := range 3 {
		if err := e.Submit("a", traceBatch(t, uint64(i*100), 10)); err != nil {
			t.Fatal(err)
		}
		n := i + 1
		natstest.Eventually(t, 5*time.Second, func() bool { return a.callCount() == n }, "call %d", n)
	}
	natstest.Eventually(t, 5*time.Second, func() bool { return rr.count() == 20 }, "refused batches handed back")
	s := stat(e, "a")
	if s.Sent != 7 || s.Failed != 23 || s.Retried != 0 || s.Rerouted != 20 || s.Dropped != 0 {
		t.Fatalf("stats %+v: want sent 7, failed 3+10+10, rerouted 20, no retries", s)
	}
	rr.mu.Lock()
	defer rr.mu.Unlock()
	for _, b := range rr.batches {
		if b.HandedBack != 1 {
			t.Fatalf("HandedBack %d", b.HandedBack)
		}
	}
}

func TestRetriesExhaustedHandBack(t *testing.T) {
	a := startFake(t)
	a.set(unavailable)
	cfg := testConfig()
	cfg.MaxRetries = 2
	var rr collector
	e := newQuiet(t, cfg, rr.reroute)
	e.SetTargets([]Target{{Key: "a", Addr: a.addr}})
	if err := e.Submit("a", traceBatch(t, 0, 10)); err != nil {
		t.Fatal(err)
	}
	natstest.Eventually(t, 5*time.Second, func() bool { return rr.count() == 10 }, "handed back")
	if s := stat(e, "a"); s.Retried != 20 || s.Rerouted != 10 || s.Failed != 0 || s.Sent != 0 || a.callCount() != 3 {
		t.Fatalf("stats %+v after %d calls", s, a.callCount())
	}
}

// TestKillBackendMidStream streams spans to two backends, kills one while calls to it
// are in flight (its server stopped: listener and connections closed), and re-routes
// what it hands back to the other, as the router does: every span arrives exactly once.
func TestKillBackendMidStream(t *testing.T) {
	a, b := startFake(t), startFake(t)
	cfg := testConfig()
	cfg.MaxBatchItems = 20
	cfg.MaxRetries = 2
	var e *Exporter
	var rerouted atomic.Int64
	e = newQuiet(t, cfg, func(from string, bt Batch) {
		rerouted.Add(int64(bt.Items))
		for e.Submit("b", bt) != nil {
			time.Sleep(time.Millisecond)
		}
	})
	e.SetTargets([]Target{{Key: "a", Addr: a.addr}, {Key: "b", Addr: b.addr}})
	const total = 4000
	next := uint64(0)
	submit := func() {
		key := "a"
		if next%20 < 10 {
			key = "b"
		}
		bt := traceBatch(t, next, 5)
		if err := e.Submit(key, bt); err != nil {
			if !errors.Is(err, ErrNoTarget) {
				t.Fatal(err)
			}
			for e.Submit("b", bt) != nil { // a has left: the router routes to b
				time.Sleep(time.Millisecond)
			}
		}
		next += 5
	}
	for next < total/2 {
		submit()
	}
	a.mu.Lock()
	a.hang = make(chan struct{})
	a.mu.Unlock()
	// Once every call in flight to a hangs in a (none is between a's taking it and its
	// answer arriving: a duplicate no protocol can avoid), a is killed: the calls fail,
	// nothing more is accepted.
	natstest.Eventually(t, 5*time.Second, func() bool {
		n := e.InFlight("a")
		return n > 0 && a.hangingNow() == n
	}, "calls to a in flight, all hanging")
	a.srv.Stop()
	for next < total*3/4 {
		submit()
	}
	e.SetTargets([]Target{{Key: "b", Addr: b.addr}}) // its registration goes
	for next < total {
		submit()
	}
	// a's calls still in flight fail and are handed back (to b) before Close: once Close
	// begins, Submit refuses, and this test's rerouter (unlike the router's) keeps trying.
	natstest.Eventually(t, 30*time.Second, func() bool {
		for _, s := range e.Stats() {
			if s.Leaving {
				return false
			}
		}
		return true
	}, "a's in-flight calls finished and handed back")
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if err := e.Close(ctx); err != nil {
		t.Fatal(err)
	}
	da, dupA := a.received()
	db, dupB := b.received()
	a.mu.Lock()
	overlap := 0
	for id := range a.spans {
		if b.spans[id] > 0 {
			overlap++
		}
	}
	a.mu.Unlock()
	if da+db != total || dupA+dupB+overlap != 0 {
		t.Fatalf("a %d (+%d dups), b %d (+%d dups), %d on both: want %d exactly once", da, dupA, db, dupB, overlap, total)
	}
	if rerouted.Load() == 0 {
		t.Fatal("nothing was handed back")
	}
	for _, s := range e.Stats() {
		if s.Dropped != 0 {
			t.Fatalf("dropped: %+v", s)
		}
	}
}

// TestLeavingInFlightSuccessIsNotResent: a backend leaves while a call is in flight and
// another batch is queued: the queued one is handed back at once, the call that then
// succeeds is not.
func TestLeavingInFlightSuccessIsNotResent(t *testing.T) {
	a := startFake(t)
	hang := make(chan struct{})
	a.hang = hang
	cfg := testConfig()
	cfg.Senders, cfg.MaxBatchItems = 1, 1
	var rr collector
	e := newQuiet(t, cfg, rr.reroute)
	e.SetTargets([]Target{{Key: "a", Addr: a.addr}})
	if err := e.Submit("a", traceBatch(t, 0, 1)); err != nil {
		t.Fatal(err)
	}
	<-a.started
	if err := e.Submit("a", traceBatch(t, 1, 1)); err != nil {
		t.Fatal(err)
	}
	e.SetTargets(nil)
	if err := e.Submit("a", traceBatch(t, 2, 1)); !errors.Is(err, ErrNoTarget) {
		t.Fatalf("submit to a left backend: %v", err)
	}
	natstest.Eventually(t, 5*time.Second, func() bool { return rr.count() == 1 }, "queued batch handed back at once")
	close(hang)
	natstest.Eventually(t, 5*time.Second, func() bool { return len(e.Stats()) == 0 }, "a finished")
	if d, _ := a.received(); d != 1 || rr.count() != 1 {
		t.Fatalf("a received %d, handed back %d", d, rr.count())
	}
}

func TestErrFullAtTheByteLimitAndCloseFlushes(t *testing.T) {
	a := startFake(t)
	bt := traceBatch(t, 1000, 1) // every batch below has the same size
	cfg := testConfig()
	cfg.MaxWait, cfg.MaxBatchItems = time.Hour, 1000
	cfg.QueueBytes = int64(10 * len(bt.Payload))
	var rr collector
	e, err := New(cfg, rr.reroute, quiet())
	if err != nil {
		t.Fatal(err)
	}
	e.SetTargets([]Target{{Key: "a", Addr: a.addr}})
	for i := range 10 {
		if err := e.Submit("a", traceBatch(t, uint64(1001+i), 1)); err != nil {
			t.Fatalf("submit %d: %v", i, err)
		}
	}
	if err := e.Submit("a", traceBatch(t, 1011, 1)); !errors.Is(err, ErrFull) {
		t.Fatalf("submit past the limit: %v", err)
	}
	if s := stat(e, "a"); s.QueueBytes != cfg.QueueBytes {
		t.Fatalf("queue bytes %d, want %d", s.QueueBytes, cfg.QueueBytes)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if err := e.Close(ctx); err != nil {
		t.Fatal(err)
	}
	if d, dups := a.received(); d != 10 || dups != 0 || rr.count() != 0 {
		t.Fatalf("close delivered %d (+%d dups), handed back %d", d, dups, rr.count())
	}
	if err := e.Submit("a", bt); !errors.Is(err, ErrNoTarget) {
		t.Fatalf("submit after close: %v", err)
	}
}

func TestCloseGivesUpAndHandsBack(t *testing.T) {
	a := startFake(t)
	a.hang = make(chan struct{})
	defer close(a.hang)
	var rr collector
	e, err := New(testConfig(), rr.reroute, quiet())
	if err != nil {
		t.Fatal(err)
	}
	e.SetTargets([]Target{{Key: "a", Addr: a.addr}})
	if err := e.Submit("a", traceBatch(t, 0, 4)); err != nil {
		t.Fatal(err)
	}
	<-a.started
	ctx, cancel := context.WithTimeout(context.Background(), 100*time.Millisecond)
	defer cancel()
	if err := e.Close(ctx); !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("close: %v", err)
	}
	if rr.count() != 4 {
		t.Fatalf("handed back %d, want 4", rr.count())
	}
}

// httpFake is a real OTLP/HTTP trace server that fails its first call with 503 and
// Retry-After, then rejects one span per call in partial_success.
type httpFake struct {
	mu       sync.Mutex
	calls    int
	spans    int
	encoding []string
}

func (h *httpFake) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	h.mu.Lock()
	defer h.mu.Unlock()
	h.calls++
	h.encoding = append(h.encoding, r.Header.Get("Content-Encoding"))
	if r.URL.Path != "/v1/traces" || r.Header.Get("Content-Type") != "application/x-protobuf" {
		http.Error(w, "bad request "+r.URL.Path, http.StatusBadRequest)
		return
	}
	if h.calls == 1 {
		w.Header().Set("Retry-After", "0")
		http.Error(w, "busy", http.StatusServiceUnavailable)
		return
	}
	var body io.Reader = r.Body
	switch r.Header.Get("Content-Encoding") {
	case "gzip":
		gz, err := gzip.NewReader(r.Body)
		if err != nil {
			http.Error(w, err.Error(), http.StatusBadRequest)
			return
		}
		body = gz
	case "zstd":
		zr, err := zstd.NewReader(r.Body)
		if err != nil {
			http.Error(w, err.Error(), http.StatusBadRequest)
			return
		}
		defer zr.Close()
		body = zr
	}
	raw, err := io.ReadAll(body)
	if err != nil {
		http.Error(w, err.Error(), http.StatusBadRequest)
		return
	}
	req := ptraceotlp.NewExportRequest()
	if err := req.UnmarshalProto(raw); err != nil {
		http.Error(w, err.Error(), http.StatusBadRequest)
		return
	}
	h.spans += req.Traces().SpanCount()
	resp := ptraceotlp.NewExportResponse()
	resp.PartialSuccess().SetRejectedSpans(1)
	out, _ := resp.MarshalProto()
	w.Header().Set("Content-Type", "application/x-protobuf")
	_, _ = w.Write(out)
}

func TestHTTPExport(t *testing.T) {
	for _, comp := range []string{CompressionNone, CompressionGzip, CompressionZstd} {
		t.Run(comp, func(t *testing.T) {
			lis, err := net.Listen("tcp", "127.0.0.1:0")
			if err != nil {
				t.Fatal(err)
			}
			h := &httpFake{}
			srv := &http.Server{Handler: h, ReadHeaderTimeout: 5 * time.Second}
			go func() { _ = srv.Serve(lis) }()
			defer srv.Close()
			cfg := testConfig()
			cfg.Protocol, cfg.Compression = ProtocolHTTP, comp
			var rr collector
			e := newQuiet(t, cfg, rr.reroute)
			e.SetTargets([]Target{{Key: "a", Addr: lis.Addr().String()}})
			if err := e.Submit("a", traceBatch(t, 0, 10)); err != nil {
				t.Fatal(err)
			}
			natstest.Eventually(t, 5*time.Second, func() bool { return stat(e, "a").Sent == 9 }, "sent after one retry")
			s := stat(e, "a")
			h.mu.Lock()
			defer h.mu.Unlock()
			if s.Retried != 10 || s.Failed != 1 || h.spans != 10 || h.calls != 2 {
				t.Fatalf("stats %+v, server got %d spans in %d calls", s, h.spans, h.calls)
			}
			want := comp
			if comp == CompressionNone {
				want = ""
			}
			if h.encoding[1] != want {
				t.Fatalf("Content-Encoding %q, want %q", h.encoding[1], want)
			}
		})
	}
}

func TestRetryAfter(t *testing.T) {
	now := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
	for in, want := range map[string]time.Duration{
		"": 0, "3": 3 * time.Second, "-1": 0, "soon": 0,
		now.Add(2 * time.Second).Format(http.TimeFormat): 2 * time.Second,
		strconv.Itoa(0): 0,
	} {
		if got := retryAfter(in, now); got != want {
			t.Errorf("retryAfter(%q) = %v, want %v", in, got, want)
		}
	}
}
