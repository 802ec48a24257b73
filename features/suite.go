package features

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"log/slog"
	mrand "math/rand/v2"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/cucumber/godog"

	"github.com/depharness/depharness/fakes/cloud"
	"github.com/depharness/depharness/internal/syncbuf"
	"github.com/depharness/depharness/internal/version"
)

// Timing are the intervals the target is started with and the deadlines
// of the suite. Zero fields take the defaults of DefaultTiming.
type Timing struct {
	// Poll is TARGET_POLL_INTERVAL.
	Poll time.Duration
	// Retry is HOOK_RETRY_INTERVAL.
	Retry time.Duration
	// HookTimeout is HOOK_TIMEOUT.
	HookTimeout time.Duration
	// Ready is how long a target may take to answer GET /ping.
	Ready time.Duration
	// Await is how long an "eventually" step waits.
	Await time.Duration
}

// DefaultTiming is what zero Timing fields mean.
var DefaultTiming = Timing{
	Poll:        100 * time.Millisecond,
	Retry:       300 * time.Millisecond,
	HookTimeout: time.Second,
	Ready:       30 * time.Second,
	Await:       20 * time.Second,
}

func (t Timing) withDefaults() Timing {
	d := DefaultTiming
	if t.Poll > 0 {
		d.Poll = t.Poll
	}
	if t.Retry > 0 {
		d.Retry = t.Retry
	}
	if t.HookTimeout > 0 {
		d.HookTimeout = t.HookTimeout
	}
	if t.Ready > 0 {
		d.Ready = t.Ready
	}
	if t.Await > 0 {
		d.Await = t.Await
	}
	return d
}

// Config configures a run of the suite.
type Config struct {
	// Target makes each scenario's supervisor. Required; see
	// CommandTargetFactory.
	Target TargetFactory
	// TargetEnv is added to the harness variables (DEPHARNESS_VIOLATIONS
	// for the self-check).
	TargetEnv map[string]string
	// World, if nil, is LocalWorld.
	World WorldFactory
	// Tags is a godog tag expression ("@HOOK-202", "~@reference",
	// "@A && ~@B", "@A,@B"), which may also group with parentheses
	// ("(@A,@B) && ~@reference"); empty runs every scenario.
	Tags string
	// Concurrency is how many scenarios are busy at once (set up and not
	// yet torn down; one waiting out a negative window lets another start
	// meanwhile, slots.go), up to twice as many under way; 0 means 1. The
	// commands and the suite's own test default to DefaultConcurrency.
	Concurrency int
	// Seed orders the scenarios and seeds the fakes; 0 draws one (printed).
	Seed int64
	// ReportDir, if set, receives cucumber.json, junit.xml, report.html and
	// the logs of failed scenarios.
	ReportDir string
	// Output receives the console report; nil means os.Stdout.
	Output io.Writer
	// NoColors strips colours from the console report.
	NoColors bool
	// Timing, zero fields defaulted.
	Timing Timing
	// TestingT, if set, runs each scenario as a subtest.
	TestingT *testing.T
	// Logger receives harness messages; nil discards.
	Logger *slog.Logger
	// Features, if nil, is the suite's own Files.
	Features fs.FS
	// Paths, if set, are the feature files or "file.feature:line" scenarios
	// to run (a rerun file's lines); empty is every file.
	Paths []string
	// RerunFrom names the rerun list Paths came from, for the report.
	RerunFrom string
	// FailFast stops starting scenarios after the first failure (those
	// running finish).
	FailFast bool
	// Command is the target command as the user gave it, for the report
	// and its rerun command ("" for the reference proxy).
	Command string

	// ports, if set, is shared with other runs of this process.
	ports *portPool
	// slots, if set, bounds the busy scenarios across the runs sharing it
	// (the self-check's) instead of each run's Concurrency.
	slots busySlots
}

// ScenarioResult is the outcome of one scenario.
type ScenarioResult struct {
	URI    string
	Name   string
	Tags   []string
	Passed bool
	// Err is the first failing step's error.
	Err string
	// Step is the first failing step, "file.feature:line Step text" (empty
	// when the scenario failed before any step, in its setup).
	Step string
	// Harness is set when the failure is a HarnessError (target start or
	// readiness, fakes, world setup, the scenario's own arrangement), not an
	// assertion about the target.
	Harness bool
}

// AtAssertion reports whether the scenario failed at an assertion step: a
// verdict on the target, not a harness or arrangement failure.
func (r ScenarioResult) AtAssertion() bool { return !r.Passed && !r.Harness && r.Step != "" }

// Result is the outcome of a run.
type Result struct {
	Seed      int64
	Scenarios []ScenarioResult
	// Status is godog's exit status: 0 passed, 1 failed, 2 bad options.
	Status int
}

// Failed returns the scenarios that did not pass.
func (r Result) Failed() []ScenarioResult {
	var out []ScenarioResult
	for _, s := range r.Scenarios {
		if !s.Passed {
			out = append(out, s)
		}
	}
	return out
}

// DefaultConcurrency is how many scenarios the commands and the suite's own
// test keep busy at once unless told otherwise. A scenario mostly waits (the
// contract's windows, the intervals its steps count): against the reference
// proxy, eight busy at once (and those waiting out windows besides) use
// about a third of a 2-core machine, and the run takes a third of the time
// four at once took; the timing checks allow for the scheduling delay the
// harness measures meanwhile (bounds.go).
const DefaultConcurrency = 8

// ErrBadTags is returned for a tag expression that cannot be read.
var ErrBadTags = errors.New("bad tag expression")

// ErrNoScenarios is returned when the tag expression selects nothing.
var ErrNoScenarios = errors.New("the tag expression selects no scenario")

// CommandTargetFactory returns a TargetFactory starting command with sh -c.
func CommandTargetFactory(command string, ready time.Duration) TargetFactory {
	return func(out io.Writer) Target {
		return NewCommandTarget(CommandOptions{Command: command, Ready: ready}, out)
	}
}

// Run runs the suite. It fails with ErrNoScenarios when nothing is
// selected; a scenario failure is not an error but shows in the Result.
func Run(ctx context.Context, cfg Config) (Result, error) {
	if cfg.Target == nil {
		return Result{}, errors.New("features: Config.Target is required")
	}
	if cfg.World == nil {
		cfg.World = LocalWorld
	}
	if cfg.Features == nil {
		cfg.Features = Files
	}
	if cfg.Output == nil {
		cfg.Output = os.Stdout
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.New(slog.DiscardHandler)
	}
	cfg.Timing = cfg.Timing.withDefaults()
	if cfg.Seed == 0 {
		cfg.Seed = mrand.Int64N(1<<62) + 1
	}
	tags, n, err := selectScenarios(cfg)
	if err != nil {
		return Result{}, err
	}
	fmt.Fprintf(cfg.Output, "depharness verify: %d scenarios, seed %d (replay with --seed %d)\n", n, cfg.Seed, cfg.Seed)

	format := "pretty"
	if cfg.ReportDir != "" {
		if err := PrepareReportDir(cfg.ReportDir); err != nil {
			return Result{}, err
		}
		// junit.xml is written from cucumber.json with the report.
		format += ",cucumber:" + filepath.Join(cfg.ReportDir, "cucumber.json")
	}
	ports := cfg.ports
	if ports == nil {
		ports = newPortPool(cfg.Seed)
	}
	pickles, err := Pickles(cfg.Features)
	if err != nil {
		return Result{}, err
	}
	order, err := scheduledPaths(cfg.Features, tags, cfg.Paths, cfg.Timing, cfg.Seed)
	if err != nil {
		return Result{}, err
	}
	if cfg.slots == nil {
		cfg.slots = newBusySlots(cfg.Concurrency)
	}
	// Scenarios waiting out a window hold no slot: as many again may be
	// under way meanwhile, except when failing fast (a scenario godog has
	// started cannot be held back once another failed).
	underWay := 2 * max(cfg.Concurrency, 1)
	if cfg.FailFast {
		underWay = max(cfg.Concurrency, 1)
	}
	s := &suite{ctx: ctx, cfg: cfg, ports: ports, stepLines: map[string][]int64{}}
	for _, p := range pickles {
		k := p.URI + "\x00" + p.Name
		if _, ok := s.stepLines[k]; ok {
			continue // another example row of an outline: the same lines
		}
		for _, ps := range p.Steps {
			s.stepLines[k] = append(s.stepLines[k], ps.Line)
		}
	}
	console := newFeatureHeaders(cfg.Output)
	ts := godog.TestSuite{
		Name:                "depharness",
		ScenarioInitializer: s.initScenario,
		Options: &godog.Options{
			Format:         format,
			Tags:           tags,
			Concurrency:    underWay,
			Randomize:      cfg.Seed,
			Output:         console,
			NoColors:       cfg.NoColors,
			Strict:         true,
			StopOnFailure:  cfg.FailFast,
			FS:             cfg.Features,
			Paths:          order,
			DefaultContext: ctx,
			TestingT:       cfg.TestingT,
		},
	}
	status := ts.Run()
	s.closing.Wait()
	if err := console.Flush(); err != nil {
		return Result{}, fmt.Errorf("writing the console report: %w", err)
	}
	res := Result{Seed: cfg.Seed, Status: status, Scenarios: s.results()}
	if cfg.ReportDir != "" {
		if err := mergeCucumberJSON(filepath.Join(cfg.ReportDir, "cucumber.json")); err != nil {
			return res, fmt.Errorf("writing the reports: %w", err)
		}
		total, err := countSelected(cfg.Features, "")
		if err != nil {
			return res, err
		}
		info := RunInfo{Seed: cfg.Seed, Tags: cfg.Tags, Command: cfg.Command, Version: version.String(), Selected: n, Total: total, RerunFrom: cfg.RerunFrom}
		if err := WriteReportFiles(cfg.ReportDir, info, FeatureSources(cfg.Features)); err != nil {
			return res, fmt.Errorf("writing the reports: %w", err)
		}
	}
	if status == 2 {
		return res, errors.New("godog refused the options (see the output)")
	}
	return res, nil
}

// pathsOr is paths, or every feature file when empty.
func pathsOr(paths []string) []string {
	if len(paths) == 0 {
		return []string{"."}
	}
	return paths
}

// fileURI is a pickle's URI without the ":line" of a "file:line" path.
func fileURI(uri string) string {
	return lineSuffix.ReplaceAllString(strings.TrimPrefix(uri, "./"), "")
}

var lineSuffix = regexp.MustCompile(`:\d+$`)

// countSelected counts the pickles of fs that tags selects.
func countSelected(fsys fs.FS, tags string, paths ...string) (int, error) {
	feats, err := godog.TestSuite{Options: &godog.Options{Tags: tags, FS: fsys, Paths: pathsOr(paths)}}.RetrieveFeatures()
	if err != nil {
		return 0, err
	}
	n := 0
	for _, f := range feats {
		n += len(f.Pickles)
	}
	return n, nil
}

// suite is the state shared by the scenarios of one run.
type suite struct {
	ctx   context.Context // the run's
	cfg   Config
	ports *portPool
	// stepLines are the feature-file lines of each scenario's steps, by
	// uri and scenario name, for the report of a failing step.
	stepLines map[string][]int64

	// closing are the teardowns of finished scenarios under way.
	closing sync.WaitGroup

	mu  sync.Mutex
	res []ScenarioResult
	seq int
}

func (s *suite) record(r ScenarioResult) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.res = append(s.res, r)
}

func (s *suite) results() []ScenarioResult {
	s.mu.Lock()
	defer s.mu.Unlock()
	return append([]ScenarioResult(nil), s.res...)
}

// stepWhere is "file.feature:line Text" of step in scenario p.
func (s *suite) stepWhere(p *godog.Scenario, step *godog.Step) string {
	uri := fileURI(p.Uri)
	lines := s.stepLines[uri+"\x00"+p.Name]
	for i, ps := range p.Steps {
		if ps.Id == step.Id && i < len(lines) && lines[i] > 0 {
			return fmt.Sprintf("%s:%d %s", uri, lines[i], step.Text)
		}
	}
	return uri + " " + step.Text
}

func (s *suite) nextSeq() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.seq++
	return s.seq
}

type scenarioKey struct{}

// scenarioOf returns the scenario state carried in ctx.
func scenarioOf(ctx context.Context) *scenario {
	sc, _ := ctx.Value(scenarioKey{}).(*scenario)
	return sc
}

// syncBuffer is a bytes.Buffer safe for concurrent writers.
type syncBuffer = syncbuf.Buffer

func (s *suite) initScenario(sc *godog.ScenarioContext) {
	// godog calls this just before it starts the scenario's clock: waiting
	// for a busy slot here keeps the wait out of the scenario's time.
	// (Every scenario has steps, scheduledPaths holds it, so the Before
	// hook that takes over the slot runs.)
	held := s.cfg.slots != nil && s.cfg.slots.take(s.ctx) == nil
	sc.Before(func(ctx context.Context, p *godog.Scenario) (context.Context, error) {
		st, err := s.newScenario(ctx, p, held)
		if err != nil {
			return ctx, arrange(fmt.Errorf("setting up the scenario: %w", err))
		}
		return context.WithValue(ctx, scenarioKey{}, st), nil
	})
	sc.After(func(ctx context.Context, p *godog.Scenario, err error) (context.Context, error) {
		st := scenarioOf(ctx)
		r := ScenarioResult{URI: fileURI(p.Uri), Name: p.Name, Passed: err == nil}
		for _, t := range p.Tags {
			r.Tags = append(r.Tags, t.Name)
		}
		if err != nil {
			r.Err = err.Error()
			r.Harness = IsHarnessError(err)
			if st != nil && st.failed != nil {
				r.Step, r.Harness = st.failed.where, st.failed.harness
			}
		}
		s.record(r)
		s.cfg.Logger.Debug("scenario done", "scenario", p.Name, "passed", r.Passed, "err", r.Err)
		if st != nil {
			// The verdict is in: the next scenario may start while this
			// one's supervisor stops and its world closes. Run waits for
			// every teardown before it writes the reports.
			s.closing.Go(func() { st.close(err) })
		}
		return ctx, nil
	})
	sc.StepContext().Before(func(ctx context.Context, step *godog.Step) (context.Context, error) {
		if st := scenarioOf(ctx); st != nil {
			st.logf("STEP %s", step.Text)
		}
		return ctx, nil
	})
	registerSteps(sc)
}

var unsafeName = regexp.MustCompile(`[^A-Za-z0-9._-]+`)

// newScenario sets up scenario p, taking a busy slot unless held.
func (s *suite) newScenario(ctx context.Context, p *godog.Scenario, held bool) (*scenario, error) {
	if !held {
		if err := s.cfg.slots.take(ctx); err != nil {
			return nil, err
		}
	}
	seq := s.nextSeq()
	st := &scenario{
		suite:    s,
		cfg:      s.cfg,
		holding:  s.cfg.slots != nil,
		pickle:   p,
		name:     p.Name,
		id:       fmt.Sprintf("%03d-%s", seq, logName(p.Name)),
		log:      &syncBuffer{},
		apps:     map[string]*appState{},
		releases: map[string]*releaseState{},
		devices:  map[string]*deviceState{},
		scripts:  map[string]pendingScript{},
	}
	for _, t := range p.Tags {
		st.reference = st.reference || t.Name == TagReference
	}
	st.logger = slog.New(slog.NewTextHandler(st.log, &slog.HandlerOptions{Level: slog.LevelDebug}))
	st.targetOut = &syncBuffer{}
	ok := false
	defer func() {
		if !ok {
			st.close(errors.New("setup failed"))
		}
	}()
	var err error
	st.dataDir, err = os.MkdirTemp("", "depharness-data-")
	if err != nil {
		return nil, err
	}
	w, err := s.cfg.World(ctx, WorldOptions{Seed: s.cfg.Seed + int64(seq), Logger: st.logger})
	if err != nil {
		return nil, fmt.Errorf("starting the world: %w", err)
	}
	st.world = w
	st.gateway, err = w.Cloud.CreateGateway(cloud.GatewaySpec{})
	if err != nil {
		return nil, fmt.Errorf("creating the gateway: %w", err)
	}
	if st.port, err = s.ports.take(); err != nil {
		return nil, err
	}
	if st.hookPort, err = s.ports.take(); err != nil {
		return nil, err
	}
	var kb [16]byte
	_, _ = rand.Read(kb[:])
	st.apiKey = hex.EncodeToString(kb[:])
	// Another process on the machine may bind the port between the pool's
	// check and this listener: take another one then.
	for try := 0; ; try++ {
		st.hooks, err = newHookServer(st.hookPort, "/v1/devices/", st.logger)
		if err == nil || !errors.Is(err, syscall.EADDRINUSE) || try == 3 {
			break
		}
		s.ports.release(st.hookPort)
		if st.hookPort, err = s.ports.take(); err != nil {
			return nil, err
		}
	}
	if err != nil {
		return nil, err
	}
	st.target = s.cfg.Target(io.MultiWriter(st.log, st.targetOut))
	st.logf("scenario %q: data %s, supervisor port %d, hooks %s, cloud %s", p.Name, st.dataDir, st.port, st.hooks.baseURL(), w.CloudURL)
	ok = true
	return st, nil
}
