package load

import (
	"bytes"
	"encoding/json"
	"io"
	"net/http"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/depharness/depharness/api"
	"github.com/depharness/depharness/internal/httpserver"
)

// apiRoute is the route template of a supervisor API request, e.g.
// "PUT /v1/devices/{uuid}": a label without uuids, commits or app ids. The
// second result is the device uuid, if the path names one.
func apiRoute(method, path string) (route, uuid string) {
	parts := strings.Split(strings.Trim(path, "/"), "/")
	switch {
	case len(parts) >= 2 && parts[0] == "v1" && parts[1] == "devices":
		switch len(parts) {
		case 2:
			return method + " /v1/devices", ""
		case 3:
			return method + " /v1/devices/{uuid}", parts[2]
		case 4:
			return method + " /v1/devices/{uuid}/" + parts[3], parts[2]
		}
	case len(parts) >= 2 && parts[0] == "v1" && parts[1] == "dependent-apps":
		switch len(parts) {
		case 2:
			return method + " /v1/dependent-apps", ""
		case 5:
			return method + " /v1/dependent-apps/{id}/assets/{commit}", ""
		}
	case len(parts) == 1 && parts[0] == "ping":
		return method + " /ping", ""
	}
	return method + " other", ""
}

// APIRecorder is an http.RoundTripper that times every request to the
// supervisor API by route, counts failed requests by route and status, and
// tells a watcher about every successful device report (PUT
// /v1/devices/{uuid}) with its body. It is safe for concurrent use.
type APIRecorder struct {
	// Next, if nil, is http.DefaultTransport.
	Next http.RoundTripper
	// Now, if nil, is time.Now.
	Now func() time.Time

	lat     Latencies
	errs    Counts
	traffic traffic

	mu       sync.Mutex
	onReport func(uuid string, u api.DeviceUpdate, at time.Time)
}

// RoundTrip sends req through Next and records it.
func (r *APIRecorder) RoundTrip(req *http.Request) (*http.Response, error) {
	now := r.now()
	route, uuid := apiRoute(req.Method, req.URL.Path)
	r.mu.Lock()
	watch := r.onReport
	r.mu.Unlock()
	var body []byte
	if watch != nil && uuid != "" && route == "PUT /v1/devices/{uuid}" && req.GetBody != nil {
		if rc, err := req.GetBody(); err == nil {
			body, _ = io.ReadAll(rc)
			rc.Close()
		}
	}
	next := r.Next
	if next == nil {
		next = http.DefaultTransport
	}
	tk := r.traffic.begin(route, req.ContentLength)
	start := now()
	resp, err := next.RoundTrip(req)
	end := now()
	r.lat.Add(route, end.Sub(start))
	respBytes := int64(-1)
	if err == nil {
		respBytes = resp.ContentLength
	}
	r.traffic.end(tk, respBytes)
	switch {
	case err != nil:
		if req.Context().Err() == nil {
			r.errs.Add(route+" transport", 1)
		}
	case resp.StatusCode >= 400:
		r.errs.Add(route+" "+strconv.Itoa(resp.StatusCode), 1)
	case body != nil:
		var u api.DeviceUpdate
		if json.Unmarshal(body, &u) == nil {
			watch(uuid, u, end)
		}
	}
	return resp, err
}

func (r *APIRecorder) now() func() time.Time {
	if r.Now != nil {
		return r.Now
	}
	return time.Now
}

// WatchReports calls fn after every successful device report, from the
// requesting goroutine (fn must be quick); nil stops the calls.
func (r *APIRecorder) WatchReports(fn func(uuid string, u api.DeviceUpdate, at time.Time)) {
	r.mu.Lock()
	r.onReport = fn
	r.mu.Unlock()
}

// Take returns the latencies and error counts since the last Take, and
// forgets them.
func (r *APIRecorder) Take() (map[string]Percentiles, map[string]int64) {
	return r.lat.Take(), r.errs.Take()
}

func (r *APIRecorder) take() (byRoute map[string]Percentiles, all Percentiles, errs map[string]int64) {
	byRoute, all = r.lat.TakeAll()
	return byRoute, all, r.errs.Take()
}

// TakeRoundTrips returns the round trips by route since the last call
// (their number, the most in flight at once, their mean body sizes), from
// "gateway", and forgets them.
func (r *APIRecorder) TakeRoundTrips() []RoundTrips { return r.traffic.take("gateway") }

// Hook kinds as HookRecorder names them.
const (
	HookUpdate  = "update"
	HookRestart = "restart"
	HookDelete  = "delete"
)

// HookRecorder wraps a gateway's hook handler: it times the handling of
// every hook by kind, counts answers by kind and status, and tells a
// watcher about each hook as it arrives. It is safe for concurrent use.
type HookRecorder struct {
	// Next is the gateway's hook handler. Required.
	Next http.Handler
	// Now, if nil, is time.Now.
	Now func() time.Time

	lat     Latencies
	answers Counts
	traffic traffic

	mu     sync.Mutex
	onHook func(kind, uuid string, u *api.UpdateHook, at time.Time)
}

// WatchHooks calls fn for every hook on arrival, before the gateway
// handles it (fn must be quick); u is the decoded body of an update hook,
// nil for other kinds or an undecodable body. nil stops the calls.
func (h *HookRecorder) WatchHooks(fn func(kind, uuid string, u *api.UpdateHook, at time.Time)) {
	h.mu.Lock()
	h.onHook = fn
	h.mu.Unlock()
}

// Take returns the handling latencies and the answer counts since the last
// Take, and forgets them.
func (h *HookRecorder) Take() (map[string]Percentiles, map[string]int64) {
	return h.lat.Take(), h.answers.Take()
}

// TakeRoundTrips returns the hooks by kind since the last call (their
// number, the most in flight at once, their mean body sizes), from
// "supervisor", and forgets them.
func (h *HookRecorder) TakeRoundTrips() []RoundTrips { return h.traffic.take("supervisor") }

// hookTraffic names each hook kind's round trips.
var hookTraffic = map[string]string{HookUpdate: "hook update", HookRestart: "hook restart", HookDelete: "hook delete", "unknown": "hook unknown"}

// hookAnswerBytes is the size of a hook's answer as the floor sends it: the
// reference gateway answers "OK" or "Accepted".
const hookAnswerBytes = 8

func (h *HookRecorder) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	now := time.Now
	if h.Now != nil {
		now = h.Now
	}
	start := now()
	kind, uuid := hookKind(r)
	if kind == "" {
		kind = "unknown"
	}
	tk := h.traffic.begin(hookTraffic[kind], r.ContentLength)
	defer h.traffic.end(tk, hookAnswerBytes)
	h.mu.Lock()
	watch := h.onHook
	h.mu.Unlock()
	if watch != nil && kind != "unknown" {
		var u *api.UpdateHook
		if kind == HookUpdate {
			b, err := io.ReadAll(io.LimitReader(r.Body, api.MaxBodyBytes))
			r.Body.Close()
			r.Body = io.NopCloser(bytes.NewReader(b))
			var t api.UpdateHook
			if err == nil && json.Unmarshal(b, &t) == nil {
				u = &t
			}
		}
		watch(kind, uuid, u, start)
	}
	sw := &httpserver.StatusRecorder{ResponseWriter: w}
	h.Next.ServeHTTP(sw, r)
	h.lat.Add(kind, now().Sub(start))
	h.answers.Add(kind+" "+strconv.Itoa(sw.Status()), 1)
}

// hookKind tells a hook's kind and device from its method and path
// (<base>/<uuid> or <base>/<uuid>/restart).
func hookKind(r *http.Request) (kind, uuid string) {
	p := strings.TrimSuffix(r.URL.Path, "/")
	if rest, ok := strings.CutSuffix(p, "/restart"); ok && r.Method == http.MethodPut {
		return HookRestart, rest[strings.LastIndexByte(rest, '/')+1:]
	}
	uuid = p[strings.LastIndexByte(p, '/')+1:]
	switch r.Method {
	case http.MethodPut:
		return HookUpdate, uuid
	case http.MethodDelete:
		return HookDelete, uuid
	}
	return "", ""
}
