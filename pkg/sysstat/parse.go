package sysstat

import (
	"bufio"
	"bytes"
	"fmt"
	"io"
	"strconv"
	"strings"
)

// hostCPUTimes holds the aggregate "cpu" line of /proc/stat, in clock ticks.
type hostCPUTimes struct {
	// idle is idle + iowait: time in which no task was runnable.
	idle uint64
	// total is user + nice + system + idle + iowait + irq + softirq + steal.
	// guest and guest_nice are excluded because the kernel already counts
	// them inside user and nice.
	total uint64
}

// parseHostCPU extracts the aggregate CPU times from /proc/stat content.
//
// The line has the form
//
//	cpu  user nice system idle iowait irq softirq steal guest guest_nice
//
// Kernels older than 2.6.33 print fewer columns; at least the first four are
// required.
func parseHostCPU(data []byte) (hostCPUTimes, error) {
	for line := range bytes.Lines(data) {
		fields := bytes.Fields(line)
		if len(fields) == 0 || string(fields[0]) != "cpu" {
			continue
		}
		cols := fields[1:]
		if len(cols) < 4 {
			return hostCPUTimes{}, fmt.Errorf("%w: /proc/stat: cpu line has %d columns, want at least 4", ErrMalformed, len(cols))
		}
		const counted = 8 // user..steal; guest columns are already in user/nice.
		var t hostCPUTimes
		for i, col := range cols[:min(len(cols), counted)] {
			v, err := strconv.ParseUint(string(col), 10, 64)
			if err != nil {
				return hostCPUTimes{}, fmt.Errorf("%w: /proc/stat: cpu column %d: %w", ErrMalformed, i+1, err)
			}
			t.total += v
			if i == 3 || i == 4 { // idle, iowait
				t.idle += v
			}
		}
		return t, nil
	}
	return hostCPUTimes{}, fmt.Errorf("%w: /proc/stat: no aggregate cpu line", ErrMalformed)
}

// parseProcessTicks returns utime+stime, in clock ticks, from the content of
// /proc/<pid>/stat.
//
// The second field (comm) is in parentheses and may itself contain spaces and
// parentheses, so parsing starts after the last ')'. Counting from there,
// state is field 3 of proc(5), utime is field 14 and stime field 15.
func parseProcessTicks(data []byte) (uint64, error) {
	end := bytes.LastIndexByte(data, ')')
	if end < 0 {
		return 0, fmt.Errorf("%w: /proc/self/stat: no ')' closing the comm field", ErrMalformed)
	}
	fields := bytes.Fields(data[end+1:])
	const utimeIdx, stimeIdx = 14 - 3, 15 - 3 // relative to the state field
	if len(fields) <= stimeIdx {
		return 0, fmt.Errorf("%w: /proc/self/stat: %d fields after comm, want at least %d", ErrMalformed, len(fields), stimeIdx+1)
	}
	utime, err := strconv.ParseUint(string(fields[utimeIdx]), 10, 64)
	if err != nil {
		return 0, fmt.Errorf("%w: /proc/self/stat: utime: %w", ErrMalformed, err)
	}
	stime, err := strconv.ParseUint(string(fields[stimeIdx]), 10, 64)
	if err != nil {
		return 0, fmt.Errorf("%w: /proc/self/stat: stime: %w", ErrMalformed, err)
	}
	return utime + stime, nil
}

// parseResidentPages returns the resident set size, in pages, from the
// content of /proc/<pid>/statm (second column).
func parseResidentPages(data []byte) (uint64, error) {
	fields := bytes.Fields(data)
	if len(fields) < 2 {
		return 0, fmt.Errorf("%w: /proc/self/statm: %d columns, want at least 2", ErrMalformed, len(fields))
	}
	pages, err := strconv.ParseUint(string(fields[1]), 10, 64)
	if err != nil {
		return 0, fmt.Errorf("%w: /proc/self/statm: resident: %w", ErrMalformed, err)
	}
	return pages, nil
}

// memInfo holds the /proc/meminfo figures the package uses, in bytes.
type memInfo struct {
	total     uint64
	available uint64
}

// parseMeminfo reads MemTotal and MemAvailable from /proc/meminfo content.
// Both are required; MemAvailable exists since Linux 3.14, and older kernels
// are reported as unsupported rather than approximated.
func parseMeminfo(r io.Reader) (memInfo, error) {
	var (
		m                 memInfo
		haveTotal, haveAv bool
	)
	sc := bufio.NewScanner(r)
	for sc.Scan() {
		key, rest, ok := bytes.Cut(sc.Bytes(), []byte{':'})
		if !ok {
			continue
		}
		var dst *uint64
		switch string(key) {
		case "MemTotal":
			dst, haveTotal = &m.total, true
		case "MemAvailable":
			dst, haveAv = &m.available, true
		default:
			continue
		}
		fields := bytes.Fields(rest)
		if len(fields) == 0 {
			return memInfo{}, fmt.Errorf("%w: /proc/meminfo: %s has no value", ErrMalformed, key)
		}
		v, err := strconv.ParseUint(string(fields[0]), 10, 64)
		if err != nil {
			return memInfo{}, fmt.Errorf("%w: /proc/meminfo: %s: %w", ErrMalformed, key, err)
		}
		unit := uint64(1)
		if len(fields) > 1 {
			if string(fields[1]) != "kB" {
				return memInfo{}, fmt.Errorf("%w: /proc/meminfo: %s: unknown unit %q", ErrMalformed, key, fields[1])
			}
			unit = 1024 // the kernel's "kB" is KiB
		}
		*dst = v * unit
		if haveTotal && haveAv {
			break
		}
	}
	if err := sc.Err(); err != nil {
		return memInfo{}, fmt.Errorf("%w: /proc/meminfo: %w", ErrUnsupported, err)
	}
	switch {
	case !haveTotal:
		return memInfo{}, fmt.Errorf("%w: /proc/meminfo: no MemTotal", ErrMalformed)
	case !haveAv:
		return memInfo{}, fmt.Errorf("%w: /proc/meminfo: no MemAvailable (Linux < 3.14)", ErrUnsupported)
	case m.total == 0:
		return memInfo{}, fmt.Errorf("%w: /proc/meminfo: MemTotal is 0", ErrMalformed)
	}
	return m, nil
}

// parseCgroupMemLimit parses a cgroup memory limit file: cgroup v2
// memory.max ("max" or a byte count) or cgroup v1 memory.limit_in_bytes (a
// byte count, close to 2^63 when unlimited). ok is false when the content
// says there is no limit.
func parseCgroupMemLimit(data []byte) (limit uint64, ok bool, err error) {
	s := string(bytes.TrimSpace(data))
	if s == "max" {
		return 0, false, nil
	}
	v, err := strconv.ParseUint(s, 10, 64)
	if err != nil {
		return 0, false, fmt.Errorf("%w: cgroup memory limit %q: %w", ErrMalformed, s, err)
	}
	// cgroup v1 reports "unlimited" as PAGE_COUNTER_MAX pages, i.e. a value
	// just below 2^63 rounded down to the page size.
	if v >= 1<<62 {
		return 0, false, nil
	}
	return v, true, nil
}

// parseCgroupCPUQuota parses a CPU quota as "QUOTA PERIOD" (cgroup v2 cpu.max,
// or cgroup v1's cpu.cfs_quota_us and cpu.cfs_period_us joined by a space)
// and returns QUOTA/PERIOD CPUs. ok is false when the content says there is
// no quota ("max", or a negative v1 quota).
func parseCgroupCPUQuota(data []byte) (cpus float64, ok bool, err error) {
	fields := strings.Fields(string(data))
	if len(fields) != 2 {
		return 0, false, fmt.Errorf("%w: cgroup CPU quota %q: want QUOTA PERIOD", ErrMalformed, data)
	}
	if fields[0] == "max" || strings.HasPrefix(fields[0], "-") {
		return 0, false, nil
	}
	quota, err := strconv.ParseUint(fields[0], 10, 64)
	if err != nil {
		return 0, false, fmt.Errorf("%w: cgroup CPU quota %q: %w", ErrMalformed, fields[0], err)
	}
	period, err := strconv.ParseUint(fields[1], 10, 64)
	if err != nil || period == 0 {
		return 0, false, fmt.Errorf("%w: cgroup CPU period %q: must be a positive integer", ErrMalformed, fields[1])
	}
	return float64(quota) / float64(period), quota > 0, nil
}
