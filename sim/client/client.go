// Package client is a typed Go client of the balena Supervisor's
// dependent-device API (CONTRACT.md): what a gateway developer imports to
// list dependent apps, download their assets, provision dependent devices,
// read and update them and send their logs.
//
// It speaks HTTP only and depends on nothing of this project but the wire
// types of api; it must never import the reference proxy's other
// packages, so that it works the same against any supervisor.
package client

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"math/rand/v2"
	"net"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/depharness/depharness/api"
	"github.com/depharness/depharness/internal/backoff"
)

// KeyMode says how the API key is sent.
type KeyMode int

const (
	// KeyInQuery sends the key as ?apikey=KEY (the seed's examples).
	KeyInQuery KeyMode = iota
	// KeyInHeader sends it as Authorization: Bearer KEY.
	KeyInHeader
)

// Options configure a Client.
type Options struct {
	// BaseURL is the supervisor's address, e.g. http://127.0.0.1:48484
	// (BALENA_SUPERVISOR_ADDRESS). Required.
	BaseURL string
	// APIKey is BALENA_SUPERVISOR_API_KEY; empty sends no key.
	APIKey string
	// KeyMode, if zero, is KeyInQuery.
	KeyMode KeyMode
	// HTTPClient, if nil, is a client whose transport keeps up to
	// MaxIdleConnsPerHost idle connections to the supervisor, so that a
	// fleet of devices reuses connections instead of exhausting ports.
	HTTPClient *http.Client
	// MaxIdleConnsPerHost, if zero, is 512. Ignored with HTTPClient.
	MaxIdleConnsPerHost int
	// Retry, if its MaxAttempts is zero, means one attempt: no retry.
	Retry Retry
}

// Retry is the client's retry policy for failures that are safe to repeat:
// connection failures and 503 answers (for POST /v1/devices, only a refused
// connection or a 503, since a lost answer may have provisioned a device).
// The wait before attempt n+1 is a random duration in [d/2, d] where
// d = min(Base·2ⁿ⁻¹, Max) (exponential backoff with jitter).
type Retry struct {
	// MaxAttempts is the number of attempts in all; 0 or 1 means no retry,
	// a negative value retries until the context is done.
	MaxAttempts int
	// Base, if zero, is 100ms.
	Base time.Duration
	// Max, if zero, is 10s.
	Max time.Duration
	// Rand, if nil, is a generator seeded from the clock. It is used under
	// the client's lock, so one generator may serve concurrent requests.
	Rand *rand.Rand
}

// Client is a supervisor API client. It is safe for concurrent use.
type Client struct {
	base *url.URL
	// prefix is base as a string and query the key's query string (or
	// empty): every request's URL is prefix + path + query.
	prefix, query string
	key           string
	mode          KeyMode
	http          *http.Client
	retry         Retry
	randMu        sync.Mutex
}

// New returns a client for the supervisor at opts.BaseURL.
func New(opts Options) (*Client, error) {
	if opts.BaseURL == "" {
		return nil, errors.New("client: BaseURL is required")
	}
	u, err := url.Parse(strings.TrimRight(opts.BaseURL, "/"))
	if err != nil {
		return nil, fmt.Errorf("client: BaseURL: %w", err)
	}
	if u.Scheme != "http" && u.Scheme != "https" {
		return nil, fmt.Errorf("client: BaseURL %q: scheme must be http or https", opts.BaseURL)
	}
	hc := opts.HTTPClient
	if hc == nil {
		n := opts.MaxIdleConnsPerHost
		if n <= 0 {
			n = 512
		}
		tr := http.DefaultTransport.(*http.Transport).Clone()
		tr.MaxIdleConns = 0 // no overall limit
		tr.MaxIdleConnsPerHost = n
		hc = &http.Client{Transport: tr}
	}
	r := opts.Retry
	if r.Base <= 0 {
		r.Base = 100 * time.Millisecond
	}
	if r.Max <= 0 {
		r.Max = 10 * time.Second
	}
	if r.Rand == nil {
		now := uint64(time.Now().UnixNano())
		r.Rand = rand.New(rand.NewPCG(now, now>>1))
	}
	c := &Client{base: u, prefix: u.String(), key: opts.APIKey, mode: opts.KeyMode, http: hc, retry: r}
	if c.key != "" && c.mode == KeyInQuery {
		c.query = "?" + url.Values{"apikey": {c.key}}.Encode()
	}
	return c, nil
}

// Error is a response with an unexpected status. Body is the (plain text)
// error body, at most 64 KiB of it.
type Error struct {
	Method     string
	Path       string
	StatusCode int
	Body       string
}

func (e *Error) Error() string {
	return fmt.Sprintf("%s %s: %d %s: %s", e.Method, e.Path, e.StatusCode, http.StatusText(e.StatusCode), e.Body)
}

// StatusCode returns the status of an *Error in err's chain, or 0.
func StatusCode(err error) int {
	var e *Error
	if errors.As(err, &e) {
		return e.StatusCode
	}
	return 0
}

// IsNotFound reports whether err is a 404 answer.
func IsNotFound(err error) bool { return StatusCode(err) == http.StatusNotFound }

// IsGone reports whether err is a 410 answer (a device awaiting its delete
// acknowledgement).
func IsGone(err error) bool { return StatusCode(err) == http.StatusGone }

// IsUnauthorized reports whether err is a 401 answer.
func IsUnauthorized(err error) bool { return StatusCode(err) == http.StatusUnauthorized }

// IsBadRequest reports whether err is a 400 answer.
func IsBadRequest(err error) bool { return StatusCode(err) == http.StatusBadRequest }

// IsUnavailable reports whether err is a 503 answer.
func IsUnavailable(err error) bool { return StatusCode(err) == http.StatusServiceUnavailable }

// Ping calls GET /ping (no key needed) and succeeds on 200.
func (c *Client) Ping(ctx context.Context) error {
	resp, err := c.do(ctx, http.MethodGet, "/ping", nil, nil, true)
	if err != nil {
		return err
	}
	return drain(resp)
}

// Apps returns GET /v1/dependent-apps.
func (c *Client) Apps(ctx context.Context) ([]api.App, error) {
	var apps []api.App
	return apps, c.doJSON(ctx, http.MethodGet, "/v1/dependent-apps", nil, &apps, true)
}

// AssetRequest holds the optional conditions of an assets download.
type AssetRequest struct {
	// Range, if set, is sent as the Range header ("bytes=0-99").
	Range string
	// IfNoneMatch, if set, is sent as If-None-Match (an ETag of an earlier
	// answer).
	IfNoneMatch string
}

// Asset is an assets download. The caller must close it. A 304 answer to
// IfNoneMatch gives NotModified and an empty body.
type Asset struct {
	io.ReadCloser
	// StatusCode is 200, 206 (Range) or 304 (NotModified).
	StatusCode  int
	NotModified bool
	ContentType string
	ETag        string
	// ContentLength is -1 when unknown.
	ContentLength int64
	ContentRange  string
}

// Assets streams GET /v1/dependent-apps/{appID}/assets/{commit}: the tar of
// the release's /assets folder. req may be nil.
func (c *Client) Assets(ctx context.Context, appID int64, commit string, req *AssetRequest) (*Asset, error) {
	h := http.Header{}
	if req != nil {
		if req.Range != "" {
			h.Set("Range", req.Range)
		}
		if req.IfNoneMatch != "" {
			h.Set("If-None-Match", req.IfNoneMatch)
		}
	}
	p := "/v1/dependent-apps/" + strconv.FormatInt(appID, 10) + "/assets/" + url.PathEscape(commit)
	resp, err := c.do(ctx, http.MethodGet, p, h, nil, true)
	if err != nil {
		return nil, err
	}
	a := &Asset{
		ReadCloser:    resp.Body,
		StatusCode:    resp.StatusCode,
		ContentType:   resp.Header.Get("Content-Type"),
		ETag:          resp.Header.Get("ETag"),
		ContentLength: resp.ContentLength,
		ContentRange:  resp.Header.Get("Content-Range"),
	}
	if resp.StatusCode == http.StatusNotModified {
		a.NotModified = true
	}
	return a, nil
}

// Devices returns GET /v1/devices.
func (c *Client) Devices(ctx context.Context) ([]api.Device, error) {
	var ds []api.Device
	return ds, c.doJSON(ctx, http.MethodGet, "/v1/devices", nil, &ds, true)
}

// Provision calls POST /v1/devices for a new dependent device of app
// appID. deviceType, if empty, is left to the supervisor (generic-amd64).
func (c *Client) Provision(ctx context.Context, appID int64, deviceType string) (*api.ProvisionResponse, error) {
	var p api.ProvisionResponse
	err := c.doJSON(ctx, http.MethodPost, "/v1/devices", api.ProvisionRequest{AppID: appID, DeviceType: deviceType}, &p, false)
	if err != nil {
		return nil, err
	}
	return &p, nil
}

// Device returns GET /v1/devices/{uuid}.
func (c *Client) Device(ctx context.Context, uuid string) (*api.Device, error) {
	var d api.Device
	if err := c.doJSON(ctx, http.MethodGet, "/v1/devices/"+url.PathEscape(uuid), nil, &d, true); err != nil {
		return nil, err
	}
	return &d, nil
}

// UpdateDevice calls PUT /v1/devices/{uuid} and returns the updated device.
// Nil fields of u are not sent; a non-nil empty Environment or Config is
// sent as {} (it clears the variables).
func (c *Client) UpdateDevice(ctx context.Context, uuid string, u api.DeviceUpdate) (*api.Device, error) {
	var d api.Device
	if err := c.doJSON(ctx, http.MethodPut, "/v1/devices/"+url.PathEscape(uuid), u, &d, true); err != nil {
		return nil, err
	}
	return &d, nil
}

// Report calls PUT /v1/devices/{uuid} as UpdateDevice does, and reads the
// answer without decoding it: for a gateway that reports its devices'
// state and has no use for the device the supervisor answers with.
func (c *Client) Report(ctx context.Context, uuid string, u api.DeviceUpdate) error {
	return c.doJSON(ctx, http.MethodPut, "/v1/devices/"+url.PathEscape(uuid), u, nil, true)
}

// Log calls POST /v1/devices/{uuid}/logs with one log line.
func (c *Client) Log(ctx context.Context, uuid string, e api.LogEntry) error {
	body, err := json.Marshal(e)
	if err != nil {
		return err
	}
	resp, err := c.do(ctx, http.MethodPost, "/v1/devices/"+url.PathEscape(uuid)+"/logs", jsonHeader(), body, true)
	if err != nil {
		return err
	}
	return drain(resp)
}

// jsonHeaders are the headers of a JSON body; once copies them into each
// request, which nothing changes.
var jsonHeaders = http.Header{"Content-Type": {"application/json"}}

func jsonHeader() http.Header { return jsonHeaders }

// doJSON sends in (if not nil) as JSON and decodes a 2xx answer into out.
func (c *Client) doJSON(ctx context.Context, method, path string, in, out any, idempotent bool) error {
	var body []byte
	var h http.Header
	if in != nil {
		var err error
		if body, err = json.Marshal(in); err != nil {
			return err
		}
		h = jsonHeader()
	}
	resp, err := c.do(ctx, method, path, h, body, idempotent)
	if err != nil {
		return err
	}
	defer drain(resp)
	if out == nil {
		return nil
	}
	if err := json.NewDecoder(resp.Body).Decode(out); err != nil {
		return fmt.Errorf("%s %s: decoding answer: %w", method, path, err)
	}
	return nil
}

// do sends a request, retrying as c.retry allows, and returns a response
// with a 2xx or 304 status; any other status is an *Error.
func (c *Client) do(ctx context.Context, method, path string, h http.Header, body []byte, idempotent bool) (*http.Response, error) {
	for attempt := 1; ; attempt++ {
		resp, err := c.once(ctx, method, path, h, body)
		if err == nil {
			return resp, nil
		}
		if ctx.Err() != nil || !c.retryable(err, idempotent) ||
			(c.retry.MaxAttempts >= 0 && attempt >= c.retry.MaxAttempts) {
			return nil, err
		}
		t := time.NewTimer(c.backoff(attempt))
		select {
		case <-ctx.Done():
			t.Stop()
			return nil, err
		case <-t.C:
		}
	}
}

func (c *Client) retryable(err error, idempotent bool) bool {
	if IsUnavailable(err) {
		return true
	}
	if StatusCode(err) != 0 {
		return false
	}
	if idempotent {
		return true
	}
	var op *net.OpError
	return errors.As(err, &op) && op.Op == "dial"
}

func (c *Client) backoff(attempt int) time.Duration {
	c.randMu.Lock()
	defer c.randMu.Unlock()
	return backoff.Jittered(c.retry.Base, c.retry.Max, attempt, c.retry.Rand)
}

func (c *Client) once(ctx context.Context, method, path string, h http.Header, body []byte) (*http.Response, error) {
	// path's variable segments are escaped by the callers (url.PathEscape).
	u := c.prefix + path + c.query
	var rd io.Reader
	if body != nil {
		rd = bytes.NewReader(body)
	}
	req, err := http.NewRequestWithContext(ctx, method, u, rd)
	if err != nil {
		return nil, err
	}
	for k, v := range h {
		req.Header[k] = v
	}
	if c.key != "" && c.mode == KeyInHeader {
		req.Header.Set("Authorization", "Bearer "+c.key)
	}
	resp, err := c.http.Do(req)
	if err != nil {
		return nil, c.redact(err, path)
	}
	if resp.StatusCode/100 == 2 || resp.StatusCode == http.StatusNotModified {
		return resp, nil
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(io.LimitReader(resp.Body, 64<<10))
	_, _ = io.Copy(io.Discard, io.LimitReader(resp.Body, 1<<20))
	return nil, &Error{Method: method, Path: path, StatusCode: resp.StatusCode, Body: strings.TrimSpace(string(b))}
}

// redact keeps the API key out of a transport error: Go's *url.Error
// carries the whole request URL, and the key rides in its query in
// KeyInQuery mode, so a logged "connection refused" would print it.
func (c *Client) redact(err error, path string) error {
	var ue *url.Error
	if c.key == "" || !errors.As(err, &ue) {
		return err
	}
	u := c.prefix + path
	if c.mode == KeyInQuery {
		u += "?apikey=REDACTED"
	}
	ue.URL = u
	return err
}

// drain reads and closes a response body so the connection can be reused.
func drain(resp *http.Response) error {
	_, err := io.Copy(io.Discard, io.LimitReader(resp.Body, 1<<20))
	resp.Body.Close()
	return err
}
