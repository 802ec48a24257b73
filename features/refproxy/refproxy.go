// Package refproxy runs the project's reference proxy as a compliance-suite
// target: Main reads the harness variables of CONTRACT.md ("Harness ⇄ target
// interface") from an environment and runs proxy.New(cfg).Run(ctx) until
// ctx ends. The suite's own test (TestFeatures) re-executes its test binary
// with TriggerEnv set so that the proxy runs as a real child process, which
// the harness can SIGKILL.
//
// It imports the proxy and its configuration; nothing imports it but the
// suite's tests and commands.
package refproxy

import (
	"context"
	"io"
	"log/slog"

	"github.com/depharness/depharness/proxy"
	"github.com/depharness/depharness/proxy/config"
)

// TriggerEnv, set to "1" in a test binary's environment, makes its TestMain
// run the reference proxy (Main) instead of the tests.
const TriggerEnv = "DEPHARNESS_REFPROXY_CHILD"

// Main runs the reference proxy configured from getenv until ctx ends,
// logging to out.
func Main(ctx context.Context, getenv func(string) string, out io.Writer) error {
	cfg, err := config.FromEnv(getenv)
	if err != nil {
		return err
	}
	log := slog.New(slog.NewTextHandler(out, &slog.HandlerOptions{Level: slog.LevelDebug}))
	p, err := proxy.New(cfg, proxy.Options{Logger: log})
	if err != nil {
		return err
	}
	return p.Run(ctx)
}
