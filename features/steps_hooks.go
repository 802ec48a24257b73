package features

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"reflect"
	"regexp"
	"strconv"
	"strings"
	"time"

	"github.com/cucumber/godog"

	"github.com/depharness/depharness/fakes/hookrecv"
)

// Steps about the hooks the supervisor sends to the gateway app.

func registerHookSteps(sc stepper) {
	sc.Step(stepExpr(`^the gateway app fetches the assets of every update hook it receives$`), fetchAssetsOnHook)
	sc.Step(stepExpr(`^the gateway app answers (update|delete|restart) hooks(?: for "([^"]*)")? with (.+)$`), scriptHooks)
	sc.Step(stepExpr(`^the hook address is "([^"]*)" on the gateway app$`), hookAddress)
	sc.Step(stepExpr(`^the gateway app is not listening$`), notListening)
	sc.Step(stepExpr(`^the gateway app starts listening$`), startsListening)

	sc.Step(stepExpr(`^"([^"]*)" eventually receives an? (update|delete|restart) hook$`), receivesOne)
	sc.Step(stepExpr(`^"([^"]*)" eventually receives (\d+) (update|delete|restart) hooks$`), receivesN)
	sc.Step(stepExpr(`^"([^"]*)" eventually receives a restart hook answered (\d{3})$`), receivesRestartAnswered)
	sc.Step(stepExpr(`^"([^"]*)" eventually receives an update hook for release "([^"]*)"$`), receivesUpdateFor)
	sc.Step(stepExpr(`^"([^"]*)" eventually receives (\d+) update hooks for release "([^"]*)"$`), receivesNUpdatesFor)
	sc.Step(stepExpr(`^"([^"]*)" eventually receives (\d+) update hook attempts? for release "([^"]*)"$`), receivesNUpdateAttemptsFor)
	sc.Step(stepExpr(`^"([^"]*)" receives (\d+) more update hooks? for release "([^"]*)"$`), receivesMoreUpdatesFor)
	sc.Step(stepExpr(`^"([^"]*)" receives (\d+) more (delete|restart) hooks?$`), receivesMore)
	sc.Step(stepExpr(`^"([^"]*)" eventually receives an update hook with body:$`), receivesUpdateWithBody)
	sc.Step(stepExpr(`^"([^"]*)" eventually receives an update hook with (environment|config) (\{.*\})$`), receivesUpdateWithVars)
	sc.Step(stepExpr(`^"([^"]*)" eventually receives (\d+) update hooks with (environment|config) (\{.*\})$`), receivesNUpdatesWithVars)

	sc.Step(stepExpr(`^no two hooks to "([^"]*)" overlapped$`), noOverlap)
	sc.Step(stepExpr(`^after the first update hook for release "([^"]*)", no update hook to "([^"]*)" carried release "([^"]*)"$`), noSupersededHook)
	sc.Step(stepExpr(`^the gap before the (\d+)(?:st|nd|rd|th) update hook to "([^"]*)" is at least (\d+) retry intervals$`), gapAtLeast)
	sc.Step(stepExpr(`^hooks to at least (\d+) devices were in flight at once$`), concurrentDevices)
	sc.Step(stepExpr(`^every update hook could fetch its assets at once$`), everyHookFetched)
	sc.Step(stepExpr(`^every hook went to the gateway app's address for its device$`), everyHookAddressed)
	registerBoundSteps(sc)
}

func (st *scenario) recv() *hookrecv.Receiver { return st.hooks.receiver() }

func fetchAssetsOnHook(ctx context.Context) error {
	st := scenarioOf(ctx)
	st.fetchAssets = func(ctx context.Context, h hookrecv.Hook) string {
		if h.Kind != hookrecv.Update || h.Update == nil {
			return ""
		}
		e, _ := st.quiet()
		resp := st.authed(e.GET(fmt.Sprintf("/v1/dependent-apps/%d/assets/%s", h.Update.AppID, h.Update.Commit))).
			WithContext(ctx).Expect()
		raw := resp.Raw()
		if raw == nil {
			return "assets error: no answer"
		}
		return "assets " + strconv.Itoa(raw.StatusCode)
	}
	st.recv().SetOnReceive(st.fetchAssets)
	return nil
}

var answerRe = regexp.MustCompile(`^(?:(\d{3})(?: after (.+))?|(refuse)|(hang))$`)

// parseAnswers reads "202, 500 after 2s, refuse, hang, then 200"; hook
// timeouts in delays are hookTimeout long.
func parseAnswers(s string, hookTimeout time.Duration) ([]hookrecv.Answer, error) {
	s = strings.ReplaceAll(s, ", then ", ", ")
	s = strings.ReplaceAll(s, " then ", ", ")
	var out []hookrecv.Answer
	for _, part := range strings.Split(s, ",") {
		part = strings.TrimSpace(part)
		m := answerRe.FindStringSubmatch(part)
		if m == nil {
			return nil, fmt.Errorf("hook answer %q: want a status, \"<status> after <duration>\", refuse or hang", part)
		}
		switch {
		case m[3] != "":
			out = append(out, hookrecv.Answer{Refuse: true})
		case m[4] != "":
			out = append(out, hookrecv.Answer{Hang: true})
		default:
			code, _ := strconv.Atoi(m[1])
			a := hookrecv.Answer{Status: code}
			if m[2] != "" {
				d, err := hookDuration(m[2], hookTimeout)
				if err != nil {
					return nil, err
				}
				a.Delay = d
			}
			out = append(out, a)
		}
	}
	return out, nil
}

var timeoutsRe = regexp.MustCompile(`^(\d+) hook timeouts$`)

// hookDuration reads "half a hook timeout", "a hook timeout", "3 hook
// timeouts" (of ht) or a Go duration.
func hookDuration(s string, ht time.Duration) (time.Duration, error) {
	switch s {
	case "half a hook timeout":
		return ht / 2, nil
	case "a hook timeout":
		return ht, nil
	}
	if m := timeoutsRe.FindStringSubmatch(s); m != nil {
		n, _ := strconv.Atoi(m[1])
		return time.Duration(n) * ht, nil
	}
	return time.ParseDuration(s)
}

func scriptHooks(ctx context.Context, kind, alias, answers string) error {
	st := scenarioOf(ctx)
	as, err := parseAnswers(answers, st.cfg.Timing.HookTimeout)
	if err != nil {
		return err
	}
	k := hookrecv.Kind(kind)
	if alias == "" {
		st.recv().Script("", k, as...)
		return nil
	}
	if d, ok := st.devices[alias]; ok {
		st.recv().Script(d.uuid, k, as...)
		return nil
	}
	// The device does not exist yet: its uuid is not known before the
	// supervisor's first hook can reach it, so the script becomes the
	// template every device steps through on its own.
	for other, p := range st.scripts {
		if p.kind == k && other != alias {
			return fmt.Errorf("%s hooks are already scripted for device %q, not provisioned yet; script %q after provisioning it", kind, other, alias)
		}
	}
	st.scripts[alias] = pendingScript{kind: k, answers: as}
	st.recv().Script("", k, as...)
	return nil
}

func hookAddress(ctx context.Context, prefix string) error {
	st := scenarioOf(ctx)
	if !strings.HasPrefix(prefix, "/") || !strings.HasSuffix(prefix, "/") {
		return fmt.Errorf("hook path %q must start and end with /", prefix)
	}
	st.hooks.setPrefix(prefix, st.fetchAssets)
	return nil
}

func notListening(ctx context.Context) error {
	scenarioOf(ctx).hooks.stopListening()
	return nil
}

func startsListening(ctx context.Context) error {
	return scenarioOf(ctx).hooks.startListening(ctx)
}

// await waits for n hooks matching pred.
func (st *scenario) await(ctx context.Context, what string, pred func(hookrecv.Hook) bool, n int) ([]hookrecv.Hook, error) {
	actx, cancel := st.awaitCtx(ctx)
	defer cancel()
	hs, err := st.recv().AwaitHooks(actx, pred, n)
	if err != nil {
		return hs, fmt.Errorf("%s: %w; hooks received: %s", what, err, st.hookList())
	}
	return hs, nil
}

// hookList describes every hook received, for failure messages.
func (st *scenario) hookList() string {
	hs := st.recv().Hooks()
	if len(hs) == 0 {
		return "none"
	}
	names := map[string]string{}
	for a, d := range st.devices {
		names[d.uuid] = a
	}
	var b strings.Builder
	for _, h := range hs {
		b.WriteString("\n  ")
		if a := names[h.UUID]; a != "" {
			b.WriteString(a + ": ")
		}
		b.WriteString(h.String())
	}
	return b.String()
}

// kindOf matches the hooks of kind to uuid that the supervisor received an
// answer to (or a refusal): a request it gave up on before the answer was
// not received as a hook (HOOK-ERR); attemptOf counts those too.
func kindOf(uuid string, kind hookrecv.Kind) func(hookrecv.Hook) bool {
	return hookrecv.And(hookrecv.For(uuid, kind), hookrecv.IsDone, func(h hookrecv.Hook) bool { return !h.Abandoned() })
}

// attemptOf matches every ended request of kind to uuid, given up or not.
func attemptOf(uuid string, kind hookrecv.Kind) func(hookrecv.Hook) bool {
	return hookrecv.And(hookrecv.For(uuid, kind), hookrecv.IsDone)
}

// hookPred builds a match on the hooks to one device from its uuid; an
// error is the scenario's (a name it does not have).
type hookPred func(uuid string) (func(hookrecv.Hook) bool, error)

// ofKind matches the answered hooks of kind.
func ofKind(kind hookrecv.Kind) hookPred {
	return func(uuid string) (func(hookrecv.Hook) bool, error) { return kindOf(uuid, kind), nil }
}

// forRelease matches the update hooks, by match (kindOf or attemptOf), that
// carry release's commit.
func (st *scenario) forRelease(release string, match func(string, hookrecv.Kind) func(hookrecv.Hook) bool) hookPred {
	return func(uuid string) (func(hookrecv.Hook) bool, error) {
		r, err := st.release(release)
		if err != nil {
			return nil, err
		}
		return hookrecv.And(match(uuid, hookrecv.Update), func(h hookrecv.Hook) bool {
			return h.Update != nil && h.Update.Commit == r.commit
		}), nil
	}
}

// awaitHooksTo waits for n hooks to the device alias that pred matches, n
// more than it has already received when more is set; what names them in
// the error.
func awaitHooksTo(ctx context.Context, alias string, n int, more bool, what string, pred hookPred) error {
	st, d, err := deviceOf(ctx, alias)
	if err != nil {
		return err
	}
	match, err := pred(d.uuid)
	if err != nil {
		return err
	}
	if more {
		n += len(hookrecv.Filter(st.recv().Hooks(), match))
	}
	_, err = st.await(ctx, what, match, n)
	return err
}

func receivesOne(ctx context.Context, alias, kind string) error {
	return receivesN(ctx, alias, 1, kind)
}

func receivesN(ctx context.Context, alias string, n int, kind string) error {
	return awaitHooksTo(ctx, alias, n, false, fmt.Sprintf("%d %s hooks to %s", n, kind, alias), ofKind(hookrecv.Kind(kind)))
}

func receivesRestartAnswered(ctx context.Context, alias string, status int) error {
	return awaitHooksTo(ctx, alias, 1, false, fmt.Sprintf("a restart hook to %s answered %d", alias, status),
		func(uuid string) (func(hookrecv.Hook) bool, error) {
			return hookrecv.And(kindOf(uuid, hookrecv.Restart), func(h hookrecv.Hook) bool { return h.Status == status }), nil
		})
}

func receivesUpdateFor(ctx context.Context, alias, release string) error {
	return receivesNUpdatesFor(ctx, alias, 1, release)
}

func receivesNUpdatesFor(ctx context.Context, alias string, n int, release string) error {
	return awaitHooksTo(ctx, alias, n, false, fmt.Sprintf("%d update hooks to %s for release %s", n, alias, release),
		scenarioOf(ctx).forRelease(release, kindOf))
}

// receivesNUpdateAttemptsFor counts requests the supervisor gave up on too.
func receivesNUpdateAttemptsFor(ctx context.Context, alias string, n int, release string) error {
	return awaitHooksTo(ctx, alias, n, false, fmt.Sprintf("%d update hook attempts to %s for release %s", n, alias, release),
		scenarioOf(ctx).forRelease(release, attemptOf))
}

func receivesMoreUpdatesFor(ctx context.Context, alias string, n int, release string) error {
	return awaitHooksTo(ctx, alias, n, true, fmt.Sprintf("%d more update hooks to %s for release %s", n, alias, release),
		scenarioOf(ctx).forRelease(release, kindOf))
}

func receivesMore(ctx context.Context, alias string, n int, kind string) error {
	return awaitHooksTo(ctx, alias, n, true, fmt.Sprintf("%d more %s hooks to %s", n, kind, alias), ofKind(hookrecv.Kind(kind)))
}

func receivesUpdateWithBody(ctx context.Context, alias string, doc *godog.DocString) error {
	want, err := scenarioOf(ctx).decodeJSON(doc.Content)
	if err != nil {
		return err
	}
	wantFields, ok := want.(map[string]any)
	if !ok {
		return fmt.Errorf("the scenario's hook body %s is not an object", mustJSON(want))
	}
	return awaitHooksTo(ctx, alias, 1, false, fmt.Sprintf("an update hook to %s with body %s (additional fields allowed)", alias, mustJSON(want)),
		func(uuid string) (func(hookrecv.Hook) bool, error) {
			return hookrecv.And(hookrecv.For(uuid, hookrecv.Update), func(h hookrecv.Hook) bool {
				var got map[string]any
				return json.Unmarshal(h.Body, &got) == nil && hasFields(got, wantFields)
			}), nil
		})
}

// hasFields reports whether got holds every field of want with an equal
// value; got may hold other fields (CONTRACT.md, Latitude).
func hasFields(got, want map[string]any) bool {
	for k, v := range want {
		g, ok := got[k]
		if !ok || !reflect.DeepEqual(g, v) {
			return false
		}
	}
	return true
}

func mustJSON(v any) string {
	b, _ := json.Marshal(v)
	return string(b)
}

// withVars matches the answered update hooks whose environment or config
// (which) is vars, a JSON object.
func withVars(which, vars string) hookPred {
	return func(uuid string) (func(hookrecv.Hook) bool, error) {
		var want map[string]any
		if err := json.Unmarshal([]byte(vars), &want); err != nil {
			return nil, fmt.Errorf("the scenario's %s %q: %w", which, vars, err)
		}
		return hookrecv.And(kindOf(uuid, hookrecv.Update), func(h hookrecv.Hook) bool {
			if h.Update == nil {
				return false
			}
			got := map[string]any(h.Update.Environment)
			if which == "config" {
				got = h.Update.Config
			}
			if len(got) == 0 && len(want) == 0 {
				return true
			}
			return reflect.DeepEqual(got, want)
		}), nil
	}
}

func receivesUpdateWithVars(ctx context.Context, alias, which, vars string) error {
	return receivesNUpdatesWithVars(ctx, alias, 1, which, vars)
}

func receivesNUpdatesWithVars(ctx context.Context, alias string, n int, which, vars string) error {
	return awaitHooksTo(ctx, alias, n, false, fmt.Sprintf("%d update hooks to %s with %s %s", n, alias, which, vars), withVars(which, vars))
}

func noOverlap(ctx context.Context, alias string) error {
	st, d, err := deviceOf(ctx, alias)
	if err != nil {
		return err
	}
	if n := st.recv().MaxConcurrent(d.uuid); n > 1 {
		return fmt.Errorf("got %d hooks to %s in flight at once, want at most 1; hooks received: %s", n, alias, st.hookList())
	}
	return nil
}

func noSupersededHook(ctx context.Context, newer, alias, older string) error {
	st, d, rn, err := deviceAndOf(ctx, alias, (*scenario).release, newer)
	if err != nil {
		return err
	}
	ro, err := st.release(older)
	if err != nil {
		return err
	}
	hs := hookrecv.Filter(st.recv().Hooks(), hookrecv.For(d.uuid, hookrecv.Update))
	seenNew := false
	for _, h := range hs {
		if h.Update == nil {
			continue
		}
		if h.Update.Commit == rn.commit {
			seenNew = true
		}
		if seenNew && h.Update.Commit == ro.commit {
			return fmt.Errorf("hook %s carried superseded release %s after release %s was sent; hooks received: %s", h, older, newer, st.hookList())
		}
	}
	if !seenNew {
		return fmt.Errorf("no update hook for release %s reached %s", newer, alias)
	}
	return nil
}

func gapAtLeast(ctx context.Context, nth int, alias string, intervals int) error {
	st, d, err := deviceOf(ctx, alias)
	if err != nil {
		return err
	}
	hs := hookrecv.Filter(st.recv().Hooks(), hookrecv.For(d.uuid, hookrecv.Update))
	if len(hs) < nth || nth < 2 {
		return fmt.Errorf("got %d update hooks to %s, want at least %d", len(hs), alias, nth)
	}
	gap := hs[nth-1].Received.Sub(hs[nth-2].Received)
	if want := time.Duration(intervals) * st.cfg.Timing.Retry; gap < want {
		return fmt.Errorf("the gap before update hook %d to %s is %s, want at least %s (backoff); hooks received: %s", nth, alias, gap, want, st.hookList())
	}
	return nil
}

func concurrentDevices(ctx context.Context, n int) error {
	st := scenarioOf(ctx)
	if got := st.recv().MaxConcurrentAll(); got < n {
		return fmt.Errorf("got at most %d hooks in flight at once, want hooks to at least %d devices at once", got, n)
	}
	return nil
}

func everyHookFetched(ctx context.Context) error {
	st := scenarioOf(ctx)
	if st.fetchAssets == nil {
		return errors.New("the gateway app does not fetch assets in this scenario")
	}
	hs := hookrecv.Filter(st.recv().Hooks(), func(h hookrecv.Hook) bool { return h.Kind == hookrecv.Update && h.Done() })
	if len(hs) == 0 {
		return errors.New("no update hook was received")
	}
	for _, h := range hs {
		if h.Note != "assets "+strconv.Itoa(http.StatusOK) {
			return fmt.Errorf("hook %s: fetching its assets at once gave %q, want assets 200", h, h.Note)
		}
	}
	return nil
}

func everyHookAddressed(ctx context.Context) error {
	st := scenarioOf(ctx)
	known := map[string]bool{}
	for _, d := range st.devices {
		known[d.uuid] = true
	}
	hs := st.recv().Hooks()
	if len(hs) == 0 {
		return errors.New("no hook was received")
	}
	prefix := st.recv().Prefix()
	for _, h := range hs {
		want := prefix + h.UUID
		if h.Kind == hookrecv.Restart {
			want += "/restart"
		}
		if h.Kind == hookrecv.Unknown || !known[h.UUID] || h.Path != want {
			return fmt.Errorf("hook %s: want PUT/DELETE %s<uuid> or PUT %s<uuid>/restart for a device of this gateway", h, prefix, prefix)
		}
	}
	return nil
}
