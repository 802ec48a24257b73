package features

import (
	_ "embed"
	"fmt"
	"html/template"
	"io"
	"regexp"
	"sort"
	"strconv"
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
		Status   string `json:"status"`
		Error    string `json:"error_message"`
		Duration int64  `json:"duration"` // nanoseconds
	} `json:"result"`
}

// Statuses of scenarios and clauses in the report.
const (
	StatusPassed  = "passed"
	StatusFailed  = "failed"
	StatusSkipped = "skipped"
	StatusNotRun  = "not run"
	// StatusBlocked is a clause whose scenarios failed only at steps that
	// check another clause: it was not reached, neither passed nor failed.
	StatusBlocked = "not reached"
)

// RunInfo is what the report says about the run itself.
type RunInfo struct {
	// Seed of the scenario order and the fakes.
	Seed int64
	// Tags is the tag expression ("" for every scenario).
	Tags string
	// Command is the target command as given ("" for this binary's
	// reference proxy); keys in it are redacted in the report.
	Command string
	// Version of depharness.
	Version string
	// Selected scenarios of Total in the suite: fewer is a subset run.
	Selected, Total int
	// RerunFrom is the rerun list the run took (--rerun), if any.
	RerunFrom string
}

// Subset reports whether the run selected only some of the suite's
// scenarios.
func (i RunInfo) Subset() bool { return i.Total > 0 && i.Selected < i.Total }

// TargetText is the target command for people, keys redacted.
func (i RunInfo) TargetText() string {
	if i.Command == "" {
		return "the reference proxy of this depharness"
	}
	return redactText(i.Command)
}

// Redacted reports whether the target command shows redacted keys.
func (i RunInfo) Redacted() bool { return i.Command != redactText(i.Command) }

// RerunCommand is a command line that runs the same scenarios against the
// same target in the same order; extra is added (e.g. other tags).
func (i RunInfo) RerunCommand(tags string) string {
	parts := []string{"depharness", "verify"}
	if i.Command != "" {
		parts = append(parts, "--target-cmd", shellQuote(redactText(i.Command)))
	}
	if tags != "" {
		parts = append(parts, "--tags", shellQuote(tags))
	}
	if i.RerunFrom != "" {
		parts = append(parts, "--rerun", shellQuote(i.RerunFrom))
	}
	if i.Seed != 0 {
		parts = append(parts, "--seed", strconv.FormatInt(i.Seed, 10))
	}
	return strings.Join(parts, " ")
}

// shellQuote quotes s for sh.
func shellQuote(s string) string { return "'" + strings.ReplaceAll(s, "'", `'\''`) + "'" }

// FailureSection is one labelled part of a failure: "request", "response",
// "assertion", "expected value", … Text is kept as written (preformatted).
type FailureSection struct {
	Label string
	Text  string
}

// FailurePart is one failed assertion of a step.
type FailurePart struct {
	// Summary is the failure's first paragraph ("unexpected http status
	// value", or the whole message of a step that failed otherwise).
	Summary string
	// Sections are the labelled parts of an HTTP assertion's failure.
	Sections []FailureSection
}

// Failure is a failing step, split for reading.
type Failure struct {
	// Step is "Then the answer is 202", Line its line in the feature file.
	Step string
	Line int
	// Parts are the failed assertions of the step, most often one.
	Parts []FailurePart
	// Clause is the clause the failing step checks (ClauseHow says how it
	// is known); empty when the scenario's clauses cannot be told apart.
	Clause    string
	ClauseHow string
}

// ScenarioReport is one scenario's line in the report.
type ScenarioReport struct {
	Feature string
	// FeatureName is the feature's title.
	FeatureName string
	Name        string
	Line        int
	Status      string
	// Clauses are the clause IDs the scenario is tagged with.
	Clauses []string
	// Reference is set for a scenario tagged @reference.
	Reference bool
	// Failure is the failing step and its error (the request and the
	// answer, for API assertions), keys redacted.
	Failure string
	// Detail is Failure split for reading; nil for a scenario that did not
	// fail.
	Detail *Failure
	// Log is the scenario's log, relative to the report directory
	// ("logs/007-….log"), when one was kept.
	Log string
	// Duration is the scenario's run time (the sum of its steps').
	Duration time.Duration
	// Elsewhere, in a clause's row, is the clause the scenario's failing
	// step checks when that is another one: this clause was not reached.
	Elsewhere string
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

// Verdict classes: how the report's banner is coloured.
const (
	VerdictOK      = "ok"
	VerdictBad     = "bad"
	VerdictNeutral = "neutral"
)

// Report is the compliance report: clauses of CONTRACT.md and the results
// of the scenarios that check them.
type Report struct {
	Generated time.Time
	Info      RunInfo
	Scenarios struct{ Total, Passed, Failed, Skipped int }
	Tiers     []TierSummary
	Clauses   []ClauseReport
	// Failures are the failed scenarios, in feature order.
	Failures []ScenarioReport
	// Untagged are scenarios that name no known clause.
	Untagged []ScenarioReport
	// all are every scenario, in feature order.
	all []ScenarioReport
	// Verdict is one line: does the target pass the contract tier?
	Verdict string
	// VerdictClass is VerdictOK, VerdictBad or VerdictNeutral (a subset run
	// with nothing failed).
	VerdictClass string
	// Compliant is true when every contract clause passed.
	Compliant bool
	// ContractLink is where the contract is, relative to the report
	// ("contract.md", written beside it); empty leaves the link out.
	ContractLink string
}

// elementStatus summarizes the steps of a scenario: failed if any step
// failed or was undefined or pending, skipped if all were skipped, passed
// otherwise. For a failure it also returns the failing step.
func elementStatus(el CucumberElement) (string, string, *CucumberStep) {
	if len(el.Steps) == 0 {
		return StatusSkipped, "", nil
	}
	all := true
	for i, s := range el.Steps {
		switch s.Result.Status {
		case "failed", "undefined", "pending", "ambiguous":
			msg := s.Result.Error
			if msg == "" {
				msg = "step is " + s.Result.Status
			}
			return StatusFailed, fmt.Sprintf("%s%s (line %d):\n%s", s.Keyword, s.Name, s.Line, msg), &el.Steps[i]
		case "skipped":
		default:
			all = false
		}
	}
	if all {
		return StatusSkipped, "", nil
	}
	return StatusPassed, "", nil
}

// BuildReport builds the report of a run from its cucumber JSON features.
func BuildReport(feats []CucumberFeature, cs []clauses.Clause, now time.Time) Report {
	return BuildRunReport(feats, cs, now, RunInfo{}, nil, nil)
}

// BuildRunReport is BuildReport with what the run was (info), the feature
// files' text (src, for step annotations) and the scenario logs kept
// (logs: scenario name → paths relative to the report directory, in run
// order; nil for none).
func BuildRunReport(feats []CucumberFeature, cs []clauses.Clause, now time.Time, info RunInfo, src Sources, logs map[string][]string) Report {
	r := Report{Generated: now, Info: info}
	byClause := map[string][]ScenarioReport{}
	known := map[string]bool{}
	for _, c := range cs {
		known[c.ID] = true
	}
	for _, f := range feats {
		var text []byte
		if src != nil {
			text = src(f.URI)
		}
		for _, el := range f.Elements {
			if el.Type != "" && el.Type != "scenario" {
				continue
			}
			status, failure, step := elementStatus(el)
			sr := ScenarioReport{Feature: fileURI(f.URI), FeatureName: f.Name, Name: el.Name, Line: el.Line, Status: status, Failure: redactText(strings.ReplaceAll(failure, "\r\n", "\n"))}
			var d time.Duration
			for _, s := range el.Steps {
				d += time.Duration(s.Result.Duration)
			}
			sr.Duration = d
			seen := map[string]bool{}
			for _, t := range el.Tags {
				sr.Reference = sr.Reference || t.Name == TagReference
				if clauses.IsTag(t.Name) && !seen[t.Name] {
					seen[t.Name] = true
					sr.Clauses = append(sr.Clauses, strings.TrimPrefix(t.Name, "@"))
				}
			}
			if status == StatusFailed {
				msg := step.Result.Error
				if msg == "" {
					msg = "step is " + step.Result.Status
				}
				fd := &Failure{Step: strings.TrimSpace(step.Keyword) + " " + step.Name, Line: step.Line, Parts: splitFailure(redactText(msg))}
				fd.Clause, fd.ClauseHow = clauseOfStep(sr.Clauses, text, el.Line, step.Line, msg)
				sr.Detail = fd
				if ls := logs[logName(el.Name)]; len(ls) > 0 {
					sr.Log = ls[0]
					logs[logName(el.Name)] = ls[1:]
				}
			}
			r.all = append(r.all, sr)
			r.Scenarios.Total++
			switch status {
			case StatusPassed:
				r.Scenarios.Passed++
			case StatusFailed:
				r.Scenarios.Failed++
				r.Failures = append(r.Failures, sr)
			default:
				r.Scenarios.Skipped++
			}
			tagged := false
			for _, id := range sr.Clauses {
				in := sr
				if sr.Detail != nil && sr.Detail.Clause != "" && sr.Detail.Clause != id {
					in.Elsewhere = sr.Detail.Clause
				}
				byClause[id] = append(byClause[id], in)
				tagged = tagged || known[id]
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
		passed, failed, blocked := 0, 0, 0
		for _, s := range cr.Scenarios {
			switch {
			case s.Status == StatusPassed:
				passed++
			case s.Status == StatusFailed && s.Elsewhere != "":
				blocked++
			case s.Status == StatusFailed:
				failed++
			}
		}
		switch {
		case failed > 0:
			cr.Status = StatusFailed
		case blocked > 0:
			cr.Status = StatusBlocked
		case passed > 0:
			cr.Status = StatusPassed
		case len(cr.Scenarios) > 0:
			cr.Status = StatusSkipped
		}
		rank := func(s ScenarioReport) int {
			switch {
			case s.Status == StatusFailed && s.Elsewhere == "":
				return 0
			case s.Status == StatusFailed:
				return 1
			}
			return 2
		}
		sort.SliceStable(cr.Scenarios, func(i, j int) bool { return rank(cr.Scenarios[i]) < rank(cr.Scenarios[j]) })
		t := tiers[c.Tier]
		t.Total++
		switch cr.Status {
		case StatusPassed:
			t.Passed++
		case StatusFailed:
			t.Failed++
		case StatusSkipped, StatusBlocked:
			t.Skipped++
		default:
			t.NotRun++
		}
		r.Clauses = append(r.Clauses, cr)
	}
	r.Tiers = []TierSummary{*tiers[clauses.Contract], *tiers[clauses.Reference]}
	ct, rt := tiers[clauses.Contract], tiers[clauses.Reference]
	r.Compliant = ct.Total > 0 && ct.Passed == ct.Total
	subset := fmt.Sprintf("subset: %d of %d scenarios", info.Selected, info.Total)
	switch {
	case r.Compliant && rt.Failed == 0:
		r.Verdict, r.VerdictClass = fmt.Sprintf("Compliant: all %d contract clauses passed.", ct.Total), VerdictOK
	case r.Compliant:
		r.Verdict, r.VerdictClass = fmt.Sprintf("Compliant: all %d contract clauses passed; %d of %d reference clauses failed.", ct.Total, rt.Failed, rt.Total), VerdictOK
	case ct.Failed > 0:
		r.Verdict, r.VerdictClass = fmt.Sprintf("Not compliant: %d of %d contract clauses failed.", ct.Failed, ct.Total), VerdictBad
	case info.Subset() && rt.Failed == 0 && r.Scenarios.Failed == 0:
		r.Verdict, r.VerdictClass = fmt.Sprintf("Passed (%s).", subset), VerdictNeutral
	case info.Subset():
		r.Verdict, r.VerdictClass = fmt.Sprintf("Failed (%s): %d scenarios failed, %d reference clauses.", subset, r.Scenarios.Failed, rt.Failed), VerdictBad
	default:
		r.Verdict, r.VerdictClass = fmt.Sprintf("Incomplete: %d of %d contract clauses were not checked in this run.", ct.NotRun+ct.Skipped, ct.Total), VerdictBad
	}
	return r
}

// scenarioList returns every scenario of the report, in feature order.
func (r Report) scenarioList() []ScenarioReport { return r.all }

// WriteHTML renders the report as one self-contained HTML page (inline CSS,
// no scripts, no network).
func WriteHTML(w io.Writer, r Report) error {
	return reportTemplate.Execute(w, r)
}

// inlineMarkdown renders the inline Markdown of clause texts: `code` as
// <code>, **strong** and *emphasis*; everything else escaped.
func inlineMarkdown(s string) template.HTML {
	var b strings.Builder
	parts := strings.Split(s, "`")
	for i, p := range parts {
		if i%2 == 1 && i < len(parts)-1 {
			b.WriteString("<code>" + template.HTMLEscapeString(p) + "</code>")
			continue
		}
		if i%2 == 1 { // an unmatched backtick
			p = "`" + p
		}
		e := template.HTMLEscapeString(p)
		e = mdStrong.ReplaceAllString(e, "<strong>$1</strong>")
		e = mdEm.ReplaceAllString(e, "$1<em>$2</em>")
		b.WriteString(e)
	}
	return template.HTML(b.String())
}

var (
	mdStrong = regexp.MustCompile(`\*\*([^*]+)\*\*`)
	mdEm     = regexp.MustCompile(`(^|[\s(])\*([^*\s][^*]*)\*`)
)

var reportTemplate = template.Must(template.New("report").Funcs(template.FuncMap{
	"lower": strings.ToLower,
	"md":    inlineMarkdown,
	"cls":   func(s string) string { return strings.ReplaceAll(s, " ", "-") },
	"rerun": func(info RunInfo, tags string) string { return info.RerunCommand(tags) },
	// rerunClause runs a clause's scenarios again, whatever list this run
	// took.
	"rerunClause": func(info RunInfo, tags string) string {
		info.RerunFrom = ""
		return info.RerunCommand(tags)
	},
	"dur":           func(d time.Duration) string { return d.Round(time.Millisecond).String() },
	"failedClauses": where(func(c ClauseReport) bool { return c.Status == StatusFailed }),
	"passedOnly":    where(func(s ScenarioReport) bool { return s.Status == StatusPassed }),
	"notPassed":     where(func(s ScenarioReport) bool { return s.Status != StatusPassed }),
	"runClauses":    where(func(c ClauseReport) bool { return c.Status != StatusNotRun }),
	"notRunClauses": where(func(c ClauseReport) bool { return c.Status == StatusNotRun }),
	// rerunTags selects a failed scenario's clause again: the clause its
	// failing step checks, else the scenarios tagged with all its clauses.
	"rerunTags": func(s ScenarioReport) string {
		if s.Detail != nil && s.Detail.Clause != "" {
			return "@" + s.Detail.Clause
		}
		if len(s.Clauses) == 0 {
			return ""
		}
		return "@" + strings.Join(s.Clauses, " && @")
	},
}).Parse(reportHTML))

//go:embed report.html.tmpl
var reportHTML string

// where is a template function keeping the reports keep accepts, in order.
func where[R any](keep func(R) bool) func([]R) []R {
	return func(rs []R) []R {
		var out []R
		for _, r := range rs {
			if keep(r) {
				out = append(out, r)
			}
		}
		return out
	}
}
