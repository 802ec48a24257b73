package main

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/spf13/cobra"

	"github.com/depharness/depharness/internal/settings"

	"github.com/depharness/depharness/world/chaos"
)

// chaosOptions are the chaos command's settings.
type chaosOptions struct {
	devices, kills, outages, conns, rss int
	seed                                int64
	p99                                 time.Duration
	dir, reportDir                      string
}

func newChaosCmd(env *cliEnv) *cobra.Command {
	var o chaosOptions
	return newCommand("chaos", "the fault battery: SIGKILLs and cloud outages during a rollout, then held connections; exits 1 on any loss",
		"Run the fault battery against the reference proxy, started as a child process of this\n"+
			"binary (`depharness proxy`): a rollout to --devices devices with a storm of reports and log lines while\n"+
			"the proxy is SIGKILLed --kills times at random points and the cloud drops off and returns --outages\n"+
			"times; then --conns idle or dribbling connections while the API is measured. Prints its figures\n"+
			"(and writes them as JSON to --report-dir) and exits 1 on any loss or bound exceeded. The fault\n"+
			"schedule comes from --seed (0 draws one; printed either way).",
		[]settings.Setting{
			{Flag: "devices", Legacy: []string{"CHAOS_DEVICES"}, Value: settings.Int(&o.devices, 1000), Help: "devices in the rollout"},
			{Flag: "kills", Legacy: []string{"CHAOS_KILLS"}, Value: settings.Int(&o.kills, 20), Help: "SIGKILLs of the proxy"},
			{Flag: "outages", Legacy: []string{"CHAOS_OUTAGES"}, Value: settings.Int(&o.outages, 4),
				Help: "times the cloud fails and returns: unreachable, dropping connections, dropping answers, answering late, in turn"},
			{Flag: "conns", Legacy: []string{"CHAOS_CONNS"}, Value: settings.Int(&o.conns, 256), Help: "idle or dribbling connections held against the API"},
			{Flag: "seed", Legacy: []string{"CHAOS_SEED"}, Value: settings.Int64(&o.seed, 0), Help: "seed of the fault schedule; 0 draws one"},
			{Flag: "rss-bound-mib", Legacy: []string{"CHAOS_RSS_BOUND_MIB"}, Value: settings.Int(&o.rss, 128), Help: "peak RSS the proxy may reach, MiB"},
			{Flag: "p99-bound", Legacy: []string{"CHAOS_P99_BOUND"}, Value: settings.Duration(&o.p99, time.Second),
				Help: "API p99 allowed while connections are held"},
			{Flag: "dir", Legacy: []string{"CHAOS_DIR"}, Value: settings.Text(&o.dir, ""),
				Help: "work directory (the proxy's data and log); empty: a temporary one, removed after a passing run"},
			{Flag: "report-dir", Legacy: []string{"CHAOS_REPORT_DIR"}, Value: settings.Text(&o.reportDir, "reports"), Help: "directory of chaos.json"},
		},
		func(cmd *cobra.Command) error { return runChaos(cmd.Context(), env, &o) })
}

func runChaos(ctx context.Context, env *cliEnv, o *chaosOptions) error {
	if o.devices <= 0 || o.kills < 0 || o.outages <= 0 || o.conns <= 0 || o.seed < 0 || o.rss <= 0 || o.p99 <= 0 {
		return usagef("--devices, --outages, --conns, --rss-bound-mib and --p99-bound must be positive; --kills and --seed not negative")
	}
	bin, err := os.Executable()
	if err != nil {
		return err
	}
	work, temp := o.dir, false
	if work == "" {
		if work, err = os.MkdirTemp("", "depharness-chaos-"); err != nil {
			return err
		}
		temp = true
	}
	k := o.kills
	if k == 0 {
		k = -1 // Options: 0 means the default
	}
	fig, err := chaos.Run(ctx, chaos.Options{
		ProxyBin: bin, Dir: work, Devices: o.devices, Kills: k, Outages: o.outages, Conns: o.conns,
		Seed: uint64(o.seed), RSSBound: int64(o.rss) << 20, P99Bound: o.p99, Out: env.stdout,
	})
	if fig != nil {
		fig.Print(env.stdout)
		if o.reportDir != "" {
			if b, jerr := json.MarshalIndent(fig, "", "  "); jerr == nil && os.MkdirAll(o.reportDir, 0o755) == nil {
				os.WriteFile(filepath.Join(o.reportDir, "chaos.json"), append(b, '\n'), 0o644)
			}
		}
	}
	if err != nil {
		return fmt.Errorf("%w (work directory %s)", err, work)
	}
	if fails := fig.Failures(); len(fails) > 0 {
		return errors.New("FAILED: " + strings.Join(fails, "; ") + fmt.Sprintf(" (seed %d; proxy log in %s)", fig.Seed, work))
	}
	fmt.Fprintln(env.stdout, "chaos: PASS")
	if temp {
		os.RemoveAll(work)
	}
	return nil
}
