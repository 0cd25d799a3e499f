package sysstat

import (
	"errors"
	"fmt"
	"math"
	"os"
	"path/filepath"
	"runtime"
	"sync"
	"testing"
	"time"

	"go.uber.org/goleak"
)

func TestMain(m *testing.M) {
	goleak.VerifyTestMain(m)
}

// fakeProc is a /proc and /sys/fs/cgroup stand-in in a temporary directory,
// driven by a manual clock.
type fakeProc struct {
	t       *testing.T
	proc    string
	cgroup  string
	now     time.Time
	sampler *Sampler
}

func newFakeProc(t *testing.T, numCPU int) *fakeProc {
	t.Helper()
	dir := t.TempDir()
	f := &fakeProc{
		t:      t,
		proc:   filepath.Join(dir, "proc"),
		cgroup: filepath.Join(dir, "cgroup"),
		now:    time.Date(2025, 1, 1, 0, 0, 0, 0, time.UTC),
	}
	for _, d := range []string{filepath.Join(f.proc, "self"), f.cgroup} {
		if err := os.MkdirAll(d, 0o755); err != nil {
			t.Fatal(err)
		}
	}
	f.sampler = &Sampler{
		supported:  true,
		procRoot:   f.proc,
		cgroupRoot: f.cgroup,
		numCPU:     numCPU,
		pageSize:   4096,
		now:        func() time.Time { return f.now },
	}
	return f
}

// set writes counters: process ticks split as utime/stime, host cpu line
// (busy and idle ticks), resident pages and meminfo in kB.
func (f *fakeProc) set(utime, stime, hostBusy, hostIdle, rssPages, memTotalKB, memAvailKB uint64) {
	f.t.Helper()
	f.write(filepath.Join(f.proc, "self", "stat"),
		fmt.Sprintf("99 (fake proc) S 1 99 99 0 -1 4194560 10 0 0 0 %d %d 0 0 20 0 4 0 100 1000 10\n", utime, stime))
	f.write(filepath.Join(f.proc, "stat"),
		fmt.Sprintf("cpu  %d 0 0 %d 0 0 0 0 0 0\ncpu0 0 0 0 0 0 0 0 0 0 0\n", hostBusy, hostIdle))
	f.write(filepath.Join(f.proc, "self", "statm"), fmt.Sprintf("5000 %d 300 5 0 123 0\n", rssPages))
	f.write(filepath.Join(f.proc, "meminfo"),
		fmt.Sprintf("MemTotal: %d kB\nMemFree: 1 kB\nMemAvailable: %d kB\n", memTotalKB, memAvailKB))
}

func (f *fakeProc) write(path, content string) {
	f.t.Helper()
	if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
		f.t.Fatal(err)
	}
	if err := os.WriteFile(path, []byte(content), 0o644); err != nil {
		f.t.Fatal(err)
	}
}

func (f *fakeProc) sample() Reading {
	f.t.Helper()
	r, err := f.sampler.Sample()
	if err != nil {
		f.t.Fatalf("Sample: %v", err)
	}
	return r
}

func approx(a, b float64) bool { return math.Abs(a-b) < 1e-9 }

func TestSamplerDeltas(t *testing.T) {
	f := newFakeProc(t, 2)
	f.set(100, 50, 1000, 3000, 1000, 8<<20, 6<<20)

	first := f.sample()
	if first.CPUWindow != 0 || first.ProcessCPU != 0 || first.HostCPU != 0 {
		t.Errorf("first reading: CPUWindow=%v ProcessCPU=%v HostCPU=%v, want all 0", first.CPUWindow, first.ProcessCPU, first.HostCPU)
	}
	if !first.At.Equal(f.now) {
		t.Errorf("first At = %v, want %v", first.At, f.now)
	}
	if first.ProcessRSSBytes != 1000*4096 {
		t.Errorf("ProcessRSSBytes = %d, want %d", first.ProcessRSSBytes, 1000*4096)
	}
	if first.HostMemTotalBytes != 8<<30 || !approx(first.HostMemUsed, 0.25) {
		t.Errorf("memory = (%d, %v), want (%d, 0.25)", first.HostMemTotalBytes, first.HostMemUsed, uint64(8<<30))
	}
	if first.MemLimitBytes != 0 {
		t.Errorf("MemLimitBytes = %d with no cgroup files, want 0", first.MemLimitBytes)
	}

	// 2s later: +100 process ticks = 1 CPU-second over 2s on 2 CPUs = 0.25.
	// Host: +300 busy, +100 idle => 0.75 busy.
	f.now = f.now.Add(2 * time.Second)
	f.set(160, 90, 1300, 3100, 2000, 8<<20, 2<<20)
	r := f.sample()
	if r.CPUWindow != 2*time.Second {
		t.Errorf("CPUWindow = %v, want 2s", r.CPUWindow)
	}
	if !approx(r.ProcessCPU, 0.25) {
		t.Errorf("ProcessCPU = %v, want 0.25", r.ProcessCPU)
	}
	if !approx(r.HostCPU, 0.75) {
		t.Errorf("HostCPU = %v, want 0.75", r.HostCPU)
	}
	if !approx(r.HostMemUsed, 0.75) || r.ProcessRSSBytes != 2000*4096 {
		t.Errorf("memory = (%v, %d), want (0.75, %d)", r.HostMemUsed, r.ProcessRSSBytes, 2000*4096)
	}

	// Nothing moved: fractions are 0, not NaN.
	f.now = f.now.Add(time.Second)
	r = f.sample()
	if r.ProcessCPU != 0 || r.HostCPU != 0 {
		t.Errorf("idle window: ProcessCPU=%v HostCPU=%v, want 0", r.ProcessCPU, r.HostCPU)
	}
}

func TestSamplerClamps(t *testing.T) {
	tests := []struct {
		name        string
		window      time.Duration
		dTicks      uint64
		wantProcess float64
	}{
		// More ticks than wall time allows (tick rounding) is capped at 1.
		{name: "over capacity", window: time.Second, dTicks: 500, wantProcess: 1},
		// A clock that did not move yields 0 rather than +Inf.
		{name: "zero window", window: 0, dTicks: 10, wantProcess: 0},
		{name: "exact full machine", window: time.Second, dTicks: 200, wantProcess: 1},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			f := newFakeProc(t, 2)
			f.set(0, 0, 0, 0, 1, 100, 50)
			f.sample()
			f.now = f.now.Add(tt.window)
			f.set(tt.dTicks, 0, 0, 0, 1, 100, 50)
			if got := f.sample().ProcessCPU; got != tt.wantProcess {
				t.Errorf("ProcessCPU = %v, want %v", got, tt.wantProcess)
			}
		})
	}
}

func TestSamplerCgroupLimit(t *testing.T) {
	tests := []struct {
		name  string
		files map[string]string
		want  uint64
	}{
		{name: "none", want: 0},
		{name: "v2 limit", files: map[string]string{"memory.max": "1073741824\n"}, want: 1 << 30},
		{name: "v2 unlimited", files: map[string]string{"memory.max": "max\n"}, want: 0},
		{name: "v1 limit", files: map[string]string{"memory/memory.limit_in_bytes": "2147483648\n"}, want: 2 << 30},
		{name: "v1 unlimited", files: map[string]string{"memory/memory.limit_in_bytes": "9223372036854771712\n"}, want: 0},
		{name: "limit above host memory", files: map[string]string{"memory.max": "17179869184\n"}, want: 0},
		{name: "unparsable is ignored", files: map[string]string{"memory.max": "?\n"}, want: 0},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			f := newFakeProc(t, 1)
			f.set(0, 0, 0, 0, 1, 8<<20, 4<<20) // 8 GiB host
			for name, content := range tt.files {
				f.write(filepath.Join(f.cgroup, name), content)
			}
			if got := f.sample().MemLimitBytes; got != tt.want {
				t.Errorf("MemLimitBytes = %d, want %d", got, tt.want)
			}
		})
	}
}

func TestSamplerErrors(t *testing.T) {
	t.Run("unsupported platform", func(t *testing.T) {
		s := &Sampler{supported: false}
		_, err := s.Sample()
		if !errors.Is(err, ErrUnsupported) || !errors.Is(err, errors.ErrUnsupported) {
			t.Errorf("Sample err = %v, want ErrUnsupported", err)
		}
		if _, err := s.processCPUSeconds(); !errors.Is(err, ErrUnsupported) {
			t.Errorf("processCPUSeconds err = %v, want ErrUnsupported", err)
		}
	})
	t.Run("missing proc", func(t *testing.T) {
		f := newFakeProc(t, 1)
		if r, err := f.sampler.Sample(); !errors.Is(err, ErrUnsupported) || r != (Reading{}) {
			t.Errorf("Sample = (%+v, %v), want zero Reading and ErrUnsupported", r, err)
		}
	})
	t.Run("malformed does not move the time base", func(t *testing.T) {
		f := newFakeProc(t, 1)
		f.set(0, 0, 0, 0, 1, 100, 50)
		f.sample()
		f.now = f.now.Add(time.Second)
		f.write(filepath.Join(f.proc, "stat"), "garbage\n")
		if _, err := f.sampler.Sample(); !errors.Is(err, ErrMalformed) {
			t.Fatalf("Sample err = %v, want ErrMalformed", err)
		}
		f.now = f.now.Add(time.Second)
		f.set(100, 0, 0, 0, 1, 100, 50)
		r := f.sample()
		if r.CPUWindow != 2*time.Second || !approx(r.ProcessCPU, 0.5) {
			t.Errorf("after error: CPUWindow=%v ProcessCPU=%v, want 2s and 0.5", r.CPUWindow, r.ProcessCPU)
		}
	})
}

func requireLinux(t *testing.T) {
	t.Helper()
	if runtime.GOOS != "linux" {
		t.Skip("needs Linux /proc")
	}
}

func TestRealProcInRange(t *testing.T) {
	requireLinux(t)
	s := NewSampler()
	first, err := s.Sample()
	if err != nil {
		t.Fatalf("Sample: %v", err)
	}
	if first.CPUWindow != 0 || first.At.IsZero() {
		t.Errorf("first reading: CPUWindow=%v At=%v", first.CPUWindow, first.At)
	}
	r, err := s.Sample()
	if err != nil {
		t.Fatalf("Sample: %v", err)
	}
	for name, v := range map[string]float64{"ProcessCPU": r.ProcessCPU, "HostCPU": r.HostCPU, "HostMemUsed": r.HostMemUsed} {
		if v < 0 || v > 1 || math.IsNaN(v) {
			t.Errorf("%s = %v, want in [0,1]", name, v)
		}
	}
	if r.HostMemUsed == 0 {
		t.Errorf("HostMemUsed = 0 on a running machine")
	}
	if r.ProcessRSSBytes == 0 || r.ProcessRSSBytes >= r.HostMemTotalBytes {
		t.Errorf("ProcessRSSBytes = %d, HostMemTotalBytes = %d", r.ProcessRSSBytes, r.HostMemTotalBytes)
	}
	if r.CPUWindow <= 0 || !r.At.After(first.At) {
		t.Errorf("second reading: CPUWindow=%v At=%v after %v", r.CPUWindow, r.At, first.At)
	}
}

// spin keeps one goroutine busy until the returned stop function is called;
// stop waits for it to exit.
func spin() (stop func()) {
	done := make(chan struct{})
	var wg sync.WaitGroup
	wg.Go(func() {
		x := 0
		for {
			select {
			case <-done:
				return
			default:
			}
			for range 10000 {
				x++
			}
		}
	})
	return func() { close(done); wg.Wait() }
}

func TestRealProcCPURisesUnderLoad(t *testing.T) {
	requireLinux(t)
	s := NewSampler()
	if _, err := s.Sample(); err != nil {
		t.Fatalf("Sample: %v", err)
	}
	before, err := ProcessCPUSeconds()
	if err != nil {
		t.Fatalf("ProcessCPUSeconds: %v", err)
	}

	stop := spin()
	defer stop()

	// The readings must account for the CPU the spinner burns: summed over the windows,
	// ProcessCPU × window × NumCPU is the CPU time /proc counted meanwhile, whatever share
	// of a core a loaded test machine leaves the spinner. Poll every 200ms (20 clock
	// ticks) until 0.2 CPU-seconds have been read or the deadline passes.
	ticker := time.NewTicker(200 * time.Millisecond)
	defer ticker.Stop()
	deadline := time.After(10 * time.Second)
	var read float64
	var hostBusy bool
poll:
	for read < 0.2 {
		select {
		case <-deadline:
			break poll
		case <-ticker.C:
			r, err := s.Sample()
			if err != nil {
				t.Fatalf("Sample: %v", err)
			}
			read += r.ProcessCPU * r.CPUWindow.Seconds() * float64(runtime.NumCPU())
			hostBusy = hostBusy || r.HostCPU > 0
			if r.ProcessCPUShare < r.ProcessCPU-1e-9 {
				t.Fatalf("share of the allowed CPUs %v below the share of the machine %v", r.ProcessCPUShare, r.ProcessCPU)
			}
		}
	}
	after, err := ProcessCPUSeconds()
	if err != nil {
		t.Fatalf("ProcessCPUSeconds: %v", err)
	}
	if read < 0.1 || !hostBusy {
		t.Fatalf("while spinning the readings add up to %v CPU-seconds (host busy seen: %v), want >= 0.1", read, hostBusy)
	}
	// The readings cover from the first Sample to the last; /proc from before to after
	// (a little wider). Ticks are 10ms.
	if got := after - before; read > got+0.02 || read < got-0.1 {
		t.Errorf("readings add up to %v CPU-seconds, /proc counted %v", read, got)
	}
}

func TestSamplerConcurrent(t *testing.T) {
	requireLinux(t)
	s := NewSampler()
	var wg sync.WaitGroup
	errs := make(chan error, 8*20)
	for range 8 {
		wg.Go(func() {
			for range 20 {
				r, err := s.Sample()
				if err != nil {
					errs <- err
					return
				}
				if r.ProcessCPU < 0 || r.ProcessCPU > 1 || r.HostCPU < 0 || r.HostCPU > 1 {
					errs <- fmt.Errorf("out of range: %+v", r)
				}
			}
		})
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Error(err)
	}
}

// TestSamplerCPUShare: the process's CPU share is against the CPUs it may use (the
// cgroup quota, else GOMAXPROCS), not the whole machine.
func TestSamplerCPUShare(t *testing.T) {
	tests := []struct {
		name     string
		files    map[string]string
		maxProcs int
		allowed  float64
	}{
		{name: "no quota: every CPU", allowed: 4},
		{name: "GOMAXPROCS below the CPUs", maxProcs: 2, allowed: 2},
		{name: "v2 quota", files: map[string]string{"cpu.max": "50000 100000\n"}, allowed: 0.5},
		{name: "v2 unlimited", files: map[string]string{"cpu.max": "max 100000\n"}, allowed: 4},
		{name: "v1 quota", files: map[string]string{"cpu/cpu.cfs_quota_us": "200000\n", "cpu/cpu.cfs_period_us": "100000\n"}, allowed: 2},
		{name: "v1 unlimited", files: map[string]string{"cpu/cpu.cfs_quota_us": "-1\n", "cpu/cpu.cfs_period_us": "100000\n"}, allowed: 4},
		{name: "quota above the CPUs", files: map[string]string{"cpu.max": "800000 100000\n"}, allowed: 4},
		{name: "unparsable is ignored", files: map[string]string{"cpu.max": "lots\n"}, allowed: 4},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			f := newFakeProc(t, 4)
			if tt.maxProcs > 0 {
				f.sampler.maxProcs = func() int { return tt.maxProcs }
			}
			for name, content := range tt.files {
				f.write(filepath.Join(f.cgroup, name), content)
			}
			f.set(0, 0, 0, 0, 1, 8<<20, 4<<20)
			f.sample()
			// 1 CPU-second over 2 s, on a host whose CPUs are all busy.
			f.now = f.now.Add(2 * time.Second)
			f.set(50, 50, 800, 0, 1, 8<<20, 4<<20)
			r := f.sample()
			if !approx(r.AllowedCPUs, tt.allowed) {
				t.Fatalf("AllowedCPUs = %v, want %v", r.AllowedCPUs, tt.allowed)
			}
			if want := min(0.5/tt.allowed, 1); !approx(r.ProcessCPUShare, want) || !approx(r.ProcessCPU, 0.125) || r.HostCPU != 1 {
				t.Fatalf("share %v (want %v), process %v (want 0.125), host %v (want 1)", r.ProcessCPUShare, want, r.ProcessCPU, r.HostCPU)
			}
		})
	}
}

func TestReadingProcessMemory(t *testing.T) {
	for _, tt := range []struct {
		r    Reading
		want float64
	}{
		{Reading{ProcessRSSBytes: 1 << 30, HostMemTotalBytes: 8 << 30}, 0.125},
		{Reading{ProcessRSSBytes: 1 << 30, HostMemTotalBytes: 8 << 30, MemLimitBytes: 2 << 30}, 0.5},
		{Reading{ProcessRSSBytes: 4 << 30, MemLimitBytes: 2 << 30}, 1},
		{Reading{ProcessRSSBytes: 1 << 30}, 0},
	} {
		if got := tt.r.ProcessMemory(); !approx(got, tt.want) {
			t.Errorf("%+v: ProcessMemory = %v, want %v", tt.r, got, tt.want)
		}
	}
}
