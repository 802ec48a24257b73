package refproxy

import (
	"context"
	"fmt"
	"io"
	"os"
	"os/signal"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"

	"github.com/depharness/depharness/features"
	"github.com/depharness/depharness/internal/syncbuf"
	"github.com/depharness/depharness/internal/testkit"
)

// The suite's own test takes its knobs from the environment, with the
// names of depharness verify's, so that `go test ./features/...` passes them
// to this package only.
const (
	envTags        = "DEPHARNESS_TAGS"        // godog tag expression
	envConcurrency = "DEPHARNESS_CONCURRENCY" // scenarios at once (default features.DefaultConcurrency)
	envSeed        = "DEPHARNESS_SEED"        // scenario order and fakes; 0 draws one
	envReportDir   = "DEPHARNESS_REPORT_DIR"  // reports; default a temporary directory
	envInProcess   = "DEPHARNESS_INPROCESS"   // "1": proxies in this process (a kill is a cancel)
)

func envInt(t *testing.T, name string, def int64) int64 {
	v := os.Getenv(name)
	if v == "" {
		return def
	}
	n, err := strconv.ParseInt(v, 10, 64)
	if err != nil {
		t.Fatalf("%s=%q: %v", name, v, err)
	}
	return n
}

// TestMain runs the reference proxy instead of the tests when the suite
// starts this binary as its target.
func TestMain(m *testing.M) {
	testkit.Main(m, TriggerEnv, func() int {
		ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
		defer stop()
		if err := Main(ctx, os.Getenv, os.Stderr); err != nil {
			fmt.Fprintln(os.Stderr, "reference proxy:", err)
			return 1
		}
		return 0
	})
}

// shellQuote quotes s for sh.
func shellQuote(s string) string { return "'" + strings.ReplaceAll(s, "'", `'\''`) + "'" }

// TestFeatures runs the compliance suite against the reference proxy, each
// scenario's proxy a child process of this test binary.
func TestFeatures(t *testing.T) {
	if testing.Short() {
		t.Skip("the compliance suite takes a while; run without -short")
	}
	self, err := os.Executable()
	if err != nil {
		t.Fatal(err)
	}
	dir := os.Getenv(envReportDir)
	if dir == "" {
		dir = filepath.Join(t.TempDir(), "reports")
	}
	target := features.CommandTargetFactory(fmt.Sprintf("%s=1 exec %s", TriggerEnv, shellQuote(self)), 0)
	if os.Getenv(envInProcess) == "1" {
		target = func(out io.Writer) features.Target { return &features.InProcessTarget{Run: Main, Out: out} }
	}
	cfg := features.Config{
		Target:      target,
		TargetEnv:   features.ReferenceProxyEnv(),
		Tags:        os.Getenv(envTags),
		Concurrency: int(envInt(t, envConcurrency, features.DefaultConcurrency)),
		Seed:        envInt(t, envSeed, 0),
		ReportDir:   dir,
		Output:      &syncbuf.Lines{Line: func(l string) error { t.Log(l); return nil }}, // the console report, line by line
		NoColors:    true,
		TestingT:    t,
	}
	res, err := features.Run(t.Context(), cfg)
	if err != nil {
		t.Fatal(err)
	}
	t.Logf("seed %d, %d scenarios, %d failed; reports in %s", res.Seed, len(res.Scenarios), len(res.Failed()), dir)
	if res.Status != 0 {
		t.Errorf("the suite failed against the reference proxy (godog status %d)", res.Status)
	}
}
