// Package sysstat reads real CPU and memory figures for the current process
// and its host from the Linux /proc filesystem.
//
// A [Sampler] turns the cumulative counters in /proc/self/stat and /proc/stat
// into utilisation fractions by taking the difference between two
// consecutive calls to [Sampler.Sample]; memory figures come straight from
// /proc/self/statm and /proc/meminfo. Where the process runs under a cgroup
// memory limit that is visible at the usual mount point
// (/sys/fs/cgroup/memory.max for cgroup v2,
// /sys/fs/cgroup/memory/memory.limit_in_bytes for v1), the limit is reported
// too, and so is a CPU quota (cpu.max, or v1's cpu.cfs_quota_us over
// cpu.cfs_period_us): the process's CPU is also given as a share of the CPUs it
// may use (the quota, else GOMAXPROCS), which is what health judges.
//
// The package never invents numbers: on a platform other than Linux, or when
// /proc cannot be read, every call returns an error that wraps
// [ErrUnsupported]. Content that cannot be parsed yields an error wrapping
// [ErrMalformed].
//
// The parsing functions are kept separate from file access so that they can
// be tested against captured /proc contents (see testdata/).
package sysstat
