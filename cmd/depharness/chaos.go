package main

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"

	"github.com/depharness/depharness/world/chaos"
)

func init() {
	commands["chaos"] = command{
		summary: "the fault battery: SIGKILLs and cloud outages during a rollout, then held connections; exits 1 on any loss",
		run:     runChaos,
	}
}

func runChaos(ctx context.Context, env *cliEnv, args []string) error {
	f := newFlags(env, "chaos", "Run the fault battery against the reference proxy, started as a child process of this\n"+
		"binary (`depharness proxy`): a rollout to --devices devices with a storm of reports and log lines while\n"+
		"the proxy is SIGKILLed --kills times at random points and the cloud drops off and returns --outages\n"+
		"times; then --conns idle or dribbling connections while the API is measured. Prints its figures\n"+
		"(and writes them as JSON to --report-dir) and exits 1 on any loss or bound exceeded. The fault\n"+
		"schedule comes from --seed (0 draws one; printed either way).")
	devices := f.Int("devices", "CHAOS_DEVICES", 1000, "devices in the rollout")
	kills := f.Int("kills", "CHAOS_KILLS", 20, "SIGKILLs of the proxy")
	outages := f.Int("outages", "CHAOS_OUTAGES", 4, "times the cloud fails and returns: unreachable, dropping connections, dropping answers, answering late, in turn")
	conns := f.Int("conns", "CHAOS_CONNS", 256, "idle or dribbling connections held against the API")
	seed := f.Int64("seed", "CHAOS_SEED", 0, "seed of the fault schedule; 0 draws one")
	rss := f.Int("rss-bound-mib", "CHAOS_RSS_BOUND_MIB", 128, "peak RSS the proxy may reach, MiB")
	p99 := f.Duration("p99-bound", "CHAOS_P99_BOUND", 0, "API p99 allowed while connections are held (default 1s)")
	dir := f.String("dir", "CHAOS_DIR", "", "work directory (the proxy's data and log); empty: a temporary one, removed after a passing run")
	reportDir := f.String("report-dir", "CHAOS_REPORT_DIR", "reports", "directory of chaos.json")
	if err := f.Parse(args); err != nil {
		return err
	}
	if *devices <= 0 || *kills < 0 || *outages <= 0 || *conns <= 0 || *seed < 0 || *rss <= 0 {
		return usagef("--devices, --outages, --conns and --rss-bound-mib must be positive; --kills and --seed not negative")
	}
	bin, err := os.Executable()
	if err != nil {
		return err
	}
	work, temp := *dir, false
	if work == "" {
		if work, err = os.MkdirTemp("", "depharness-chaos-"); err != nil {
			return err
		}
		temp = true
	}
	k := *kills
	if k == 0 {
		k = -1 // Options: 0 means the default
	}
	fig, err := chaos.Run(ctx, chaos.Options{
		ProxyBin: bin, Dir: work, Devices: *devices, Kills: k, Outages: *outages, Conns: *conns,
		Seed: uint64(*seed), RSSBound: int64(*rss) << 20, P99Bound: *p99, Out: env.stdout,
	})
	if fig != nil {
		fig.Print(env.stdout)
		if *reportDir != "" {
			if b, jerr := json.MarshalIndent(fig, "", "  "); jerr == nil && os.MkdirAll(*reportDir, 0o755) == nil {
				os.WriteFile(filepath.Join(*reportDir, "chaos.json"), append(b, '\n'), 0o644)
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
