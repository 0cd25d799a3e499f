package configsvc

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"time"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/otelfleet/otelfleet/pkg/configwatch"
	"github.com/otelfleet/otelfleet/pkg/events"
	"github.com/otelfleet/otelfleet/pkg/fleetconfig"
	"github.com/otelfleet/otelfleet/pkg/natsconn"
)

// Errors returned by Store.
var (
	// ErrConflict is returned when the key changed between reading and writing it, or
	// when the caller's expected version is not the stored one. Nothing was written.
	ErrConflict = errors.New("conflict")
	// ErrNotFound is returned when a key or a version does not exist.
	ErrNotFound = errors.New("not found")
)

// Store reads and writes versioned config documents in the config bucket.
type Store struct {
	kv  jetstream.KeyValue
	js  jetstream.JetStream // set by TraceWrites
	now func() time.Time
}

// NewStore returns a store on kv (the otlp_config bucket).
func NewStore(kv jetstream.KeyValue) *Store { return &Store{kv: kv, now: time.Now} }

// Stamp is the version metadata every stored document carries.
type Stamp struct {
	Version   uint64    `json:"version"`
	UpdatedAt time.Time `json:"updated_at"`
	UpdatedBy string    `json:"updated_by"`
}

// docType describes one kind of stored document (the global config or a region's).
type docType[T any] struct {
	key string
	// load decodes and validates a stored value.
	load func([]byte) (T, error)
	// stamp gives access to the document's version metadata.
	stamp func(*T) (*uint64, *time.Time, *string)
	diff  func(a, b T) []string
}

// version returns doc's version.
func (d docType[T]) version(doc T) uint64 {
	v, _, _ := d.stamp(&doc)
	return *v
}

func globalDoc() docType[fleetconfig.Global] {
	return docType[fleetconfig.Global]{
		key: events.GlobalConfigKey,
		load: func(b []byte) (fleetconfig.Global, error) {
			return fleetconfig.DecodeStoredGlobal(events.GlobalConfigKey, b)
		},
		stamp: func(g *fleetconfig.Global) (*uint64, *time.Time, *string) {
			return &g.Version, &g.UpdatedAt, &g.UpdatedBy
		},
		diff: fleetconfig.Diff,
	}
}

func regionDoc(region string) (docType[fleetconfig.Region], error) {
	key, err := events.RegionConfigKey(region)
	if err != nil {
		return docType[fleetconfig.Region]{}, err
	}
	return docType[fleetconfig.Region]{
		key: key,
		load: func(b []byte) (fleetconfig.Region, error) {
			return fleetconfig.DecodeStoredRegion(key, region, b)
		},
		stamp: func(r *fleetconfig.Region) (*uint64, *time.Time, *string) {
			return &r.Version, &r.UpdatedAt, &r.UpdatedBy
		},
		diff: fleetconfig.DiffRegion,
	}, nil
}

// Change is the outcome of an accepted write.
type Change struct {
	Key        string   `json:"key"`
	OldVersion uint64   `json:"old_version"`
	NewVersion uint64   `json:"new_version"`
	Changed    []string `json:"changed"`
	By         string   `json:"by"`
	Revision   uint64   `json:"revision"`
	// Unchanged is true when the content equals what is stored: nothing was written.
	Unchanged bool `json:"unchanged,omitempty"`
}

// current returns the stored document of d and its revision; a missing key gives the zero
// document and revision 0. A stored value that fails to decode or validate is returned
// as an error wrapping fleetconfig's error together with the revision, so a writer can
// still replace it.
func current[T any](ctx context.Context, kv jetstream.KeyValue, d docType[T]) (T, uint64, error) {
	var zero T
	e, err := kv.Get(ctx, d.key)
	switch {
	case errors.Is(err, jetstream.ErrKeyNotFound):
		return zero, 0, nil
	case err != nil:
		return zero, 0, fmt.Errorf("read %s: %w", d.key, err)
	}
	doc, err := d.load(e.Value())
	if err != nil {
		return zero, e.Revision(), &storedInvalidError{key: d.key, revision: e.Revision(), err: err}
	}
	return doc, e.Revision(), nil
}

type storedInvalidError struct {
	key      string
	revision uint64
	err      error
}

func (e *storedInvalidError) Error() string {
	return fmt.Sprintf("stored value of %s at revision %d is invalid: %v", e.key, e.revision, e.err)
}
func (e *storedInvalidError) Unwrap() error { return e.err }

// put writes doc as the next version of d's key with a revision check. ifVersion, when
// non-nil, must equal the stored version. The new version is one above the highest
// valid version in the key's kept history (and above the version in force), so versions
// only go up even over values written straight into the bucket; stored values with a
// version of 0 or above fleetconfig.MaxVersion are not valid and do not count. by longer
// than fleetconfig.MaxUpdatedByLen and a document encoding to more than
// fleetconfig.MaxDocumentBytes are refused with an error matching fleetconfig.ErrInvalid.
func put[T any](ctx context.Context, s *Store, d docType[T], doc T, by string, ifVersion *uint64) (Change, error) {
	if err := fleetconfig.CheckUpdatedBy(by); err != nil {
		return Change{}, &fleetconfig.ValidationError{Problems: []fleetconfig.Problem{{Path: "by", Message: err.Error()}}}
	}
	old, rev, err := current(ctx, s.kv, d)
	var invalid *storedInvalidError
	if err != nil && !errors.As(err, &invalid) {
		return Change{}, err
	}
	if ifVersion != nil && invalid != nil {
		return Change{}, fmt.Errorf("%w: the stored value of %s is invalid, so its version is unknown; write without an expected version to replace it", ErrConflict, d.key)
	}
	// hasOld: old is a valid document to report the change against. Over a garbage value
	// that is the version in force (the newest valid one, which watchers kept).
	hasOld := rev != 0 && invalid == nil
	if invalid != nil {
		if last, _, err := inForce(ctx, s.kv, d); err == nil {
			old, hasOld = last, true
		}
	}
	oldVersion, _, _ := d.stamp(&old)
	if ifVersion != nil && *ifVersion != *oldVersion {
		return Change{}, fmt.Errorf("%w: %s is at version %d, not %d as expected; fetch it again and retry", ErrConflict, d.key, *oldVersion, *ifVersion)
	}
	if rev != 0 && invalid == nil && len(d.diff(old, doc)) == 0 {
		// Same content as in force: nothing to write, no new version.
		return Change{Key: d.key, OldVersion: *oldVersion, NewVersion: *oldVersion, By: by, Revision: rev, Unchanged: true}, nil
	}
	next := *oldVersion + 1
	if rev != 0 {
		top, err := highestVersion(ctx, s.kv, d)
		if err != nil {
			return Change{}, err
		}
		next = max(next, top+1)
	}
	if next > fleetconfig.MaxVersion {
		return Change{}, fmt.Errorf("%w: %s is at version %d, the highest there is (fleetconfig.MaxVersion)", ErrConflict, d.key, next-1)
	}
	v, at, who := d.stamp(&doc)
	*v, *at, *who = next, s.now().UTC(), by
	data, err := json.Marshal(doc)
	if err != nil {
		return Change{}, err
	}
	if err := fleetconfig.CheckDocumentSize(d.key, len(data)); err != nil {
		return Change{}, err
	}
	newRev, err := s.write(ctx, d.key, data, rev)
	if natsconn.IsConflict(err) {
		return Change{}, fmt.Errorf("%w: %s was changed by another writer while this one was being written; nothing was written, fetch it again and retry", ErrConflict, d.key)
	}
	if err != nil {
		return Change{}, fmt.Errorf("write %s: %w", d.key, err)
	}
	// The version is stored; its copy under good.<key> is refreshed again by the
	// service's watch (watchGood) if this write fails.
	_ = keepGood(ctx, s.kv, d, data, next)
	changed := d.diff(*new(T), doc)
	if hasOld {
		changed = d.diff(old, doc)
	}
	return Change{Key: d.key, OldVersion: *oldVersion, NewVersion: next, Changed: changed, By: by, Revision: newRev}, nil
}

// HistoryEntry is one stored revision of a key.
type HistoryEntry struct {
	Revision uint64 `json:"revision"`
	Stamp
	// Valid is false for a value that fails to decode or validate (written straight into
	// the bucket); Error then says why, and Stamp is empty.
	Valid   bool   `json:"valid"`
	Error   string `json:"error,omitempty"`
	Deleted bool   `json:"deleted,omitempty"`
	// Changed lists the top-level fields that differ from the previous valid version.
	Changed []string `json:"changed,omitempty"`
}

// history returns d's stored revisions, oldest first, with the decoded documents of the
// valid ones.
func history[T any](ctx context.Context, kv jetstream.KeyValue, d docType[T]) ([]HistoryEntry, []T, error) {
	entries, err := kv.History(ctx, d.key)
	if errors.Is(err, jetstream.ErrKeyNotFound) {
		return nil, nil, fmt.Errorf("%w: %s has no history", ErrNotFound, d.key)
	}
	if err != nil {
		return nil, nil, fmt.Errorf("history of %s: %w", d.key, err)
	}
	out := make([]HistoryEntry, 0, len(entries))
	docs := make([]T, 0, len(entries))
	var prev T
	for _, e := range entries {
		h := HistoryEntry{Revision: e.Revision()}
		var doc T
		switch {
		case e.Operation() != jetstream.KeyValuePut:
			h.Deleted = true
		default:
			var err error
			doc, err = d.load(e.Value())
			if err != nil {
				h.Error = err.Error()
				break
			}
			h.Valid = true
			v, at, by := d.stamp(&doc)
			h.Stamp = Stamp{Version: *v, UpdatedAt: *at, UpdatedBy: *by}
			h.Changed = d.diff(prev, doc)
			prev = doc
		}
		out = append(out, h)
		docs = append(docs, doc)
	}
	return out, docs, nil
}

func highestVersion[T any](ctx context.Context, kv jetstream.KeyValue, d docType[T]) (uint64, error) {
	hist, _, err := history(ctx, kv, d)
	if err != nil {
		return 0, err
	}
	var top uint64
	for _, h := range hist {
		top = max(top, h.Version)
	}
	// The last good copy may hold a version the history no longer does.
	g, ok, err := configwatch.ReadGood(ctx, kv, d.key, d.load, d.version)
	if err != nil {
		return 0, err
	}
	if ok {
		top = max(top, g.Version)
	}
	return top, nil
}

// inForce returns the version of d's key in force: the newest valid version of its
// kept history or the config service's copy under good.<key>, whichever is higher (the
// copy keeps the last good version when invalid values pushed every valid one out of the
// history), and, when the newest stored value is not valid, that value's entry as a
// warning.
func inForce[T any](ctx context.Context, kv jetstream.KeyValue, d docType[T]) (T, *HistoryEntry, error) {
	var zero T
	hist, docs, err := history(ctx, kv, d)
	if err != nil {
		return zero, nil, err
	}
	var warn *HistoryEntry
	if last := hist[len(hist)-1]; !last.Valid {
		warn = &last
	}
	var newest configwatch.Good[T]
	found := false
	for i := len(hist) - 1; i >= 0; i-- {
		if hist[i].Valid {
			newest, found = configwatch.Good[T]{Doc: docs[i], Version: hist[i].Version}, true
			break
		}
	}
	if warn == nil && found {
		return newest.Doc, nil, nil // the newest value is valid: the copy is no newer
	}
	g, gok, err := configwatch.ReadGood(ctx, kv, d.key, d.load, d.version)
	if err != nil && !found {
		return zero, warn, err
	}
	best, ok := configwatch.Better(newest, found, g, gok)
	if !ok {
		return zero, warn, fmt.Errorf("%w: %s has no valid version in its history, and no last good copy (%s)", ErrNotFound, d.key, events.GoodConfigKey(d.key))
	}
	return best.Doc, warn, nil
}

// rollback writes the content of version to as the key's next version.
func rollback[T any](ctx context.Context, s *Store, d docType[T], to uint64, by string) (Change, error) {
	hist, docs, err := history(ctx, s.kv, d)
	if err != nil {
		return Change{}, err
	}
	for i := len(hist) - 1; i >= 0; i-- {
		if hist[i].Valid && hist[i].Version == to {
			return put(ctx, s, d, docs[i], by, nil)
		}
	}
	if g, ok, err := configwatch.ReadGood(ctx, s.kv, d.key, d.load, d.version); err == nil && ok && g.Version == to {
		return put(ctx, s, d, g.Doc, by, nil) // pushed out of the history, kept as the last good copy
	}
	return Change{}, fmt.Errorf("%w: %s has no version %d in its kept history (see otelfleet config history)", ErrNotFound, d.key, to)
}

// PutGlobal validates g and writes it as the next global version.
func (s *Store) PutGlobal(ctx context.Context, g fleetconfig.Global, by string, ifVersion *uint64) (Change, error) {
	if err := g.Validate(); err != nil {
		return Change{}, err
	}
	return put(ctx, s, globalDoc(), g, by, ifVersion)
}

// PutRegion validates r and writes it as the next version of region's overrides.
func (s *Store) PutRegion(ctx context.Context, region string, r fleetconfig.Region, by string, ifVersion *uint64) (Change, error) {
	d, err := regionDoc(region)
	if err != nil {
		return Change{}, err
	}
	if err := r.Validate(region); err != nil {
		return Change{}, err
	}
	return put(ctx, s, d, r, by, ifVersion)
}

// Global returns the global config in force (the newest valid version) and, when the
// newest stored value is invalid, that value's history entry as a warning.
func (s *Store) Global(ctx context.Context) (fleetconfig.Global, *HistoryEntry, error) {
	return inForce(ctx, s.kv, globalDoc())
}

// Regions returns every region's overrides in force, with warnings for invalid newest values.
func (s *Store) Regions(ctx context.Context) (map[string]fleetconfig.Region, []HistoryEntry, error) {
	lister, err := s.kv.ListKeys(ctx)
	if err != nil {
		return nil, nil, fmt.Errorf("list config keys: %w", err)
	}
	out := map[string]fleetconfig.Region{}
	var warns []HistoryEntry
	for key := range lister.Keys() {
		region, ok := events.RegionFromConfigKey(key)
		if !ok {
			continue
		}
		d, _ := regionDoc(region)
		r, warn, err := inForce(ctx, s.kv, d)
		if warn != nil {
			warns = append(warns, *warn)
		}
		if err == nil {
			out[region] = r
		}
	}
	return out, warns, nil
}

// History returns the kept revisions of key ("global", "region.<r>" or
// "collector.<group>"), oldest first.
func (s *Store) History(ctx context.Context, key string) ([]HistoryEntry, error) {
	if group, ok := events.CollectorGroupFromConfigKey(key); ok {
		return s.collectorHistory(ctx, group)
	}
	if region, ok := events.RegionFromConfigKey(key); ok {
		d, _ := regionDoc(region)
		h, _, err := history(ctx, s.kv, d)
		return h, err
	}
	if key != events.GlobalConfigKey {
		return nil, fmt.Errorf("%w: key %q: want \"global\", \"region.<region>\" or \"collector.<group>\"", ErrNotFound, key)
	}
	h, _, err := history(ctx, s.kv, globalDoc())
	return h, err
}

// Rollback writes the content of version to of key as its next version.
func (s *Store) Rollback(ctx context.Context, key string, to uint64, by string) (Change, error) {
	if group, ok := events.CollectorGroupFromConfigKey(key); ok {
		return s.collectorRollback(ctx, group, to, by)
	}
	if region, ok := events.RegionFromConfigKey(key); ok {
		d, _ := regionDoc(region)
		return rollback(ctx, s, d, to, by)
	}
	if key != events.GlobalConfigKey {
		return Change{}, fmt.Errorf("%w: key %q: want \"global\", \"region.<region>\" or \"collector.<group>\"", ErrNotFound, key)
	}
	return rollback(ctx, s, globalDoc(), to, by)
}

// Init stores f as version 1 of every key that does not exist yet (first start). Keys
// that exist are left alone, so any number of replicas may call it at once.
func (s *Store) Init(ctx context.Context, f fleetconfig.File, by string) ([]Change, error) {
	var out []Change
	c, err := put(ctx, s, globalDoc(), f.Global, by, ptr(uint64(0)))
	switch {
	case err == nil:
		out = append(out, c)
	case !errors.Is(err, ErrConflict):
		return out, err
	}
	for name, r := range f.Regions {
		d, err := regionDoc(name)
		if err != nil {
			return out, err
		}
		c, err := put(ctx, s, d, r, by, ptr(uint64(0)))
		switch {
		case err == nil:
			out = append(out, c)
		case !errors.Is(err, ErrConflict):
			return out, err
		}
	}
	return out, nil
}

func ptr[T any](v T) *T { return &v }
