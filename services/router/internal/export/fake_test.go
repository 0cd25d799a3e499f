package export

import (
	"context"
	"encoding/binary"
	"net"
	"sync"
	"testing"

	"go.opentelemetry.io/collector/pdata/pcommon"
	"go.opentelemetry.io/collector/pdata/ptrace"
	"go.opentelemetry.io/collector/pdata/ptrace/ptraceotlp"
	"google.golang.org/grpc"

	"github.com/otelfleet/otelfleet/services/router/internal/otlpwire"
)

// verdict is what the fake backend answers to its call number n (from 0): rejected
// spans in partial_success, or an error.
type verdict func(n int) (rejected int64, err error)

// fakeBackend is a real OTLP/gRPC trace server on 127.0.0.1 that counts every span it
// takes by span ID, and can fail, reject or hang on demand.
type fakeBackend struct {
	ptraceotlp.UnimplementedGRPCServer
	addr string
	srv  *grpc.Server

	mu      sync.Mutex
	spans   map[uint64]int
	calls   int
	verdict verdict
	hang    chan struct{} // non-nil: calls block until it is closed (or they are cancelled)
	hanging int           // calls blocked in hang now
	started chan struct{} // signalled when a call starts (cap 64)
}

func startFake(t *testing.T) *fakeBackend { return startFakeB(t) }

func startFakeB(t testing.TB) *fakeBackend {
	t.Helper()
	lis, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	f := &fakeBackend{addr: lis.Addr().String(), srv: grpc.NewServer(), spans: map[uint64]int{}, started: make(chan struct{}, 64)}
	ptraceotlp.RegisterGRPCServer(f.srv, f)
	go func() { _ = f.srv.Serve(lis) }()
	t.Cleanup(f.srv.Stop)
	return f
}

func (f *fakeBackend) Export(ctx context.Context, req ptraceotlp.ExportRequest) (ptraceotlp.ExportResponse, error) {
	f.mu.Lock()
	n := f.calls
	f.calls++
	v, hang := f.verdict, f.hang
	if hang != nil {
		f.hanging++
	}
	f.mu.Unlock()
	select {
	case f.started <- struct{}{}:
	default:
	}
	resp := ptraceotlp.NewExportResponse()
	if hang != nil {
		defer func() {
			f.mu.Lock()
			f.hanging--
			f.mu.Unlock()
		}()
		select {
		case <-hang:
		case <-ctx.Done():
			return resp, ctx.Err()
		}
	}
	var rejected int64
	if v != nil {
		r, err := v(n)
		if err != nil {
			return resp, err
		}
		rejected = r
	}
	f.mu.Lock()
	defer f.mu.Unlock()
	rs := req.Traces().ResourceSpans()
	for i := range rs.Len() {
		ss := rs.At(i).ScopeSpans()
		for j := range ss.Len() {
			sp := ss.At(j).Spans()
			for k := range sp.Len() {
				id := sp.At(k).SpanID()
				f.spans[binary.BigEndian.Uint64(id[:])]++
			}
		}
	}
	if rejected > 0 {
		resp.PartialSuccess().SetRejectedSpans(rejected)
		resp.PartialSuccess().SetErrorMessage("rejected on demand")
	}
	return resp, nil
}

func (f *fakeBackend) set(v verdict) {
	f.mu.Lock()
	f.verdict = v
	f.mu.Unlock()
}

// received returns the number of distinct spans and of duplicate deliveries.
func (f *fakeBackend) received() (distinct, dups int) {
	f.mu.Lock()
	defer f.mu.Unlock()
	for _, c := range f.spans {
		distinct++
		dups += c - 1
	}
	return
}

func (f *fakeBackend) hangingNow() int64 {
	f.mu.Lock()
	defer f.mu.Unlock()
	return int64(f.hanging)
}

func (f *fakeBackend) callCount() int {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.calls
}

// traceBatch is an encoded trace request with n spans whose span IDs are first..first+n-1.
func traceBatch(t testing.TB, first uint64, n int) Batch {
	t.Helper()
	td := ptrace.NewTraces()
	rs := td.ResourceSpans().AppendEmpty()
	rs.Resource().Attributes().PutStr("service.name", "svc")
	ss := rs.ScopeSpans().AppendEmpty()
	for i := range n {
		sp := ss.Spans().AppendEmpty()
		var sid pcommon.SpanID
		binary.BigEndian.PutUint64(sid[:], first+uint64(i)+1<<32) // never all zero
		var tid pcommon.TraceID
		binary.BigEndian.PutUint64(tid[8:], first+uint64(i))
		tid[0] = 1
		sp.SetSpanID(sid)
		sp.SetTraceID(tid)
		sp.SetName("op")
	}
	b, err := ptraceotlp.NewExportRequestFromTraces(td).MarshalProto()
	if err != nil {
		t.Fatal(err)
	}
	return Batch{Signal: otlpwire.Traces, Payload: b, Items: n}
}
