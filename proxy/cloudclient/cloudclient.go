// Package cloudclient is the reference proxy's HTTP client of the cloud
// protocol (CONTRACT.md, "Cloud protocol"): the dependent target state with
// ETag, provisioning, device PATCH, device lookup by uuid and the log stream.
//
// Every call carries the gateway's key as "Authorization: Bearer <key>"; the
// key never appears in errors, logs or metrics. Failures are typed so callers
// can tell a cloud that refuses (4xx, IsRejected) from a cloud that cannot be
// reached or fails (transport error, 5xx, 429, IsUnavailable).
//
// It depends on api/cloud and the Prometheus client only; it must not
// import other proxy packages, fakes or the simulator.
package cloudclient

import (
	"bytes"
	"cmp"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/http/httptrace"
	"net/url"
	"strconv"
	"strings"
	"sync/atomic"
	"time"

	"github.com/depharness/depharness/api/cloud"
	"github.com/depharness/depharness/internal/defaults"
	"github.com/depharness/depharness/proxy/violation"
	"github.com/prometheus/client_golang/prometheus"
)

// Call names, used as the "call" label of the metrics and in errors.
const (
	CallState     = "state"
	CallProvision = "provision"
	CallPatch     = "patch"
	CallGetDevice = "get_device"
	CallLogs      = "logs"
	// CallExtra is a request outside the contract's calls (allowance
	// extra-cloud-calls only).
	CallExtra = "extra"
)

// DefaultMaxStateBytes is the default bound on a target state's body
// (Options.MaxStateBytes): about 650,000 dependent devices.
const DefaultMaxStateBytes = 64 << 20

// Limits on the other response bodies read from the cloud.
const (
	maxDeviceBytes = 4 << 20
	maxErrorBody   = 512
)

// Options configure New. BaseURL and GatewayUUID are required.
type Options struct {
	// BaseURL is the cloud's API_ENDPOINT, e.g. http://127.0.0.1:8000.
	BaseURL string
	// GatewayUUID is the gateway's own device uuid (DEVICE_UUID).
	GatewayUUID string
	// GatewayID is the gateway's cloud device id (DEVICE_ID), sent as
	// is_managed_by__device when provisioning.
	GatewayID int64
	// APIKey is the gateway's cloud key (DEVICE_API_KEY).
	APIKey string
	// HTTPClient, if nil, is DefaultHTTPClient(Timeout).
	HTTPClient *http.Client
	// Timeout bounds one cloud request, from dial to the last byte of the
	// answer, when HTTPClient is nil (default DefaultTimeout).
	Timeout time.Duration
	// Metrics, if nil, are built with NewMetrics(Registerer).
	Metrics *Metrics
	// Registerer, if nil, leaves the metrics unregistered.
	Registerer prometheus.Registerer
	// Logger, if nil, discards.
	Logger *slog.Logger
	// Now, if nil, is time.Now. It gives registered_at when provisioning.
	Now func() time.Time
	// Violations enables deliberate contract violations (self-check only);
	// nil enables none.
	Violations violation.Set
	// MaxStateBytes bounds a target state's body (TARGET_STATE_MAX_BYTES);
	// a larger one fails the poll. Zero means DefaultMaxStateBytes.
	MaxStateBytes int64
}

// Client speaks the cloud protocol. It is safe for concurrent use.
type Client struct {
	base    string
	gwUUID  string
	gwID    int64
	auth    string
	hc      *http.Client
	metrics *Metrics
	log     *slog.Logger
	now     func() time.Time
	v       violation.Set
	// maxState bounds a target state's body (Options.MaxStateBytes).
	maxState int64
	// states decodes the target states of GetState (state.go).
	states stateDecoder
}

// New returns a client for opts.
func New(opts Options) (*Client, error) {
	u, err := url.Parse(opts.BaseURL)
	if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
		return nil, fmt.Errorf("cloudclient: base URL %q: want http(s)://host[:port][/path]", opts.BaseURL)
	}
	if opts.GatewayUUID == "" {
		return nil, errors.New("cloudclient: gateway uuid is required")
	}
	c := &Client{
		base:    strings.TrimRight(opts.BaseURL, "/"),
		gwUUID:  opts.GatewayUUID,
		gwID:    opts.GatewayID,
		auth:    "Bearer " + opts.APIKey,
		hc:      opts.HTTPClient,
		metrics: opts.Metrics,
		log:     opts.Logger,
		now:     opts.Now,
		v:       opts.Violations,
	}
	if opts.MaxStateBytes < 0 {
		return nil, fmt.Errorf("cloudclient: MaxStateBytes %d is negative", opts.MaxStateBytes)
	}
	c.maxState = cmp.Or(opts.MaxStateBytes, DefaultMaxStateBytes)
	if c.hc == nil {
		c.hc = DefaultHTTPClient(opts.Timeout)
		c.hc.Transport.(*http.Transport).DisableKeepAlives = c.v.Allows("no-keepalive")
	}
	if c.metrics == nil {
		if c.metrics, err = NewMetrics(opts.Registerer); err != nil {
			return nil, err
		}
	}
	if c.log == nil {
		c.log = slog.New(slog.DiscardHandler)
	}
	if c.now == nil {
		c.now = time.Now
	}
	return c, nil
}

// DefaultTimeout bounds one cloud request when Options.Timeout is zero.
const DefaultTimeout = 30 * time.Second

// DefaultHTTPClient is the client New uses when Options.HTTPClient is nil:
// timeout (DefaultTimeout if zero or less) bounds a whole request, and the
// dial and TLS handshake take at most 5 s of it.
func DefaultHTTPClient(timeout time.Duration) *http.Client {
	defaults.Positive(&timeout, DefaultTimeout)
	step := min(5*time.Second, timeout)
	t := http.DefaultTransport.(*http.Transport).Clone()
	t.DialContext = abortingDial((&net.Dialer{Timeout: step, KeepAlive: 30 * time.Second}).DialContext)
	t.TLSHandshakeTimeout = step
	t.ResponseHeaderTimeout = timeout
	// As many kept connections as the API has provisioning requests in
	// flight from a busy gateway: fewer, and each request beyond them
	// dials a connection and resets it afterwards.
	t.MaxIdleConnsPerHost = 64
	return &http.Client{Transport: t, Timeout: timeout}
}

// abortingDial wraps dial so that every TCP connection it makes is closed
// with a reset (SO_LINGER 0) rather than an orderly shutdown. The
// transport closes a connection when it gives up on a request (timeout,
// cancel): with a reset, the kernel discards the request bytes the cloud
// has not yet acknowledged instead of retransmitting them for minutes, so
// a request abandoned while the cloud was unreachable cannot reach it
// later, after newer requests (DEV-LOG-2, DEV-PUT-6: a device's older
// report or log lines applied after its newer ones).
func abortingDial(dial func(ctx context.Context, network, addr string) (net.Conn, error)) func(ctx context.Context, network, addr string) (net.Conn, error) {
	return func(ctx context.Context, network, addr string) (net.Conn, error) {
		c, err := dial(ctx, network, addr)
		if tc, ok := c.(*net.TCPConn); ok && err == nil {
			_ = tc.SetLinger(0)
		}
		return c, err
	}
}

// StatusError is a cloud answer with an HTTP status of 300 or more (other
// than 304 to a conditional state request).
type StatusError struct {
	Call string // one of the Call constants
	Code int    // HTTP status
	Body string // start of the response body, for diagnosis
}

func (e *StatusError) Error() string {
	if e.Body == "" {
		return fmt.Sprintf("cloud %s: HTTP %d", e.Call, e.Code)
	}
	return fmt.Sprintf("cloud %s: HTTP %d: %s", e.Call, e.Code, e.Body)
}

// TransportError is a failure to get an answer from the cloud at all:
// connection refused, timeout, reset, or a cancelled context.
type TransportError struct {
	Call string
	Err  error
	// Sent is true when the whole request had been written to the cloud
	// before the failure: the cloud may have taken it (OutcomeUnknown).
	Sent bool
}

// OutcomeUnknown reports whether err is a request the cloud may have taken
// without the client knowing: written whole, then no answer (timeout,
// connection lost). A request that was never sent whole (connection
// refused, no route, DNS) has not been taken.
func OutcomeUnknown(err error) bool {
	var te *TransportError
	return errors.As(err, &te) && te.Sent
}

func (e *TransportError) Error() string { return fmt.Sprintf("cloud %s: %v", e.Call, e.Err) }
func (e *TransportError) Unwrap() error { return e.Err }

// ProtocolError is a successful status whose body does not decode as the
// protocol says. It counts as unavailable: the cloud is misbehaving.
type ProtocolError struct {
	Call string
	Err  error
}

func (e *ProtocolError) Error() string {
	return fmt.Sprintf("cloud %s: bad response: %v", e.Call, e.Err)
}
func (e *ProtocolError) Unwrap() error { return e.Err }

// IsUnavailable reports whether err means the cloud could not be reached or
// failed: a transport error, a bad response, or HTTP 5xx, 429 or 408. Such a
// call may succeed when retried later.
func IsUnavailable(err error) bool {
	if err == nil {
		return false
	}
	var se *StatusError
	if errors.As(err, &se) {
		return se.Code >= 500 || se.Code == http.StatusTooManyRequests || se.Code == http.StatusRequestTimeout
	}
	return errors.As(err, new(*TransportError)) || errors.As(err, new(*ProtocolError))
}

// IsRejected reports whether err is the cloud refusing the request (HTTP 4xx
// other than 429 and 408): retrying the same request will not help.
func IsRejected(err error) bool {
	var se *StatusError
	if !errors.As(err, &se) {
		return false
	}
	return se.Code >= 400 && se.Code < 500 && se.Code != http.StatusTooManyRequests && se.Code != http.StatusRequestTimeout
}

// GetState fetches the gateway's target state. With a non-empty etag it
// asks If-None-Match; a 304 answer gives notModified and newETag == etag.
// The maps of the state's devices may be shared with those of states
// returned earlier: callers must not modify them.
func (c *Client) GetState(ctx context.Context, etag string) (state *cloud.TargetState, newETag string, notModified bool, err error) {
	path := fmt.Sprintf(cloud.PathStateFmt, url.PathEscape(c.gwUUID))
	hdr := http.Header{}
	if etag != "" {
		hdr.Set("If-None-Match", etag)
	}
	resp, err := c.do(ctx, CallState, http.MethodGet, path, hdr, nil)
	if err != nil {
		var se *StatusError
		if etag != "" && errors.As(err, &se) && se.Code == http.StatusNotModified {
			return nil, etag, true, nil
		}
		return nil, "", false, err
	}
	defer closeBody(resp)
	st, err := c.states.decode(resp.Body, c.maxState)
	if err != nil {
		return nil, "", false, &ProtocolError{Call: CallState, Err: err}
	}
	if c.v.Allows("extra-cloud-calls") {
		c.extraCall(ctx, "/config")
		for id := range st.Dependent.Apps {
			c.extraCall(ctx, "/v6/application("+url.PathEscape(id)+")")
		}
	}
	return st, resp.Header.Get("ETag"), false, nil
}

// extraCall makes a request outside the cloud protocol of the contract, as
// another supervisor may (allowance extra-cloud-calls), and ignores its
// outcome (the fake cloud answers 404). GetState makes them after the state
// request, which polls start to start do not wait for.
func (c *Client) extraCall(ctx context.Context, path string) {
	if resp, err := c.do(ctx, CallExtra, http.MethodGet, path, nil, nil); err == nil {
		closeBody(resp)
	}
}

// Provision registers a new dependent device of app appID, managed by the
// gateway, under uuid. A refusal (e.g. appID not a dependent app of the
// gateway) is a *StatusError with a 4xx code.
func (c *Client) Provision(ctx context.Context, appID int64, deviceType, uuid string) (cloud.Device, error) {
	req := cloud.ProvisionRequest{
		BelongsToApplication: appID,
		DeviceType:           deviceType,
		IsManagedByDevice:    c.gwID,
		UUID:                 uuid,
		RegisteredAt:         c.now().Unix(),
	}
	if c.v.On("cloud-prov-unmanaged") {
		req.IsManagedByDevice = 0
	}
	var v any = req
	if c.v.On("cloud-prov-no-registered-at") {
		v = map[string]any{"belongs_to__application": req.BelongsToApplication, "device_type": req.DeviceType,
			"is_managed_by__device": req.IsManagedByDevice, "uuid": req.UUID}
	}
	body, err := json.Marshal(v)
	if err != nil {
		return cloud.Device{}, err
	}
	hdr := http.Header{"Content-Type": {"application/json"}}
	resp, err := c.do(ctx, CallProvision, http.MethodPost, cloud.PathDevices, hdr, body)
	if err != nil {
		return cloud.Device{}, err
	}
	defer closeBody(resp)
	var d cloud.Device
	if err := decodeJSON(resp.Body, maxDeviceBytes, &d); err != nil {
		return cloud.Device{}, &ProtocolError{Call: CallProvision, Err: err}
	}
	if d.ID <= 0 {
		return cloud.Device{}, &ProtocolError{Call: CallProvision, Err: fmt.Errorf("device id %d", d.ID)}
	}
	return d, nil
}

// PatchDevice sends patch to the cloud device id.
func (c *Client) PatchDevice(ctx context.Context, id int64, patch cloud.DevicePatch) error {
	if c.v.On("cloud-patch-drop-offline") && patch.IsOnline != nil && !*patch.IsOnline {
		patch.IsOnline = nil
		if patch == (cloud.DevicePatch{}) {
			return nil
		}
	}
	var v any = patch
	if c.v.On("cloud-patch-commit-field") && patch.IsOnCommit != nil {
		v = map[string]any{"status": patch.Status, "is_online": patch.IsOnline, "commit": *patch.IsOnCommit}
	}
	if c.v.On("cloud-patch-environment") {
		m := map[string]any{"environment": map[string]string{}}
		if patch.Status != nil {
			m["status"] = *patch.Status
		}
		if patch.IsOnline != nil {
			m["is_online"] = *patch.IsOnline
		}
		if patch.IsOnCommit != nil {
			m["is_on__commit"] = *patch.IsOnCommit
		}
		v = m
	}
	body, err := json.Marshal(v)
	if err != nil {
		return err
	}
	hdr := http.Header{"Content-Type": {"application/json"}}
	resp, err := c.do(ctx, CallPatch, http.MethodPatch, fmt.Sprintf(cloud.PathDeviceFmt, id), hdr, body)
	if err != nil {
		return err
	}
	closeBody(resp)
	return nil
}

// GetDeviceByUUID looks a device up by uuid. found is false when the cloud
// knows no such device.
func (c *Client) GetDeviceByUUID(ctx context.Context, uuid string) (dev cloud.Device, found bool, err error) {
	q := url.Values{"$filter": {"uuid eq '" + strings.ReplaceAll(uuid, "'", "''") + "'"}}
	path := cloud.PathDevices + "?" + strings.ReplaceAll(q.Encode(), "+", "%20")
	resp, err := c.do(ctx, CallGetDevice, http.MethodGet, path, nil, nil)
	if err != nil {
		return cloud.Device{}, false, err
	}
	defer closeBody(resp)
	var list cloud.DeviceList
	if err := decodeJSON(resp.Body, maxDeviceBytes, &list); err != nil {
		return cloud.Device{}, false, &ProtocolError{Call: CallGetDevice, Err: err}
	}
	for _, d := range list.D {
		if d.UUID == uuid {
			return d, true, nil
		}
	}
	return cloud.Device{}, false, nil
}

// SendLogs posts lines to the gateway's log stream as newline-delimited JSON,
// in order, in one request. An empty batch sends nothing.
func (c *Client) SendLogs(ctx context.Context, lines []cloud.LogLine) error {
	if len(lines) == 0 {
		return nil
	}
	var buf bytes.Buffer
	enc := json.NewEncoder(&buf) // Encode appends '\n' after each line
	enc.SetEscapeHTML(false)
	if c.v.On("cloud-logs-json-array") {
		if err := enc.Encode(lines); err != nil {
			return err
		}
	} else {
		for _, l := range lines {
			var v any = l
			if c.v.On("cloud-logs-omit-false") {
				v = struct {
					UUID      string `json:"uuid"`
					Message   string `json:"message"`
					Timestamp int64  `json:"timestamp"`
					IsSystem  bool   `json:"isSystem,omitempty"`
				}(l)
			}
			if err := enc.Encode(v); err != nil {
				return err
			}
		}
	}
	path := fmt.Sprintf(cloud.PathLogStreamFmt, url.PathEscape(c.gwUUID))
	hdr := http.Header{"Content-Type": {"application/x-ndjson"}}
	resp, err := c.do(ctx, CallLogs, http.MethodPost, path, hdr, buf.Bytes())
	if err != nil {
		return err
	}
	closeBody(resp)
	return nil
}

// do sends one request and returns the response for a 2xx status; any other
// status is a *StatusError (body read and closed), a transport failure a
// *TransportError. It records the metrics of the call.
func (c *Client) do(ctx context.Context, call, method, path string, hdr http.Header, body []byte) (*http.Response, error) {
	var rd io.Reader
	if body != nil {
		rd = bytes.NewReader(body)
	}
	var sent atomic.Bool
	ctx = httptrace.WithClientTrace(ctx, &httptrace.ClientTrace{
		WroteRequest: func(i httptrace.WroteRequestInfo) { sent.Store(i.Err == nil) },
	})
	req, err := http.NewRequestWithContext(ctx, method, c.base+path, rd)
	if err != nil {
		return nil, fmt.Errorf("cloud %s: %w", call, err)
	}
	for k, v := range hdr {
		req.Header[k] = v
	}
	req.Header.Set("Authorization", c.auth)
	req.Header.Set("Accept", "application/json")
	start := time.Now()
	resp, err := c.hc.Do(req)
	code := "error"
	if err == nil {
		code = strconv.Itoa(resp.StatusCode)
	}
	c.metrics.requests.Observe(code, time.Since(start), call)
	if err != nil {
		err = &TransportError{Call: call, Err: redactURL(err), Sent: sent.Load()}
		c.log.Debug("cloud request failed", "call", call, "method", method, "err", err)
		return nil, err
	}
	if resp.StatusCode >= 200 && resp.StatusCode < 300 {
		return resp, nil
	}
	b, _ := io.ReadAll(io.LimitReader(resp.Body, maxErrorBody))
	closeBody(resp)
	se := &StatusError{Call: call, Code: resp.StatusCode, Body: strings.TrimSpace(string(b))}
	if resp.StatusCode != http.StatusNotModified {
		c.log.Debug("cloud request refused", "call", call, "method", method, "code", resp.StatusCode)
	}
	return nil, se
}

// redactURL strips the *url.Error wrapper's URL (which holds only the base
// URL and path, but keep errors short and uniform) and keeps its cause.
func redactURL(err error) error {
	var ue *url.Error
	if errors.As(err, &ue) {
		return fmt.Errorf("%s %s: %w", ue.Op, stripQuery(ue.URL), ue.Err)
	}
	return err
}

func stripQuery(u string) string {
	if i := strings.IndexByte(u, '?'); i >= 0 {
		return u[:i]
	}
	return u
}

// decodeJSON decodes one JSON value of at most limit bytes from r.
func decodeJSON(r io.Reader, limit int64, v any) error {
	lr := &io.LimitedReader{R: r, N: limit + 1}
	if err := json.NewDecoder(lr).Decode(v); err != nil {
		if lr.N <= 0 {
			return fmt.Errorf("body larger than %d bytes", limit)
		}
		return err
	}
	return nil
}

// closeBody drains a little of the body (so the connection can be reused)
// and closes it.
func closeBody(resp *http.Response) {
	io.Copy(io.Discard, io.LimitReader(resp.Body, 64<<10))
	resp.Body.Close()
}
