package fleetconfig

import "fmt"

// Limits on stored config documents, enforced by the config service's store when it
// writes and by every watcher when it applies a value read from the bucket.
const (
	// MaxVersion is the highest config version: 2^53, the largest integer every JSON
	// reader keeps exactly. A stored value with a version above it (or 0, which the
	// store never writes) is refused, so versions cannot wrap or go back to 0.
	MaxVersion = 1 << 53
	// MaxDocumentBytes bounds one stored document (the global config or a region's
	// overrides) encoded as JSON: 256 KiB, far above any real config and well under the
	// NATS payload limit.
	MaxDocumentBytes = 256 << 10
	// MaxUpdatedByLen bounds updated_by, the writer's name (bytes).
	MaxUpdatedByLen = 256
)

// CheckStamp checks the version metadata of a stored document: version in
// 1..MaxVersion and updated_by at most MaxUpdatedByLen bytes. The error matches
// ErrInvalid and names the field.
func CheckStamp(version uint64, updatedBy string) error {
	var ps []Problem
	if version == 0 || version > MaxVersion {
		ps = append(ps, Problem{Path: "version", Message: fmt.Sprintf("%d is outside 1..%d (a value the config service did not write)", version, uint64(MaxVersion))})
	}
	if err := CheckUpdatedBy(updatedBy); err != nil {
		ps = append(ps, Problem{Path: "updated_by", Message: err.Error()})
	}
	if len(ps) > 0 {
		return &ValidationError{Problems: ps}
	}
	return nil
}

// CheckUpdatedBy checks a writer's name is at most MaxUpdatedByLen bytes.
func CheckUpdatedBy(by string) error {
	if len(by) > MaxUpdatedByLen {
		return fmt.Errorf("%d bytes, the limit is %d (fleetconfig.MaxUpdatedByLen)", len(by), MaxUpdatedByLen)
	}
	return nil
}

// CheckDocumentSize checks an encoded document of key is at most MaxDocumentBytes. The
// error matches ErrInvalid.
func CheckDocumentSize(key string, n int) error {
	if n > MaxDocumentBytes {
		return &ValidationError{Problems: []Problem{{Path: key, Message: fmt.Sprintf("the document is %d bytes encoded, the limit is %d (fleetconfig.MaxDocumentBytes)", n, MaxDocumentBytes)}}}
	}
	return nil
}

// DecodeStoredGlobal decodes a global config read from the config bucket and checks
// everything a stored value must satisfy: size, schema, rules and stamp. The store and
// every watcher use it, so they agree on which stored values are valid.
func DecodeStoredGlobal(key string, b []byte) (Global, error) {
	if err := CheckDocumentSize(key, len(b)); err != nil {
		return Global{}, err
	}
	g, err := DecodeGlobalJSON(b)
	if err == nil {
		err = g.Validate()
	}
	if err == nil {
		err = CheckStamp(g.Version, g.UpdatedBy)
	}
	return g, err
}

// DecodeStoredRegion is DecodeStoredGlobal for the overrides of region stored at key.
func DecodeStoredRegion(key, region string, b []byte) (Region, error) {
	if err := CheckDocumentSize(key, len(b)); err != nil {
		return Region{}, err
	}
	r, err := DecodeRegionJSON(b)
	if err == nil {
		err = r.Validate(region)
	}
	if err == nil {
		err = CheckStamp(r.Version, r.UpdatedBy)
	}
	return r, err
}
