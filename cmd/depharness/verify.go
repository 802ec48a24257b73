package main

import (
	"context"
	"errors"
	"fmt"
	"os"
	"strings"
	"time"

	"github.com/depharness/depharness/features"
	"github.com/depharness/depharness/features/clauses"
	"github.com/depharness/depharness/proxy/violation"
)

func init() {
	commands["verify"] = command{
		summary: "run the compliance suite against a supervisor (default: the reference proxy)",
		run:     runVerify,
	}
}

// shellQuote quotes s for sh -c.
func shellQuote(s string) string { return "'" + strings.ReplaceAll(s, "'", `'\''`) + "'" }

func runVerify(ctx context.Context, env *cliEnv, args []string) error {
	f := newFlags(env, "verify", "Run the compliance suite of CONTRACT.md against a supervisor started as a command, "+
		"one fresh fake cloud, registry, gateway app and DATA_DIR per scenario, and write reports.")
	targetCmd := f.String("target-cmd", "DEPHARNESS_TARGET_CMD", "", "shell command starting the supervisor under test with the harness variables; empty runs this binary's reference proxy")
	tags := f.String("tags", "DEPHARNESS_TAGS", "", `godog tag expression selecting scenarios ("@contract", "~@reference", "@HOOK-202")`)
	reportDir := f.String("report-dir", "DEPHARNESS_REPORT_DIR", "reports", "directory for cucumber.json, junit.xml, report.html and the logs of failed scenarios")
	concurrency := f.Int("concurrency", "DEPHARNESS_CONCURRENCY", features.DefaultConcurrency, "scenarios run at once")
	seed := f.Int64("seed", "DEPHARNESS_SEED", 0, "seed of the scenario order and the fakes; 0 draws one (printed, to replay a run)")
	selfCheck := f.Bool("self-check", "", false, "prove the suite catches every named violation of the reference proxy and passes every allowance in its contract tier, instead of a normal run")
	selfCheckParallel := f.Int("self-check-parallel", "", 4, "runs (violations, allowances) side by side in --self-check")
	poll := f.Duration("poll-interval", "", features.DefaultTiming.Poll, "TARGET_POLL_INTERVAL given to the target")
	retry := f.Duration("hook-retry-interval", "", features.DefaultTiming.Retry, "HOOK_RETRY_INTERVAL given to the target")
	hookTimeout := f.Duration("hook-timeout", "", features.DefaultTiming.HookTimeout, "HOOK_TIMEOUT given to the target")
	ready := f.Duration("ready-timeout", "", features.DefaultTiming.Ready, "how long the target may take to answer GET /ping")
	await := f.Duration("await-timeout", "", features.DefaultTiming.Await, "how long an \"eventually\" step waits")
	list := f.Bool("list", "", false, "print the scenarios --tags selects (file:line, name, tags) and exit, running nothing")
	rerun := f.String("rerun", "DEPHARNESS_RERUN", "", "run only the scenarios listed in this file (file.feature:line lines; every run writes the failed ones to rerun.txt in its report directory)")
	failFast := f.Bool("fail-fast", "DEPHARNESS_FAIL_FAST", false, "stop starting scenarios after the first failure")
	listClauses := f.Bool("list-clauses", "", false, "print the contract's clauses (id, tier, text) and exit; the whole contract is docs/contract.md")
	if err := f.Parse(args); err != nil {
		return err
	}
	if *listClauses {
		return clauses.WriteList(env.stdout, clauses.All())
	}
	var paths []string
	if *rerun != "" {
		if *selfCheck {
			return usagef("--rerun and --self-check do not go together")
		}
		// Read before the report directory, which may hold this very
		// file, is emptied.
		var err error
		if paths, err = features.ReadRerunFile(*rerun); err != nil {
			return usageError{err}
		}
		if len(paths) == 0 {
			fmt.Fprintf(env.stdout, "depharness verify: %s lists no scenario: nothing to rerun\n", *rerun)
			return nil
		}
	}
	if *list {
		n, err := features.ListScenarios(env.stdout, features.Config{Tags: *tags, Paths: paths})
		if errors.Is(err, features.ErrNoScenarios) || errors.Is(err, features.ErrBadTags) {
			return usageError{err}
		}
		if err != nil {
			return err
		}
		fmt.Fprintf(env.stdout, "\n%d scenarios\n", n)
		return nil
	}
	log, err := f.logger()
	if err != nil {
		return err
	}
	if *concurrency < 1 {
		return usagef("--concurrency must be at least 1, got %d", *concurrency)
	}
	cmd, targetEnv := *targetCmd, map[string]string{}
	if cmd == "" {
		self, err := os.Executable()
		if err != nil {
			return fmt.Errorf("locating this binary to run its reference proxy: %w", err)
		}
		cmd = "exec " + shellQuote(self) + " proxy"
		targetEnv = features.ReferenceProxyEnv()
	}
	timing := features.Timing{Poll: *poll, Retry: *retry, HookTimeout: *hookTimeout, Ready: *ready, Await: *await}
	cfg := features.Config{
		Command:     *targetCmd,
		Target:      features.CommandTargetFactory(cmd, *ready),
		TargetEnv:   targetEnv,
		Tags:        *tags,
		Concurrency: *concurrency,
		Seed:        *seed,
		FailFast:    *failFast,
		Paths:       paths,
		RerunFrom:   *rerun,
		ReportDir:   *reportDir,
		Output:      env.stdout,
		NoColors:    !isTerminal(env.stdout),
		Timing:      timing,
		Logger:      log,
	}
	// Refuse bad options before starting anything. The self-check
	// intersects --tags with each clause's tags: only the expression's
	// syntax matters there.
	if _, err := features.SelectScenarios(cfg); errors.Is(err, features.ErrBadTags) ||
		!*selfCheck && errors.Is(err, features.ErrNoScenarios) {
		return usageError{err}
	} else if err != nil && !errors.Is(err, features.ErrNoScenarios) {
		return err
	}
	// Start the target once before any scenario: a target that cannot
	// start is said once, with its exit status and last output, instead of
	// by every scenario in turn.
	if err := features.Preflight(ctx, cfg); err != nil {
		var pe *features.PreflightError
		if errors.As(err, &pe) {
			fmt.Fprint(env.stderr, pe.Explain())
			return exitStatus(1)
		}
		return err
	}
	if *selfCheck {
		plan := features.SelfCheckPlan{Parallel: *selfCheckParallel}
		for _, n := range violation.Names() {
			plan.Violations = append(plan.Violations, violation.Known[n])
		}
		for _, n := range violation.AllowanceNames() {
			plan.Allowances = append(plan.Allowances, violation.KnownAllowances[n])
		}
		start := time.Now()
		rep, err := features.SelfCheck(ctx, cfg, plan)
		if errors.Is(err, features.ErrBadTags) {
			return usageError{err}
		}
		if err != nil {
			return err
		}
		fmt.Fprintln(env.stdout)
		missed, failed := features.WriteSelfCheckTable(env.stdout, rep)
		un := features.ClausesWithoutViolation(plan.Violations)
		if len(un) > 0 {
			fmt.Fprintf(env.stdout, "\nclauses no violation breaks (not proven by the self-check): %s\n", strings.Join(un, ", "))
		}
		fmt.Fprintf(env.stdout, "\nself-check took %s\n", time.Since(start).Round(time.Second))
		var probs []string
		if missed > 0 {
			probs = append(probs, fmt.Sprintf("%d of %d violations not caught at an assertion", missed, len(rep.Violations)))
		}
		if failed > 0 {
			probs = append(probs, fmt.Sprintf("the contract tier fails %d of %d allowance runs", failed, len(rep.Allowances)))
		}
		if len(un) > 0 && *tags == "" {
			probs = append(probs, fmt.Sprintf("%d clauses have no violation", len(un)))
		}
		if len(probs) > 0 {
			return fmt.Errorf("self-check: %s (reports in %s/self-check)", strings.Join(probs, "; "), *reportDir)
		}
		fmt.Fprintf(env.stdout, "self-check: every violation caught at an assertion, the contract tier passes every allowance\n")
		return nil
	}
	res, err := features.Run(ctx, cfg)
	if errors.Is(err, features.ErrNoScenarios) || errors.Is(err, features.ErrBadTags) {
		return usageError{err}
	}
	if err != nil {
		return err
	}
	failed := res.Failed()
	fmt.Fprintf(env.stdout, "\ndepharness verify: %d scenarios, %d failed, seed %d; reports in %s (report.html)\n",
		len(res.Scenarios), len(failed), res.Seed, *reportDir)
	if len(failed) > 0 || res.Status != 0 {
		return fmt.Errorf("%d of %d scenarios failed (replay with --seed %d)", len(failed), len(res.Scenarios), res.Seed)
	}
	return nil
}
