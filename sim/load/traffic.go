package load

import (
	"context"
	"slices"
	"strings"
	"sync"
	"time"

	dto "github.com/prometheus/client_model/go"
)

// Counting a phase's HTTP round trips by kind, for its floor: hooks and the
// gateway's requests as the recorders see them, the supervisor's requests to
// the cloud and the registry from their request counters, and the
// scenario's own requests to the cloud's control API.

// traffic counts round trips by kind as they happen: how many, the most in
// flight at once, and their body sizes. It is safe for concurrent use.
type traffic struct {
	mu sync.Mutex
	m  map[string]*trafficKind
}

type trafficKind struct {
	count, inflight, peak int64
	reqBytes, respBytes   int64
}

// begin counts a round trip of kind with a request body of reqBytes (<0:
// unknown) and returns what end must be given.
func (t *traffic) begin(kind string, reqBytes int64) *trafficKind {
	t.mu.Lock()
	defer t.mu.Unlock()
	if t.m == nil {
		t.m = map[string]*trafficKind{}
	}
	k := t.m[kind]
	if k == nil {
		k = &trafficKind{}
		t.m[kind] = k
	}
	k.count++
	k.inflight++
	k.peak = max(k.peak, k.inflight)
	k.reqBytes += max(reqBytes, 0)
	return k
}

// end closes a round trip begun with begin; respBytes < 0 is unknown.
func (t *traffic) end(k *trafficKind, respBytes int64) {
	t.mu.Lock()
	k.inflight--
	k.respBytes += max(respBytes, 0)
	t.mu.Unlock()
}

// take returns the round trips since the last take, from, and forgets them.
// Round trips in flight count in the next take's peak only from then on.
func (t *traffic) take(from string) []RoundTrips {
	t.mu.Lock()
	// Read under the lock: round trips still in flight end (and write
	// their kind's counters) after the map is forgotten.
	out := make([]RoundTrips, 0, len(t.m))
	for kind, k := range t.m {
		out = append(out, RoundTrips{Kind: kind, From: from, Count: k.count, Concurrency: int(max(k.peak, 1)),
			RequestBytes: int(k.reqBytes / k.count), ResponseBytes: int(k.respBytes / k.count)})
	}
	t.m = nil
	t.mu.Unlock()
	sortRoundTrips(out)
	return out
}

func sortRoundTrips(rts []RoundTrips) {
	slices.SortFunc(rts, func(a, b RoundTrips) int {
		if c := strings.Compare(a.From, b.From); c != 0 {
			return c
		}
		return strings.Compare(a.Kind, b.Kind)
	})
}

// Request counters of the fakes, read at a phase's start and end.
var (
	// cloudRequests: the fake cloud's protocol requests by route (the
	// supervisor's target-state polls, PATCHes, provisioning, lookups and
	// log streams).
	cloudRequests = requestCounter{metric: "depharness_cloud_requests_total", labels: []string{"route"}}
	// registryRequests: the fake registry's requests by kind and method,
	// of which the pulls (GET) count: pushing a release checks blobs with
	// HEAD.
	registryRequests = requestCounter{metric: "depharness_registry_requests_total", labels: []string{"kind", "method"},
		keep: func(vals []string) bool { return vals[1] == "GET" }}
)

// requestCounter picks a counter's series by the values of labels, summing
// over the others.
type requestCounter struct {
	metric string
	labels []string
	keep   func(vals []string) bool
}

func (c requestCounter) read(mfs []*dto.MetricFamily) map[string]float64 {
	out := map[string]float64{}
	for _, mf := range mfs {
		if mf.GetName() != c.metric {
			continue
		}
		for _, m := range mf.GetMetric() {
			vals := make([]string, len(c.labels))
			for _, l := range m.GetLabel() {
				if i := slices.Index(c.labels, l.GetName()); i >= 0 {
					vals[i] = l.GetValue()
				}
			}
			if c.keep == nil || c.keep(vals) {
				out[strings.Join(vals, " ")] += m.GetCounter().GetValue()
			}
		}
	}
	return out
}

// outsideRequests reads c from src; nil when there is no source or it
// cannot be read (the phase's floor then leaves those requests out).
func (h *Harness) outsideRequests(ctx context.Context, src MetricsSource, c requestCounter) map[string]float64 {
	if src == nil {
		return nil
	}
	ctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	mfs, err := src(ctx)
	if err != nil {
		h.log.Warn("reading request counters", "metric", c.metric, "err", err)
		return nil
	}
	return c.read(mfs)
}

// roundTrips gathers the phase's round trips: the recorders', the
// scenario's control requests, and the growth of the fakes' request
// counters (sent with the supervisor's concurrency).
func (p *phase) roundTrips() []RoundTrips {
	h := p.h
	out := append(h.hooks.TakeRoundTrips(), h.api.TakeRoundTrips()...)
	out = append(out, p.control.take("harness")...)
	grown := func(prefix string, before map[string]float64, src MetricsSource, c requestCounter) {
		if before == nil {
			return
		}
		after := h.outsideRequests(context.Background(), src, c)
		if after == nil {
			return
		}
		for k, v := range after {
			if n := int64(v - before[k]); n > 0 {
				out = append(out, RoundTrips{Kind: prefix + " " + k, From: "supervisor", Count: n,
					Concurrency: h.opts.SupervisorConcurrency, RequestBytes: outsideRequestBytes, ResponseBytes: outsideRequestBytes})
			}
		}
	}
	grown("cloud", p.cloudBefore, h.opts.CloudMetrics, cloudRequests)
	grown("registry", p.registryBefore, h.opts.RegistryMetrics, registryRequests)
	sortRoundTrips(out)
	return out
}

// controlRequest counts one of the scenario's requests to the cloud's
// control API; call what it returns when the request is answered.
func (p *phase) controlRequest(kind string) (end func()) {
	tk := p.control.begin(kind, outsideRequestBytes)
	return func() { p.control.end(tk, outsideRequestBytes) }
}

// outsideRequestBytes is the body size the floor sends and answers for the
// supervisor's requests to the cloud and registry, whose sizes the harness
// does not see: a PATCH of a device's state is about this large.
const outsideRequestBytes = 128
