package main

import (
	"context"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/depharness/depharness/internal/testkit"
)

func TestVerifyRefusesATagExpressionThatSelectsNothingWithExitTwo(t *testing.T) {
	for name, c := range map[string]struct {
		env  map[string]string
		args []string
	}{
		"flag":     {nil, []string{"verify", "--tags", "@NO-SUCH-CLAUSE", "--report-dir", t.TempDir()}},
		"variable": {map[string]string{"DEPHARNESS_TAGS": "@NO-SUCH-CLAUSE"}, []string{"verify", "--report-dir", t.TempDir()}},
	} {
		code, _, stderr := run(t, c.env, c.args...)
		if code != 2 || !strings.Contains(stderr, "selects no scenario") {
			t.Errorf("%s: got exit %d, stderr %q; want 2 and a message that nothing is selected", name, code, stderr)
		}
	}
}

func TestVerifyRefusesBadFlagsWithExitTwo(t *testing.T) {
	for _, args := range [][]string{
		{"verify", "--concurrency", "0"},
		{"verify", "--seed", "x"},
		{"verify", "stray"},
	} {
		if code, _, _ := run(t, nil, args...); code != 2 {
			t.Errorf("%v: got exit %d, want 2", args, code)
		}
	}
}

// asMainEnv makes the test binary act as depharness itself, so that
// verify's default target ("exec <this binary> proxy") is the reference
// proxy.
const asMainEnv = "DEPHARNESS_TEST_AS_MAIN"

func TestMain(m *testing.M) {
	testkit.Main(m, asMainEnv, func() int {
		return runMain(context.Background(), &cliEnv{stdout: os.Stdout, stderr: os.Stderr, getenv: os.Getenv}, os.Args[1:])
	})
}

func TestVerifySaysOnceWhyTheTargetDoesNotStartAndRunsNoScenario(t *testing.T) {
	dir := t.TempDir()
	start := time.Now()
	code, stdout, stderr := run(t, nil, "verify", "--target-cmd", "exec /nonexistent/my-supervisor",
		"--report-dir", dir, "--seed", "5")
	if code != 1 {
		t.Errorf("got exit %d, want 1", code)
	}
	for _, want := range []string{"the target did not start, so no scenario was run", "exit status 127",
		"sh: 1: exec: /nonexistent/my-supervisor: not found", filepath.Join(dir, "logs", "000-preflight.log")} {
		if strings.Count(stderr, want) != 1 {
			t.Errorf("stderr says %q %d times, want once:\n%s", want, strings.Count(stderr, want), stderr)
		}
	}
	if strings.Contains(stdout, "scenarios") || strings.Contains(stdout+stderr, "exited before GET /ping answered 200") {
		t.Errorf("scenarios ran or failed one by one:\nstdout: %s\nstderr: %s", stdout, stderr)
	}
	if d := time.Since(start); d > 10*time.Second {
		t.Errorf("took %s, want the run stopped at once", d)
	}
	logs, _ := filepath.Glob(filepath.Join(dir, "logs", "*.log"))
	if len(logs) != 1 {
		t.Errorf("got logs %v, want the preflight's only", logs)
	}
}

func TestVerifyShowsAnUnknownViolationOfTheReferenceProxy(t *testing.T) {
	t.Setenv(asMainEnv, "1")
	t.Setenv("DEPHARNESS_VIOLATIONS", "logs-20")
	code, _, stderr := run(t, nil, "verify", "--report-dir", t.TempDir(), "--tags", "@AUTH-3")
	if code != 1 || !strings.Contains(stderr, `unknown violation "logs-20" (known: `) || !strings.Contains(stderr, "exit status 2") {
		t.Errorf("got exit %d, stderr:\n%s\nwant 1 and the proxy's own message with its exit status", code, stderr)
	}
}

func TestVerifyReportsAFailingScenarioWithItsRunInformation(t *testing.T) {
	t.Setenv(asMainEnv, "1")
	t.Setenv("DEPHARNESS_VIOLATIONS", "logs-200")
	dir := t.TempDir()
	code, _, stderr := run(t, nil, "verify", "--tags", "@DEV-LOG-1 && ~@HOOK-DEL-1 && ~@CLOUD-LOGS && ~@ERR-1", "--report-dir", dir, "--seed", "5", "--concurrency", "2")
	if code != 1 || !strings.Contains(stderr, "--seed 5") {
		t.Errorf("got exit %d, stderr %q; want 1 and the seed to replay", code, stderr)
	}
	html, err := os.ReadFile(filepath.Join(dir, "report.html"))
	if err != nil {
		t.Fatal(err)
	}
	for _, want := range []string{"Not compliant", "--seed 5", "request body", `href="logs/`, `href="contract.md"`, "Bearer &lt;redacted&gt;"} {
		if !strings.Contains(string(html), want) {
			t.Errorf("report.html lacks %q", want)
		}
	}
	if _, err := os.Stat(filepath.Join(dir, "contract.md")); err != nil {
		t.Errorf("the contract the report links to: %v", err)
	}
}

func TestVerifyListClausesPrintsEveryClauseAndExitsZero(t *testing.T) {
	code, stdout, _ := run(t, nil, "verify", "--list-clauses")
	if code != 0 {
		t.Fatalf("got exit %d, want 0", code)
	}
	for _, want := range []string{"AUTH-1         contract", "HOOK-202", "docs/contract.md"} {
		if !strings.Contains(stdout, want) {
			t.Errorf("the list lacks %q", want)
		}
	}
}

func TestVerifyRefusesAnUnreadableTagExpressionWithExitTwo(t *testing.T) {
	for _, tags := range []string{"(@AUTH-1,@AUTH-3", "@AUTH-1 and @AUTH-3", "@AUTH-1 && ~@AUTH-1"} {
		code, _, stderr := run(t, nil, "verify", "--tags", tags, "--report-dir", t.TempDir())
		if code != 2 || !strings.Contains(stderr, "tag expression") {
			t.Errorf("--tags %q: got exit %d, stderr %q; want 2 and a message about the expression", tags, code, stderr)
		}
	}
}

func TestVerifyListPrintsTheSelectedScenariosAndRunsNothing(t *testing.T) {
	dir := t.TempDir()
	code, stdout, _ := run(t, nil, "verify", "--list", "--tags", "@DEV-LOG-1 && @HOOK-DEL-1", "--report-dir", dir)
	if code != 0 || !strings.Contains(stdout, "logs.feature:29\tLogs for a device awaiting its delete acknowledgement are gone\t@DEV-LOG-1 @HOOK-DEL-1 @contract") ||
		!strings.Contains(stdout, "\n1 scenarios") {
		t.Errorf("got exit %d, stdout:\n%s\nwant 0 and the one scenario with its line and tags", code, stdout)
	}
	if entries, _ := os.ReadDir(dir); len(entries) != 0 {
		t.Errorf("--list wrote %d entries in the report directory, want none", len(entries))
	}
	if code, _, _ := run(t, nil, "verify", "--list", "--tags", "@NO-SUCH-CLAUSE"); code != 2 {
		t.Errorf("--list selecting nothing: got exit %d, want 2", code)
	}
}

func TestVerifyRerunOfAnEmptyListRunsNothingAndOfAGarbledOneIsRefused(t *testing.T) {
	dir := t.TempDir()
	empty, bad := filepath.Join(dir, "empty.txt"), filepath.Join(dir, "bad.txt")
	_ = os.WriteFile(empty, nil, 0o644)
	_ = os.WriteFile(bad, []byte("logs.feature\n"), 0o644)
	if code, stdout, _ := run(t, nil, "verify", "--rerun", empty, "--report-dir", dir); code != 0 || !strings.Contains(stdout, "nothing to rerun") {
		t.Errorf("empty list: got exit %d, stdout %q; want 0 and nothing to rerun", code, stdout)
	}
	if code, _, stderr := run(t, nil, "verify", "--rerun", bad, "--report-dir", dir); code != 2 || !strings.Contains(stderr, "is not file.feature:line") {
		t.Errorf("garbled list: got exit %d, stderr %q; want 2", code, stderr)
	}
}
