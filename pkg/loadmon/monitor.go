package loadmon

import (
	"cmp"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/otelfleet/otelfleet/pkg/sysstat"
)

// OtherServices is the name under which spans are counted for service names
// first seen after Config.MaxServices names are already tracked. A real
// service with this name would be listed separately.
const OtherServices = "(other)"

// Snapshot is the load over one tick interval.
type Snapshot struct {
	// At is the time passed to the Tick that produced the snapshot.
	At time.Time
	// Interval is the time since the previous tick; rates are averages
	// over it.
	Interval time.Duration
	// QPS is spans recorded by RecordSpans per second.
	QPS float64
	// BytesPerSec is bytes recorded by RecordSpans per second.
	BytesPerSec float64
	// QueueDepth is the queue depth at tick time, in the unit the owner uses
	// with SetQueueDepth and AddQueueDepth (spans, for AvgLatencyMS to be
	// meaningful).
	QueueDepth int64
	// ErrorRate is errors/(spans+errors) over the interval, in [0,1]; 0 when
	// neither spans nor errors were recorded.
	ErrorRate float64
	// CPU is the process CPU use as a fraction of the machine, in [0,1], from
	// the sysstat.Reading given to Tick (its ProcessCPU); 0 if unavailable.
	CPU float64
	// Memory is the process resident set size in bytes, from the
	// sysstat.Reading given to Tick (its ProcessRSSBytes); 0 if unavailable.
	Memory uint64
	// AvgLatencyMS is the average time a span spends queued, in
	// milliseconds, by Little's law: W = L/λ with L = QueueDepth and
	// λ = QPS. It assumes a steady state in which spans leave the queue as
	// fast as they are recorded. When QPS is 0 (nothing flows, so W is
	// undefined) or the queue depth is not positive, it is 0.
	AvgLatencyMS float64
	// Services are the busiest services of the interval by span rate,
	// highest first, ties broken by name; at most Config.TopServices
	// entries, and only services with spans in the interval. The slice is
	// shared by every copy of the snapshot: treat it as read-only.
	Services []ServiceRate
}

// ServiceRate is the span rate of one service over a tick interval.
type ServiceRate struct {
	// Name is the service name given to RecordService, or OtherServices.
	Name string
	// SpansPerSec is the service's spans per second.
	SpansPerSec float64
}

// serviceEntry counts one service's spans. last is the count at the previous
// tick and is only touched by Tick under Monitor.mu.
type serviceEntry struct {
	count atomic.Uint64
	last  uint64
}

// counters is the state at the previous tick.
type counters struct {
	at                   time.Time
	spans, bytes, errors uint64
}

// Monitor records the load of a span pipeline and turns it into a history of
// [Snapshot]s. Create one with [New].
//
// The Record*, SetQueueDepth and AddQueueDepth methods are safe to call from
// any number of goroutines and never block. Tick, Run, History, Latest and
// Predict are safe for concurrent use with each other and with recording;
// they serialise on an internal mutex.
type Monitor struct {
	// Padding keeps the per-call counters, the per-batch counters and the
	// rest on different cache lines whatever the struct's alignment, so
	// that writers of one group do not invalidate readers of another.
	spans atomic.Uint64
	bytes atomic.Uint64
	_     [64]byte

	errors atomic.Uint64
	queue  atomic.Int64
	_      [64]byte

	services  sync.Map // string → *serviceEntry
	nServices atomic.Int64
	other     serviceEntry

	cfg Config

	mu      sync.Mutex
	primed  bool
	prev    counters
	ring    []Snapshot // len == cfg.HistorySize
	next    int        // ring index the next snapshot is written to
	count   int        // snapshots stored, ≤ len(ring)
	scratch []ServiceRate
}

// New returns a Monitor with the given configuration, or an error wrapping
// [ErrConfigValidation] if it is invalid.
func New(cfg Config) (*Monitor, error) {
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	return &Monitor{
		cfg:  cfg,
		ring: make([]Snapshot, cfg.HistorySize),
	}, nil
}

// RecordSpans counts n spans totalling size bytes. It is the hot-path call:
// two atomic adds, no locks, no allocation. Negative arguments count as 0.
// It does not feed the per-service breakdown; see RecordService.
func (m *Monitor) RecordSpans(n int, size int) {
	if n > 0 {
		m.spans.Add(uint64(n))
	}
	if size > 0 {
		m.bytes.Add(uint64(size))
	}
}

// RecordError counts n failed spans (or requests). Negative n counts as 0.
func (m *Monitor) RecordError(n int) {
	if n > 0 {
		m.errors.Add(uint64(n))
	}
}

// SetQueueDepth sets the current queue depth, which Tick samples.
func (m *Monitor) SetQueueDepth(n int64) {
	m.queue.Store(n)
}

// AddQueueDepth adds delta (which may be negative) to the queue depth.
func (m *Monitor) AddQueueDepth(delta int64) {
	m.queue.Add(delta)
}

// QueueDepth returns the current queue depth.
func (m *Monitor) QueueDepth() int64 {
	return m.queue.Load()
}

// RecordService counts spans for one service, for the per-service
// breakdown in [Snapshot.Services]. It is meant to be called once per
// service per batch, separately from RecordSpans, which counts the totals.
//
// After the first call for a name it takes no locks and does not allocate;
// the first call for a name stores a copy of it. Once Config.MaxServices
// names are tracked, new names are counted under [OtherServices]. spans <= 0
// is ignored.
func (m *Monitor) RecordService(service string, spans int) {
	if spans <= 0 {
		return
	}
	e, ok := m.services.Load(service)
	if !ok {
		m.newService(service).count.Add(uint64(spans))
		return
	}
	e.(*serviceEntry).count.Add(uint64(spans))
}

// newService is the slow path of RecordService: it registers name, or
// returns the overflow entry when the limit is reached.
func (m *Monitor) newService(name string) *serviceEntry {
	// Reserve a slot before storing so that concurrent first sightings
	// cannot exceed the limit; once full, skip the reservation's writes.
	limit := int64(m.cfg.MaxServices)
	full := m.nServices.Load() >= limit
	if !full && m.nServices.Add(1) > limit {
		m.nServices.Add(-1)
		full = true
	}
	if full {
		// The name may have been stored by a racing call that got a slot.
		if e, ok := m.services.Load(name); ok {
			return e.(*serviceEntry)
		}
		return &m.other
	}
	// Clone so that the map does not pin a caller's larger buffer (for
	// example a decoded request the name was sliced from).
	e, loaded := m.services.LoadOrStore(strings.Clone(name), new(serviceEntry))
	if loaded {
		m.nServices.Add(-1)
	}
	return e.(*serviceEntry)
}

// Tick closes the interval that began at the previous Tick and records its
// snapshot in the history. now is the caller's clock; r supplies CPU and
// memory (a zero Reading records them as 0).
//
// The first Tick of a Monitor only sets the baseline: it records nothing
// and returns false. A Tick whose now is not after the previous Tick's is
// ignored and returns false, leaving the baseline unchanged. Otherwise Tick
// returns the new snapshot and true.
//
// Counters are read one after another, not atomically together, so spans
// recorded during the Tick may land in either interval.
func (m *Monitor) Tick(now time.Time, r sysstat.Reading) (Snapshot, bool) {
	m.mu.Lock()
	defer m.mu.Unlock()

	cur := counters{
		at:     now,
		spans:  m.spans.Load(),
		bytes:  m.bytes.Load(),
		errors: m.errors.Load(),
	}
	queue := m.queue.Load()

	if !m.primed {
		m.primed, m.prev = true, cur
		m.services.Range(func(_, v any) bool {
			e := v.(*serviceEntry)
			e.last = e.count.Load()
			return true
		})
		m.other.last = m.other.count.Load()
		return Snapshot{}, false
	}
	interval := now.Sub(m.prev.at)
	if interval <= 0 {
		return Snapshot{}, false
	}
	secs := interval.Seconds()
	dSpans := cur.spans - m.prev.spans
	dErrors := cur.errors - m.prev.errors

	s := Snapshot{
		At:          now,
		Interval:    interval,
		QPS:         float64(dSpans) / secs,
		BytesPerSec: float64(cur.bytes-m.prev.bytes) / secs,
		QueueDepth:  queue,
		CPU:         r.ProcessCPU,
		Memory:      r.ProcessRSSBytes,
		Services:    m.topServices(secs),
	}
	if total := dSpans + dErrors; total > 0 {
		s.ErrorRate = float64(dErrors) / float64(total)
	}
	if s.QPS > 0 && queue > 0 {
		s.AvgLatencyMS = float64(queue) / s.QPS * 1000
	}
	m.prev = cur

	m.ring[m.next] = s
	m.next = (m.next + 1) % len(m.ring)
	m.count = min(m.count+1, len(m.ring))
	return s, true
}

// topServices advances every service's baseline and returns the busiest
// ones of the interval. Called with m.mu held.
func (m *Monitor) topServices(secs float64) []ServiceRate {
	rates := m.scratch[:0]
	add := func(name string, e *serviceEntry) {
		c := e.count.Load()
		if d := c - e.last; d > 0 {
			rates = append(rates, ServiceRate{Name: name, SpansPerSec: float64(d) / secs})
		}
		e.last = c
	}
	m.services.Range(func(k, v any) bool {
		add(k.(string), v.(*serviceEntry))
		return true
	})
	add(OtherServices, &m.other)
	m.scratch = rates[:0]

	if len(rates) == 0 || m.cfg.TopServices == 0 {
		return nil
	}
	slices.SortFunc(rates, func(a, b ServiceRate) int {
		if c := cmp.Compare(b.SpansPerSec, a.SpansPerSec); c != 0 {
			return c
		}
		return strings.Compare(a.Name, b.Name)
	})
	return slices.Clone(rates[:min(len(rates), m.cfg.TopServices)])
}

// History returns the stored snapshots, oldest first, in a new slice. The
// Services slices inside are shared and read-only.
func (m *Monitor) History() []Snapshot {
	m.mu.Lock()
	defer m.mu.Unlock()
	return m.lastN(m.count)
}

// Latest returns the most recent snapshot, and false if there is none yet.
func (m *Monitor) Latest() (Snapshot, bool) {
	m.mu.Lock()
	defer m.mu.Unlock()
	if m.count == 0 {
		return Snapshot{}, false
	}
	return m.ring[(m.next-1+len(m.ring))%len(m.ring)], true
}

// lastN copies the newest n (≤ m.count) snapshots, oldest first. Called with
// m.mu held.
func (m *Monitor) lastN(n int) []Snapshot {
	out := make([]Snapshot, n)
	start := (m.next - n + len(m.ring)) % len(m.ring)
	k := copy(out, m.ring[start:min(start+n, len(m.ring))])
	copy(out[k:], m.ring[:n-k])
	return out
}
