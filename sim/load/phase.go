package load

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"time"

	dto "github.com/prometheus/client_model/go"
)

// A phase of a scenario: what it measures while it runs (samples, the
// gateway's and the proxy's counters) and the Result it ends with.

// Sample is the state of convergence at one moment of a phase.
type Sample struct {
	// T is seconds since the phase started.
	T         float64 `json:"t"`
	Converged int     `json:"converged"`
	Total     int     `json:"total"`
	// ProbeMS is how long taking the sample took.
	ProbeMS float64 `json:"probe_ms"`
	// Gauges are the supervisor's gauges (hooks pending, outbox depth) at
	// that moment, when its metrics are read; sampled at most ten times a
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
	// (the log storm's lines included), by route, and AllRequests of all
	// of them together.
	Requests    map[string]Percentiles `json:"requests"`
	AllRequests Percentiles            `json:"all_requests"`
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
	// CPUSeconds is the processor time this process used during the phase
	// (user and system; in-process, the supervisor's and the fakes' too).
	CPUSeconds float64 `json:"cpu_seconds"`
	// RoundTrips are the phase's HTTP round trips by kind (the sampling
	// requests left out), and Floor what they take against a bare handler
	// (MeasureFloor).
	RoundTrips []RoundTrips `json:"round_trips"`
	Floor      *Floor       `json:"floor,omitempty"`
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
	gaugeEvery time.Duration
	// cloudBefore and registryBefore are the request counters of the cloud
	// and the registry at the start; cpuBefore the process's CPU time.
	cloudBefore, registryBefore map[string]float64
	cpuBefore                   time.Duration
	// control counts the scenario's own requests to the cloud.
	control traffic
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
	h.api.TakeRoundTrips()
	h.hooks.TakeRoundTrips()
	h.gatewayCounters()
	p := &phase{h: h}
	p.supBefore, _ = p.scrape(context.Background())
	p.cloudBefore = h.outsideRequests(context.Background(), h.opts.CloudMetrics, cloudRequests)
	p.registryBefore = h.outsideRequests(context.Background(), h.opts.RegistryMetrics, registryRequests)
	p.cpuBefore = cpuTime()
	p.start = time.Now()
	p.res = &Result{Scenario: scenario, What: what, Params: params, Started: p.start.UTC()}
	return p
}

// since records, for every device in both, the latency from its time in
// from to its time in to.
func (p *phase) since(name string, from, to *firstTimes) {
	p.lat.AddAll(name, intervals(from, to))
}

// sinceStart records latencies from the phase's start.
func (p *phase) sinceStart(name string, to *firstTimes) {
	p.lat.AddAll(name, to.after(p.start))
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
	every := h.opts.SampleEvery
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
			if time.Since(p.lastGauges) >= p.gaugeEvery {
				g0 := time.Now()
				if pts, ok := p.scrape(ctx); ok {
					p.lastGauges = time.Now()
					p.gaugeEvery = max(gaugeEvery, 10*time.Since(g0))
					smp.Gauges = gauges(pts)
				}
			}
			if p.addSample(smp) {
				every *= 2
			}
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
		wait := max(every, 10*cost)
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

// maxSamples bounds the samples a phase keeps: a long phase keeps every
// other one each time it has this many, and samples half as often.
const maxSamples = 1000

// gaugeEvery is the shortest interval between reads of the supervisor's
// gauges; a read that takes long spaces the next ones (ten times its
// duration).
const gaugeEvery = 100 * time.Millisecond

// addSample keeps smp, and reports whether the samples were thinned.
func (p *phase) addSample(smp Sample) bool {
	p.res.Samples = append(p.res.Samples, smp)
	if len(p.res.Samples) < maxSamples {
		return false
	}
	kept := p.res.Samples[:0]
	last := len(p.res.Samples) - 1
	for i, s := range p.res.Samples {
		if i%2 == 0 || i == last {
			kept = append(kept, s)
		}
	}
	clear(p.res.Samples[len(kept):])
	p.res.Samples = kept
	return true
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
	r.Requests, r.AllRequests, apiErrs = h.api.take()
	r.Hooks, hookAnswers = h.hooks.Take()
	var probeErrs map[string]int64
	r.ProbeRequests, probeErrs = h.probeAPI.Take()
	r.CPUSeconds = round3((cpuTime() - p.cpuBefore).Seconds())
	r.Latencies = p.lat.Take()
	r.Errors = p.errs.Take()
	r.Counts = p.counts.Take()
	r.RoundTrips = p.roundTrips()
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
