// Command perf runs the headline performance set of depharness and prints
// each number beside its floor (make perf):
//
//   - a rollout of 10,000 devices through depharness load, in process, the
//     median of three runs, beside the floor the run measured for itself
//     (its HTTP round trips against a bare handler);
//   - the proxy's headline Go benchmarks, by name (the medians of three
//     runs of each reported metric, beside the metric the benchmark
//     reports as its floor, "floor-<unit>");
//   - the time of the in-process compliance suite (go test ./features/refproxy/).
//
// A named benchmark that matches nothing, a run that fails or a rollout that
// does not converge makes it exit 1 with the reason. It runs go and the
// depharness binary as child processes and imports only the standard
// library and sim/load (the report's types).
package main

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"os/exec"
	"os/signal"
	"path/filepath"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"text/tabwriter"
	"time"

	"github.com/depharness/depharness/sim/load"
)

// defaultBenchmarks are the headline Go benchmarks.
const defaultBenchmarks = "BenchmarkPutDevice64,BenchmarkListDevices10kAfterWrite,BenchmarkProvision100k"

type options struct {
	bin        string
	runs       int
	devices    int
	benchmarks []string
	benchPkgs  string
	benchtime  string
	suite      string
	out        io.Writer
	errOut     io.Writer
}

func main() {
	var o options
	var benchmarks string
	flag.StringVar(&o.bin, "bin", "bin/depharness", "the depharness binary (make build)")
	flag.IntVar(&o.runs, "runs", 3, "runs of the rollout and of each benchmark; the median is shown")
	flag.IntVar(&o.devices, "devices", 10000, "devices of the rollout")
	flag.StringVar(&benchmarks, "bench", defaultBenchmarks, "comma-separated names of the Go benchmarks to run (each must match one)")
	flag.StringVar(&o.benchPkgs, "bench-packages", "./proxy/...", "packages holding the benchmarks")
	flag.StringVar(&o.benchtime, "benchtime", "1s", "go test -benchtime of the benchmarks")
	flag.StringVar(&o.suite, "suite", "./features/refproxy/", "the compliance suite's package, timed once; empty skips it")
	flag.Parse()
	for _, b := range strings.Split(benchmarks, ",") {
		if b = strings.TrimSpace(b); b != "" {
			o.benchmarks = append(o.benchmarks, b)
		}
	}
	o.out, o.errOut = os.Stdout, os.Stderr
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	if err := run(ctx, o); err != nil {
		fmt.Fprintln(os.Stderr, "perf:", err)
		os.Exit(1)
	}
}

// row is one line of the table: a number beside its floor.
type row struct {
	what, value, floor, ratio, note string
}

func run(ctx context.Context, o options) error {
	if o.runs < 1 {
		return errors.New("-runs must be at least 1")
	}
	var rows []row
	var failed []string
	r, err := rollouts(ctx, o)
	if err != nil {
		failed = append(failed, err.Error())
	} else {
		rows = append(rows, r)
	}
	if len(o.benchmarks) > 0 {
		br, err := benchmarks(ctx, o)
		if err != nil {
			failed = append(failed, err.Error())
		}
		rows = append(rows, br...)
	}
	if o.suite != "" {
		s, err := suite(ctx, o)
		if err != nil {
			failed = append(failed, err.Error())
		} else {
			rows = append(rows, s)
		}
	}
	fmt.Fprintln(o.out)
	tw := tabwriter.NewWriter(o.out, 0, 0, 2, ' ', 0)
	fmt.Fprintln(tw, "headline\tvalue\tfloor\tratio\t")
	for _, r := range rows {
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\n", r.what, r.value, r.floor, r.ratio, r.note)
	}
	if err := tw.Flush(); err != nil {
		return err
	}
	if len(failed) > 0 {
		return errors.New(strings.Join(failed, "; "))
	}
	return nil
}

// rollouts runs the rollout o.runs times and returns the medians.
func rollouts(ctx context.Context, o options) (row, error) {
	dir, err := os.MkdirTemp("", "depharness-perf-")
	if err != nil {
		return row{}, err
	}
	defer os.RemoveAll(dir)
	var secs, floors, ratios, cpus []float64
	for i := range o.runs {
		rdir := filepath.Join(dir, strconv.Itoa(i))
		fmt.Fprintf(o.errOut, "perf: rollout of %d devices, run %d of %d\n", o.devices, i+1, o.runs)
		cmd := exec.CommandContext(ctx, o.bin, "load", "--devices", strconv.Itoa(o.devices), "--scenario", load.ScenarioRollout, "--report-dir", rdir)
		var stderr bytes.Buffer
		cmd.Stdout, cmd.Stderr = o.errOut, &stderr
		if err := cmd.Run(); err != nil {
			return row{}, fmt.Errorf("%s load: %v\n%s", o.bin, err, tail(stderr.String(), 20))
		}
		ph, err := rolloutPhase(rdir)
		if err != nil {
			return row{}, err
		}
		secs = append(secs, ph.Seconds)
		cpus = append(cpus, ph.CPUSeconds)
		floors = append(floors, ph.Floor.Seconds)
		ratios = append(ratios, ph.Floor.Ratio)
	}
	return row{
		what:  fmt.Sprintf("load rollout, %d devices", o.devices),
		value: load.FormatSeconds(median(secs)), floor: load.FormatSeconds(median(floors)),
		ratio: fmt.Sprintf("%.1f×", median(ratios)),
		note:  fmt.Sprintf("median of %d; CPU %s; runs %s", o.runs, load.FormatSeconds(median(cpus)), list(secs, load.FormatSeconds)),
	}, nil
}

// rolloutPhase reads the rollout phase of the one report in dir.
func rolloutPhase(dir string) (*load.Result, error) {
	files, err := filepath.Glob(filepath.Join(dir, "load-*.json"))
	if err != nil || len(files) != 1 {
		return nil, fmt.Errorf("want one report in %s, found %v (%v)", dir, files, err)
	}
	b, err := os.ReadFile(files[0])
	if err != nil {
		return nil, err
	}
	var rep load.Report
	if err := json.Unmarshal(b, &rep); err != nil {
		return nil, fmt.Errorf("%s: %w", files[0], err)
	}
	for _, ph := range rep.Phases {
		if ph.Scenario != load.ScenarioRollout {
			continue
		}
		switch {
		case !ph.Converged:
			return nil, fmt.Errorf("the rollout did not converge: %s", ph.Error)
		case ph.Floor == nil || ph.Floor.Error != "" || ph.Floor.Seconds <= 0:
			return nil, fmt.Errorf("the rollout's floor was not measured: %+v", ph.Floor)
		}
		return ph, nil
	}
	return nil, fmt.Errorf("%s has no rollout phase", files[0])
}

// benchLine is a result line of go test -bench: name, iterations, then
// value-unit pairs.
var benchLine = regexp.MustCompile(`^(Benchmark\S+?)(?:-\d+)?\s+\d+\s+(.*)$`)

// benchmarks runs the named benchmarks o.runs times and returns a row per
// metric that has a floor, and one with the others.
func benchmarks(ctx context.Context, o options) ([]row, error) {
	pattern := "^(" + strings.Join(o.benchmarks, "|") + ")$"
	fmt.Fprintf(o.errOut, "perf: go test -bench %s -count %d %s\n", pattern, o.runs, o.benchPkgs)
	cmd := exec.CommandContext(ctx, "go", "test", "-run", "^$", "-bench", pattern, "-benchtime", o.benchtime,
		"-count", strconv.Itoa(o.runs), "-timeout", "30m", o.benchPkgs)
	var out bytes.Buffer
	cmd.Stdout, cmd.Stderr = io.MultiWriter(&out, o.errOut), o.errOut
	runErr := cmd.Run()
	// name → unit → values
	got := map[string]map[string][]float64{}
	sc := bufio.NewScanner(&out)
	for sc.Scan() {
		m := benchLine.FindStringSubmatch(sc.Text())
		if m == nil {
			continue
		}
		f := strings.Fields(m[2])
		for i := 0; i+1 < len(f); i += 2 {
			v, err := strconv.ParseFloat(f[i], 64)
			if err != nil {
				continue
			}
			if got[m[1]] == nil {
				got[m[1]] = map[string][]float64{}
			}
			got[m[1]][f[i+1]] = append(got[m[1]][f[i+1]], v)
		}
	}
	var rows []row
	var missing []string
	for _, name := range o.benchmarks {
		units := got[name]
		if units == nil {
			missing = append(missing, name)
			rows = append(rows, row{what: name, value: "MATCHES NOTHING"})
			continue
		}
		rows = append(rows, benchRows(name, units)...)
	}
	var errs []string
	if len(missing) > 0 {
		errs = append(errs, fmt.Sprintf("no benchmark in %s matches %s", o.benchPkgs, strings.Join(missing, ", ")))
	}
	if runErr != nil {
		errs = append(errs, fmt.Sprintf("go test -bench: %v", runErr))
	}
	if len(errs) > 0 {
		return rows, errors.New(strings.Join(errs, "; "))
	}
	return rows, nil
}

// benchRows are a benchmark's metrics: each unit U with a "floor-U" beside
// it, then the rest on one line.
func benchRows(name string, units map[string][]float64) []row {
	var rows []row
	var rest []string
	ratio := ""
	if r, ok := units["floor-ratio"]; ok {
		ratio = fmt.Sprintf("%.2f", median(r))
	}
	keys := make([]string, 0, len(units))
	for u := range units {
		keys = append(keys, u)
	}
	slices.Sort(keys)
	for _, u := range keys {
		if strings.HasPrefix(u, "floor-") {
			continue
		}
		v := median(units[u])
		f, ok := units["floor-"+u]
		if !ok {
			rest = append(rest, fmt.Sprintf("%s %s", number(v), u))
			continue
		}
		rows = append(rows, row{what: name + " " + u, value: number(v), floor: number(median(f)),
			ratio: fmt.Sprintf("%.2f", v/median(f)), note: fmt.Sprintf("median of %d", len(units[u]))})
	}
	if len(rows) == 0 {
		return []row{{what: name, value: number(median(units["ns/op"])) + " ns/op", floor: "none reported", ratio: ratio, note: strings.Join(rest, ", ")}}
	}
	if ratio != "" {
		rows[0].note += "; the benchmark's floor-ratio " + ratio
	}
	if len(rest) > 0 {
		rows = append(rows, row{what: name + " (the rest)", note: strings.Join(rest, ", ")})
	}
	return rows
}

// suite times the compliance suite once.
func suite(ctx context.Context, o options) (row, error) {
	fmt.Fprintf(o.errOut, "perf: go test -count=1 %s\n", o.suite)
	cmd := exec.CommandContext(ctx, "go", "test", "-count=1", o.suite)
	var out bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &out
	start := time.Now()
	err := cmd.Run()
	el := time.Since(start)
	if err != nil {
		return row{}, fmt.Errorf("go test %s: %v\n%s", o.suite, err, tail(out.String(), 30))
	}
	return row{what: "compliance suite, in process", value: load.FormatSeconds(el.Seconds()), floor: "—", ratio: "—",
		note: "go test -count=1 " + o.suite + " (build included)"}, nil
}

func median(vs []float64) float64 {
	if len(vs) == 0 {
		return 0
	}
	s := slices.Clone(vs)
	slices.Sort(s)
	if len(s)%2 == 1 {
		return s[len(s)/2]
	}
	return (s[len(s)/2-1] + s[len(s)/2]) / 2
}

// number writes a benchmark's value with three significant digits, or as
// a whole number from 1000 up.
func number(v float64) string {
	if v >= 1000 || v <= -1000 {
		return strconv.FormatFloat(v, 'f', 0, 64)
	}
	return strconv.FormatFloat(v, 'g', 3, 64)
}

func list(vs []float64, f func(float64) string) string {
	out := make([]string, len(vs))
	for i, v := range vs {
		out[i] = f(v)
	}
	return strings.Join(out, ", ")
}

func tail(s string, n int) string {
	lines := strings.Split(strings.TrimRight(s, "\n"), "\n")
	return strings.Join(lines[max(0, len(lines)-n):], "\n")
}
