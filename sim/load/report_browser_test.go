package load

import (
	"math"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/chromedp/chromedp"

	"github.com/depharness/depharness/internal/browsertest"
)

// pageLayout is what the browser measured of the report.
type pageLayout struct {
	ScrollWidth, InnerWidth float64
	SVGs                    []struct{ Left, Right, Width, Height float64 }
	// Ticks are the x-axis labels of the first plot: each one's left and
	// right edge.
	Ticks  [][2]float64
	Legend []string
	Text   string
}

const measureLayout = `(() => {
  const svgs = [...document.querySelectorAll('svg')].map(s => { const r = s.getBoundingClientRect(); return {Left: r.left, Right: r.right, Width: r.width, Height: r.height}; });
  const first = document.querySelector('svg');
  const axis = [...first.querySelectorAll('text[text-anchor=middle]')].filter(t => /\d/.test(t.textContent));
  const ticks = axis.map(t => { const r = t.getBoundingClientRect(); return [r.left, r.right]; });
  const legend = [...first.querySelectorAll('text:not([text-anchor])')].map(t => t.textContent);
  return {ScrollWidth: document.documentElement.scrollWidth, InnerWidth: window.innerWidth, SVGs: svgs, Ticks: ticks, Legend: legend, Text: document.body.innerText};
})()`

// TestTheReportInABrowser renders a report in Chromium (a browser at
// 1280×900): nothing sticks out sideways, every plot is drawn, the first
// plot's time labels do not overlap, and its legend and the verdicts read
// as they should. Set DEPHARNESS_SCREENSHOT_DIR to keep a screenshot.
func TestTheReportInABrowser(t *testing.T) {
	ctx := browsertest.New(t, 1280, 900, time.Minute)
	dir := t.TempDir()
	rep := fixtureReport()
	rep.Phases[0].Samples = logisticSamples(10000, 9.876, 300)
	_, htmlPath, err := WriteFiles(dir, rep)
	if err != nil {
		t.Fatal(err)
	}
	if err := chromedp.Do(ctx, chromedp.Navigate("file://"+htmlPath)); err != nil {
		t.Fatal(err)
	}
	got, err := chromedp.Run(ctx, chromedp.Evaluate[pageLayout](measureLayout))
	if err != nil {
		t.Fatal(err)
	}
	if got.ScrollWidth > got.InnerWidth {
		t.Errorf("the page is %v px wide in a %v px window: something sticks out", got.ScrollWidth, got.InnerWidth)
	}
	if len(got.SVGs) != 3 {
		t.Fatalf("%d plots drawn, want 3", len(got.SVGs))
	}
	for i, s := range got.SVGs {
		if s.Width < 600 || s.Height < 100 || s.Right > got.InnerWidth {
			t.Errorf("plot %d is drawn at %+v, want it whole and inside the window", i, s)
		}
	}
	if len(got.Ticks) < 4 {
		t.Errorf("the first plot has %d time labels, want at least 4", len(got.Ticks))
	}
	for i := 1; i < len(got.Ticks); i++ {
		if got.Ticks[i][0] < got.Ticks[i-1][1] {
			t.Errorf("time labels %d and %d overlap: %v", i-1, i, got.Ticks)
		}
	}
	legend := strings.Join(got.Legend, " | ")
	for _, w := range []string{"devices converged (sampled)", "devices watched", "all converged at 9.88 s"} {
		if !strings.Contains(legend, w) {
			t.Errorf("the legend %q lacks %q", legend, w)
		}
	}
	for _, w := range []string{"Failed: delete did not converge", "time to converge", "FAIL", "default (16)", "8.0×"} {
		if !strings.Contains(got.Text, w) {
			t.Errorf("the page reads without %q", w)
		}
	}
	if keep := os.Getenv("DEPHARNESS_SCREENSHOT_DIR"); keep != "" {
		browsertest.Screenshot(t, ctx, filepath.Join(keep, "load-report.png"))
	}
}

// logisticSamples is a smooth S-shaped convergence of n devices over secs,
// in k samples, with the supervisor's pending hooks and outbox bytes.
func logisticSamples(n int, secs float64, k int) []Sample {
	out := make([]Sample, 0, k)
	for i := range k {
		t := secs * float64(i) / float64(k-1)
		c := float64(n) / (1 + math.Exp(-10*(t/secs-0.5)))
		if i == k-1 {
			c = float64(n)
		}
		out = append(out, Sample{T: t, Converged: int(c), Total: n, Gauges: map[string]float64{
			`depharness_proxy_hooks_pending{kind="update"}`: float64(n) - c,
			`depharness_proxy_outbox_bytes{kind="patch"}`:   150 * float64(n) * math.Sin(math.Pi*t/secs) / 8,
		}})
	}
	return out
}
