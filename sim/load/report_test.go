package load

import (
	"bytes"
	"encoding/json"
	"encoding/xml"
	"io"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"
)

// fixtureReport is a two-phase report with known numbers.
func fixtureReport() *Report {
	start := time.Date(2026, 11, 27, 10, 0, 0, 0, time.UTC)
	return &Report{
		Scenario: "rollout,delete", Started: start, Finished: start.Add(42 * time.Second), Mode: "in-process",
		Config: map[string]any{"devices": 10000, "policy": "200", "hook_concurrency": "default (16)"},
		Passed: false,
		Thresholds: []Threshold{
			{Name: "max_converge", Phase: "rollout", Limit: 10, Value: 9.876, Passed: true},
			{Name: "max_p99", Phase: "rollout", Limit: 0.025, Value: 0.0315, Passed: false},
		},
		Process: ProcessStats{PeakRSSBytes: 300 << 20, RSSBytes: 200 << 20, HeapInuse: 100 << 20, Goroutines: 1234, GOMAXPROCS: 2, NumCPU: 2, WallSeconds: 42},
		Phases: []*Result{
			{
				Scenario: "rollout", What: "push a new release", Params: map[string]any{"commit": "abc1234"},
				Started: start, Seconds: 9.876, Converged: true, Want: 10000, Reached: 10000,
				Samples: []Sample{
					{T: 0, Converged: 0, Total: 10000, Gauges: map[string]float64{`depharness_proxy_hooks_pending{kind="update"}`: 10000}},
					{T: 4.5, Converged: 4000, Total: 10000, Gauges: map[string]float64{`depharness_proxy_hooks_pending{kind="update"}`: 5000}},
					{T: 9.876, Converged: 10000, Total: 10000},
				},
				Latencies:   map[string]Percentiles{"push → report": {Count: 10000, P50: 4321.5, P90: 8765.25, P99: 9500.125, Max: 9870.5}},
				Requests:    map[string]Percentiles{"PUT /v1/devices/{uuid}": {Count: 20000, P50: 1.5, P90: 7.25, P99: 31.5, Max: 77.75}},
				AllRequests: Percentiles{Count: 20000, P50: 1.5, P90: 7.25, P99: 31.5, Max: 77.75},
				CPUSeconds:  12.5,
				RoundTrips: []RoundTrips{
					{Kind: "hook update", From: "supervisor", Count: 10000, Concurrency: 16, RequestBytes: 106, ResponseBytes: 8},
					{Kind: "PUT /v1/devices/{uuid}", From: "gateway", Count: 20000, Concurrency: 256, RequestBytes: 83, ResponseBytes: 418},
				},
				Floor:  &Floor{Seconds: 1.2345, RoundTrips: 30000, Sent: 30000, Ratio: 8},
				Hooks:  map[string]Percentiles{"update": {Count: 10000, P50: 0.01, P90: 0.02, P99: 0.5, Max: 3}},
				Errors: map[string]int64{"api PUT /v1/devices/{uuid} 503": 17},
				Counts: map[string]int64{"hooks update 200": 10000},
				Supervisor: &SupervisorFigures{
					Counters:   map[string]float64{`depharness_proxy_outbox_delivered_total{kind="patch"}`: 20000},
					Histograms: map[string]HistDelta{`depharness_proxy_hook_duration_seconds{kind="update"}`: {Count: 10000, Mean: 12.392}},
					GaugePeaks: map[string]float64{`depharness_proxy_hooks_pending{kind="update"}`: 10000},
				},
			},
			{
				Scenario: "delete", What: "delete devices", Started: start.Add(20 * time.Second), Seconds: 300, Want: 1000, Reached: 998,
				Error:     "did not converge within 5m0s",
				Samples:   []Sample{{T: 0, Converged: 0, Total: 1000}, {T: 300, Converged: 998, Total: 1000}},
				Latencies: map[string]Percentiles{}, Requests: map[string]Percentiles{}, Hooks: map[string]Percentiles{},
				Errors: map[string]int64{}, Counts: map[string]int64{},
			},
		},
	}
}

// svgs returns the inline SVG documents of an HTML page.
func svgs(t *testing.T, page string) []string {
	t.Helper()
	return regexp.MustCompile(`(?s)<svg .*?</svg>`).FindAllString(page, -1)
}

func TestHTMLReportHoldsAValidSVGPlotPerPhaseAndTheNumbers(t *testing.T) {
	var b bytes.Buffer
	if err := WriteHTML(&b, fixtureReport()); err != nil {
		t.Fatal(err)
	}
	page := b.String()
	plots := svgs(t, page)
	// Two convergence plots and one gauge plot (only the rollout has
	// supervisor gauges).
	if len(plots) != 3 {
		t.Fatalf("got %d inline SVGs, want 3", len(plots))
	}
	for i, svg := range plots {
		dec := xml.NewDecoder(strings.NewReader(svg))
		for {
			_, err := dec.Token()
			if err == io.EOF {
				break
			}
			if err != nil {
				t.Fatalf("SVG %d is not well-formed XML: %v\n%s", i, err, svg)
			}
		}
	}
	var doc struct {
		Polylines []struct {
			Class  string `xml:"class,attr"`
			Points string `xml:"points,attr"`
		} `xml:"polyline"`
	}
	if err := xml.Unmarshal([]byte(plots[0]), &doc); err != nil {
		t.Fatal(err)
	}
	var conv string
	for _, p := range doc.Polylines {
		if p.Class == "converged" {
			conv = p.Points
		}
	}
	if got := len(strings.Fields(conv)); got != 3 {
		t.Errorf("converged line has %d points, want one per sample (3): %q", got, conv)
	}
	// The last sample (all converged at the end) sits at the plot's top
	// right corner: x = 60+640, y = 16.
	if !strings.HasSuffix(conv, "700.0,16.0") {
		t.Errorf("converged line ends at %q, want the top right corner 700.0,16.0", conv)
	}
	for _, want := range []string{
		"10,000/10,000 converged in 9.88 s", "998/1,000 after 5 min 0 s", "did not converge within 5m0s",
		"4.32 s", "8.77 s", "9.50 s", "9.87 s", // per-device percentiles, in their unit
		"PUT /v1/devices/{uuid}", "77.8 ms", // request latency
		"every route", "31.5 ms", // all requests together
		"api PUT /v1/devices/{uuid} 503", ">17<", // errors
		"300 MiB", "1,234", // process
		"hook_duration_seconds", "12.4 ms", // a histogram's mean
		"Failed: delete did not converge; rollout supervisor API request p99 31.5 ms &gt; 25.0 ms.",
		">default (16)<", // the setting as it means
		// the summary and the floor
		`<td class="ok">9.88 s</td>`, `<td class="fail">not in 5 min 0 s</td>`, "<td>12.5 s</td>", "<td>1.23 s</td><td>8.0×</td>",
		"these 30,000 round trips take 1.23 s against a bare handler; the phase took 8.0× that",
		"<td>hook update</td>", "<td>256</td>", "<td>418 B</td>",
		// the thresholds
		`<td>time to converge</td><td class="text">rollout</td><td>10.0 s</td><td>9.88 s</td><td class="ok">pass</td>`,
		`<td>supervisor API request p99</td><td class="text">rollout</td><td>25.0 ms</td><td>31.5 ms</td><td class="fail">FAIL</td>`,
	} {
		if !strings.Contains(page, want) {
			t.Errorf("page lacks %q", want)
		}
	}
	// The plot has a legend, and its ticks are round numbers in their
	// units: devices in thousands, seconds.
	for _, want := range []string{">devices converged (sampled)<", ">devices watched<", ">all converged at 9.88 s<",
		">0<", ">2k<", ">10k<", ">0 s<", ">2 s<", ">8 s<"} {
		if !strings.Contains(plots[0], want) {
			t.Errorf("the rollout's plot lacks %q", want)
		}
	}
	if strings.Contains(plots[1], "all converged at") {
		t.Error("the plot of a phase that did not converge has a converged line")
	}
}

func TestTimeTicksAreRoundNumbersInAFittingUnit(t *testing.T) {
	for _, tc := range []struct {
		max  float64
		want string
	}{
		{0.35, "0 ms,50 ms,100 ms,150 ms,200 ms,250 ms,300 ms,350 ms"},
		{2.9, "0.0 s,0.5 s,1.0 s,1.5 s,2.0 s,2.5 s"},
		{64.9, "0 s,10 s,20 s,30 s,40 s,50 s,60 s"},
		{1800, "0 min,5 min,10 min,15 min,20 min,25 min,30 min"},
	} {
		_, labels := timeTicks(tc.max)
		if got := strings.Join(labels, ","); got != tc.want {
			t.Errorf("timeTicks(%v) = %s, want %s", tc.max, got, tc.want)
		}
	}
	if _, labels := countTicks(1_000_000, 4); strings.Join(labels, ",") != "0,0.2M,0.4M,0.6M,0.8M,1.0M" {
		t.Errorf("countTicks(1e6) = %v", labels)
	}
}

func TestPlotOfAPhaseWithoutSamplesIsAnEmptyFrame(t *testing.T) {
	svg := string(plot(&Result{Want: 0}))
	if strings.Contains(svg, "polyline") {
		t.Errorf("got polylines without samples: %s", svg)
	}
	if err := xml.Unmarshal([]byte(svg), new(struct{})); err != nil {
		t.Errorf("empty plot is not XML: %v", err)
	}
	if g := plotGauges(&Result{Samples: []Sample{{T: 1}}}); g != "" {
		t.Errorf("got a gauge plot without gauges: %s", g)
	}
}

func TestWriteFilesNamesReportsByScenarioAndTimeAndKeepsTheJSON(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "reports")
	rep := fixtureReport()
	jp, hp, err := WriteFiles(dir, rep)
	if err != nil {
		t.Fatal(err)
	}
	if want := filepath.Join(dir, "load-rollout+delete-20261127T100000Z.json"); jp != want {
		t.Errorf("JSON path = %s, want %s", jp, want)
	}
	if want := filepath.Join(dir, "load-rollout+delete-20261127T100000Z.html"); hp != want {
		t.Errorf("HTML path = %s, want %s", hp, want)
	}
	b, err := os.ReadFile(jp)
	if err != nil {
		t.Fatal(err)
	}
	var back Report
	if err := json.Unmarshal(b, &back); err != nil {
		t.Fatal(err)
	}
	if len(back.Phases) != 2 || back.Phases[0].Latencies["push → report"].P99 != 9500.125 || back.Process.PeakRSSBytes != 300<<20 {
		t.Errorf("JSON round trip lost numbers: %+v", back.Phases[0].Latencies)
	}
	if _, err := os.Stat(hp); err != nil {
		t.Errorf("HTML report: %v", err)
	}
}

func TestParseStatusReadsPeakAndCurrentRSS(t *testing.T) {
	status := "Name:\tdepharness\nVmPeak:\t 2000000 kB\nVmHWM:\t  307200 kB\nVmRSS:\t  204800 kB\nThreads:\t12\n"
	hwm, rss := parseStatus(strings.NewReader(status))
	if hwm != 300<<20 || rss != 200<<20 {
		t.Errorf("got VmHWM %d, VmRSS %d; want %d and %d", hwm, rss, 300<<20, 200<<20)
	}
}
