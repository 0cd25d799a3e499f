package election_test

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"slices"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"github.com/prometheus/client_golang/prometheus"
	"go.uber.org/goleak"

	"github.com/otelfleet/otelfleet/pkg/election"
	"github.com/otelfleet/otelfleet/pkg/events"
	"github.com/otelfleet/otelfleet/pkg/lease"
	"github.com/otelfleet/otelfleet/pkg/lease/leasetest"
	"github.com/otelfleet/otelfleet/pkg/natstest"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m, leasetest.IgnoredGoroutines()...) }

const ttl = time.Second

func testLog() *slog.Logger {
	if os.Getenv("TEST_LOG") != "" {
		return slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelDebug}))
	}
	return nil
}

// candidateStore opens candidates' leases on one store: each with its own client, a
// function that cuts it off abruptly (no resign), and an event publisher (or nil).
type candidateStore interface {
	open(t *testing.T) (l lease.Lease, cut func(), pub election.Publisher)
}

type kvStore struct{ *leasetest.KVStore }

func (s kvStore) open(t *testing.T) (lease.Lease, func(), election.Publisher) {
	l, nc := s.LeaseConn(t, "demo", nats.ReconnectWait(50*time.Millisecond), nats.MaxReconnects(-1))
	return l, nc.Close, nc
}

type memStore struct{ *leasetest.MemStore }

func (s memStore) open(t *testing.T) (lease.Lease, func(), election.Publisher) {
	var fail atomic.Bool
	return &leasetest.Faulty{Lease: s.Lease(t, "demo"), Fail: &fail}, func() { fail.Store(true) }, nil
}

func forEachStore(t *testing.T, body func(t *testing.T, st candidateStore)) {
	t.Helper()
	for name, open := range map[string]func(t *testing.T) candidateStore{
		"kv":     func(t *testing.T) candidateStore { return kvStore{leasetest.KV(t, natstest.Run(t), ttl)} },
		"memory": func(t *testing.T) candidateStore { return memStore{leasetest.Memory(t, ttl)} },
	} {
		t.Run(name, func(t *testing.T) {
			t.Parallel()
			body(t, open(t))
		})
	}
}

// termRecord is one term as the leader work saw it: from when the winning Create was
// sent (Term.Since, the earliest the term can have begun) to when the work saw its
// context cancelled (no earlier than the term's real end).
type termRecord struct {
	id         string
	token      uint64
	start, end time.Time
	began      time.Time // when the lead callback ran
	reason     string    // Term.Reason once the work saw Ctx done
}

type recorder struct {
	mu    sync.Mutex
	terms []termRecord
}

func (r *recorder) lead(id string) func(election.Term) {
	return func(t election.Term) {
		r.mu.Lock()
		i := len(r.terms)
		r.terms = append(r.terms, termRecord{id: id, token: t.Token, start: t.Since, began: time.Now()})
		r.mu.Unlock()
		<-t.Ctx.Done()
		end := time.Now()
		r.mu.Lock()
		r.terms[i].end, r.terms[i].reason = end, t.Reason()
		r.mu.Unlock()
	}
}

// open returns the term in progress, if any.
func (r *recorder) open() (termRecord, bool) {
	r.mu.Lock()
	defer r.mu.Unlock()
	for _, tr := range r.terms {
		if tr.end.IsZero() {
			return tr, true
		}
	}
	return termRecord{}, false
}

// waitLeader waits for a term in progress that is newer than after.
func (r *recorder) waitLeader(t *testing.T, within time.Duration, after uint64) termRecord {
	t.Helper()
	var got termRecord
	natstest.Eventually(t, within, func() bool {
		tr, ok := r.open()
		if ok && tr.token > after {
			got = tr
			return true
		}
		return false
	}, "no leader with a token above %d", after)
	return got
}

// check asserts that terms never overlap, that tokens strictly increase and that every
// ended term knew why it ended when its work stopped.
func (r *recorder) check(t *testing.T) {
	t.Helper()
	r.mu.Lock()
	terms := slices.Clone(r.terms)
	r.mu.Unlock()
	for _, tr := range terms {
		if !tr.end.IsZero() && tr.reason == "unknown" {
			t.Errorf("term %d of %s ended with no known cause", tr.token, tr.id)
		}
	}
	// Terms are ordered by when their leader work began (after the lease was won).
	// Term.Since is taken before the winning Create was sent (the lease's deadline counts
	// from there), so a Create sent just before the previous holder's delete and applied
	// after it has a Since earlier than the previous term's end without any overlap.
	slices.SortFunc(terms, func(a, b termRecord) int { return a.began.Compare(b.began) })
	for i := 1; i < len(terms); i++ {
		prev, cur := terms[i-1], terms[i]
		if prev.end.IsZero() {
			t.Fatalf("term %d of %s still open when term %d of %s began", prev.token, prev.id, cur.token, cur.id)
		}
		if !prev.end.Before(cur.began) {
			t.Errorf("terms overlap: %s token %d ended %v after %s token %d began", prev.id, prev.token, prev.end.Sub(cur.began), cur.id, cur.token)
		}
		if cur.token <= prev.token {
			t.Errorf("token %d of %s not above the previous %d", cur.token, cur.id, prev.token)
		}
	}
}

type candidate struct {
	id  string
	e   *election.Election
	cut func()
	err chan error
}

// start runs n candidates for "demo" until the test ends.
func start(t *testing.T, st candidateStore, rec *recorder, n int) []*candidate {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	var cands []*candidate
	for i := range n {
		l, cut, pub := st.open(t)
		id := fmt.Sprintf("c%d", i)
		e, err := election.New(l, election.Config{Role: "demo", ID: id}, testLog(), pub)
		if err != nil {
			t.Fatal(err)
		}
		c := &candidate{id: id, e: e, cut: cut, err: make(chan error, 1)}
		go func() { c.err <- e.Run(ctx, rec.lead(id)) }()
		cands = append(cands, c)
	}
	t.Cleanup(func() {
		cancel()
		for _, c := range cands {
			select {
			case <-c.err:
			case <-time.After(10 * time.Second):
				t.Errorf("candidate %s did not stop", c.id)
			}
		}
	})
	return cands
}

func byID(cands []*candidate, id string) *candidate {
	for _, c := range cands {
		if c.id == id {
			return c
		}
	}
	return nil
}

func TestFailoverAfterAbruptLoss(t *testing.T) {
	t.Parallel()
	forEachStore(t, func(t *testing.T, st candidateStore) {
		rec := &recorder{}
		cands := start(t, st, rec, 5)
		ld := rec.waitLeader(t, 5*time.Second, 0)
		for round := range 3 {
			cutAt := time.Now()
			byID(cands, ld.id).cut() // no resign: the lease must expire
			next := rec.waitLeader(t, ttl+time.Second, ld.token)
			t.Logf("round %d: %s (token %d) cut off, %s (token %d) leads after %v", round, ld.id, ld.token, next.id, next.token, next.began.Sub(cutAt).Round(time.Millisecond))
			if next.id == ld.id {
				t.Fatalf("the cut-off candidate %s won again", ld.id)
			}
			ld = next
		}
		leaders := 0
		for _, c := range cands {
			if c.e.IsLeader() {
				leaders++
			}
		}
		if leaders != 1 {
			t.Errorf("%d candidates say they lead, want 1", leaders)
		}
		rec.check(t)
	})
}

func TestGracefulResignHandsOverAtOnce(t *testing.T) {
	t.Parallel()
	forEachStore(t, func(t *testing.T, st candidateStore) {
		rec := &recorder{}
		cands := start(t, st, rec, 3)
		ld := rec.waitLeader(t, 5*time.Second, 0)
		for range 3 {
			c := byID(cands, ld.id)
			resigned := time.Now()
			if err := c.e.Resign(context.Background()); err != nil {
				t.Fatal(err)
			}
			if err := <-c.err; err != nil {
				t.Fatalf("Run after Resign: %v", err)
			}
			next := rec.waitLeader(t, ttl, ld.token)
			// At once: not by waiting for the lease to expire (ttl), which is what a
			// resignation that did not delete the key would cost.
			if d := next.began.Sub(resigned); d >= ttl {
				t.Errorf("handover took %v, want well under the lease TTL %v", d, ttl)
			}
			if c.e.IsLeader() {
				t.Error("resigned candidate still says it leads")
			}
			// Put the resigned candidate back in the race.
			go func() { c.err <- c.e.Run(t.Context(), rec.lead(c.id)) }()
			ld = next
		}
		rec.check(t)
	})
}

func TestLeadershipRecoversAfterNATSRestart(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		name string
		down time.Duration // how long the server stays down
	}{
		{name: "quick restart", down: 0},
		{name: "outage longer than the TTL", down: 2 * ttl},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			srv := natstest.Run(t)
			st := kvStore{leasetest.KV(t, srv, ttl)}
			rec := &recorder{}
			cands := start(t, st, rec, 3)
			ld := rec.waitLeader(t, 5*time.Second, 0)
			if tc.down > 0 {
				srv.Stop()
				time.Sleep(tc.down) // the outage itself, not synchronisation
				if _, ok := rec.open(); ok {
					t.Errorf("a term is still open after a %v outage; it should have ended at TTL - margin", tc.down)
				}
			}
			srv.Restart(t)
			restarted := time.Now()
			// Recovered: the store shows a leader that renewed after the restart, and that
			// candidate holds a live term with the same token.
			observer := st.Lease(t, "demo")
			var cur election.Leader
			natstest.Eventually(t, 10*time.Second, func() bool {
				got, ok, err := election.ReadLeader(t.Context(), observer)
				if err != nil || !ok || !got.RenewedAt.After(restarted) {
					return false
				}
				c := byID(cands, got.Holder)
				tm, leads := c.e.Current()
				cur = got
				return leads && tm.Token == got.Token
			}, "no leader renewing after the restart")
			t.Logf("before: %s token %d; %v after the restart: %s token %d", ld.id, ld.token, time.Since(restarted).Round(time.Millisecond), cur.Holder, cur.Token)
			leaders := 0
			for _, c := range cands {
				if c.e.IsLeader() {
					leaders++
				}
			}
			if leaders != 1 {
				t.Errorf("%d candidates lead, want 1", leaders)
			}
			rec.check(t)
		})
	}
}

func TestEventsAndObservers(t *testing.T) {
	t.Parallel()
	st := leasetest.KV(t, natstest.Run(t), ttl)
	ctx := t.Context()

	reg := prometheus.NewRegistry()
	l, nc := st.LeaseConn(t, "demo")
	var observed []string
	var mu sync.Mutex
	a, err := election.New(l, election.Config{Role: "demo", ID: "a", Registerer: reg, OnLeader: func(ld election.Leader) {
		mu.Lock()
		observed = append(observed, ld.Holder)
		mu.Unlock()
	}}, nil, nc)
	if err != nil {
		t.Fatal(err)
	}
	terms := make(chan election.Term, 1)
	if err := a.Start(func(tm election.Term) { terms <- tm }); err != nil {
		t.Fatal(err)
	}
	if err := a.Start(nil); !errors.Is(err, election.ErrRunning) {
		t.Fatalf("second Start: %v, want ErrRunning", err)
	}
	var term election.Term
	select {
	case term = <-terms:
	case <-time.After(5 * time.Second):
		t.Fatal("not elected")
	}
	if !a.IsLeader() {
		t.Fatal("IsLeader false during the term")
	}
	if got := gauge(t, reg, "otelfleet_election_leader"); got != 1 {
		t.Errorf("otelfleet_election_leader = %v, want 1", got)
	}
	if got := gauge(t, reg, "otelfleet_election_lease_ttl_seconds"); got != ttl.Seconds() {
		t.Errorf("otelfleet_election_lease_ttl_seconds = %v, want the bucket's %v", got, ttl.Seconds())
	}
	if got := gauge(t, reg, "otelfleet_election_vacant_seconds"); got != 0 {
		t.Errorf("otelfleet_election_vacant_seconds = %v while a leads, want 0", got)
	}

	// An observer reads the leader from the store.
	obs, err := election.New(st.Lease(t, "demo"), election.Config{Role: "demo", ID: "observer"}, nil, nil)
	if err != nil {
		t.Fatal(err)
	}
	natstest.Eventually(t, 2*time.Second, func() bool {
		ld, ok, err := obs.Leader(ctx)
		return err == nil && ok && ld.Holder == "a" && ld.Token == term.Token && !ld.Since.IsZero()
	}, "observer does not see a as leader with token %d", term.Token)

	if err := a.Stop(ctx); err != nil {
		t.Fatal(err)
	}
	if !errors.Is(context.Cause(term.Ctx), election.ErrResigned) {
		t.Errorf("term cause %v, want ErrResigned", context.Cause(term.Ctx))
	}
	if _, ok, err := obs.Leader(ctx); err != nil || ok {
		t.Errorf("after Stop: leader ok=%v err=%v, want vacant", ok, err)
	}
	// The role is vacant now, and the reading grows with the vacancy.
	first := gauge(t, reg, "otelfleet_election_vacant_seconds")
	natstest.Eventually(t, 2*time.Second, func() bool {
		return gauge(t, reg, "otelfleet_election_vacant_seconds") > first+0.05
	}, "otelfleet_election_vacant_seconds does not grow after the leader resigned (first %v)", first)

	// Both transitions are in the OTLP_EVENTS stream.
	stream, err := st.JS.Stream(ctx, events.Default.EventsStream())
	if err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		typ    events.EventType
		reason string
	}{{events.EventLeaderElected, ""}, {events.EventLeaderLost, "resigned"}} {
		var raw *jetstream.RawStreamMsg
		natstest.Eventually(t, 2*time.Second, func() bool {
			raw, err = stream.GetLastMsgForSubject(ctx, events.Default.EventSubject(tc.typ))
			return err == nil
		}, "no %s event", tc.typ)
		var ev events.LeaderChange
		if err := events.Decode(raw.Data, &ev); err != nil {
			t.Fatal(err)
		}
		if ev.Role != "demo" || ev.Holder != "a" || ev.Token != term.Token || ev.Reason != tc.reason {
			t.Errorf("%s event %+v, want role demo holder a token %d reason %q", tc.typ, ev, term.Token, tc.reason)
		}
		if got := raw.Header.Get(events.HeaderType); got != "io.otelfleet.leader.change.v1" {
			t.Errorf("ce-type %q", got)
		}
	}
	mu.Lock()
	defer mu.Unlock()
	if !slices.Contains(observed, "a") || observed[len(observed)-1] != "" {
		t.Errorf("OnLeader saw %q, want a then vacant", observed)
	}
}

// gauge reads the value of a gauge without labels other than constant ones.
func gauge(t *testing.T, reg *prometheus.Registry, name string) float64 {
	t.Helper()
	mfs, err := reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	for _, mf := range mfs {
		if mf.GetName() == name && len(mf.GetMetric()) == 1 {
			return mf.GetMetric()[0].GetGauge().GetValue()
		}
	}
	t.Fatalf("%s not registered", name)
	return 0
}

func TestConfigValidate(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name string
		cfg  election.Config
		ok   bool
	}{
		{name: "valid", cfg: election.Config{Role: "sampler", ID: "i1"}, ok: true},
		{name: "role with a dot", cfg: election.Config{Role: "lock.x", ID: "i1"}},
		{name: "empty role", cfg: election.Config{ID: "i1"}},
		{name: "empty id", cfg: election.Config{Role: "sampler"}},
		{name: "negative margin", cfg: election.Config{Role: "sampler", ID: "i1", Margin: -time.Second}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			err := tc.cfg.Validate()
			if tc.ok != (err == nil) {
				t.Fatalf("Validate() = %v, want ok=%v", err, tc.ok)
			}
			if err != nil && !errors.Is(err, election.ErrConfig) {
				t.Fatalf("error %v does not wrap ErrConfig", err)
			}
		})
	}
}
