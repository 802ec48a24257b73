package chaos

import (
	"context"
	"fmt"
	"log/slog"
	"os"
	"os/signal"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/depharness/depharness/internal/testkit"
	"github.com/depharness/depharness/proxy"
	"github.com/depharness/depharness/proxy/config"
)

// childEnv makes this test binary the reference proxy (what `depharness
// proxy` runs), so that the battery's child process needs no build.
const childEnv = "DEPHARNESS_CHAOS_TEST_PROXY"

func TestMain(m *testing.M) { testkit.Main(m, childEnv, runChildProxy) }

func runChildProxy() int {
	cfg, err := config.FromEnv(os.Getenv)
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 2
	}
	log := slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelWarn}))
	p, err := proxy.New(cfg, proxy.Options{Logger: log})
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGTERM)
	defer stop()
	if err := p.Run(ctx); err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	return 0
}

// small is a run sized for a test: every fault kind, a few of each. A run
// that loses something waits settle for it.
func small(t *testing.T, violations string, settle time.Duration) *Figures {
	t.Helper()
	exe, err := os.Executable()
	if err != nil {
		t.Fatal(err)
	}
	t.Setenv(childEnv, "1")
	var out strings.Builder
	fig, err := Run(t.Context(), Options{
		ProxyBin: exe, Dir: t.TempDir(), Devices: 64, Kills: 4, Outages: 4, Conns: 28,
		Seed: 20261206, MaxUp: 1500 * time.Millisecond, MaxOutage: 2 * time.Second, SettleTimeout: settle, Out: &out, Violations: violations,
	})
	if err != nil {
		t.Fatalf("battery did not run: %v\n%s", err, out.String())
	}
	t.Cleanup(func() {
		if t.Failed() {
			var table strings.Builder
			fig.Print(&table)
			t.Logf("%s\n%s", out.String(), table.String())
		}
	})
	return fig
}

// The battery passes the reference proxy and, with each deliberate
// violation that breaks what it measures, names that loss.
func TestBatteryPassesTheProxyAndCatchesEachLoss(t *testing.T) {
	if os.Getenv("DEPHARNESS_CHAOS_SELFTEST") == "" {
		t.Skip("six small batteries, two and a half minutes: make chaos runs them (DEPHARNESS_CHAOS_SELFTEST=1)")
	}
	t.Run("clean", func(t *testing.T) {
		fig := small(t, "", time.Minute)
		if fails := fig.Failures(); len(fails) > 0 {
			t.Errorf("the reference proxy failed the battery: %v", fails)
		}
		if fig.Kills != 4 || fig.IntegrityChecks != 5 || fig.Outages != 5 || fig.Conns != 28 {
			t.Errorf("kills %d, integrity checks %d, outages %d, conns %d; want 4, 5, 5, 28", fig.Kills, fig.IntegrityChecks, fig.Outages, fig.Conns)
		}
		if fig.ReportsAcked == 0 || fig.LogLinesAcked == 0 || fig.HooksAcked < 64 || fig.APIRequests == 0 || fig.PeakRSS == 0 {
			t.Errorf("nothing measured: %+v", fig)
		}
	})
	for _, tc := range []struct{ violation, want string }{
		{"logs-resent-after-success", "duplicate log lines"},
		{"logs-lost-on-outage", "log lines lost"},
		{"put-lost-on-outage", "reports lost"},
		{"hook-200-repeats", "hooks re-sent"},
		{"srv-no-deadlines", "not closed within their deadline"},
	} {
		t.Run(tc.violation, func(t *testing.T) {
			fails := small(t, tc.violation, 10*time.Second).Failures()
			if !strings.Contains(strings.Join(fails, "; "), tc.want) {
				t.Errorf("with %s the battery reports %v; want %q", tc.violation, fails, tc.want)
			}
			t.Logf("with %s the battery reports: %s", tc.violation, strings.Join(fails, "; "))
		})
	}
}
