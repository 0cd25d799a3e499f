package strategy

import (
	"math"
	"strconv"
)

// fmtRate formats a rate for explanations: up to 6 significant digits.
func fmtRate(r float64) string { return strconv.FormatFloat(r, 'g', 6, 64) }

func clamp(x, lo, hi float64) float64 { return min(max(x, lo), hi) }

// roundSig rounds x to n significant digits, in direction round (math.Round, math.Floor).
func roundSig(x float64, n int, round func(float64) float64) float64 {
	if x == 0 || math.IsNaN(x) || math.IsInf(x, 0) {
		return x
	}
	p := float64(n) - math.Ceil(math.Log10(math.Abs(x)))
	s := math.Pow(10, p)
	r := round(x*s) / s
	if math.IsInf(r, 0) || math.IsNaN(r) {
		return x
	}
	return r
}

// roundRate keeps 6 significant digits of a rate: precise to 1 ppm, short in JSON.
func roundRate(r float64) float64 { return roundSig(r, 6, math.Round) }

// roundQPS keeps 6 significant digits of a span rate.
func roundQPS(q float64) float64 { return roundSig(q, 6, math.Round) }

// roundRatio keeps 4 significant digits of a utilisation.
func roundRatio(u float64) float64 { return roundSig(u, 4, math.Round) }

// roundScale keeps 9 significant digits of a scale factor, so that the stored factor
// reproduces the stored rates exactly.
func roundScale(m float64) float64 { return roundSig(m, 9, math.Round) }

// roundScaleDown is roundScale rounding toward zero (a cap must not overshoot).
func roundScaleDown(m float64) float64 { return roundSig(m, 9, math.Floor) }
