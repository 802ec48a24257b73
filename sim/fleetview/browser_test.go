package fleetview

import (
	"context"
	"errors"
	"fmt"
	"testing"
	"time"

	"github.com/chromedp/chromedp"

	"github.com/depharness/depharness/api"
	"github.com/depharness/depharness/internal/browsertest"
	"github.com/depharness/depharness/internal/testkit"
	"github.com/depharness/depharness/sim/fleet"
)

// pageFigures is what the page measured of itself.
type pageFigures struct {
	N, OnTarget, Frames, MaxFrameBytes, Reconnects int
	Progress                                       string
	Render                                         struct {
		Full  struct{ N, Max, Last float64 }
		Delta struct{ N, Max, Last, Cells float64 }
	}
}

const readFigures = `(() => {
  const fv = window.fleetview;
  if (!fv || !fv.stats) return null;
  return { N: fv.n, OnTarget: fv.count('on target'), Frames: fv.frames, MaxFrameBytes: fv.maxFrameBytes, Reconnects: fv.reconnects,
    Progress: document.querySelector('#progress-value').textContent,
    Render: { Full: fv.render.full, Delta: { N: fv.render.delta.n, Max: fv.render.delta.max, Last: fv.render.delta.last, Cells: fv.render.delta.cells } } };
})()`

// TestTenThousandDevicesInBrowser follows a rollout of a 10,000-device
// fleet, at about 2,500 devices a second, in a real Chromium, checks that
// the page ends with every cell on target and without a resync, and logs
// what the page measured: the render time of a whole repaint and of the
// changed cells, and the largest frame.
func TestTenThousandDevicesInBrowser(t *testing.T) {
	if testing.Short() {
		t.Skip("-short: no 10,000-device browser run")
	}
	ctx := browsertest.New(t, 1440, 900, 2*time.Minute)
	const n = 10000
	v := newView(t, n, Options{})
	m := v.Model()
	for i := range n {
		m.DeviceManaged(i, fmt.Sprintf("%032x", i), 1+int64(i%2))
		m.FleetEvent(state(i, fleet.StateRunning, "c1"))
	}
	m.SetApps([]api.App{{ID: 1, Name: "thermostat-fw", Commit: "c1"}, {ID: 2, Name: "led-strip-fw", Commit: "c1"}})
	srv := testkit.Server(t, v.Handler())
	runCtx, cancel := context.WithCancel(context.Background())
	ran := make(chan struct{})
	go func() { _ = v.Run(runCtx); close(ran) }()
	t.Cleanup(func() { cancel(); <-ran })

	read := func() pageFigures {
		t.Helper()
		p, err := chromedp.Run(ctx, chromedp.Evaluate[*pageFigures](readFigures))
		if err != nil {
			t.Fatalf("reading the page: %v", err)
		}
		if p == nil {
			return pageFigures{}
		}
		return *p
	}
	await := func(what string, ok func(pageFigures) bool) pageFigures {
		t.Helper()
		deadline := time.Now().Add(60 * time.Second)
		for {
			p := read()
			if ok(p) {
				return p
			}
			if time.Now().After(deadline) {
				t.Fatalf("%s: not shown within 60 s; the page shows %+v", what, p)
			}
			time.Sleep(100 * time.Millisecond)
		}
	}
	if err := chromedp.Do(ctx, chromedp.Navigate(srv.URL+"/")); err != nil {
		t.Fatal(err)
	}
	await("the fleet on its first release", func(p pageFigures) bool { return p.OnTarget == n && p.Progress == "100%" })

	// The rollout: each 50 ms, 125 devices start downloading; they flash
	// 200 ms later and run the release 600 ms later; one in 50 fails once
	// first.
	m.SetApps([]api.App{{ID: 1, Name: "thermostat-fw", Commit: "c2"}, {ID: 2, Name: "led-strip-fw", Commit: "c2"}})
	const batch, tick = 125, 50 * time.Millisecond
	start := time.Now()
	for k := 0; k*batch < n+12*batch; k++ {
		for j := range batch {
			if i := k*batch + j; i < n {
				m.FleetEvent(state(i, fleet.StateDownloading, "c2"))
			}
			if i := (k-4)*batch + j; i >= 0 && i < n {
				m.FleetEvent(state(i, fleet.StateFlashing, "c2"))
				if i%50 == 0 {
					m.FleetEvent(fleet.Event{Device: i, Kind: fleet.EventState, State: fleet.StateFailed, Commit: "c2", Message: "flash failed"})
					m.Failed("flash", i, errors.New("flashing c2: flash failed: device did not confirm the write"))
				}
			}
			if i := (k-12)*batch + j; i >= 0 && i < n {
				m.FleetEvent(state(i, fleet.StateRunning, "c2"))
			}
		}
		time.Sleep(tick)
		if k == 40 {
			browsertest.Screenshot(t, ctx, browsertest.RepoPath(t, "reports/fleet-view-10k.png"))
		}
	}
	p := await("the rollout on every device", func(p pageFigures) bool { return p.OnTarget == n && p.Progress == "100%" })
	t.Logf("10,000 devices, rollout of %v: %d frames, largest %d bytes; render: %v whole repaints (max %.1f ms), %v delta repaints (max %.1f ms, up to %v cells)",
		time.Since(start).Round(time.Millisecond), p.Frames, p.MaxFrameBytes,
		p.Render.Full.N, p.Render.Full.Max, p.Render.Delta.N, p.Render.Delta.Max, p.Render.Delta.Cells)
	if p.Reconnects != 0 {
		t.Errorf("the page resynchronised %d times: it missed frames", p.Reconnects)
	}
	if conn, dropped := v.Clients(); conn != 1 || dropped != 0 {
		t.Errorf("got %d clients, %d dropped; want the page connected throughout", conn, dropped)
	}
}
