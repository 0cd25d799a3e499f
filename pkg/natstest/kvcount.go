package natstest

import (
	"context"
	"sync"

	"github.com/nats-io/nats.go/jetstream"
)

// HistoryCounter is a real bucket that counts the reads of each key's history, so a test
// can bound how often code under test reads them.
type HistoryCounter struct {
	jetstream.KeyValue
	mu sync.Mutex
	n  map[string]int
}

// CountHistory returns kv counting its History calls.
func CountHistory(kv jetstream.KeyValue) *HistoryCounter {
	return &HistoryCounter{KeyValue: kv, n: map[string]int{}}
}

// History counts the read and reads key's history from the bucket.
func (c *HistoryCounter) History(ctx context.Context, key string, opts ...jetstream.WatchOpt) ([]jetstream.KeyValueEntry, error) {
	c.mu.Lock()
	c.n[key]++
	c.mu.Unlock()
	return c.KeyValue.History(ctx, key, opts...)
}

// Reads returns how often key's history was read.
func (c *HistoryCounter) Reads(key string) int {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.n[key]
}
