package events

import (
	"errors"
	"fmt"
	"strings"
	"time"
)

// LockKeyPrefix starts every distributed-lock key in the leases bucket. Leadership roles
// are plain tokens and can never contain the '.', so roles and locks never collide.
const LockKeyPrefix = "lock."

// LockKey is the leases bucket key of a distributed lock: lock.<name>.
func LockKey(name string) (string, error) {
	if err := CheckToken("lock name", name); err != nil {
		return "", err
	}
	return LockKeyPrefix + name, nil
}

// LockFromKey returns the lock name of a lock.<name> key, or false when key is not a
// lock key (it is then a leadership role).
func LockFromKey(key string) (string, bool) {
	n, ok := strings.CutPrefix(key, LockKeyPrefix)
	if !ok || CheckToken("lock name", n) != nil {
		return "", false
	}
	return n, true
}

// Lease is the value of a key in the leases bucket: who holds a leadership role or a
// lock, under which fencing token, and since when. Holders write it with Create when they
// win and rewrite it with a revision-checked Update on every renewal.
//
// Token is the KV revision of the Create that won the term. It cannot be known before the
// Create returns, so the first value of a term has Token 0; every renewal carries it.
// Readers use Token when it is set and the entry's revision otherwise (an entry without a
// token is the winning Create itself).
type Lease struct {
	V int `json:"v"`
	// Holder is the id of the candidate or lock owner.
	Holder string `json:"holder"`
	// Token is the fencing token of the term (0 in the winning Create, see above).
	Token uint64 `json:"token,omitempty"`
	// AcquiredAt is when the term was won (holder's clock).
	AcquiredAt time.Time `json:"acquired_at"`
	// RenewedAt is when the holder last renewed (holder's clock).
	RenewedAt time.Time `json:"renewed_at"`
}

// LeaseVersion is the schema version of Lease.
const LeaseVersion = 1

// Kind implements Payload.
func (Lease) Kind() string { return "lease" }

// SchemaVersion implements Payload.
func (Lease) SchemaVersion() int { return LeaseVersion }

// Validate implements Payload.
func (l Lease) Validate() error {
	var errs []error
	if l.Holder == "" {
		errs = append(errs, errors.New("holder: empty"))
	}
	if l.AcquiredAt.IsZero() {
		errs = append(errs, errors.New("acquired_at: missing"))
	}
	if !l.RenewedAt.IsZero() && l.RenewedAt.Before(l.AcquiredAt) {
		errs = append(errs, fmt.Errorf("renewed_at: %s is before acquired_at %s", l.RenewedAt.Format(time.RFC3339Nano), l.AcquiredAt.Format(time.RFC3339Nano)))
	}
	return errors.Join(errs...)
}
