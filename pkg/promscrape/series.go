package promscrape

import (
	"math"
	"strings"
)

// AddSeries adds one series' value v to s under the family name (dots read as
// underscores; with or without the "_total" and "_bytes" suffixes) and sets its Found
// bit, for readers of other encodings of the same metrics (OTLP). It reports whether
// name is a family this package reads; a value that is not finite is skipped.
func (s *Sample) AddSeries(name string, v float64) bool {
	row, ok := families[strings.ReplaceAll(name, ".", "_")]
	if !ok {
		return false
	}
	if math.IsNaN(v) || math.IsInf(v, 0) {
		v = 0 // skipped, but the family was there
	}
	add(s, row, v)
	return true
}
