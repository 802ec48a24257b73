package features

import (
	"context"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/cucumber/godog"
	messages "github.com/cucumber/messages/go/v34"
)

// PreflightError is a target that could not be started once, before any
// scenario: every scenario would fail the same way, so none is run.
type PreflightError struct {
	// Start is the target's start failure (a *StartError for a command
	// target: its exit status and last output lines).
	Start error
	// Log is the preflight's whole log (harness, fakes, target output), if
	// a report directory was given.
	Log string
}

func (e *PreflightError) Error() string {
	msg := "the target did not start, so no scenario was run: " + e.Start.Error()
	if e.Log != "" {
		msg += "\n(whole log: " + e.Log + ")"
	}
	return msg
}

func (e *PreflightError) Unwrap() error { return e.Start }

// Explain is the message for a person: what was run, how it ended and its
// last output, each on its own lines.
func (e *PreflightError) Explain() string {
	var b strings.Builder
	b.WriteString("depharness verify: the target did not start, so no scenario was run.\n")
	var se *StartError
	if errors.As(e.Start, &se) {
		fmt.Fprintf(&b, "  command:  %s\n", redactText(se.Command))
		if errors.Is(se.Err, errExited) && se.Exit != "" {
			fmt.Fprintf(&b, "  result:   exited (%s) before GET /ping answered 200\n", se.Exit)
		} else {
			fmt.Fprintf(&b, "  result:   %s\n", se.Err)
		}
		if len(se.Output) == 0 {
			b.WriteString("  output:   none\n")
		} else {
			b.WriteString("  its last output:\n")
			for _, l := range se.Output {
				fmt.Fprintf(&b, "    %s\n", l)
			}
		}
	} else {
		fmt.Fprintf(&b, "  cause:    %v\n", e.Start)
	}
	if e.Log != "" {
		fmt.Fprintf(&b, "  whole log: %s\n", e.Log)
	}
	return b.String()
}

// Preflight starts the target once with the harness variables of a fresh
// world, waits for GET /ping to answer 200 and stops it, before any
// scenario runs. A target that does not start gives a *PreflightError
// holding its exit status and last output, and its log is kept in the
// report directory as logs/000-preflight.log. The report directory's
// reports of an earlier run are removed first.
func Preflight(ctx context.Context, cfg Config) error {
	if cfg.Target == nil {
		return errors.New("features: Config.Target is required")
	}
	if cfg.World == nil {
		cfg.World = LocalWorld
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.New(slog.DiscardHandler)
	}
	cfg.Timing = cfg.Timing.withDefaults()
	if cfg.ReportDir != "" {
		if err := PrepareReportDir(cfg.ReportDir); err != nil {
			return err
		}
	}
	ports := cfg.ports
	if ports == nil {
		ports = newPortPool(cfg.Seed + time.Now().UnixNano())
	}
	s := &suite{ctx: ctx, cfg: cfg, ports: ports, stepLines: map[string][]int64{}}
	p := &godog.Scenario{Name: "preflight", Uri: "preflight", Tags: []*messages.PickleTag{}}
	st, err := s.newScenario(ctx, p, false)
	if err != nil {
		return fmt.Errorf("preflight: setting up a world for the target: %w", err)
	}
	st.id = "000-preflight"
	st.logf("preflight: starting the target once before any scenario")
	startErr := st.target.Start(ctx, st.env())
	if startErr != nil {
		var pr *PingRefusedError
		if errors.As(startErr, &pr) {
			// The target runs and answers: a verdict on AUTH-3 that the
			// scenarios give, not a reason to run none.
			startErr = nil
		}
	}
	st.close(startErr)
	if startErr == nil {
		return nil
	}
	pe := &PreflightError{Start: startErr}
	if cfg.ReportDir != "" {
		pe.Log = filepath.Join(cfg.ReportDir, "logs", st.id+".log")
	}
	return pe
}

// PrepareReportDir creates dir and its logs folder and removes the reports
// and scenario logs an earlier run left there, so that nothing in it is
// stale. Other files are left alone.
func PrepareReportDir(dir string) error {
	if err := os.MkdirAll(filepath.Join(dir, "logs"), 0o755); err != nil {
		return err
	}
	for _, name := range []string{"cucumber.json", "junit.xml", "report.html", "rerun.txt"} {
		if err := os.Remove(filepath.Join(dir, name)); err != nil && !errors.Is(err, os.ErrNotExist) {
			return err
		}
	}
	logs, err := filepath.Glob(filepath.Join(dir, "logs", "*.log"))
	if err != nil {
		return err
	}
	for _, l := range logs {
		if err := os.Remove(l); err != nil {
			return err
		}
	}
	return nil
}

// SelectScenarios counts the scenarios cfg.Tags selects in cfg.Features
// (the suite's own if nil): ErrBadTags for an expression that cannot be
// read, ErrNoScenarios when it selects nothing. Run checks the same; a
// caller checks first to refuse bad options before starting anything.
func SelectScenarios(cfg Config) (int, error) {
	_, n, err := selectScenarios(cfg)
	return n, err
}

// selectScenarios is SelectScenarios with the tags as godog reads them.
func selectScenarios(cfg Config) (string, int, error) {
	fsys, tags, err := selection(cfg)
	if err != nil {
		return "", 0, err
	}
	n, err := countSelected(fsys, tags, cfg.Paths...)
	if err != nil {
		return "", 0, err
	}
	if n == 0 {
		return "", 0, fmt.Errorf("%w (tags %q)", ErrNoScenarios, cfg.Tags)
	}
	return tags, n, nil
}

// selection is cfg's features (the suite's own if nil) and its tags as
// godog reads them, or ErrBadTags.
func selection(cfg Config) (fs.FS, string, error) {
	fsys := cfg.Features
	if fsys == nil {
		fsys = Files
	}
	tags, err := GodogTags(cfg.Tags)
	if err != nil {
		return nil, "", fmt.Errorf("%w: %v", ErrBadTags, err)
	}
	return fsys, tags, nil
}

// ListScenarios writes the scenarios cfg.Tags selects, one a line:
// "file.feature:line  name  @tags", and returns how many. Nothing is run.
func ListScenarios(w io.Writer, cfg Config) (int, error) {
	fsys, tags, err := selection(cfg)
	if err != nil {
		return 0, err
	}
	feats, err := godog.TestSuite{Options: &godog.Options{Tags: tags, FS: fsys, Paths: pathsOr(cfg.Paths)}}.RetrieveFeatures()
	if err != nil {
		return 0, err
	}
	selected := map[string]int{}
	for _, f := range feats {
		for _, p := range f.Pickles {
			selected[fileURI(p.Uri)+"\x00"+p.Name]++
		}
	}
	all, err := Pickles(fsys)
	if err != nil {
		return 0, err
	}
	n := 0
	for _, p := range all {
		k := p.URI + "\x00" + p.Name
		if selected[k] == 0 {
			continue
		}
		selected[k]--
		n++
		if _, err := fmt.Fprintf(w, "%s:%d\t%s\t%s\n", p.URI, p.Line, p.Name, strings.Join(p.Tags, " ")); err != nil {
			return n, err
		}
	}
	if n == 0 {
		return 0, fmt.Errorf("%w (tags %q)", ErrNoScenarios, cfg.Tags)
	}
	return n, nil
}
