package load

import (
	"fmt"
	"math"
	"strconv"
	"strings"
)

// FormatSeconds writes a duration given in seconds for a reader: three
// significant digits in the unit that suits it ("850 µs", "12.3 ms",
// "2.41 s", "41.2 s"), minutes and seconds up to an hour ("3 min 12 s"),
// then hours and minutes.
func FormatSeconds(s float64) string {
	switch a := math.Abs(s); {
	case a == 0:
		return "0 s"
	// The bounds are where three digits round up into the next unit.
	case a < 999.5e-9:
		return sig3(s*1e9) + " ns"
	case a < 999.5e-6:
		return sig3(s*1e6) + " µs"
	case a < 0.9995:
		return sig3(s*1e3) + " ms"
	case a < 59.95:
		return sig3(s) + " s"
	case a < 3600:
		m := math.Floor(s / 60)
		return fmt.Sprintf("%.0f min %.0f s", m, math.Floor(s-60*m))
	default:
		h := math.Floor(s / 3600)
		return fmt.Sprintf("%.0f h %.0f min", h, math.Floor((s-3600*h)/60))
	}
}

// FormatMS is FormatSeconds of milliseconds.
func FormatMS(ms float64) string { return FormatSeconds(ms / 1e3) }

// sig3 writes v with three significant digits (no exponent; at least the
// units).
func sig3(v float64) string {
	switch a := math.Abs(v); {
	case a >= 99.95:
		return fmt.Sprintf("%.0f", v)
	case a >= 9.995:
		return fmt.Sprintf("%.1f", v)
	default:
		return fmt.Sprintf("%.2f", v)
	}
}

// formatCount writes a count with its thousands grouped ("10,000"); a
// fraction under 100 keeps three significant digits, a larger one is
// rounded.
func formatCount(v float64) string {
	switch {
	case math.IsNaN(v) || math.IsInf(v, 0) || math.Abs(v) >= 1e15:
		return strconv.FormatFloat(v, 'g', 3, 64)
	case v != math.Trunc(v) && math.Abs(v) < 99.95:
		return sig3(v)
	}
	v = math.Round(v)
	s := strconv.FormatInt(int64(math.Abs(v)), 10)
	var b strings.Builder
	if v < 0 {
		b.WriteByte('-')
	}
	for i, c := range s {
		if i > 0 && (len(s)-i)%3 == 0 {
			b.WriteByte(',')
		}
		b.WriteRune(c)
	}
	return b.String()
}

// formatBytes writes a size in B, KiB, MiB or GiB with three significant
// digits.
func formatBytes(v float64) string {
	switch a := math.Abs(v); {
	case a < 1<<10:
		return fmt.Sprintf("%.0f B", v)
	case a < 1<<20:
		return sig3(v/(1<<10)) + " KiB"
	case a < 1<<30:
		return sig3(v/(1<<20)) + " MiB"
	default:
		return sig3(v/(1<<30)) + " GiB"
	}
}
