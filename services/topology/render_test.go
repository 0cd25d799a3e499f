package topologysvc

import (
	"strings"
	"testing"

	"github.com/otelfleet/otelfleet/pkg/events"
)

func TestAttentionFirst(t *testing.T) {
	h := events.HealthHealthy
	cs := []Collector{
		col("a", h, 10, 100, 1, 0), col("b", h, 90, 100, 1, 0), stale(col("c", h, 0, 100, 1, 0)),
		col("d", events.HealthUnhealthy, 0, 100, 1, 0), col("e", events.HealthDegraded, 0, 100, 1, 0), col("f", h, 50, 100, 1, 0),
	}
	tests := []struct {
		n    int
		want string
	}{
		{1, "d"},
		{2, "d,e"},
		{3, "c,d,e"},
		{4, "b,c,d,e"},
		{5, "b,c,d,e,f"},
		{6, "a,b,c,d,e,f"},
	}
	for _, tt := range tests {
		t.Run(tt.want, func(t *testing.T) {
			var ids []string
			for _, c := range attentionFirst(cs, tt.n) {
				ids = append(ids, c.ID)
			}
			if got := strings.Join(ids, ","); got != tt.want {
				t.Fatalf("attentionFirst(%d) = %s, want %s", tt.n, got, tt.want)
			}
		})
	}
}

func TestRender(t *testing.T) {
	s := &Service{d: Deps{Instance: "i"}}
	h := events.HealthHealthy
	v := &view{regions: regions(
		in("a", col("a1", h, 1, 10, 1, 0)), in("a", col("a2", h, 9, 10, 1, 0)), in("a", col("a3", h, 1, 10, 1, 0)),
		in("b", col("b1", h, 1, 10, 1, 0)), in("b", col("b2", h, 1, 10, 1, 0)),
	)}
	ids := func(top Topology) string {
		var out []string
		for _, r := range top.Regions {
			for _, c := range r.Collectors {
				out = append(out, r.Region+"/"+c.ID)
			}
		}
		return strings.Join(out, ",")
	}
	tests := []struct {
		name     string
		o        renderOpts
		want     string
		wantNext string
		omitted  []int
	}{
		{"everything", renderOpts{}, "a/a1,a/a2,a/a3,b/b1,b/b2", "", []int{0, 0}},
		{"one region", renderOpts{region: "b"}, "b/b1,b/b2", "", []int{0}},
		{"unknown region", renderOpts{region: "zz"}, "", "", nil},
		{"first page", renderOpts{limit: 2}, "a/a1,a/a2", "a/a2", []int{1, 2}},
		{"page across regions", renderOpts{limit: 2, after: collectorKey{"a", "a2"}}, "a/a3,b/b1", "b/b1", []int{2, 1}},
		{"page ending at a region's end", renderOpts{limit: 3}, "a/a1,a/a2,a/a3", "a/a3", []int{0, 2}},
		{"last page", renderOpts{limit: 3, after: collectorKey{"a", "a3"}}, "b/b1,b/b2", "", []int{3, 0}},
		{"cursor of a vanished collector", renderOpts{limit: 5, after: collectorKey{"a", "a25"}}, "a/a3,b/b1,b/b2", "", []int{2, 0}},
		{"per region", renderOpts{perRegion: 1}, "a/a1,b/b1", "", []int{2, 1}},
		{"per region by attention", renderOpts{perRegion: 1, attention: true}, "a/a2,b/b1", "", []int{2, 1}},
		{"stats only", renderOpts{statsOnly: true}, "", "", []int{3, 2}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			top := s.render(v, tt.o)
			if got := ids(top); got != tt.want || top.Next != tt.wantNext {
				t.Fatalf("render = %q next %q, want %q next %q", got, top.Next, tt.want, tt.wantNext)
			}
			if len(top.Regions) != len(tt.omitted) {
				t.Fatalf("regions = %d, want %d", len(top.Regions), len(tt.omitted))
			}
			for i, r := range top.Regions {
				if r.Omitted != tt.omitted[i] {
					t.Fatalf("region %s omitted = %d, want %d", r.Region, r.Omitted, tt.omitted[i])
				}
			}
		})
	}
}
