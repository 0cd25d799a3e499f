package configwatch

import (
	"context"
	"errors"
	"fmt"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/otelfleet/otelfleet/pkg/events"
)

// ErrNoGoodValue is returned by LastGood when neither key's kept history nor the config
// service's copy (events.GoodConfigKey) holds a value that decodes.
var ErrNoGoodValue = errors.New("no good value")

// Good is a config document read from the bucket with where it came from.
type Good[T any] struct {
	Doc T
	// Version is the document's version.
	Version uint64
	// Key is the key it was read from: the key itself, or its events.GoodConfigKey.
	Key string
	// Revision is its revision under Key.
	Revision uint64
}

// NewestInHistory returns the newest entry of hist (oldest first, as KeyValue.History
// gives it) that decode accepts, looking no further back than the newest delete or
// purge (nothing older is in force); ok is false when there is none.
func NewestInHistory[T any](hist []jetstream.KeyValueEntry, decode func([]byte) (T, error), version func(T) uint64) (Good[T], bool) {
	for i := len(hist) - 1; i >= 0; i-- {
		e := hist[i]
		if e.Operation() != jetstream.KeyValuePut {
			break
		}
		if v, err := decode(e.Value()); err == nil {
			return Good[T]{Doc: v, Version: version(v), Key: e.Key(), Revision: e.Revision()}, true
		}
	}
	return Good[T]{}, false
}

// ReadGood returns the config service's copy of the last good value of key
// (events.GoodConfigKey(key)) when it exists and decode accepts it.
func ReadGood[T any](ctx context.Context, kv jetstream.KeyValue, key string, decode func([]byte) (T, error), version func(T) uint64) (Good[T], bool, error) {
	gk := events.GoodConfigKey(key)
	e, err := kv.Get(ctx, gk)
	switch {
	case errors.Is(err, jetstream.ErrKeyNotFound):
		return Good[T]{}, false, nil
	case err != nil:
		return Good[T]{}, false, fmt.Errorf("read %s: %w", gk, err)
	}
	v, err := decode(e.Value())
	if err != nil {
		return Good[T]{}, false, nil // a bad copy is as good as none
	}
	return Good[T]{Doc: v, Version: version(v), Key: gk, Revision: e.Revision()}, true, nil
}

// Better returns whichever of a (found: aok) and b (bok) has the higher version.
func Better[T any](a Good[T], aok bool, b Good[T], bok bool) (Good[T], bool) {
	switch {
	case aok && bok && b.Version > a.Version:
		return b, true
	case aok:
		return a, true
	default:
		return b, bok
	}
}

// LastGood returns the last good value of key: the higher version of the newest value
// of its kept history that decode accepts and of the config service's copy under
// events.GoodConfigKey(key). A key whose newest history entry is a delete or purge, or
// that has no history, has none (the copy does not bring a deleted key back). It reads
// the key's whole history: callers bound how often they call it.
func LastGood[T any](ctx context.Context, kv jetstream.KeyValue, key string, decode func([]byte) (T, error), version func(T) uint64) (Good[T], error) {
	hist, err := kv.History(ctx, key)
	if errors.Is(err, jetstream.ErrKeyNotFound) {
		return Good[T]{}, fmt.Errorf("%w: %s has no history", ErrNoGoodValue, key)
	}
	if err != nil {
		return Good[T]{}, fmt.Errorf("history of %s: %w", key, err)
	}
	if hist[len(hist)-1].Operation() != jetstream.KeyValuePut {
		return Good[T]{}, fmt.Errorf("%w: %s was deleted", ErrNoGoodValue, key)
	}
	h, hok := NewestInHistory(hist, decode, version)
	g, gok, err := ReadGood(ctx, kv, key, decode, version)
	if err != nil && !hok {
		return Good[T]{}, err
	}
	best, ok := Better(h, hok, g, gok)
	if !ok {
		return Good[T]{}, fmt.Errorf("%w: neither the kept history of %s nor %s holds a valid value", ErrNoGoodValue, key, events.GoodConfigKey(key))
	}
	return best, nil
}
