package features

import (
	"bytes"
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
	f, err := os.Open("testdata/cucumber.json")
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
		`id="AUTH-1"`, "Every route needs the API key.", "request: GET /v1/devices HTTP/1.1",
		"no scenario ran", "Streams &amp; caches.", "&lt;script&gt;alert(1)&lt;/script&gt;",
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
