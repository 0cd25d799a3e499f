package loadmon

import (
	"errors"
	"fmt"
	"math"
	"slices"
	"sync"
	"testing"
	"time"

	"go.uber.org/goleak"

	"github.com/otelfleet/otelfleet/pkg/sysstat"
)

func TestMain(m *testing.M) {
	goleak.VerifyTestMain(m)
}

// t0 is the fake clock's origin.
var t0 = time.Date(2025, 1, 1, 12, 0, 0, 0, time.UTC)

// at returns the fake time sec seconds after t0.
func at(sec float64) time.Time {
	return t0.Add(time.Duration(sec * float64(time.Second)))
}

// newMonitor returns a Monitor with cfg, or the defaults when cfg is nil.
func newMonitor(t testing.TB, cfg *Config) *Monitor {
	t.Helper()
	c := DefaultConfig()
	if cfg != nil {
		c = *cfg
	}
	m, err := New(c)
	if err != nil {
		t.Fatalf("New: %v", err)
	}
	return m
}

// mustTick ticks and fails the test if no snapshot was produced.
func mustTick(t testing.TB, m *Monitor, now time.Time, r sysstat.Reading) Snapshot {
	t.Helper()
	s, ok := m.Tick(now, r)
	if !ok {
		t.Fatalf("Tick(%v) produced no snapshot", now)
	}
	return s
}

func approx(a, b float64) bool {
	return math.Abs(a-b) <= 1e-9*max(1, math.Abs(b))
}

func TestConfigValidate(t *testing.T) {
	tests := []struct {
		name    string
		mutate  func(*Config)
		wantErr bool
	}{
		{name: "defaults", mutate: func(*Config) {}},
		{name: "minimal", mutate: func(c *Config) { *c = Config{HistorySize: 1, TopServices: 0, MaxServices: 1} }},
		{name: "zero history", mutate: func(c *Config) { c.HistorySize = 0 }, wantErr: true},
		{name: "negative top services", mutate: func(c *Config) { c.TopServices = -1 }, wantErr: true},
		{name: "zero max services", mutate: func(c *Config) { c.MaxServices = 0 }, wantErr: true},
		{name: "zero value", mutate: func(c *Config) { *c = Config{} }, wantErr: true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			c := DefaultConfig()
			tt.mutate(&c)
			err := c.Validate()
			if (err != nil) != tt.wantErr {
				t.Fatalf("Validate() = %v, wantErr %v", err, tt.wantErr)
			}
			if err != nil && !errors.Is(err, ErrConfigValidation) {
				t.Errorf("Validate() = %v, does not wrap ErrConfigValidation", err)
			}
			if _, newErr := New(c); (newErr != nil) != tt.wantErr {
				t.Errorf("New() = %v, wantErr %v", newErr, tt.wantErr)
			}
		})
	}
}

func TestTickRates(t *testing.T) {
	m := newMonitor(t, nil)

	// Recorded before the first tick: part of the baseline, not of any rate.
	m.RecordSpans(999, 999)
	m.RecordError(999)
	if s, ok := m.Tick(at(0), sysstat.Reading{}); ok {
		t.Fatalf("first Tick returned a snapshot %+v, want priming only", s)
	}
	if _, ok := m.Latest(); ok {
		t.Fatal("Latest after priming tick reported a snapshot")
	}

	m.RecordSpans(600, 30_000)
	m.RecordSpans(400, 20_000)
	m.RecordError(10)
	reading := sysstat.Reading{ProcessCPU: 0.25, ProcessRSSBytes: 64 << 20}
	s := mustTick(t, m, at(2), reading)

	want := Snapshot{
		At:          at(2),
		Interval:    2 * time.Second,
		QPS:         500,
		BytesPerSec: 25_000,
		ErrorRate:   10.0 / 1010,
		CPU:         0.25,
		Memory:      64 << 20,
	}
	if !s.At.Equal(want.At) || s.Interval != want.Interval || s.QPS != want.QPS ||
		s.BytesPerSec != want.BytesPerSec || !approx(s.ErrorRate, want.ErrorRate) ||
		s.CPU != want.CPU || s.Memory != want.Memory {
		t.Errorf("snapshot = %+v\nwant       %+v", s, want)
	}

	// A quiet half-second: every rate is 0, and ErrorRate is 0, not NaN.
	s = mustTick(t, m, at(2.5), sysstat.Reading{})
	if s.QPS != 0 || s.BytesPerSec != 0 || s.ErrorRate != 0 || s.Interval != 500*time.Millisecond {
		t.Errorf("quiet snapshot = %+v, want zero rates over 500ms", s)
	}

	// Only errors: ErrorRate is 1.
	m.RecordError(3)
	if s = mustTick(t, m, at(3), sysstat.Reading{}); s.ErrorRate != 1 {
		t.Errorf("errors only: ErrorRate = %v, want 1", s.ErrorRate)
	}
}

func TestTickIgnoresNonIncreasingTime(t *testing.T) {
	m := newMonitor(t, nil)
	m.Tick(at(10), sysstat.Reading{})
	m.RecordSpans(100, 0)
	for _, now := range []time.Time{at(10), at(9)} {
		if _, ok := m.Tick(now, sysstat.Reading{}); ok {
			t.Errorf("Tick(%v) after Tick(%v) produced a snapshot", now, at(10))
		}
	}
	// The baseline is still at 10s, so the 100 spans cover 10s → 12s.
	if s := mustTick(t, m, at(12), sysstat.Reading{}); s.QPS != 50 {
		t.Errorf("QPS = %v, want 50", s.QPS)
	}
	if n := len(m.History()); n != 1 {
		t.Errorf("History has %d snapshots, want 1", n)
	}
}

func TestNegativeArgumentsIgnored(t *testing.T) {
	m := newMonitor(t, nil)
	m.Tick(at(0), sysstat.Reading{})
	m.RecordSpans(10, 100)
	m.RecordSpans(-5, -50)
	m.RecordError(-1)
	m.RecordService("a", -3)
	m.RecordService("a", 0)
	s := mustTick(t, m, at(1), sysstat.Reading{})
	if s.QPS != 10 || s.BytesPerSec != 100 || s.ErrorRate != 0 || len(s.Services) != 0 {
		t.Errorf("snapshot = %+v, want QPS 10, 100 B/s, no errors, no services", s)
	}
}

func TestLittlesLaw(t *testing.T) {
	tests := []struct {
		name  string
		spans int // recorded over a 1s interval, so QPS == spans
		queue func(m *Monitor)
		want  float64
	}{
		{
			name:  "500 queued at 1000/s wait 500ms",
			spans: 1000,
			queue: func(m *Monitor) { m.SetQueueDepth(500) },
			want:  500,
		},
		{
			name:  "built with AddQueueDepth",
			spans: 200,
			queue: func(m *Monitor) { m.AddQueueDepth(70); m.AddQueueDepth(-20) },
			want:  250, // 50 / 200/s = 0.25s
		},
		{
			name:  "empty queue",
			spans: 1000,
			queue: func(m *Monitor) { m.SetQueueDepth(0) },
			want:  0,
		},
		{
			name:  "zero throughput is reported as 0",
			spans: 0,
			queue: func(m *Monitor) { m.SetQueueDepth(100) },
			want:  0,
		},
		{
			name:  "negative depth is reported as 0",
			spans: 100,
			queue: func(m *Monitor) { m.AddQueueDepth(-5) },
			want:  0,
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			m := newMonitor(t, nil)
			m.Tick(at(0), sysstat.Reading{})
			m.RecordSpans(tt.spans, 0)
			tt.queue(m)
			s := mustTick(t, m, at(1), sysstat.Reading{})
			if !approx(s.AvgLatencyMS, tt.want) {
				t.Errorf("AvgLatencyMS = %v, want %v", s.AvgLatencyMS, tt.want)
			}
			if s.QueueDepth != m.QueueDepth() {
				t.Errorf("QueueDepth = %d, want %d", s.QueueDepth, m.QueueDepth())
			}
		})
	}
}

func TestTopServices(t *testing.T) {
	tests := []struct {
		name   string
		top    int
		record map[string]int
		want   []ServiceRate
	}{
		{
			name:   "ordered by volume",
			top:    20,
			record: map[string]int{"cart": 30, "auth": 10, "web": 50},
			want:   []ServiceRate{{"web", 25}, {"cart", 15}, {"auth", 5}},
		},
		{
			name:   "ties broken by name",
			top:    20,
			record: map[string]int{"zeta": 8, "alpha": 8, "mid": 8, "big": 9},
			want:   []ServiceRate{{"big", 4.5}, {"alpha", 4}, {"mid", 4}, {"zeta", 4}},
		},
		{
			name:   "cut at N after tie-breaking",
			top:    2,
			record: map[string]int{"b": 4, "a": 4, "c": 4},
			want:   []ServiceRate{{"a", 2}, {"b", 2}},
		},
		{
			name:   "disabled",
			top:    0,
			record: map[string]int{"a": 4},
			want:   nil,
		},
		{
			name:   "none",
			top:    20,
			record: nil,
			want:   nil,
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			cfg := DefaultConfig()
			cfg.TopServices = tt.top
			m := newMonitor(t, &cfg)
			m.Tick(at(0), sysstat.Reading{})
			for name, n := range tt.record {
				// Split into several calls, as several batches would.
				m.RecordService(name, n/2)
				m.RecordService(name, n-n/2)
			}
			s := mustTick(t, m, at(2), sysstat.Reading{})
			if !slices.Equal(s.Services, tt.want) {
				t.Errorf("Services = %v, want %v", s.Services, tt.want)
			}
		})
	}
}

func TestServicesAreIntervalDeltas(t *testing.T) {
	m := newMonitor(t, nil)
	m.RecordService("before", 100) // before the baseline: never reported
	m.Tick(at(0), sysstat.Reading{})
	m.RecordService("busy", 10)
	m.RecordService("quiet", 1)
	s := mustTick(t, m, at(1), sysstat.Reading{})
	if want := []ServiceRate{{"busy", 10}, {"quiet", 1}}; !slices.Equal(s.Services, want) {
		t.Errorf("first interval Services = %v, want %v", s.Services, want)
	}
	m.RecordService("quiet", 3)
	s = mustTick(t, m, at(2), sysstat.Reading{})
	if want := []ServiceRate{{"quiet", 3}}; !slices.Equal(s.Services, want) {
		t.Errorf("second interval Services = %v, want %v (idle services omitted)", s.Services, want)
	}
}

func TestMaxServices(t *testing.T) {
	cfg := DefaultConfig()
	cfg.MaxServices = 2
	m := newMonitor(t, &cfg)
	m.Tick(at(0), sysstat.Reading{})
	m.RecordService("a", 5)
	m.RecordService("b", 4)
	m.RecordService("c", 3) // over the limit
	m.RecordService("d", 2) // over the limit
	m.RecordService("a", 5) // still tracked by name
	s := mustTick(t, m, at(1), sysstat.Reading{})
	want := []ServiceRate{{"a", 10}, {OtherServices, 5}, {"b", 4}}
	if !slices.Equal(s.Services, want) {
		t.Errorf("Services = %v, want %v", s.Services, want)
	}
}

func TestHotPathDoesNotAllocate(t *testing.T) {
	m := newMonitor(t, nil)
	m.RecordService("checkout", 1)     // first sight may allocate
	name := string([]byte("checkout")) // a different string with the same value
	tests := map[string]func(){
		"RecordSpans":   func() { m.RecordSpans(3, 300) },
		"RecordError":   func() { m.RecordError(1) },
		"AddQueueDepth": func() { m.AddQueueDepth(1) },
		"RecordService": func() { m.RecordService(name, 3) },
	}
	for fn, f := range tests {
		t.Run(fn, func(t *testing.T) {
			if allocs := testing.AllocsPerRun(1000, f); allocs != 0 {
				t.Errorf("%s allocates %v times per call, want 0", fn, allocs)
			}
		})
	}
}

func TestHistoryRingWrapAround(t *testing.T) {
	cfg := DefaultConfig()
	cfg.HistorySize = 3
	m := newMonitor(t, &cfg)
	m.Tick(at(0), sysstat.Reading{})

	wantQPS := func(t *testing.T, got []Snapshot, want ...float64) {
		t.Helper()
		qps := make([]float64, len(got))
		for i, s := range got {
			qps[i] = s.QPS
		}
		if !slices.Equal(qps, want) {
			t.Errorf("History QPS = %v, want %v", qps, want)
		}
	}
	for i := 1; i <= 5; i++ {
		m.RecordSpans(i, 0)
		mustTick(t, m, at(float64(i)), sysstat.Reading{})
		switch i {
		case 2:
			wantQPS(t, m.History(), 1, 2)
		case 3:
			wantQPS(t, m.History(), 1, 2, 3)
		case 4:
			wantQPS(t, m.History(), 2, 3, 4)
		}
	}
	h := m.History()
	wantQPS(t, h, 3, 4, 5)
	if !h[0].At.Equal(at(3)) || !h[2].At.Equal(at(5)) {
		t.Errorf("History times = %v … %v, want %v … %v", h[0].At, h[2].At, at(3), at(5))
	}
	latest, ok := m.Latest()
	if !ok || latest.QPS != 5 {
		t.Errorf("Latest() = %+v, %v, want QPS 5", latest, ok)
	}

	// The result is a copy.
	h[0].QPS = -1
	wantQPS(t, m.History(), 3, 4, 5)
}

func TestConcurrentRecordingSumsExactly(t *testing.T) {
	const (
		goroutines = 16
		calls      = 5000
	)
	m := newMonitor(t, nil)
	m.Tick(at(0), sysstat.Reading{})

	var wg sync.WaitGroup
	for g := range goroutines {
		wg.Go(func() {
			svc := fmt.Sprintf("svc-%d", g%4)
			for range calls {
				m.RecordSpans(2, 10)
				m.RecordError(1)
				m.AddQueueDepth(1)
				m.RecordService(svc, 2)
			}
		})
	}
	// Ticks and reads race with the writers; the totals must still add up.
	done := make(chan struct{})
	var reader sync.WaitGroup
	reader.Go(func() {
		for {
			select {
			case <-done:
				return
			default:
				m.History()
				m.Latest()
				m.Predict(time.Second, 10)
			}
		}
	})
	wg.Wait()
	close(done)
	reader.Wait()

	s := mustTick(t, m, at(1), sysstat.Reading{})
	const spans = goroutines * calls * 2
	if s.QPS != spans || s.BytesPerSec != goroutines*calls*10 || s.QueueDepth != goroutines*calls {
		t.Errorf("QPS=%v BytesPerSec=%v QueueDepth=%d, want %d, %d, %d",
			s.QPS, s.BytesPerSec, s.QueueDepth, spans, goroutines*calls*10, goroutines*calls)
	}
	if !approx(s.ErrorRate, 1.0/3) {
		t.Errorf("ErrorRate = %v, want 1/3", s.ErrorRate)
	}
	var perService float64
	for _, r := range s.Services {
		perService += r.SpansPerSec
		if r.SpansPerSec != spans/4 {
			t.Errorf("service %s: %v spans/s, want %d", r.Name, r.SpansPerSec, spans/4)
		}
	}
	if perService != spans || len(s.Services) != 4 {
		t.Errorf("services = %v, want 4 summing to %d", s.Services, spans)
	}
}

func TestMaxServicesConcurrentFirstSightings(t *testing.T) {
	cfg := DefaultConfig()
	cfg.MaxServices = 10
	m := newMonitor(t, &cfg)
	m.Tick(at(0), sysstat.Reading{})

	const names = 64
	var wg sync.WaitGroup
	for i := range names {
		wg.Go(func() { m.RecordService(fmt.Sprintf("svc-%02d", i), 1) })
	}
	wg.Wait()

	s := mustTick(t, m, at(1), sysstat.Reading{})
	var named int
	var total float64
	for _, r := range s.Services {
		total += r.SpansPerSec
		if r.Name != OtherServices {
			named++
		}
	}
	if named != cfg.MaxServices || total != names {
		t.Errorf("%d named services totalling %v spans/s, want %d named and %d in all: %v",
			named, total, cfg.MaxServices, names, s.Services)
	}
}
