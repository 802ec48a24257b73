package features

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"reflect"
	"sort"
	"strings"
	"time"

	"github.com/cucumber/godog"

	"github.com/depharness/depharness/fakes/cloud"
	"github.com/depharness/depharness/internal/ctxtime"
)

// Steps that judge the cloud calls from the raw bodies the fake cloud
// journaled (CLOUD-PATCH, DEV-PUT-4, CLOUD-LOGS), so that what the fake's
// lenient decoder would ignore (an extra field) or what leaves no trace in
// its model (a value equal to the one it had) is still seen.

func registerCloudBodySteps(sc stepper) {
	sc.Step(stepExpr(`^the cloud eventually received PATCHes of "([^"]*)" carrying:$`), cloudReceivedPatchFields)
	sc.Step(stepExpr(`^every provisioning request the cloud received carries belongs_to__application, device_type, is_managed_by__device, uuid and registered_at$`), everyProvisionWellFormed)
	sc.Step(stepExpr(`^every PATCH the cloud received carries only status, is_online and is_on__commit, of their types$`), everyPatchWellFormed)
	sc.Step(stepExpr(`^the cloud eventually received the log line "([^"]*)" for "([^"]*)"$`), cloudReceivedLogLine)
	sc.Step(stepExpr(`^every log stream request the cloud received is newline-delimited JSON of uuid, message, timestamp and isSystem of this gateway's devices$`), everyLogStreamWellFormed)
	sc.Step(stepExpr(`^the cloud refuses every log stream request holding the line "([^"]*)"$`), cloudRefusesLogLine)
	sc.Step(stepExpr(`^the cloud eventually received exactly these log lines, and no more within (\d+) retry intervals:$`), cloudReceivedLogsAndNoMore)
}

// patchFields are the fields of CLOUD-PATCH and the check of each value.
var patchFields = map[string]func(any) bool{
	"status":        func(v any) bool { s, ok := v.(string); return ok && s != "" },
	"is_online":     func(v any) bool { _, ok := v.(bool); return ok },
	"is_on__commit": func(v any) bool { s, ok := v.(string); return ok && s != "" },
}

// decodeObject decodes a JSON object body (numbers as float64, like the
// scenario's tables).
func decodeObject(b []byte) (map[string]any, error) {
	var m map[string]any
	dec := json.NewDecoder(bytes.NewReader(b))
	if err := dec.Decode(&m); err != nil {
		return nil, err
	}
	if m == nil {
		return nil, errors.New("null, not an object")
	}
	if dec.More() {
		return nil, errors.New("data after the JSON object")
	}
	return m, nil
}

// answered reports whether the fake itself handled r (no fault answered
// or dropped it before its body was read).
func answered(r cloud.Request) bool { return r.Fault == "" && r.Status != 0 }

func (st *scenario) patchesOf(d *deviceState) []cloud.Request {
	path := fmt.Sprintf("/v6/device(%d)", d.cloudID)
	var out []cloud.Request
	for _, r := range st.world.Cloud.Requests(0) {
		if r.Route == cloud.RoutePatch && answered(r) && strings.HasPrefix(r.Path, path) {
			out = append(out, r)
		}
	}
	return out
}

func cloudReceivedPatchFields(ctx context.Context, alias string, t *godog.Table) error {
	st, d, want, order, err := deviceFieldsOf(ctx, alias, t)
	if err != nil {
		return err
	}
	var missing []string
	err = st.waitFor(ctx, func() error {
		seen := map[string][]any{}
		for _, r := range st.patchesOf(d) {
			m, err := decodeObject(r.Body)
			if err != nil || r.Status != 200 {
				continue
			}
			for k, v := range m {
				seen[k] = append(seen[k], v)
			}
		}
		missing = missing[:0]
		for _, k := range order {
			found := false
			for _, v := range seen[k] {
				found = found || reflect.DeepEqual(v, want[k])
			}
			if !found {
				missing = append(missing, fmt.Sprintf("%s %s (sent: %s)", k, compactJSON(want[k]), compactJSON(seen[k])))
			}
		}
		if len(missing) > 0 {
			return fmt.Errorf("no PATCH of device %s (cloud id %d) taken by the cloud carried %s", alias, d.cloudID, strings.Join(missing, ", "))
		}
		return nil
	})
	return err
}

// patchProblems returns the ways a PATCH body differs from CLOUD-PATCH: a
// JSON object of any of status, is_online and is_on__commit, of their
// types, and no other field.
func patchProblems(body []byte) []string {
	m, err := decodeObject(body)
	if err != nil {
		return []string{fmt.Sprintf("not a JSON object: %v", err)}
	}
	var probs []string
	if len(m) == 0 {
		probs = append(probs, "no field (want any of status, is_online, is_on__commit)")
	}
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	for _, k := range keys {
		ok, known := patchFields[k]
		switch {
		case !known:
			probs = append(probs, fmt.Sprintf("field %s (want only status, is_online, is_on__commit)", k))
		case !ok(m[k]):
			probs = append(probs, fmt.Sprintf("field %s: got %s %s", k, jsonKind(m[k]), compactJSON(m[k])))
		}
	}
	return probs
}

func everyPatchWellFormed(ctx context.Context) error {
	return scenarioOf(ctx).everyBodyWellFormed(cloud.RoutePatch, "PATCH", "PATCH of a device", patchProblems)
}

// everyBodyWellFormed checks, with problems, the body of every request of
// route that the cloud answered; it fails if there are problems, or if
// there was no such request (what names one).
func (st *scenario) everyBodyWellFormed(route, method, what string, problems func([]byte) []string) error {
	var probs []string
	n := 0
	for _, r := range st.world.Cloud.Requests(0) {
		if r.Route != route || !answered(r) {
			continue
		}
		n++
		where := fmt.Sprintf("%s %s %s", method, r.Path, bodyPreview(r.Body))
		if !r.WholeBody() {
			probs = append(probs, fmt.Sprintf("%s: body of %d bytes, more than the journal keeps", where, r.BodySize))
			continue
		}
		for _, p := range problems(r.Body) {
			probs = append(probs, where+": "+p)
		}
	}
	if n == 0 {
		return errors.New("the cloud received no " + what)
	}
	if len(probs) > 0 {
		return errors.New(strings.Join(probs, "\n"))
	}
	return nil
}

// provisionProblems returns the ways a provisioning body differs from
// CLOUD-PROV: a JSON object with belongs_to__application (a positive
// integer), device_type (text), is_managed_by__device (the calling
// gateway's device id), uuid (32 hex characters) and registered_at (a
// number); other fields are left alone.
func provisionProblems(body []byte, gatewayID int64) []string {
	m, err := decodeObject(body)
	if err != nil {
		return []string{fmt.Sprintf("not a JSON object: %v", err)}
	}
	var probs []string
	if v, ok := m["belongs_to__application"].(float64); !ok || v <= 0 || v != float64(int64(v)) {
		probs = append(probs, fmt.Sprintf("belongs_to__application: got %s, want a positive integer", compactJSON(m["belongs_to__application"])))
	}
	if v, ok := m["device_type"].(string); !ok || v == "" {
		probs = append(probs, fmt.Sprintf("device_type: got %s, want text", compactJSON(m["device_type"])))
	}
	if v, ok := m["is_managed_by__device"].(float64); !ok || int64(v) != gatewayID {
		probs = append(probs, fmt.Sprintf("is_managed_by__device: got %s, want the gateway's device id %d", compactJSON(m["is_managed_by__device"]), gatewayID))
	}
	if v, ok := m["uuid"].(string); !ok || !uuidRe.MatchString(v) {
		probs = append(probs, fmt.Sprintf("uuid: got %s, want 32 lowercase hex characters", compactJSON(m["uuid"])))
	}
	if _, ok := m["registered_at"].(float64); !ok {
		probs = append(probs, fmt.Sprintf("registered_at: got %s, want a number", compactJSON(m["registered_at"])))
	}
	return probs
}

func everyProvisionWellFormed(ctx context.Context) error {
	st := scenarioOf(ctx)
	return st.everyBodyWellFormed(cloud.RouteProvision, "POST", "provisioning request", func(body []byte) []string {
		return provisionProblems(body, st.gateway.DeviceID)
	})
}

func cloudReceivedLogLine(ctx context.Context, msg, alias string) error {
	st, d, err := deviceOf(ctx, alias)
	if err != nil {
		return err
	}
	return st.waitFor(ctx, func() error {
		lines, err := st.world.Cloud.Logs(d.uuid)
		if err != nil {
			return err
		}
		for _, l := range lines {
			if l.Message == msg {
				return nil
			}
		}
		var streams []string
		for _, r := range st.world.Cloud.Requests(0) {
			if r.Route == cloud.RouteLogs {
				streams = append(streams, fmt.Sprintf("%d %s", r.Status, preview(r.Body)))
			}
		}
		return fmt.Errorf("the cloud holds %d log lines of %s (uuid %s), none %q; log stream requests: [%s]", len(lines), alias, d.uuid, msg, strings.Join(streams, ", "))
	})
}

// logLineKinds are the members of a CLOUD-LOGS line and their JSON kinds.
var logLineKinds = map[string]string{"uuid": "string", "message": "string", "timestamp": "number", "isSystem": "boolean"}

// logStreamProblems returns the ways a log-stream body differs from
// CLOUD-LOGS: one JSON object per line ("\n"-separated; a "\r" before it
// and empty lines are tolerated) with uuid (one of devices), message,
// timestamp and isSystem of their types.
func logStreamProblems(body []byte, devices map[string]bool) []string {
	var probs []string
	for i, line := range bytes.Split(body, []byte("\n")) {
		line = bytes.TrimSuffix(line, []byte("\r"))
		if len(bytes.TrimSpace(line)) == 0 {
			continue
		}
		where := fmt.Sprintf("line %d %s", i+1, bodyPreview(line))
		m, err := decodeObject(line)
		if err != nil {
			probs = append(probs, fmt.Sprintf("%s: not one JSON object per line: %v", where, err))
			continue
		}
		for _, k := range []string{"uuid", "message", "timestamp", "isSystem"} {
			v, ok := m[k]
			got := jsonKind(v)
			if got == "integer" {
				got = "number"
			}
			switch {
			case !ok:
				probs = append(probs, fmt.Sprintf("%s: no %s", where, k))
			case got != logLineKinds[k]:
				probs = append(probs, fmt.Sprintf("%s: %s: got %s, want a %s", where, k, jsonKind(v), logLineKinds[k]))
			}
		}
		if u, ok := m["uuid"].(string); ok && !devices[u] {
			probs = append(probs, fmt.Sprintf("%s: uuid %s is not a dependent device of this scenario (the line's uuid is the dependent device's)", where, u))
		}
	}
	return probs
}

// bodyPreview shows the start of a journaled body in a message.
func bodyPreview(b []byte) string {
	if len(b) > 200 {
		return fmt.Sprintf("%q…", b[:200])
	}
	return fmt.Sprintf("%q", b)
}

func everyLogStreamWellFormed(ctx context.Context) error {
	st := scenarioOf(ctx)
	// The gateway's own lines, if a supervisor sends them, are no fault.
	devices := map[string]bool{st.gateway.UUID: true}
	for _, d := range st.devices {
		devices[d.uuid] = true
	}
	var probs []string
	n := 0
	for _, r := range st.world.Cloud.Requests(0) {
		if r.Route != cloud.RouteLogs || !answered(r) {
			continue
		}
		n++
		body := r.Body
		if !r.WholeBody() {
			// Judge the whole lines the journal kept.
			i := bytes.LastIndexByte(body, '\n')
			body = body[:i+1]
		}
		for _, p := range logStreamProblems(body, devices) {
			probs = append(probs, fmt.Sprintf("POST %s %s", r.Path, p))
		}
	}
	if n == 0 {
		return errors.New("the cloud received no log stream request")
	}
	if len(probs) > 0 {
		sort.Strings(probs)
		return errors.New(strings.Join(probs, "\n"))
	}
	return nil
}

func cloudRefusesLogLine(ctx context.Context, msg string) error {
	scenarioOf(ctx).world.Cloud.RefuseLogLines(msg)
	return nil
}

// cloudReceivedLogsAndNoMore is "the cloud eventually received exactly
// these log lines", then the cloud must receive no further line of those
// devices for n retry intervals: a batch sent again after the cloud took it
// (DEV-LOG-2, exactly once) shows as a line too many.
func cloudReceivedLogsAndNoMore(ctx context.Context, n int, t *godog.Table) error {
	if err := cloudReceivedLogs(ctx, t); err != nil {
		return err
	}
	st := scenarioOf(ctx)
	rows, err := st.logTable(t)
	if err != nil {
		return err
	}
	want := map[string]int{}
	for _, r := range rows {
		want[r.device.uuid]++
	}
	window := time.Duration(n) * st.cfg.Timing.Retry
	if err := st.idle(ctx, func() error { return ctxtime.Sleep(ctx, window) }); err != nil {
		return err
	}
	var probs []string
	for uuid, k := range want {
		lines, err := st.world.Cloud.Logs(uuid)
		if err != nil {
			return err
		}
		if len(lines) != k {
			probs = append(probs, fmt.Sprintf("device %s: got %d log lines %+v, want exactly %d", uuid, len(lines), lines, k))
		}
	}
	if len(probs) > 0 {
		sort.Strings(probs)
		return fmt.Errorf("within %s after the lines arrived: %s", window, strings.Join(probs, "; "))
	}
	return nil
}
