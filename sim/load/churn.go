package load

import (
	"context"
	"errors"
	"fmt"
	"sync/atomic"
	"time"

	"github.com/depharness/depharness/api"
	"github.com/depharness/depharness/sim/client"
	"github.com/depharness/depharness/sim/fleet"
)

// Scenarios that change the fleet itself: restart and deletion waves, and
// churn.

// RestartWave requests a restart of Params.RestartCount devices in the
// cloud and waits until the gateway has received each one's restart hook.
// Latencies: request → hook, request → device back up (fleet).
func (h *Harness) RestartWave(ctx context.Context) (*Result, error) {
	uuids := h.pick(h.opts.Params.RestartCount)
	p := h.newPhase(ScenarioRestart, "request restarts in the cloud; converged = the gateway received the device's restart hook and the device came back up", map[string]any{"devices": len(uuids)})
	want := map[string]bool{}
	byIndex := map[int]string{}
	for _, u := range uuids {
		want[u] = true
		if d, ok := h.gw.Device(u); ok {
			byIndex[d.Index] = u
		}
	}
	var requested, hooked, rebooted firstTimes
	h.hooks.WatchHooks(func(kind, uuid string, _ *api.UpdateHook, at time.Time) {
		if kind == HookRestart && want[uuid] {
			hooked.note(uuid, at)
		}
	})
	stop := h.fleet.Watch(func(e fleet.Event) {
		if e.Kind == fleet.EventLog && e.System {
			if u, ok := byIndex[e.Device]; ok {
				rebooted.note(u, e.Time)
			}
		}
	})
	defer stop()
	stopRequests := p.requestEach(ctx, "restart", uuids, &requested, func(ctx context.Context, u string) error {
		_, err := h.opts.Cloud.RestartDevice(ctx, u)
		return err
	})
	pr := func(context.Context) (int, int, error) {
		n := 0
		for _, u := range uuids {
			if _, ok := hooked.get(u); ok {
				if _, ok := rebooted.get(u); ok {
					n++
				}
			}
		}
		return n, len(uuids), nil
	}
	err := p.follow(ctx, fmt.Sprintf("restart wave of %d", len(uuids)), len(uuids), pr, nil)
	stopRequests() // a phase that gave up stops asking
	p.since("request → restart hook", &requested, &hooked)
	p.since("request → device back up", &requested, &rebooted)
	p.since("restart hook → device back up", &hooked, &rebooted)
	p.counts.Add("restart requests", int64(requested.len()))
	return p.finish(), err
}

// DeletionWave deletes Params.DeleteCount devices in the cloud and waits
// until the supervisor answers 404 for each (410 while it awaits the
// gateway's acknowledgement of the delete hook, then 404).
func (h *Harness) DeletionWave(ctx context.Context) (*Result, error) {
	uuids := h.pick(h.opts.Params.DeleteCount)
	p := h.newPhase(ScenarioDelete, "delete devices in the cloud; converged = GET /v1/devices/{uuid} answers 404 (after 410 while the delete hook is pending)", map[string]any{"devices": len(uuids)})
	want := map[string]bool{}
	for _, u := range uuids {
		want[u] = true
	}
	var requested, hooked, gone, removed firstTimes
	h.hooks.WatchHooks(func(kind, uuid string, _ *api.UpdateHook, at time.Time) {
		if kind == HookDelete && want[uuid] {
			hooked.note(uuid, at)
		}
	})
	stopRequests := p.requestEach(ctx, "delete", uuids, &requested, h.opts.Cloud.DeleteDevice)
	var unexpected atomic.Int64
	p.expected = map[string]bool{"GET /v1/devices/{uuid} 404": true, "GET /v1/devices/{uuid} 410": true}
	pr := func(ctx context.Context) (int, int, error) {
		var pending []string
		for _, u := range uuids {
			if _, ok := removed.get(u); !ok {
				pending = append(pending, u)
			}
		}
		_, last := each(ctx, pending, 32, func(ctx context.Context, u string) error {
			_, err := h.probe.Device(ctx, u)
			now := time.Now()
			switch {
			case err == nil:
			case client.IsGone(err):
				gone.note(u, now)
			case client.IsNotFound(err):
				removed.note(u, now)
			default:
				unexpected.Add(1)
				return err
			}
			return nil
		})
		if ctx.Err() != nil {
			return 0, 0, ctx.Err()
		}
		if last != nil && removed.len() == 0 {
			return 0, 0, last
		}
		return removed.len(), len(uuids), nil
	}
	err := p.follow(ctx, fmt.Sprintf("deletion wave of %d", len(uuids)), len(uuids), pr, nil)
	stopRequests()
	p.since("delete → 410 (sampled)", &requested, &gone)
	p.since("delete → delete hook", &requested, &hooked)
	p.since("delete → 404 (sampled)", &requested, &removed)
	p.counts.Add("seen 410", int64(gone.len()))
	p.counts.Add("delete hooks", int64(hooked.len()))
	if n := unexpected.Load(); n > 0 {
		p.errs.Add("device lookups failed", n)
	}
	return p.finish(), err
}

// Churn lets the fleet's devices go offline and online at random for
// Params.ChurnDuration, then brings them all back and waits until the
// cloud sees every managed device online. It runs the fleet's churn, which
// can be done once per Harness.
func (h *Harness) Churn(ctx context.Context) (*Result, error) {
	prm := h.opts.Params
	want := len(h.managed())
	p := h.newPhase(ScenarioChurn, "devices go offline and online at random, then all come back; converged = the cloud sees the device online after the churn ended",
		map[string]any{"devices": want, "duration_seconds": prm.ChurnDuration.Seconds(), "probability": prm.ChurnProbability, "interval_seconds": prm.ChurnInterval.Seconds()})
	if h.fleetRan {
		err := errors.New("churn can run once per harness")
		p.res.Error = err.Error()
		return p.finish(), err
	}
	h.fleetRan = true
	var offline, peak, offEvents, onEvents atomic.Int64
	stop := h.fleet.Watch(func(e fleet.Event) {
		switch e.Kind {
		case fleet.EventOffline:
			offEvents.Add(1)
			n := offline.Add(1)
			for {
				pk := peak.Load()
				if n <= pk || peak.CompareAndSwap(pk, n) {
					break
				}
			}
		case fleet.EventOnline:
			onEvents.Add(1)
			offline.Add(-1)
		}
	})
	defer stop()
	var onlineReports, offlineReports atomic.Int64
	h.api.WatchReports(func(_ string, u api.DeviceUpdate, _ time.Time) {
		if u.IsOnline != nil && u.Status == nil {
			if *u.IsOnline {
				onlineReports.Add(1)
			} else {
				offlineReports.Add(1)
			}
		}
	})
	churnCtx, stopChurn := context.WithCancel(ctx)
	defer stopChurn()
	fleetDone := make(chan struct{})
	go func() {
		defer close(fleetDone)
		_ = h.fleet.Run(churnCtx)
	}()
	var ended atomic.Bool
	var endedAt time.Time
	timer := time.AfterFunc(prm.ChurnDuration, func() {
		stopChurn()
		<-fleetDone
		endedAt = time.Now()
		ended.Store(true)
	})
	defer timer.Stop()
	var cloudPeakOffline int
	pr := func(ctx context.Context) (int, int, error) {
		ds, err := h.cloudDevices(ctx)
		if err != nil {
			return 0, 0, err
		}
		on := 0
		for _, d := range ds {
			if d.IsOnline {
				on++
			}
		}
		cloudPeakOffline = max(cloudPeakOffline, len(ds)-on)
		return on, len(ds), nil
	}
	err := p.follow(ctx, fmt.Sprintf("churn %s then back online", prm.ChurnDuration), want, pr, func(conv, _ int) bool {
		return ended.Load() && conv >= want
	})
	stopChurn()
	<-fleetDone
	if ended.Load() && p.res.Converged {
		p.res.Params["settle_seconds"] = round3(p.start.Add(time.Duration(p.res.Seconds * float64(time.Second))).Sub(endedAt).Seconds())
	}
	p.counts.Add("offline events", offEvents.Load())
	p.counts.Add("online events", onEvents.Load())
	p.counts.Add("peak devices offline (fleet)", peak.Load())
	p.counts.Add("peak devices offline (cloud, sampled)", int64(cloudPeakOffline))
	p.counts.Add("is_online=false reports", offlineReports.Load())
	p.counts.Add("is_online=true reports", onlineReports.Load())
	return p.finish(), err
}

// requestEach sends what (a request to the cloud: do) for each of uuids in
// the background, 16 at a time, noting when each was sent in requested and
// counting the failures. The returned stop cancels what is not sent yet
// and waits for the rest.
func (p *phase) requestEach(ctx context.Context, what string, uuids []string, requested *firstTimes, do func(context.Context, string) error) (stop func()) {
	ctx, cancel := context.WithCancel(ctx)
	done := make(chan struct{})
	go func() {
		defer close(done)
		failed, last := each(ctx, uuids, 16, func(ctx context.Context, u string) error {
			requested.note(u, time.Now())
			defer p.controlRequest("control " + what + " device")()
			return do(ctx, u)
		})
		if failed > 0 {
			p.errs.Add(what+" requests failed", failed)
			p.h.log.Warn(what+" requests failed", "n", failed, "last", last)
		}
	}()
	return func() {
		cancel()
		<-done
	}
}
