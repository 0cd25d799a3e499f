package export

import (
	"context"
	"log/slog"
	"sync"
	"sync/atomic"
	"time"

	"github.com/cenkalti/backoff/v4"

	"github.com/otelfleet/otelfleet/services/router/internal/otlpwire"
)

// numSignals sizes per-signal arrays (indexed by otlpwire.Signal).
const numSignals = int(otlpwire.Metrics) + 1

// pending is the batch one signal is building.
type pending struct {
	buf   []byte
	items int
	timer *time.Timer
	gen   uint64
	// acks are the waiters of the parts in buf; lingering: the timer runs for AckLinger.
	acks      []*Ack
	lingering bool
}

// target is one backend: its queue, its batching, its client and its senders.
//
// Lifecycle: live → leaving (gone closed: takes nothing, its queue handed back, in-flight
// calls end once and are handed back unless they succeed) or draining (Exporter.Close:
// pending batches flushed, senders empty the queue) → aborted (callCtx cancelled: every
// call and queued batch handed back) → done (wg).
type target struct {
	Target
	log *slog.Logger
	tm  targetMetrics

	mu         sync.Mutex
	cfg        Config
	cl         client
	oldClients []client
	pend       [numSignals]pending
	queue      []Batch
	queueBytes int64 // pending + queued, not in flight
	leaving    bool
	draining   bool
	// handback disposes of a batch this target will not deliver.
	handback func(Batch)

	wake    chan struct{} // cap 1: a batch was queued
	gone    chan struct{} // closed when the target leaves
	drain   chan struct{} // closed when the exporter closes
	callCtx context.Context
	abort   context.CancelFunc
	wg      sync.WaitGroup

	inFlight                                 atomic.Int64
	sent, failed, retried, rerouted, dropped atomic.Int64
}

func newTarget(t Target, cfg Config, cl client, tm targetMetrics, log *slog.Logger, handback func(Batch)) *target {
	ctx, cancel := context.WithCancel(context.Background())
	tg := &target{
		Target: t, log: log, tm: tm, cfg: cfg, cl: cl, handback: handback,
		wake: make(chan struct{}, 1), gone: make(chan struct{}), drain: make(chan struct{}),
		callCtx: ctx, abort: cancel,
	}
	for range cfg.Senders {
		tg.wg.Add(1)
		go tg.sender()
	}
	return tg
}

// batchBuffers recycles the buffers of delivered batches (handed-back ones belong to the
// router from then on).
var batchBuffers = sync.Pool{New: func() any { return new([]byte) }}

func getBuffer() []byte { return (*batchBuffers.Get().(*[]byte))[:0] }

func putBuffer(b []byte) {
	if cap(b) == 0 || cap(b) > 2*DefaultMaxBatchBytes {
		return
	}
	p := new([]byte)
	*p = b[:0]
	batchBuffers.Put(p)
}

// submit appends b to the batch being built for its signal (copying the payload).
func (t *target) submit(b Batch) error {
	n := int64(len(b.Payload))
	t.mu.Lock()
	defer t.mu.Unlock()
	if t.leaving || t.draining {
		return ErrNoTarget
	}
	if t.queueBytes+n > t.cfg.QueueBytes {
		return ErrFull
	}
	sig := int(b.Signal)
	if sig <= 0 || sig >= numSignals {
		sig = int(otlpwire.Traces)
	}
	p := &t.pend[sig]
	if len(p.buf) > 0 && len(p.buf)+len(b.Payload) > t.cfg.MaxBatchBytes {
		t.flushLocked(sig)
	}
	if p.buf == nil {
		p.buf = getBuffer()
	}
	p.buf = append(p.buf, b.Payload...)
	p.items += b.Items
	if len(b.Acks) > 0 {
		Hold(b.Acks)
		p.acks = append(p.acks, b.Acks...)
	}
	t.queueBytes += n
	t.tm.queueBytes.Add(float64(n))
	switch {
	case p.items >= t.cfg.MaxBatchItems || len(p.buf) >= t.cfg.MaxBatchBytes:
		t.flushLocked(sig)
	case len(b.Acks) > 0 && !p.lingering && t.cfg.AckLinger < t.cfg.MaxWait:
		// Someone waits for this part: send the batch after a short linger, not MaxWait.
		if p.timer != nil {
			p.timer.Stop()
		}
		t.startTimerLocked(sig, t.cfg.AckLinger)
		p.lingering = true
	case p.timer == nil:
		t.startTimerLocked(sig, t.cfg.MaxWait)
	}
	return nil
}

// startTimerLocked flushes signal sig's batch after d (a new generation: an old timer
// that fires anyway does nothing).
func (t *target) startTimerLocked(sig int, d time.Duration) {
	p := &t.pend[sig]
	p.gen++
	gen := p.gen
	p.timer = time.AfterFunc(d, func() { t.timerFlush(sig, gen) })
}

func (t *target) timerFlush(sig int, gen uint64) {
	t.mu.Lock()
	defer t.mu.Unlock()
	if t.pend[sig].gen == gen && t.pend[sig].timer != nil {
		t.flushLocked(sig)
	}
}

// flushLocked moves signal sig's batch to the send queue.
func (t *target) flushLocked(sig int) {
	p := &t.pend[sig]
	if p.timer != nil {
		p.timer.Stop()
		p.timer = nil
	}
	p.lingering = false
	if len(p.buf) == 0 {
		return
	}
	t.queue = append(t.queue, Batch{Signal: otlpwire.Signal(sig), Payload: p.buf, Items: p.items, Acks: p.acks})
	p.buf, p.items, p.acks = nil, 0, nil
	select {
	case t.wake <- struct{}{}:
	default:
	}
}

// flushLingering sends at once the batches that hold parts someone waits for (instead of
// at the end of their linger).
func (t *target) flushLingering() {
	t.mu.Lock()
	defer t.mu.Unlock()
	for sig := 1; sig < numSignals; sig++ {
		if t.pend[sig].lingering {
			t.flushLocked(sig)
		}
	}
}

func (t *target) flushAllLocked() {
	for sig := 1; sig < numSignals; sig++ {
		t.flushLocked(sig)
	}
}

// takeQueueLocked empties the queue (after flushing) and returns what was in it.
func (t *target) takeQueueLocked() []Batch {
	t.flushAllLocked()
	q := t.queue
	t.queue = nil
	var n int64
	for _, b := range q {
		n += int64(len(b.Payload))
	}
	t.queueBytes -= n
	t.tm.queueBytes.Sub(float64(n))
	return q
}

// next waits for a batch to send; ok is false when the sender should stop.
func (t *target) next() (b Batch, cl client, cfg Config, ok bool) {
	for {
		t.mu.Lock()
		if t.callCtx.Err() != nil || t.leaving {
			q := t.takeQueueLocked()
			t.mu.Unlock()
			for _, b := range q {
				t.giveBack(b)
			}
			return Batch{}, nil, Config{}, false
		}
		if len(t.queue) > 0 {
			b = t.queue[0]
			t.queue[0] = Batch{}
			t.queue = t.queue[1:]
			if len(t.queue) > 0 {
				select {
				case t.wake <- struct{}{}:
				default:
				}
			}
			t.queueBytes -= int64(len(b.Payload))
			t.tm.queueBytes.Sub(float64(len(b.Payload)))
			cl, cfg = t.cl, t.cfg
			t.mu.Unlock()
			return b, cl, cfg, true
		}
		draining := t.draining
		t.mu.Unlock()
		if draining {
			return Batch{}, nil, Config{}, false
		}
		select {
		case <-t.wake:
		case <-t.gone:
		case <-t.drain:
		case <-t.callCtx.Done():
		}
	}
}

func (t *target) sender() {
	defer t.wg.Done()
	for {
		b, cl, cfg, ok := t.next()
		if !ok {
			return
		}
		t.deliver(b, cl, cfg)
	}
}

// deliver sends b, retrying only b on retryable failures, and hands it back when it
// cannot be delivered.
func (t *target) deliver(b Batch, cl client, cfg Config) {
	t.inFlight.Add(1)
	t.tm.inFlight.Inc()
	defer func() {
		t.inFlight.Add(-1)
		t.tm.inFlight.Dec()
	}()
	bo := backoff.NewExponentialBackOff(
		backoff.WithInitialInterval(cfg.InitialBackoff),
		backoff.WithMaxInterval(cfg.MaxBackoff),
		backoff.WithRandomizationFactor(0.5),
		backoff.WithMultiplier(2),
		backoff.WithMaxElapsedTime(0),
	)
	for retries := 0; ; retries++ {
		ctx, cancel := context.WithTimeout(t.callCtx, cfg.Timeout)
		start := time.Now()
		o := t.export(ctx, cl, b, retries+1)
		cancel()
		took := time.Since(start).Seconds()
		if o.err == nil {
			t.tm.latency["ok"].Observe(took)
			ok := int64(b.Items) - o.rejected
			if ok < 0 {
				ok = 0
			}
			t.count(&t.sent, t.tm.sent, ok)
			if rej := int64(b.Items) - ok; rej > 0 {
				t.count(&t.failed, t.tm.failed, rej)
				t.log.Warn("backend rejected part of a batch", "backend", t.Key, "rejected", rej, "message", o.message)
			}
			Settle(b.Acks, true)
			putBuffer(b.Payload)
			return
		}
		if !o.retryable {
			t.tm.latency["failed"].Observe(took)
			t.count(&t.failed, t.tm.failed, int64(b.Items))
			t.log.Warn("backend refused a batch; handing it back", "backend", t.Key, "items", b.Items, "err", o.err)
			t.giveBack(b)
			return
		}
		t.tm.latency["retryable"].Observe(took)
		if retries >= cfg.MaxRetries || t.isGone() {
			t.log.Info("backend did not take a batch; handing it back", "backend", t.Key, "items", b.Items, "retries", retries, "err", o.err)
			t.giveBack(b)
			return
		}
		delay := bo.NextBackOff()
		if o.throttle > 0 {
			delay = o.throttle
		}
		t.count(&t.retried, t.tm.retried, int64(b.Items))
		timer := time.NewTimer(delay)
		select {
		case <-timer.C:
		case <-t.gone:
			timer.Stop()
			t.giveBack(b)
			return
		case <-t.callCtx.Done():
			timer.Stop()
			t.giveBack(b)
			return
		}
	}
}

func (t *target) isGone() bool {
	select {
	case <-t.gone:
		return true
	default:
		return t.callCtx.Err() != nil
	}
}

func (t *target) count(a *atomic.Int64, c interface{ Add(float64) }, n int64) {
	if n == 0 {
		return
	}
	a.Add(n)
	c.Add(float64(n))
}

// giveBack hands b to the target's handback.
func (t *target) giveBack(b Batch) {
	t.mu.Lock()
	hb := t.handback
	t.mu.Unlock()
	hb(b)
}

// leave stops taking batches and hands back everything queued; in-flight calls end on
// their own. hb, if set, replaces the handback for what is given back from now on.
func (t *target) leave(hb func(Batch)) {
	t.mu.Lock()
	if t.leaving {
		t.mu.Unlock()
		return
	}
	t.leaving = true
	if hb != nil {
		t.handback = hb
	}
	close(t.gone)
	q := t.takeQueueLocked()
	t.mu.Unlock()
	for _, b := range q {
		t.giveBack(b)
	}
}

// startDrain flushes what is batching and lets the senders empty the queue and stop.
func (t *target) startDrain() {
	t.mu.Lock()
	defer t.mu.Unlock()
	if t.draining {
		return
	}
	t.draining = true
	t.flushAllLocked()
	close(t.drain)
}

// setConfig applies cfg; a new protocol, compression or TLS config gets a new client
// (the old one is closed when the target is done).
func (t *target) setConfig(cfg Config, cl client) {
	t.mu.Lock()
	defer t.mu.Unlock()
	t.cfg = cfg
	if cl != nil {
		t.oldClients = append(t.oldClients, t.cl)
		t.cl = cl
	}
}

// finish waits for the senders and closes the clients.
func (t *target) finish() {
	t.wg.Wait()
	t.mu.Lock()
	cls := append(t.oldClients, t.cl)
	t.oldClients, t.cl = nil, nil
	t.mu.Unlock()
	for _, c := range cls {
		if c != nil {
			_ = c.close()
		}
	}
	t.abort()
}

func (t *target) stats() TargetStats {
	t.mu.Lock()
	qb, leaving := t.queueBytes, t.leaving
	t.mu.Unlock()
	return TargetStats{
		Key: t.Key, Addr: t.Addr,
		Sent: t.sent.Load(), Failed: t.failed.Load(), Retried: t.retried.Load(),
		Rerouted: t.rerouted.Load(), Dropped: t.dropped.Load(),
		QueueBytes: qb, InFlight: t.inFlight.Load(), Leaving: leaving,
	}
}
