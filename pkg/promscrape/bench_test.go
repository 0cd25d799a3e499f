package promscrape

import (
	"strings"
	"testing"

	"github.com/prometheus/common/expfmt"
)

// BenchmarkParse measures one scrape's decoding of a collector page with the families
// read plus a few others, in each format.
func BenchmarkParse(b *testing.B) {
	p := base()
	p.newStyle, p.extraMetrics = true, true
	text := p.text()
	p.openMetrics = true
	om := p.om()
	for _, bc := range []struct {
		name   string
		body   string
		format expfmt.Format
	}{
		{"text", text, expfmt.FmtText},
		{"openmetrics", om, expfmt.FmtOpenMetrics_1_0_0},
	} {
		b.Run(bc.name, func(b *testing.B) {
			b.ReportAllocs()
			for b.Loop() {
				if _, err := Parse(strings.NewReader(bc.body), bc.format); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}
