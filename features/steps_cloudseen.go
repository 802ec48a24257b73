package features

import (
	"context"
	"encoding/json"
	"fmt"
	"reflect"
	"regexp"
	"sort"
	"strings"
	"time"

	"github.com/cucumber/godog"
	cloudapi "github.com/depharness/depharness/api/cloud"
	"github.com/depharness/depharness/fakes/cloud"
)

// Steps that check what the fake cloud saw: its devices, the PATCHes and log
// lines it received, and every request it was sent.

func cloudHasDevice(ctx context.Context, alias, appName, deviceType string) error {
	st, d, a, err := deviceAndOf(ctx, alias, (*scenario).app, appName)
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
	st, d, want, order, err := deviceFieldsOf(ctx, alias, t)
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
	var changed cloudapi.Device
	seen, err := st.seenWithin(ctx, window, func(wctx context.Context) (err error) {
		changed, err = st.world.Cloud.AwaitDevice(wctx, d.uuid, func(dev cloudapi.Device) bool { return !matches(dev) })
		return err
	})
	if seen {
		return fmt.Errorf("cloud device %s matched, then changed within %s: %s", alias, window, strings.Join(diff(changed), "; "))
	}
	return err
}

func cloudDeviceLacksEnv(ctx context.Context, alias, name string) error {
	st, d, err := deviceOf(ctx, alias)
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
	st, d, err := deviceOf(ctx, alias)
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
	st, d, err := deviceOf(ctx, alias)
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
