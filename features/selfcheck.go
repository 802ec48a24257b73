package features

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"sync"
	"text/tabwriter"
	"time"

	"golang.org/x/sync/errgroup"

	"github.com/depharness/depharness/features/clauses"
	"github.com/depharness/depharness/proxy/violation"
)

// ReferenceProxyEnv returns what the suite adds to the harness variables
// when the target is the reference proxy: no fixed metrics port, so that
// scenarios can run side by side.
func ReferenceProxyEnv() map[string]string { return map[string]string{"METRICS_ADDRESS": "off"} }

// SelfCheckRow is the outcome of one violation: does the suite catch it?
type SelfCheckRow struct {
	Violation violation.Violation
	// Scenarios ran with the violation on (those tagged with its clause).
	Scenarios int
	// Failed are the scenarios that failed with the violation on.
	Failed []ScenarioResult
	// Caught is true when at least one scenario tagged with the clause
	// failed at an assertion step (not at a harness or arrangement error)
	// with the violation on, and the clause's scenarios pass without it.
	Caught bool
	// CaughtAt is the first failing assertion step of a catching scenario:
	// "file.feature:line Step text".
	CaughtAt string
	// Skipped is set when the run's --tags select no scenario of the
	// clause: the row proves nothing either way and is not a miss.
	Skipped bool
	// Note explains a row that is not caught, or skipped.
	Note string
}

// AllowanceRow is the outcome of the contract tier against one allowance
// (or all of them at once): a compliant difference must pass.
type AllowanceRow struct {
	// Name is the allowance, or AllAllowances for all of them at once.
	Name string
	What string
	// Scenarios of the contract tier ran with the allowance on.
	Scenarios int
	// Failed are the scenarios that failed with it on: each is a suite
	// defect (an over-specification) unless FailsClean lists it too.
	Failed []ScenarioResult
	// FailsClean are the failed scenarios that also failed in the baseline
	// run without violations or allowances.
	FailsClean []string
	// Passed is true when every scenario passed.
	Passed bool
	// Skipped is set when --tags select no contract-tier scenario.
	Skipped bool
}

// AllAllowances names the row of all allowances at once.
const AllAllowances = "(all at once)"

// SelfCheckPlan says what a self-check proves.
type SelfCheckPlan struct {
	// Violations must each be caught by a scenario tagged with its clause.
	Violations []violation.Violation
	// Allowances must each pass the contract tier, and so must all of them
	// at once (when there are two or more).
	Allowances []violation.Allowance
	// Parallel is how many runs go at once; 0 means 1.
	Parallel int
	// Scenarios is how many scenarios are busy at once across all the runs
	// (in place of each run's Concurrency); 0 means 4 per parallel run, so
	// that a lone long run may go wider than its share while the runs side
	// by side never load the machine more than that.
	Scenarios int
}

// SelfCheckReport is the outcome of a self-check.
type SelfCheckReport struct {
	Violations []SelfCheckRow
	Allowances []AllowanceRow
}

// Missed counts the violations not caught and the allowance rows that did
// not pass; skipped rows are not counted.
func (r SelfCheckReport) Missed() (violations, allowances int) {
	for _, v := range r.Violations {
		if !v.Caught && !v.Skipped {
			violations++
		}
	}
	for _, a := range r.Allowances {
		if !a.Passed && !a.Skipped {
			allowances++
		}
	}
	return violations, allowances
}

// SelfCheck proves that the suite is sharp and fair against the reference
// proxy. Sharp: it first runs the scenarios of all the violations' clauses
// against the clean reference proxy (they must pass: a clause that already
// fails proves nothing), then, for each violation, the scenarios tagged with
// its clause with DEPHARNESS_VIOLATIONS set to it; one of them must fail at
// an assertion step. Fair: the contract tier (scenarios without @reference)
// runs with DEPHARNESS_ALLOWANCES set to each allowance, and to all of them
// at once, and must pass. cfg is the configuration of a normal run against
// the reference proxy; its Tags further restrict the scenarios (a row whose
// scenarios they leave out is skipped). Reports of each run go under
// cfg.ReportDir/self-check/.
func SelfCheck(ctx context.Context, cfg Config, plan SelfCheckPlan) (SelfCheckReport, error) {
	var rep SelfCheckReport
	if len(plan.Violations) == 0 && len(plan.Allowances) == 0 {
		return rep, errors.New("no violations or allowances to check")
	}
	vs := append([]violation.Violation(nil), plan.Violations...)
	sort.Slice(vs, func(i, j int) bool { return vs[i].Name < vs[j].Name })
	as := append([]violation.Allowance(nil), plan.Allowances...)
	sort.Slice(as, func(i, j int) bool { return as[i].Name < as[j].Name })
	out := cfg.Output
	if out == nil {
		out = os.Stdout
	}
	base := cfg.ReportDir
	restricted := strings.TrimSpace(cfg.Tags) != ""
	// One pool of ports for every run, so that runs side by side never
	// hand out the same port.
	if cfg.ports == nil {
		cfg.ports = newPortPool(cfg.Seed)
	}
	if cfg.slots == nil {
		n := plan.Scenarios
		if n <= 0 {
			n = 4 * max(plan.Parallel, 1)
		}
		cfg.slots = newBusySlots(n)
	}
	run := func(ctx context.Context, name, tags string, env map[string]string) (Result, error) {
		c := cfg
		c.Tags = AndTags(tags, cfg.Tags)
		c.TargetEnv = map[string]string{}
		for k, v := range cfg.TargetEnv {
			c.TargetEnv[k] = v
		}
		for k, v := range env {
			c.TargetEnv[k] = v
		}
		c.Output = io.Discard
		c.TestingT = nil
		if base != "" {
			c.ReportDir = filepath.Join(base, "self-check", unsafeName.ReplaceAllString(name, "-"))
			if err := os.MkdirAll(c.ReportDir, 0o755); err != nil {
				return Result{}, err
			}
			f, err := os.Create(filepath.Join(c.ReportDir, "console.txt"))
			if err != nil {
				return Result{}, err
			}
			defer f.Close()
			c.Output = f
			c.NoColors = true
		}
		return Run(ctx, c)
	}
	clean := map[string]string{"DEPHARNESS_VIOLATIONS": "", "DEPHARNESS_ALLOWANCES": ""}
	with := func(k, v string) map[string]string {
		m := map[string]string{"DEPHARNESS_VIOLATIONS": "", "DEPHARNESS_ALLOWANCES": ""}
		m[k] = v
		return m
	}

	clauseSet := map[string]bool{}
	for _, v := range vs {
		clauseSet["@"+v.Clause] = true
	}
	var all []string
	for c := range clauseSet {
		all = append(all, c)
	}
	sort.Strings(all)
	baseTags := strings.Join(all, ",")
	if len(as) > 0 {
		baseTags = strings.Join(append(all, "~@reference"), ",")
	}
	fmt.Fprintf(out, "self-check: baseline run without violations or allowances (scenarios of %d clauses%s)\n",
		len(all), map[bool]string{true: " and the contract tier", false: ""}[len(as) > 0])
	began := time.Now()
	baseline, err := run(ctx, "baseline", baseTags, clean)
	fmt.Fprintf(out, "self-check: baseline: %d scenarios, %d failed, in %s\n", len(baseline.Scenarios), len(baseline.Failed()), time.Since(began).Round(time.Second))
	if err != nil && !errors.Is(err, ErrNoScenarios) {
		return rep, fmt.Errorf("baseline: %w", err)
	}
	failsClean := map[string][]string{}
	failedClean := map[string]bool{}
	for _, s := range baseline.Failed() {
		failedClean[s.URI+"\x00"+s.Name] = true
		for _, t := range s.Tags {
			failsClean[t] = append(failsClean[t], s.Name)
		}
	}

	rep.Violations = make([]SelfCheckRow, len(vs))
	var outMu sync.Mutex
	say := func(format string, a ...any) {
		outMu.Lock()
		defer outMu.Unlock()
		fmt.Fprintf(out, format, a...)
	}
	g, gctx := errgroup.WithContext(ctx)
	g.SetLimit(max(plan.Parallel, 1))
	var runs []AllowanceRow
	var names []string
	for _, a := range as {
		runs = append(runs, AllowanceRow{Name: a.Name, What: a.What})
		names = append(names, a.Name)
	}
	if len(as) > 1 {
		// First: the longest run (every delay at once) starts earliest.
		runs = append([]AllowanceRow{{Name: AllAllowances, What: strings.Join(names, ",")}}, runs...)
	}
	rep.Allowances = make([]AllowanceRow, len(runs))
	for i, row := range runs {
		g.Go(func() error {
			defer func() { rep.Allowances[i] = row }()
			list, dir := row.Name, "allowance-"+row.Name
			if row.Name == AllAllowances {
				list, dir = strings.Join(names, ","), "allowances-all"
			}
			began := time.Now()
			res, err := run(gctx, dir, "~@reference", with("DEPHARNESS_ALLOWANCES", list))
			switch {
			case errors.Is(err, ErrNoScenarios) && restricted:
				row.Skipped = true
				say("self-check: allowance %-24s skipped: --tags select no contract-tier scenario\n", row.Name)
				return nil
			case err != nil:
				return fmt.Errorf("allowance %s: %w", row.Name, err)
			}
			row.Scenarios = len(res.Scenarios)
			row.Failed = res.Failed()
			for _, s := range row.Failed {
				if failedClean[s.URI+"\x00"+s.Name] {
					row.FailsClean = append(row.FailsClean, s.Name)
				}
			}
			row.Passed = len(row.Failed) == 0 && res.Status == 0
			say("self-check: allowance %-24s passed=%v (%d of %d contract-tier scenarios failed) in %s\n",
				row.Name, row.Passed, len(row.Failed), row.Scenarios, time.Since(began).Round(time.Second))
			return nil
		})
	}
	for i, v := range vs {
		g.Go(func() error {
			row := SelfCheckRow{Violation: v}
			defer func() { rep.Violations[i] = row }()
			if f := failsClean["@"+v.Clause]; len(f) > 0 {
				row.Note = fmt.Sprintf("inconclusive: %d scenarios of %s fail without the violation", len(f), v.Clause)
				say("self-check: %-34s %s\n", v.Name, row.Note)
				return nil
			}
			began := time.Now()
			res, err := run(gctx, v.Name, "@"+v.Clause, with("DEPHARNESS_VIOLATIONS", v.Name))
			switch {
			case errors.Is(err, ErrNoScenarios) && restricted:
				row.Skipped, row.Note = true, "skipped: --tags select no scenario of "+v.Clause
				say("self-check: %-34s %s\n", v.Name, row.Note)
				return nil
			case errors.Is(err, ErrNoScenarios):
				row.Note = "no scenario checks " + v.Clause
			case err != nil:
				return fmt.Errorf("violation %s: %w", v.Name, err)
			}
			row.Scenarios = len(res.Scenarios)
			row.Failed = res.Failed()
			harness := 0
			for _, s := range row.Failed {
				switch {
				case s.AtAssertion() && !row.Caught:
					row.Caught, row.CaughtAt = true, s.Step
				case !s.AtAssertion():
					harness++
				}
			}
			switch {
			case row.Caught:
			case harness > 0:
				row.Note = fmt.Sprintf("not caught: %d scenarios of %s failed, none at an assertion (harness or readiness: %s)",
					harness, v.Clause, firstErr(row.Failed))
			case row.Note == "":
				row.Note = fmt.Sprintf("all %d scenarios of %s passed with the violation on", row.Scenarios, v.Clause)
			}
			say("self-check: %-34s caught=%v (%d of %d scenarios failed) in %s %s\n",
				v.Name, row.Caught, len(row.Failed), row.Scenarios, time.Since(began).Round(time.Second), row.CaughtAt)
			return nil
		})
	}

	err = g.Wait()
	return rep, err
}

// firstErr is the first failure's error, shortened, for a note.
func firstErr(rs []ScenarioResult) string {
	for _, r := range rs {
		e := r.Err
		if i := strings.IndexByte(e, '\n'); i >= 0 {
			e = e[:i]
		}
		if len(e) > 120 {
			e = e[:120] + "…"
		}
		return e
	}
	return ""
}

// groupSteps summarises failures by their failing step, most frequent
// first: "delete_hooks.feature:12 \"D\" eventually receives… (×4); …", at
// most limit steps, then how many more.
func groupSteps(rs []ScenarioResult, limit int) string {
	count := map[string]int{}
	var order []string
	for _, r := range rs {
		at := r.Step
		if at == "" {
			at = r.URI + " (scenario setup)"
		}
		if count[at] == 0 {
			order = append(order, at)
		}
		count[at]++
	}
	sort.SliceStable(order, func(i, j int) bool { return count[order[i]] > count[order[j]] })
	var parts []string
	for i, at := range order {
		if i == limit {
			parts = append(parts, fmt.Sprintf("and %d more steps", len(order)-limit))
			break
		}
		parts = append(parts, fmt.Sprintf("%s (×%d)", at, count[at]))
	}
	return strings.Join(parts, "; ")
}

// WriteSelfCheckTable prints the report as two tables, violations then
// allowances, and returns the number of violations not caught and of
// allowance rows that did not pass.
func WriteSelfCheckTable(w io.Writer, rep SelfCheckReport) (missedViolations, failedAllowances int) {
	tw := tabwriter.NewWriter(w, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "VIOLATION\tCLAUSE\tCAUGHT\tFAILED/RUN\tCAUGHT AT (first failing assertion) / NOTE")
	for _, r := range rep.Violations {
		caught, note := "yes", r.CaughtAt
		switch {
		case r.Skipped:
			caught, note = "skipped", r.Note
		case !r.Caught:
			caught, note = "NO", r.Note
		}
		fmt.Fprintf(tw, "%s\t%s\t%s\t%d/%d\t%s\n", r.Violation.Name, r.Violation.Clause, caught, len(r.Failed), r.Scenarios, note)
	}
	tw.Flush()
	if len(rep.Allowances) > 0 {
		fmt.Fprintln(w)
		tw = tabwriter.NewWriter(w, 0, 4, 2, ' ', 0)
		fmt.Fprintln(tw, "ALLOWANCE\tCONTRACT TIER\tFAILED/RUN\tWHAT / FAILING SCENARIOS")
		for _, r := range rep.Allowances {
			verdict, note := "passes", r.What
			switch {
			case r.Skipped:
				verdict, note = "skipped", "--tags select no contract-tier scenario"
			case !r.Passed:
				verdict = "FAILS"
				note = "failing steps: " + groupSteps(r.Failed, 4)
				if len(r.FailsClean) > 0 {
					note += fmt.Sprintf(" (%d of them fail without it too)", len(r.FailsClean))
				}
			}
			fmt.Fprintf(tw, "%s\t%s\t%d/%d\t%s\n", r.Name, verdict, len(r.Failed), r.Scenarios, note)
		}
		tw.Flush()
	}
	return rep.Missed()
}

// ClausesWithoutViolation returns the clauses, of both tiers, that no
// violation of vs breaks: the self-check cannot prove the suite would catch
// a supervisor that gets them wrong.
func ClausesWithoutViolation(vs []violation.Violation) []string {
	have := map[string]bool{}
	for _, v := range vs {
		have[v.Clause] = true
	}
	var out []string
	for _, c := range clauses.All() {
		if !have[c.ID] {
			out = append(out, c.ID)
		}
	}
	return out
}
