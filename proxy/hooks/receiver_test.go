package hooks

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/depharness/depharness/internal/testkit"
	"github.com/depharness/depharness/proxy/store"
	"github.com/depharness/depharness/proxy/violation"
	"github.com/prometheus/client_golang/prometheus"
)

// hookReq is one hook the receiver got.
type hookReq struct {
	Method, Path, ContentType string
	UUID                      string
	Restart                   bool
	Body                      string
	At                        time.Time
}

// receiver is a scriptable gateway hook server. Respond decides the status
// of each hook (nil: 200); it may block to simulate a slow gateway.
type receiver struct {
	srv *httptest.Server

	mu       sync.Mutex
	reqs     []hookReq
	inflight map[string]int
	counts   map[string]int // hooks per uuid
	overlaps int
	changed  chan struct{} // closed and replaced on each request
	respond  func(h hookReq, n int) int
}

func newReceiver(t testing.TB, respond func(h hookReq, n int) int) *receiver {
	t.Helper()
	rv := &receiver{inflight: map[string]int{}, counts: map[string]int{}, changed: make(chan struct{}), respond: respond}
	rv.srv = testkit.Server(t, http.HandlerFunc(rv.serve))
	return rv
}

// base is the hook base address.
func (rv *receiver) base() string { return rv.srv.URL + "/v1/devices/" }

func (rv *receiver) serve(w http.ResponseWriter, r *http.Request) {
	body, _ := io.ReadAll(r.Body)
	rest := strings.TrimPrefix(r.URL.Path, "/v1/devices/")
	h := hookReq{Method: r.Method, Path: r.URL.Path, ContentType: r.Header.Get("Content-Type"), Body: string(body), At: time.Now()}
	h.UUID, h.Restart = strings.CutSuffix(rest, "/restart")
	rv.mu.Lock()
	rv.inflight[h.UUID]++
	if rv.inflight[h.UUID] > 1 {
		rv.overlaps++
	}
	rv.reqs = append(rv.reqs, h)
	rv.counts[h.UUID]++
	n := rv.counts[h.UUID]
	close(rv.changed)
	rv.changed = make(chan struct{})
	respond := rv.respond
	rv.mu.Unlock()
	status := http.StatusOK
	if respond != nil {
		status = respond(h, n)
	}
	rv.mu.Lock()
	rv.inflight[h.UUID]--
	rv.mu.Unlock()
	w.WriteHeader(status)
}

// requests returns the hooks so far, filtered by pred (nil: all).
func (rv *receiver) requests(pred func(hookReq) bool) []hookReq {
	rv.mu.Lock()
	defer rv.mu.Unlock()
	var out []hookReq
	for _, h := range rv.reqs {
		if pred == nil || pred(h) {
			out = append(out, h)
		}
	}
	return out
}

func (rv *receiver) overlapCount() int {
	rv.mu.Lock()
	defer rv.mu.Unlock()
	return rv.overlaps
}

// await waits until at least n hooks matching pred arrived and returns them.
func (rv *receiver) await(t testing.TB, n int, pred func(hookReq) bool) []hookReq {
	t.Helper()
	deadline := time.After(10 * time.Second)
	for {
		rv.mu.Lock()
		ch := rv.changed
		rv.mu.Unlock()
		if got := rv.requests(pred); len(got) >= n {
			return got
		}
		select {
		case <-ch:
		case <-deadline:
			t.Fatalf("got %d matching hooks after 10s, want %d; all: %+v", len(rv.requests(pred)), n, rv.requests(nil))
		}
	}
}

func updatesTo(uuid string) func(hookReq) bool {
	return func(h hookReq) bool { return h.UUID == uuid && h.Method == http.MethodPut && !h.Restart }
}

// world is a store with one app and some devices, and helpers to change it.
type world struct {
	t      testing.TB
	dir    string
	st     *store.Store
	target store.Target
}

// newWorld opens a store in a fresh directory with app 1 (commit c1 in the
// target) and the given devices (environment A=1).
func newWorld(t testing.TB, uuids ...string) *world {
	t.Helper()
	w := &world{t: t, dir: t.TempDir()}
	w.open()
	w.target.Apps = []store.TargetApp{{ID: 1, Name: "app", Commit: "c1", Image: "reg/app@sha256:aa"}}
	for i, u := range uuids {
		w.target.Devices = append(w.target.Devices, store.TargetDevice{
			UUID: u, AppID: 1, Name: u, Environment: map[string]string{"A": "1"},
			Cloud: &store.CloudDevice{ID: int64(100 + i), DeviceType: "generic-amd64"},
		})
	}
	w.apply()
	return w
}

func (w *world) open() {
	w.t.Helper()
	st, err := store.Open(w.dir, store.Options{})
	if err != nil {
		w.t.Fatalf("open store: %v", err)
	}
	w.st = st
	w.t.Cleanup(func() { st.Close() })
}

func (w *world) reopen() {
	w.t.Helper()
	w.st.Close()
	w.open()
}

// apply applies w.target as a poll that started a second from now would:
// every device absent from it is marked.
func (w *world) apply() {
	w.t.Helper()
	if _, err := w.st.ApplyTarget(context.Background(), w.target, time.Now().Add(time.Second)); err != nil {
		w.t.Fatalf("ApplyTarget: %v", err)
	}
}

func (w *world) device(uuid string) *store.TargetDevice {
	for i := range w.target.Devices {
		if w.target.Devices[i].UUID == uuid {
			return &w.target.Devices[i]
		}
	}
	w.t.Fatalf("no device %s", uuid)
	return nil
}

func (w *world) downloaded(commit string) {
	w.t.Helper()
	if err := w.st.SetAppCurrentCommit(context.Background(), 1, commit); err != nil {
		w.t.Fatalf("SetAppCurrentCommit: %v", err)
	}
}

func (w *world) report(uuid, commit, env string) {
	w.t.Helper()
	r := store.Report{Commit: &commit}
	if env != "" {
		r.Environment = json.RawMessage(env)
	}
	if _, _, err := w.st.ApplyReport(context.Background(), uuid, r); err != nil {
		w.t.Fatalf("ApplyReport: %v", err)
	}
}

// awaitSettled waits until the store owes uuid nothing.
func (w *world) awaitSettled(uuid string) {
	w.t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for {
		hw, err := w.st.HookWorkFor(context.Background(), uuid)
		if err == store.ErrNotFound || (err == nil && !hw.Pending()) {
			return
		}
		if time.Now().After(deadline) {
			w.t.Fatalf("device %s still owed %+v (err %v) after 10s", uuid, hw, err)
		}
		time.Sleep(5 * time.Millisecond)
	}
}

// running is a started dispatcher.
type running struct {
	d    *Dispatcher
	reg  *prometheus.Registry
	stop func()
}

// start runs a dispatcher on w's store (unless opts name another) until the test ends or stop is called.
func start(t testing.TB, w *world, opts Options) *running {
	t.Helper()
	if opts.Store == nil {
		opts.Store = w.st
	}
	if opts.RetryInterval == 0 {
		opts.RetryInterval = 50 * time.Millisecond
	}
	if opts.Timeout == 0 {
		opts.Timeout = 2 * time.Second
	}
	reg := prometheus.NewRegistry()
	opts.Registerer = reg
	if opts.Logger == nil {
		opts.Logger = testkit.Logger(t, slog.LevelWarn)
	}
	d, err := New(opts)
	if err != nil {
		t.Fatalf("New: %v", err)
	}
	r := testkit.Run(t, d.Run)
	return &running{d: d, reg: reg, stop: func() { r.Stop() }}
}

func violations(names ...string) violation.Set {
	s := violation.Set{}
	for _, n := range names {
		if _, ok := violation.Known[n]; !ok {
			panic(fmt.Sprintf("unknown violation %s", n))
		}
		s[n] = true
	}
	return s
}

// gaps are the times between consecutive hooks.
func gaps(hs []hookReq) []time.Duration {
	var out []time.Duration
	for i := 1; i < len(hs); i++ {
		out = append(out, hs[i].At.Sub(hs[i-1].At))
	}
	return out
}
