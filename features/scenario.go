package features

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"os"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/cucumber/godog"
	"github.com/gavv/httpexpect/v2"

	"github.com/depharness/depharness/fakes/cloud"
	"github.com/depharness/depharness/fakes/hookrecv"
	"github.com/depharness/depharness/internal/ctxtime"
)

// scenario is the state of one running scenario, created in sc.Before and
// carried in the context.
type scenario struct {
	suite    *suite
	cfg      Config
	name, id string
	pickle   *godog.Scenario
	// failed is the first step that failed, for the report.
	failed *failedStep
	// reference is set for a scenario tagged @reference: it may check what
	// the contract tier leaves open (ERR-2's exact messages; device objects
	// with exactly the contract's fields, devicecheck.go).
	reference bool
	log       *syncBuffer // harness, fakes and target output
	targetOut *syncBuffer // target output only
	logger    *slog.Logger

	dataDir  string
	port     int
	hookPort int
	apiKey   string
	world    *World
	// holding is set while the scenario holds a busy slot (slots.go).
	holding bool
	gateway cloud.Gateway
	other   *cloud.Gateway
	hooks   *hookServer
	target  Target
	// fetchAssets is installed on the hook receiver when the gateway app
	// fetches the assets of every update hook.
	fetchAssets hookrecv.OnReceive

	apps     map[string]*appState
	releases map[string]*releaseState
	devices  map[string]*deviceState
	scripts  map[string]pendingScript

	rep *collector // failures of the current step

	last       *httpexpect.Response
	lastMethod string
	lastPath   string
	lastBody   []byte
	etag       string
	fullTar    []byte
	parallel   []*httpexpect.Response
	// lastDeviceProbs are the device-object problems of the last answer,
	// reported by the step that looks at it.
	lastDeviceProbs []string
	logSent         map[string][2]int64 // message → [before, after] in ms
	raw             *rawClient          // a client speaking raw TCP to the target (SRV-1)

	// targetChanges are the times the scenario changed a device's target
	// in the cloud (new device, variable, release); readyAt is when the
	// supervisor last answered GET /ping 200 after a (re)start. Timing
	// bounds are measured from them (bounds.go).
	targetChanges []targetChange
	readyAt       time.Time
	restartedAt   time.Time // when the last restart began (stop or kill)
}

// failedStep is where a scenario failed and whether the harness did.
type failedStep struct {
	where   string // "file.feature:line Step text"
	harness bool
}

type appState struct {
	name string
	id   int64
}

type releaseState struct {
	name   string
	app    *appState
	commit string
}

type deviceState struct {
	alias   string
	uuid    string
	cloudID int64
	app     *appState
}

type pendingScript struct {
	kind    hookrecv.Kind
	answers []hookrecv.Answer
}

// collector is the httpexpect reporter of a step: failures become the
// step's error.
type collector struct {
	mu   sync.Mutex
	msgs []string
}

func (c *collector) Errorf(message string, args ...any) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.msgs = append(c.msgs, fmt.Sprintf(message, args...))
}

func (c *collector) err() error {
	c.mu.Lock()
	defer c.mu.Unlock()
	if len(c.msgs) == 0 {
		return nil
	}
	return errors.New(strings.Join(c.msgs, "\n"))
}

func (st *scenario) baseURL() string { return fmt.Sprintf("http://127.0.0.1:%d", st.port) }

// expectWith returns an httpexpect instance on the target reporting to r,
// device-object problems (devicecheck.go) included.
func (st *scenario) expectWith(r httpexpect.Reporter) *httpexpect.Expect {
	return st.expectWithDeviceReport(r, r.Errorf)
}

// expectWithDeviceReport is expectWith with device-object problems
// reported to devReport.
func (st *scenario) expectWithDeviceReport(r httpexpect.Reporter, devReport func(string, ...any)) *httpexpect.Expect {
	// The bodies of a failing exchange are shown with it (failtext.go).
	rec := &bodyRecorder{base: &deviceCheck{
		base: http.DefaultTransport, exact: st.reference, report: devReport,
	}}
	return httpexpect.WithConfig(httpexpect.Config{
		BaseURL:  st.baseURL(),
		Reporter: r,
		Client:   &http.Client{Timeout: 15 * time.Second, Transport: rec},
		Formatter: &bodyFormatter{
			DefaultFormatter: httpexpect.DefaultFormatter{DisableNames: true},
			rec:              rec,
		},
		Printers: []httpexpect.Printer{httpexpect.NewCompactPrinter(logPrinter{st})},
	})
}

// api returns an httpexpect instance whose failures are failures of the
// step running when they happen, even for a response kept from an earlier
// step ("the answer").
func (st *scenario) api() *httpexpect.Expect {
	if st.rep == nil {
		st.rep = &collector{}
	}
	return st.expectWith(stepReporter{st})
}

// stepReporter forwards failures to the current step's collector.
type stepReporter struct{ st *scenario }

func (r stepReporter) Errorf(message string, args ...any) { r.st.rep.Errorf(message, args...) }

// quiet returns an httpexpect instance whose failures are collected apart,
// for polling.
func (st *scenario) quiet() (*httpexpect.Expect, *collector) {
	c := &collector{}
	return st.expectWith(c), c
}

type logPrinter struct{ st *scenario }

func (p logPrinter) Logf(format string, a ...any) { p.st.logf(format, a...) }

// authed adds the API key to a request (as a Bearer header).
func (st *scenario) authed(r *httpexpect.Request) *httpexpect.Request {
	return r.WithHeader("Authorization", "Bearer "+st.apiKey)
}

// failFunc reports a failure that is not an httpexpect assertion.
type failFunc func(format string, a ...any)

// eventually runs check until it reports no failure, polling until the
// await deadline; then it runs it once more reporting to the step.
func (st *scenario) eventually(ctx context.Context, check func(e *httpexpect.Expect, fail failFunc)) error {
	deadline := time.Now().Add(st.cfg.Timing.Await)
	for {
		e, c := st.quiet()
		check(e, c.Errorf)
		if c.err() == nil {
			return nil
		}
		if time.Now().After(deadline) {
			e := st.api()
			check(e, st.rep.Errorf)
			if err := st.rep.err(); err != nil {
				return fmt.Errorf("not so within %s: %w", st.cfg.Timing.Await, err)
			}
			return nil
		}
		if err := ctxtime.Sleep(ctx, 25*time.Millisecond); err != nil {
			return err
		}
	}
}

// waitFor polls cond until it returns nil or the await deadline passes.
func (st *scenario) waitFor(ctx context.Context, cond func() error) error {
	deadline := time.Now().Add(st.cfg.Timing.Await)
	for {
		err := cond()
		if err == nil {
			return nil
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("not so within %s: %w", st.cfg.Timing.Await, err)
		}
		if err := ctxtime.Sleep(ctx, 25*time.Millisecond); err != nil {
			return err
		}
	}
}

// awaitCtx is a context bounded by the await deadline.
func (st *scenario) awaitCtx(ctx context.Context) (context.Context, context.CancelFunc) {
	return context.WithTimeout(ctx, st.cfg.Timing.Await)
}

var placeholder = regexp.MustCompile(`\{(uuid|app|commit|cloud id) ([^}]+)\}`)

// expand replaces {uuid D}, {app A}, {commit R1} and {cloud id D} with the
// scenario's values.
func (st *scenario) expand(s string) (string, error) {
	var err error
	out := placeholder.ReplaceAllStringFunc(s, func(m string) string {
		p := placeholder.FindStringSubmatch(m)
		kind, name := p[1], p[2]
		switch kind {
		case "uuid", "cloud id":
			d, ok := st.devices[name]
			if !ok {
				err = fmt.Errorf("no device %q in this scenario", name)
				return m
			}
			if kind == "uuid" {
				return d.uuid
			}
			return strconv.FormatInt(d.cloudID, 10)
		case "app":
			a, aerr := st.app(name)
			if aerr != nil {
				err = aerr
				return m
			}
			return strconv.FormatInt(a.id, 10)
		default:
			r, rerr := st.release(name)
			if rerr != nil {
				err = rerr
				return m
			}
			return r.commit
		}
	})
	return out, err
}

func (st *scenario) device(alias string) (*deviceState, error) {
	return lookup(st.devices, "device", alias)
}

func (st *scenario) app(name string) (*appState, error) { return lookup(st.apps, "app", name) }

func (st *scenario) release(name string) (*releaseState, error) {
	return lookup(st.releases, "release", name)
}

// lookup is m[name], or an arrange error: the scenario has no what of
// that name.
func lookup[V any](m map[string]V, what, name string) (V, error) {
	v, ok := m[name]
	if !ok {
		return v, arrange(fmt.Errorf("no %s %q in this scenario", what, name))
	}
	return v, nil
}

// deviceOf is the scenario of ctx and its device alias.
func deviceOf(ctx context.Context, alias string) (*scenario, *deviceState, error) {
	st := scenarioOf(ctx)
	d, err := st.device(alias)
	return st, d, err
}

// releaseOf is the scenario of ctx and its release of app appName.
func releaseOf(ctx context.Context, release, appName string) (*scenario, *releaseState, error) {
	st := scenarioOf(ctx)
	r, err := st.release(release)
	if err == nil && r.app.name != appName {
		err = fmt.Errorf("release %s belongs to app %s, not %s", release, r.app.name, appName)
	}
	return st, r, err
}

// deviceAndOf is the scenario of ctx, its device alias and its thing
// name, looked up by find: (*scenario).app or (*scenario).release.
func deviceAndOf[V any](ctx context.Context, alias string, find func(*scenario, string) (V, error), name string) (*scenario, *deviceState, V, error) {
	st, d, err := deviceOf(ctx, alias)
	if err != nil {
		var none V
		return st, d, none, err
	}
	v, err := find(st, name)
	return st, d, v, err
}

// appOf is the scenario of ctx and its app name.
func appOf(ctx context.Context, name string) (*scenario, *appState, error) {
	st := scenarioOf(ctx)
	a, err := st.app(name)
	return st, a, err
}

// addDevice records a device under alias and applies any hook script that
// was set for it before it existed.
func (st *scenario) addDevice(alias, uuid string, cloudID int64, app *appState) error {
	if _, dup := st.devices[alias]; dup {
		return arrange(fmt.Errorf("device %q already exists in this scenario", alias))
	}
	st.devices[alias] = &deviceState{alias: alias, uuid: uuid, cloudID: cloudID, app: app}
	st.noteNewDevice()
	st.logf("device %s is %s (cloud id %d)", alias, uuid, cloudID)
	return nil
}

// env returns the harness variables of CONTRACT.md for the target.
func (st *scenario) env() map[string]string {
	t := st.cfg.Timing
	e := map[string]string{
		"API_ENDPOINT":                          st.world.CloudURL,
		"DEVICE_UUID":                           st.gateway.UUID,
		"DEVICE_ID":                             strconv.FormatInt(st.gateway.DeviceID, 10),
		"DEVICE_API_KEY":                        st.gateway.APIKey,
		"BALENA_SUPERVISOR_API_KEY":             st.apiKey,
		"BALENA_SUPERVISOR_PORT":                strconv.Itoa(st.port),
		"BALENA_DEPENDENT_DEVICES_HOOK_ADDRESS": st.hooks.baseURL(),
		"DATA_DIR":                              st.dataDir,
		"TARGET_POLL_INTERVAL":                  t.Poll.String(),
		"HOOK_RETRY_INTERVAL":                   t.Retry.String(),
		"HOOK_TIMEOUT":                          t.HookTimeout.String(),
	}
	for k, v := range st.cfg.TargetEnv {
		e[k] = v
	}
	return e
}

// close tears the scenario down and keeps its log if it failed.
func (st *scenario) close(failure error) {
	if st.raw != nil {
		st.raw.close()
	}
	if st.target != nil && st.target.Running() {
		// More than the target's 10 s to exit: Stop's own grace decides.
		ctx, cancel := context.WithTimeout(context.Background(), 15*time.Second)
		if err := st.target.Stop(ctx); err != nil {
			st.logf("stopping the target: %v", err)
		}
		cancel()
	}
	if st.hooks != nil {
		st.hooks.close()
	}
	if st.world != nil && st.world.Close != nil {
		st.world.Close()
	}
	if failure != nil && st.cfg.ReportDir != "" {
		st.logf("FAILED: %v", failure)
		_ = os.WriteFile(filepath.Join(st.cfg.ReportDir, "logs", st.id+".log"), []byte(st.log.String()), 0o644)
	}
	if st.dataDir != "" {
		_ = os.RemoveAll(st.dataDir)
	}
	for _, p := range []int{st.port, st.hookPort} {
		if p != 0 {
			st.suite.ports.release(p)
		}
	}
	if st.holding {
		st.cfg.slots.give()
		st.holding = false
	}
}

func (st *scenario) logf(format string, a ...any) {
	fmt.Fprintf(st.log, "%s harness: %s\n", time.Now().Format("15:04:05.000"), fmt.Sprintf(format, a...))
}
