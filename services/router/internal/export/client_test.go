package export

import (
	"testing"

	"go.opentelemetry.io/collector/pdata/ptrace/ptraceotlp"
)

func FuzzDecodePartialSuccess(f *testing.F) {
	resp := ptraceotlp.NewExportResponse()
	resp.PartialSuccess().SetRejectedSpans(3)
	resp.PartialSuccess().SetErrorMessage("three")
	seed, _ := resp.MarshalProto()
	f.Add(seed)
	f.Add([]byte{})
	f.Add([]byte{0x0a, 0x02, 0x08})
	f.Fuzz(func(t *testing.T, b []byte) {
		rejected, _, err := decodePartialSuccess(b)
		if err == nil && rejected < 0 {
			t.Fatalf("negative rejected %d", rejected)
		}
	})
}

func TestDecodePartialSuccess(t *testing.T) {
	resp := ptraceotlp.NewExportResponse()
	resp.PartialSuccess().SetRejectedSpans(3)
	resp.PartialSuccess().SetErrorMessage("three")
	b, _ := resp.MarshalProto()
	if r, m, err := decodePartialSuccess(b); r != 3 || m != "three" || err != nil {
		t.Fatalf("got %d %q %v", r, m, err)
	}
	if _, _, err := decodePartialSuccess([]byte{0x0a, 0x05, 0x08}); err == nil {
		t.Fatal("truncated response decoded")
	}
}
