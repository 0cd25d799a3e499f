package promscrape

import (
	"errors"
	"strings"
	"testing"

	"github.com/prometheus/common/expfmt"
)

func TestParseRejectsSeriesThatSumToInfinity(t *testing.T) {
	page := "otelcol_receiver_accepted_spans_total{receiver=\"a\"} 1e308\notelcol_receiver_accepted_spans_total{receiver=\"b\"} 1e308\n"
	_, err := Parse(strings.NewReader(page), expfmt.NewFormat(expfmt.TypeTextPlain))
	if !errors.Is(err, ErrMalformed) || !strings.Contains(err.Error(), "accepted spans series add up to +Inf") {
		t.Fatalf("err = %v, want ErrMalformed naming the accepted spans sum", err)
	}
}
