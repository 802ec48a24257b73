package cloud

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"time"

	cloudapi "github.com/depharness/depharness/api/cloud"
)

// ControlClient is a Go client of the HTTP control API (/control/v1/) of a
// fake cloud running elsewhere. Its methods mirror the Server's control and
// fault methods.
type ControlClient struct {
	// BaseURL is the fake cloud's address, e.g. http://127.0.0.1:48480.
	BaseURL string
	// Token is the admin token.
	Token string
	// HTTPClient, if nil, is a client with a 60 s timeout.
	HTTPClient *http.Client
}

// ControlError is a control API answer with an error status. It matches
// ErrInvalid (400), ErrNotFound (404), ErrConflict (409) with errors.Is.
type ControlError struct {
	Status  int
	Message string
}

func (e *ControlError) Error() string {
	return fmt.Sprintf("fake cloud control API: HTTP %d: %s", e.Status, e.Message)
}

// Unwrap maps the status to the control API's sentinel errors.
func (e *ControlError) Unwrap() error {
	for _, s := range sentinelStatuses {
		if s.status == e.Status {
			return s.err
		}
	}
	return nil
}

var defaultControlHTTP = &http.Client{Timeout: 60 * time.Second}

// do sends a control request with an optional JSON body and decodes a JSON
// answer into out (if not nil).
func (c *ControlClient) do(ctx context.Context, method, path string, in, out any) error {
	var body io.Reader
	if in != nil {
		b, err := json.Marshal(in)
		if err != nil {
			return err
		}
		body = bytes.NewReader(b)
	}
	req, err := http.NewRequestWithContext(ctx, method, strings.TrimRight(c.BaseURL, "/")+ControlPrefix+path, body)
	if err != nil {
		return err
	}
	req.Header.Set("Authorization", "Bearer "+c.Token)
	if in != nil {
		req.Header.Set("Content-Type", "application/json")
	}
	hc := c.HTTPClient
	if hc == nil {
		hc = defaultControlHTTP
	}
	resp, err := hc.Do(req)
	if err != nil {
		return fmt.Errorf("fake cloud control API: %w", err)
	}
	defer resp.Body.Close()
	if resp.StatusCode >= 300 {
		b, _ := io.ReadAll(io.LimitReader(resp.Body, 4096))
		return &ControlError{Status: resp.StatusCode, Message: strings.TrimSpace(string(b))}
	}
	if out == nil {
		_, _ = io.Copy(io.Discard, resp.Body)
		return nil
	}
	if err := json.NewDecoder(resp.Body).Decode(out); err != nil {
		return fmt.Errorf("fake cloud control API: decoding the answer of %s %s: %w", method, path, err)
	}
	return nil
}

// Info returns the seed and counts of the model.
func (c *ControlClient) Info(ctx context.Context) (Info, error) {
	var out Info
	return out, c.do(ctx, http.MethodGet, "info", nil, &out)
}

// CreateGateway creates a gateway.
func (c *ControlClient) CreateGateway(ctx context.Context, spec GatewaySpec) (Gateway, error) {
	var out Gateway
	return out, c.do(ctx, http.MethodPost, "gateways", spec, &out)
}

// Gateways lists the gateways.
func (c *ControlClient) Gateways(ctx context.Context) ([]Gateway, error) {
	var out []Gateway
	return out, c.do(ctx, http.MethodGet, "gateways", nil, &out)
}

// State returns the target state of gateway uuid.
func (c *ControlClient) State(ctx context.Context, uuid string) (cloudapi.TargetState, error) {
	var out cloudapi.TargetState
	return out, c.do(ctx, http.MethodGet, "gateways/"+url.PathEscape(uuid)+"/state", nil, &out)
}

// CreateApp creates a dependent app.
func (c *ControlClient) CreateApp(ctx context.Context, spec AppSpec) (App, error) {
	var out App
	return out, c.do(ctx, http.MethodPost, "apps", spec, &out)
}

// Apps lists the dependent apps.
func (c *ControlClient) Apps(ctx context.Context) ([]App, error) {
	var out []App
	return out, c.do(ctx, http.MethodGet, "apps", nil, &out)
}

// DeleteApp removes a dependent app and its devices.
func (c *ControlClient) DeleteApp(ctx context.Context, id int64) error {
	return c.do(ctx, http.MethodDelete, "apps/"+strconv.FormatInt(id, 10), nil, nil)
}

// PushRelease pushes a release of app id.
func (c *ControlClient) PushRelease(ctx context.Context, id int64, spec ReleaseSpec) (Release, error) {
	var out Release
	in := ReleaseRequest{Layers: spec.Layers, Image: spec.Image, Commit: spec.Commit}
	return out, c.do(ctx, http.MethodPost, "apps/"+strconv.FormatInt(id, 10)+"/releases", in, &out)
}

// UpdateVars changes the variables of an app or a device.
func (c *ControlClient) UpdateVars(ctx context.Context, u VarsUpdate) error {
	in := VarsRequest{Set: u.Set, Unset: u.Unset}
	switch {
	case u.App != 0 && u.Device == "":
		return c.do(ctx, http.MethodPatch, "apps/"+strconv.FormatInt(u.App, 10)+"/vars/"+url.PathEscape(string(u.Kind)), in, nil)
	case u.App == 0 && u.Device != "":
		return c.do(ctx, http.MethodPatch, "devices/"+url.PathEscape(u.Device)+"/vars/"+url.PathEscape(string(u.Kind)), in, nil)
	default:
		return invalidf("give exactly one of app and device")
	}
}

// CreateDevice creates a device as if provisioned elsewhere.
func (c *ControlClient) CreateDevice(ctx context.Context, spec DeviceSpec) (DeviceInfo, error) {
	var out DeviceInfo
	return out, c.do(ctx, http.MethodPost, "devices", spec, &out)
}

// Devices lists the cloud's view of the devices filter selects.
func (c *ControlClient) Devices(ctx context.Context, filter DeviceFilter) ([]DeviceInfo, error) {
	q := url.Values{}
	if filter.Gateway != "" {
		q.Set("gateway", filter.Gateway)
	}
	if filter.AppID != 0 {
		q.Set("app", strconv.FormatInt(filter.AppID, 10))
	}
	p := "devices"
	if len(q) > 0 {
		p += "?" + q.Encode()
	}
	var out []DeviceInfo
	return out, c.do(ctx, http.MethodGet, p, nil, &out)
}

// Device returns the cloud's view of device uuid.
func (c *ControlClient) Device(ctx context.Context, uuid string) (DeviceInfo, error) {
	var out DeviceInfo
	return out, c.do(ctx, http.MethodGet, "devices/"+url.PathEscape(uuid), nil, &out)
}

// DeleteDevice removes device uuid.
func (c *ControlClient) DeleteDevice(ctx context.Context, uuid string) error {
	return c.do(ctx, http.MethodDelete, "devices/"+url.PathEscape(uuid), nil, nil)
}

// MoveDevice moves device uuid to app appID (gateway may be "").
func (c *ControlClient) MoveDevice(ctx context.Context, uuid string, appID int64, gateway string) error {
	return c.do(ctx, http.MethodPost, "devices/"+url.PathEscape(uuid)+"/move", MoveRequest{AppID: appID, Gateway: gateway}, nil)
}

// RestartDevice requests a restart of device uuid and returns the counter.
func (c *ControlClient) RestartDevice(ctx context.Context, uuid string) (int64, error) {
	var out RestartResponse
	return out.Restart, c.do(ctx, http.MethodPost, "devices/"+url.PathEscape(uuid)+"/restart", nil, &out)
}

// Logs returns the retained log lines of device uuid.
func (c *ControlClient) Logs(ctx context.Context, uuid string) ([]cloudapi.LogLine, error) {
	var out []cloudapi.LogLine
	return out, c.do(ctx, http.MethodGet, "devices/"+url.PathEscape(uuid)+"/logs", nil, &out)
}

// Requests returns the journal entries after seq.
func (c *ControlClient) Requests(ctx context.Context, after uint64) ([]Request, error) {
	var out []Request
	return out, c.do(ctx, http.MethodGet, "requests?after="+strconv.FormatUint(after, 10), nil, &out)
}

// Faults returns the fault knobs.
func (c *ControlClient) Faults(ctx context.Context) (FaultState, error) {
	var out FaultState
	return out, c.do(ctx, http.MethodGet, "faults", nil, &out)
}

// ResetFaults removes every fault knob.
func (c *ControlClient) ResetFaults(ctx context.Context) error {
	return c.do(ctx, http.MethodDelete, "faults", nil, nil)
}

// Delay delays requests of route by d plus up to jitter.
func (c *ControlClient) Delay(ctx context.Context, route string, d, jitter time.Duration) error {
	return c.do(ctx, http.MethodPost, "faults/delay", DelayRequest{Route: route, Delay: d.String(), Jitter: jitter.String()}, nil)
}

// Undelay removes the delay of route.
func (c *ControlClient) Undelay(ctx context.Context, route string) error {
	return c.do(ctx, http.MethodDelete, "faults/delay/"+url.PathEscape(route), nil, nil)
}

// FailNext fails the next n requests of route with status.
func (c *ControlClient) FailNext(ctx context.Context, route string, n, status int) error {
	return c.do(ctx, http.MethodPost, "faults/fail-next", FailNextRequest{Route: route, N: n, Status: status}, nil)
}

// Unfail removes what is left of a FailNext of route.
func (c *ControlClient) Unfail(ctx context.Context, route string) error {
	return c.do(ctx, http.MethodDelete, "faults/fail-next/"+url.PathEscape(route), nil, nil)
}

// Outage starts an outage.
func (c *ControlClient) Outage(ctx context.Context, mode OutageMode) error {
	return c.do(ctx, http.MethodPost, "faults/outage", OutageRequest{Mode: mode}, nil)
}

// EndOutage ends an outage.
func (c *ControlClient) EndOutage(ctx context.Context) error {
	return c.do(ctx, http.MethodDelete, "faults/outage", nil, nil)
}

// Hang holds requests of route until Unhang.
func (c *ControlClient) Hang(ctx context.Context, route string) error {
	return c.do(ctx, http.MethodPost, "faults/hang", HangRequest{Route: route}, nil)
}

// Unhang releases requests of route held by Hang.
func (c *ControlClient) Unhang(ctx context.Context, route string) error {
	return c.do(ctx, http.MethodDelete, "faults/hang/"+url.PathEscape(route), nil, nil)
}

// RefuseLogLines makes the log stream refuse requests holding a line with
// message, until UnrefuseLogLines.
func (c *ControlClient) RefuseLogLines(ctx context.Context, message string) error {
	return c.do(ctx, http.MethodPost, "faults/refuse-log-lines", RefuseLogLinesRequest{Message: message}, nil)
}

// UnrefuseLogLines removes every RefuseLogLines.
func (c *ControlClient) UnrefuseLogLines(ctx context.Context) error {
	return c.do(ctx, http.MethodDelete, "faults/refuse-log-lines", nil, nil)
}

// DropAnswers makes the next n requests of route be handled and then
// dropped unanswered; n = 0 removes the knob.
func (c *ControlClient) DropAnswers(ctx context.Context, route string, n int) error {
	return c.do(ctx, http.MethodPost, "faults/drop-answers", DropAnswersRequest{Route: route, N: n}, nil)
}

// Undrop removes what is left of a DropAnswers of route.
func (c *ControlClient) Undrop(ctx context.Context, route string) error {
	return c.do(ctx, http.MethodDelete, "faults/drop-answers/"+url.PathEscape(route), nil, nil)
}

// DelayAnswers makes the next n requests of route be handled at once and
// answered d later; n = 0 removes the knob.
func (c *ControlClient) DelayAnswers(ctx context.Context, route string, d time.Duration, n int) error {
	return c.do(ctx, http.MethodPost, "faults/delay-answers", DelayAnswersRequest{Route: route, Delay: d.String(), N: n}, nil)
}

// UndelayAnswers removes what is left of a DelayAnswers of route.
func (c *ControlClient) UndelayAnswers(ctx context.Context, route string) error {
	return c.do(ctx, http.MethodDelete, "faults/delay-answers/"+url.PathEscape(route), nil, nil)
}
