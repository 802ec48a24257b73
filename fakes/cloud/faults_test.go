package cloud

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"testing"
	"time"

	cloudapi "github.com/depharness/depharness/api/cloud"
)

// faultKnobs drives the fault knobs either in-process or over the control
// API: one test body, two targets.
type faultKnobs interface {
	Delay(route string, d, jitter time.Duration) error
	Undelay(route string) error
	FailNext(route string, n, status int) error
	Unfail(route string) error
	Outage(mode OutageMode) error
	EndOutage() error
	Hang(route string) error
	Unhang(route string) error
	RefuseLogLines(message string) error
	UnrefuseLogLines() error
	DropAnswers(route string, n int) error
	Undrop(route string) error
	DelayAnswers(route string, d time.Duration, n int) error
	UndelayAnswers(route string) error
}

type goKnobs struct{ s *Server }

func (k goKnobs) Delay(r string, d, j time.Duration) error { return k.s.Delay(r, d, j) }
func (k goKnobs) Undelay(r string) error                   { k.s.Undelay(r); return nil }
func (k goKnobs) FailNext(r string, n, st int) error       { return k.s.FailNext(r, n, st) }
func (k goKnobs) Unfail(r string) error                    { k.s.Unfail(r); return nil }
func (k goKnobs) Outage(m OutageMode) error                { return k.s.Outage(m) }
func (k goKnobs) EndOutage() error                         { k.s.EndOutage(); return nil }
func (k goKnobs) Hang(r string) error                      { return k.s.Hang(r) }
func (k goKnobs) Unhang(r string) error                    { k.s.Unhang(r); return nil }
func (k goKnobs) RefuseLogLines(m string) error            { k.s.RefuseLogLines(m); return nil }
func (k goKnobs) UnrefuseLogLines() error                  { k.s.UnrefuseLogLines(); return nil }
func (k goKnobs) DropAnswers(r string, n int) error        { return k.s.DropAnswers(r, n) }
func (k goKnobs) Undrop(r string) error                    { k.s.Undrop(r); return nil }
func (k goKnobs) DelayAnswers(r string, d time.Duration, n int) error {
	return k.s.DelayAnswers(r, d, n)
}
func (k goKnobs) UndelayAnswers(r string) error { k.s.UndelayAnswers(r); return nil }

type httpKnobs struct{ c *ControlClient }

func (k httpKnobs) ctx() context.Context { return context.Background() }
func (k httpKnobs) Delay(r string, d, j time.Duration) error {
	return k.c.Delay(k.ctx(), r, d, j)
}
func (k httpKnobs) Undelay(r string) error             { return k.c.Undelay(k.ctx(), r) }
func (k httpKnobs) FailNext(r string, n, st int) error { return k.c.FailNext(k.ctx(), r, n, st) }
func (k httpKnobs) Unfail(r string) error              { return k.c.Unfail(k.ctx(), r) }
func (k httpKnobs) Outage(m OutageMode) error          { return k.c.Outage(k.ctx(), m) }
func (k httpKnobs) EndOutage() error                   { return k.c.EndOutage(k.ctx()) }
func (k httpKnobs) Hang(r string) error                { return k.c.Hang(k.ctx(), r) }
func (k httpKnobs) Unhang(r string) error              { return k.c.Unhang(k.ctx(), r) }
func (k httpKnobs) RefuseLogLines(m string) error      { return k.c.RefuseLogLines(k.ctx(), m) }
func (k httpKnobs) UnrefuseLogLines() error            { return k.c.UnrefuseLogLines(k.ctx()) }
func (k httpKnobs) DropAnswers(r string, n int) error  { return k.c.DropAnswers(k.ctx(), r, n) }
func (k httpKnobs) Undrop(r string) error              { return k.c.Undrop(k.ctx(), r) }
func (k httpKnobs) DelayAnswers(r string, d time.Duration, n int) error {
	return k.c.DelayAnswers(k.ctx(), r, d, n)
}
func (k httpKnobs) UndelayAnswers(r string) error { return k.c.UndelayAnswers(k.ctx(), r) }

// endOutageAndServe ends the outage through k and checks that f's gateway
// gets its target state again.
func endOutageAndServe(t *testing.T, c *testCloud, k faultKnobs, f fixture) {
	t.Helper()
	mustNoErr(t, k.EndOutage())
	if r := c.call(t, "GET", statePath(f.gw.UUID), f.gw.APIKey, nil); r.status != 200 {
		t.Errorf("after EndOutage: got %d, want 200", r.status)
	}
}

func TestFaultKnobsAndTheirUndo(t *testing.T) {
	targets := []struct {
		name  string
		knobs func(c *testCloud) faultKnobs
	}{
		{"Go API", func(c *testCloud) faultKnobs { return goKnobs{c.Server} }},
		{"control API", func(c *testCloud) faultKnobs { return httpKnobs{c.client()} }},
	}
	for _, target := range targets {
		t.Run(target.name, func(t *testing.T) {
			t.Run("FailNext fails exactly n requests of its route, then Unfail clears the rest", func(t *testing.T) {
				c := newTestCloud(t, Options{})
				k, f := target.knobs(c), c.fixture(t)
				mustNoErr(t, k.FailNext(RouteState, 2, 503))
				if r := c.call(t, "GET", getPath(hexOf('1')), f.gw.APIKey, nil); r.status != 200 {
					t.Errorf("other route: got %d, want 200", r.status)
				}
				for i := range 2 {
					if r := c.call(t, "GET", statePath(f.gw.UUID), f.gw.APIKey, nil); r.status != 503 {
						t.Errorf("request %d: got %d, want 503", i+1, r.status)
					}
				}
				if r := c.call(t, "GET", statePath(f.gw.UUID), f.gw.APIKey, nil); r.status != 200 {
					t.Errorf("third request: got %d, want 200", r.status)
				}
				mustNoErr(t, k.FailNext(RouteAll, 5, 429))
				if r := c.call(t, "GET", getPath(hexOf('1')), f.gw.APIKey, nil); r.status != 429 {
					t.Errorf("with *: got %d, want 429", r.status)
				}
				mustNoErr(t, k.Unfail(RouteAll))
				if r := c.call(t, "GET", getPath(hexOf('1')), f.gw.APIKey, nil); r.status != 200 {
					t.Errorf("after Unfail: got %d, want 200", r.status)
				}
				req, err := c.AwaitRequest(testCtx(t), func(r Request) bool { return r.Status == 429 })
				mustNoErr(t, err)
				if req.Fault != "fail-next" || req.Route != RouteGet {
					t.Errorf("journal: got %+v, want a fail-next on get", req)
				}
			})
			t.Run("Outage 503 fails every protocol route but not control, EndOutage restores", func(t *testing.T) {
				c := newTestCloud(t, Options{})
				k, f := target.knobs(c), c.fixture(t)
				mustNoErr(t, k.Outage(Outage503))
				for _, p := range []string{statePath(f.gw.UUID), getPath(hexOf('1'))} {
					if r := c.call(t, "GET", p, f.gw.APIKey, nil); r.status != 503 {
						t.Errorf("%s: got %d, want 503", p, r.status)
					}
				}
				if _, err := c.client().Info(testCtx(t)); err != nil {
					t.Errorf("control API during an outage: %v", err)
				}
				endOutageAndServe(t, c, k, f)
			})
			t.Run("Outage close drops connections without an answer", func(t *testing.T) {
				c := newTestCloud(t, Options{})
				k, f := target.knobs(c), c.fixture(t)
				mustNoErr(t, k.Outage(OutageClose))
				if code, err := send(c.request(testCtx(t), t, "GET", statePath(f.gw.UUID), f.gw.APIKey, nil)); err == nil {
					t.Fatalf("got status %d, want a connection error", code)
				}
				jr, err := c.AwaitRequest(testCtx(t), func(r Request) bool { return r.Fault == "outage" })
				mustNoErr(t, err)
				if jr.Status != 0 {
					t.Errorf("journal status: got %d, want 0 (closed)", jr.Status)
				}
				endOutageAndServe(t, c, k, f)
			})
			t.Run("RefuseLogLines refuses a whole request holding the line, UnrefuseLogLines takes it", func(t *testing.T) {
				c := newTestCloud(t, Options{})
				k, f := target.knobs(c), c.fixture(t)
				d := c.device(t, f.app.ID)
				mustNoErr(t, k.RefuseLogLines("bad"))
				if got := c.Faults().RefusedLogLines; len(got) != 1 || got[0] != "bad" {
					t.Errorf("fault state: got %v, want [bad]", got)
				}
				body := logLine(d.UUID, "good", 1) + logLine(d.UUID, "bad", 2)
				if r := c.call(t, "POST", logsPath(f.gw.UUID), f.gw.APIKey, strings.NewReader(body)); r.status != 400 {
					t.Errorf("got %d (%s), want 400", r.status, r.body)
				}
				if l, _ := c.Logs(d.UUID); len(l) != 0 {
					t.Errorf("got %d lines stored of a refused request, want 0", len(l))
				}
				mustNoErr(t, k.UnrefuseLogLines())
				if r := c.call(t, "POST", logsPath(f.gw.UUID), f.gw.APIKey, strings.NewReader(body)); r.status != 200 {
					t.Errorf("after UnrefuseLogLines: got %d (%s), want 200", r.status, r.body)
				}
				if l, _ := c.Logs(d.UUID); len(l) != 2 {
					t.Errorf("got %d lines, want 2", len(l))
				}
			})
			t.Run("DropAnswers stores exactly n requests and drops their answers, Undrop clears the rest", func(t *testing.T) {
				c := newTestCloud(t, Options{})
				k, f := target.knobs(c), c.fixture(t)
				d := c.device(t, f.app.ID)
				mustNoErr(t, k.DropAnswers(RouteLogs, 2))
				if got := c.Faults().DropAnswers[RouteLogs]; got != 2 {
					t.Errorf("fault state: got %d left, want 2", got)
				}
				for i := range 2 {
					body := logLine(d.UUID, fmt.Sprint("dropped-", i), int64(i))
					if code, err := send(c.request(testCtx(t), t, "POST", logsPath(f.gw.UUID), f.gw.APIKey, strings.NewReader(body))); err == nil {
						t.Fatalf("request %d: got status %d, want the connection closed unanswered", i+1, code)
					}
				}
				if r := c.call(t, "POST", logsPath(f.gw.UUID), f.gw.APIKey, strings.NewReader(logLine(d.UUID, "answered", 3))); r.status != 200 {
					t.Errorf("third request: got %d, want 200", r.status)
				}
				l, _ := c.Logs(d.UUID)
				if got := len(l); got != 3 {
					t.Errorf("got %d lines stored, want 3 (the dropped answers' requests were handled)", got)
				}
				jr, err := c.AwaitRequest(testCtx(t), func(r Request) bool { return r.Fault == "drop-answer" })
				mustNoErr(t, err)
				if jr.Status != 0 || jr.Route != RouteLogs {
					t.Errorf("journal: got %+v, want a drop-answer on logs with status 0", jr)
				}
				mustNoErr(t, k.DropAnswers(RoutePatch, 5))
				mustNoErr(t, k.Undrop(RoutePatch))
				if r := c.call(t, "PATCH", fmt.Sprintf("/v6/device(%d)", d.ID), f.gw.APIKey, strings.NewReader(`{"status":"x"}`)); r.status != 200 {
					t.Errorf("after Undrop: got %d, want 200", r.status)
				}
				if got := c.Faults().DropAnswers; len(got) != 0 {
					t.Errorf("fault state after Undrop: got %v, want none", got)
				}
			})
			t.Run("DelayAnswers applies at once and answers d later; a client that left first gets nothing", func(t *testing.T) {
				c := newTestCloud(t, Options{})
				k, f := target.knobs(c), c.fixture(t)
				dev := c.device(t, f.app.ID)
				const d = 300 * time.Millisecond
				mustNoErr(t, k.DelayAnswers(RoutePatch, d, 2))
				if got := c.Faults().DelayAnswers[RoutePatch]; got != (DelayAnswersState{N: 2, Delay: "300ms"}) {
					t.Errorf("fault state: got %+v", got)
				}
				patch := func(ctx context.Context, status string) (int, error) {
					return send(c.request(ctx, t, "PATCH", fmt.Sprintf("/v6/device(%d)", dev.ID), f.gw.APIKey, strings.NewReader(`{"status":"`+status+`"}`)))
				}
				// A client that waits gets the answer, no sooner than d.
				start := time.Now()
				if code, err := patch(testCtx(t), "waited"); err != nil || code != 200 {
					t.Errorf("waiting client: got %d, %v; want 200", code, err)
				}
				if took := time.Since(start); took < d {
					t.Errorf("answer after %v, want at least %v", took, d)
				}
				// A client that gives up first: no answer, but the PATCH
				// was applied.
				ctx, cancel := context.WithTimeout(testCtx(t), d/3)
				_, err := patch(ctx, "gave-up")
				cancel()
				if !errors.Is(err, context.DeadlineExceeded) {
					t.Errorf("impatient client: got %v, want a timeout", err)
				}
				if got, _ := c.Device(dev.UUID); got.Status != "gave-up" {
					t.Errorf("status: got %q, want the abandoned request applied", got.Status)
				}
				jr, err := c.AwaitRequest(testCtx(t), func(r Request) bool { return r.Fault == "delay-answer" && r.Status == 0 })
				mustNoErr(t, err)
				if jr.Route != RoutePatch {
					t.Errorf("journal: got %+v, want the lost answer on patch", jr)
				}
				// Two requests used the knob: the third is answered at once.
				start = time.Now()
				if code, err := patch(testCtx(t), "third"); err != nil || code != 200 || time.Since(start) >= d {
					t.Errorf("third request: got %d, %v after %v; want 200 at once", code, err, time.Since(start))
				}
				mustNoErr(t, k.DelayAnswers(RouteAll, d, 3))
				mustNoErr(t, k.UndelayAnswers(RouteAll))
				start = time.Now()
				if code, err := patch(testCtx(t), "fourth"); err != nil || code != 200 || time.Since(start) >= d {
					t.Errorf("after UndelayAnswers: got %d, %v after %v; want 200 at once", code, err, time.Since(start))
				}
			})
			t.Run("Delay holds answers at least d, Undelay removes it", func(t *testing.T) {
				c := newTestCloud(t, Options{})
				k, f := target.knobs(c), c.fixture(t)
				const d = 150 * time.Millisecond
				mustNoErr(t, k.Delay(RoutePatch, d, 20*time.Millisecond))
				mustNoErr(t, k.Delay(RouteAll, d, 0))
				start := time.Now()
				c.call(t, "PATCH", "/v6/device(1)", f.gw.APIKey, strings.NewReader(`{"status":"x"}`))
				if took := time.Since(start); took < d {
					t.Errorf("delayed request took %v, want at least %v", took, d)
				}
				mustNoErr(t, k.Undelay(RoutePatch))
				mustNoErr(t, k.Undelay(RouteAll))
				start = time.Now()
				c.call(t, "PATCH", "/v6/device(1)", f.gw.APIKey, strings.NewReader(`{"status":"x"}`))
				if took := time.Since(start); took >= d {
					t.Errorf("undelayed request took %v, want under %v", took, d)
				}
			})
			t.Run("Hang holds requests until Unhang", func(t *testing.T) {
				c := newTestCloud(t, Options{})
				k, f := target.knobs(c), c.fixture(t)
				ctx := testCtx(t)
				mustNoErr(t, k.Hang(RouteState))
				done := statusOf(c.request(ctx, t, "GET", statePath(f.gw.UUID), f.gw.APIKey, nil))
				mustNoErr(t, c.Await(ctx, func(v *View) bool { return v.Held() == 1 }))
				select {
				case code := <-done:
					t.Fatalf("hung request answered %d", code)
				default:
				}
				mustNoErr(t, k.Unhang(RouteState))
				wantStatus(ctx, t, done, 200, "the request released by Unhang")
			})
			t.Run("a hung request ends when its client gives up", func(t *testing.T) {
				c := newTestCloud(t, Options{})
				k, f := target.knobs(c), c.fixture(t)
				ctx := testCtx(t)
				mustNoErr(t, k.Hang(RouteAll))
				rctx, cancel := context.WithCancel(ctx)
				errc := make(chan error, 1)
				req := c.request(rctx, t, "POST", cloudapi.PathDevices, f.gw.APIKey, strings.NewReader("{}"))
				go func() {
					_, err := send(req)
					errc <- err
				}()
				mustNoErr(t, c.Await(ctx, func(v *View) bool { return v.Held() == 1 }))
				cancel()
				if err := <-errc; !errors.Is(err, context.Canceled) {
					t.Errorf("got %v, want context.Canceled", err)
				}
				jr, err := c.AwaitRequest(ctx, func(r Request) bool { return r.Route == RouteProvision })
				mustNoErr(t, err)
				if jr.Fault != "hang" || jr.Status != 0 {
					t.Errorf("journal: got %+v, want a hang with status 0", jr)
				}
				mustNoErr(t, k.Unhang(RouteAll))
				if got := c.Faults(); len(got.Hangs) != 0 || got.Held != 0 {
					t.Errorf("after Unhang: got %+v, want no hangs", got)
				}
			})
		})
	}
}

func TestResetFaultsClearsEveryKnob(t *testing.T) {
	c := newTestCloud(t, Options{})
	mustNoErr(t, c.Delay(RouteState, time.Second, 0))
	mustNoErr(t, c.FailNext(RouteLogs, 3, 500))
	mustNoErr(t, c.Outage(Outage503))
	mustNoErr(t, c.Hang(RouteGet))
	mustNoErr(t, c.DropAnswers(RouteLogs, 1))
	mustNoErr(t, c.DelayAnswers(RoutePatch, time.Second, 1))
	fs, err := c.client().Faults(testCtx(t))
	mustNoErr(t, err)
	if fs.Outage != Outage503 || fs.Delays[RouteState] != "1s" || fs.FailNext[RouteLogs] != [2]int{3, 500} || len(fs.Hangs) != 1 {
		t.Errorf("got faults %+v, want the four knobs", fs)
	}
	mustNoErr(t, c.client().ResetFaults(testCtx(t)))
	fs = c.Faults()
	if fs.Outage != "" || len(fs.Delays) != 0 || len(fs.FailNext) != 0 || len(fs.Hangs) != 0 || len(fs.DropAnswers) != 0 || len(fs.DelayAnswers) != 0 {
		t.Errorf("after reset got %+v, want none", fs)
	}
}
