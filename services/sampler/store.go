package samplersvc

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/otelfleet/otelfleet/pkg/events"
)

// Errors returned by Store.
var (
	// ErrNoDecision is returned by Store.Get when no decision is stored yet.
	ErrNoDecision = errors.New("no sampling decision stored yet")
	// ErrStale is returned by Store.Write when the stored decision was made under a newer
	// term (a larger fencing token): this writer's term is over and it must not write.
	ErrStale = errors.New("a decision of a newer leader term is stored")
	// ErrContended is returned by Store.Write when other writers kept changing the key
	// between its read and its compare-and-set.
	ErrContended = errors.New("the decision key kept changing under the write")
)

// Store reads and writes the sampling decision: key "decision" of the KV bucket
// otlp_sampling.
type Store struct {
	kv jetstream.KeyValue
}

// NewStore returns a store on kv (the sampling bucket).
func NewStore(kv jetstream.KeyValue) *Store { return &Store{kv: kv} }

// Get returns the stored decision and its KV revision; ErrNoDecision when there is
// none. A stored value that does not decode is returned as an error wrapping
// events.ErrMalformed, with its revision.
func (s *Store) Get(ctx context.Context) (events.Decision, uint64, error) {
	d, rev, _, err := s.get(ctx)
	return d, rev, err
}

// get is Get, also returning the stored bytes.
func (s *Store) get(ctx context.Context) (events.Decision, uint64, []byte, error) {
	e, err := s.kv.Get(ctx, events.DecisionKey)
	if errors.Is(err, jetstream.ErrKeyNotFound) {
		return events.Decision{}, 0, nil, ErrNoDecision
	}
	if err != nil {
		return events.Decision{}, 0, nil, fmt.Errorf("read the sampling decision: %w", err)
	}
	d, err := events.DecodeDecision(e.Value())
	if err != nil {
		return events.Decision{}, e.Revision(), e.Value(), fmt.Errorf("stored sampling decision at revision %d: %w", e.Revision(), err)
	}
	return d, e.Revision(), e.Value(), nil
}

// fence reads only the token and version of a stored value that does not decode as a
// decision (a newer schema, or refused by this build's validation): such a value may
// still be a newer term's decision. ok is false when even these are unreadable.
func fence(data []byte) (token, version uint64, ok bool) {
	var head struct {
		Token   *uint64 `json:"token"`
		Version uint64  `json:"version"`
	}
	if json.Unmarshal(data, &head) != nil || head.Token == nil {
		return 0, 0, false
	}
	return *head.Token, head.Version, true
}

// Write stores d as the decision in force, by compare-and-set, unless a decision made
// under a newer term is stored (ErrStale). It sets d.Version to the stored version plus
// one (1 for the first decision) and returns the new revision.
//
// The token check and the revision-checked update together make the stored tokens
// non-decreasing: the check refuses to replace a newer term's decision that is already
// stored, and the compare-and-set refuses the write when anyone wrote after the read (the
// write is then retried from a fresh read, which sees the newer token). A stored value
// that does not decode is replaced, unless its token can still be read and is larger.
func (s *Store) Write(ctx context.Context, d *events.Decision) (uint64, error) {
	for range 3 {
		cur, rev, raw, err := s.get(ctx)
		switch {
		case errors.Is(err, ErrNoDecision):
			d.Version = 1
			data, err := events.Encode(d)
			if err != nil {
				return 0, err
			}
			rev, err := s.kv.Create(ctx, events.DecisionKey, data)
			if isRevisionMismatch(err) {
				continue // someone stored the first decision meanwhile
			}
			if err != nil {
				return 0, fmt.Errorf("store the sampling decision: %w", err)
			}
			return rev, nil
		case errors.Is(err, events.ErrMalformed):
			// A value this build cannot use. If its token is readable it still fences
			// (a newer build's decision, say); otherwise it is garbage: replace it.
			// Revisions only grow and every decision is one write, so rev+1 is above
			// every version stored before (and above the value's own, when readable).
			token, version, ok := fence(raw)
			if ok && token > d.Token {
				return 0, fmt.Errorf("%w: stored token %d (in a value this build cannot decode: %v) > ours %d", ErrStale, token, err, d.Token)
			}
			d.Version = max(rev, version) + 1
		case err != nil:
			return 0, err
		case cur.Token > d.Token:
			return 0, fmt.Errorf("%w: stored token %d (leader %s) > ours %d", ErrStale, cur.Token, cur.Leader, d.Token)
		default:
			d.Version = cur.Version + 1
		}
		data, err := events.Encode(d)
		if err != nil {
			return 0, err
		}
		rev, err = s.kv.Update(ctx, events.DecisionKey, data, rev)
		if isRevisionMismatch(err) {
			continue
		}
		if err != nil {
			return 0, fmt.Errorf("store the sampling decision: %w", err)
		}
		return rev, nil
	}
	return 0, ErrContended
}

// isRevisionMismatch reports whether err is the KV's compare-and-set failure.
func isRevisionMismatch(err error) bool {
	if err == nil {
		return false
	}
	if errors.Is(err, jetstream.ErrKeyRevisionMismatch) || errors.Is(err, jetstream.ErrKeyExists) {
		return true
	}
	var apiErr *jetstream.APIError
	return errors.As(err, &apiErr) && (apiErr.ErrorCode == jetstream.JSErrCodeStreamWrongLastSequence ||
		apiErr.ErrorCode == jetstream.JSErrCodeStreamWrongLastSequenceConstant)
}
