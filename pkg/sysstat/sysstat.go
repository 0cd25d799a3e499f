package sysstat

import (
	"bytes"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"runtime"
	"sync"
	"time"
)

var (
	// ErrUnsupported is wrapped by every error returned when readings cannot
	// be taken on this system: the platform is not Linux, a /proc file cannot
	// be read, or the kernel lacks a required field. It itself wraps
	// [errors.ErrUnsupported], so either sentinel matches with [errors.Is].
	ErrUnsupported = fmt.Errorf("sysstat: CPU and memory readings unavailable: %w", errors.ErrUnsupported)

	// ErrMalformed is wrapped by errors returned when a /proc or cgroup file
	// was read but its content could not be parsed.
	ErrMalformed = errors.New("sysstat: malformed system statistics")
)

// clockTicksPerSecond is USER_HZ, the unit of the tick counters in
// /proc/stat and /proc/<pid>/stat. The kernel fixes it at 100 on every
// mainstream Linux architecture (amd64, arm64, 386, arm, ppc64, s390x,
// riscv64) independently of CONFIG_HZ, which is why sysconf(_SC_CLK_TCK) is
// not consulted (doing so would need cgo).
const clockTicksPerSecond = 100

// Reading is one set of CPU and memory figures.
//
// CPU fractions are averages over CPUWindow, the wall time since the
// previous successful [Sampler.Sample] on the same Sampler. On the first
// call there is no previous reading: CPUWindow is 0 and both CPU fractions
// are 0, which means "not yet known" rather than "idle".
type Reading struct {
	// At is when the reading was taken (wall clock with monotonic reading).
	At time.Time
	// CPUWindow is the interval ProcessCPU and HostCPU are averaged over; 0
	// on the first call of a Sampler.
	CPUWindow time.Duration
	// ProcessCPU is the CPU time this process used during CPUWindow as a
	// fraction of the whole machine's capacity, in [0,1]: user+system time
	// divided by CPUWindow × runtime.NumCPU(). One fully busy core on an
	// 8-CPU machine reads 0.125. Tick granularity is 10ms, so short windows
	// are coarse.
	ProcessCPU float64
	// HostCPU is the busy fraction of all CPUs during CPUWindow, in [0,1]:
	// 1 − idle/total over the /proc/stat deltas, where idle includes iowait
	// and total includes steal.
	HostCPU float64
	// ProcessRSSBytes is this process's resident set size in bytes
	// (/proc/self/statm resident pages × page size).
	ProcessRSSBytes uint64
	// HostMemUsed is 1 − MemAvailable/MemTotal from /proc/meminfo, in [0,1].
	HostMemUsed float64
	// HostMemTotalBytes is MemTotal from /proc/meminfo in bytes.
	HostMemTotalBytes uint64
	// MemLimitBytes is the cgroup memory limit of the process when one is
	// visible at /sys/fs/cgroup and is below HostMemTotalBytes; 0 when there
	// is no such limit or it cannot be read. Nested cgroups not visible at
	// the mount root (no cgroup namespace) are not inspected.
	MemLimitBytes uint64
	// AllowedCPUs is how many CPUs the process may use: the cgroup CPU quota
	// (cpu.max, or cpu.cfs_quota_us / cpu.cfs_period_us) when one is visible,
	// else GOMAXPROCS, never more than the machine's CPUs.
	AllowedCPUs float64
	// ProcessCPUShare is the CPU time this process used during CPUWindow as a
	// fraction of its AllowedCPUs, in [0,1]: how busy the process is against
	// what it may use, whatever else runs on the host. 0 on the first call.
	ProcessCPUShare float64
}

// ProcessMemory returns the process's resident memory as a fraction of its
// limit, in [0,1]: the cgroup limit when there is one, else the host's memory.
// 0 when neither is known.
func (r Reading) ProcessMemory() float64 {
	limit := r.MemLimitBytes
	if limit == 0 {
		limit = r.HostMemTotalBytes
	}
	if limit == 0 {
		return 0
	}
	return clamp01(float64(r.ProcessRSSBytes) / float64(limit))
}

// Sampler takes [Reading]s and keeps the previous CPU counters needed to
// turn them into fractions. Create one with [NewSampler]; the zero value
// reports [ErrUnsupported]. A Sampler is safe for concurrent use, and
// concurrent callers share its time base (each call measures the window
// since whichever call came before it).
type Sampler struct {
	// Fixed at construction; tests in this package replace them.
	supported  bool
	procRoot   string
	cgroupRoot string
	numCPU     int
	maxProcs   func() int
	pageSize   uint64
	now        func() time.Time

	mu         sync.Mutex
	primed     bool
	prevAt     time.Time
	prevTicks  uint64
	prevHostCP hostCPUTimes
}

// NewSampler returns a Sampler reading the real /proc of this process. It
// does no I/O; the first [Sampler.Sample] establishes the CPU time base.
func NewSampler() *Sampler {
	return &Sampler{
		supported:  runtime.GOOS == "linux",
		procRoot:   "/proc",
		cgroupRoot: "/sys/fs/cgroup",
		numCPU:     runtime.NumCPU(),
		maxProcs:   func() int { return runtime.GOMAXPROCS(0) },
		pageSize:   uint64(os.Getpagesize()),
		now:        time.Now,
	}
}

// Sample reads current CPU and memory figures.
//
// The first successful call returns CPU fractions of 0 with CPUWindow 0 and
// records the time base; each later call reports the averages since the
// previous successful call. On error the Reading is the zero value and the
// time base is left unchanged. Errors wrap [ErrUnsupported] when the data is
// unavailable and [ErrMalformed] when it cannot be parsed.
func (s *Sampler) Sample() (Reading, error) {
	if !s.supported {
		return Reading{}, fmt.Errorf("%w: platform %s has no /proc", ErrUnsupported, runtime.GOOS)
	}

	s.mu.Lock()
	defer s.mu.Unlock()

	// Read the CPU counters back to back, then take the time, so the three
	// describe the same instant as closely as possible.
	procStat, err := s.readProc("self/stat")
	if err != nil {
		return Reading{}, err
	}
	hostStat, err := s.readProc("stat")
	if err != nil {
		return Reading{}, err
	}
	at := s.now()

	ticks, err := parseProcessTicks(procStat)
	if err != nil {
		return Reading{}, err
	}
	host, err := parseHostCPU(hostStat)
	if err != nil {
		return Reading{}, err
	}
	statm, err := s.readProc("self/statm")
	if err != nil {
		return Reading{}, err
	}
	pages, err := parseResidentPages(statm)
	if err != nil {
		return Reading{}, err
	}
	meminfo, err := s.readProc("meminfo")
	if err != nil {
		return Reading{}, err
	}
	mem, err := parseMeminfo(bytes.NewReader(meminfo))
	if err != nil {
		return Reading{}, err
	}

	r := Reading{
		At:                at,
		ProcessRSSBytes:   pages * s.pageSize,
		HostMemUsed:       clamp01(1 - float64(mem.available)/float64(mem.total)),
		HostMemTotalBytes: mem.total,
		MemLimitBytes:     s.cgroupMemLimit(mem.total),
		AllowedCPUs:       s.allowedCPUs(),
	}
	if s.primed {
		r.CPUWindow = at.Sub(s.prevAt)
		r.ProcessCPU = processFraction(s.prevTicks, ticks, r.CPUWindow, float64(s.numCPU))
		r.ProcessCPUShare = processFraction(s.prevTicks, ticks, r.CPUWindow, r.AllowedCPUs)
		r.HostCPU = hostFraction(s.prevHostCP, host)
	}
	s.primed, s.prevAt, s.prevTicks, s.prevHostCP = true, at, ticks, host
	return r, nil
}

// ProcessCPUSeconds returns the total CPU time, user plus system, consumed
// by this process since it started, in seconds: (utime+stime)/CLK_TCK from
// /proc/self/stat with CLK_TCK = 100, the fixed USER_HZ of Linux. The
// resolution is therefore 10ms. Errors wrap [ErrUnsupported] or
// [ErrMalformed] as for [Sampler.Sample].
func ProcessCPUSeconds() (float64, error) {
	return NewSampler().processCPUSeconds()
}

func (s *Sampler) processCPUSeconds() (float64, error) {
	if !s.supported {
		return 0, fmt.Errorf("%w: platform %s has no /proc", ErrUnsupported, runtime.GOOS)
	}
	data, err := s.readProc("self/stat")
	if err != nil {
		return 0, err
	}
	ticks, err := parseProcessTicks(data)
	if err != nil {
		return 0, err
	}
	return float64(ticks) / clockTicksPerSecond, nil
}

// readProc reads a file below the /proc root, translating any failure into
// ErrUnsupported.
func (s *Sampler) readProc(name string) ([]byte, error) {
	path := filepath.Join(s.procRoot, name)
	data, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("%w: %w", ErrUnsupported, err)
	}
	return data, nil
}

// cgroupMemLimit returns the cgroup memory limit if one is visible and below
// hostTotal, or 0. Missing or unparsable files mean "no known limit": the
// limit is optional information and must not fail the whole reading.
func (s *Sampler) cgroupMemLimit(hostTotal uint64) uint64 {
	for _, name := range []string{"memory.max", "memory/memory.limit_in_bytes"} {
		data, err := os.ReadFile(filepath.Join(s.cgroupRoot, name))
		if errors.Is(err, fs.ErrNotExist) {
			continue
		}
		if err != nil {
			return 0
		}
		limit, ok, err := parseCgroupMemLimit(data)
		if err != nil || !ok || limit >= hostTotal {
			return 0
		}
		return limit
	}
	return 0
}

// allowedCPUs returns the CPUs the process may use: the cgroup quota when one
// is visible, else GOMAXPROCS, at most the machine's CPUs and at least a
// hundredth of one. Unreadable cgroup files mean "no quota".
func (s *Sampler) allowedCPUs() float64 {
	n := float64(s.numCPU)
	if s.maxProcs != nil {
		n = min(n, float64(s.maxProcs()))
	}
	for _, name := range []string{"cpu.max", "cpu/cpu.cfs_quota_us"} {
		data, err := os.ReadFile(filepath.Join(s.cgroupRoot, name))
		if err != nil {
			continue
		}
		if name == "cpu/cpu.cfs_quota_us" { // cgroup v1: quota and period in two files
			period, perr := os.ReadFile(filepath.Join(s.cgroupRoot, "cpu/cpu.cfs_period_us"))
			if perr != nil {
				break
			}
			data = append(bytes.TrimSpace(data), ' ')
			data = append(data, bytes.TrimSpace(period)...)
		}
		if quota, ok, err := parseCgroupCPUQuota(data); err == nil && ok {
			n = min(n, quota)
		}
		break
	}
	if s.numCPU > 0 {
		n = min(n, float64(s.numCPU))
	}
	return max(n, 0.01)
}

// processFraction converts a tick delta over a wall-time window into a
// fraction of cpus cores, clamped to [0,1].
func processFraction(prevTicks, ticks uint64, window time.Duration, cpus float64) float64 {
	if window <= 0 || cpus <= 0 || ticks < prevTicks {
		return 0
	}
	cpuSeconds := float64(ticks-prevTicks) / clockTicksPerSecond
	return clamp01(cpuSeconds / (window.Seconds() * cpus))
}

// hostFraction returns 1 − Δidle/Δtotal, clamped to [0,1]. Counters that did
// not advance (or went backwards, which iowait is documented to do) give 0.
func hostFraction(prev, cur hostCPUTimes) float64 {
	if cur.total <= prev.total {
		return 0
	}
	dTotal := float64(cur.total - prev.total)
	dIdle := 0.0
	if cur.idle > prev.idle {
		dIdle = float64(cur.idle - prev.idle)
	}
	return clamp01(1 - dIdle/dTotal)
}

func clamp01(v float64) float64 {
	switch {
	case v < 0 || v != v: // NaN counts as 0
		return 0
	case v > 1:
		return 1
	}
	return v
}
