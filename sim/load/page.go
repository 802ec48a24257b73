package load

import (
	"fmt"
	"html/template"
	"io"
	"math"
	"strings"
	"time"
)

// WriteHTML writes r as a self-contained HTML page: the verdict, a summary
// of every phase (time to converge, CPU, floor and ratio), the thresholds'
// verdicts, the settings, and per phase an inline SVG plot of convergence
// over time with its floor's round trips and tables of latency
// percentiles, error and event counts and the supervisor's own figures.
func WriteHTML(w io.Writer, r *Report) error {
	return pageTmpl.Execute(w, r)
}

// metricValue writes a counter's or gauge's value in the unit its name
// says.
func metricValue(name string, v float64) string { return inUnit(name, v, FormatSeconds, formatCount) }

// histMean writes a histogram's mean observation (HistDelta.Mean: in
// milliseconds for *_seconds).
func histMean(name string, mean float64) string { return inUnit(name, mean, FormatMS, sig3) }

// inUnit writes v in the unit a metric's name says, its labels and any
// _total cut off: bytes; seconds, by secs; anything else by other.
func inUnit(name string, v float64, secs, other func(float64) string) string {
	base, _, _ := strings.Cut(name, "{")
	base = strings.TrimSuffix(base, "_total")
	switch {
	case strings.HasSuffix(base, "_bytes"), strings.HasSuffix(base, " bytes"):
		return formatBytes(v)
	case strings.HasSuffix(base, "_seconds"):
		return secs(v)
	}
	return other(v)
}

func toFloat(n any) float64 {
	switch v := n.(type) {
	case int:
		return float64(v)
	case int64:
		return float64(v)
	case uint64:
		return float64(v)
	case uint32:
		return float64(v)
	case int32:
		return float64(v)
	case float64:
		return v
	}
	return math.NaN()
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
	"dur":    FormatSeconds,
	"ms":     FormatMS,
	"count":  func(n any) string { return formatCount(toFloat(n)) },
	"num":    toFloat,
	"bytes":  func(n any) string { return formatBytes(toFloat(n)) },
	"metric": metricValue,
	"mean":   histMean,
	"errors": func(m map[string]int64) int64 {
		var n int64
		for _, v := range m {
			n += v
		}
		return n
	},
	"stamp": func(t time.Time) string { return t.UTC().Format("2006-01-02 15:04:05 UTC") },
	"ratio": func(f float64) string { return fmt.Sprintf("%.1f×", f) },
	"join":  strings.Join,
}).Parse(`<!DOCTYPE html>
<html lang="en"><head><meta charset="utf-8">
<title>depharness load: {{.Scenario}}</title>
<style>
body{font-family:system-ui,sans-serif;margin:2em auto;max-width:64em;padding:0 1em;color:#222;line-height:1.4}
h1{margin-bottom:.2em}
table{border-collapse:collapse;margin:.5em 0 1em}
td,th{border:1px solid #ccc;padding:.25em .6em;text-align:right;vertical-align:top}
th{background:#f3f3f3}
th:first-child,td:first-child,.text{text-align:left}
td:not(:first-child){white-space:nowrap}
.ok{color:#2e7d32}.fail{color:#c62828}
.verdict{font-size:1.15em;font-weight:600}
.side{display:flex;gap:2em;flex-wrap:wrap;align-items:flex-start}
section{border-top:1px solid #ccc;margin-top:1.5em}
.note{color:#555;font-size:.92em;max-width:48em}
code{font-size:.95em}
</style></head><body>
<h1>depharness load: {{.Scenario}}</h1>
<p class="note">{{stamp .Started}} → {{stamp .Finished}} ({{dur .Process.WallSeconds}}), {{.Mode}}.</p>
{{if .Passed}}<p class="verdict ok">Passed: every phase converged{{if .Thresholds}} and every threshold held{{end}}.</p>
{{else}}<p class="verdict fail">Failed: {{join .Failures "; "}}{{if not .Failures}}interrupted{{end}}.</p>{{end}}

<h2>Phases</h2>
<table><tr><th>phase</th><th>devices</th><th>converged in</th><th>CPU</th><th>round trips</th><th>floor</th><th>ratio</th><th>request p99</th><th>errors</th></tr>
{{range .Phases}}<tr><td><a href="#phase-{{.Scenario}}">{{.Scenario}}</a></td><td>{{count .Reached}}/{{count .Want}}</td>
{{if .Converged}}<td class="ok">{{dur .Seconds}}</td>{{else}}<td class="fail">not in {{dur .Seconds}}</td>{{end}}
<td>{{dur .CPUSeconds}}</td>{{with .Floor}}<td>{{count .RoundTrips}}</td>{{if .Error}}<td class="fail text" colspan="2">{{.Error}}</td>{{else}}<td>{{dur .Seconds}}</td><td>{{ratio .Ratio}}</td>{{end}}{{else}}<td></td><td></td><td></td>{{end}}
<td>{{if .AllRequests.Count}}{{ms .AllRequests.P99}}{{end}}</td><td{{if errors .Errors}} class="fail"{{end}}>{{count (errors .Errors)}}</td></tr>
{{end}}</table>
<p class="note">The <em>floor</em> is the time the phase's HTTP round trips (hooks, the gateway's requests, the supervisor's
requests to the cloud and the registry, the scenario's control requests; not the sampling) take against a bare
<code>net/http</code> handler on loopback in this process, every kind at once with the concurrency and body sizes it had;
the <em>ratio</em> is the phase's time over its floor. CPU is this process's processor time during the phase{{if eq .Mode "in-process"}}, the
supervisor's and the fakes' included{{end}}. Request p99 is that of the gateway's supervisor API requests, every route together.</p>
{{if .Thresholds}}<table><tr><th>threshold</th><th class="text">phase</th><th>limit</th><th>value</th><th>verdict</th></tr>
{{range .Thresholds}}<tr><td>{{.What}}</td><td class="text">{{.Phase}}</td><td>{{dur .Limit}}</td><td>{{dur .Value}}</td>{{if .Passed}}<td class="ok">pass</td>{{else}}<td class="fail">FAIL</td>{{end}}</tr>
{{end}}</table>{{end}}

<div class="side">
<table><tr><th>setting</th><th>value</th></tr>
{{range $k := keys .Config}}<tr><td>{{$k}}</td><td>{{index $.Config $k}}</td></tr>
{{end}}</table>
<table><tr><th>process</th><th>value</th></tr>
<tr><td>peak RSS (VmHWM)</td><td>{{bytes .Process.PeakRSSBytes}}</td></tr>
<tr><td>RSS at the end</td><td>{{bytes .Process.RSSBytes}}</td></tr>
<tr><td>Go heap in use</td><td>{{bytes .Process.HeapInuse}}</td></tr>
<tr><td>memory from the OS (Go)</td><td>{{bytes .Process.TotalSys}}</td></tr>
<tr><td>garbage collections</td><td>{{count .Process.NumGC}}</td></tr>
<tr><td>goroutines</td><td>{{count .Process.Goroutines}}</td></tr>
<tr><td>GOMAXPROCS / CPUs</td><td>{{.Process.GOMAXPROCS}} / {{.Process.NumCPU}}</td></tr>
<tr><td>Go</td><td>{{.Process.GoVersion}}</td></tr>
<tr><td>wall time</td><td>{{dur .Process.WallSeconds}}</td></tr>
</table>
</div>
{{range $ph := .Phases}}<section id="phase-{{.Scenario}}">
<h2>{{.Scenario}}: {{if .Converged}}<span class="ok">{{count .Reached}}/{{count .Want}} converged in {{dur .Seconds}}</span>{{else}}<span class="fail">{{count .Reached}}/{{count .Want}} after {{dur .Seconds}}</span>{{end}}</h2>
<p>{{.What}}</p>
{{if .Error}}<p class="fail">{{.Error}}</p>{{end}}
{{if .Params}}<table><tr><th>parameter</th><th>value</th></tr>
{{$p := .Params}}{{range $k := keys .Params}}<tr><td>{{$k}}</td><td>{{index $p $k}}</td></tr>
{{end}}</table>{{end}}
{{plot .}}
{{with .Floor}}{{if .Error}}<p class="fail">Floor not measured: {{.Error}}</p>{{else}}<p>Floor: these {{count .RoundTrips}} round trips take {{dur .Seconds}} against a bare handler{{if lt .Sent .RoundTrips}} ({{count .Sent}} of them in the same mix were sent, and the time scaled){{end}}; the phase took {{ratio .Ratio}} that.</p>{{end}}{{end}}
{{if .RoundTrips}}<table><tr><th>round trips</th><th class="text">from</th><th>count</th><th>concurrency</th><th>mean request</th><th>mean answer</th></tr>
{{range .RoundTrips}}<tr><td>{{.Kind}}</td><td class="text">{{.From}}</td><td>{{count .Count}}</td><td>{{.Concurrency}}</td><td>{{bytes .RequestBytes}}</td><td>{{bytes .ResponseBytes}}</td></tr>
{{end}}</table>{{end}}
{{template "pct" (print "per-device latency")}}{{template "rows" .Latencies}}</table>
{{template "pct" (print "supervisor API request")}}{{template "rows" .Requests}}{{with .AllRequests}}{{if .Count}}<tr><th>every route</th><th>{{count .Count}}</th><th>{{ms .P50}}</th><th>{{ms .P90}}</th><th>{{ms .P99}}</th><th>{{ms .Max}}</th></tr>{{end}}{{end}}</table>
{{if .ProbeRequests}}{{template "pct" (print "sampling request (not load)")}}{{template "rows" .ProbeRequests}}</table>{{end}}
{{template "pct" (print "hook answered by the gateway")}}{{template "rows" .Hooks}}</table>
<div class="side">
<table><tr><th>errors</th><th>count</th></tr>
{{$e := .Errors}}{{range $k := keys .Errors}}<tr><td>{{$k}}</td><td class="fail">{{count (index $e $k)}}</td></tr>
{{else}}<tr><td>none</td><td>0</td></tr>
{{end}}</table>
<table><tr><th>events</th><th>count</th></tr>
{{$c := .Counts}}{{range $k := keys .Counts}}<tr><td>{{$k}}</td><td>{{metric $k (num (index $c $k))}}</td></tr>
{{end}}</table>
</div>
{{with .Supervisor}}<h3>the supervisor's own metrics</h3>
{{plotGauges $ph}}
<table><tr><th>histogram (observations in the phase)</th><th>count</th><th>mean</th></tr>
{{$hs := .Histograms}}{{range $k := keys .Histograms}}{{$v := index $hs $k}}<tr><td>{{$k}}</td><td>{{count $v.Count}}</td><td>{{mean $k $v.Mean}}</td></tr>
{{end}}</table>
<table><tr><th>counter growth</th><th>value</th></tr>
{{$cs := .Counters}}{{range $k := keys .Counters}}<tr><td>{{$k}}</td><td>{{metric $k (index $cs $k)}}</td></tr>
{{end}}</table>
<table><tr><th>gauge peak (sampled)</th><th>value</th></tr>
{{$gs := .GaugePeaks}}{{range $k := keys .GaugePeaks}}<tr><td>{{$k}}</td><td>{{metric $k (index $gs $k)}}</td></tr>
{{end}}</table>{{end}}
</section>
{{end}}</body></html>
{{define "pct"}}<table><tr><th>{{.}}</th><th>count</th><th>p50</th><th>p90</th><th>p99</th><th>max</th></tr>{{end}}
{{define "rows"}}{{$m := .}}{{range $k := keys .}}{{$v := index $m $k}}<tr><td>{{$k}}</td><td>{{count $v.Count}}</td><td>{{ms $v.P50}}</td><td>{{ms $v.P90}}</td><td>{{ms $v.P99}}</td><td>{{ms $v.Max}}</td></tr>
{{end}}{{end}}`))
