package main

import (
	"context"
	"errors"
	"fmt"
	"os"
	"strings"
	"time"

	"github.com/spf13/cobra"

	"github.com/depharness/depharness/features"
	"github.com/depharness/depharness/features/clauses"
	"github.com/depharness/depharness/internal/settings"
	"github.com/depharness/depharness/proxy/config"
	"github.com/depharness/depharness/proxy/violation"
)

// shellQuote quotes s for sh -c.
func shellQuote(s string) string { return "'" + strings.ReplaceAll(s, "'", `'\''`) + "'" }

// verifyOptions are the verify command's settings.
type verifyOptions struct {
	log                                  logOptions
	targetCmd, tags, reportDir, rerun    string
	concurrency, selfCheckParallel       int
	seed                                 int64
	selfCheck, list, failFast, listClaus bool
	timing                               features.Timing
}

func newVerifyCmd(env *cliEnv) *cobra.Command {
	var o verifyOptions
	t := &o.timing
	table := append(logSettings(&o.log, "info"),
		settings.Setting{Flag: "target-cmd", Legacy: []string{"DEPHARNESS_TARGET_CMD"}, Value: settings.Text(&o.targetCmd, ""),
			Help: "shell command starting the supervisor under test with the harness variables; empty runs this binary's reference proxy"},
		settings.Setting{Flag: "tags", Legacy: []string{"DEPHARNESS_TAGS"}, Value: settings.Text(&o.tags, ""),
			Help: `godog tag expression selecting scenarios ("@contract", "~@reference", "@HOOK-202")`},
		settings.Setting{Flag: "report-dir", Legacy: []string{"DEPHARNESS_REPORT_DIR"}, Value: settings.Text(&o.reportDir, "reports"),
			Help: "directory for cucumber.json, junit.xml, report.html and the logs of failed scenarios"},
		settings.Setting{Flag: "concurrency", Legacy: []string{"DEPHARNESS_CONCURRENCY"}, Value: settings.Int(&o.concurrency, features.DefaultConcurrency),
			Help: "scenarios busy at once (a scenario waiting out a window in which nothing may happen gives up its slot meanwhile)"},
		settings.Setting{Flag: "seed", Legacy: []string{"DEPHARNESS_SEED"}, Value: settings.Int64(&o.seed, 0),
			Help: "seed of the scenario order and the fakes; 0 draws one (printed, to replay a run)"},
		settings.Setting{Flag: "self-check", Value: settings.Bool(&o.selfCheck, false),
			Help: "prove the suite catches every named violation of the reference proxy and passes every allowance in its contract tier, instead of a normal run"},
		settings.Setting{Flag: "self-check-parallel", Value: settings.Int(&o.selfCheckParallel, 4),
			Help: "runs (violations, allowances) side by side in --self-check"},
		// The timing given to the target: the contract's variables (with
		// the poll and retry intervals below).
		settings.Setting{Flag: "hook-timeout", Env: config.EnvHookTimeout, Value: settings.Duration(&t.HookTimeout, features.DefaultTiming.HookTimeout),
			Help: "HOOK_TIMEOUT given to the target"},
		settings.Setting{Flag: "ready-timeout", Value: settings.Duration(&t.Ready, features.DefaultTiming.Ready),
			Help: "how long the target may take to answer GET /ping"},
		settings.Setting{Flag: "await-timeout", Value: settings.Duration(&t.Await, features.DefaultTiming.Await),
			Help: `how long an "eventually" step waits`},
		settings.Setting{Flag: "list", Value: settings.Bool(&o.list, false),
			Help: "print the scenarios --tags selects (file:line, name, tags) and exit, running nothing"},
		settings.Setting{Flag: "rerun", Legacy: []string{"DEPHARNESS_RERUN"}, Value: settings.Text(&o.rerun, ""),
			Help: "run only the scenarios listed in this file (file.feature:line lines; every run writes the failed ones to rerun.txt in its report directory)"},
		settings.Setting{Flag: "fail-fast", Legacy: []string{"DEPHARNESS_FAIL_FAST"}, Value: settings.Bool(&o.failFast, false),
			Help: "stop starting scenarios after the first failure"},
		settings.Setting{Flag: "list-clauses", Value: settings.Bool(&o.listClaus, false),
			Help: "print the contract's clauses (id, tier, text) and exit; the whole contract is docs/contract.md"},
	)
	table = append(table, proxyTimingSettings(&t.Poll, &t.Retry, features.DefaultTiming.Poll, features.DefaultTiming.Retry, "the supervisor under test's")...)
	return newCommand("verify", "run the compliance suite against a supervisor (default: the reference proxy)",
		"Run the compliance suite of the contract against a supervisor started as a command, one fresh\n"+
			"fake cloud, registry, gateway app and DATA_DIR per scenario, and write reports.",
		table, func(cmd *cobra.Command) error { return runVerify(cmd.Context(), env, &o) })
}

func runVerify(ctx context.Context, env *cliEnv, o *verifyOptions) error {
	if o.listClaus {
		return clauses.WriteList(env.stdout, clauses.All())
	}
	var paths []string
	if o.rerun != "" {
		if o.selfCheck {
			return usagef("--rerun and --self-check do not go together")
		}
		// Read before the report directory, which may hold this very
		// file, is emptied.
		var err error
		if paths, err = features.ReadRerunFile(o.rerun); err != nil {
			return usageError{err}
		}
		if len(paths) == 0 {
			fmt.Fprintf(env.stdout, "depharness verify: %s lists no scenario: nothing to rerun\n", o.rerun)
			return nil
		}
	}
	if o.list {
		n, err := features.ListScenarios(env.stdout, features.Config{Tags: o.tags, Paths: paths})
		if errors.Is(err, features.ErrNoScenarios) || errors.Is(err, features.ErrBadTags) {
			return usageError{err}
		}
		if err != nil {
			return err
		}
		fmt.Fprintf(env.stdout, "\n%d scenarios\n", n)
		return nil
	}
	log := o.log.logger(env.stderr)
	if o.concurrency < 1 {
		return usagef("--concurrency must be at least 1, got %d", o.concurrency)
	}
	for flag, d := range map[string]time.Duration{"poll-interval": o.timing.Poll, "hook-retry-interval": o.timing.Retry,
		"hook-timeout": o.timing.HookTimeout, "ready-timeout": o.timing.Ready, "await-timeout": o.timing.Await} {
		if d <= 0 {
			return usagef("--%s must be positive, got %s", flag, d)
		}
	}
	cmd, targetEnv := o.targetCmd, map[string]string{}
	if cmd == "" {
		self, err := os.Executable()
		if err != nil {
			return fmt.Errorf("locating this binary to run its reference proxy: %w", err)
		}
		cmd = "exec " + shellQuote(self) + " proxy"
		targetEnv = features.ReferenceProxyEnv()
	}
	cfg := features.Config{
		Command:     o.targetCmd,
		Target:      features.CommandTargetFactory(cmd, o.timing.Ready),
		TargetEnv:   targetEnv,
		Tags:        o.tags,
		Concurrency: o.concurrency,
		Seed:        o.seed,
		FailFast:    o.failFast,
		Paths:       paths,
		RerunFrom:   o.rerun,
		ReportDir:   o.reportDir,
		Output:      env.stdout,
		NoColors:    !isTerminal(env.stdout),
		Timing:      o.timing,
		Logger:      log,
	}
	// Refuse bad options before starting anything. The self-check
	// intersects --tags with each clause's tags: only the expression's
	// syntax matters there.
	if _, err := features.SelectScenarios(cfg); errors.Is(err, features.ErrBadTags) ||
		!o.selfCheck && errors.Is(err, features.ErrNoScenarios) {
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
	if o.selfCheck {
		plan := features.SelfCheckPlan{Parallel: o.selfCheckParallel}
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
		if len(un) > 0 && o.tags == "" {
			probs = append(probs, fmt.Sprintf("%d clauses have no violation", len(un)))
		}
		if len(probs) > 0 {
			return fmt.Errorf("self-check: %s (reports in %s/self-check)", strings.Join(probs, "; "), o.reportDir)
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
		len(res.Scenarios), len(failed), res.Seed, o.reportDir)
	if len(failed) > 0 || res.Status != 0 {
		return fmt.Errorf("%d of %d scenarios failed (replay with --seed %d)", len(failed), len(res.Scenarios), res.Seed)
	}
	return nil
}
