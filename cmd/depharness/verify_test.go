package main

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
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

func TestVerifyExitsOneAndReportsWhenTheTargetFails(t *testing.T) {
	dir := t.TempDir()
	code, stdout, stderr := run(t, nil, "verify", "--target-cmd", "echo no supervisor here; exit 1",
		"--tags", "@AUTH-3", "--report-dir", dir, "--ready-timeout", "2s", "--seed", "5")
	if code != 1 || !strings.Contains(stderr, "1 of 1 scenarios failed") || !strings.Contains(stderr, "--seed 5") {
		t.Errorf("got exit %d, stderr %q; want 1 and the failure count with the seed to replay", code, stderr)
	}
	if !strings.Contains(stdout, "exited before GET /ping answered 200") {
		t.Errorf("the console does not say why the scenario failed:\n%s", stdout)
	}
	html, err := os.ReadFile(filepath.Join(dir, "report.html"))
	if err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(string(html), "Not compliant") {
		t.Error("report.html does not say the target is not compliant")
	}
	logs, _ := filepath.Glob(filepath.Join(dir, "logs", "*.log"))
	if len(logs) != 1 {
		t.Fatalf("got logs %v, want one for the failed scenario", logs)
	}
	if b, _ := os.ReadFile(logs[0]); !strings.Contains(string(b), "no supervisor here") {
		t.Errorf("the scenario log lacks the target's output:\n%s", b)
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
