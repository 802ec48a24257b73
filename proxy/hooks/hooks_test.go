package hooks

import (
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"reflect"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/depharness/depharness/api"
	"github.com/depharness/depharness/internal/promreg/promtest"
	"github.com/depharness/depharness/proxy/store"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"
)

const ri = 50 * time.Millisecond

// atLeast fails if any gap is shorter than min (less a small allowance for
// arrival jitter at the receiver).
func atLeast(t *testing.T, what string, gs []time.Duration, min time.Duration) {
	t.Helper()
	for i, g := range gs {
		if g < min-3*time.Millisecond {
			t.Fatalf("%s: gap %d is %v, want at least %v (all: %v)", what, i, g, min, gs)
		}
	}
}

func TestNewRejectsBaseAddressWithoutSlash(t *testing.T) {
	w := newWorld(t)
	if _, err := New(Options{Store: w.st, BaseAddress: "http://127.0.0.1:1/v1/devices"}); err == nil {
		t.Fatal("got nil error for a base address without a trailing slash, want an error")
	}
}

func TestNoUpdateHookBeforeTheCommitIsDownloaded(t *testing.T) {
	rv := newReceiver(t, nil)
	w := newWorld(t, "d1", "clock")
	rv.respond = func(h hookReq, n int) int {
		if h.UUID == "clock" {
			return http.StatusAccepted
		}
		return http.StatusOK
	}
	// The clock device's hooks show time passing; only it is ready at first:
	// move it to app 2, whose commit is downloaded.
	w.target.Apps = append(w.target.Apps, store.TargetApp{ID: 2, Name: "ready", Commit: "c2", Image: "reg/ready@sha256:bb"})
	w.device("clock").AppID = 2
	w.apply()
	if err := w.st.SetAppCurrentCommit(context.Background(), 2, "c2"); err != nil {
		t.Fatal(err)
	}
	r := start(t, w, Options{BaseAddress: rv.base()})
	rv.await(t, 3, updatesTo("clock"))
	if got := rv.requests(updatesTo("d1")); len(got) != 0 {
		t.Fatalf("got %d update hooks to d1 before its commit was downloaded, want 0", len(got))
	}
	readyAt := time.Now()
	w.downloaded("c1")
	r.d.Notify()
	got := rv.await(t, 1, updatesTo("d1"))
	if got[0].At.Before(readyAt) {
		t.Fatalf("got the first d1 hook at %v, before the commit was ready at %v", got[0].At, readyAt)
	}
}

func TestUpdateHook200AcknowledgesTheTarget(t *testing.T) {
	rv := newReceiver(t, func(h hookReq, n int) int {
		if h.UUID == "clock" {
			return http.StatusAccepted
		}
		return http.StatusOK
	})
	w := newWorld(t, "d1", "d2", "clock")
	w.downloaded("c1")
	r := start(t, w, Options{BaseAddress: rv.base()})

	for _, u := range []string{"d1", "d2"} {
		h := rv.await(t, 1, updatesTo(u))[0]
		if h.Path != "/v1/devices/"+u || h.ContentType != "application/json" {
			t.Fatalf("got %s %s (Content-Type %q), want PUT /v1/devices/%s with application/json", h.Method, h.Path, h.ContentType, u)
		}
		var body map[string]any
		if err := json.Unmarshal([]byte(h.Body), &body); err != nil {
			t.Fatalf("hook body %q: %v", h.Body, err)
		}
		want := map[string]any{"appId": float64(1), "commit": "c1", "environment": map[string]any{"A": "1"}, "config": map[string]any{}}
		if !jsonEqual(body, want) {
			t.Fatalf("got hook body %s, want %v", h.Body, want)
		}
		w.awaitSettled(u)
	}
	// Three hooks to the 202 device span at least two retry intervals: a
	// repeating hook to d1 or d2 would have shown by then.
	n := len(rv.requests(updatesTo("clock")))
	rv.await(t, n+3, updatesTo("clock"))
	for _, u := range []string{"d1", "d2"} {
		if got := len(rv.requests(updatesTo(u))); got != 1 {
			t.Fatalf("got %d update hooks to %s after a 200, want 1", got, u)
		}
	}
	// A later, different target gets a new hook.
	w.device("d1").Environment = map[string]string{"A": "2"}
	w.apply()
	r.d.Notify()
	got := rv.await(t, 2, updatesTo("d1"))
	if !strings.Contains(got[1].Body, `"A":"2"`) {
		t.Fatalf("got second hook body %s, want environment A=2", got[1].Body)
	}
	atLeast(t, "a new target after a 200", gaps(got), ri)
	w.awaitSettled("d1")
	promtest.CheckHygiene(t, r.reg)
	if c := testutil.ToFloat64(r.d.metrics.deliveries.WithLabelValues(string(KindUpdate), OutcomeOK)); c < 3 {
		t.Fatalf("got %v ok update deliveries counted, want at least 3", c)
	}
	if c := testutil.CollectAndCount(r.d.metrics.ackLatency); c != 1 {
		t.Fatalf("got %d ack latency series, want 1", c)
	}
}

func jsonEqual(a, b any) bool {
	x, _ := json.Marshal(a)
	y, _ := json.Marshal(b)
	return string(x) == string(y)
}

func TestUpdateHook202RepeatsEveryRetryIntervalUntilReported(t *testing.T) {
	rv := newReceiver(t, func(hookReq, int) int { return http.StatusAccepted })
	w := newWorld(t, "d1", "clock")
	w.downloaded("c1")
	start(t, w, Options{BaseAddress: rv.base()})

	got := rv.await(t, 4, updatesTo("d1"))
	atLeast(t, "202 loop", gaps(got), ri)

	// Only the commit reported: the loop goes on.
	w.report("d1", "c1", `{"A":"other"}`)
	n := len(rv.requests(updatesTo("d1")))
	rv.await(t, n+2, updatesTo("d1"))

	// The whole target reported: the loop stops. Three more hooks to the
	// clock device span two retry intervals.
	w.report("d1", "c1", `{"A":"1"}`)
	reported := time.Now()
	w.awaitSettled("d1")
	n = len(rv.requests(updatesTo("clock")))
	rv.await(t, n+3, updatesTo("clock"))
	for _, h := range rv.requests(updatesTo("d1")) {
		if h.At.After(reported.Add(ri / 2)) {
			t.Fatalf("got an update hook at %v, after the target was reported at %v", h.At, reported)
		}
	}
}

func TestUpdateHookLoopStopsOnlyWhenEnvironmentAndConfigMatchToo(t *testing.T) {
	rv := newReceiver(t, func(hookReq, int) int { return http.StatusAccepted })
	w := newWorld(t, "d1", "clock")
	w.downloaded("c1")
	start(t, w, Options{BaseAddress: rv.base()})
	rv.await(t, 1, updatesTo("d1"))
	w.report("d1", "c1", `{"A":"1"}`) // config never reported counts as {}: matches
	reported := time.Now()
	w.awaitSettled("d1")
	n := len(rv.requests(updatesTo("clock")))
	rv.await(t, n+3, updatesTo("clock"))
	for _, h := range rv.requests(updatesTo("d1")) {
		if h.At.After(reported.Add(ri / 2)) {
			t.Fatalf("got an update hook at %v, after the target was reported at %v", h.At, reported)
		}
	}
}

func TestFailedHooksAreRetriedWithBackoff(t *testing.T) {
	tests := []struct {
		name    string
		respond func(h hookReq, n int) int
	}{
		{"error statuses are retried", func(h hookReq, n int) int {
			if n <= 3 {
				return []int{500, 404, 503}[n-1]
			}
			return http.StatusOK
		}},
		{"timeouts are retried", func(h hookReq, n int) int {
			if n <= 3 {
				time.Sleep(time.Second) // longer than the hook timeout
			}
			return http.StatusOK
		}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			rv := newReceiver(t, tc.respond)
			w := newWorld(t, "d1")
			w.downloaded("c1")
			r := start(t, w, Options{BaseAddress: rv.base(), Timeout: 400 * time.Millisecond, BackoffMax: 8 * ri})
			got := rv.await(t, 4, updatesTo("d1"))
			w.awaitSettled("d1")
			gs := gaps(got)
			// Backoff doubles from the retry interval, jittered by at most 20% down.
			for i, want := range []time.Duration{ri, 2 * ri * 8 / 10, 4 * ri * 8 / 10} {
				if gs[i] < want-3*time.Millisecond {
					t.Fatalf("got gap %d of %v, want at least %v (gaps %v)", i, gs[i], want, gs)
				}
			}
			fails := testutil.ToFloat64(r.d.metrics.deliveries.WithLabelValues(string(KindUpdate), OutcomeRejected)) +
				testutil.ToFloat64(r.d.metrics.deliveries.WithLabelValues(string(KindUpdate), OutcomeFailed))
			if fails != 3 {
				t.Fatalf("got %v failed deliveries counted, want 3", fails)
			}
		})
	}
}

func TestSupersededTargetIsNeverSentAgain(t *testing.T) {
	rv := newReceiver(t, func(hookReq, int) int { return http.StatusAccepted })
	w := newWorld(t, "d1")
	w.downloaded("c1")
	r := start(t, w, Options{BaseAddress: rv.base()})
	rv.await(t, 2, updatesTo("d1"))
	w.device("d1").Environment = map[string]string{"A": "2"}
	w.apply()
	r.d.Notify()
	isNew := func(h hookReq) bool { return updatesTo("d1")(h) && strings.Contains(h.Body, `"A":"2"`) }
	rv.await(t, 3, isNew)
	seenNew := false
	for _, h := range rv.requests(updatesTo("d1")) {
		switch {
		case isNew(h):
			seenNew = true
		case seenNew:
			t.Fatalf("got the superseded target %s after the newer one was sent", h.Body)
		}
	}
}

func TestHooksToOneDeviceNeverOverlapAndDevicesRunConcurrently(t *testing.T) {
	var inflight, peak atomic.Int32
	rv := newReceiver(t, func(hookReq, int) int {
		n := inflight.Add(1)
		for {
			p := peak.Load()
			if n <= p || peak.CompareAndSwap(p, n) {
				break
			}
		}
		time.Sleep(30 * time.Millisecond) // a slow gateway: longer than the retry interval
		inflight.Add(-1)
		return http.StatusAccepted
	})
	uuids := []string{"d1", "d2", "d3", "d4", "d5", "d6"}
	w := newWorld(t, uuids...)
	w.downloaded("c1")
	start(t, w, Options{BaseAddress: rv.base(), RetryInterval: 5 * time.Millisecond, Concurrency: 4})
	for _, u := range uuids {
		rv.await(t, 4, updatesTo(u))
	}
	if n := rv.overlapCount(); n != 0 {
		t.Fatalf("got %d hooks sent to a device while another to it was in flight, want 0", n)
	}
	if p := peak.Load(); p < 2 || p > 4 {
		t.Fatalf("got at most %d hooks in flight across devices, want between 2 and the bound 4", p)
	}
}

func TestDeleteHookUntil200RemovesTheDevice(t *testing.T) {
	rv := newReceiver(t, func(h hookReq, n int) int {
		if h.Method == http.MethodDelete && n == 1 {
			return http.StatusInternalServerError
		}
		return http.StatusOK
	})
	w := newWorld(t, "d1", "d2")
	w.downloaded("c1")
	w.target.Devices = w.target.Devices[:1] // d2 leaves the target
	w.apply()
	start(t, w, Options{BaseAddress: rv.base()})
	dels := rv.await(t, 2, func(h hookReq) bool { return h.UUID == "d2" })
	for _, h := range dels {
		if h.Method != http.MethodDelete || h.Path != "/v1/devices/d2" {
			t.Fatalf("got %s %s to the marked device, want only DELETE /v1/devices/d2", h.Method, h.Path)
		}
	}
	atLeast(t, "delete retry", gaps(dels), ri)
	w.awaitSettled("d2")
	if _, err := w.st.HookWorkFor(context.Background(), "d2"); err != store.ErrNotFound {
		t.Fatalf("got %v for the deleted device, want ErrNotFound", err)
	}
}

func TestRestartHookOncePerRequest(t *testing.T) {
	rv := newReceiver(t, nil)
	w := newWorld(t, "d1")
	r := start(t, w, Options{BaseAddress: rv.base()})
	w.device("d1").Restart = 2
	w.apply()
	r.d.Notify()
	isRestart := func(h hookReq) bool { return h.UUID == "d1" && h.Restart }
	got := rv.await(t, 2, isRestart)
	w.awaitSettled("d1")
	for _, h := range got {
		if h.Method != http.MethodPut || h.Path != "/v1/devices/d1/restart" {
			t.Fatalf("got %s %s, want PUT /v1/devices/d1/restart", h.Method, h.Path)
		}
	}
	atLeast(t, "restart hooks", gaps(got), ri)
	// A third request only after the cloud asks again.
	w.device("d1").Restart = 3
	w.apply()
	r.d.Notify()
	rv.await(t, 3, isRestart)
	w.awaitSettled("d1")
	if n := len(rv.requests(isRestart)); n != 3 {
		t.Fatalf("got %d restart hooks for 3 requests, want 3", n)
	}
}

func TestHookStateIsDurableAcrossRestart(t *testing.T) {
	const slow = 300 * time.Millisecond
	var failing atomic.Bool
	failing.Store(true)
	rv := newReceiver(t, func(h hookReq, n int) int {
		switch {
		case h.UUID == "loop":
			return http.StatusAccepted
		case h.UUID == "acked":
			return http.StatusOK
		case failing.Load():
			return http.StatusServiceUnavailable
		}
		return http.StatusOK
	})
	w := newWorld(t, "acked", "loop", "gone", "rst")
	w.downloaded("c1")
	w.device("rst").Restart = 1
	w.target.Devices = slices.DeleteFunc(w.target.Devices, func(d store.TargetDevice) bool { return d.UUID == "gone" })
	w.apply()
	w.report("rst", "c1", `{"A":"1"}`) // only the restart is owed
	r := start(t, w, Options{BaseAddress: rv.base(), RetryInterval: slow})
	rv.await(t, 1, updatesTo("acked"))
	w.awaitSettled("acked")
	rv.await(t, 1, updatesTo("loop"))
	rv.await(t, 1, func(h hookReq) bool { return h.UUID == "gone" })
	rv.await(t, 1, func(h hookReq) bool { return h.UUID == "rst" })
	r.stop()
	lastBefore := rv.requests(updatesTo("loop"))
	w.reopen()

	failing.Store(false)
	r = start(t, w, Options{BaseAddress: rv.base(), RetryInterval: slow})
	got := rv.await(t, len(lastBefore)+1, updatesTo("loop"))
	if g := got[len(lastBefore)].At.Sub(lastBefore[len(lastBefore)-1].At); g < slow-3*time.Millisecond {
		t.Fatalf("got the first hook after restart %v after the last one before, want at least %v", g, slow)
	}
	// The delete and the restart failed before the restart: still owed.
	w.awaitSettled("gone")
	w.awaitSettled("rst")
	if _, err := w.st.HookWorkFor(context.Background(), "gone"); err != store.ErrNotFound {
		t.Fatalf("got %v for the deleted device, want ErrNotFound", err)
	}
	if n := len(rv.requests(updatesTo("acked"))); n != 1 {
		t.Fatalf("got %d update hooks to the acknowledged device across a restart, want 1", n)
	}
	r.stop()
}

// violationCase is a violation of the dispatcher and how a test sees it:
// the gateway answers device d1's hooks with respond, while, if respond is
// set, a "clock" device's update hooks (answered clock, 0: 202) show time
// passing.
type violationCase struct {
	name    string
	v       string
	respond func(h hookReq, n int) int
	clock   int
	check   func(t *testing.T, rv *receiver, w *world, r *running)
}

func runViolationCases(t *testing.T, tests []violationCase) {
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			rv := newReceiver(t, tc.respond)
			w := newWorld(t, "d1")
			if tc.respond != nil {
				// A device that never settles, to show time passing.
				w.target.Devices = append(w.target.Devices, store.TargetDevice{UUID: "clock", AppID: 1, Cloud: &store.CloudDevice{ID: 9, DeviceType: "x"}})
				w.apply()
				rv.respond = func(h hookReq, n int) int {
					if h.UUID == "clock" && tc.clock != 0 {
						return tc.clock
					}
					if h.UUID == "clock" {
						return http.StatusAccepted
					}
					return tc.respond(h, n)
				}
			}
			w.downloaded("c1")
			r := start(t, w, Options{BaseAddress: rv.base(), Violations: violations(tc.v)})
			tc.check(t, rv, w, r)
		})
	}
}

func TestViolations(t *testing.T) {
	runViolationCases(t, []violationCase{
		{
			name:  "hook-202-stops sends an update only once despite 202",
			v:     "hook-202-stops",
			clock: http.StatusInternalServerError, // 202s would stop it too
			respond: func(h hookReq, n int) int {
				return http.StatusAccepted
			},
			check: func(t *testing.T, rv *receiver, w *world, r *running) {
				rv.await(t, 2, updatesTo("clock"))
				r.d.Notify() // the violation holds across a rebuild
				rv.await(t, 4, updatesTo("clock"))
				if n := len(rv.requests(updatesTo("d1"))); n != 1 {
					t.Fatalf("got %d hooks, want 1", n)
				}
			},
		},
		{
			name: "hook-restart-path-wrong sends restarts to the wrong path",
			v:    "hook-restart-path-wrong",
			check: func(t *testing.T, rv *receiver, w *world, r *running) {
				w.device("d1").Restart = 1
				w.apply()
				r.d.Notify()
				got := rv.await(t, 1, func(h hookReq) bool { return strings.Contains(h.Path, "restart") })
				if got[0].Path != "/v1/devices/restart/d1" {
					t.Fatalf("got path %s, want /v1/devices/restart/d1", got[0].Path)
				}
			},
		},
		{
			name: "hook-update-missing-appid leaves appId out",
			v:    "hook-update-missing-appid",
			check: func(t *testing.T, rv *receiver, w *world, r *running) {
				h := rv.await(t, 1, updatesTo("d1"))[0]
				var m map[string]any
				json.Unmarshal([]byte(h.Body), &m)
				if _, ok := m["appId"]; ok {
					t.Fatalf("got body %s with appId", h.Body)
				}
			},
		},
		{
			name: "hook-error-gives-up does not retry",
			v:    "hook-error-gives-up",
			respond: func(h hookReq, n int) int {
				if h.UUID == "clock" {
					return http.StatusAccepted
				}
				return http.StatusInternalServerError
			},
			check: func(t *testing.T, rv *receiver, w *world, r *running) {
				rv.await(t, 4, updatesTo("clock"))
				if n := len(rv.requests(updatesTo("d1"))); n != 1 {
					t.Fatalf("got %d hooks after a 500, want 1", n)
				}
			},
		},
	})
}

// The update hook body is exactly the canonical target.
func TestUpdateHookBodyIsTheUpdateHookJSON(t *testing.T) {
	rv := newReceiver(t, nil)
	w := newWorld(t, "d1")
	w.device("d1").Config = map[string]string{"K": "v<&>"}
	w.apply()
	w.downloaded("c1")
	start(t, w, Options{BaseAddress: rv.base()})
	h := rv.await(t, 1, updatesTo("d1"))[0]
	var got api.UpdateHook
	if err := json.Unmarshal([]byte(h.Body), &got); err != nil {
		t.Fatal(err)
	}
	if got.AppID != 1 || got.Commit != "c1" || got.Environment["A"] != "1" || got.Config["K"] != "v<&>" {
		t.Fatalf("got %+v, want appId 1, commit c1, environment A=1, config K=v<&>", got)
	}
}

func TestRescanFindsWorkNobodyAnnounced(t *testing.T) {
	rv := newReceiver(t, nil)
	w := newWorld(t, "d1")
	start(t, w, Options{BaseAddress: rv.base(), RescanInterval: 2 * ri})
	w.downloaded("c1") // no Notify
	rv.await(t, 1, updatesTo("d1"))
	w.awaitSettled("d1")
}

func TestNotifyDeviceDropsSettledWorkAtOnce(t *testing.T) {
	rv := newReceiver(t, func(hookReq, int) int { return http.StatusAccepted })
	w := newWorld(t, "d1")
	w.downloaded("c1")
	r := start(t, w, Options{BaseAddress: rv.base(), RetryInterval: time.Hour})
	rv.await(t, 1, updatesTo("d1"))
	pending := func() float64 { return testutil.ToFloat64(r.d.metrics.pending.WithLabelValues(string(KindUpdate))) }
	if p := pending(); p != 1 {
		t.Fatalf("got %v pending updates in the 202 loop, want 1", p)
	}
	w.report("d1", "c1", `{"A":"1"}`)
	r.d.NotifyDevice("d1")
	deadline := time.Now().Add(10 * time.Second)
	for pending() != 0 {
		if time.Now().After(deadline) {
			t.Fatalf("got %v pending updates 10s after the report, want 0", pending())
		}
		time.Sleep(5 * time.Millisecond)
	}
}

func TestViolationNoPacingResendsFasterThanTheRetryInterval(t *testing.T) {
	rv := newReceiver(t, func(hookReq, int) int { return http.StatusAccepted })
	w := newWorld(t, "d1")
	w.downloaded("c1")
	const interval = 2 * time.Second
	start(t, w, Options{BaseAddress: rv.base(), RetryInterval: interval, Violations: violations("hook-no-pacing")})
	got := rv.await(t, 3, updatesTo("d1"))
	for _, g := range gaps(got) {
		if g >= interval {
			t.Fatalf("got gaps %v with pacing off, want them under the retry interval %v", gaps(got), interval)
		}
	}
}

func TestMoreViolations(t *testing.T) {
	accepted := func(hookReq, int) int { return http.StatusAccepted }
	runViolationCases(t, []violationCase{
		{
			name:    "hook-200-repeats resends an acknowledged target",
			v:       "hook-200-repeats",
			respond: func(hookReq, int) int { return http.StatusOK },
			check: func(t *testing.T, rv *receiver, w *world, r *running) {
				rv.await(t, 3, updatesTo("d1"))
			},
		},
		{
			name:    "hook-202-commit-only stops once the commit is reported",
			v:       "hook-202-commit-only",
			respond: accepted,
			check: func(t *testing.T, rv *receiver, w *world, r *running) {
				rv.await(t, 1, updatesTo("d1"))
				w.report("d1", "c1", `{"A":"other"}`)
				reported := time.Now()
				n := len(rv.requests(updatesTo("clock")))
				rv.await(t, n+4, updatesTo("clock"))
				for _, h := range rv.requests(updatesTo("d1")) {
					if h.At.After(reported.Add(ri)) {
						t.Fatalf("got a hook at %v after the commit was reported at %v, want none", h.At, reported)
					}
				}
			},
		},
		{
			name:    "hook-update-stale-env sends the reported environment",
			v:       "hook-update-stale-env",
			respond: accepted,
			check: func(t *testing.T, rv *receiver, w *world, r *running) {
				h := rv.await(t, 1, updatesTo("d1"))[0]
				if !strings.Contains(h.Body, `"environment":{}`) {
					t.Fatalf("got body %s, want the never-reported (empty) environment", h.Body)
				}
			},
		},
		{
			name:    "hook-sends-superseded sends the older target after the newer one",
			v:       "hook-sends-superseded",
			respond: accepted,
			check: func(t *testing.T, rv *receiver, w *world, r *running) {
				rv.await(t, 1, updatesTo("d1"))
				w.device("d1").Environment = map[string]string{"A": "2"}
				w.apply()
				r.d.Notify()
				isNew := func(h hookReq) bool { return updatesTo("d1")(h) && strings.Contains(h.Body, `"A":"2"`) }
				first := rv.await(t, 1, isNew)[0]
				rv.await(t, 1, func(h hookReq) bool {
					return updatesTo("d1")(h) && h.At.After(first.At) && strings.Contains(h.Body, `"A":"1"`)
				})
			},
		},
		{
			name:    "delete-hook-not-sent never sends a DELETE",
			v:       "delete-hook-not-sent",
			respond: accepted,
			check: func(t *testing.T, rv *receiver, w *world, r *running) {
				w.target.Devices = slices.DeleteFunc(w.target.Devices, func(d store.TargetDevice) bool { return d.UUID == "d1" })
				w.apply()
				r.d.Notify()
				n := len(rv.requests(updatesTo("clock")))
				rv.await(t, n+3, updatesTo("clock"))
				if got := rv.requests(func(h hookReq) bool { return h.Method == http.MethodDelete }); len(got) != 0 {
					t.Fatalf("got %d DELETE hooks, want none", len(got))
				}
			},
		},
		{
			name:    "restart-hook-not-sent never sends a restart",
			v:       "restart-hook-not-sent",
			respond: accepted,
			check: func(t *testing.T, rv *receiver, w *world, r *running) {
				w.device("d1").Restart = 1
				w.apply()
				r.d.Notify()
				n := len(rv.requests(updatesTo("clock")))
				rv.await(t, n+3, updatesTo("clock"))
				if got := rv.requests(func(h hookReq) bool { return h.Restart }); len(got) != 0 {
					t.Fatalf("got %d restart hooks, want none", len(got))
				}
			},
		},
	})
}

// A device's next hook keeps its distance from the end of the last one even
// when nothing was owed in between (HOOK-PACE): the attempt time the store
// holds is taken before the request, so pacing from it alone would let the
// next hook follow a slow answer too closely.
func TestTheNextHookIsPacedFromTheEndOfASlowAnswerAfterAQuietSpell(t *testing.T) {
	const interval, answer = 400 * time.Millisecond, 350 * time.Millisecond
	var answered atomic.Int64 // unix nanoseconds of the update's answer
	rv := newReceiver(t, func(h hookReq, n int) int {
		if h.UUID == "d2" && h.Method == http.MethodPut {
			time.Sleep(answer)
			answered.Store(time.Now().UnixNano())
		}
		return http.StatusOK
	})
	w := newWorld(t, "d1", "d2")
	w.downloaded("c1")
	r := start(t, w, Options{BaseAddress: rv.base(), RetryInterval: interval})
	rv.await(t, 1, updatesTo("d2"))
	w.awaitSettled("d2") // acknowledged: nothing owed, the device forgotten
	w.target.Devices = w.target.Devices[:1]
	w.apply() // d2 leaves the target: a delete hook is owed
	r.d.Notify()
	del := rv.await(t, 1, func(h hookReq) bool { return h.UUID == "d2" && h.Method == http.MethodDelete })[0]
	if gap := del.At.Sub(time.Unix(0, answered.Load())); gap < interval-3*time.Millisecond {
		t.Fatalf("the delete hook came %v after the update's answer, want at least the retry interval %v", gap, interval)
	}
}

// readCounter is a store that counts the dispatcher's reads of every
// pending device and of the devices changed since its last read.
type readCounter struct {
	*store.Store
	pending atomic.Int64 // reads of pending hooks from the first device on
	listed  atomic.Int64 // devices those reads and the later pages listed, in all
	changed atomic.Int64 // devices ChangedHookWork returned, in all
}

func (c *readCounter) PendingHooksAfter(ctx context.Context, after int64, limit int) ([]store.HookWork, int64, bool, error) {
	if after == 0 {
		c.pending.Add(1)
	}
	works, next, done, err := c.Store.PendingHooksAfter(ctx, after, limit)
	c.listed.Add(int64(len(works)))
	return works, next, done, err
}

func (c *readCounter) ChangedHookWork(ctx context.Context, since uint64) (map[string]*store.HookWork, uint64, bool, error) {
	works, at, all, err := c.Store.ChangedHookWork(ctx, since)
	c.changed.Add(int64(len(works)))
	return works, at, all, err
}

// A Notify re-reads only the devices changed since the schedule was read:
// a new device in a fleet that is owed nothing costs a read of it, not of
// every device; a change the store cannot pin to devices (a new downloaded
// commit) reads every pending device again.
func TestNotifyReadsOnlyTheDevicesChanged(t *testing.T) {
	rv := newReceiver(t, nil)
	uuids := make([]string, 40)
	for i := range uuids {
		uuids[i] = fmt.Sprintf("d%02d", i)
	}
	w := newWorld(t, uuids...)
	w.downloaded("c1")
	c := &readCounter{Store: w.st}
	r := start(t, w, Options{BaseAddress: rv.base(), Store: c, RescanInterval: time.Hour})
	for _, u := range uuids {
		rv.await(t, 1, updatesTo(u))
		w.awaitSettled(u)
	}
	if n := c.pending.Load(); n != 1 {
		t.Fatalf("got %d reads of every pending device before any Notify, want 1 (the start)", n)
	}
	// The first Notify reads the devices whose hooks were recorded since
	// the start; the next one only what changed since that read.
	added := func(u string) {
		w.target.Devices = append(w.target.Devices, store.TargetDevice{UUID: u, AppID: 1, Name: u,
			Environment: map[string]string{"A": "1"}, Cloud: &store.CloudDevice{ID: int64(900 + len(w.target.Devices)), DeviceType: "generic-amd64"}})
		w.apply()
		r.d.Notify()
		rv.await(t, 1, updatesTo(u))
		w.awaitSettled(u)
	}
	added("new1")
	changedBefore := c.changed.Load()
	added("new2")
	if n := c.pending.Load(); n != 1 {
		t.Errorf("got %d reads of every pending device after Notify calls for new devices, want still 1", n)
	}
	// new2, and new1's recorded hook at most: never the whole fleet again.
	if got := c.changed.Load() - changedBefore; got < 1 || got > 2 {
		t.Errorf("a Notify for one new device re-read %d devices, want 1 or 2", got)
	}
	uuids = append(uuids, "new1", "new2")
	w.downloaded("c2")
	r.d.Notify()
	for _, u := range uuids {
		if got := rv.await(t, 2, updatesTo(u)); !strings.Contains(got[1].Body, `"commit":"c2"`) {
			t.Fatalf("%s: got hook body %s after c2 was downloaded, want commit c2", u, got[1].Body)
		}
	}
	if n := c.pending.Load(); n != 2 {
		t.Errorf("got %d reads of every pending device after a new commit, want 2", n)
	}
}

// A device owed a hook that was never sent holds no memo (a backlog of a
// million devices would hold one each); one sent to has one.
func TestOnlyDevicesSentToHoldAMemo(t *testing.T) {
	rv := newReceiver(t, func(hookReq, int) int { return http.StatusAccepted })
	w := newWorld(t, "d1", "d2")
	w.downloaded("c1")
	d, err := New(Options{Store: w.st, BaseAddress: rv.base(), RetryInterval: time.Hour, Registerer: prometheus.NewRegistry()})
	if err != nil {
		t.Fatal(err)
	}
	rs := newRunState(d)
	if rs.reader, err = w.st.NewHookWorkReader(context.Background()); err != nil {
		t.Fatal(err)
	}
	defer rs.reader.Close()
	if err := rs.rebuild(context.Background()); err != nil {
		t.Fatal(err)
	}
	for _, u := range []string{"d1", "d2"} {
		if st := rs.devices[u]; st == nil || st.mem != nil {
			t.Fatalf("%s: got %+v, want scheduled without a memo", u, st)
		}
	}
	st := rs.devices["d1"]
	st.inFlight = true
	r := d.deliver(context.Background(), rs.reader, st)
	if !r.delivered || st.mem == nil || st.mem.acceptedCanon == "" {
		t.Fatalf("after a hook answered 202: delivered %v, memo %+v; want the accepted target remembered", r.delivered, st.mem)
	}
	if rs.devices["d2"].mem != nil || !reflect.DeepEqual(noMemo, memo{}) {
		t.Fatal("a device never sent to got a memo, or the shared empty memo was written")
	}
}

// A schedule bounded to fewer devices than are owed a hook holds no more
// than its bound, and still reaches every device: the ones waiting in the
// store are read in as the schedule drains, and a device that changes while
// the schedule is full (a new one, one marked for deletion) gets its hook
// too. Once every device is served, the schedule says it holds them all.
func TestABoundedScheduleReachesEveryOwedDevice(t *testing.T) {
	const bound = 4
	uuids := make([]string, 30)
	for i := range uuids {
		uuids[i] = fmt.Sprintf("d%02d", i)
	}
	var (
		run       atomic.Pointer[running]
		mu        sync.Mutex
		held      float64 // most devices the schedule held at a hook
		sawFull   bool
		gaugesSum = func(r *running) float64 {
			var n float64
			for _, k := range []Kind{KindUpdate, KindDelete, KindRestart} {
				n += testutil.ToFloat64(r.d.metrics.pending.WithLabelValues(string(k)))
			}
			return n
		}
	)
	rv := newReceiver(t, func(hookReq, int) int {
		if r := run.Load(); r != nil {
			mu.Lock()
			held = max(held, gaugesSum(r))
			sawFull = sawFull || testutil.ToFloat64(r.d.metrics.scheduleFull) == 1
			mu.Unlock()
		}
		return http.StatusOK
	})
	w := newWorld(t, uuids...)
	w.downloaded("c1")
	r := start(t, w, Options{BaseAddress: rv.base(), MaxScheduled: bound, RetryInterval: 20 * time.Millisecond})
	run.Store(r)
	rv.await(t, 1, updatesTo(uuids[len(uuids)-1]))
	// The schedule is still full: d00 leaves the target, "late" joins it.
	w.target.Devices = append(w.target.Devices[1:], store.TargetDevice{UUID: "late", AppID: 1, Name: "late",
		Environment: map[string]string{"A": "1"}, Cloud: &store.CloudDevice{ID: 999, DeviceType: "generic-amd64"}})
	w.apply()
	r.d.Notify()
	for _, u := range append(uuids, "late") {
		rv.await(t, 1, updatesTo(u))
	}
	rv.await(t, 1, func(h hookReq) bool { return h.UUID == "d00" && h.Method == http.MethodDelete })
	for _, u := range append(uuids[1:], "late") {
		w.awaitSettled(u)
	}
	w.awaitSettled("d00")
	mu.Lock()
	defer mu.Unlock()
	if held > bound || !sawFull {
		t.Fatalf("the schedule held up to %v devices (full seen: %v), want at most %d and full at some hook", held, sawFull, bound)
	}
	deadline := time.Now().Add(5 * time.Second)
	for testutil.ToFloat64(r.d.metrics.scheduleFull) != 0 {
		if time.Now().After(deadline) {
			t.Fatal("every device served, and the schedule still says devices wait beyond it")
		}
		time.Sleep(5 * time.Millisecond)
	}
}

// A bounded schedule reads the devices waiting beyond it once each, in row
// order: once it has read to the last row, it does not read the rows before
// again unless a device among them was turned away since.
func TestABoundedScheduleReadsTheWaitingDevicesOnce(t *testing.T) {
	uuids := make([]string, 30)
	for i := range uuids {
		uuids[i] = fmt.Sprintf("d%02d", i)
	}
	rv := newReceiver(t, nil)
	w := newWorld(t, uuids...)
	w.downloaded("c1")
	c := &readCounter{Store: w.st}
	r := start(t, w, Options{BaseAddress: rv.base(), Store: c, MaxScheduled: 4, RetryInterval: 20 * time.Millisecond, RescanInterval: time.Hour})
	for _, u := range uuids {
		rv.await(t, 1, updatesTo(u))
		w.awaitSettled(u)
	}
	deadline := time.Now().Add(5 * time.Second)
	for testutil.ToFloat64(r.d.metrics.scheduleFull) != 0 {
		if time.Now().After(deadline) {
			t.Fatal("every device served, and the schedule still says devices wait beyond it")
		}
		time.Sleep(5 * time.Millisecond)
	}
	if n := c.pending.Load(); n != 1 {
		t.Errorf("the pending hooks were read from the first row %d times, want once (at the start)", n)
	}
	if n := c.listed.Load(); n != int64(len(uuids)) {
		t.Errorf("the pending hooks read listed %d devices in all, want each of the %d once", n, len(uuids))
	}
}
