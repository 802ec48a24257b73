package features

import (
	"io"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"testing"
	"testing/fstest"
	"time"

	"github.com/cucumber/godog"
)

// expectedOf returns the expected length of every scenario of the suite by
// "file.feature:line" (an outline's longest row).
func expectedOf(t *testing.T, tags string, timing Timing) map[string]time.Duration {
	t.Helper()
	feats, err := godog.TestSuite{Options: &godog.Options{Tags: tags, FS: Files, Paths: []string{"."}}}.RetrieveFeatures()
	if err != nil {
		t.Fatal(err)
	}
	out := map[string]time.Duration{}
	for _, f := range feats {
		for _, p := range f.Pickles {
			k := f.Uri + ":" + strconv.FormatInt(f.FindScenario(p.AstNodeIds[0]).Location.Line, 10)
			out[k] = max(out[k], expectedLength(p.Steps, timing))
		}
	}
	return out
}

func TestScheduleRunsEveryScenarioOnceLongestFirst(t *testing.T) {
	timing := DefaultTiming
	want := expectedOf(t, "", timing)
	got, err := scheduledPaths(Files, "", nil, timing, 7)
	if err != nil {
		t.Fatal(err)
	}
	if len(got) != len(want) {
		t.Fatalf("got %d paths, want one per scenario or outline, %d", len(got), len(want))
	}
	seen := map[string]bool{}
	for i, p := range got {
		if _, ok := want[p]; !ok || seen[p] {
			t.Fatalf("path %d, %q: not a scenario of the suite, or given twice", i, p)
		}
		seen[p] = true
		if i > 0 && want[p]/scheduleBucket > want[got[i-1]]/scheduleBucket {
			t.Errorf("%s (expected %s) runs after the shorter %s (expected %s)", p, want[p], got[i-1], want[got[i-1]])
		}
	}
	// The same paths select the same scenarios as the whole suite.
	n, err := countSelected(Files, "", got...)
	if err != nil {
		t.Fatal(err)
	}
	all, _ := countSelected(Files, "")
	if n != all {
		t.Errorf("the scheduled paths select %d scenarios, the suite has %d", n, all)
	}
}

func TestScheduleOrderFollowsTheSeedWithinABucket(t *testing.T) {
	a, _ := scheduledPaths(Files, "", nil, DefaultTiming, 1)
	b, _ := scheduledPaths(Files, "", nil, DefaultTiming, 1)
	c, _ := scheduledPaths(Files, "", nil, DefaultTiming, 2)
	if !slices.Equal(a, b) {
		t.Error("the same seed gave two orders")
	}
	if slices.Equal(a, c) {
		t.Error("two seeds gave the same order of the short scenarios")
	}
}

func TestScheduleKeepsTagsAndPaths(t *testing.T) {
	got, err := scheduledPaths(Files, "@HOOK-REF-2", []string{"delete_hooks.feature", "auth.feature:66"}, DefaultTiming, 1)
	if err != nil {
		t.Fatal(err)
	}
	want := []string{"delete_hooks.feature:62", "delete_hooks.feature:53"}
	if !slices.Equal(got, want) {
		t.Errorf("got %v, want the two @HOOK-REF-2 scenarios of delete_hooks.feature, the longer first: %v", got, want)
	}
}

func TestExpectedLengthCountsTheContractsWindows(t *testing.T) {
	timing := DefaultTiming
	b := contractBounds{timing}
	exp := expectedOf(t, "", timing)
	for _, c := range []struct {
		path string
		why  string
		min  time.Duration
	}{
		// The delete hook fails for ever: the window is HOOK-ERR's.
		{"delete_hooks.feature:62", "3 × HOOK-ERR's bound", 3 * b.retryAfterFailure()},
		// Acknowledged at last: HOOK-202's.
		{"delete_hooks.feature:24", "3 × HOOK-202's bound", 3 * b.repeat202()},
		{"delete_hooks.feature:41", "3 × HOOK-UPD-1's bound with a hook in flight", 3 * b.firstHook(true)},
		{"retry_loop_202.feature:158", "4 backed-off retries", 15 * timing.Retry},
	} {
		if exp[c.path] < c.min {
			t.Errorf("%s: expected %s, want at least %s (%s)", c.path, exp[c.path], c.min, c.why)
		}
	}
	if d := exp["delete_hooks.feature:24"]; d >= 3*b.retryAfterFailure() {
		t.Errorf("delete_hooks.feature:24 ends with a 200: expected %s, want less than HOOK-ERR's window", d)
	}
}

func TestMergeCucumberJSONGivesOneFeaturePerFile(t *testing.T) {
	in := `[
 {"uri": "b.feature:9", "id": "b", "keyword": "Feature", "name": "B", "description": "", "line": 1,
  "elements": [{"id": "b;two", "name": "two", "line": 9, "type": "scenario", "steps": [{"name": "s", "line": 10, "result": {"status": "passed", "duration": 1234567890123}}]}]},
 {"uri": "a.feature:3", "id": "a", "keyword": "Feature", "name": "A", "description": "d", "line": 1, "tags": [{"name": "@x", "line": 1}],
  "elements": [{"id": "a;one", "name": "one", "line": 3, "type": "scenario"}]},
 {"uri": "b.feature:4", "id": "b", "keyword": "Feature", "name": "B", "description": "", "line": 1,
  "elements": [{"id": "b;one", "name": "one", "line": 4, "type": "scenario"}]}
]`
	path := filepath.Join(t.TempDir(), "cucumber.json")
	if err := os.WriteFile(path, []byte(in), 0o644); err != nil {
		t.Fatal(err)
	}
	if err := mergeCucumberJSON(path); err != nil {
		t.Fatal(err)
	}
	b, _ := os.ReadFile(path)
	feats, err := ReadCucumberJSON(strings.NewReader(string(b)))
	if err != nil {
		t.Fatal(err)
	}
	var got []string
	for _, f := range feats {
		s := f.URI + ":"
		for _, el := range f.Elements {
			s += " " + el.Name
		}
		got = append(got, s)
	}
	want := []string{"a.feature: one", "b.feature: one two"}
	if !slices.Equal(got, want) {
		t.Errorf("got features %q, want %q", got, want)
	}
	if d := feats[1].Elements[1].Steps[0].Result.Duration; d != 1234567890123 {
		t.Errorf("a step's duration became %d, want 1234567890123 unchanged", d)
	}
	if !strings.Contains(string(b), `"tags": [`) || !strings.Contains(string(b), `"description": "d"`) {
		t.Errorf("the feature's other fields were not kept:\n%s", b)
	}
}

func TestARunReportsItsScheduledScenariosAsOneFeaturePerFile(t *testing.T) {
	dir := t.TempDir()
	if _, err := Run(testCtx(t), Config{Target: pingTarget(t), Features: twoScenarios, ReportDir: dir, Output: io.Discard, Concurrency: 2}); err != nil {
		t.Fatal(err)
	}
	feats := readCucumber(t, filepath.Join(dir, "cucumber.json"))
	if len(feats) != 1 || feats[0].URI != "x.feature" || len(feats[0].Elements) != 2 ||
		feats[0].Elements[0].Line != 6 || feats[0].Elements[1].Line != 11 {
		t.Errorf("got %+v, want one feature x.feature with its scenarios of lines 6 and 11, in that order", feats)
	}
	junit, _ := os.ReadFile(filepath.Join(dir, "junit.xml"))
	if n := strings.Count(string(junit), "<testsuite "); n != 1 {
		t.Errorf("junit.xml has %d testsuites, want 1 for the one feature file", n)
	}
}

func TestScheduleRefusesAScenarioWithoutSteps(t *testing.T) {
	fsys := fstest.MapFS{"x.feature": {Data: []byte("Feature: x\n\n  @AUTH-1 @contract\n  Scenario: empty\n")}}
	if _, err := scheduledPaths(fsys, "", nil, DefaultTiming, 1); err == nil || !strings.Contains(err.Error(), "x.feature:4") {
		t.Errorf("got %v, want an error naming x.feature:4, a scenario without steps", err)
	}
}
