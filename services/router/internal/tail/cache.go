package tail

import "sync"

// Verdict is a decided trace's outcome as the decision cache remembers it.
type Verdict struct {
	// Keep reports whether the trace was kept.
	Keep bool
	// Policy is the index of the deciding policy, -1 when none matched.
	Policy int16
	// Probability is the combined (head × tail) probability the kept spans carry.
	Probability float32
}

// Cache remembers the verdicts of recently decided traces, so spans arriving after
// their trace was decided follow the decision. It holds at most 2 × size entries in two
// generations: inserts go to the current one; when it reaches size, it becomes the
// previous one and the old previous one is forgotten. A lookup checks both, so a trace
// is remembered for at least its last size decisions. Memory is bounded by size: an
// entry costs about 48 bytes of map space (16-byte key, 8-byte value, map overhead), so
// 100,000 remembers ≥ 100,000 traces in about 10 MB.
type Cache struct {
	mu        sync.Mutex
	size      int
	cur, prev map[[16]byte]Verdict
}

// NewCache returns a cache that remembers at least size traces (at least 1).
func NewCache(size int) *Cache {
	size = max(size, 1)
	return &Cache{size: size, cur: make(map[[16]byte]Verdict, size)}
}

// Put records the verdict of traceID.
func (c *Cache) Put(traceID [16]byte, v Verdict) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if _, ok := c.cur[traceID]; !ok && len(c.cur) >= c.size {
		c.prev, c.cur = c.cur, make(map[[16]byte]Verdict, c.size)
	}
	c.cur[traceID] = v
}

// Get returns the verdict of traceID, if it is remembered.
func (c *Cache) Get(traceID [16]byte) (Verdict, bool) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if v, ok := c.cur[traceID]; ok {
		return v, true
	}
	v, ok := c.prev[traceID]
	return v, ok
}

// Len returns the number of traces remembered.
func (c *Cache) Len() int {
	c.mu.Lock()
	defer c.mu.Unlock()
	return len(c.cur) + len(c.prev)
}
