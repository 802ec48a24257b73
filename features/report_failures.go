package features

import (
	"io/fs"
	"regexp"
	"sort"
	"strings"
)

// What a failing step checked and said, as the report shows it: the clause
// a step checks, the parts of a failure message, keys redacted.

// Sources gives the text of a feature file by its URI, for the clause
// annotations of steps ("# checks: ID"); nil reads none.
type Sources func(uri string) []byte

// FeatureSources reads feature files from fsys.
func FeatureSources(fsys fs.FS) Sources {
	return func(uri string) []byte {
		b, err := fs.ReadFile(fsys, fileURI(uri))
		if err != nil {
			return nil
		}
		return b
	}
}

// checksComment is a step's clause annotation in a feature file: it names
// the clause of the steps after it, up to the next annotation, within one
// scenario; "# checks: all" says the steps after it check all the
// scenario's clauses at once.
var checksComment = regexp.MustCompile(`^\s*#\s*checks:\s*([A-Z][A-Z0-9-]*-[A-Z0-9-]*[A-Z0-9]|all)\s*$`)

// annotatedClause returns the clause named by the last "# checks:" comment
// between a scenario's line and its step's line, or "".
func annotatedClause(src []byte, scenarioLine, stepLine int) string {
	if src == nil || stepLine <= scenarioLine {
		return ""
	}
	lines := strings.Split(string(src), "\n")
	id := ""
	for n := scenarioLine + 1; n < stepLine && n-1 < len(lines); n++ {
		if m := checksComment.FindStringSubmatch(lines[n-1]); m != nil {
			id = m[1]
		}
	}
	return id
}

// clauseOfStep tells which of a scenario's clauses its failing step
// checks: the step's "# checks:" annotation in the feature file, else the
// one clause the failure's text names, else the scenario's only clause.
func clauseOfStep(ids []string, src []byte, scenarioLine, stepLine int, msg string) (string, string) {
	if len(ids) == 0 {
		return "", ""
	}
	a := annotatedClause(src, scenarioLine, stepLine)
	if a != "" && a != "all" {
		for _, id := range ids {
			if id == a {
				return id, "the step's annotation in the feature file"
			}
		}
	}
	if len(ids) == 1 {
		return ids[0], "the scenario's only clause"
	}
	var named []string
	for _, id := range ids {
		if regexp.MustCompile(`(^|[^A-Z0-9-])` + regexp.QuoteMeta(id) + `($|[^A-Z0-9-])`).MatchString(msg) {
			named = append(named, id)
		}
	}
	if len(named) == 1 {
		return named[0], "the failure names it"
	}
	return "", ""
}

// failureSection starts a labelled section of an httpexpect failure.
var failureSection = regexp.MustCompile(`^([a-z][a-z ]{2,30}):\s*(.*)$`)

// splitFailure splits a step's error into parts (one per failed
// assertion, when a step made several), each a summary and labelled
// sections ("request:", "response:", "assertion:", "expected value:", …).
func splitFailure(msg string) []FailurePart {
	var parts []FailurePart
	cur := &FailurePart{}
	var summary []string
	flush := func() {
		cur.Summary = strings.TrimSpace(strings.Join(summary, "\n"))
		for i := range cur.Sections {
			cur.Sections[i].Text = strings.TrimRight(cur.Sections[i].Text, "\n ")
		}
		// The bodies follow the request and the answer they belong to.
		rank := map[string]int{"request": 0, "request body": 1, "response": 2, "response body": 3}
		at := func(l string) int {
			if r, ok := rank[l]; ok {
				return r
			}
			return 4
		}
		sort.SliceStable(cur.Sections, func(i, j int) bool { return at(cur.Sections[i].Label) < at(cur.Sections[j].Label) })
		if cur.Summary != "" || len(cur.Sections) > 0 {
			parts = append(parts, *cur)
		}
		cur, summary = &FailurePart{}, nil
	}
	for _, line := range strings.Split(strings.ReplaceAll(msg, "\r\n", "\n"), "\n") {
		if m := failureSection.FindStringSubmatch(line); m != nil && knownSection[m[1]] {
			cur.Sections = append(cur.Sections, FailureSection{Label: m[1], Text: m[2]})
			continue
		}
		if len(cur.Sections) == 0 {
			summary = append(summary, line)
			continue
		}
		sec := &cur.Sections[len(cur.Sections)-1]
		if line != "" && !strings.HasPrefix(line, " ") && !strings.HasPrefix(line, "\t") {
			// Unindented text after the sections: the next assertion's
			// failure.
			flush()
			summary = append(summary, line)
			continue
		}
		if sec.Text == "" {
			sec.Text = strings.TrimPrefix(line, "  ")
		} else {
			sec.Text += "\n" + strings.TrimPrefix(line, "  ")
		}
	}
	flush()
	return parts
}

var knownSection = map[string]bool{
	"request": true, "request body": true, "response": true, "response body": true,
	"assertion": true, "expected value": true, "actual value": true, "expected": true,
	"actual": true, "errors": true, "path": true, "diff": true, "reference": true,
	"expected type": true, "actual type": true, "expected range": true, "expected element": true,
	"expected key": true, "expected keys": true, "expected values": true, "expected value type": true,
	"expected schema": true, "expected subset": true, "unexpected value": true, "property": true,
}

// redactions hide keys and tokens in what the report shows.
var redactions = []struct {
	re   *regexp.Regexp
	with string
}{
	{regexp.MustCompile(`(?i)(authorization:\s*(?:bearer|apikey)\s+)[^\s"']+`), "${1}<redacted>"},
	{regexp.MustCompile(`(?i)([?&]apikey=)[^&\s"']+`), "${1}<redacted>"},
	{regexp.MustCompile(`(?i)\b([A-Z0-9_]*(?:KEY|TOKEN|SECRET|PASSWORD)[A-Z0-9_]*=)('[^']*'|"[^"]*"|[^\s;&|]+)`), "${1}<redacted>"},
	{regexp.MustCompile(`(?i)(--[a-z0-9-]*(?:key|token|secret|password)[= ])('[^']*'|"[^"]*"|[^\s;&|]+)`), "${1}<redacted>"},
}

// redactText replaces keys and tokens in s (Authorization headers,
// ?apikey=, *_KEY=… and *TOKEN=… assignments, --api-key … flags) with
// "<redacted>".
func redactText(s string) string {
	for _, r := range redactions {
		s = r.re.ReplaceAllString(s, r.with)
	}
	return s
}
