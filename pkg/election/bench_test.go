package election_test

import (
	"context"
	"fmt"
	"math/rand/v2"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/nats-io/nats.go"

	"github.com/otelfleet/otelfleet/pkg/election"
	"github.com/otelfleet/otelfleet/pkg/lease/leasetest"
	"github.com/otelfleet/otelfleet/pkg/natstest"
)

// benchTTL is the lease TTL of the failover benchmarks.
const benchTTL = 2 * time.Second

// benchPool keeps n candidates for "demo" on one server, each on its own connection,
// and reports every term start.
type benchPool struct {
	b     *testing.B
	st    *leasetest.KVStore
	ctx   context.Context
	terms chan benchTerm
	mu    sync.Mutex
	byID  map[string]*benchCand
	next  int
	wg    sync.WaitGroup
}

type benchTerm struct {
	id    string
	token uint64
	at    time.Time
}

type benchCand struct {
	e  *election.Election
	nc *nats.Conn
}

func newBenchPool(b *testing.B, n int) *benchPool {
	b.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	p := &benchPool{b: b, st: leasetest.KV(b, natstest.Run(b), benchTTL), ctx: ctx, terms: make(chan benchTerm, 64), byID: map[string]*benchCand{}}
	b.Cleanup(func() { cancel(); p.wg.Wait() })
	for range n {
		p.add()
	}
	return p
}

// add starts one more candidate.
func (p *benchPool) add() {
	p.mu.Lock()
	id := fmt.Sprintf("c%d", p.next)
	p.next++
	p.mu.Unlock()
	l, nc := p.st.LeaseConn(p.b, "demo")
	e, err := election.New(l, election.Config{Role: "demo", ID: id}, nil, nil)
	if err != nil {
		p.b.Fatal(err)
	}
	p.mu.Lock()
	p.byID[id] = &benchCand{e: e, nc: nc}
	p.mu.Unlock()
	p.wg.Add(1)
	go func() {
		defer p.wg.Done()
		_ = e.Run(p.ctx, p.lead(id))
	}()
}

// lead reports the term and holds it until it ends.
func (p *benchPool) lead(id string) func(election.Term) {
	return func(t election.Term) {
		select {
		case p.terms <- benchTerm{id: id, token: t.Token, at: time.Now()}:
		case <-p.ctx.Done():
		}
		<-t.Ctx.Done()
	}
}

func (p *benchPool) cand(id string) *benchCand {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.byID[id]
}

func (p *benchPool) nextTerm(after uint64, within time.Duration) benchTerm {
	p.b.Helper()
	timeout := time.After(within)
	for {
		select {
		case t := <-p.terms:
			if t.token > after {
				return t
			}
		case <-timeout:
			p.b.Fatalf("no new leader within %v", within)
		}
	}
}

func reportPercentiles(b *testing.B, ds []time.Duration) {
	b.Helper()
	slices.Sort(ds)
	pct := func(q float64) time.Duration { return ds[min(len(ds)-1, int(q*float64(len(ds))))] }
	ms := func(d time.Duration) float64 { return float64(d) / float64(time.Millisecond) }
	b.ReportMetric(ms(pct(0.50)), "p50-ms")
	b.ReportMetric(ms(pct(0.99)), "p99-ms")
	b.ReportMetric(ms(ds[len(ds)-1]), "max-ms")
	b.ReportMetric(0, "ns/op") // the wall time per op says nothing here
}

// BenchmarkFailoverAbrupt measures the time from cutting the leader off (connection
// closed, no resign) to the next leader's term starting, with a 2s lease TTL. The cut
// happens at a random phase of the renewal cycle. Run with -benchtime=20x or more.
func BenchmarkFailoverAbrupt(b *testing.B) {
	b.ReportAllocs()
	p := newBenchPool(b, 3)
	cur := p.nextTerm(0, 10*time.Second)
	var ds []time.Duration
	b.ResetTimer()
	for range b.N {
		time.Sleep(rand.N(benchTTL / 3)) // random phase against the renewals
		cut := time.Now()
		p.cand(cur.id).nc.Close()
		next := p.nextTerm(cur.token, benchTTL+3*time.Second)
		ds = append(ds, next.at.Sub(cut))
		p.add() // keep three candidates
		cur = next
	}
	b.StopTimer()
	reportPercentiles(b, ds)
}

// BenchmarkHandoverGraceful measures the time from Resign on the leader to the next
// leader's term starting.
func BenchmarkHandoverGraceful(b *testing.B) {
	b.ReportAllocs()
	p := newBenchPool(b, 3)
	cur := p.nextTerm(0, 10*time.Second)
	var ds []time.Duration
	b.ResetTimer()
	for range b.N {
		c := p.cand(cur.id)
		start := time.Now()
		if err := c.e.Resign(context.Background()); err != nil {
			b.Fatal(err)
		}
		next := p.nextTerm(cur.token, benchTTL+3*time.Second)
		ds = append(ds, next.at.Sub(start))
		p.wg.Add(1)
		id := cur.id
		go func() { // back into the race
			defer p.wg.Done()
			_ = c.e.Run(p.ctx, p.lead(id))
		}()
		cur = next
	}
	b.StopTimer()
	reportPercentiles(b, ds)
}
