package features

import (
	"encoding/json"
	"fmt"
	"html/template"
	"io"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"time"

	"github.com/depharness/depharness/features/clauses"
)

// The cucumber JSON that godog's "cucumber" formatter writes, as far as the
// compliance report reads it.

// CucumberFeature is one feature of a cucumber JSON report.
type CucumberFeature struct {
	URI      string            `json:"uri"`
	Name     string            `json:"name"`
	Elements []CucumberElement `json:"elements"`
}

// CucumberElement is one scenario (an outline gives one per example).
type CucumberElement struct {
	ID    string         `json:"id"`
	Name  string         `json:"name"`
	Line  int            `json:"line"`
	Type  string         `json:"type"`
	Tags  []CucumberTag  `json:"tags"`
	Steps []CucumberStep `json:"steps"`
}

// CucumberTag is a tag of an element.
type CucumberTag struct {
	Name string `json:"name"`
}

// CucumberStep is one step and its result.
type CucumberStep struct {
	Keyword string `json:"keyword"`
	Name    string `json:"name"`
	Line    int    `json:"line"`
	Result  struct {
		Status string `json:"status"`
		Error  string `json:"error_message"`
	} `json:"result"`
}

// Statuses of scenarios and clauses in the report.
const (
	StatusPassed  = "passed"
	StatusFailed  = "failed"
	StatusSkipped = "skipped"
	StatusNotRun  = "not run"
)

// ScenarioReport is one scenario's line in the report.
type ScenarioReport struct {
	Feature string
	Name    string
	Line    int
	Status  string
	// Failure is the failing step and its error (the request and the
	// answer, for API assertions).
	Failure string
}

// ClauseReport is one clause's row of the matrix.
type ClauseReport struct {
	clauses.Clause
	Status    string
	Scenarios []ScenarioReport
}

// TierSummary counts the clauses of a tier by status.
type TierSummary struct {
	Tier                            clauses.Tier
	Passed, Failed, Skipped, NotRun int
	Total                           int
}

// Report is the compliance report: clauses of CONTRACT.md and the results
// of the scenarios that check them.
type Report struct {
	Generated time.Time
	Scenarios struct{ Total, Passed, Failed, Skipped int }
	Tiers     []TierSummary
	Clauses   []ClauseReport
	// Untagged are scenarios that name no known clause.
	Untagged []ScenarioReport
	// Verdict is one line: does the target pass the contract tier?
	Verdict string
	// Compliant is true when every contract clause passed.
	Compliant bool
}

// elementStatus summarizes the steps of a scenario: failed if any step
// failed or was undefined or pending, skipped if all were skipped, passed
// otherwise.
func elementStatus(el CucumberElement) (string, string) {
	if len(el.Steps) == 0 {
		return StatusSkipped, ""
	}
	all := true
	for _, s := range el.Steps {
		switch s.Result.Status {
		case "failed", "undefined", "pending", "ambiguous":
			msg := s.Result.Error
			if msg == "" {
				msg = "step is " + s.Result.Status
			}
			return StatusFailed, fmt.Sprintf("%s%s (line %d):\n%s", s.Keyword, s.Name, s.Line, msg)
		case "skipped":
		default:
			all = false
		}
	}
	if all {
		return StatusSkipped, ""
	}
	return StatusPassed, ""
}

// BuildReport builds the report of a run from its cucumber JSON features.
func BuildReport(feats []CucumberFeature, cs []clauses.Clause, now time.Time) Report {
	r := Report{Generated: now}
	byClause := map[string][]ScenarioReport{}
	for _, f := range feats {
		for _, el := range f.Elements {
			if el.Type != "" && el.Type != "scenario" {
				continue
			}
			status, failure := elementStatus(el)
			sr := ScenarioReport{Feature: f.URI, Name: el.Name, Line: el.Line, Status: status, Failure: failure}
			r.Scenarios.Total++
			switch status {
			case StatusPassed:
				r.Scenarios.Passed++
			case StatusFailed:
				r.Scenarios.Failed++
			default:
				r.Scenarios.Skipped++
			}
			tagged := false
			seen := map[string]bool{}
			for _, t := range el.Tags {
				if clauses.IsTag(t.Name) && !seen[t.Name] {
					seen[t.Name] = true
					id := strings.TrimPrefix(t.Name, "@")
					byClause[id] = append(byClause[id], sr)
					tagged = true
				}
			}
			if !tagged {
				r.Untagged = append(r.Untagged, sr)
			}
		}
	}
	tiers := map[clauses.Tier]*TierSummary{
		clauses.Contract:  {Tier: clauses.Contract},
		clauses.Reference: {Tier: clauses.Reference},
	}
	for _, c := range cs {
		cr := ClauseReport{Clause: c, Scenarios: byClause[c.ID], Status: StatusNotRun}
		passed, failed := 0, 0
		for _, s := range cr.Scenarios {
			switch s.Status {
			case StatusPassed:
				passed++
			case StatusFailed:
				failed++
			}
		}
		switch {
		case failed > 0:
			cr.Status = StatusFailed
		case passed > 0:
			cr.Status = StatusPassed
		case len(cr.Scenarios) > 0:
			cr.Status = StatusSkipped
		}
		sort.SliceStable(cr.Scenarios, func(i, j int) bool {
			return cr.Scenarios[i].Status == StatusFailed && cr.Scenarios[j].Status != StatusFailed
		})
		t := tiers[c.Tier]
		t.Total++
		switch cr.Status {
		case StatusPassed:
			t.Passed++
		case StatusFailed:
			t.Failed++
		case StatusSkipped:
			t.Skipped++
		default:
			t.NotRun++
		}
		r.Clauses = append(r.Clauses, cr)
	}
	r.Tiers = []TierSummary{*tiers[clauses.Contract], *tiers[clauses.Reference]}
	ct := tiers[clauses.Contract]
	r.Compliant = ct.Total > 0 && ct.Passed == ct.Total
	switch {
	case r.Compliant:
		r.Verdict = fmt.Sprintf("Compliant: all %d contract clauses passed.", ct.Total)
	case ct.Failed > 0:
		r.Verdict = fmt.Sprintf("Not compliant: %d of %d contract clauses failed.", ct.Failed, ct.Total)
	default:
		r.Verdict = fmt.Sprintf("Incomplete: %d of %d contract clauses were not checked in this run.", ct.NotRun+ct.Skipped, ct.Total)
	}
	return r
}

// ReadCucumberJSON reads a cucumber JSON report.
func ReadCucumberJSON(rd io.Reader) ([]CucumberFeature, error) {
	var feats []CucumberFeature
	if err := json.NewDecoder(rd).Decode(&feats); err != nil {
		return nil, fmt.Errorf("reading cucumber JSON: %w", err)
	}
	return feats, nil
}

// WriteHTMLReportFiles reads dir/cucumber.json and writes dir/report.html.
func WriteHTMLReportFiles(dir string) error {
	f, err := os.Open(filepath.Join(dir, "cucumber.json"))
	if err != nil {
		return err
	}
	defer f.Close()
	feats, err := ReadCucumberJSON(f)
	if err != nil {
		return err
	}
	out, err := os.Create(filepath.Join(dir, "report.html"))
	if err != nil {
		return err
	}
	if err := WriteHTML(out, BuildReport(feats, clauses.All(), time.Now())); err != nil {
		out.Close()
		return err
	}
	return out.Close()
}

// WriteHTML renders the report as one self-contained HTML page (inline CSS,
// no scripts, no network).
func WriteHTML(w io.Writer, r Report) error {
	return reportTemplate.Execute(w, r)
}

var reportTemplate = template.Must(template.New("report").Funcs(template.FuncMap{
	"lower": strings.ToLower,
	"cls":   func(s string) string { return strings.ReplaceAll(s, " ", "-") },
	"failedClauses": func(cs []ClauseReport) []ClauseReport {
		var out []ClauseReport
		for _, c := range cs {
			if c.Status == StatusFailed {
				out = append(out, c)
			}
		}
		return out
	},
}).Parse(`<!DOCTYPE html>
<html lang="en">
<head>
<meta charset="utf-8">
<title>depharness compliance report</title>
<style>
body{font-family:system-ui,-apple-system,Segoe UI,sans-serif;margin:2em;color:#222;max-width:1400px}
h1{margin-bottom:.2em}
.verdict{font-size:1.3em;font-weight:600;padding:.6em 1em;border-radius:6px;margin:1em 0}
.verdict.ok{background:#e3f6e5;color:#145a20}.verdict.bad{background:#fde6e6;color:#8a1010}
table{border-collapse:collapse;width:100%;margin:1em 0}
th,td{border:1px solid #ddd;padding:.4em .6em;text-align:left;vertical-align:top}
th{background:#f3f3f3}
.status{font-weight:600;white-space:nowrap}
.passed{color:#147a2a}.failed{color:#b01010}.skipped,.not-run{color:#8a6d00}
tr.failed td{background:#fff5f5}
pre{white-space:pre-wrap;font-size:.85em;background:#f8f8f8;border:1px solid #eee;padding:.5em;max-height:30em;overflow:auto}
.tier{font-size:.85em;padding:.1em .4em;border-radius:4px;background:#eef}
.tier.reference{background:#f4eefc}
ul{margin:0;padding-left:1.2em}
</style>
</head>
<body>
<h1>depharness compliance report</h1>
<p>Generated {{.Generated.Format "2006-01-02 15:04:05 MST"}}.
Scenarios: {{.Scenarios.Total}} run, <span class="passed">{{.Scenarios.Passed}} passed</span>,
<span class="failed">{{.Scenarios.Failed}} failed</span>, <span class="skipped">{{.Scenarios.Skipped}} skipped</span>.</p>
<div class="verdict {{if .Compliant}}ok{{else}}bad{{end}}">{{.Verdict}}</div>
{{with failedClauses .Clauses}}<p>Failed clauses: {{range $i, $c := .}}{{if $i}}, {{end}}<a href="#{{$c.ID}}">{{$c.ID}}</a>{{end}}</p>{{end}}
<table>
<tr><th>Tier</th><th>Clauses</th><th>Passed</th><th>Failed</th><th>Skipped</th><th>Not run</th></tr>
{{range .Tiers}}<tr><td><span class="tier {{.Tier}}">{{.Tier}}</span></td><td>{{.Total}}</td><td class="passed">{{.Passed}}</td><td class="failed">{{.Failed}}</td><td class="skipped">{{.Skipped}}</td><td class="not-run">{{.NotRun}}</td></tr>
{{end}}</table>
<h2>Clauses</h2>
<table>
<tr><th>Clause</th><th>Tier</th><th>Text</th><th>Status</th><th>Scenarios</th></tr>
{{range .Clauses}}<tr class="{{cls .Status}}" id="{{.ID}}">
<td><b>{{.ID}}</b><br><small>{{.Area}}</small></td>
<td><span class="tier {{.Tier}}">{{.Tier}}</span></td>
<td>{{.Text}}</td>
<td class="status {{cls .Status}}">{{.Status}}</td>
<td>{{if .Scenarios}}<ul>{{range .Scenarios}}<li><span class="{{cls .Status}}">{{.Status}}</span> {{.Feature}}:{{.Line}} {{.Name}}{{if .Failure}}<pre>{{.Failure}}</pre>{{end}}</li>{{end}}</ul>{{else}}<i>no scenario ran</i>{{end}}</td>
</tr>
{{end}}</table>
{{if .Untagged}}<h2>Scenarios without a clause</h2><ul>{{range .Untagged}}<li><span class="{{cls .Status}}">{{.Status}}</span> {{.Feature}}:{{.Line}} {{.Name}}{{if .Failure}}<pre>{{.Failure}}</pre>{{end}}</li>{{end}}</ul>{{end}}
</body>
</html>
`))
