package world

import (
	"context"
	"flag"
	"fmt"
	"os"
	"strings"
	"testing"
	"time"

	"github.com/chromedp/cdproto/input"
	"github.com/chromedp/chromedp"

	"github.com/depharness/depharness/fakes/cloud"
	"github.com/depharness/depharness/internal/browsertest"
	"github.com/depharness/depharness/sim/fleet"
	"github.com/depharness/depharness/sim/gateway"
)

var updateDocs = flag.Bool("update", false, "rewrite docs/fleet-view.png from the browser test's rollout screenshot")

// pageState is what the fleet view's page shows, read from the page.
type pageState struct {
	OnTarget   int      `json:"onTarget"`   // cells drawn "on target"
	Busy       int      `json:"busy"`       // cells downloading or flashing
	N          int      `json:"n"`          // cells
	Legend     string   `json:"legend"`     // the legend's on-target count
	Progress   string   `json:"progress"`   // the progress figure
	AppCommits []string `json:"appCommits"` // the apps table's release commits
	ErrorOps   []string `json:"errorOps"`   // the errors list's operations
	ErrorText  string   `json:"errorText"`
	RenderMs   float64  `json:"renderMs"`
	MaxMs      float64  `json:"maxMs"`
	FrameBytes int      `json:"frameBytes"`
}

const readPage = `(() => {
  const fv = window.fleetview;
  if (!fv || !fv.stats) return null;
  // An element the page has not drawn yet reads as empty text: the
  // caller polls until the page shows what it waits for.
  const text = (s) => document.querySelector(s)?.textContent ?? '';
  return {
    onTarget: fv.count('on target'), busy: fv.count('downloading') + fv.count('flashing'), n: fv.n,
    legend: text('#legend [data-state="t"] .n'),
    progress: text('#progress-value'),
    appCommits: [...document.querySelectorAll('#apps tbody td.commit')].map((td) => td.title),
    errorOps: [...document.querySelectorAll('#errors li[data-op]')].map((li) => li.dataset.op),
    errorText: text('#errors'),
    renderMs: fv.lastRenderMs, maxMs: fv.maxRenderMs, frameBytes: fv.lastFrameBytes,
  };
})()`

// awaitPage reads the page until ok holds, failing the test with the last
// reading after timeout.
func awaitPage(t *testing.T, ctx context.Context, what string, timeout time.Duration, ok func(pageState) bool) pageState {
	t.Helper()
	deadline := time.Now().Add(timeout)
	var last *pageState
	for {
		st, err := chromedp.Run(ctx, chromedp.Evaluate[*pageState](readPage))
		if err != nil {
			t.Fatalf("reading the page: %v", err)
		}
		if st != nil {
			last = st
			if ok(*st) {
				return *st
			}
		}
		if time.Now().After(deadline) {
			t.Fatalf("%s: not shown within %v; the page shows %+v", what, timeout, last)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// TestFleetViewInBrowser drives a real Chromium through a small rollout in
// the in-process world and checks what the fleet view shows: every cell
// reaches "on target", progress reaches 100 % (for the initial releases,
// then for a pushed one), and the flaky flashes of the profile show in the
// errors list. Screenshots go to reports/ (and, with -update, the rollout's
// to docs/ for the README).
func TestFleetViewInBrowser(t *testing.T) {
	ctx := browsertest.New(t, 1440, 900, 4*time.Minute)
	devices, midway := 48, 0.5 // the screenshot is taken past midway
	if *updateDocs {
		devices, midway = 400, 0.7 // a fleet that looks like one, for the README
	}
	st, err := StartStack(t.Context(), StackOptions{
		Proxy:  ProxyOptions{DataDir: t.TempDir(), PollInterval: 200 * time.Millisecond, HookRetryInterval: 500 * time.Millisecond},
		Policy: gateway.PolicyAccepted,
		// A fifth of the flashes fail: each is an error the page lists, and
		// the supervisor's 202 re-sends bring the device to its target.
		Profile: fleet.Profile{Count: devices, Seed: 7, FailureProbability: 0.2,
			FlashTime: fleet.Dist{Dist: "uniform", Min: fleet.Duration(300 * time.Millisecond), Max: fleet.Duration(1500 * time.Millisecond)}},
		Demo: true, FleetViewListen: "127.0.0.1:0", FleetViewInterval: 200 * time.Millisecond,
	})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { st.Close() })
	if err := chromedp.Do(ctx, chromedp.Navigate(st.FleetViewURL)); err != nil {
		t.Fatalf("open %s: %v", st.FleetViewURL, err)
	}
	wait := time.Duration(devices/48+1) * 30 * time.Second
	allOnTarget := func(release string) func(pageState) bool {
		return func(p pageState) bool {
			return p.N == devices && p.OnTarget == devices && p.Legend == fmt.Sprint(devices) && p.Progress == "100%" &&
				(release == "" || contains(p.AppCommits, release))
		}
	}
	p := awaitPage(t, ctx, "the initial releases on every device", wait, allOnTarget(""))
	t.Logf("initial releases: %d of %d on target, %s, %d errors listed", p.OnTarget, p.N, p.Progress, len(p.ErrorOps))

	app := st.Apps[0]
	rel, err := st.Cloud.PushRelease(t.Context(), app.App.ID, cloud.ReleaseSpec{Layers: []cloud.Layer{{Files: map[string][]byte{
		"assets/firmware.bin": []byte("thermostat firmware v2\n"), "assets/manifest.json": []byte(`{"version":"2.0.0"}`)}}}})
	if err != nil {
		t.Fatal(err)
	}
	p = awaitPage(t, ctx, "the rollout under way", wait, func(p pageState) bool {
		return contains(p.AppCommits, rel.Commit) && p.Busy >= 4 && p.Progress != "100%" && float64(p.OnTarget) >= midway*float64(devices)
	})
	t.Logf("rollout under way: %d of %d on target, %d busy, %s", p.OnTarget, p.N, p.Busy, p.Progress)
	shot := browsertest.RepoPath(t, "reports/fleet-view-rollout.png")
	browsertest.Screenshot(t, ctx, shot)
	if *updateDocs {
		b, err := os.ReadFile(shot)
		if err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(browsertest.RepoPath(t, "docs/fleet-view.png"), b, 0o644); err != nil {
			t.Fatal(err)
		}
	}

	p = awaitPage(t, ctx, "the pushed release on every device", wait, allOnTarget(rel.Commit))
	t.Logf("rollout done: %d of %d on target, %s, errors listed %v; render %.1f ms (max %.1f ms), last frame %d bytes",
		p.OnTarget, p.N, p.Progress, p.ErrorOps, p.RenderMs, p.MaxMs, p.FrameBytes)
	if !contains(p.ErrorOps, "flash") {
		t.Errorf("errors list shows operations %v, want a failed flash among them (text %q)", p.ErrorOps, p.ErrorText)
	}
	// Hovering a cell tells which device it is and what it runs.
	const dev = 4 // of the first app (devices go round-robin into the apps)
	pt, err := chromedp.Run(ctx, chromedp.Evaluate[struct{ X, Y float64 }](fmt.Sprintf(`window.fleetview.cellCenter(%d)`, dev)))
	if err != nil {
		t.Fatal(err)
	}
	if err := chromedp.Do(ctx, chromedp.MouseEvent(input.DispatchMouseEventTypeMouseMoved, pt.X, pt.Y)); err != nil {
		t.Fatal(err)
	}
	serial := st.Fleet.Device(dev).Serial
	deadline := time.Now().Add(10 * time.Second)
	for {
		tip, err := chromedp.Run(ctx, chromedp.Evaluate[string](`document.getElementById('tip').hidden ? '' : document.getElementById('tip').textContent`))
		if err != nil {
			t.Fatal(err)
		}
		if strings.Contains(tip, fmt.Sprintf("device #%d", dev)) && strings.Contains(tip, serial) && strings.Contains(tip, "on target") &&
			strings.Contains(tip, rel.Commit) {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("hovering cell %d shows %q, want device #%d, %s, on target and commit %s", dev, tip, dev, serial, rel.Commit)
		}
		time.Sleep(50 * time.Millisecond)
	}
	browsertest.Screenshot(t, ctx, browsertest.RepoPath(t, "reports/fleet-view.png"))

	// The page agrees with the server's own account of the fleet.
	stats := st.FleetView.Model().Stats()
	if stats.OnTarget != devices || stats.Counts["failed"] != 0 || stats.Reports == 0 || stats.Hooks["update"] == 0 {
		t.Errorf("server stats: %d on target, %d failed, %d reports, hooks %v; want %d, 0, some and some update hooks",
			stats.OnTarget, stats.Counts["failed"], stats.Reports, stats.Hooks, devices)
	}
}

func contains(list []string, s string) bool {
	for _, x := range list {
		if x == s {
			return true
		}
	}
	return false
}
