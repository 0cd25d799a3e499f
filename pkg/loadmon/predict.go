package loadmon

import (
	"math"
	"time"
)

// Prediction is a linear extrapolation of throughput.
type Prediction struct {
	// QPS is the predicted spans per second at the horizon; never negative.
	QPS float64
	// Slope is the fitted change in QPS per second.
	Slope float64
	// Confidence is the fit's coefficient of determination R², in [0,1]: the
	// share of the QPS variance over the window that the line explains.
	Confidence float64
}

// Predict extrapolates QPS to horizon after the latest snapshot by
// ordinary least squares over the last window snapshots (all of them when
// window <= 0 or exceeds the history), with snapshot time in seconds as x
// and QPS as y.
//
// Edge cases:
//   - no snapshots: the zero Prediction;
//   - fewer than 3 snapshots, or all at the same time: QPS is the latest
//     observed QPS, Slope 0 and Confidence 0 (two points always fit a line
//     exactly, which says nothing about its quality);
//   - perfectly constant QPS: QPS is that value, Slope 0 and Confidence 1;
//   - a negative extrapolation is reported as QPS 0.
func (m *Monitor) Predict(horizon time.Duration, window int) Prediction {
	m.mu.Lock()
	n := m.count
	if window > 0 && window < n {
		n = window
	}
	snaps := m.lastN(n)
	m.mu.Unlock()

	if n == 0 {
		return Prediction{}
	}
	t0, last := snaps[0].At, snaps[n-1]
	xs, ys := make([]float64, n), make([]float64, n)
	for i, s := range snaps {
		xs[i] = s.At.Sub(t0).Seconds()
		ys[i] = s.QPS
	}
	fit, ok := fitLine(xs, ys)
	if !ok {
		return Prediction{QPS: max(last.QPS, 0)}
	}
	target := last.At.Add(horizon).Sub(t0).Seconds()
	return Prediction{
		QPS:        max(fit.at(target), 0),
		Slope:      fit.slope,
		Confidence: fit.r2,
	}
}

// line is a fitted y = intercept + slope·(x − xMean).
type line struct {
	xMean, intercept, slope, r2 float64
}

func (l line) at(x float64) float64 {
	return l.intercept + l.slope*(x-l.xMean)
}

// fitLine fits ys against xs by ordinary least squares. It uses centred
// sums, which keeps exact lines exact in floating point far better than the
// textbook Σxy − n·x̄·ȳ form. ok is false for fewer than 3 points or zero
// variance in x. Constant ys give slope 0 and R² 1.
func fitLine(xs, ys []float64) (l line, ok bool) {
	n := len(xs)
	if n < 3 {
		return line{}, false
	}
	var sumX, sumY float64
	constY := true
	for i := range n {
		sumX += xs[i]
		sumY += ys[i]
		constY = constY && ys[i] == ys[0]
	}
	xMean, yMean := sumX/float64(n), sumY/float64(n)

	var sxx, sxy float64
	for i := range n {
		dx := xs[i] - xMean
		sxx += dx * dx
		sxy += dx * (ys[i] - yMean)
	}
	if sxx == 0 {
		return line{}, false
	}
	if constY {
		// Checked on the raw values: the mean of equal floats can differ
		// from them in the last bit, which would make R² noise.
		return line{xMean: xMean, intercept: ys[0], slope: 0, r2: 1}, true
	}
	slope := sxy / sxx
	var ssRes, ssTot float64
	for i := range n {
		dy := ys[i] - yMean
		res := dy - slope*(xs[i]-xMean)
		ssRes += res * res
		ssTot += dy * dy
	}
	r2 := 1 - ssRes/ssTot
	if math.IsNaN(r2) {
		r2 = 0
	}
	return line{xMean: xMean, intercept: yMean, slope: slope, r2: min(max(r2, 0), 1)}, true
}
