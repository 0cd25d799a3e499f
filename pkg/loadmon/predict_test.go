package loadmon

import (
	"math"
	"testing"
	"time"

	"github.com/otelfleet/otelfleet/pkg/sysstat"
)

// point is a snapshot to produce: QPS qps over the interval ending at sec.
type point struct {
	sec, qps float64
}

// monitorWith returns a Monitor whose history holds exactly the given
// points; the baseline tick is at second 0.
func monitorWith(t *testing.T, pts []point) *Monitor {
	t.Helper()
	m := newMonitor(t, nil)
	m.Tick(at(0), sysstat.Reading{})
	prev := 0.0
	for _, p := range pts {
		spans := p.qps * (p.sec - prev)
		if spans != math.Trunc(spans) {
			t.Fatalf("point %+v needs %v spans; pick an integer", p, spans)
		}
		m.RecordSpans(int(spans), 0)
		s := mustTick(t, m, at(p.sec), sysstat.Reading{})
		if s.QPS != p.qps {
			t.Fatalf("point %+v produced QPS %v", p, s.QPS)
		}
		prev = p.sec
	}
	return m
}

// linePoints returns n points at 1s spacing on qps = a + b·sec.
func linePoints(n int, a, b float64) []point {
	pts := make([]point, n)
	for i := range pts {
		sec := float64(i + 1)
		pts[i] = point{sec: sec, qps: a + b*sec}
	}
	return pts
}

// pearsonR2 is the squared correlation coefficient computed with the
// textbook raw-sum formula, an independent check on Predict's R².
func pearsonR2(pts []point) float64 {
	var n, sx, sy, sxx, syy, sxy float64
	for _, p := range pts {
		n++
		sx += p.sec
		sy += p.qps
		sxx += p.sec * p.sec
		syy += p.qps * p.qps
		sxy += p.sec * p.qps
	}
	r := (n*sxy - sx*sy) / math.Sqrt((n*sxx-sx*sx)*(n*syy-sy*sy))
	return r * r
}

func TestPredict(t *testing.T) {
	noisy := linePoints(12, 100, 10)
	for i := range noisy {
		if i%2 == 0 {
			noisy[i].qps += 15
		} else {
			noisy[i].qps -= 15
		}
	}
	flatThenRising := append(linePoints(5, 1000, 0), point{6, 10}, point{7, 20}, point{8, 30})

	tests := []struct {
		name    string
		pts     []point
		horizon time.Duration
		window  int
		want    Prediction
		// check, when set, replaces the exact comparison with want.
		check func(t *testing.T, got Prediction)
	}{
		{
			name:    "exact line",
			pts:     linePoints(10, 100, 10), // 110 … 200 at 1 … 10s
			horizon: 5 * time.Second,
			want:    Prediction{QPS: 250, Slope: 10, Confidence: 1},
		},
		{
			name:    "irregular spacing",
			pts:     []point{{1, 4}, {1.5, 6}, {3, 12}, {4, 16}}, // qps = 4·sec
			horizon: 500 * time.Millisecond,
			want:    Prediction{QPS: 18, Slope: 4, Confidence: 1},
		},
		{
			name:    "noisy line",
			pts:     noisy,
			horizon: time.Second,
			check: func(t *testing.T, got Prediction) {
				if got.Confidence <= 0 || got.Confidence >= 1 {
					t.Errorf("Confidence = %v, want in (0,1)", got.Confidence)
				}
				if want := pearsonR2(noisy); !approx(got.Confidence, want) {
					t.Errorf("Confidence = %v, want r² = %v", got.Confidence, want)
				}
				if got.Slope < 8 || got.Slope > 12 {
					t.Errorf("Slope = %v, want about 10", got.Slope)
				}
			},
		},
		{
			name:    "constant",
			pts:     linePoints(6, 42, 0),
			horizon: time.Minute,
			want:    Prediction{QPS: 42, Slope: 0, Confidence: 1},
		},
		{
			name:    "constant zero",
			pts:     linePoints(4, 0, 0),
			horizon: time.Minute,
			want:    Prediction{QPS: 0, Slope: 0, Confidence: 1},
		},
		{
			name:    "falling below zero is clamped",
			pts:     linePoints(5, 100, -20), // 80 … 0
			horizon: 10 * time.Second,
			want:    Prediction{QPS: 0, Slope: -20, Confidence: 1},
		},
		{
			name:    "window selects the newest points",
			pts:     flatThenRising,
			horizon: time.Second,
			window:  3,
			want:    Prediction{QPS: 40, Slope: 10, Confidence: 1},
		},
		{
			name:    "window larger than history uses all",
			pts:     linePoints(4, 0, 3),
			horizon: 0,
			window:  100,
			want:    Prediction{QPS: 12, Slope: 3, Confidence: 1},
		},
		{
			name:    "two points: latest QPS, no confidence",
			pts:     []point{{1, 10}, {2, 20}},
			horizon: time.Hour,
			want:    Prediction{QPS: 20, Slope: 0, Confidence: 0},
		},
		{
			name:    "window of two on a longer history",
			pts:     linePoints(5, 0, 1),
			horizon: time.Hour,
			window:  2,
			want:    Prediction{QPS: 5, Slope: 0, Confidence: 0},
		},
		{
			name:    "one point",
			pts:     []point{{1, 7}},
			horizon: time.Second,
			want:    Prediction{QPS: 7},
		},
		{
			name:    "no history",
			horizon: time.Second,
			want:    Prediction{},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got := monitorWith(t, tt.pts).Predict(tt.horizon, tt.window)
			if got.QPS < 0 || got.Confidence < 0 || got.Confidence > 1 {
				t.Errorf("Predict = %+v: QPS negative or Confidence outside [0,1]", got)
			}
			if tt.check != nil {
				tt.check(t, got)
				return
			}
			if got != tt.want {
				t.Errorf("Predict = %+v, want %+v", got, tt.want)
			}
		})
	}
}

func TestFitLine(t *testing.T) {
	tests := []struct {
		name   string
		xs, ys []float64
		wantOK bool
		want   line
	}{
		{name: "too few", xs: []float64{1, 2}, ys: []float64{1, 2}},
		{name: "no variance in x", xs: []float64{3, 3, 3}, ys: []float64{1, 2, 3}},
		{
			name: "constant y that does not average exactly",
			xs:   []float64{0, 1, 2}, ys: []float64{0.1, 0.1, 0.1},
			wantOK: true, want: line{xMean: 1, intercept: 0.1, slope: 0, r2: 1},
		},
		{
			name: "uncorrelated",
			xs:   []float64{0, 1, 2, 3}, ys: []float64{1, 2, 2, 1},
			wantOK: true, want: line{xMean: 1.5, intercept: 1.5, slope: 0, r2: 0},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, ok := fitLine(tt.xs, tt.ys)
			if ok != tt.wantOK || got != tt.want {
				t.Errorf("fitLine = %+v, %v; want %+v, %v", got, ok, tt.want, tt.wantOK)
			}
		})
	}
}
