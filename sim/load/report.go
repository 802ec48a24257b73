package load

import (
	"bufio"
	"bytes"
	"encoding/json"
	"fmt"
	"html/template"
	"io"
	"math"
	"os"
	"path/filepath"
	"runtime"
	"strconv"
	"strings"
	"time"
)

// Report is what `depharness load` writes to reports/: the run's
// configuration, one Result per phase, and the process's resource use.
type Report struct {
	Scenario string    `json:"scenario"`
	Started  time.Time `json:"started"`
	Finished time.Time `json:"finished"`
	// Mode is "in-process" or "external".
	Mode string `json:"mode"`
	// Config is the run's settings (devices, policy, seed, intervals...).
	Config map[string]any `json:"config"`
	Phases []*Result      `json:"phases"`
	// Passed is true when every phase converged and every threshold held.
	Passed bool `json:"passed"`
	// Thresholds are the limits the run was judged by (Judge), each with
	// its verdict; empty when none was set.
	Thresholds []Threshold  `json:"thresholds,omitempty"`
	Process    ProcessStats `json:"process"`
}

// ProcessStats is the resource use of the process that ran the load.
type ProcessStats struct {
	// PeakRSSBytes is VmHWM of /proc/self/status (0 where unavailable).
	PeakRSSBytes int64 `json:"peak_rss_bytes"`
	// RSSBytes is VmRSS at the end.
	RSSBytes    int64   `json:"rss_bytes"`
	HeapInuse   uint64  `json:"heap_inuse_bytes"`
	HeapSys     uint64  `json:"heap_sys_bytes"`
	TotalSys    uint64  `json:"go_sys_bytes"`
	NumGC       uint32  `json:"num_gc"`
	Goroutines  int     `json:"goroutines"`
	GOMAXPROCS  int     `json:"gomaxprocs"`
	NumCPU      int     `json:"num_cpu"`
	GoVersion   string  `json:"go_version"`
	WallSeconds float64 `json:"wall_seconds"`
}

// ReadProcessStats reads the process's memory and scheduler figures.
func ReadProcessStats() ProcessStats {
	var ms runtime.MemStats
	runtime.ReadMemStats(&ms)
	ps := ProcessStats{
		HeapInuse: ms.HeapInuse, HeapSys: ms.HeapSys, TotalSys: ms.Sys, NumGC: ms.NumGC,
		Goroutines: runtime.NumGoroutine(), GOMAXPROCS: runtime.GOMAXPROCS(0), NumCPU: runtime.NumCPU(), GoVersion: runtime.Version(),
	}
	if f, err := os.Open("/proc/self/status"); err == nil {
		defer f.Close()
		ps.PeakRSSBytes, ps.RSSBytes = parseStatus(f)
	}
	return ps
}

// parseStatus reads VmHWM and VmRSS (kB) from a /proc/<pid>/status file.
func parseStatus(r io.Reader) (hwm, rss int64) {
	sc := bufio.NewScanner(r)
	for sc.Scan() {
		k, v, ok := strings.Cut(sc.Text(), ":")
		if !ok {
			continue
		}
		f := strings.Fields(v)
		if len(f) == 0 {
			continue
		}
		n, err := strconv.ParseInt(f[0], 10, 64)
		if err != nil {
			continue
		}
		switch k {
		case "VmHWM":
			hwm = n << 10
		case "VmRSS":
			rss = n << 10
		}
	}
	return hwm, rss
}

// WriteFiles writes r as dir/load-<scenario>-<timestamp>.json and .html
// and returns their paths.
func WriteFiles(dir string, r *Report) (jsonPath, htmlPath string, err error) {
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return "", "", err
	}
	base := filepath.Join(dir, fmt.Sprintf("load-%s-%s", strings.ReplaceAll(r.Scenario, ",", "+"), r.Started.UTC().Format("20060102T150405Z")))
	jsonPath, htmlPath = base+".json", base+".html"
	b, err := json.MarshalIndent(r, "", "  ")
	if err != nil {
		return "", "", err
	}
	if err := os.WriteFile(jsonPath, append(b, '\n'), 0o644); err != nil {
		return "", "", err
	}
	var hb bytes.Buffer
	if err := WriteHTML(&hb, r); err != nil {
		return "", "", err
	}
	if err := os.WriteFile(htmlPath, hb.Bytes(), 0o644); err != nil {
		return "", "", err
	}
	return jsonPath, htmlPath, nil
}

// WriteHTML writes r as a self-contained HTML page: per phase, an inline
// SVG plot of converged devices over time and tables of latency
// percentiles, error and event counts.
func WriteHTML(w io.Writer, r *Report) error {
	return pageTmpl.Execute(w, r)
}

// plot renders samples as an inline SVG line plot: converged devices (solid)
// and devices in all (dashed) against seconds.
func plot(res *Result) template.HTML {
	const W, H, left, right, top, bottom = 720.0, 260.0, 60.0, 20.0, 16.0, 40.0
	pw, ph := W-left-right, H-top-bottom
	maxT, maxY := 0.0, float64(res.Want)
	for _, s := range res.Samples {
		maxT = math.Max(maxT, s.T)
		maxY = math.Max(maxY, float64(max(s.Converged, s.Total)))
	}
	maxT = math.Max(maxT, res.Seconds)
	if maxT <= 0 {
		maxT = 1
	}
	if maxY <= 0 {
		maxY = 1
	}
	x := func(t float64) float64 { return left + t/maxT*pw }
	y := func(v float64) float64 { return top + ph - v/maxY*ph }
	var b strings.Builder
	fmt.Fprintf(&b, `<svg xmlns="http://www.w3.org/2000/svg" width="%.0f" height="%.0f" viewBox="0 0 %.0f %.0f" role="img" aria-label="converged devices over time">`, W, H, W, H)
	fmt.Fprintf(&b, `<rect x="%.1f" y="%.1f" width="%.1f" height="%.1f" fill="#fafafa" stroke="#999"/>`, left, top, pw, ph)
	for i := 0; i <= 4; i++ {
		v := maxY * float64(i) / 4
		t := maxT * float64(i) / 4
		fmt.Fprintf(&b, `<line x1="%.1f" y1="%.1f" x2="%.1f" y2="%.1f" stroke="#ddd"/>`, left, y(v), left+pw, y(v))
		fmt.Fprintf(&b, `<text x="%.1f" y="%.1f" font-size="11" text-anchor="end">%.0f</text>`, left-4, y(v)+4, v)
		fmt.Fprintf(&b, `<text x="%.1f" y="%.1f" font-size="11" text-anchor="middle">%.1fs</text>`, x(t), top+ph+16, t)
	}
	fmt.Fprintf(&b, `<text x="%.1f" y="%.1f" font-size="12" text-anchor="middle">seconds since the phase started</text>`, left+pw/2, H-4)
	fmt.Fprintf(&b, `<text x="14" y="%.1f" font-size="12" text-anchor="middle" transform="rotate(-90 14 %.1f)">devices</text>`, top+ph/2, top+ph/2)
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
		fmt.Fprintf(&b, `<line x1="%.1f" y1="%.1f" x2="%.1f" y2="%.1f" stroke="#2e7d32" stroke-dasharray="2 2"/>`, x(res.Seconds), top, x(res.Seconds), top+ph)
	}
	b.WriteString(`</svg>`)
	return template.HTML(b.String())
}

// plotGauges renders the supervisor's sampled gauges that were ever
// non-zero (hooks pending, outbox depth) as lines against seconds, with a
// legend; empty when there are none.
func plotGauges(res *Result) template.HTML {
	peaks := map[string]float64{}
	for _, s := range res.Samples {
		for k, v := range s.Gauges {
			peaks[k] = math.Max(peaks[k], v)
		}
	}
	var names []string
	maxY := 0.0
	for _, k := range sortedKeys(peaks) {
		if peaks[k] > 0 {
			names = append(names, k)
			maxY = math.Max(maxY, peaks[k])
		}
	}
	if len(names) == 0 {
		return ""
	}
	colors := []string{"#c62828", "#6a1b9a", "#ef6c00", "#2e7d32", "#00838f", "#4e342e", "#283593", "#ad1457"}
	const W, left, right, top, bottom = 720.0, 60.0, 20.0, 16.0, 40.0
	H := 220.0 + 16*float64(len(names))
	pw, ph := W-left-right, 220.0-top-bottom
	maxT := math.Max(res.Seconds, 1e-3)
	for _, s := range res.Samples {
		maxT = math.Max(maxT, s.T)
	}
	x := func(t float64) float64 { return left + t/maxT*pw }
	y := func(v float64) float64 { return top + ph - v/maxY*ph }
	var b strings.Builder
	fmt.Fprintf(&b, `<svg xmlns="http://www.w3.org/2000/svg" width="%.0f" height="%.0f" viewBox="0 0 %.0f %.0f" role="img" aria-label="supervisor gauges over time">`, W, H, W, H)
	fmt.Fprintf(&b, `<rect x="%.1f" y="%.1f" width="%.1f" height="%.1f" fill="#fafafa" stroke="#999"/>`, left, top, pw, ph)
	for i := 0; i <= 4; i++ {
		v, t := maxY*float64(i)/4, maxT*float64(i)/4
		fmt.Fprintf(&b, `<text x="%.1f" y="%.1f" font-size="11" text-anchor="end">%.0f</text>`, left-4, y(v)+4, v)
		fmt.Fprintf(&b, `<text x="%.1f" y="%.1f" font-size="11" text-anchor="middle">%.1fs</text>`, x(t), top+ph+16, t)
	}
	for i, name := range names {
		c := colors[i%len(colors)]
		var pts strings.Builder
		for _, s := range res.Samples {
			if v, ok := s.Gauges[name]; ok {
				fmt.Fprintf(&pts, "%.1f,%.1f ", x(s.T), y(v))
			}
		}
		fmt.Fprintf(&b, `<polyline fill="none" stroke="%s" stroke-width="1.5" points="%s"/>`, c, strings.TrimSpace(pts.String()))
		ly := 220.0 + 16*float64(i)
		fmt.Fprintf(&b, `<line x1="%.1f" y1="%.1f" x2="%.1f" y2="%.1f" stroke="%s" stroke-width="3"/>`, left, ly-4, left+20, ly-4, c)
		fmt.Fprintf(&b, `<text x="%.1f" y="%.1f" font-size="11">%s (peak %.0f)</text>`, left+26, ly, template.HTMLEscapeString(name), peaks[name])
	}
	b.WriteString(`</svg>`)
	return template.HTML(b.String())
}

var pageTmpl = template.Must(template.New("page").Funcs(template.FuncMap{
	"plot":       plot,
	"plotGauges": plotGauges,
	"keys": func(v any) []string {
		switch m := v.(type) {
		case map[string]Percentiles:
			return sortedKeys(m)
		case map[string]int64:
			return sortedKeys(m)
		case map[string]any:
			return sortedKeys(m)
		case map[string]float64:
			return sortedKeys(m)
		case map[string]HistDelta:
			return sortedKeys(m)
		}
		return nil
	},
	"mib": func(n any) string {
		var f float64
		switch v := n.(type) {
		case int64:
			f = float64(v)
		case uint64:
			f = float64(v)
		}
		return fmt.Sprintf("%.1f MiB", f/(1<<20))
	},
	"stamp": func(t time.Time) string { return t.UTC().Format(time.RFC3339) },
}).Parse(`<!DOCTYPE html>
<html lang="en"><head><meta charset="utf-8">
<title>depharness load: {{.Scenario}}</title>
<style>
body{font-family:system-ui,sans-serif;margin:2em;max-width:60em;color:#222}
table{border-collapse:collapse;margin:.5em 0 1em}
td,th{border:1px solid #ccc;padding:.2em .6em;text-align:right}
th:first-child,td:first-child{text-align:left}
.ok{color:#2e7d32}.fail{color:#c62828}
section{border-top:1px solid #ccc;margin-top:1.5em}
</style></head><body>
<h1>depharness load: {{.Scenario}}</h1>
<p>{{stamp .Started}} → {{stamp .Finished}}, {{.Mode}}.
{{if .Passed}}<strong class="ok">Every phase converged.</strong>{{else}}<strong class="fail">A phase did not converge.</strong>{{end}}</p>
<table><tr><th>setting</th><th>value</th></tr>
{{range $k := keys .Config}}<tr><td>{{$k}}</td><td>{{index $.Config $k}}</td></tr>
{{end}}</table>
<table><tr><th>process</th><th>value</th></tr>
<tr><td>peak RSS (VmHWM)</td><td>{{mib .Process.PeakRSSBytes}}</td></tr>
<tr><td>RSS at the end</td><td>{{mib .Process.RSSBytes}}</td></tr>
<tr><td>Go heap in use</td><td>{{mib .Process.HeapInuse}}</td></tr>
<tr><td>memory from the OS (Go)</td><td>{{mib .Process.TotalSys}}</td></tr>
<tr><td>goroutines</td><td>{{.Process.Goroutines}}</td></tr>
<tr><td>GOMAXPROCS / CPUs</td><td>{{.Process.GOMAXPROCS}} / {{.Process.NumCPU}}</td></tr>
<tr><td>wall time</td><td>{{printf "%.1f" .Process.WallSeconds}} s</td></tr>
</table>
{{range $ph := .Phases}}<section>
<h2>{{.Scenario}}: {{if .Converged}}<span class="ok">{{.Reached}}/{{.Want}} converged in {{printf "%.3f" .Seconds}} s</span>{{else}}<span class="fail">{{.Reached}}/{{.Want}} after {{printf "%.3f" .Seconds}} s</span>{{end}}</h2>
<p>{{.What}}</p>
{{if .Error}}<p class="fail">{{.Error}}</p>{{end}}
{{if .Params}}<table><tr><th>parameter</th><th>value</th></tr>
{{$p := .Params}}{{range $k := keys .Params}}<tr><td>{{$k}}</td><td>{{index $p $k}}</td></tr>
{{end}}</table>{{end}}
{{plot .}}
{{template "pct" (print "per-device latency")}}{{template "rows" .Latencies}}</table>
{{template "pct" (print "supervisor API request")}}{{template "rows" .Requests}}</table>
{{if .ProbeRequests}}{{template "pct" (print "sampling request (not load)")}}{{template "rows" .ProbeRequests}}</table>{{end}}
{{template "pct" (print "hook answered by the gateway")}}{{template "rows" .Hooks}}</table>
<table><tr><th>errors</th><th>count</th></tr>
{{$e := .Errors}}{{range $k := keys .Errors}}<tr><td>{{$k}}</td><td>{{index $e $k}}</td></tr>
{{else}}<tr><td>none</td><td>0</td></tr>
{{end}}</table>
<table><tr><th>events</th><th>count</th></tr>
{{$c := .Counts}}{{range $k := keys .Counts}}<tr><td>{{$k}}</td><td>{{index $c $k}}</td></tr>
{{end}}</table>
{{with .Supervisor}}<h3>the supervisor's own metrics</h3>
{{plotGauges $ph}}
<table><tr><th>histogram (observations in the phase)</th><th>count</th><th>mean (ms for _seconds)</th></tr>
{{$hs := .Histograms}}{{range $k := keys .Histograms}}{{$v := index $hs $k}}<tr><td>{{$k}}</td><td>{{$v.Count}}</td><td>{{$v.Mean}}</td></tr>
{{end}}</table>
<table><tr><th>counter growth</th><th>value</th></tr>
{{$cs := .Counters}}{{range $k := keys .Counters}}<tr><td>{{$k}}</td><td>{{index $cs $k}}</td></tr>
{{end}}</table>
<table><tr><th>gauge peak (sampled)</th><th>value</th></tr>
{{$gs := .GaugePeaks}}{{range $k := keys .GaugePeaks}}<tr><td>{{$k}}</td><td>{{index $gs $k}}</td></tr>
{{end}}</table>{{end}}
</section>
{{end}}</body></html>
{{define "pct"}}<table><tr><th>{{.}}</th><th>count</th><th>p50 ms</th><th>p90 ms</th><th>p99 ms</th><th>max ms</th></tr>{{end}}
{{define "rows"}}{{$m := .}}{{range $k := keys .}}{{$v := index $m $k}}<tr><td>{{$k}}</td><td>{{$v.Count}}</td><td>{{$v.P50}}</td><td>{{$v.P90}}</td><td>{{$v.P99}}</td><td>{{$v.Max}}</td></tr>
{{end}}{{end}}`))
