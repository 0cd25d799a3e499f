package loadmon

import (
	"context"
	"errors"
	"sync/atomic"
	"testing"
	"time"

	"github.com/otelfleet/otelfleet/pkg/sysstat"
)

// fakeSource returns a fixed reading, or err when set.
type fakeSource struct {
	reading sysstat.Reading
	err     error
	calls   atomic.Int64
}

func (f *fakeSource) Sample() (sysstat.Reading, error) {
	f.calls.Add(1)
	return f.reading, f.err
}

// startRun runs m.Run on a goroutine and returns a function that cancels it
// and returns Run's result once it has exited.
func startRun(t *testing.T, m *Monitor, interval time.Duration, src ReadingSource) (stop func() error) {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- m.Run(ctx, interval, src) }()
	var stopped bool
	var result error
	stop = func() error {
		if !stopped {
			stopped = true
			cancel()
			result = <-done
		}
		return result
	}
	t.Cleanup(func() { _ = stop() })
	return stop
}

// waitForSnapshots polls until m holds at least n snapshots.
func waitForSnapshots(t *testing.T, m *Monitor, n int) []Snapshot {
	t.Helper()
	deadline := time.Now().Add(5 * time.Second)
	for {
		h := m.History()
		if len(h) >= n {
			return h
		}
		if time.Now().After(deadline) {
			t.Fatalf("only %d snapshots after 5s, want %d", len(h), n)
		}
		time.Sleep(5 * time.Millisecond)
	}
}

func TestRun(t *testing.T) {
	tests := []struct {
		name       string
		src        *fakeSource
		useNil     bool
		wantCPU    float64
		wantMemory uint64
	}{
		{
			name:       "readings are passed through",
			src:        &fakeSource{reading: sysstat.Reading{ProcessCPU: 0.5, ProcessRSSBytes: 1234}},
			wantCPU:    0.5,
			wantMemory: 1234,
		},
		{
			name: "failing source ticks with zero reading",
			src:  &fakeSource{reading: sysstat.Reading{ProcessCPU: 0.9}, err: errors.New("no /proc")},
		},
		{
			name:   "nil source",
			useNil: true,
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			m := newMonitor(t, nil)
			var src ReadingSource
			if !tt.useNil {
				src = tt.src
			}
			stop := startRun(t, m, 10*time.Millisecond, src)
			m.RecordSpans(100, 1000)
			h := waitForSnapshots(t, m, 2)
			if err := stop(); err != nil {
				t.Errorf("Run returned %v after cancel, want nil", err)
			}
			for _, s := range h {
				if s.CPU != tt.wantCPU || s.Memory != tt.wantMemory {
					t.Errorf("snapshot CPU=%v Memory=%d, want %v, %d", s.CPU, s.Memory, tt.wantCPU, tt.wantMemory)
				}
				if s.Interval <= 0 || s.At.IsZero() {
					t.Errorf("snapshot At=%v Interval=%v", s.At, s.Interval)
				}
			}
			if !tt.useNil && tt.src.calls.Load() < 3 {
				t.Errorf("source sampled %d times, want at least 3 (prime + 2 ticks)", tt.src.calls.Load())
			}
		})
	}
}

func TestRunRejectsBadInterval(t *testing.T) {
	m := newMonitor(t, nil)
	for _, d := range []time.Duration{0, -time.Second} {
		if err := m.Run(context.Background(), d, nil); err == nil {
			t.Errorf("Run(interval %v) = nil, want error", d)
		}
	}
}

func TestRunWithRealSampler(t *testing.T) {
	m := newMonitor(t, nil)
	s := sysstat.NewSampler()
	if _, err := s.Sample(); errors.Is(err, sysstat.ErrUnsupported) {
		t.Skipf("no system readings here: %v", err)
	}
	stop := startRun(t, m, 20*time.Millisecond, s)
	h := waitForSnapshots(t, m, 1)
	if err := stop(); err != nil {
		t.Fatal(err)
	}
	if h[0].Memory == 0 {
		t.Errorf("Memory = 0 with a real sampler")
	}
}
