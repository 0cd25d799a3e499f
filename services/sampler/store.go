package samplersvc

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"sync"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/otelfleet/otelfleet/pkg/election"
	"github.com/otelfleet/otelfleet/pkg/events"
	"github.com/otelfleet/otelfleet/pkg/lease"
	"github.com/otelfleet/otelfleet/pkg/natsconn"
)

// Errors returned by Store.
var (
	// ErrNoDecision is returned by Store.Get when no decision is stored yet.
	ErrNoDecision = errors.New("no sampling decision stored yet")
	// ErrStale is returned by Store.Write when the stored decision was made under a newer
	// term (a larger fencing token that the lease store issued): this writer's term is
	// over and it must not write.
	ErrStale = errors.New("a decision of a newer leader term is stored")
	// ErrContended is returned by Store.Write when other writers kept changing the key
	// between its read and its compare-and-set.
	ErrContended = errors.New("the decision key kept changing under the write")
)

// MaxVersion bounds the decision versions Store trusts: a stored version above it
// (2^53, the largest integer every JSON reader keeps exactly) was not written by a
// sampler, and is ignored when the next version is computed, so a hostile value cannot
// make versions wrap.
const MaxVersion = 1 << 53

// Store reads and writes the sampling decision: key "decision" of the KV bucket
// otlp_sampling.
type Store struct {
	kv    jetstream.KeyValue
	lease lease.Lease // the sampler role's lease, when writes are fenced against it
	log   *slog.Logger

	mu      sync.Mutex
	highest uint64 // the highest trusted version seen or written
}

// NewStore returns a store on kv (the sampling bucket). A store that writes should be
// given the sampler role's lease with FencedBy.
func NewStore(kv jetstream.KeyValue) *Store {
	return &Store{kv: kv, log: slog.New(slog.DiscardHandler)}
}

// FencedBy makes Write check a stored token above the writer's against l, the lease of
// the role the writer holds (events.LeaseKey("sampler") in otlp_leases), and logs the
// overwrites to log (nil discards). It returns s.
func (s *Store) FencedBy(l lease.Lease, log *slog.Logger) *Store {
	s.lease = l
	if log != nil {
		s.log = log
	}
	return s
}

// Observe records a version seen in the bucket (by the replica's decision watch), so
// that the next version written is above it even after the value is gone from the
// key's history. Versions above MaxVersion are ignored.
func (s *Store) Observe(version uint64) {
	if version > MaxVersion {
		return
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	s.highest = max(s.highest, version)
}

func (s *Store) highestSeen() uint64 {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.highest
}

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

// outranks reports whether a stored token above ours belongs to a term the lease store
// issued after ours. Fencing tokens are revisions of the leases bucket, and the lease
// value carries the token of the term holding it: while the role's lease still holds
// our token, no later term exists, so a larger stored token was never issued (a
// hostile value, or a decision from before the leases bucket was recreated and its
// revisions restarted) and our live term may replace it. Without a lease to check
// (FencedBy not called), or when the lease shows another term or none, the stored
// token fences.
func (s *Store) outranks(ctx context.Context, stored, ours uint64) (bool, error) {
	if stored <= ours {
		return false, nil
	}
	if s.lease == nil {
		return true, nil
	}
	ld, held, err := election.ReadLeader(ctx, s.lease)
	if err != nil {
		return false, fmt.Errorf("read the sampler lease to check stored token %d: %w", stored, err)
	}
	if held && ld.Token == ours {
		s.log.Warn("replacing a stored sampling decision whose token no live term was issued (written by hand, or before the leases bucket was recreated)",
			"stored_token", stored, "token", ours)
		return false, nil
	}
	return true, nil
}

// nextVersion returns the version to write over cur: one above the highest trusted
// version among cur, every version in the key's kept history and the versions this
// store has seen. The history is read only when cur is not a plain predecessor (a value
// that does not decode, one replaced over a foreign token, or one below what this store
// has seen). A failed read of the history fails: guessing could write a version below
// one the history holds, so the write waits for the next interval instead.
func (s *Store) nextVersion(ctx context.Context, cur uint64, plain bool) (uint64, error) {
	top := s.highestSeen()
	if cur <= MaxVersion {
		top = max(top, cur)
	}
	if !plain || cur < top {
		hist, err := s.kv.History(ctx, events.DecisionKey)
		if err != nil && !errors.Is(err, jetstream.ErrKeyNotFound) {
			return 0, fmt.Errorf("read the sampling decision's history for the next version: %w", err)
		}
		for _, e := range hist {
			if _, v, ok := fence(e.Value()); ok && v <= MaxVersion {
				top = max(top, v)
			}
		}
	}
	return top + 1, nil
}

// Write stores d as the decision in force, by compare-and-set, unless a decision made
// under a newer term is stored (ErrStale). It sets d.Version above every version stored
// before (see nextVersion) and returns the new revision.
//
// The token check and the revision-checked update together make the stored tokens of
// live terms non-decreasing: the check refuses to replace a newer term's decision that
// is already stored, and the compare-and-set refuses the write when anyone wrote after
// the read (the write is then retried from a fresh read, which sees the newer token).
// A stored token above ours fences only if the lease store issued it (see outranks). A
// stored value that does not decode is replaced, unless its token can still be read
// and fences.
func (s *Store) Write(ctx context.Context, d *events.Decision) (uint64, error) {
	for range 3 {
		cur, rev, raw, err := s.get(ctx)
		plain := true
		switch {
		case errors.Is(err, ErrNoDecision):
			v, err := s.nextVersion(ctx, 0, false)
			if err != nil {
				return 0, err
			}
			d.Version = v
			data, err := events.Encode(d)
			if err != nil {
				return 0, err
			}
			rev, err := s.kv.Create(ctx, events.DecisionKey, data)
			if natsconn.IsConflict(err) {
				continue // someone stored the first decision meanwhile
			}
			if err != nil {
				return 0, fmt.Errorf("store the sampling decision: %w", err)
			}
			s.Observe(d.Version)
			return rev, nil
		case errors.Is(err, events.ErrMalformed):
			// A value this build cannot use. If its token is readable it may still fence
			// (a newer build's decision, say); otherwise it is garbage: replace it.
			token, version, _ := fence(raw)
			newer, ferr := s.outranks(ctx, token, d.Token)
			if ferr != nil {
				return 0, ferr
			}
			if newer {
				return 0, fmt.Errorf("%w: stored token %d (in a value this build cannot decode: %v) > ours %d", ErrStale, token, err, d.Token)
			}
			cur.Version, plain = version, false
		case err != nil:
			return 0, err
		default:
			newer, ferr := s.outranks(ctx, cur.Token, d.Token)
			if ferr != nil {
				return 0, ferr
			}
			if newer {
				return 0, fmt.Errorf("%w: stored token %d (leader %s) > ours %d", ErrStale, cur.Token, cur.Leader, d.Token)
			}
			plain = cur.Token <= d.Token
		}
		v, err := s.nextVersion(ctx, cur.Version, plain)
		if err != nil {
			return 0, err
		}
		d.Version = v
		data, err := events.Encode(d)
		if err != nil {
			return 0, err
		}
		rev, err = s.kv.Update(ctx, events.DecisionKey, data, rev)
		if natsconn.IsConflict(err) {
			continue
		}
		if err != nil {
			return 0, fmt.Errorf("store the sampling decision: %w", err)
		}
		s.Observe(d.Version)
		return rev, nil
	}
	return 0, ErrContended
}
