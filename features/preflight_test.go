package features

import (
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"testing/fstest"
	"time"
)

func TestCommandTargetStartErrorCarriesTheExitStatusAndTheLastOutputLines(t *testing.T) {
	cmd := `for i in $(seq 1 40); do echo "noise $i"; done; echo 'config: HOOK_TIMEOUT="soon" is not a duration' >&2; exit 7`
	tg := NewCommandTarget(CommandOptions{Command: cmd, Ready: 10 * time.Second}, nil)
	err := tg.Start(testCtx(t), testEnv(t))
	var se *StartError
	if !errors.As(err, &se) {
		t.Fatalf("got %v, want a *StartError", err)
	}
	if se.Exit != "exit status 7" {
		t.Errorf("got exit %q, want \"exit status 7\"", se.Exit)
	}
	if len(se.Output) != startErrorLines || se.Output[len(se.Output)-1] != `config: HOOK_TIMEOUT="soon" is not a duration` {
		t.Errorf("got output %q, want the last %d lines ending with the cause", se.Output, startErrorLines)
	}
	msg := err.Error()
	for _, want := range []string{"exited (exit status 7) before GET /ping answered 200", "is not a duration", "noise 40"} {
		if !strings.Contains(msg, want) {
			t.Errorf("the error lacks %q:\n%s", want, msg)
		}
	}
	if strings.Contains(msg, "noise 1\n") || strings.Contains(msg, "noise 20\n") {
		t.Errorf("the error carries more than the last lines:\n%s", msg)
	}
}

func TestCommandTargetStartErrorOfACommandNotFound(t *testing.T) {
	tg := NewCommandTarget(CommandOptions{Command: "exec /nonexistent/my-supervisor", Ready: 10 * time.Second}, nil)
	err := tg.Start(testCtx(t), testEnv(t))
	if err == nil || !strings.Contains(err.Error(), "exit status 127") || !strings.Contains(err.Error(), "/nonexistent/my-supervisor: not found") {
		t.Fatalf("got %v, want the shell's status 127 and its \"not found\"", err)
	}
}

func TestTailWriterKeepsTheLastLinesEachBounded(t *testing.T) {
	w := newTailWriter(3, 10)
	fmt.Fprint(w, "one\r\ntwo\n\n")
	fmt.Fprint(w, "three\nfour is a long line, cut\nfi")
	fmt.Fprint(w, "ve")
	got := w.lines()
	want := []string{"three", "four is a  …", "five"}
	if strings.Join(got, "|") != strings.Join(want, "|") {
		t.Errorf("got %q, want %q", got, want)
	}
	w.reset()
	if len(w.lines()) != 0 {
		t.Error("reset kept lines")
	}
}

func TestPreflightSaysOnceWhyTheTargetDoesNotStart(t *testing.T) {
	dir := t.TempDir()
	// Reports of an earlier run are removed; other files are kept.
	for _, f := range []string{"report.html", "junit.xml", "logs/001-old.log", "notes.txt"} {
		if err := os.MkdirAll(filepath.Dir(filepath.Join(dir, f)), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(filepath.Join(dir, f), []byte("old"), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	cfg := Config{Target: CommandTargetFactory("exec /nonexistent/my-supervisor", 10*time.Second), ReportDir: dir}
	err := Preflight(testCtx(t), cfg)
	var pe *PreflightError
	if !errors.As(err, &pe) {
		t.Fatalf("got %v, want a *PreflightError", err)
	}
	text := pe.Explain()
	for _, want := range []string{"did not start, so no scenario was run", "command:  exec /nonexistent/my-supervisor", "exit status 127", "/nonexistent/my-supervisor: not found", filepath.Join(dir, "logs", "000-preflight.log")} {
		if !strings.Contains(text, want) {
			t.Errorf("the explanation lacks %q:\n%s", want, text)
		}
	}
	if b, err := os.ReadFile(pe.Log); err != nil || !strings.Contains(string(b), "not found") {
		t.Errorf("preflight log: %v, %q; want the target's output", err, b)
	}
	for _, f := range []string{"report.html", "junit.xml", "logs/001-old.log"} {
		if _, err := os.Stat(filepath.Join(dir, f)); !errors.Is(err, os.ErrNotExist) {
			t.Errorf("%s of an earlier run is still there (%v)", f, err)
		}
	}
	if _, err := os.Stat(filepath.Join(dir, "notes.txt")); err != nil {
		t.Errorf("a file that is no report was removed: %v", err)
	}
}

func TestPreflightPassesATargetThatStarts(t *testing.T) {
	if err := Preflight(testCtx(t), Config{Target: pingTarget(t)}); err != nil {
		t.Fatal(err)
	}
}

func TestPreflightLeavesATargetThatAnswersPingOtherwiseToTheScenarios(t *testing.T) {
	// A /ping answered 401 breaks AUTH-3: a verdict the scenarios give.
	cfg := Config{Target: func(out io.Writer) Target {
		return NewCommandTarget(CommandOptions{Command: "DEPHARNESS_VIOLATIONS=ping-locked " + pingServerEnv + "=1 " + selfCommand(t), Ready: time.Second}, out)
	}}
	if err := Preflight(testCtx(t), cfg); err != nil {
		t.Errorf("got %v, want no preflight error", err)
	}
}

// threeFailing is a feature whose three scenarios a refuse-everything
// target fails.
var threeFailing = fstest.MapFS{"x.feature": {Data: []byte(`Feature: x
  Background:
    Given the supervisor is running

  @AUTH-1 @contract
  Scenario: one
    When the gateway app calls GET "/v1/devices" with the key in the query
    Then the answer is 200

  @AUTH-1 @contract
  Scenario: two
    When the gateway app calls GET "/v1/devices" with the key in the query
    Then the answer is 200

  @AUTH-1 @contract
  Scenario: three
    When the gateway app calls GET "/v1/devices" with the key in the query
    Then the answer is 200
`)}}

func TestFailFastStopsStartingScenariosAfterTheFirstFailure(t *testing.T) {
	for _, failFast := range []bool{false, true} {
		res, err := Run(testCtx(t), Config{Target: pingTarget(t), Features: threeFailing, Output: io.Discard, Concurrency: 1, FailFast: failFast})
		if err != nil {
			t.Fatal(err)
		}
		want := 3
		if failFast {
			want = 1
		}
		if got := len(res.Failed()); got != want {
			t.Errorf("fail-fast %v: got %d failed scenarios, want %d", failFast, got, want)
		}
	}
}

func TestListScenariosPrintsTheSelectionWithLinesAndTags(t *testing.T) {
	var b strings.Builder
	n, err := ListScenarios(&b, Config{Features: twoScenarios, Tags: "@AUTH-1"})
	if err != nil {
		t.Fatal(err)
	}
	want := "x.feature:6\trefused without a key\t@AUTH-1 @contract\nx.feature:11\taccepted with the key\t@AUTH-1 @contract\n"
	if n != 2 || b.String() != want {
		t.Errorf("got %d:\n%s\nwant 2:\n%s", n, b.String(), want)
	}
	if _, err := ListScenarios(io.Discard, Config{Features: twoScenarios, Tags: "@AUTH-3"}); !errors.Is(err, ErrNoScenarios) {
		t.Errorf("got %v, want ErrNoScenarios", err)
	}
}

func TestEveryRunWritesItsFailedScenariosAndARerunRunsOnlyThose(t *testing.T) {
	dir := t.TempDir()
	if _, err := Run(testCtx(t), Config{Target: pingTarget(t), Features: twoScenarios, ReportDir: dir, Output: io.Discard, Concurrency: 2}); err != nil {
		t.Fatal(err)
	}
	list := filepath.Join(dir, RerunFile)
	b, err := os.ReadFile(list)
	if err != nil || string(b) != "x.feature:11\n" {
		t.Fatalf("rerun list: %v, %q; want the failed scenario's file:line", err, b)
	}
	paths, err := ReadRerunFile(list)
	if err != nil {
		t.Fatal(err)
	}
	res, err := Run(testCtx(t), Config{Target: pingTarget(t), Features: twoScenarios, ReportDir: dir, Output: io.Discard, Paths: paths, RerunFrom: list})
	if err != nil {
		t.Fatal(err)
	}
	if len(res.Scenarios) != 1 || res.Scenarios[0].Name != "accepted with the key" || res.Scenarios[0].URI != "x.feature" ||
		!strings.HasPrefix(res.Scenarios[0].Step, "x.feature:13 ") {
		t.Errorf("got %+v, want the one failed scenario, run again, failing at x.feature:13", res.Scenarios)
	}
	html, _ := os.ReadFile(filepath.Join(dir, "report.html"))
	if !strings.Contains(string(html), "x.feature:11 ") && !strings.Contains(string(html), "x.feature:11 ·") {
		t.Errorf("the rerun's report lacks the scenario at x.feature:11")
	}
	if !strings.Contains(string(html), "--rerun &#39;"+list) {
		t.Errorf("the rerun's report does not rerun with the list")
	}
}

func TestScenarioLineIsTheOutlinesForAnExampleRow(t *testing.T) {
	src := []byte("Feature: f\n\n  Scenario Outline: o\n    Given <x>\n\n    Examples:\n      | x |\n      | a |\n      | b |\n\n  Scenario: s\n    Given y\n")
	for line, want := range map[int]int{8: 3, 9: 3, 11: 11, 3: 3} {
		if got := scenarioLine(src, line); got != want {
			t.Errorf("line %d: got %d, want %d", line, got, want)
		}
	}
}

func TestReadRerunFileRefusesWhatIsNoScenarioLine(t *testing.T) {
	p := filepath.Join(t.TempDir(), "rerun.txt")
	if err := os.WriteFile(p, []byte("# failed\nlogs.feature:13\n\nfaults.feature:38\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	got, err := ReadRerunFile(p)
	if err != nil || strings.Join(got, ",") != "logs.feature:13,faults.feature:38" {
		t.Errorf("got %v, %v", got, err)
	}
	if err := os.WriteFile(p, []byte("logs.feature\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	if _, err := ReadRerunFile(p); err == nil {
		t.Error("a line without :line was taken")
	}
}
