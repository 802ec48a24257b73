package features

import (
	"bytes"
	"encoding/xml"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/depharness/depharness/features/clauses"
)

func fixtureClauses() []clauses.Clause {
	return []clauses.Clause{
		{ID: "AUTH-1", Tier: clauses.Contract, Area: "General", Text: "Every route needs the API key."},
		{ID: "AUTH-3", Tier: clauses.Contract, Area: "General", Text: "GET /ping answers 200 OK without a key."},
		{ID: "ERR-1", Tier: clauses.Contract, Area: "General", Text: "503, never 500."},
		{ID: "APP-ASSET-4", Tier: clauses.Reference, Area: "Dependent applications", Text: "Streams & caches."},
	}
}

func readFixture(t *testing.T) []CucumberFeature {
	t.Helper()
	return readCucumber(t, "testdata/cucumber.json")
}

// readCucumber reads the cucumber JSON report at path.
func readCucumber(t *testing.T, path string) []CucumberFeature {
	t.Helper()
	f, err := os.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	feats, err := ReadCucumberJSON(f)
	if err != nil {
		t.Fatal(err)
	}
	return feats
}

func TestBuildReportGroupsScenarioResultsByClause(t *testing.T) {
	r := BuildReport(readFixture(t), fixtureClauses(), time.Date(2026, 1, 2, 3, 4, 5, 0, time.UTC))
	if got := r.Scenarios; got.Total != 5 || got.Passed != 2 || got.Failed != 2 || got.Skipped != 1 {
		t.Errorf("got scenario counts %+v, want 5 total, 2 passed, 2 failed, 1 skipped", got)
	}
	want := map[string]string{
		"AUTH-1":      StatusFailed, // one of its two scenarios failed
		"AUTH-3":      StatusPassed,
		"ERR-1":       StatusNotRun,
		"APP-ASSET-4": StatusFailed, // an undefined step is a failure
	}
	for _, c := range r.Clauses {
		if c.Status != want[c.ID] {
			t.Errorf("clause %s: got %s, want %s", c.ID, c.Status, want[c.ID])
		}
	}
	auth1 := r.Clauses[0]
	if len(auth1.Scenarios) != 2 || auth1.Scenarios[0].Status != StatusFailed {
		t.Fatalf("AUTH-1: got scenarios %+v, want 2, the failed one first", auth1.Scenarios)
	}
	if f := auth1.Scenarios[0].Failure; !strings.Contains(f, "the answer is 401 (line 22)") || !strings.Contains(f, "request: GET /v1/devices") {
		t.Errorf("AUTH-1 failure: got %q, want the failing step and the request", f)
	}
	if len(r.Untagged) != 1 || r.Untagged[0].Name != "Untagged" {
		t.Errorf("got untagged %+v, want the one scenario without a clause", r.Untagged)
	}
	if r.Compliant {
		t.Error("got compliant, want not: AUTH-1 failed")
	}
	if !strings.HasPrefix(r.Verdict, "Not compliant: 1 of 3 contract clauses failed") {
		t.Errorf("got verdict %q", r.Verdict)
	}
	if r.Tiers[0].Tier != clauses.Contract || r.Tiers[0].Passed != 1 || r.Tiers[0].Failed != 1 || r.Tiers[0].NotRun != 1 {
		t.Errorf("got contract tier %+v, want 1 passed, 1 failed, 1 not run", r.Tiers[0])
	}
}

func TestBuildReportIsCompliantWhenEveryContractClausePassed(t *testing.T) {
	feats := []CucumberFeature{{URI: "a.feature", Elements: []CucumberElement{{
		Name: "ok", Type: "scenario", Tags: []CucumberTag{{"@A-1"}, {"@contract"}},
		Steps: []CucumberStep{{Name: "s"}},
	}}}}
	feats[0].Elements[0].Steps[0].Result.Status = "passed"
	r := BuildReport(feats, []clauses.Clause{
		{ID: "A-1", Tier: clauses.Contract, Area: "a", Text: "t"},
		{ID: "R-1", Tier: clauses.Reference, Area: "a", Text: "t"},
	}, time.Now())
	if !r.Compliant {
		t.Errorf("got not compliant (%s), want compliant: the only contract clause passed", r.Verdict)
	}
}

func TestWriteHTMLIsSelfContainedAndEscaped(t *testing.T) {
	r := BuildReport(readFixture(t), fixtureClauses(), time.Date(2026, 1, 2, 3, 4, 5, 0, time.UTC))
	var b bytes.Buffer
	if err := WriteHTML(&b, r); err != nil {
		t.Fatal(err)
	}
	html := b.String()
	for _, want := range []string{
		"<style>", "Not compliant: 1 of 3 contract clauses failed",
		`id="AUTH-1"`, "Every route needs the API key.", "GET /v1/devices HTTP/1.1",
		"no scenario ran", "Streams &amp; caches.", "&lt;script&gt;alert(1)&lt;/script&gt;", "<dt>request</dt>",
		`Failed clauses: <a href="#AUTH-1">AUTH-1</a>, <a href="#APP-ASSET-4">APP-ASSET-4</a>`,
	} {
		if !strings.Contains(html, want) {
			t.Errorf("the HTML lacks %q", want)
		}
	}
	for _, bad := range []string{"<script>", "<link", "http://", "https://", "src="} {
		if strings.Contains(html, bad) {
			t.Errorf("the HTML contains %q; want a self-contained page with nothing fetched", bad)
		}
	}
}

func TestWriteHTMLReportFilesReadsTheCucumberJSONOfADirectory(t *testing.T) {
	dir := t.TempDir()
	b, err := os.ReadFile("testdata/cucumber.json")
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(dir, "cucumber.json"), b, 0o644); err != nil {
		t.Fatal(err)
	}
	if err := WriteHTMLReportFiles(dir); err != nil {
		t.Fatal(err)
	}
	html, err := os.ReadFile(filepath.Join(dir, "report.html"))
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Contains(html, []byte(`id="HOOK-202"`)) {
		t.Error("report.html lacks the row of HOOK-202: want every clause of the contract")
	}
}

// twoClauseFeature is a scenario of two clauses whose failing step is
// annotated with the one it checks, and one whose failing step is not.
var twoClauseSource = []byte(`Feature: Logs
  @DEV-LOG-1 @CLOUD-LOGS @contract
  Scenario: annotated
    Given the supervisor is running
    # checks: DEV-LOG-1
    When the gateway app sends a log line
    Then the answer is 202
    # checks: CLOUD-LOGS
    Then the cloud eventually received it

  @DEV-LOG-1 @CLOUD-LOGS @contract
  Scenario: not annotated
    Given the supervisor is running
    Then the answer is 202
`)

func twoClauseFeatures(failLine int, msg string) []CucumberFeature {
	step := func(kw, name string, line int, status, err string) CucumberStep {
		s := CucumberStep{Keyword: kw, Name: name, Line: line}
		s.Result.Status, s.Result.Error, s.Result.Duration = status, err, int64(time.Millisecond)
		return s
	}
	tags := []CucumberTag{{"@DEV-LOG-1"}, {"@CLOUD-LOGS"}, {"@contract"}}
	return []CucumberFeature{{URI: "logs.feature", Name: "Logs", Elements: []CucumberElement{
		{Name: "annotated", Line: 3, Type: "scenario", Tags: tags, Steps: []CucumberStep{
			step("Given ", "the supervisor is running", 4, "passed", ""),
			step("When ", "the gateway app sends a log line", 6, "passed", ""),
			step("Then ", "the answer is 202", 7, map[bool]string{true: "failed", false: "passed"}[failLine == 7], msg),
			step("Then ", "the cloud eventually received it", 9, map[bool]string{true: "failed", false: "skipped"}[failLine == 9], msg),
		}},
		{Name: "not annotated", Line: 12, Type: "scenario", Tags: tags, Steps: []CucumberStep{
			step("Given ", "the supervisor is running", 13, "passed", ""),
			step("Then ", "the answer is 202", 14, "failed", msg),
		}},
	}}}
}

var logClauses = []clauses.Clause{
	{ID: "DEV-LOG-1", Tier: clauses.Contract, Area: "Dependent devices", Text: "`POST /v1/devices/:uuid/logs` → `202`."},
	{ID: "CLOUD-LOGS", Tier: clauses.Contract, Area: "Cloud protocol", Text: "Lines reach the cloud."},
}

const httpFailure = "unexpected http status value\n\nrequest: POST /v1/devices/abc/logs?apikey=s3cr3t HTTP/1.1\r\n  Authorization: Bearer 0123abcd\r\n\nresponse: HTTP/1.1 200 OK 1ms\n  Content-Length: 0\n\nassertion:\n  Request(\"POST\").Expect().Status()\n\nexpected value:\n  \"202 Accepted\"\n\nactual value:\n  \"200 OK\"\n\nrequest body:\n  {\"message\": \"hi\"}"

func TestTheFailingStepsClauseComesFromItsAnnotation(t *testing.T) {
	src := func(string) []byte { return twoClauseSource }
	r := BuildRunReport(twoClauseFeatures(7, httpFailure), logClauses, time.Now(), RunInfo{}, src, nil)
	f := r.Failures[0]
	if f.Detail == nil || f.Detail.Clause != "DEV-LOG-1" || !strings.Contains(f.Detail.ClauseHow, "annotation") {
		t.Fatalf("got %+v, want the failing step attributed to DEV-LOG-1 by its annotation", f.Detail)
	}
	status := map[string]string{}
	for _, c := range r.Clauses {
		status[c.ID] = c.Status
	}
	// CLOUD-LOGS's own step of "annotated" never ran, but "not annotated"
	// fails at a step that could check either: both clauses fail.
	if status["DEV-LOG-1"] != StatusFailed || status["CLOUD-LOGS"] != StatusFailed {
		t.Errorf("got %v, want both failed (one scenario cannot be told apart)", status)
	}
	if d := r.Failures[1].Detail; d.Clause != "" {
		t.Errorf("not annotated: got clause %q, want none (two candidates)", d.Clause)
	}

	// With only the annotated scenario, the other clause is not reached.
	feats := twoClauseFeatures(9, "the cloud never received it")
	feats[0].Elements = feats[0].Elements[:1]
	r = BuildRunReport(feats, logClauses, time.Now(), RunInfo{}, src, nil)
	for _, c := range r.Clauses {
		want := map[string]string{"DEV-LOG-1": StatusBlocked, "CLOUD-LOGS": StatusFailed}[c.ID]
		if c.Status != want {
			t.Errorf("%s: got %s, want %s", c.ID, c.Status, want)
		}
	}
	var b bytes.Buffer
	if err := WriteHTML(&b, r); err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(b.String(), `failed at a step checking <a href="#CLOUD-LOGS">CLOUD-LOGS</a>`) {
		t.Error("the HTML does not say which clause the failing step checked")
	}
}

func TestFeatureFileAnnotationsNameAClauseOfTheirScenario(t *testing.T) {
	paths, err := fs.Glob(Files, "*.feature")
	if err != nil {
		t.Fatal(err)
	}
	for _, p := range paths {
		b, _ := fs.ReadFile(Files, p)
		var tags []string
		for i, line := range strings.Split(string(b), "\n") {
			trimmed := strings.TrimSpace(line)
			if strings.HasPrefix(trimmed, "@") {
				tags = strings.Fields(trimmed)
				continue
			}
			if strings.HasPrefix(strings.TrimSpace(strings.TrimPrefix(trimmed, "#")), "checks:") {
				m := checksComment.FindStringSubmatch(line)
				if m == nil {
					t.Errorf("%s:%d: %q is not \"# checks: CLAUSE-ID\"", p, i+1, trimmed)
					continue
				}
				found := m[1] == "all"
				for _, tg := range tags {
					found = found || tg == "@"+m[1]
				}
				if !found {
					t.Errorf("%s:%d: %s is not a tag of its scenario (%v)", p, i+1, m[1], tags)
				}
			}
		}
	}
}

func TestASubsetRunThatPassesIsNeutral(t *testing.T) {
	feats := twoClauseFeatures(0, "")
	feats[0].Elements = feats[0].Elements[:1]
	r := BuildRunReport(feats, append(logClauses, clauses.Clause{ID: "AUTH-1", Tier: clauses.Contract, Area: "General", Text: "t"}),
		time.Now(), RunInfo{Selected: 1, Total: 180}, nil, nil)
	if r.VerdictClass != VerdictNeutral || r.Verdict != "Passed (subset: 1 of 180 scenarios)." {
		t.Errorf("got %s %q, want a neutral \"Passed (subset: 1 of 180 scenarios).\"", r.VerdictClass, r.Verdict)
	}
	r = BuildRunReport(feats, append(logClauses, clauses.Clause{ID: "AUTH-1", Tier: clauses.Contract, Area: "General", Text: "t"}),
		time.Now(), RunInfo{Selected: 180, Total: 180}, nil, nil)
	if r.VerdictClass != VerdictBad || !strings.HasPrefix(r.Verdict, "Incomplete") {
		t.Errorf("a whole run with clauses unchecked: got %s %q, want Incomplete", r.VerdictClass, r.Verdict)
	}
}

func TestTheHTMLHeaderSaysWhatRanAndHowToRunItAgainWithoutKeys(t *testing.T) {
	info := RunInfo{Seed: 42, Tags: "@DEV-LOG-1", Version: "v9.9.9", Selected: 2, Total: 180,
		Command: "DEVICE_API_KEY=k3y-one MY_TOKEN='tok two' exec ./my-supervisor --api-key k3y-three"}
	logs := map[string][]string{"not-annotated": {"logs/002-not-annotated.log"}}
	r := BuildRunReport(twoClauseFeatures(7, httpFailure), append(logClauses, clauses.Clause{ID: "AUTH-1", Tier: clauses.Contract, Area: "General", Text: "t"}), time.Now(), info, nil, logs)
	r.ContractLink = "contract.md"
	var b bytes.Buffer
	if err := WriteHTML(&b, r); err != nil {
		t.Fatal(err)
	}
	html := b.String()
	for _, want := range []string{
		"<code>42</code>", "v9.9.9", "<code>@DEV-LOG-1</code>", "2 run of the suite",
		"DEVICE_API_KEY=&lt;redacted&gt; MY_TOKEN=&lt;redacted&gt; exec ./my-supervisor --api-key &lt;redacted&gt;",
		"depharness verify --target-cmd &#39;DEVICE_API_KEY=&lt;redacted&gt;", "--tags &#39;@DEV-LOG-1&#39; --seed 42",
		"<code>POST /v1/devices/:uuid/logs</code> → <code>202</code>",
		`<a href="logs/002-not-annotated.log">`, `<a href="contract.md">`,
		"<dt>request body</dt>", "{&#34;message&#34;: &#34;hi&#34;}", "apikey=&lt;redacted&gt;", "Bearer &lt;redacted&gt;",
		"<details>", "Not compliant",
	} {
		if !strings.Contains(html, want) {
			t.Errorf("the HTML lacks %q", want)
		}
	}
	for _, bad := range []string{"k3y-one", "tok two", "k3y-three", "s3cr3t", "0123abcd", "`"} {
		if strings.Contains(html, bad) {
			t.Errorf("the HTML shows %q", bad)
		}
	}
	// The request's sections are in reading order: request, its body,
	// the answer.
	if i, j, k := strings.Index(html, "<dt>request</dt>"), strings.Index(html, "<dt>request body</dt>"), strings.Index(html, "<dt>response</dt>"); !(i < j && j < k) {
		t.Errorf("sections out of order: request %d, request body %d, response %d", i, j, k)
	}
}

func TestJUnitHasClassnamesClausePropertiesAndTheFailureInTheBody(t *testing.T) {
	r := BuildRunReport(twoClauseFeatures(7, httpFailure), logClauses, time.Now(), RunInfo{}, func(string) []byte { return twoClauseSource }, nil)
	var b bytes.Buffer
	if err := WriteJUnit(&b, r); err != nil {
		t.Fatal(err)
	}
	var doc struct {
		Suites []struct {
			Name  string `xml:"name,attr"`
			Cases []struct {
				Name       string `xml:"name,attr"`
				Classname  string `xml:"classname,attr"`
				Properties []struct {
					Name  string `xml:"name,attr"`
					Value string `xml:"value,attr"`
				} `xml:"properties>property"`
				Failure *struct {
					Message string `xml:"message,attr"`
					Body    string `xml:",chardata"`
				} `xml:"failure"`
			} `xml:"testcase"`
		} `xml:"testsuite"`
	}
	if err := xml.Unmarshal(b.Bytes(), &doc); err != nil {
		t.Fatalf("%v\n%s", err, b.String())
	}
	if len(doc.Suites) != 1 || len(doc.Suites[0].Cases) != 2 {
		t.Fatalf("got %+v, want one suite of two cases", doc)
	}
	c := doc.Suites[0].Cases[0]
	if c.Classname != "Logs" {
		t.Errorf("got classname %q, want the feature", c.Classname)
	}
	var props []string
	for _, p := range c.Properties {
		props = append(props, p.Name+"="+p.Value)
	}
	if got := strings.Join(props, " "); got != "clause=DEV-LOG-1 clause=CLOUD-LOGS tier=contract failed-clause=DEV-LOG-1" {
		t.Errorf("got properties %q", got)
	}
	if c.Failure == nil || c.Failure.Message != "Then the answer is 202: unexpected http status value" ||
		!strings.Contains(c.Failure.Body, "expected value:") || !strings.Contains(c.Failure.Body, "Bearer <redacted>") || strings.Contains(c.Failure.Body, "0123abcd") {
		t.Errorf("got failure %+v, want a short message and the whole redacted text in the body", c.Failure)
	}
}

func TestChecksAllLeavesTheStepToEveryClauseOfItsScenario(t *testing.T) {
	src := []byte("Feature: f\n  Scenario: s\n    # checks: A-1\n    Then one\n    # checks: all\n    Then both\n")
	ids := []string{"A-1", "B-1"}
	if got, _ := clauseOfStep(ids, src, 2, 4, ""); got != "A-1" {
		t.Errorf("step under A-1: got %q", got)
	}
	if got, _ := clauseOfStep(ids, src, 2, 6, ""); got != "" {
		t.Errorf("step under all: got %q, want none", got)
	}
	if got, how := clauseOfStep(ids, src, 2, 6, "B-1 broken"); got != "B-1" || !strings.Contains(how, "names") {
		t.Errorf("step under all whose failure names B-1: got %q (%s)", got, how)
	}
}
