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
	// Failed scenarios caught the violation.
	Failed []string
	// Caught is true when at least one scenario tagged with the clause
	// failed with the violation on and passed without it.
	Caught bool
	// Note explains a row that is not caught for another reason.
	Note string
}

// SelfCheck proves the suite catches every violation of vs: it first runs
// the scenarios of all their clauses against the clean reference proxy
// (they must pass: a clause that already fails proves nothing), then, for
// each violation, the scenarios tagged with its clause with
// DEPHARNESS_VIOLATIONS set to it. cfg is the configuration of a normal run
// against the reference proxy; its Tags further restrict the scenarios.
// Reports of each run go under cfg.ReportDir/self-check/. Up to parallel
// violations are checked at once.
func SelfCheck(ctx context.Context, cfg Config, vs []violation.Violation, parallel int) ([]SelfCheckRow, error) {
	if len(vs) == 0 {
		return nil, errors.New("no violations to check")
	}
	sort.Slice(vs, func(i, j int) bool { return vs[i].Name < vs[j].Name })
	out := cfg.Output
	if out == nil {
		out = os.Stdout
	}
	base := cfg.ReportDir
	// One pool of ports for every run, so that runs side by side never
	// hand out the same port.
	if cfg.ports == nil {
		cfg.ports = newPortPool(cfg.Seed)
	}
	run := func(ctx context.Context, name, tags string, env map[string]string) (Result, error) {
		c := cfg
		c.Tags = tags
		if cfg.Tags != "" {
			c.Tags = "(" + tags + ") && (" + cfg.Tags + ")"
		}
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
			c.ReportDir = filepath.Join(base, "self-check", name)
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

	clauseSet := map[string]bool{}
	for _, v := range vs {
		clauseSet["@"+v.Clause] = true
	}
	var all []string
	for c := range clauseSet {
		all = append(all, c)
	}
	sort.Strings(all)
	fmt.Fprintf(out, "self-check: baseline run of the scenarios of %d clauses without violations\n", len(all))
	baseline, err := run(ctx, "baseline", strings.Join(all, ","), map[string]string{"DEPHARNESS_VIOLATIONS": ""})
	if err != nil && !errors.Is(err, ErrNoScenarios) {
		return nil, fmt.Errorf("baseline: %w", err)
	}
	failsClean := map[string][]string{}
	for _, s := range baseline.Failed() {
		for _, t := range s.Tags {
			failsClean[t] = append(failsClean[t], s.Name)
		}
	}

	rows := make([]SelfCheckRow, len(vs))
	var outMu sync.Mutex
	say := func(format string, a ...any) {
		outMu.Lock()
		defer outMu.Unlock()
		fmt.Fprintf(out, format, a...)
	}
	g, gctx := errgroup.WithContext(ctx)
	g.SetLimit(max(parallel, 1))
	for i, v := range vs {
		g.Go(func() error {
			row := SelfCheckRow{Violation: v}
			defer func() { rows[i] = row }()
			if f := failsClean["@"+v.Clause]; len(f) > 0 {
				row.Note = fmt.Sprintf("inconclusive: %d scenarios of %s fail without the violation", len(f), v.Clause)
				say("self-check: %-32s %s\n", v.Name, row.Note)
				return nil
			}
			res, err := run(gctx, v.Name, "@"+v.Clause, map[string]string{"DEPHARNESS_VIOLATIONS": v.Name})
			switch {
			case errors.Is(err, ErrNoScenarios):
				row.Note = "no scenario checks " + v.Clause
			case err != nil:
				return fmt.Errorf("violation %s: %w", v.Name, err)
			}
			row.Scenarios = len(res.Scenarios)
			for _, s := range res.Failed() {
				row.Failed = append(row.Failed, s.Name)
			}
			row.Caught = len(row.Failed) > 0
			if !row.Caught && row.Note == "" {
				row.Note = fmt.Sprintf("all %d scenarios of %s passed with the violation on", row.Scenarios, v.Clause)
			}
			say("self-check: %-32s caught=%v (%d of %d scenarios failed)\n", v.Name, row.Caught, len(row.Failed), row.Scenarios)
			return nil
		})
	}
	err = g.Wait()
	return rows, err
}

// WriteSelfCheckTable prints the rows as a table and returns the number of
// violations not caught.
func WriteSelfCheckTable(w io.Writer, rows []SelfCheckRow) int {
	tw := tabwriter.NewWriter(w, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "VIOLATION\tCLAUSE\tCAUGHT\tFAILED/RUN\tWHAT / NOTE")
	missed := 0
	for _, r := range rows {
		caught := "yes"
		if !r.Caught {
			caught = "NO"
			missed++
		}
		note := r.Violation.What
		if r.Note != "" {
			note = r.Note
		}
		fmt.Fprintf(tw, "%s\t%s\t%s\t%d/%d\t%s\n", r.Violation.Name, r.Violation.Clause, caught, len(r.Failed), r.Scenarios, note)
	}
	tw.Flush()
	return missed
}

// ClausesWithoutViolation returns the contract clauses that no violation of
// vs breaks: the self-check cannot prove the suite would catch a
// supervisor that gets them wrong.
func ClausesWithoutViolation(vs []violation.Violation) []string {
	have := map[string]bool{}
	for _, v := range vs {
		have[v.Clause] = true
	}
	var out []string
	for _, c := range clauses.All() {
		if c.Tier == clauses.Contract && !have[c.ID] {
			out = append(out, c.ID)
		}
	}
	return out
}
