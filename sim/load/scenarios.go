package load

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/depharness/depharness/api"
	"github.com/depharness/depharness/fakes/cloud"
)

// Scenario names.
const (
	ScenarioProvision = "provision"
	ScenarioRollout   = "rollout"
	ScenarioEnv       = "env"
	ScenarioChurn     = "churn"
	ScenarioLogs      = "logs"
	ScenarioDelete    = "delete"
	ScenarioRestart   = "restart"
	ScenarioAll       = "all"
)

// Scenarios lists the scenarios of "all", in the order they run: the
// deletion wave last, since it shrinks the fleet.
var Scenarios = []string{ScenarioRollout, ScenarioEnv, ScenarioLogs, ScenarioRestart, ScenarioChurn, ScenarioDelete}

// ParseScenarios reads a --scenario value: one name, a comma-separated
// list, or "all".
func ParseScenarios(s string) ([]string, error) {
	var out []string
	for _, name := range strings.Split(s, ",") {
		name = strings.TrimSpace(name)
		switch {
		case name == ScenarioAll:
			out = append(out, Scenarios...)
		case slices.Contains(Scenarios, name):
			out = append(out, name)
		default:
			return nil, fmt.Errorf("unknown scenario %q (want %s or all)", name, strings.Join(Scenarios, ", "))
		}
	}
	churns := 0
	for _, n := range out {
		if n == ScenarioChurn {
			churns++
		}
	}
	if churns > 1 {
		return nil, errors.New("churn can run once per process")
	}
	return out, nil
}

var _ prometheus.Gatherer = (*prometheus.Registry)(nil)

// Run runs scenario (one of Scenarios, or ScenarioProvision) and returns
// its result; the error says why it did not converge.
func (h *Harness) Run(ctx context.Context, scenario string) (*Result, error) {
	run, ok := scenarioRuns[scenario]
	if !ok {
		return nil, fmt.Errorf("load: unknown scenario %q", scenario)
	}
	return run(h, ctx)
}

// scenarioRuns are the scenarios by name.
var scenarioRuns = map[string]func(*Harness, context.Context) (*Result, error){
	ScenarioProvision: (*Harness).Provision,
	ScenarioRollout:   (*Harness).Rollout,
	ScenarioEnv:       (*Harness).EnvChange,
	ScenarioChurn:     (*Harness).Churn,
	ScenarioLogs:      (*Harness).LogStorm,
	ScenarioDelete:    (*Harness).DeletionWave,
	ScenarioRestart:   (*Harness).RestartWave,
}

// cloudCommitProbe counts the app's devices the cloud sees on commit, and
// notes when each was first seen there; hints are the devices whose report
// of the commit the supervisor took.
func (h *Harness) cloudCommitProbe(commit string, seen *firstTimes, hints *hintQueue) *pendingProbe {
	return h.newPendingProbe(func(d CloudDevice) bool { return d.IsOnCommit == commit }, seen, hints)
}

// Provision waits until the gateway has provisioned every device and each
// reports the app's first release to the cloud.
func (h *Harness) Provision(ctx context.Context) (*Result, error) {
	p := h.newPhase(ScenarioProvision, "provision every device through the supervisor and roll out the first release; converged = the cloud sees the device on that release", map[string]any{"devices": h.opts.Devices})
	apps, err := h.opts.Cloud.Apps(ctx)
	if err != nil {
		return p.finish(), err
	}
	var commit string
	for _, a := range apps {
		if a.ID == h.app.ID && a.Release != nil {
			commit = a.Release.Commit
		}
	}
	p.res.Params["commit"] = commit
	var reported, cloudSeen firstTimes
	var hints hintQueue
	h.api.WatchReports(func(uuid string, u api.DeviceUpdate, at time.Time) {
		if u.Commit != nil && *u.Commit == commit {
			reported.note(uuid, at)
			hints.add(uuid)
		}
	})
	pr := h.cloudCommitProbe(commit, &cloudSeen, &hints)
	pr.devices, pr.count = h.managed, h.gw.ManagedCount // devices come as they are provisioned
	err = p.follow(ctx, "provision + first release", h.opts.Devices, pr.sample, nil)
	p.sinceStart("start → report", &reported)
	p.sinceStart("start → cloud (sampled)", &cloudSeen)
	return p.finish(), err
}

// Rollout pushes a new release of the app and waits until the cloud sees
// every managed device on it. Latencies: push → update hook (first for the
// commit), hook → report, push → report (the gateway's view, at the API's
// answer) and push → cloud (sampled).
func (h *Harness) Rollout(ctx context.Context) (*Result, error) {
	commit := h.newCommit()
	want := len(h.managed())
	p := h.newPhase(ScenarioRollout, "push a new release; converged = the cloud sees the device on it (is_on__commit)", map[string]any{"commit": commit, "devices": want})
	var hooked, reported, cloudSeen firstTimes
	h.hooks.WatchHooks(func(kind, uuid string, u *api.UpdateHook, at time.Time) {
		if kind == HookUpdate && u != nil && u.Commit == commit {
			hooked.note(uuid, at)
		}
	})
	var hints hintQueue
	h.api.WatchReports(func(uuid string, u api.DeviceUpdate, at time.Time) {
		if u.Commit != nil && *u.Commit == commit {
			reported.note(uuid, at)
			hints.add(uuid)
		}
	})
	endPush := p.controlRequest("control push release")
	_, err := h.pushRelease(ctx, commit)
	endPush()
	if err != nil {
		p.errs.Add("push release", 1)
		p.res.Error = err.Error()
		return p.finish(), err
	}
	p.res.Params["push_seconds"] = round3(time.Since(p.start).Seconds())
	err = p.follow(ctx, "rollout "+commit[:7], want, h.cloudCommitProbe(commit, &cloudSeen, &hints).sample, nil)
	p.sinceStart("push → update hook", &hooked)
	p.since("update hook → report", &hooked, &reported)
	p.sinceStart("push → report", &reported)
	p.sinceStart("push → cloud (sampled)", &cloudSeen)
	p.counts.Add("devices hooked", int64(hooked.len()))
	p.counts.Add("devices reported", int64(reported.len()))
	return p.finish(), err
}

// EnvChange sets the app's environment variable EnvVar to a new value and
// waits until the supervisor's GET /v1/devices shows every managed device
// reporting it.
func (h *Harness) EnvChange(ctx context.Context) (*Result, error) {
	h.randMu.Lock()
	h.envSeq++
	value := fmt.Sprintf("%d-%08x", h.envSeq, h.rand.Uint32())
	h.randMu.Unlock()
	want := len(h.managed())
	p := h.newPhase(ScenarioEnv, "set an app environment variable; converged = GET /v1/devices shows the device reporting it", map[string]any{"variable": EnvVar, "value": value, "devices": want})
	var hooked, reported firstTimes
	h.hooks.WatchHooks(func(kind, uuid string, u *api.UpdateHook, at time.Time) {
		if kind == HookUpdate && u != nil && fmt.Sprint(u.Environment[EnvVar]) == value {
			hooked.note(uuid, at)
		}
	})
	h.api.WatchReports(func(uuid string, u api.DeviceUpdate, at time.Time) {
		if u.Environment != nil && fmt.Sprint(u.Environment[EnvVar]) == value {
			reported.note(uuid, at)
		}
	})
	endSet := p.controlRequest("control set variable")
	err := h.opts.Cloud.UpdateVars(ctx, cloud.VarsUpdate{App: h.app.ID, Kind: cloud.KindEnv, Set: map[string]string{EnvVar: value}})
	endSet()
	if err != nil {
		p.errs.Add("set variable", 1)
		p.res.Error = err.Error()
		return p.finish(), err
	}
	var seen firstTimes
	pr := func(ctx context.Context) (int, int, error) {
		ds, err := h.probe.Devices(ctx)
		if err != nil {
			return 0, 0, err
		}
		now := time.Now()
		conv, total := 0, 0
		for _, d := range ds {
			if d.AppID != h.app.ID {
				continue
			}
			total++
			if v, ok := d.Environment[EnvVar]; ok && fmt.Sprint(v) == value {
				conv++
				seen.note(d.UUID, now)
			}
		}
		return conv, total, nil
	}
	err = p.follow(ctx, "env "+EnvVar+"="+value, want, pr, nil)
	p.sinceStart("change → update hook", &hooked)
	p.since("update hook → report", &hooked, &reported)
	p.sinceStart("change → report", &reported)
	p.sinceStart("change → GET /v1/devices (sampled)", &seen)
	return p.finish(), err
}

// LogStorm sends Params.LogLines log lines for every managed device
// through POST /v1/devices/{uuid}/logs and waits until the cloud has
// received them all.
func (h *Harness) LogStorm(ctx context.Context) (*Result, error) {
	uuids := h.managed()
	n := h.opts.Params.LogLines
	p := h.newPhase(ScenarioLogs, "send log lines for every device through the supervisor; converged = the cloud has received all of the device's lines", map[string]any{"lines_per_device": n, "devices": len(uuids), "concurrency": h.opts.Params.LogConcurrency})
	base := map[string]int{}
	ds, err := h.cloudDevices(ctx)
	if err != nil {
		return p.finish(), err
	}
	for _, d := range ds {
		base[d.UUID] = d.LogCount
	}
	p.start = time.Now()
	var sent firstTimes
	var sentHints hintQueue
	var sentLines, failed atomic.Int64
	sendCtx, stopSending := context.WithCancel(ctx)
	defer stopSending()
	var wg sync.WaitGroup
	work := make(chan string)
	for range h.opts.Params.LogConcurrency {
		wg.Go(func() {
			for uuid := range work {
				for i := range n {
					ts := time.Now().UnixMilli()
					err := h.client.Log(sendCtx, uuid, api.LogEntry{Message: fmt.Sprintf("load storm line %d of %d", i+1, n), Timestamp: &ts})
					if err != nil {
						if sendCtx.Err() == nil {
							failed.Add(1)
						}
						continue
					}
					sentLines.Add(1)
				}
				sent.note(uuid, time.Now())
				sentHints.add(uuid)
			}
		})
	}
	go func() {
		defer close(work)
		for _, u := range uuids {
			select {
			case work <- u:
			case <-sendCtx.Done():
				return
			}
		}
	}()
	var delivered firstTimes
	pr := h.newPendingProbe(func(d CloudDevice) bool {
		b, ok := base[d.UUID]
		return ok && d.LogCount-b >= n
	}, &delivered, &sentHints)
	err = p.follow(ctx, fmt.Sprintf("log storm %d×%d", len(uuids), n), len(uuids), pr.sample, nil)
	stopSending()
	wg.Wait()
	p.sinceStart("start → device's lines sent", &sent)
	p.since("device's lines sent → cloud (sampled)", &sent, &delivered)
	p.counts.Add("log lines sent", sentLines.Load())
	if f := failed.Load(); f > 0 {
		p.errs.Add("log lines refused", f)
	}
	if p.res.Seconds > 0 {
		p.res.Params["lines_per_second"] = round3(float64(sentLines.Load()) / p.res.Seconds)
	}
	return p.finish(), err
}

// pick draws k distinct managed devices.
func (h *Harness) pick(k int) []string {
	uuids := h.managed()
	h.randMu.Lock()
	h.rand.Shuffle(len(uuids), func(i, j int) { uuids[i], uuids[j] = uuids[j], uuids[i] })
	h.randMu.Unlock()
	return uuids[:min(k, len(uuids))]
}

// each calls fn for every uuid, conc at a time, and counts failures.
func each(ctx context.Context, uuids []string, conc int, fn func(context.Context, string) error) (failed int64, last error) {
	var wg sync.WaitGroup
	var mu sync.Mutex
	work := make(chan string)
	for range conc {
		wg.Go(func() {
			for u := range work {
				if err := fn(ctx, u); err != nil && ctx.Err() == nil {
					mu.Lock()
					failed++
					last = err
					mu.Unlock()
				}
			}
		})
	}
	for _, u := range uuids {
		if ctx.Err() != nil {
			break
		}
		work <- u
	}
	close(work)
	wg.Wait()
	return failed, last
}
