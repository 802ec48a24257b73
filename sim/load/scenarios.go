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
	dto "github.com/prometheus/client_model/go"

	"github.com/depharness/depharness/api"
	"github.com/depharness/depharness/fakes/cloud"
	"github.com/depharness/depharness/sim/client"
	"github.com/depharness/depharness/sim/fleet"
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

// Sample is the state of convergence at one moment of a phase.
type Sample struct {
	// T is seconds since the phase started.
	T         float64 `json:"t"`
	Converged int     `json:"converged"`
	Total     int     `json:"total"`
	// ProbeMS is how long taking the sample took.
	ProbeMS float64 `json:"probe_ms"`
	// Gauges are the supervisor's gauges (hooks pending, outbox depth) at
	// that moment, when its metrics are read; sampled at most twice a
	// second.
	Gauges map[string]float64 `json:"gauges,omitempty"`
}

// Result is the outcome of one phase.
type Result struct {
	Scenario string `json:"scenario"`
	// What says what the phase did and what convergence means for it.
	What    string         `json:"what"`
	Params  map[string]any `json:"params,omitempty"`
	Started time.Time      `json:"started"`
	// Seconds is the time until convergence, or until the phase gave up.
	Seconds   float64 `json:"seconds"`
	Converged bool    `json:"converged"`
	// Want is the number of devices that had to converge; Reached how many
	// did.
	Want    int      `json:"want"`
	Reached int      `json:"reached"`
	Error   string   `json:"error,omitempty"`
	Samples []Sample `json:"samples"`
	// Latencies are per-device latencies of the phase, by name ("push →
	// report").
	Latencies map[string]Percentiles `json:"latencies"`
	// Requests are the latencies of the gateway's supervisor API requests
	// (the log storm's lines included), by route.
	Requests map[string]Percentiles `json:"requests"`
	// ProbeRequests are the latencies of the requests that sampled
	// convergence through the supervisor API, by route.
	ProbeRequests map[string]Percentiles `json:"probe_requests,omitempty"`
	// Hooks are the times the gateway took to answer hooks, by kind.
	Hooks map[string]Percentiles `json:"hooks"`
	// Errors count failed API requests (route and status), hooks answered
	// with an error, the gateway's failed operations and the scenario's
	// own failures.
	Errors map[string]int64 `json:"errors"`
	// Counts are what happened: hooks by kind and answer, reports, events.
	Counts map[string]int64 `json:"counts"`
	// Supervisor is what the supervisor's own metrics say, if read.
	Supervisor *SupervisorFigures `json:"supervisor,omitempty"`
}

// phase is a Result being measured.
type phase struct {
	h      *Harness
	res    *Result
	start  time.Time
	counts Counts
	errs   Counts
	lat    Latencies
	// expected are probe answers that are not errors ("GET
	// /v1/devices/{uuid} 404" while waiting for a deletion).
	expected map[string]bool
	// supBefore is the supervisor's metrics at the start; lastGauges when
	// its gauges were last sampled.
	supBefore  map[string]metricPoint
	lastGauges time.Time
}

// scrape reads the supervisor's metrics, if there is a source.
func (p *phase) scrape(ctx context.Context) (map[string]metricPoint, bool) {
	src := p.h.opts.SupervisorMetrics
	if src == nil {
		return nil, false
	}
	mfs, err := src(ctx)
	if err != nil {
		if ctx.Err() == nil {
			p.errs.Add("supervisor metrics", 1)
			p.h.log.Warn("reading the supervisor's metrics", "err", err)
		}
		return nil, false
	}
	return flatten(mfs), true
}

func (h *Harness) newPhase(scenario, what string, params map[string]any) *phase {
	// Forget what happened between phases.
	h.api.Take()
	h.probeAPI.Take()
	h.hooks.Take()
	h.gatewayCounters()
	p := &phase{h: h}
	p.supBefore, _ = p.scrape(context.Background())
	p.start = time.Now()
	p.res = &Result{Scenario: scenario, What: what, Params: params, Started: p.start.UTC()}
	return p
}

// since records a per-device latency from a device's start time to at.
func (p *phase) since(name string, from map[string]time.Time, to map[string]time.Time) {
	for k, t := range to {
		if f, ok := from[k]; ok && !t.Before(f) {
			p.lat.Add(name, t.Sub(f))
		}
	}
}

// sinceStart records latencies from the phase's start.
func (p *phase) sinceStart(name string, to map[string]time.Time) {
	for _, t := range to {
		if t.After(p.start) {
			p.lat.Add(name, t.Sub(p.start))
		}
	}
}

// probe counts the converged devices and the devices there are.
type probe func(ctx context.Context) (converged, total int, err error)

// follow samples p until done says so or the phase's timeout passes, and
// shows progress. It fills the result's samples, time and verdict.
func (p *phase) follow(ctx context.Context, label string, want int, pr probe, done func(conv, total int) bool) error {
	h := p.h
	if done == nil {
		done = func(conv, _ int) bool { return conv >= want }
	}
	p.res.Want = want
	ctx, cancel := context.WithTimeout(ctx, h.opts.Timeout)
	defer cancel()
	var conv, total int
	var lastErr error
	for {
		t0 := time.Now()
		c, tot, err := pr(ctx)
		cost := time.Since(t0)
		if err != nil {
			if ctx.Err() == nil {
				p.errs.Add("probe", 1)
				lastErr = err
				h.log.Warn("sampling convergence", "scenario", p.res.Scenario, "err", err)
			}
		} else {
			conv, total = c, tot
			smp := Sample{T: round3(time.Since(p.start).Seconds()), Converged: conv, Total: total, ProbeMS: ms(cost)}
			if time.Since(p.lastGauges) >= 500*time.Millisecond {
				if pts, ok := p.scrape(ctx); ok {
					p.lastGauges = time.Now()
					smp.Gauges = gauges(pts)
				}
			}
			p.res.Samples = append(p.res.Samples, smp)
		}
		el := time.Since(p.start)
		h.opts.Progress.Show(label, conv, want, el)
		if err == nil && done(conv, total) {
			p.res.Seconds, p.res.Converged, p.res.Reached = round3(el.Seconds()), true, conv
			h.opts.Progress.Done(label, want, el)
			return nil
		}
		if herr := h.Err(); herr != nil {
			return p.giveUp(label, conv, herr)
		}
		wait := max(h.opts.SampleEvery, 10*cost)
		select {
		case <-ctx.Done():
			why := ctx.Err()
			if lastErr != nil {
				why = fmt.Errorf("%w (last sampling error: %v)", why, lastErr)
			}
			if errors.Is(ctx.Err(), context.DeadlineExceeded) {
				why = fmt.Errorf("did not converge within %v: %w", h.opts.Timeout, why)
			}
			return p.giveUp(label, conv, why)
		case <-time.After(wait):
		}
	}
}

func (p *phase) giveUp(label string, conv int, why error) error {
	el := time.Since(p.start)
	p.res.Seconds, p.res.Reached, p.res.Error = round3(el.Seconds()), conv, why.Error()
	p.h.opts.Progress.Fail(label, conv, p.res.Want, el, why.Error())
	return why
}

// finish gathers the phase's instruments into its result.
func (p *phase) finish() *Result {
	h := p.h
	h.api.WatchReports(nil)
	h.hooks.WatchHooks(nil)
	r := p.res
	var apiErrs, hookAnswers map[string]int64
	r.Requests, apiErrs = h.api.Take()
	r.Hooks, hookAnswers = h.hooks.Take()
	var probeErrs map[string]int64
	r.ProbeRequests, probeErrs = h.probeAPI.Take()
	r.Latencies = p.lat.Take()
	r.Errors = p.errs.Take()
	r.Counts = p.counts.Take()
	for k, v := range probeErrs {
		if !p.expected[k] {
			r.Errors["probe "+k] += v
		}
	}
	for k, v := range apiErrs {
		r.Errors["api "+k] += v
	}
	for k, v := range hookAnswers {
		r.Counts["hooks "+k] += v
		if _, status, _ := strings.Cut(k, " "); len(status) == 3 && status[0] != '2' {
			r.Errors["hook answered "+k] += v
		}
	}
	if p.supBefore != nil {
		if after, ok := p.scrape(context.Background()); ok {
			f := delta(p.supBefore, after)
			f.GaugePeaks = map[string]float64{}
			for _, smp := range r.Samples {
				for k, v := range smp.Gauges {
					f.GaugePeaks[k] = max(f.GaugePeaks[k], v)
				}
			}
			r.Supervisor = &f
		}
	}
	for k, v := range h.gatewayCounters() {
		if strings.HasPrefix(k, "gateway errors") || strings.HasPrefix(k, "gateway logs dropped") {
			r.Errors[k] += int64(v)
		} else {
			r.Counts[k] += int64(v)
		}
	}
	return r
}

func round3(f float64) float64 { return float64(int64(f*1000+0.5)) / 1000 }

// gatewayCounters returns the growth of the gateway's counters since the
// last call, by a readable name ("gateway errors op=report").
func (h *Harness) gatewayCounters() map[string]float64 {
	mfs, err := h.metrics.Gather()
	out := map[string]float64{}
	if err != nil {
		return out
	}
	cur := map[string]float64{}
	for _, mf := range mfs {
		if mf.GetType() != dto.MetricType_COUNTER {
			continue
		}
		name := strings.ReplaceAll(strings.TrimSuffix(strings.TrimPrefix(mf.GetName(), "depharness_gateway_"), "_total"), "_", " ")
		for _, m := range mf.GetMetric() {
			key := "gateway " + name
			for _, l := range m.GetLabel() {
				key += " " + l.GetName() + "=" + l.GetValue()
			}
			cur[key] = m.GetCounter().GetValue()
		}
	}
	for k, v := range cur {
		if d := v - h.prevGW[k]; d > 0 {
			out[k] = d
		}
	}
	h.prevGW = cur
	return out
}

var _ prometheus.Gatherer = (*prometheus.Registry)(nil)

// Run runs scenario (one of Scenarios, or ScenarioProvision) and returns
// its result; the error says why it did not converge.
func (h *Harness) Run(ctx context.Context, scenario string) (*Result, error) {
	switch scenario {
	case ScenarioProvision:
		return h.Provision(ctx)
	case ScenarioRollout:
		return h.Rollout(ctx)
	case ScenarioEnv:
		return h.EnvChange(ctx)
	case ScenarioChurn:
		return h.Churn(ctx)
	case ScenarioLogs:
		return h.LogStorm(ctx)
	case ScenarioDelete:
		return h.DeletionWave(ctx)
	case ScenarioRestart:
		return h.RestartWave(ctx)
	}
	return nil, fmt.Errorf("load: unknown scenario %q", scenario)
}

// cloudCommitProbe counts the app's devices the cloud sees on commit, and
// notes when each was first seen there.
func (h *Harness) cloudCommitProbe(commit string, seen *firstTimes) probe {
	return func(ctx context.Context) (int, int, error) {
		ds, err := h.cloudDevices(ctx)
		if err != nil {
			return 0, 0, err
		}
		now := time.Now()
		conv := 0
		for _, d := range ds {
			if d.IsOnCommit == commit {
				conv++
				seen.note(d.UUID, now)
			}
		}
		return conv, len(ds), nil
	}
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
	h.api.WatchReports(func(uuid string, u api.DeviceUpdate, at time.Time) {
		if u.Commit != nil && *u.Commit == commit {
			reported.note(uuid, at)
		}
	})
	err = p.follow(ctx, "provision + first release", h.opts.Devices, h.cloudCommitProbe(commit, &cloudSeen), nil)
	p.sinceStart("start → report", reported.snapshot())
	p.sinceStart("start → cloud (sampled)", cloudSeen.snapshot())
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
	h.api.WatchReports(func(uuid string, u api.DeviceUpdate, at time.Time) {
		if u.Commit != nil && *u.Commit == commit {
			reported.note(uuid, at)
		}
	})
	if _, err := h.pushRelease(ctx, commit); err != nil {
		p.errs.Add("push release", 1)
		p.res.Error = err.Error()
		return p.finish(), err
	}
	p.res.Params["push_seconds"] = round3(time.Since(p.start).Seconds())
	err := p.follow(ctx, "rollout "+commit[:7], want, h.cloudCommitProbe(commit, &cloudSeen), nil)
	hs, rs := hooked.snapshot(), reported.snapshot()
	p.sinceStart("push → update hook", hs)
	p.since("update hook → report", hs, rs)
	p.sinceStart("push → report", rs)
	p.sinceStart("push → cloud (sampled)", cloudSeen.snapshot())
	p.counts.Add("devices hooked", int64(len(hs)))
	p.counts.Add("devices reported", int64(len(rs)))
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
	err := h.opts.Cloud.UpdateVars(ctx, cloud.VarsUpdate{App: h.app.ID, Kind: cloud.KindEnv, Set: map[string]string{EnvVar: value}})
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
	hs, rs := hooked.snapshot(), reported.snapshot()
	p.sinceStart("change → update hook", hs)
	p.since("update hook → report", hs, rs)
	p.sinceStart("change → report", rs)
	p.sinceStart("change → GET /v1/devices (sampled)", seen.snapshot())
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
	pr := func(ctx context.Context) (int, int, error) {
		ds, err := h.cloudDevices(ctx)
		if err != nil {
			return 0, 0, err
		}
		now := time.Now()
		conv := 0
		for _, d := range ds {
			if b, ok := base[d.UUID]; ok && d.LogCount-b >= n {
				conv++
				delivered.note(d.UUID, now)
			}
		}
		return conv, len(ds), nil
	}
	err = p.follow(ctx, fmt.Sprintf("log storm %d×%d", len(uuids), n), len(uuids), pr, nil)
	stopSending()
	wg.Wait()
	ss := sent.snapshot()
	p.sinceStart("start → device's lines sent", ss)
	p.since("device's lines sent → cloud (sampled)", ss, delivered.snapshot())
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
	reqCtx, stopRequests := context.WithCancel(ctx)
	reqDone := make(chan struct{})
	go func() {
		defer close(reqDone)
		failed, last := each(reqCtx, uuids, 16, func(ctx context.Context, u string) error {
			requested.note(u, time.Now())
			_, err := h.opts.Cloud.RestartDevice(ctx, u)
			return err
		})
		if failed > 0 {
			p.errs.Add("restart requests failed", failed)
			h.log.Warn("restart requests failed", "n", failed, "last", last)
		}
	}()
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
	<-reqDone
	rq, hs := requested.snapshot(), hooked.snapshot()
	p.since("request → restart hook", rq, hs)
	p.since("request → device back up", rq, rebooted.snapshot())
	p.since("restart hook → device back up", hs, rebooted.snapshot())
	p.counts.Add("restart requests", int64(len(rq)))
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
	reqCtx, stopRequests := context.WithCancel(ctx)
	reqDone := make(chan struct{})
	go func() {
		defer close(reqDone)
		failed, last := each(reqCtx, uuids, 16, func(ctx context.Context, u string) error {
			requested.note(u, time.Now())
			return h.opts.Cloud.DeleteDevice(ctx, u)
		})
		if failed > 0 {
			p.errs.Add("delete requests failed", failed)
			h.log.Warn("delete requests failed", "n", failed, "last", last)
		}
	}()
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
	<-reqDone
	rq, gs, hs, rs := requested.snapshot(), gone.snapshot(), hooked.snapshot(), removed.snapshot()
	p.since("delete → 410 (sampled)", rq, gs)
	p.since("delete → delete hook", rq, hs)
	p.since("delete → 404 (sampled)", rq, rs)
	p.counts.Add("seen 410", int64(len(gs)))
	p.counts.Add("delete hooks", int64(len(hs)))
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
