package routersvc

import (
	"context"
	"encoding/json"
	"math/rand/v2"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/status"

	"github.com/otelfleet/otelfleet/pkg/events"
	"github.com/otelfleet/otelfleet/pkg/fleetconfig"
	"github.com/otelfleet/otelfleet/pkg/natstest"
)

const exportMethod = "/opentelemetry.proto.collector.trace.v1.TraceService/Export"

// exportOnce sends one 4-span trace over gRPC and returns the call's error on done.
func exportOnce(t *testing.T, cc *grpc.ClientConn, id [16]byte, spans int) <-chan error {
	t.Helper()
	req := traceRequest(t, "checkout", id, spans)
	done := make(chan error, 1)
	go func() {
		var out rawMsg
		done <- cc.Invoke(context.Background(), exportMethod, &rawMsg{b: req}, &out, grpc.ForceCodecV2(rawCodec{}))
	}()
	return done
}

func dial(t *testing.T, addr string) *grpc.ClientConn {
	t.Helper()
	cc, err := grpc.NewClient(addr, grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = cc.Close() })
	return cc
}

// heldBackend starts a router in mode ack with one backend whose Export waits for hold.
func heldBackend(t *testing.T, ack string, timeout time.Duration) (*env, *backend) {
	t.Helper()
	cfg := testConfig()
	cfg.Ack, cfg.AckTimeout, cfg.ExportTimeout = ack, timeout, time.Minute
	e := startRouter(t, cfg)
	b := e.addBackend("b1", func(b *backend) { b.hold = make(chan struct{}) })
	e.putGlobal(unlimited())
	e.putDecision(1)
	return e, b
}

// TestDeliveredWaitsForSlowBackend: in delivered mode the response waits while the
// backend's export call is in progress, and comes once the backend took the spans.
func TestDeliveredWaitsForSlowBackend(t *testing.T) {
	e, b := heldBackend(t, AckDelivered, time.Minute)
	done := exportOnce(t, dial(t, e.grpcAddr()), [16]byte{1}, 4)
	natstest.Eventually(t, 5*time.Second, func() bool { return b.entered.Load() > 0 }, "the batch never reached the backend")
	select {
	case err := <-done:
		t.Fatalf("answered (%v) while the backend had not taken the spans", err)
	default:
	}
	close(b.hold)
	if err := <-done; err != nil {
		t.Fatalf("export: %v", err)
	}
	if _, n := b.counts(); n != 4 {
		t.Fatalf("acknowledged with %d of 4 spans at the backend", n)
	}
}

// TestQueuedAnswersAtOnce: in queued mode the response comes while the backend still
// holds the export call.
func TestQueuedAnswersAtOnce(t *testing.T) {
	e, b := heldBackend(t, AckQueued, time.Minute)
	defer close(b.hold)
	err := <-exportOnce(t, dial(t, e.grpcAddr()), [16]byte{1}, 4)
	if err != nil {
		t.Fatalf("export: %v", err)
	}
	if _, n := b.counts(); n != 0 {
		t.Fatalf("backend already has %d spans: the test proves nothing", n)
	}
}

// TestDeliveredTimeout: a backend that never answers makes the client get UNAVAILABLE
// with a retry delay after --ack-timeout; the submitted spans count as duplicates.
func TestDeliveredTimeout(t *testing.T) {
	e, b := heldBackend(t, AckDelivered, 300*time.Millisecond)
	defer close(b.hold)
	start := time.Now()
	err := <-exportOnce(t, dial(t, e.grpcAddr()), [16]byte{1}, 4)
	if status.Code(err) != codes.Unavailable {
		t.Fatalf("want UNAVAILABLE, got %v", err)
	}
	if d, ok := retryAfterOf(err); !ok || d <= 0 {
		t.Fatalf("UNAVAILABLE without RetryInfo: %v", err)
	}
	if took := time.Since(start); took < 300*time.Millisecond {
		t.Fatalf("refused after %v, before the 300ms ack timeout", took)
	}
	if d := counterValue(t, e.r.m.duplicates); d != 4 {
		t.Fatalf("duplicates counter %v, want 4", d)
	}
	if n := counterValue(t, e.r.m.ackFailed); n != 1 {
		t.Fatalf("ack_unconfirmed %v, want 1", n)
	}
}

// acked is what clients were told was accepted, by trace.
type acked struct {
	mu   sync.Mutex
	sent map[[16]byte]int
}

// atBackends checks that every acknowledged span of a is at one of bs now (no waiting:
// in delivered mode an acknowledgement comes after delivery).
func (a *acked) atBackends(t *testing.T, bs ...*backend) {
	t.Helper()
	got := map[[16]byte]int{}
	for _, b := range bs {
		c, _ := b.counts()
		for id, n := range c {
			got[id] += n
		}
	}
	a.mu.Lock()
	defer a.mu.Unlock()
	want, missing := 0, 0
	for id, n := range a.sent {
		want += n
		if got[id] < n {
			missing += n - got[id]
		}
	}
	if want == 0 {
		t.Fatal("nothing was acknowledged: the test proves nothing")
	}
	if missing > 0 {
		t.Fatalf("%d of %d acknowledged spans are at no backend", missing, want)
	}
	t.Logf("%d acknowledged spans in %d traces, all at backends (which hold %d)", want, len(a.sent), total(bs...))
}

// sendUntil has workers send 4-span traces until stop closes; a refused request is
// retried until stop, and only successes are recorded.
func sendUntil(t *testing.T, addr string, workers int, stop <-chan struct{}) (*acked, *sync.WaitGroup) {
	t.Helper()
	cc := dial(t, addr)
	a := &acked{sent: map[[16]byte]int{}}
	var wg sync.WaitGroup
	for w := range workers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			rng := rand.New(rand.NewPCG(uint64(w), 11))
			for {
				var id [16]byte
				for i := range id {
					id[i] = byte(rng.Uint32())
				}
				req := traceRequest(t, "checkout", id, 4)
				for {
					select {
					case <-stop:
						return
					default:
					}
					ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
					var out rawMsg
					err := cc.Invoke(ctx, exportMethod, &rawMsg{b: req}, &out, grpc.ForceCodecV2(rawCodec{}))
					cancel()
					if err == nil {
						a.mu.Lock()
						a.sent[id] += 4
						a.mu.Unlock()
						break
					}
					select {
					case <-stop:
						return
					case <-time.After(5 * time.Millisecond): // the client's retry delay
					}
				}
			}
		}()
	}
	return a, &wg
}

// TestDeliveredBackendKilledMidStream: a backend dies mid-stream (registration still
// there); at the moment the clients stop, every span they were told was accepted is
// already at a backend.
func TestDeliveredBackendKilledMidStream(t *testing.T) {
	e := startRouter(t, testConfig())
	bs := []*backend{e.addBackend("b1"), e.addBackend("b2"), e.addBackend("b3")}
	e.putGlobal(unlimited())
	e.putDecision(1)
	stop := make(chan struct{})
	a, wg := sendUntil(t, e.grpcAddr(), 8, stop)
	// The deadlines bound a failure only: under -race with other tests alongside the same
	// progress takes several times longer.
	natstest.Eventually(t, 30*time.Second, func() bool { _, n := bs[1].counts(); return n > 200 }, "no traffic on b2")
	bs[1].srv.Stop()
	_, b1 := bs[0].counts()
	natstest.Eventually(t, 30*time.Second, func() bool { _, n := bs[0].counts(); return n > b1+800 }, "traffic did not continue")
	close(stop)
	wg.Wait()
	a.atBackends(t, bs...)
}

// TestDeliveredRouterCrash: the router is stopped abruptly mid-stream — its receivers
// cut every connection and its exporter is closed without time to flush — and every
// span a client saw acknowledged is at a backend.
func TestDeliveredRouterCrash(t *testing.T) {
	e := startRouter(t, testConfig())
	bs := []*backend{e.addBackend("b1"), e.addBackend("b2")}
	e.putGlobal(unlimited())
	e.putDecision(1)
	stop := make(chan struct{})
	a, wg := sendUntil(t, e.grpcAddr(), 8, stop)
	natstest.Eventually(t, 30*time.Second, func() bool { return total(bs...) > 2000 }, "no traffic")
	gone, cancel := context.WithCancel(context.Background())
	cancel()
	_ = e.r.rcv.Stop(gone)
	past, cancel2 := context.WithDeadline(context.Background(), time.Now().Add(-time.Second))
	defer cancel2()
	_ = e.r.Stop(past)
	close(stop)
	wg.Wait()
	a.atBackends(t, bs...)
}

// TestDeliveredManyClientsBatch: with many concurrent clients the batches still merge
// requests (fewer export calls than requests), and each client is answered promptly.
func TestDeliveredManyClientsBatch(t *testing.T) {
	e := startRouter(t, testConfig())
	b := e.addBackend("b1")
	e.putGlobal(unlimited())
	e.putDecision(1)
	cc := dial(t, e.grpcAddr())
	const clients, each = 16, 20
	var wg sync.WaitGroup
	var failed atomic.Int64
	for c := range clients {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := range each {
				if err := <-exportOnce(t, cc, [16]byte{byte(c), byte(i), 1}, 4); err != nil {
					failed.Add(1)
				}
			}
		}()
	}
	wg.Wait()
	if f := failed.Load(); f > 0 {
		t.Fatalf("%d requests failed", f)
	}
	if _, n := b.counts(); n != clients*each*4 {
		t.Fatalf("backend has %d spans, want %d", n, clients*each*4)
	}
	calls := b.entered.Load()
	t.Logf("%d requests in %d export calls", clients*each, calls)
	if calls >= clients*each {
		t.Fatalf("%d export calls for %d requests: no batching", calls, clients*each)
	}
}

// TestDeliveredAloneSkipsLinger: a request alone in the router is sent at once instead of
// after --ack-linger (its client waits for it and nobody else can add to the batch), so
// one sequential exporter does not wait out a linger per request; with company it lingers
// (TestDeliveredManyClientsBatch).
func TestDeliveredAloneSkipsLinger(t *testing.T) {
	cfg := testConfig()
	cfg.AckLinger = time.Second // the longest allowed
	e := startRouter(t, cfg)
	b := e.addBackend("b1")
	e.putGlobal(unlimited())
	e.putDecision(1)
	// A region config whose batches may wait longer than the linger, so the linger is
	// what would hold the batch.
	r := fleetconfig.DefaultRegion()
	r.Batch.MaxWaitTime = fleetconfig.Duration(time.Minute)
	r.Version, r.UpdatedBy = 1, "test"
	doc, err := json.Marshal(r)
	if err != nil {
		t.Fatal(err)
	}
	kv, err := e.js.KeyValue(context.Background(), events.Default.ConfigBucket())
	if err != nil {
		t.Fatal(err)
	}
	key, err := events.RegionConfigKey(testRegion)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := kv.Put(context.Background(), key, doc); err != nil {
		t.Fatal(err)
	}
	natstest.Eventually(t, 5*time.Second, func() bool {
		s := e.r.policy.Load().snap
		return s != nil && time.Duration(s.Region(testRegion).Batch.MaxWaitTime) == time.Minute
	}, "region config not applied")
	cc := dial(t, e.grpcAddr())
	start := time.Now()
	for i := range 3 {
		if err := <-exportOnce(t, cc, [16]byte{byte(i), 9}, 4); err != nil {
			t.Fatalf("export: %v", err)
		}
	}
	// Waiting out the linger, three requests take at least 3 s; without it, a few
	// export calls (half of that bounds a failure on a loaded machine).
	if took := time.Since(start); took > 3*cfg.AckLinger/2 {
		t.Fatalf("3 sequential requests took %v: they waited for the %v linger", took, cfg.AckLinger)
	} else {
		t.Logf("3 sequential requests answered in %v", took)
	}
	if _, n := b.counts(); n != 12 {
		t.Fatalf("backend has %d of 12 spans", n)
	}
}
