package features

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/signal"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"testing/fstest"
	"time"

	"github.com/depharness/depharness/internal/testkit"
	"github.com/depharness/depharness/proxy/violation"
)

// pingServerEnv makes the test binary act as a minimal target: it serves
// GET /ping on BALENA_SUPERVISOR_PORT and says how it ends.
const pingServerEnv = "FEATURES_TEST_PING_SERVER"

func TestMain(m *testing.M) { testkit.Main(m, pingServerEnv, pingServer) }

func pingServer() int {
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGTERM)
	defer stop()
	if strings.Contains(os.Getenv("DEPHARNESS_VIOLATIONS"), "no-start") {
		fmt.Println("refusing to start")
		return 3
	}
	open := strings.Contains(os.Getenv("DEPHARNESS_VIOLATIONS"), "open-door") || strings.Contains(os.Getenv("DEPHARNESS_ALLOWANCES"), "lenient")
	text := "Unauthorized"
	if strings.Contains(os.Getenv("DEPHARNESS_ALLOWANCES"), "reworded") {
		text = "no entry without the key"
	}
	ln, err := net.Listen("tcp", "127.0.0.1:"+os.Getenv("BALENA_SUPERVISOR_PORT"))
	if err != nil {
		fmt.Println("listen:", err)
		return 1
	}
	fmt.Printf("started with DATA_DIR=%s\n", os.Getenv("DATA_DIR"))
	srv := &http.Server{Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path == "/ping" && strings.Contains(os.Getenv("DEPHARNESS_VIOLATIONS"), "ping-locked") {
			http.Error(w, "Unauthorized", http.StatusUnauthorized)
			return
		}
		if r.URL.Path == "/ping" || open {
			fmt.Fprint(w, "OK")
			return
		}
		http.Error(w, text, http.StatusUnauthorized)
	})}
	go srv.Serve(ln)
	<-ctx.Done()
	srv.Close()
	if d, err := time.ParseDuration(os.Getenv("FEATURES_TEST_STOP_DELAY")); err == nil {
		time.Sleep(d)
	}
	fmt.Println("stopped gracefully")
	code, _ := strconv.Atoi(os.Getenv("FEATURES_TEST_EXIT_CODE"))
	return code
}

func TestCommandTargetStopTakesAnyExitStatusWithinTenSeconds(t *testing.T) {
	for _, tc := range []struct {
		name         string
		delay, grace time.Duration
		code         string
		wantErr      string
	}{
		{"exit 143 after a slow stop", 1500 * time.Millisecond, 0, "143", ""},
		{"exit 1", 0, 0, "1", ""},
		{"slower than the grace", 5 * time.Second, 500 * time.Millisecond, "0", "did not exit within 500ms"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			out := &syncBuffer{}
			tg := NewCommandTarget(CommandOptions{Command: selfCommand(t), Ready: 10 * time.Second, StopGrace: tc.grace}, out)
			env := testEnv(t)
			env["FEATURES_TEST_STOP_DELAY"], env["FEATURES_TEST_EXIT_CODE"] = tc.delay.String(), tc.code
			ctx := testCtx(t)
			if err := tg.Start(ctx, env); err != nil {
				t.Fatalf("start: %v\noutput: %s", err, out)
			}
			t.Cleanup(func() { _ = tg.Kill() })
			start := time.Now()
			err := tg.Stop(ctx)
			took := time.Since(start)
			switch {
			case tc.wantErr == "" && err != nil:
				t.Fatalf("Stop: %v, want no error for exit status %s after SIGTERM", err, tc.code)
			case tc.wantErr == "" && took < tc.delay:
				t.Errorf("Stop returned after %s, before the target exited (%s)", took, tc.delay)
			case tc.wantErr != "" && (err == nil || !strings.Contains(err.Error(), tc.wantErr)):
				t.Fatalf("Stop: %v, want an error saying %q", err, tc.wantErr)
			case tc.wantErr != "" && took > tc.grace+2*time.Second:
				t.Errorf("Stop took %s, want the kill soon after the grace of %s", took, tc.grace)
			}
			if tg.Running() {
				t.Error("running after Stop")
			}
		})
	}
}

func testEnv(t *testing.T) map[string]string {
	t.Helper()
	port, err := freePort()
	if err != nil {
		t.Fatal(err)
	}
	return map[string]string{"BALENA_SUPERVISOR_PORT": strconv.Itoa(port), "DATA_DIR": "/tmp/x-data", pingServerEnv: "1"}
}

func selfCommand(t *testing.T) string {
	t.Helper()
	self, err := os.Executable()
	if err != nil {
		t.Fatal(err)
	}
	return "exec '" + self + "'"
}

func testCtx(t *testing.T) context.Context {
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	t.Cleanup(cancel)
	return ctx
}

func TestCommandTargetStartsStopsAndRestartsOnTheSameEnvironment(t *testing.T) {
	out := &syncBuffer{}
	tg := NewCommandTarget(CommandOptions{Command: selfCommand(t), Ready: 10 * time.Second}, out)
	env := testEnv(t)
	ctx := testCtx(t)
	if err := tg.Start(ctx, env); err != nil {
		t.Fatalf("start: %v\noutput: %s", err, out)
	}
	t.Cleanup(func() { _ = tg.Kill() })
	if !tg.Running() {
		t.Fatal("got not running after Start, want running")
	}
	if err := tg.Start(ctx, env); err == nil {
		t.Error("second Start while running: got no error, want one")
	}
	if err := tg.Stop(ctx); err != nil {
		t.Fatalf("stop: %v", err)
	}
	if tg.Running() {
		t.Error("got running after Stop, want stopped")
	}
	if got := out.String(); !strings.Contains(got, "started with DATA_DIR=/tmp/x-data") || !strings.Contains(got, "stopped gracefully") {
		t.Errorf("got output %q, want the harness DATA_DIR and a graceful stop after SIGTERM", got)
	}
	if err := Restart(ctx, tg, env, false); err != nil {
		t.Fatalf("start again: %v", err)
	}
	if err := tg.Kill(); err != nil {
		t.Fatal(err)
	}
	if tg.Running() {
		t.Error("got running after Kill, want gone")
	}
	if n := strings.Count(out.String(), "stopped gracefully"); n != 1 {
		t.Errorf("got %d graceful stops, want 1 (SIGKILL allows none)", n)
	}
	c := &http.Client{Timeout: time.Second}
	if _, err := c.Get("http://127.0.0.1:" + env["BALENA_SUPERVISOR_PORT"] + "/ping"); err == nil {
		t.Error("the killed target still answers /ping")
	}
}

func TestCommandTargetStartFailsWhenTheCommandExits(t *testing.T) {
	tg := NewCommandTarget(CommandOptions{Command: "echo broken; exit 3", Ready: 10 * time.Second}, nil)
	start := time.Now()
	err := tg.Start(testCtx(t), testEnv(t))
	if err == nil || !strings.Contains(err.Error(), "exited") {
		t.Fatalf("got %v, want an error saying the target exited", err)
	}
	if d := time.Since(start); d > 5*time.Second {
		t.Errorf("took %s to notice the exit, want well under the readiness deadline", d)
	}
}

func TestCommandTargetStartFailsWhenNotReadyInTime(t *testing.T) {
	tg := NewCommandTarget(CommandOptions{Command: "exec sleep 30", Ready: 300 * time.Millisecond}, nil)
	err := tg.Start(testCtx(t), testEnv(t))
	if err == nil || !strings.Contains(err.Error(), "did not answer 200") {
		t.Fatalf("got %v, want a readiness error", err)
	}
	if tg.Running() {
		t.Error("a target that never became ready is still running, want it killed")
	}
}

func TestMergeEnvLetsTheHarnessWin(t *testing.T) {
	got := mergeEnv([]string{"A=1", "DATA_DIR=/old", "B=2"}, map[string]string{"DATA_DIR": "/new", "C": "3"})
	want := []string{"A=1", "B=2", "C=3", "DATA_DIR=/new"}
	if fmt.Sprint(got) != fmt.Sprint(want) {
		t.Errorf("got %v, want %v", got, want)
	}
}

// pingTarget is a target that answers /ping and refuses everything else
// with 401: enough to run the suite's readiness and AUTH scenarios.
func pingTarget(t *testing.T) TargetFactory {
	return func(out io.Writer) Target {
		return NewCommandTarget(CommandOptions{Command: pingServerEnv + "=1 " + selfCommand(t), Ready: 10 * time.Second}, out)
	}
}

func TestRunPassesScenariosTheTargetSatisfiesAndWritesReports(t *testing.T) {
	dir := t.TempDir()
	var console bytes.Buffer
	res, err := Run(testCtx(t), Config{
		Target: pingTarget(t), Tags: "@AUTH-3", ReportDir: dir, Output: &console, NoColors: true, Seed: 7, Concurrency: 2,
	})
	if err != nil {
		t.Fatal(err)
	}
	if res.Status != 0 || len(res.Scenarios) != 1 || !res.Scenarios[0].Passed {
		t.Fatalf("got status %d, scenarios %+v, want the one AUTH-3 scenario passed\n%s", res.Status, res.Scenarios, console.String())
	}
	if !strings.Contains(console.String(), "seed 7") {
		t.Errorf("the console does not print the seed:\n%s", console.String())
	}
	for _, name := range []string{"cucumber.json", "junit.xml", "report.html"} {
		if fi, err := os.Stat(filepath.Join(dir, name)); err != nil || fi.Size() == 0 {
			t.Errorf("report %s: %v, want a non-empty file", name, err)
		}
	}
	html, _ := os.ReadFile(filepath.Join(dir, "report.html"))
	if !regexp.MustCompile(`id="AUTH-3">[\s\S]*?class="status passed">passed`).Match(html) {
		t.Error("report.html does not show AUTH-3 passed")
	}
}

// twoScenarios is a feature whose first scenario a refuse-everything target
// passes and whose second it fails.
var twoScenarios = fstest.MapFS{"x.feature": {Data: []byte(`Feature: x
  Background:
    Given the supervisor is running

  @AUTH-1 @contract
  Scenario: refused without a key
    When the gateway app calls GET "/v1/devices" with no key
    Then the answer is 401

  @AUTH-1 @contract
  Scenario: accepted with the key
    When the gateway app calls GET "/v1/devices" with the key in the query
    Then the answer is 200
`)}}

func TestRunReportsFailedScenariosWithTheirError(t *testing.T) {
	dir := t.TempDir()
	var console bytes.Buffer
	res, err := Run(testCtx(t), Config{
		Target: pingTarget(t), Features: twoScenarios, ReportDir: dir, Output: &console, NoColors: true, Concurrency: 2,
	})
	if err != nil {
		t.Fatal(err)
	}
	if res.Status != 1 {
		t.Errorf("got godog status %d, want 1", res.Status)
	}
	got := map[string]ScenarioResult{}
	for _, s := range res.Scenarios {
		got[s.Name] = s
	}
	if r := got["refused without a key"]; !r.Passed {
		t.Errorf("refusal scenario: got %+v, want passed", r)
	}
	if r := got["accepted with the key"]; r.Passed || !strings.Contains(r.Err, "401") || !strings.Contains(r.Err, "/v1/devices") {
		t.Errorf("acceptance scenario: got %+v, want failed with the request and its 401", r)
	}
	logs, _ := filepath.Glob(filepath.Join(dir, "logs", "*.log"))
	if len(logs) != 1 {
		t.Fatalf("got scenario logs %v, want one for the failed scenario", logs)
	}
	b, _ := os.ReadFile(logs[0])
	if !strings.Contains(string(b), "started with DATA_DIR=") || !strings.Contains(string(b), "STEP the answer is 200") {
		t.Errorf("the scenario log lacks the target's output or the steps:\n%s", b)
	}
}

func TestRunRefusesATagExpressionThatSelectsNothing(t *testing.T) {
	_, err := Run(testCtx(t), Config{Target: pingTarget(t), Tags: "@NO-SUCH-CLAUSE", Output: io.Discard})
	if !errors.Is(err, ErrNoScenarios) {
		t.Errorf("got %v, want ErrNoScenarios", err)
	}
}

// selfCheckFeature has a scenario of AUTH-1, of AUTH-3 and of ERR-2
// (reference tier).
var selfCheckFeature = fstest.MapFS{"x.feature": {Data: []byte(`Feature: x
  Background:
    Given the supervisor is running

  @AUTH-1 @contract
  Scenario: refused without a key
    When the gateway app calls GET "/v1/devices" with no key
    Then the answer is 401 "Unauthorized"

  @AUTH-3 @contract
  Scenario: ping
    When the gateway app calls GET "/ping" with no key
    Then the answer is 200 "OK"

  @ERR-2 @reference
  Scenario: the exact message
    When the gateway app calls GET "/v1/devices" with no key
    Then the answer is 401 "Unauthorized"
`)}}

func TestSelfCheckTellsCaughtFromMissedViolationsAndFairFromUnfairAllowances(t *testing.T) {
	fsys := selfCheckFeature
	dir := t.TempDir()
	var out bytes.Buffer
	rep, err := SelfCheck(testCtx(t), Config{Target: pingTarget(t), Features: fsys, ReportDir: dir, Output: &out, Concurrency: 2},
		SelfCheckPlan{
			Violations: []violation.Violation{
				{Name: "open-door", Clause: "AUTH-1", What: "serves requests without a key"},
				{Name: "no-start", Clause: "AUTH-1", What: "never gets ready"},
				{Name: "harmless", Clause: "AUTH-3", What: "changes nothing the suite sees"},
				{Name: "unchecked", Clause: "ERR-1", What: "has no scenario"},
			},
			Allowances: []violation.Allowance{
				{Name: "reworded", Latitude: "any message", What: "another 401 text"},
				{Name: "lenient", Latitude: "none", What: "serves without a key (not compliant: its row must fail)"},
			},
			Parallel: 3,
		})
	if err != nil {
		t.Fatal(err)
	}
	got := map[string]SelfCheckRow{}
	for _, r := range rep.Violations {
		got[r.Violation.Name] = r
	}
	if r := got["open-door"]; !r.Caught || r.Scenarios != 1 || r.CaughtAt != `x.feature:8 the answer is 401 "Unauthorized"` {
		t.Errorf("open-door: got %+v, want caught by its 1 scenario at x.feature:8", r)
	}
	if r := got["no-start"]; r.Caught || len(r.Failed) != 1 || !strings.Contains(r.Note, "none at an assertion") {
		t.Errorf("no-start: got %+v, want a failure at readiness that does not count as caught", r)
	}
	if r := got["harmless"]; r.Caught || !strings.Contains(r.Note, "passed with the violation on") {
		t.Errorf("harmless: got %+v, want not caught", r)
	}
	if r := got["unchecked"]; r.Caught || !strings.Contains(r.Note, "no scenario checks ERR-1") {
		t.Errorf("unchecked: got %+v, want not caught for lack of scenarios", r)
	}
	allow := map[string]AllowanceRow{}
	for _, r := range rep.Allowances {
		allow[r.Name] = r
	}
	if r := allow["reworded"]; !r.Passed || r.Scenarios != 2 {
		t.Errorf("reworded: got %+v, want the 2 contract-tier scenarios to pass (the message is ERR-2, reference)", r)
	}
	if r := allow["lenient"]; r.Passed || len(r.Failed) != 1 {
		t.Errorf("lenient: got %+v, want its row to fail", r)
	}
	if r := allow[AllAllowances]; r.Passed || r.Scenarios != 2 {
		t.Errorf("all at once: got %+v, want it run and failed", r)
	}
	var table bytes.Buffer
	if missed, failed := WriteSelfCheckTable(&table, rep); missed != 3 || failed != 2 {
		t.Errorf("got %d missed, %d failed allowance rows; want 3 and 2\n%s", missed, failed, table.String())
	}
	for _, want := range []string{`x.feature:8 the answer is 401 "Unauthorized"`, "ALLOWANCE", "FAILS", "reworded"} {
		if !strings.Contains(table.String(), want) {
			t.Errorf("the table lacks %q:\n%s", want, table.String())
		}
	}
	if _, err := os.Stat(filepath.Join(dir, "self-check", "open-door", "report.html")); err != nil {
		t.Errorf("no report of the open-door run: %v", err)
	}
}

func TestAPingThatAnswersButNot200IsAVerdictNotAHarnessFailure(t *testing.T) {
	target := func(out io.Writer) Target {
		return NewCommandTarget(CommandOptions{Command: pingServerEnv + "=1 " + selfCommand(t), Ready: time.Second}, out)
	}
	rep, err := SelfCheck(testCtx(t), Config{Target: target, Features: selfCheckFeature, Output: io.Discard, Concurrency: 2},
		SelfCheckPlan{Violations: []violation.Violation{{Name: "ping-locked", Clause: "AUTH-3", What: "GET /ping needs the key"}}})
	if err != nil {
		t.Fatal(err)
	}
	if r := rep.Violations[0]; !r.Caught || r.CaughtAt != "x.feature:3 the supervisor is running" {
		t.Errorf("got %+v, want caught at the readiness step (AUTH-3)", r)
	}
}

func TestSelfCheckIsInconclusiveForAClauseThatFailsWithoutTheViolation(t *testing.T) {
	rep, err := SelfCheck(testCtx(t), Config{Target: pingTarget(t), Features: twoScenarios, Output: io.Discard, Concurrency: 2},
		SelfCheckPlan{Violations: []violation.Violation{{Name: "open-door", Clause: "AUTH-1", What: "serves requests without a key"}}})
	if err != nil {
		t.Fatal(err)
	}
	if rows := rep.Violations; len(rows) != 1 || rows[0].Caught || !strings.HasPrefix(rows[0].Note, "inconclusive") {
		t.Errorf("got %+v, want one row, not caught, inconclusive", rows)
	}
}

func TestSelfCheckWithTagsSelectsTheIntersectionAndSkipsTheRest(t *testing.T) {
	rep, err := SelfCheck(testCtx(t), Config{Target: pingTarget(t), Features: selfCheckFeature, Output: io.Discard, Concurrency: 2, Tags: "~@reference"},
		SelfCheckPlan{Violations: []violation.Violation{
			{Name: "open-door", Clause: "AUTH-1", What: "serves requests without a key"},
			{Name: "elsewhere", Clause: "ERR-1", What: "has no scenario in the selection"},
		}})
	if err != nil {
		t.Fatal(err)
	}
	for _, r := range rep.Violations {
		if r.Violation.Name == "open-door" && r.Scenarios == 0 {
			t.Errorf("open-door: got %+v, want its AUTH-1 scenarios run under --tags", r)
		}
		if r.Violation.Name == "elsewhere" && !r.Skipped {
			t.Errorf("elsewhere: got %+v, want skipped", r)
		}
	}
}

func TestInProcessTargetRunsUntilStoppedWithTheHarnessEnvironment(t *testing.T) {
	gotDataDir := make(chan string, 2)
	tg := &InProcessTarget{Run: func(ctx context.Context, getenv func(string) string, out io.Writer) error {
		ln, err := net.Listen("tcp", "127.0.0.1:"+getenv("BALENA_SUPERVISOR_PORT"))
		if err != nil {
			return err
		}
		gotDataDir <- getenv("DATA_DIR")
		srv := &http.Server{Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { fmt.Fprint(w, "OK") })}
		go srv.Serve(ln)
		<-ctx.Done()
		srv.Close()
		return ctx.Err()
	}}
	env := testEnv(t)
	ctx := testCtx(t)
	if err := tg.Start(ctx, env); err != nil {
		t.Fatal(err)
	}
	if !tg.Running() {
		t.Fatal("got not running after Start")
	}
	if got := <-gotDataDir; got != env["DATA_DIR"] {
		t.Errorf("got DATA_DIR %q, want %q", got, env["DATA_DIR"])
	}
	if err := Restart(ctx, tg, env, true); err != nil {
		t.Fatalf("restart after kill: %v", err)
	}
	if err := tg.Stop(ctx); err != nil {
		t.Errorf("stop: got %v, want a clean stop (a cancelled run is not an error)", err)
	}
	if tg.Running() {
		t.Error("got running after Stop")
	}
}

func TestClausesWithoutViolationListsUncoveredClausesOfBothTiers(t *testing.T) {
	got := ClausesWithoutViolation([]violation.Violation{{Name: "a", Clause: "AUTH-1"}, {Name: "b", Clause: "DEV-PUT-5"}})
	has := map[string]bool{}
	for _, id := range got {
		has[id] = true
	}
	if has["AUTH-1"] || has["DEV-PUT-5"] || !has["AUTH-3"] || !has["HOOK-202"] || !has["DEV-PUT-6"] || !has["HOOK-REF-1"] {
		t.Errorf("got %v, want every clause, contract (AUTH-3) and reference (DEV-PUT-6), but AUTH-1 and DEV-PUT-5", got)
	}
}
