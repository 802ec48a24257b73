package features

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"sort"
	"strings"
	"sync"
	"time"

	"github.com/depharness/depharness/fakes/cloud"
	"github.com/depharness/depharness/fakes/hookrecv"
	"github.com/depharness/depharness/internal/ctxtime"
)

// Timing clauses checked from both sides. Every bound here is the one
// CONTRACT.md states, in the intervals the target was started with; the
// only allowance is slack (below): a small fixed margin plus the scheduling
// delay measured on this machine while the measured events happened. Every
// negative window ("no further hook while …") lasts 3 times the upper bound
// of the clause under which the hook would have been sent.

// contractBounds are the clauses' bounds for one scenario's timing.
type contractBounds struct{ t Timing }

func (st *scenario) bounds() contractBounds { return contractBounds{st.cfg.Timing} }

// repeat202 is HOOK-202's upper bound: an attempt starts at most 3 retry
// intervals after the previous one was answered.
func (b contractBounds) repeat202() time.Duration { return 3 * b.t.Retry }

// retryAfterFailure is HOOK-ERR's upper bound: the next attempt starts within
// 10 retry intervals + HOOK_TIMEOUT of the failure.
func (b contractBounds) retryAfterFailure() time.Duration { return 10*b.t.Retry + b.t.HookTimeout }

// answerWithin is HOOK-ERR's lower bound of the hook timeout: an answer
// within half of HOOK_TIMEOUT is an answer.
func (b contractBounds) answerWithin() time.Duration { return b.t.HookTimeout / 2 }

// timedOut is HOOK-ERR's upper bound of the hook timeout: a request still
// unanswered after 2 × HOOK_TIMEOUT has timed out.
func (b contractBounds) timedOut() time.Duration { return 2 * b.t.HookTimeout }

// firstHook is HOOK-UPD-1's upper bound from a target change to its first
// hook: 2 poll intervals + 3 retry intervals, + HOOK_TIMEOUT when another
// hook to the device was in flight.
func (b contractBounds) firstHook(inFlight bool) time.Duration {
	d := 2*b.t.Poll + 3*b.t.Retry
	if inFlight {
		d += b.t.HookTimeout
	}
	return d
}

// pollWindow is CLOUD-STATE's bound: at least one poll in every window of 2
// poll intervals.
func (b contractBounds) pollWindow() time.Duration { return 2 * b.t.Poll }

// fixedSlack covers what the measured scheduling delay does not: loopback
// transfer between the target and the harness and where in a handler a
// timestamp is taken (a few milliseconds on an idle machine).
const fixedSlack = 25 * time.Millisecond

// slack is the allowance for a bound measured between from and to: the fixed
// slack plus the worst scheduling delay this process saw meanwhile (the
// target, on the same machine, is delayed by the same load).
func slack(from, to time.Time) time.Duration {
	return fixedSlack + schedLag().worst(from.Add(-lagSamplePeriod), to.Add(lagSamplePeriod))
}

// lagSamplePeriod is how often the lag meter wakes.
const lagSamplePeriod = 10 * time.Millisecond

// lagMeter measures scheduling delay: a goroutine that asks to wake every
// lagSamplePeriod and records how late it woke. It runs for the life of the
// process (one for all scenarios: the delay is the machine's, not a
// scenario's) and keeps the last lagSamples samples.
type lagMeter struct {
	mu      sync.Mutex
	samples [lagSamples]lagSample
	next    int
}

const lagSamples = 1 << 15 // ~5 minutes at one sample per 10 ms

type lagSample struct {
	at   time.Time
	late time.Duration
}

var (
	lagOnce   sync.Once
	lagMeter0 *lagMeter
)

// schedLag returns the process's lag meter, starting it on first use.
func schedLag() *lagMeter {
	lagOnce.Do(func() {
		lagMeter0 = &lagMeter{}
		go lagMeter0.run()
	})
	return lagMeter0
}

func (m *lagMeter) run() {
	for {
		want := time.Now().Add(lagSamplePeriod)
		time.Sleep(lagSamplePeriod)
		now := time.Now()
		m.mu.Lock()
		m.samples[m.next%lagSamples] = lagSample{at: now, late: max(now.Sub(want), 0)}
		m.next++
		m.mu.Unlock()
	}
}

// worst is the largest delay of a wake-up that happened between from and
// to (a wake-up late by L at t covers [t-L, t]).
func (m *lagMeter) worst(from, to time.Time) time.Duration {
	m.mu.Lock()
	defer m.mu.Unlock()
	var w time.Duration
	n := min(m.next, lagSamples)
	for i := 1; i <= n; i++ {
		s := m.samples[(m.next-i)%lagSamples]
		if s.at.Before(from) {
			break
		}
		if s.at.Add(-s.late).After(to) {
			continue
		}
		w = max(w, s.late)
	}
	return w
}

func registerBoundSteps(sc stepper) {
	schedLag() // measuring from the start, so that the first scenario's slack is measured too
	sc.Step(stepExpr(`^no further (update|delete|restart) hook reaches "([^"]*)" while the contract would have repeated it$`), noRepeatWhileOwed)
	sc.Step(stepExpr(`^no (update|delete|restart) hook reaches "([^"]*)" again after the restart, while the contract would have repeated it$`), noRepeatAfterRestart)
	sc.Step(stepExpr(`^no update hook for release "([^"]*)" reaches "([^"]*)" while the contract would have sent it$`), noHookForReleaseWhileDue)
	sc.Step(stepExpr(`^the hooks to "([^"]*)" kept the contract's timing$`), hooksKeptTiming)
	sc.Step(stepExpr(`^the first hook of the newest target reached "([^"]*)" within the contract's bound$`), firstHookInBound)
	sc.Step(stepExpr(`^the first hook to "([^"]*)" after the gateway app listened again came within the contract's bound$`), hookAfterListening)
	sc.Step(stepExpr(`^"([^"]*)" receives the owed (update|delete|restart) hook within the contract's bound after the restart$`), owedHookAfterRestart)
	sc.Step(stepExpr(`^the cloud sees a state poll in every window of 2 poll intervals$`), pollsInEveryWindow)
}

// windowFor waits d for a hook matching pred; finding one is the failure.
// The scenario is idle meanwhile (slots.go).
func (st *scenario) windowFor(ctx context.Context, what string, pred func(hookrecv.Hook) bool, d time.Duration) error {
	var hs []hookrecv.Hook
	seen, err := st.seenWithin(ctx, d, func(wctx context.Context) (err error) {
		hs, err = st.recv().AwaitHooks(wctx, pred, 1)
		return err
	})
	if seen {
		return fmt.Errorf("%s: got %s; hooks received: %s", what, hs[0], st.hookList())
	}
	return err
}

// noRepeatWhileOwed: a hook that is no longer owed (answered 200, the
// gateway reported the target, the device was re-added) is not sent again.
// Had it still been owed, the contract would have repeated it within
// HOOK-ERR's bound (10 retry intervals + HOOK_TIMEOUT) if its last attempt
// failed, else within HOOK-202's (3 retry intervals); the window is 3 times
// that bound.
func noRepeatWhileOwed(ctx context.Context, kind, alias string) error {
	st, d, err := deviceOf(ctx, alias)
	if err != nil {
		return err
	}
	b := st.bounds()
	w, why := 3*b.repeat202(), "3 × HOOK-202's bound of 3 retry intervals"
	hs := hookrecv.Filter(st.hooksTo(d.uuid), func(h hookrecv.Hook) bool { return h.Kind == hookrecv.Kind(kind) })
	if len(hs) > 0 && hs[len(hs)-1].Failed() {
		w, why = 3*b.retryAfterFailure(), "3 × HOOK-ERR's bound of 10 retry intervals + HOOK_TIMEOUT"
	}
	since := time.Now()
	return st.windowFor(ctx, fmt.Sprintf("want no further %s hook to %s within %s (%s)", kind, alias, w, why),
		hookrecv.And(hookrecv.For(d.uuid, hookrecv.Kind(kind)), hookrecv.After(since)), w)
}

// noRepeatAfterRestart is noRepeatWhileOwed across a restart: hooks count
// from the moment the supervisor was stopped or killed, and the window, 3 ×
// HOOK-202's bound, from its first GET /ping 200 (HOOK-REF-1: nothing
// acknowledged is sent again).
func noRepeatAfterRestart(ctx context.Context, kind, alias string) error {
	st, d, err := deviceOf(ctx, alias)
	if err != nil {
		return err
	}
	if st.restartedAt.IsZero() {
		return errors.New("the supervisor was not restarted in this scenario")
	}
	w := 3 * st.bounds().repeat202()
	return st.windowFor(ctx, fmt.Sprintf("want no %s hook to %s from the restart until %s after it was ready (3 × HOOK-202's bound of 3 retry intervals)", kind, alias, w),
		hookrecv.And(hookrecv.For(d.uuid, hookrecv.Kind(kind)), hookrecv.After(st.restartedAt)), max(time.Until(st.readyAt.Add(w)), 0))
}

// noHookForReleaseWhileDue: the window is 3 times HOOK-UPD-1's bound for a
// first hook (with HOOK_TIMEOUT when another hook to the device may be in
// flight meanwhile), counted from now.
func noHookForReleaseWhileDue(ctx context.Context, release, alias string) error {
	st, d, r, err := deviceAndOf(ctx, alias, (*scenario).release, release)
	if err != nil {
		return err
	}
	// Another hook to the device may be in flight during the window when
	// one is now, or when the last one is owed again (failed, or 202).
	b := st.bounds()
	busy := false
	if hs := st.hooksTo(d.uuid); len(hs) > 0 {
		last := hs[len(hs)-1]
		busy = !last.Done() || last.Failed() || (last.Kind == hookrecv.Update && last.Status == http.StatusAccepted)
	}
	w := 3 * b.firstHook(busy)
	return st.windowFor(ctx, fmt.Sprintf("want no update hook to %s for release %s within %s (3 × HOOK-UPD-1's bound)", alias, release, w),
		hookrecv.And(hookrecv.For(d.uuid, hookrecv.Update), func(h hookrecv.Hook) bool {
			return h.Update != nil && h.Update.Commit == r.commit
		}), w)
}

// targetKey is an update hook's whole target (appId, commit, environment,
// config), comparable; "" for a body that did not decode.
func targetKey(h hookrecv.Hook) string {
	if h.Update == nil {
		return ""
	}
	b, _ := json.Marshal(h.Update)
	return string(b)
}

// hooksTo returns the hooks to uuid of a known kind, in order received.
func (st *scenario) hooksTo(uuid string) []hookrecv.Hook {
	hs := hookrecv.Filter(st.recv().Hooks(), func(h hookrecv.Hook) bool {
		return h.UUID == uuid && h.Kind != hookrecv.Unknown
	})
	sort.SliceStable(hs, func(i, j int) bool { return hs[i].Received.Before(hs[j].Received) })
	return hs
}

// changeExplains reports whether a target change in the cloud explains that
// h carries another target than prev: a change after the latest change that
// came before prev's target was first sent (the one prev's target came
// from), and before h.
func (st *scenario) changeExplains(hs []hookrecv.Hook, prev, h hookrecv.Hook) bool {
	firstSent := prev.Received
	for _, x := range hs {
		if x.Kind == hookrecv.Update && targetKey(x) == targetKey(prev) {
			firstSent = x.Received
			break
		}
	}
	// The origin: the last change that began before prev's target was
	// first sent.
	origin := -1
	for i, c := range st.targetChanges {
		if c.from.Before(firstSent) {
			origin = i
		}
	}
	for _, c := range st.targetChanges[origin+1:] {
		if c.from.Before(h.Received) {
			return true
		}
	}
	return false
}

// targetChangedBetween reports whether the scenario changed a target in the
// cloud between from and to.
func (st *scenario) targetChangedBetween(from, to time.Time) bool {
	for _, c := range st.targetChanges {
		if !c.to.Before(from) && !c.from.After(to) {
			return true
		}
	}
	return false
}

// hooksKeptTiming checks every hook to one device, of every kind, against
// the timing clauses, from the receiver's timestamps:
//   - HOOK-PACE: consecutive hooks start at least a retry interval apart and
//     never overlap; no older target follows a newer one;
//   - HOOK-202: after a 202, the next attempt starts at most 3 retry
//     intervals after that answer and carries the same whole target (unless
//     the scenario changed the target meanwhile);
//   - HOOK-ERR: after a failure, the next attempt starts within 10 retry
//     intervals + HOOK_TIMEOUT; no request is given up before half of
//     HOOK_TIMEOUT, and none is left open beyond 2 × HOOK_TIMEOUT.
func hooksKeptTiming(ctx context.Context, alias string) error {
	st, d, err := deviceOf(ctx, alias)
	if err != nil {
		return err
	}
	hs := st.hooksTo(d.uuid)
	if len(hs) == 0 {
		return fmt.Errorf("no hook reached %s, want hooks to measure", alias)
	}
	b, R := st.bounds(), st.cfg.Timing.Retry
	now := time.Now()
	var probs []string
	fail := func(format string, a ...any) { probs = append(probs, fmt.Sprintf(format, a...)) }
	seen := map[string]int{} // target → index of its first hook
	for i, h := range hs {
		end := h.Answered
		if !h.Done() {
			end = now
		}
		open := end.Sub(h.Received)
		// HOOK-ERR: an answer within half of HOOK_TIMEOUT is an answer.
		if h.Abandoned() && open < b.answerWithin()-slack(h.Received, end) {
			fail("HOOK-ERR: %s was given up after %s, before half of HOOK_TIMEOUT (%s)", h, open.Round(time.Millisecond), b.answerWithin())
		}
		// HOOK-ERR: unanswered after 2 × HOOK_TIMEOUT is a timeout.
		if (h.Script.Hang || !h.Done()) && open > b.timedOut()+slack(h.Received, end) {
			fail("HOOK-ERR: %s was left unanswered for %s and not given up, want a timeout within 2 × HOOK_TIMEOUT (%s)", h, open.Round(time.Millisecond), b.timedOut())
		}
		if h.Kind == hookrecv.Update && h.Update != nil {
			// An older target after a newer one, with no change in the
			// cloud since the newer one was first sent.
			k := targetKey(h)
			if first, ok := seen[k]; ok && i > 0 && hs[i-1].Update != nil && targetKey(hs[i-1]) != k {
				newer := hs[seen[targetKey(hs[i-1])]]
				if !st.targetChangedBetween(newer.Received, h.Received) {
					fail("HOOK-PACE: %s carries the target first sent in #%d, after the newer target of #%d", h, hs[first].Seq, newer.Seq)
				}
			} else if !ok {
				seen[k] = i
			}
		}
		if i == 0 {
			continue
		}
		prev := hs[i-1]
		sl := slack(prev.Received, h.Received)
		if gap := h.Received.Sub(prev.Received); gap < R-sl {
			fail("HOOK-PACE: %s came %s after %s, want at least the retry interval %s", h, gap.Round(time.Millisecond), prev, R)
		}
		if !prev.Done() || h.Received.Before(prev.Answered.Add(-sl)) {
			fail("HOOK-PACE: %s was sent while %s was still in flight", h, prev)
		}
		if prev.Kind != h.Kind || !prev.Done() {
			continue // another kind came between two attempts: no upper bound on the pair
		}
		wait := h.Received.Sub(prev.Answered)
		switch {
		case prev.Kind == hookrecv.Update && prev.Outcome == hookrecv.Answered && prev.Status == http.StatusAccepted:
			if targetKey(h) != targetKey(prev) {
				if !st.changeExplains(hs, prev, h) {
					fail("HOOK-202: %s repeats %s with another target, and the target did not change in the cloud; want the same whole target (appId, commit, environment, config)", h, prev)
				}
				continue // a new target: HOOK-UPD-1's bound applies instead
			}
			if wait > b.repeat202()+sl {
				fail("HOOK-202: %s started %s after %s was answered 202, want at most 3 retry intervals (%s)", h, wait.Round(time.Millisecond), prev, b.repeat202())
			}
		case prev.Failed():
			if wait > b.retryAfterFailure()+sl {
				fail("HOOK-ERR: %s started %s after %s failed, want within 10 retry intervals + HOOK_TIMEOUT (%s)", h, wait.Round(time.Millisecond), prev, b.retryAfterFailure())
			}
		}
	}
	if len(probs) > 0 {
		return fmt.Errorf("hooks to %s broke the contract's timing:\n  %s\nhooks received: %s", alias, strings.Join(probs, "\n  "), st.hookList())
	}
	return nil
}

// servedSince is when the registry finished serving the last pull of repo
// that began at or after since (zero if none).
func (st *scenario) servedSince(repo string, since time.Time) time.Time {
	var t time.Time
	for _, r := range st.world.Registry.Requests() {
		if r.Repo != repo || (r.Method != http.MethodGet && r.Method != http.MethodHead) || r.Time.Before(since) {
			continue
		}
		if r.Done.After(t) {
			t = r.Done
		}
	}
	return t
}

// firstHookInBound checks HOOK-UPD-1's upper bound: the first update hook of
// the device's newest target (the one its latest hook carries) started
// within 2 poll intervals + 3 retry intervals (+ HOOK_TIMEOUT when another
// hook to the device was in flight) of the scenario's last target change,
// or, for a new commit, of the registry having served its image whole.
func firstHookInBound(ctx context.Context, alias string) error {
	st, d, err := deviceOf(ctx, alias)
	if err != nil {
		return err
	}
	if len(st.targetChanges) == 0 {
		return errors.New("the scenario changed no target to measure from")
	}
	last := st.targetChanges[len(st.targetChanges)-1]
	changed := last.to
	hs := st.hooksTo(d.uuid)
	var newest *hookrecv.Hook
	for i := range hs {
		if hs[i].Kind == hookrecv.Update && hs[i].Update != nil {
			newest = &hs[i]
		}
	}
	if newest == nil {
		return fmt.Errorf("no update hook reached %s; hooks received: %s", alias, st.hookList())
	}
	var first hookrecv.Hook
	for _, h := range hs {
		if h.Kind == hookrecv.Update && targetKey(h) == targetKey(*newest) {
			first = h
			break
		}
	}
	if first.Received.Before(last.from) {
		return fmt.Errorf("the newest target of %s was first sent in %s, before the scenario's last change at %s", alias, first, last.from.Format("15:04:05.000"))
	}
	from, why := changed, "the change"
	for _, r := range st.releases {
		if r.commit == first.Update.Commit {
			if t := st.servedSince(fmt.Sprintf("apps/%d", r.app.id), changed); t.After(from) {
				from, why = t, "the registry serving its image whole"
			}
		}
	}
	inFlight := false
	for _, h := range hs {
		if h.Seq != first.Seq && h.Received.Before(first.Received) && (!h.Done() || h.Answered.After(from)) {
			inFlight = true
		}
	}
	bound := st.bounds().firstHook(inFlight)
	if took := first.Received.Sub(from); took > bound+slack(from, first.Received) {
		return fmt.Errorf("HOOK-UPD-1: the first hook of the newest target, %s, came %s after %s, want within 2 poll intervals + 3 retry intervals%s (%s); hooks received: %s",
			first, took.Round(time.Millisecond), why, map[bool]string{true: " + HOOK_TIMEOUT", false: ""}[inFlight], bound, st.hookList())
	}
	return nil
}

// hookAfterListening checks HOOK-ERR's retry bound across refused
// connections: the failures before the listener returned were at the latest
// when it returned, so the next attempt reaches it within 10 retry
// intervals + HOOK_TIMEOUT of then.
func hookAfterListening(ctx context.Context, alias string) error {
	st, d, err := deviceOf(ctx, alias)
	if err != nil {
		return err
	}
	since := st.hooks.listeningSince()
	if since.IsZero() {
		return errors.New("the gateway app never started listening again in this scenario")
	}
	hs := hookrecv.Filter(st.hooksTo(d.uuid), hookrecv.After(since))
	if len(hs) == 0 {
		return fmt.Errorf("no hook reached %s after the gateway app listened again; hooks received: %s", alias, st.hookList())
	}
	bound := st.bounds().retryAfterFailure()
	if took := hs[0].Received.Sub(since); took > bound+slack(since, hs[0].Received) {
		return fmt.Errorf("HOOK-ERR: %s came %s after the gateway app listened again, want within 10 retry intervals + HOOK_TIMEOUT (%s) of the refused attempt",
			hs[0], took.Round(time.Millisecond), bound)
	}
	return nil
}

// owedHookAfterRestart checks HOOK-REF-1's resume bound: counted from the
// supervisor's first GET /ping 200 after the restart, the owed hook comes
// within HOOK-202's bound if its last attempt was answered 202, HOOK-ERR's
// if it failed or was cut short, and HOOK-UPD-1's (with HOOK_TIMEOUT) if it
// was never sent.
func owedHookAfterRestart(ctx context.Context, alias, kind string) error {
	st, d, err := deviceOf(ctx, alias)
	if err != nil {
		return err
	}
	ready := st.readyAt
	pred := hookrecv.And(hookrecv.For(d.uuid, hookrecv.Kind(kind)), hookrecv.After(ready))
	got, err := st.await(ctx, fmt.Sprintf("the owed %s hook to %s after the restart", kind, alias), pred, 1)
	if err != nil {
		return err
	}
	next := got[0]
	var prev *hookrecv.Hook
	for _, h := range st.hooksTo(d.uuid) {
		if h.Kind == hookrecv.Kind(kind) && h.Received.Before(ready) {
			h := h
			prev = &h
		}
	}
	b := st.bounds()
	bound, clause := b.firstHook(true), "HOOK-UPD-1's first-hook bound"
	switch {
	case prev == nil:
	case kind == string(hookrecv.Update) && targetKey(next) != targetKey(*prev):
		// A target not sent before the restart: HOOK-UPD-1's bound.
	case prev.Outcome == hookrecv.Answered && prev.Status == http.StatusAccepted && kind == string(hookrecv.Update):
		bound, clause = b.repeat202(), "HOOK-202's repeat bound"
	case prev.Outcome == hookrecv.Answered && prev.Status == http.StatusOK:
		return fmt.Errorf("%s was answered 200 before the restart: no %s hook was owed, got %s", prev, kind, next)
	default:
		bound, clause = b.retryAfterFailure(), "HOOK-ERR's retry bound"
	}
	if took := next.Received.Sub(ready); took > bound+slack(ready, next.Received) {
		return fmt.Errorf("HOOK-REF-1: the owed %s hook %s came %s after the first GET /ping 200, want within %s (%s); hooks received: %s",
			kind, next, took.Round(time.Millisecond), clause, bound, st.hookList())
	}
	return nil
}

// pollsInEveryWindow watches the cloud for 4 × CLOUD-STATE's bound and
// checks that the supervisor's state polls left no gap longer than 2 poll
// intervals (from the last poll before the watch to its end).
func pollsInEveryWindow(ctx context.Context) error {
	st := scenarioOf(ctx)
	b := st.bounds()
	start := time.Now()
	if err := ctxtime.Sleep(ctx, 4*b.pollWindow()); err != nil {
		return err
	}
	end := time.Now()
	var times []time.Time
	var before time.Time
	for _, r := range st.world.Cloud.Requests(0) {
		if r.Route != cloud.RouteState || r.Gateway != st.gateway.UUID {
			continue
		}
		switch {
		case r.Time.Before(start):
			before = r.Time
		case !r.Time.After(end):
			times = append(times, r.Time)
		}
	}
	points := append([]time.Time{start}, times...)
	if !before.IsZero() {
		points[0] = before
	}
	points = append(points, end)
	for i := 1; i < len(points); i++ {
		gap := points[i].Sub(points[i-1])
		if gap > b.pollWindow()+slack(points[i-1], points[i]) {
			return fmt.Errorf("CLOUD-STATE: no state poll from %s to %s (%s), want one in every window of 2 poll intervals (%s); polls seen in %s: %d",
				points[i-1].Format("15:04:05.000"), points[i].Format("15:04:05.000"), gap.Round(time.Millisecond), b.pollWindow(), end.Sub(start).Round(time.Millisecond), len(times))
		}
	}
	return nil
}
