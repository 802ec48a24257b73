package features

import (
	"encoding/json"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"regexp"
	"sort"
	"strings"
	"time"

	"github.com/depharness/depharness/features/clauses"
)

// The report files of a run: cucumber JSON in, HTML, rerun list and logs out.

// ReadCucumberJSON reads a cucumber JSON report.
func ReadCucumberJSON(rd io.Reader) ([]CucumberFeature, error) {
	var feats []CucumberFeature
	if err := json.NewDecoder(rd).Decode(&feats); err != nil {
		return nil, fmt.Errorf("reading cucumber JSON: %w", err)
	}
	return feats, nil
}

// WriteHTMLReportFiles reads dir/cucumber.json and writes dir/report.html
// and dir/junit.xml, with no run information.
func WriteHTMLReportFiles(dir string) error {
	return WriteReportFiles(dir, RunInfo{}, nil)
}

// RerunFile is the name, in a report directory, of the list of the run's
// failed scenarios that verify --rerun takes.
const RerunFile = "rerun.txt"

// RerunList is the failed scenarios of a report as "file.feature:line"
// lines, the line being the scenario's (an outline's, for one of its
// examples), each once, in feature order.
func RerunList(r Report, src Sources) string {
	var b strings.Builder
	seen := map[string]bool{}
	for _, f := range r.Failures {
		line := f.Line
		if src != nil {
			line = scenarioLine(src(f.Feature), f.Line)
		}
		k := fmt.Sprintf("%s:%d", f.Feature, line)
		if !seen[k] {
			seen[k] = true
			b.WriteString(k + "\n")
		}
	}
	return b.String()
}

// scenarioLine is the line of the scenario (or outline) holding line:
// line itself, or the nearest scenario keyword above it.
func scenarioLine(src []byte, line int) int {
	lines := strings.Split(string(src), "\n")
	for n := min(line, len(lines)); n >= 1; n-- {
		t := strings.TrimSpace(lines[n-1])
		for _, kw := range []string{"Scenario:", "Scenario Outline:", "Scenario Template:", "Example:"} {
			if strings.HasPrefix(t, kw) {
				return n
			}
		}
	}
	return line
}

// ReadRerunFile reads a rerun list: "file.feature:line" lines (blank lines
// and # comments skipped).
func ReadRerunFile(path string) ([]string, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return nil, err
	}
	var out []string
	for i, l := range strings.Split(string(b), "\n") {
		l = strings.TrimSpace(l)
		if l == "" || strings.HasPrefix(l, "#") {
			continue
		}
		if !rerunLine.MatchString(l) {
			return nil, fmt.Errorf("%s:%d: %q is not file.feature:line", path, i+1, l)
		}
		out = append(out, l)
	}
	return out, nil
}

var rerunLine = regexp.MustCompile(`^[^\s:]+\.feature:\d+$`)

// WriteReportFiles reads dir/cucumber.json and writes dir/report.html,
// dir/junit.xml, dir/rerun.txt (the failed scenarios, for --rerun) and
// dir/contract.md (the contract the report links to).
// Scenario logs are found in dir/logs by name.
func WriteReportFiles(dir string, info RunInfo, src Sources) error {
	f, err := os.Open(filepath.Join(dir, "cucumber.json"))
	if err != nil {
		return err
	}
	defer f.Close()
	feats, err := ReadCucumberJSON(f)
	if err != nil {
		return err
	}
	contract, err := clauses.ContractMarkdown()
	if err != nil {
		return err
	}
	if err := os.WriteFile(filepath.Join(dir, "contract.md"), contract, 0o644); err != nil {
		return err
	}
	r := BuildRunReport(feats, clauses.All(), time.Now(), info, src, scenarioLogs(dir))
	if err := os.WriteFile(filepath.Join(dir, RerunFile), []byte(RerunList(r, src)), 0o644); err != nil {
		return err
	}
	r.ContractLink = "contract.md"
	if err := writeFile(filepath.Join(dir, "report.html"), func(w io.Writer) error { return WriteHTML(w, r) }); err != nil {
		return err
	}
	return writeFile(filepath.Join(dir, "junit.xml"), func(w io.Writer) error { return WriteJUnit(w, r) })
}

func writeFile(path string, write func(io.Writer) error) error {
	out, err := os.Create(path)
	if err != nil {
		return err
	}
	if err := write(out); err != nil {
		out.Close()
		return err
	}
	return out.Close()
}

// scenarioLogs maps the scenario names of dir/logs/NNN-name.log files to
// their paths relative to dir, in run order. A name is matched by its
// file-name form (the same for names that differ only in punctuation;
// those share the list).
func scenarioLogs(dir string) map[string][]string {
	paths, _ := filepath.Glob(filepath.Join(dir, "logs", "[0-9][0-9][0-9]*-*.log"))
	sort.Strings(paths)
	byFile := map[string][]string{}
	for _, p := range paths {
		base := strings.TrimSuffix(filepath.Base(p), ".log")
		i := strings.IndexByte(base, '-')
		byFile[base[i+1:]] = append(byFile[base[i+1:]], "logs/"+filepath.Base(p))
	}
	return byFile
}

// logName is a scenario name in the form its log file takes.
func logName(name string) string { return strings.Trim(unsafeName.ReplaceAllString(name, "-"), "-") }
