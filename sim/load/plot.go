package load

import (
	"fmt"
	"html/template"
	"math"
	"strings"
)

// The report's inline SVG plots: a phase's convergence over time, and the
// supervisor's gauges over time, with ticks on a 1-2-5 grid labelled in
// their units, and legends.

// Geometry of the convergence plot.
const (
	plotW, plotH                                 = 720.0, 300.0
	plotLeft, plotRight, plotTop, plotAxisBottom = 64.0, 20.0, 16.0, 44.0
	plotLegend                                   = 22.0 // below the axis title
)

// niceStep is a step of about max/n on the 1-2-5 grid (1, 2, 5, 10, 20…).
func niceStep(max float64, n int) float64 {
	if max <= 0 || n <= 0 {
		return 1
	}
	raw := max / float64(n)
	mag := math.Pow(10, math.Floor(math.Log10(raw)))
	switch f := raw / mag; {
	case f < 1.5:
		return mag
	case f < 3:
		return 2 * mag
	case f < 7:
		return 5 * mag
	default:
		return 10 * mag
	}
}

// ticks are the multiples of step from 0 to max.
func ticks(max, step float64) []float64 {
	var out []float64
	for i := 0; ; i++ {
		v := float64(i) * step
		if v > max*(1+1e-9) || i > 100 {
			return out
		}
		out = append(out, v)
	}
}

// decimals is the number of decimals that tell multiples of step apart.
func decimals(step float64) int {
	if step <= 0 || step >= 1 {
		return 0
	}
	return int(math.Ceil(-math.Log10(step) - 1e-9))
}

// timeTicks labels seconds: in milliseconds on an axis shorter than two
// seconds, in seconds up to ten minutes, then in minutes.
func timeTicks(max float64) (vals []float64, labels []string) {
	switch {
	case max < 2:
		step := niceStep(max*1000, 6)
		for _, v := range ticks(max*1000, step) {
			vals = append(vals, v/1000)
			labels = append(labels, fmt.Sprintf("%.*f ms", decimals(step), v))
		}
	case max < 600:
		step := niceStep(max, 6)
		for _, v := range ticks(max, step) {
			vals = append(vals, v)
			labels = append(labels, fmt.Sprintf("%.*f s", decimals(step), v))
		}
	default:
		step := niceStep(max/60, 6)
		for _, v := range ticks(max/60, step) {
			vals = append(vals, v*60)
			labels = append(labels, fmt.Sprintf("%.*f min", decimals(step), v))
		}
	}
	return vals, labels
}

// countTicks labels counts: in thousands ("2.5k") from 10,000 up, in
// millions ("0.2M") from a million.
func countTicks(max float64, n int) (vals []float64, labels []string) {
	step := niceStep(max, n)
	if step < 1 {
		step = 1
	}
	for _, v := range ticks(max, step) {
		vals = append(vals, v)
		switch {
		case v == 0:
			labels = append(labels, "0")
		case max >= 1e6:
			labels = append(labels, fmt.Sprintf("%.*fM", decimals(step/1e6), v/1e6))
		case max >= 1e4:
			labels = append(labels, fmt.Sprintf("%.*fk", decimals(step/1e3), v/1e3))
		default:
			labels = append(labels, fmt.Sprintf("%.0f", v))
		}
	}
	return vals, labels
}

// plot renders a phase's samples as an inline SVG: devices converged
// (solid) and devices watched (dashed) against time since the phase
// started, the moment it converged (dotted), and a legend.
func plot(res *Result) template.HTML {
	pw, ph := plotW-plotLeft-plotRight, plotH-plotTop-plotAxisBottom-plotLegend
	maxT, maxY := res.Seconds, float64(res.Want)
	for _, s := range res.Samples {
		maxT = math.Max(maxT, s.T)
		maxY = math.Max(maxY, float64(max(s.Converged, s.Total)))
	}
	if maxT <= 0 {
		maxT = 1
	}
	if maxY <= 0 {
		maxY = 1
	}
	x := func(t float64) float64 { return plotLeft + t/maxT*pw }
	y := func(v float64) float64 { return plotTop + ph - v/maxY*ph }
	var b strings.Builder
	fmt.Fprintf(&b, `<svg xmlns="http://www.w3.org/2000/svg" width="%.0f" height="%.0f" viewBox="0 0 %.0f %.0f" role="img" aria-label="devices converged over time">`, plotW, plotH, plotW, plotH)
	fmt.Fprintf(&b, `<rect x="%.1f" y="%.1f" width="%.1f" height="%.1f" fill="#fafafa" stroke="#999"/>`, plotLeft, plotTop, pw, ph)
	yv, yl := countTicks(maxY, 5)
	for i, v := range yv {
		fmt.Fprintf(&b, `<line x1="%.1f" y1="%.1f" x2="%.1f" y2="%.1f" stroke="#e4e4e4"/>`, plotLeft, y(v), plotLeft+pw, y(v))
		fmt.Fprintf(&b, `<text x="%.1f" y="%.1f" font-size="11" text-anchor="end">%s</text>`, plotLeft-5, y(v)+4, yl[i])
	}
	xv, xl := timeTicks(maxT)
	for i, v := range xv {
		fmt.Fprintf(&b, `<line x1="%.1f" y1="%.1f" x2="%.1f" y2="%.1f" stroke="#e4e4e4"/>`, x(v), plotTop, x(v), plotTop+ph)
		fmt.Fprintf(&b, `<line x1="%.1f" y1="%.1f" x2="%.1f" y2="%.1f" stroke="#999"/>`, x(v), plotTop+ph, x(v), plotTop+ph+4)
		fmt.Fprintf(&b, `<text x="%.1f" y="%.1f" font-size="11" text-anchor="middle">%s</text>`, x(v), plotTop+ph+16, xl[i])
	}
	fmt.Fprintf(&b, `<text x="%.1f" y="%.1f" font-size="12" text-anchor="middle">time since the phase started</text>`, plotLeft+pw/2, plotTop+ph+34)
	fmt.Fprintf(&b, `<text x="14" y="%.1f" font-size="12" text-anchor="middle" transform="rotate(-90 14 %.1f)">devices</text>`, plotTop+ph/2, plotTop+ph/2)
	if len(res.Samples) > 0 {
		var conv, total strings.Builder
		for _, s := range res.Samples {
			fmt.Fprintf(&conv, "%.1f,%.1f ", x(s.T), y(float64(s.Converged)))
			fmt.Fprintf(&total, "%.1f,%.1f ", x(s.T), y(float64(s.Total)))
		}
		fmt.Fprintf(&b, `<polyline class="total" fill="none" stroke="#888" stroke-dasharray="4 3" points="%s"/>`, strings.TrimSpace(total.String()))
		fmt.Fprintf(&b, `<polyline class="converged" fill="none" stroke="#1565c0" stroke-width="2" points="%s"/>`, strings.TrimSpace(conv.String()))
	}
	if res.Converged {
		fmt.Fprintf(&b, `<line class="done" x1="%.1f" y1="%.1f" x2="%.1f" y2="%.1f" stroke="#2e7d32" stroke-width="1.5" stroke-dasharray="2 2"/>`, x(res.Seconds), plotTop, x(res.Seconds), plotTop+ph)
	}
	// The legend, one row below the axis title.
	ly := plotH - 6
	lx := plotLeft
	item := func(attrs, label string) {
		fmt.Fprintf(&b, `<line x1="%.1f" y1="%.1f" x2="%.1f" y2="%.1f" %s/>`, lx, ly-4, lx+24, ly-4, attrs)
		fmt.Fprintf(&b, `<text x="%.1f" y="%.1f" font-size="11">%s</text>`, lx+30, ly, template.HTMLEscapeString(label))
		lx += 30 + 6.2*float64(len([]rune(label))) + 24
	}
	item(`stroke="#1565c0" stroke-width="2"`, "devices converged (sampled)")
	item(`stroke="#888" stroke-dasharray="4 3"`, "devices watched")
	if res.Converged {
		item(`stroke="#2e7d32" stroke-width="1.5" stroke-dasharray="2 2"`, "all converged at "+FormatSeconds(res.Seconds))
	}
	b.WriteString(`</svg>`)
	return template.HTML(b.String())
}

// plotGauges renders each of the supervisor's sampled gauges that was ever
// non-zero (hooks pending, outbox depth, outbox bytes…) as a strip of its
// own, with its own scale in its unit, against the phase's time; empty when
// there are none.
func plotGauges(res *Result) template.HTML {
	peaks := map[string]float64{}
	for _, s := range res.Samples {
		for k, v := range s.Gauges {
			peaks[k] = math.Max(peaks[k], v)
		}
	}
	var names []string
	for _, k := range sortedKeys(peaks) {
		if peaks[k] > 0 {
			names = append(names, k)
		}
	}
	if len(names) == 0 {
		return ""
	}
	colors := []string{"#c62828", "#6a1b9a", "#ef6c00", "#2e7d32", "#00838f", "#4e342e", "#283593", "#ad1457"}
	const stripH, stripGap, title, axis = 70.0, 12.0, 16.0, 22.0
	pw := plotW - plotLeft - plotRight
	H := float64(len(names))*(title+stripH+stripGap) + axis
	maxT := math.Max(res.Seconds, 1e-3)
	for _, s := range res.Samples {
		maxT = math.Max(maxT, s.T)
	}
	x := func(t float64) float64 { return plotLeft + t/maxT*pw }
	var b strings.Builder
	fmt.Fprintf(&b, `<svg xmlns="http://www.w3.org/2000/svg" width="%.0f" height="%.0f" viewBox="0 0 %.0f %.0f" role="img" aria-label="supervisor gauges over time">`, plotW, H, plotW, H)
	xv, xl := timeTicks(maxT)
	top := 0.0
	for i, name := range names {
		c := colors[i%len(colors)]
		maxY := peaks[name]
		y := func(v float64) float64 { return top + title + stripH - v/maxY*stripH }
		fmt.Fprintf(&b, `<text x="%.1f" y="%.1f" font-size="11" fill="%s">%s</text>`, plotLeft, top+title-4, c, template.HTMLEscapeString(name))
		fmt.Fprintf(&b, `<text x="%.1f" y="%.1f" font-size="11" text-anchor="end">peak %s</text>`, plotLeft+pw, top+title-4, metricValue(name, maxY))
		fmt.Fprintf(&b, `<rect x="%.1f" y="%.1f" width="%.1f" height="%.1f" fill="#fafafa" stroke="#bbb"/>`, plotLeft, top+title, pw, stripH)
		for _, v := range xv {
			fmt.Fprintf(&b, `<line x1="%.1f" y1="%.1f" x2="%.1f" y2="%.1f" stroke="#e4e4e4"/>`, x(v), top+title, x(v), top+title+stripH)
		}
		fmt.Fprintf(&b, `<text x="%.1f" y="%.1f" font-size="10" text-anchor="end">0</text>`, plotLeft-5, y(0)+3)
		fmt.Fprintf(&b, `<text x="%.1f" y="%.1f" font-size="10" text-anchor="end">%s</text>`, plotLeft-5, y(maxY)+8, metricValue(name, maxY))
		var pts strings.Builder
		for _, s := range res.Samples {
			if v, ok := s.Gauges[name]; ok {
				fmt.Fprintf(&pts, "%.1f,%.1f ", x(s.T), y(v))
			}
		}
		fmt.Fprintf(&b, `<polyline fill="none" stroke="%s" stroke-width="1.5" points="%s"/>`, c, strings.TrimSpace(pts.String()))
		top += title + stripH + stripGap
	}
	for i, v := range xv {
		fmt.Fprintf(&b, `<text x="%.1f" y="%.1f" font-size="11" text-anchor="middle">%s</text>`, x(v), top+4, xl[i])
	}
	b.WriteString(`</svg>`)
	return template.HTML(b.String())
}
