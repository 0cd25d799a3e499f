package fleetconfig

import (
	"encoding/json"
	"errors"
	"strings"
	"testing"
)

func TestCheckStamp(t *testing.T) {
	tests := []struct {
		version uint64
		by      string
		field   string
	}{
		{1, "ops", ""},
		{MaxVersion, strings.Repeat("b", MaxUpdatedByLen), ""},
		{0, "", "version"},
		{MaxVersion + 1, "", "version"},
		{1, strings.Repeat("b", MaxUpdatedByLen+1), "updated_by"},
	}
	for _, tt := range tests {
		err := CheckStamp(tt.version, tt.by)
		if tt.field == "" {
			if err != nil {
				t.Errorf("CheckStamp(%d, %d bytes) = %v", tt.version, len(tt.by), err)
			}
			continue
		}
		if !errors.Is(err, ErrInvalid) || !strings.HasPrefix(err.Error(), tt.field+":") {
			t.Errorf("CheckStamp(%d, %d bytes) = %v, want an ErrInvalid naming %s", tt.version, len(tt.by), err, tt.field)
		}
	}
}

// FuzzDecodeStored: whatever the bytes, a value DecodeStoredGlobal accepts has a
// version in 1..MaxVersion, a short updated_by and fits the size limit.
func FuzzDecodeStored(f *testing.F) {
	g := Defaults().Global
	g.Version = 3
	data, _ := json.Marshal(g)
	f.Add(data)
	for _, s := range []string{"{}", `{"version":18446744073709551615}`, `{"version":0}`, "garbage"} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, data []byte) {
		if g, err := DecodeStoredGlobal("global", data); err == nil {
			if g.Version == 0 || g.Version > MaxVersion || len(g.UpdatedBy) > MaxUpdatedByLen || len(data) > MaxDocumentBytes {
				t.Fatalf("accepted %+v", g)
			}
		}
		if r, err := DecodeStoredRegion("region.eu", "eu", data); err == nil && (r.Version == 0 || r.Version > MaxVersion) {
			t.Fatalf("accepted region version %d", r.Version)
		}
	})
}
