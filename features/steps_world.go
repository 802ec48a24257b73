package features

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"hash/fnv"
	mrand "math/rand/v2"
	"reflect"
	"regexp"
	"sort"
	"strconv"
	"strings"
	"time"

	"github.com/cucumber/godog"

	cloudapi "github.com/depharness/depharness/api/cloud"
	"github.com/depharness/depharness/fakes/cloud"
	"github.com/depharness/depharness/fakes/registry"
	"github.com/depharness/depharness/internal/ctxtime"
)

// Steps that arrange the world (cloud, registry) and run the supervisor.

func registerWorldSteps(sc stepper) {
	sc.Step(`^the supervisor is running$`, supervisorRunning)
	sc.Step(`^the supervisor is (stopped|killed) and started again$`, supervisorRestarted)
	sc.Step(`^the supervisor is restarted with the new hook address$`, supervisorRestartedForHooks)
	sc.Step(`^the supervisor has waited (\d+) poll intervals$`, waitPolls)
	sc.Step(`^the supervisor has fetched its target twice more$`, fetchedTwiceMore)
	sc.Step(`^the supervisor's output never contains the API key$`, outputLacksKey)

	sc.Step(`^a dependent app "([^"]*)" with a release "([^"]*)" holding files:$`, appWithFiles)
	sc.Step(`^a dependent app "([^"]*)" with a release "([^"]*)" built from layers:$`, appWithLayers)
	sc.Step(`^a dependent app "([^"]*)" without a release$`, appWithoutRelease)
	sc.Step(`^a dependent app "([^"]*)" of another gateway$`, appOfOtherGateway)
	sc.Step(`^another gateway with a dependent app "([^"]*)"$`, appOfOtherGateway)
	sc.Step(`^a release "([^"]*)" of "([^"]*)" holding files is pushed:$`, pushFiles)
	sc.Step(`^app "([^"]*)" has (environment|config) variable "([^"]*)" set to "([^"]*)"$`, setAppVar)
	sc.Step(`^device "([^"]*)" has (environment|config) variable "([^"]*)" set to "([^"]*)"$`, setDeviceVar)
	sc.Step(`^a device "([^"]*)" of "([^"]*)" created in the cloud for this gateway$`, createCloudDevice)
	sc.Step(`^device "([^"]*)" is deleted in the cloud$`, deleteCloudDevice)
	sc.Step(`^device "([^"]*)" is moved to app "([^"]*)" of the other gateway$`, moveToOther)
	sc.Step(`^device "([^"]*)" is moved back to app "([^"]*)" of this gateway$`, moveBack)
	sc.Step(`^app "([^"]*)" is removed from the gateway$`, removeApp)
	sc.Step(`^a restart of "([^"]*)" is requested in the cloud$`, requestRestart)

	sc.Step(`^the cloud is unreachable$`, cloudUnreachable)
	sc.Step(`^the cloud is reachable again$`, cloudReachable)
	sc.Step(`^the cloud answers every request with (\d{3})$`, cloudFailsAll)
	sc.Step(`^the supervisor has tried to send status "([^"]*)" of "([^"]*)" to the unreachable cloud$`, triedPatchDuringOutage)
	sc.Step(`^the cloud fails the next (\d+) state requests with (\d{3})$`, cloudFailsState)
	sc.Step(`^the cloud has device "([^"]*)" in app "([^"]*)", managed by this gateway, of type "([^"]*)"$`, cloudHasDevice)
	sc.Step(`^the cloud eventually has device "([^"]*)" with:$`, cloudEventuallyHasDevice)
	sc.Step(`^the cloud eventually has device "([^"]*)", and keeps for (\d+) retry intervals?, with:$`, cloudEventuallyKeepsDevice)
	sc.Step(`^the cloud's device "([^"]*)" has no environment variable "([^"]*)"$`, cloudDeviceLacksEnv)
	sc.Step(`^the cloud eventually received exactly these log lines:$`, cloudReceivedLogs)
	sc.Step(`^the cloud eventually received the log line "([^"]*)" for "([^"]*)" stamped with the time it was sent$`, cloudReceivedStampedLog)
	sc.Step(`^the supervisor revalidated the target state with If-None-Match and got 304$`, revalidatedState)
	sc.Step(`^every request to the cloud carried the gateway's key$`, everyCloudRequestAuthed)
	sc.Step(`^the cloud saw no request it did not understand$`, noBadCloudRequests)
	sc.Step(`^the supervisor looked up device "([^"]*)" in the cloud by uuid$`, lookedUpDevice)

	sc.Step(`^the registry is unreachable$`, registryUnreachable)
	sc.Step(`^the registry is reachable again$`, registryReachable)
	sc.Step(`^the registry serves blobs slowly$`, registrySlow)
	sc.Step(`^the registry fails the next (\d+) blob requests with (\d{3})$`, registryFailsBlobs)
}

func supervisorRunning(ctx context.Context) error {
	st := scenarioOf(ctx)
	st.logf("starting the supervisor")
	err := startVerdict(st.target.Start(ctx, st.env()))
	st.readyAt = time.Now()
	return err
}

func supervisorRestarted(ctx context.Context, how string) error {
	st := scenarioOf(ctx)
	st.logf("supervisor %s, then started again", how)
	st.restartedAt = time.Now()
	var err error
	if how == "killed" {
		err = st.target.Kill()
	} else {
		err = st.target.Stop(ctx)
	}
	if err != nil {
		return err
	}
	// Not starting again, or not getting ready, is a harness failure unless
	// /ping answers otherwise than 200 (startVerdict).
	err = startVerdict(st.target.Start(ctx, st.env()))
	st.readyAt = time.Now()
	return err
}

// startVerdict classifies a failed start: a target that answers GET /ping
// with another status than 200 breaks AUTH-3 (an assertion); any other
// failure to start or get ready is the harness's (a HarnessError).
func startVerdict(err error) error {
	var pr *PingRefusedError
	if errors.As(err, &pr) {
		return err
	}
	return arrange(err)
}

func supervisorRestartedForHooks(ctx context.Context) error {
	return supervisorRestarted(ctx, "stopped")
}

func waitPolls(ctx context.Context, n int) error {
	st := scenarioOf(ctx)
	return ctxtime.Sleep(ctx, time.Duration(n)*st.cfg.Timing.Poll)
}

func fetchedTwiceMore(ctx context.Context) error {
	st := scenarioOf(ctx)
	after := st.world.Cloud.RequestSeq()
	actx, cancel := st.awaitCtx(ctx)
	defer cancel()
	n := 0
	err := st.world.Cloud.Await(actx, func(v *cloud.View) bool {
		n = 0
		for _, r := range v.Requests(after) {
			if r.Route == cloud.RouteState && r.Gateway == st.gateway.UUID && (r.Status == 200 || r.Status == 304) {
				n++
			}
		}
		return n >= 2
	})
	if err != nil {
		return fmt.Errorf("the supervisor fetched its target state %d times, want 2: %w", n, err)
	}
	return nil
}

func outputLacksKey(ctx context.Context) error {
	st := scenarioOf(ctx)
	// The target's output reaches the harness through a pipe copied by
	// another goroutine: give a line written before the last answer half a
	// second to arrive, then look again.
	for i := 0; i < 2; i++ {
		if strings.Contains(st.targetOut.String(), st.apiKey) {
			return errors.New("the supervisor's output contains its API key")
		}
		if i == 0 {
			time.Sleep(500 * time.Millisecond)
		}
	}
	return nil
}

// content reads a cell of a files table: "random N" is N bytes drawn from
// a generator seeded by the path (so the same cell always gives the same
// bytes); anything else is the text itself.
func content(path, cell string) ([]byte, error) {
	if n, ok := strings.CutPrefix(cell, "random "); ok {
		size, err := strconv.Atoi(n)
		if err != nil || size < 0 {
			return nil, fmt.Errorf("content %q: want \"random <bytes>\"", cell)
		}
		h := fnv.New64a()
		h.Write([]byte(path))
		r := mrand.New(mrand.NewPCG(h.Sum64(), uint64(size)))
		b := make([]byte, size)
		for i := range b {
			b[i] = byte(r.Uint32())
		}
		return b, nil
	}
	return []byte(cell), nil
}

// filesTable reads a | path | content | table.
func filesTable(t *godog.Table) (map[string][]byte, error) {
	out := map[string][]byte{}
	for i, row := range t.Rows {
		if i == 0 {
			continue
		}
		if len(row.Cells) != 2 {
			return nil, fmt.Errorf("files table row %d: want | path | content |", i)
		}
		c, err := content(row.Cells[0].Value, row.Cells[1].Value)
		if err != nil {
			return nil, err
		}
		out[row.Cells[0].Value] = c
	}
	return out, nil
}

// layersTable reads a | layer | path | content | table of image paths into
// layers of raw tar entries, written as they are.
func layersTable(t *godog.Table) ([]registry.Layer, error) {
	var layers []registry.Layer
	for i, row := range t.Rows {
		if i == 0 {
			continue
		}
		if len(row.Cells) != 3 {
			return nil, fmt.Errorf("layers table row %d: want | layer | path | content |", i)
		}
		n, err := strconv.Atoi(row.Cells[0].Value)
		if err != nil || n < 1 {
			return nil, fmt.Errorf("layers table row %d: layer %q is not a number from 1", i, row.Cells[0].Value)
		}
		for len(layers) < n {
			layers = append(layers, registry.Layer{})
		}
		name := strings.TrimPrefix(row.Cells[1].Value, "/")
		c, err := content(row.Cells[1].Value, row.Cells[2].Value)
		if err != nil {
			return nil, err
		}
		layers[n-1].Raw = append(layers[n-1].Raw, registry.RawEntry{Name: name, Data: c})
	}
	return layers, nil
}

func (st *scenario) createApp(name string, gateway string) (*appState, error) {
	if _, dup := st.apps[name]; dup {
		return nil, arrange(fmt.Errorf("app %q already exists in this scenario", name))
	}
	a, err := st.world.Cloud.CreateApp(cloud.AppSpec{Name: name, Gateway: gateway})
	if err != nil {
		return nil, arrange(fmt.Errorf("creating app %s: %w", name, err))
	}
	app := &appState{name: a.Name, id: a.ID}
	st.apps[name] = app
	st.logf("app %s is %d", name, a.ID)
	return app, nil
}

func (st *scenario) push(ctx context.Context, app *appState, release string, layers []registry.Layer) error {
	if _, dup := st.releases[release]; dup {
		return arrange(fmt.Errorf("release %q already exists in this scenario", release))
	}
	ref, _, err := st.world.Images.Build(ctx, fmt.Sprintf("apps/%d", app.id), layers...)
	if err != nil {
		return arrange(fmt.Errorf("building the image of release %s: %w", release, err))
	}
	pushed := time.Now()
	r, err := st.world.Cloud.PushRelease(ctx, app.id, cloud.ReleaseSpec{Image: ref})
	if err != nil {
		return arrange(fmt.Errorf("pushing release %s: %w", release, err))
	}
	st.releases[release] = &releaseState{name: release, app: app, commit: r.Commit}
	st.noteTargetChange(pushed)
	st.logf("release %s of %s is commit %s, image %s", release, app.name, r.Commit, ref)
	return nil
}

func appWithFiles(ctx context.Context, name, release string, t *godog.Table) error {
	st := scenarioOf(ctx)
	files, err := filesTable(t)
	if err != nil {
		return err
	}
	a, err := st.createApp(name, st.gateway.UUID)
	if err != nil {
		return err
	}
	return st.push(ctx, a, release, []registry.Layer{{Files: files}})
}

func appWithLayers(ctx context.Context, name, release string, t *godog.Table) error {
	st := scenarioOf(ctx)
	layers, err := layersTable(t)
	if err != nil {
		return err
	}
	a, err := st.createApp(name, st.gateway.UUID)
	if err != nil {
		return err
	}
	return st.push(ctx, a, release, layers)
}

func appWithoutRelease(ctx context.Context, name string) error {
	st := scenarioOf(ctx)
	_, err := st.createApp(name, st.gateway.UUID)
	return err
}

func appOfOtherGateway(ctx context.Context, name string) error {
	st := scenarioOf(ctx)
	if st.other == nil {
		gw, err := st.world.Cloud.CreateGateway(cloud.GatewaySpec{})
		if err != nil {
			return arrange(fmt.Errorf("creating another gateway: %w", err))
		}
		st.other = &gw
	}
	_, err := st.createApp(name, st.other.UUID)
	return err
}

func pushFiles(ctx context.Context, release, appName string, t *godog.Table) error {
	st := scenarioOf(ctx)
	a, err := st.app(appName)
	if err != nil {
		return err
	}
	files, err := filesTable(t)
	if err != nil {
		return err
	}
	return st.push(ctx, a, release, []registry.Layer{{Files: files}})
}

func setAppVar(ctx context.Context, appName, kind, name, value string) error {
	st := scenarioOf(ctx)
	a, err := st.app(appName)
	if err != nil {
		return err
	}
	vars := map[string]string{name: value}
	defer st.noteTargetChange(time.Now())
	if kind == "environment" {
		return arrange(st.world.Cloud.SetAppEnv(a.id, vars))
	}
	return arrange(st.world.Cloud.SetAppConfig(a.id, vars))
}

func setDeviceVar(ctx context.Context, alias, kind, name, value string) error {
	st := scenarioOf(ctx)
	d, err := st.device(alias)
	if err != nil {
		return err
	}
	vars := map[string]string{name: value}
	defer st.noteTargetChange(time.Now())
	if kind == "environment" {
		return arrange(st.world.Cloud.SetDeviceEnv(d.uuid, vars))
	}
	return arrange(st.world.Cloud.SetDeviceConfig(d.uuid, vars))
}

func createCloudDevice(ctx context.Context, alias, appName string) error {
	st := scenarioOf(ctx)
	a, err := st.app(appName)
	if err != nil {
		return err
	}
	d, err := st.world.Cloud.CreateDevice(cloud.DeviceSpec{AppID: a.id, Gateway: st.gateway.UUID})
	if err != nil {
		return arrange(fmt.Errorf("creating device %s in the cloud: %w", alias, err))
	}
	return st.addDevice(alias, d.UUID, d.ID, a)
}

func deleteCloudDevice(ctx context.Context, alias string) error {
	st := scenarioOf(ctx)
	d, err := st.device(alias)
	if err != nil {
		return err
	}
	return arrange(st.world.Cloud.DeleteDevice(d.uuid))
}

func moveToOther(ctx context.Context, alias, appName string) error {
	st := scenarioOf(ctx)
	d, err := st.device(alias)
	if err != nil {
		return err
	}
	a, err := st.app(appName)
	if err != nil {
		return err
	}
	if st.other == nil {
		return arrange(errors.New("no other gateway in this scenario"))
	}
	return arrange(st.world.Cloud.MoveDevice(d.uuid, a.id, st.other.UUID))
}

func moveBack(ctx context.Context, alias, appName string) error {
	st := scenarioOf(ctx)
	d, err := st.device(alias)
	if err != nil {
		return err
	}
	a, err := st.app(appName)
	if err != nil {
		return err
	}
	return arrange(st.world.Cloud.MoveDevice(d.uuid, a.id, st.gateway.UUID))
}

func removeApp(ctx context.Context, appName string) error {
	st := scenarioOf(ctx)
	a, err := st.app(appName)
	if err != nil {
		return err
	}
	return arrange(st.world.Cloud.DeleteApp(a.id))
}

func requestRestart(ctx context.Context, alias string) error {
	st := scenarioOf(ctx)
	d, err := st.device(alias)
	if err != nil {
		return err
	}
	n, err := st.world.Cloud.RestartDevice(d.uuid)
	st.logf("restart of %s requested (counter %d)", alias, n)
	return arrange(err)
}

func cloudUnreachable(ctx context.Context) error {
	return arrange(scenarioOf(ctx).world.Cloud.Outage(cloud.OutageClose))
}

func cloudReachable(ctx context.Context) error {
	scenarioOf(ctx).world.Cloud.ResetFaults()
	return nil
}

func cloudFailsAll(ctx context.Context, status int) error {
	return arrange(scenarioOf(ctx).world.Cloud.FailNext(cloud.RouteAll, 1<<30, status))
}

// triedPatchDuringOutage waits until a PATCH of the device carrying status
// met the outage, so that what the supervisor does with an update the cloud
// could not take is what the scenario then sees (a supervisor that tried an
// update only once the cloud was back would hide one that it drops).
func triedPatchDuringOutage(ctx context.Context, status, alias string) error {
	st := scenarioOf(ctx)
	d, err := st.device(alias)
	if err != nil {
		return err
	}
	path := fmt.Sprintf("/v6/device(%d)", d.cloudID)
	actx, cancel := st.awaitCtx(ctx)
	defer cancel()
	err = st.world.Cloud.Await(actx, func(v *cloud.View) bool {
		for _, r := range v.Requests(0) {
			if r.Route != cloud.RoutePatch || r.Fault != "outage" || !strings.HasPrefix(r.Path, path) {
				continue
			}
			var p struct {
				Status string `json:"status"`
			}
			if json.Unmarshal(r.Body, &p) == nil && p.Status == status {
				return true
			}
		}
		return false
	})
	if err != nil {
		return fmt.Errorf("no PATCH of %s with status %q reached the unreachable cloud: %w", alias, status, err)
	}
	return nil
}

func cloudFailsState(ctx context.Context, n, status int) error {
	return arrange(scenarioOf(ctx).world.Cloud.FailNext(cloud.RouteState, n, status))
}

func cloudHasDevice(ctx context.Context, alias, appName, deviceType string) error {
	st := scenarioOf(ctx)
	d, err := st.device(alias)
	if err != nil {
		return err
	}
	a, err := st.app(appName)
	if err != nil {
		return err
	}
	info, err := st.world.Cloud.Device(d.uuid)
	if err != nil {
		return err
	}
	var probs []string
	if info.AppID != a.id {
		probs = append(probs, fmt.Sprintf("got app %d, want %d", info.AppID, a.id))
	}
	if info.Gateway != st.gateway.UUID {
		probs = append(probs, fmt.Sprintf("got managing gateway %q, want %q", info.Gateway, st.gateway.UUID))
	}
	if info.DeviceType != deviceType {
		probs = append(probs, fmt.Sprintf("got device type %q, want %q", info.DeviceType, deviceType))
	}
	if info.Origin != cloud.OriginProvisioned {
		probs = append(probs, fmt.Sprintf("got origin %q, want %q", info.Origin, cloud.OriginProvisioned))
	}
	if len(probs) > 0 {
		return fmt.Errorf("cloud device %s: %s", alias, strings.Join(probs, "; "))
	}
	return nil
}

func cloudEventuallyHasDevice(ctx context.Context, alias string, t *godog.Table) error {
	return cloudDeviceReaches(ctx, alias, 0, t)
}

// cloudEventuallyKeepsDevice is cloudEventuallyHasDevice, then the cloud's
// device must keep matching for n retry intervals: a later delivery of an
// older report (updates delivered out of order) would undo the match.
func cloudEventuallyKeepsDevice(ctx context.Context, alias string, n int, t *godog.Table) error {
	return cloudDeviceReaches(ctx, alias, n, t)
}

// cloudDeviceReaches waits until the cloud's view of the device matches t,
// then, for keep retry intervals, until it stops matching (an error).
func cloudDeviceReaches(ctx context.Context, alias string, keep int, t *godog.Table) error {
	st := scenarioOf(ctx)
	d, err := st.device(alias)
	if err != nil {
		return err
	}
	want, order, err := st.fieldTable(t)
	if err != nil {
		return err
	}
	fields := func(dev cloudapi.Device) map[string]any {
		b, _ := json.Marshal(dev)
		var m map[string]any
		_ = json.Unmarshal(b, &m)
		return m
	}
	diff := func(dev cloudapi.Device) []string {
		m := fields(dev)
		var diffs []string
		for _, k := range order {
			if !reflect.DeepEqual(m[k], want[k]) {
				diffs = append(diffs, fmt.Sprintf("%s: got %v, want %v", k, m[k], want[k]))
			}
		}
		return diffs
	}
	matches := func(dev cloudapi.Device) bool { return len(diff(dev)) == 0 }
	actx, cancel := st.awaitCtx(ctx)
	defer cancel()
	got, err := st.world.Cloud.AwaitDevice(actx, d.uuid, matches)
	if err != nil && ctx.Err() == nil && actx.Err() == nil {
		return fmt.Errorf("cloud device %s: %w", alias, err)
	}
	if err != nil {
		return fmt.Errorf("cloud device %s, within %s: %s", alias, st.cfg.Timing.Await, strings.Join(diff(got), "; "))
	}
	if keep == 0 {
		return nil
	}
	window := time.Duration(keep) * st.cfg.Timing.Retry
	wctx, wcancel := context.WithTimeout(ctx, window)
	defer wcancel()
	changed, err := st.world.Cloud.AwaitDevice(wctx, d.uuid, func(dev cloudapi.Device) bool { return !matches(dev) })
	if err == nil {
		return fmt.Errorf("cloud device %s matched, then changed within %s: %s", alias, window, strings.Join(diff(changed), "; "))
	}
	if ctx.Err() != nil {
		return ctx.Err()
	}
	return nil
}

func cloudDeviceLacksEnv(ctx context.Context, alias, name string) error {
	st := scenarioOf(ctx)
	d, err := st.device(alias)
	if err != nil {
		return err
	}
	info, err := st.world.Cloud.Device(d.uuid)
	if err != nil {
		return err
	}
	if v, ok := info.Environment[name]; ok {
		return fmt.Errorf("cloud device %s: got environment variable %s=%q, want none", alias, name, v)
	}
	return nil
}

func cloudReceivedLogs(ctx context.Context, t *godog.Table) error {
	st := scenarioOf(ctx)
	rows, err := st.logTable(t)
	if err != nil {
		return err
	}
	want := map[string][]cloudapi.LogLine{}
	var order []string
	for _, r := range rows {
		if _, ok := want[r.device.uuid]; !ok {
			order = append(order, r.device.uuid)
		}
		want[r.device.uuid] = append(want[r.device.uuid],
			cloudapi.LogLine{UUID: r.device.uuid, Message: r.message, Timestamp: r.timestamp, IsSystem: r.isSystem})
	}
	for _, uuid := range order {
		actx, cancel := st.awaitCtx(ctx)
		got, err := st.world.Cloud.AwaitLogs(actx, uuid, len(want[uuid]))
		cancel()
		if err != nil {
			return err
		}
		if !reflect.DeepEqual(got, want[uuid]) {
			return fmt.Errorf("log lines of %s in the cloud: got %+v, want exactly %+v", uuid, got, want[uuid])
		}
	}
	return nil
}

func nowMillis() int64 { return time.Now().UnixMilli() }

func cloudReceivedStampedLog(ctx context.Context, msg, alias string) error {
	st := scenarioOf(ctx)
	d, err := st.device(alias)
	if err != nil {
		return err
	}
	sent, ok := st.logSent[msg]
	if !ok {
		return fmt.Errorf("no log line %q was sent in this scenario", msg)
	}
	var line *cloudapi.LogLine
	err = st.waitFor(ctx, func() error {
		lines, err := st.world.Cloud.Logs(d.uuid)
		if err != nil {
			return err
		}
		for _, l := range lines {
			if l.Message == msg {
				line = &l
				return nil
			}
		}
		return fmt.Errorf("the cloud has %d log lines of %s, none %q", len(lines), alias, msg)
	})
	if err != nil {
		return err
	}
	if line.Timestamp < sent[0] || line.Timestamp > sent[1] {
		return fmt.Errorf("log line %q: got timestamp %d, want the receive time in ms, between %d and %d", msg, line.Timestamp, sent[0], sent[1])
	}
	return nil
}

func (st *scenario) cloudRequests() []cloud.Request { return st.world.Cloud.Requests(0) }

func revalidatedState(ctx context.Context) error {
	st := scenarioOf(ctx)
	statuses := map[int]int{}
	for _, r := range st.cloudRequests() {
		if r.Route == cloud.RouteState {
			statuses[r.Status]++
			if r.Status == 304 && r.Gateway == st.gateway.UUID {
				return nil
			}
		}
	}
	return fmt.Errorf("no target state request answered 304 (statuses seen: %v): the supervisor does not send If-None-Match with the ETag", statuses)
}

func everyCloudRequestAuthed(ctx context.Context) error {
	st := scenarioOf(ctx)
	var bad []string
	for _, r := range st.cloudRequests() {
		// Requests outside the contract's calls are not authenticated by
		// the fake (CONTRACT.md "Latitude": extra requests are allowed).
		if r.Route != "unknown" && r.Gateway != st.gateway.UUID {
			bad = append(bad, fmt.Sprintf("%s %s (status %d)", r.Method, r.Path, r.Status))
		}
	}
	if len(bad) > 0 {
		return fmt.Errorf("requests to the cloud without the gateway's key: %s", strings.Join(bad, ", "))
	}
	return nil
}

// contractCloudPath matches the paths of the contract's five cloud calls: a
// request to one of them that the fake routes nowhere (another method) is
// a malformed call, not an extra request.
var contractCloudPath = regexp.MustCompile(`^/device/v2/[^/]+/(state|log-stream)$|^/v6/device(\(.*\))?$`)

func noBadCloudRequests(ctx context.Context) error {
	st := scenarioOf(ctx)
	var bad []string
	for _, r := range st.cloudRequests() {
		// Requests outside the five calls of the contract are allowed,
		// their 404s included (CONTRACT.md "Latitude"); a request to one of
		// the five that the cloud could not take still fails.
		if r.Fault != "" {
			continue
		}
		if r.Route == "unknown" && contractCloudPath.MatchString(strings.SplitN(r.Path, "?", 2)[0]) ||
			r.Route != "unknown" && (r.Status == 400 || r.Status == 404 || r.Status == 405) {
			bad = append(bad, fmt.Sprintf("%s %s → %d", r.Method, r.Path, r.Status))
		}
	}
	if len(bad) > 0 {
		sort.Strings(bad)
		return fmt.Errorf("the cloud did not understand: %s", strings.Join(bad, ", "))
	}
	return nil
}

func lookedUpDevice(ctx context.Context, alias string) error {
	st := scenarioOf(ctx)
	d, err := st.device(alias)
	if err != nil {
		return err
	}
	for _, r := range st.cloudRequests() {
		if r.Route == cloud.RouteGet && strings.Contains(r.Path, d.uuid) && r.Status == 200 {
			return nil
		}
	}
	return fmt.Errorf("no GET /v6/device?$filter=uuid eq '%s' reached the cloud", d.uuid)
}

func registryUnreachable(ctx context.Context) error {
	r := scenarioOf(ctx).world.Registry
	r.Fail(registry.KindManifest, 503)
	r.Fail(registry.KindBlob, 503)
	return nil
}

func registryReachable(ctx context.Context) error {
	scenarioOf(ctx).world.Registry.Heal()
	return nil
}

func registrySlow(ctx context.Context) error {
	scenarioOf(ctx).world.Registry.Throttle(200_000)
	return nil
}

func registryFailsBlobs(ctx context.Context, n, status int) error {
	scenarioOf(ctx).world.Registry.FailNext(registry.KindBlob, n, status)
	return nil
}
