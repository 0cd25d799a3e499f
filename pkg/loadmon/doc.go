// Package loadmon measures the load on a collector's hot path and keeps a
// short history of it.
//
// A [Monitor] has two sides:
//
//   - Recording, done by the pipeline from any goroutine: [Monitor.RecordSpans],
//     [Monitor.RecordError], [Monitor.RecordService] and the queue depth
//     setters. These are atomic adds on monotonically increasing counters, take
//     no locks and do not allocate (RecordService allocates once per new
//     service name).
//   - Ticking, done by the Monitor's owner at a fixed interval (default 1s),
//     either by calling [Monitor.Tick] with its own clock or by running
//     [Monitor.Run]. Each tick turns the counter deltas since the previous
//     tick into rates, combines them with a CPU and memory reading from
//     package sysstat, and appends the resulting [Snapshot] to a fixed-size
//     ring.
//
// [Monitor.History] and [Monitor.Latest] read the ring, and
// [Monitor.Predict] fits a least-squares line through recent throughput to
// extrapolate it.
//
// Latency is not timed per span: [Snapshot.AvgLatencyMS] is derived from
// Little's law, L = λW, as the queue depth divided by the throughput.
package loadmon
