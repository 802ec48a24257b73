// Package httpapi is the reference proxy's supervisor HTTP API for dependent
// apps and devices (CONTRACT.md "General", "Dependent applications",
// "Dependent devices"): authentication, handlers, one error type with one
// writer, and request metrics.
//
// It reads and writes the proxy's state through proxy/store, provisions
// through a Cloud, serves asset tars through an Assets, and never talks to
// the cloud otherwise: device reports and log lines go to the store's outbox,
// which proxy/outbox delivers. It must not import proxy/sync, proxy/hooks,
// proxy/outbox, the fakes or the simulator.
package httpapi

import (
	"context"
	"crypto/rand"
	"crypto/sha256"
	"crypto/subtle"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"path"
	"runtime/debug"
	"strings"
	"time"

	"github.com/depharness/depharness/api"
	"github.com/depharness/depharness/api/cloud"
	"github.com/depharness/depharness/internal/httpserver"
	"github.com/depharness/depharness/proxy/store"
	"github.com/depharness/depharness/proxy/violation"
	"github.com/prometheus/client_golang/prometheus"
)

// Cloud provisions dependent devices in the cloud. *cloudclient.Client
// implements it. A refusal must be recognised by cloudclient.IsRejected
// (a *cloudclient.StatusError with a 4xx code); anything else is taken as
// the cloud being unavailable.
type Cloud interface {
	Provision(ctx context.Context, appID int64, deviceType, uuid string) (cloud.Device, error)
}

// Assets serves the assets tar of an app's commit. *assets.Cache implements
// it. image is the registry reference of that commit's image when the store
// knows it ("" otherwise). If it fails before writing anything it returns an
// error and the API answers 503.
type Assets interface {
	Serve(w http.ResponseWriter, r *http.Request, appID int64, commit, image string) error
}

// Options configure New. Store, Cloud, Assets and APIKey are required.
type Options struct {
	Store  *store.Store
	Cloud  Cloud
	Assets Assets
	// APIKey is BALENA_SUPERVISOR_API_KEY: every route but GET /ping needs it.
	APIKey string
	// OnProvisioned, if set, is called after a device was provisioned and
	// stored (e.g. to poll the target state early).
	OnProvisioned func()
	// OnDeviceReported, if set, is called after a PUT was stored, with the
	// device's uuid and whether the report set its commit, environment or
	// config (which the hooks it is owed depend on; status and is_online do
	// not): e.g. to wake the hook dispatcher and the outbox.
	OnDeviceReported func(uuid string, targetFields bool)
	// OnLogAccepted, if set, is called after a log line was buffered (e.g.
	// to wake the outbox).
	OnLogAccepted func(uuid string)
	// MaxLogLines bounds the durable buffer of log lines (LOG_BUFFER_LINES);
	// 0 means store.DefaultMaxLogRows.
	MaxLogLines int
	// MaxLogBytes bounds the same buffer in bytes (LOG_BUFFER_BYTES); 0
	// means store.DefaultMaxLogBytes.
	MaxLogBytes int64
	// MaxLogLineBytes bounds one buffered line's JSON (LOG_LINE_MAX_BYTES):
	// a longer message is cut (see truncateLogLine); 0 means no bound
	// beyond the body limit.
	MaxLogLineBytes int
	// Violations are deliberate contract violations for the self-check; nil
	// enables none.
	Violations violation.Set
	// Logger, if nil, discards.
	Logger *slog.Logger
	// Metrics, if nil, are built with NewMetrics(Registerer).
	Metrics *Metrics
	// Registerer, if nil, leaves the metrics unregistered.
	Registerer prometheus.Registerer
	// Now, if nil, is time.Now. It timestamps log lines sent without one.
	Now func() time.Time
	// Rand, if nil, is crypto/rand.Reader. New device uuids are read from it.
	Rand io.Reader
}

// Handler is the supervisor API. It is an http.Handler.
type Handler struct {
	opts    Options
	keySum  [sha256.Size]byte
	mux     *http.ServeMux
	log     *slog.Logger
	metrics *Metrics
	now     func() time.Time
	rand    io.Reader
	v       violation.Set
	// fallback is the instrumented unknown-path route.
	fallback http.Handler
	// list is the device list's objects (list.go).
	list deviceList
	// cache holds the bodies of device reads until the next write.
	cache readCache
}

// New returns the API handler for opts.
func New(opts Options) (*Handler, error) {
	switch {
	case opts.Store == nil:
		return nil, errors.New("httpapi: Store is required")
	case opts.Cloud == nil:
		return nil, errors.New("httpapi: Cloud is required")
	case opts.Assets == nil:
		return nil, errors.New("httpapi: Assets is required")
	case opts.APIKey == "":
		return nil, errors.New("httpapi: APIKey is required")
	}
	h := &Handler{
		opts:    opts,
		keySum:  sha256.Sum256([]byte(opts.APIKey)),
		mux:     http.NewServeMux(),
		log:     opts.Logger,
		metrics: opts.Metrics,
		now:     opts.Now,
		rand:    opts.Rand,
		v:       opts.Violations,
	}
	if h.log == nil {
		h.log = slog.New(slog.DiscardHandler)
	}
	if h.now == nil {
		h.now = time.Now
	}
	if h.rand == nil {
		h.rand = rand.Reader
	}
	if h.metrics == nil {
		var err error
		if h.metrics, err = NewMetrics(opts.Registerer); err != nil {
			return nil, err
		}
	}
	h.route("GET /ping", false, h.ping)
	h.route("GET /v1/dependent-apps", true, h.listApps)
	h.route("GET /v1/dependent-apps/{appId}/assets/{commit}", true, h.getAssets)
	h.route("GET /v1/devices", true, h.listDevices)
	h.route("POST /v1/devices", true, h.provision)
	h.route("GET /v1/devices/{uuid}", true, h.getDevice)
	h.route("PUT /v1/devices/{uuid}", true, h.putDevice)
	h.route("POST /v1/devices/{uuid}/logs", true, h.postLog)
	// Everything else: 401 without the key (gateway apps poll GET / and
	// take 401 as "supervisor is up"), 404 with it.
	h.fallback = h.route("/", !h.v.On("auth-unknown-path-404"), h.notFound)
	return h, nil
}

// ServeHTTP serves the API. Paths that are not clean (//, /./, /../) go to
// the unknown-path route rather than to ServeMux's redirect, so that they
// too answer 401 without the key.
func (h *Handler) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	if !isCleanPath(r.URL.Path) {
		h.fallback.ServeHTTP(w, r)
		return
	}
	h.mux.ServeHTTP(w, r)
}

// isCleanPath reports whether ServeMux would route p without redirecting:
// absolute, and path.Clean leaves it alone (but for one trailing slash).
func isCleanPath(p string) bool {
	if p == "" || p[0] != '/' {
		return false
	}
	c := path.Clean(p)
	return c == p || (c != "/" && c+"/" == p)
}

// handlerFunc is a route's handler: it writes a success response itself and
// returns an error (an *Error, or any other error for 503) otherwise.
type handlerFunc func(w http.ResponseWriter, r *http.Request) error

// route registers fn under pattern, with authentication (unless open),
// panic recovery, the error writer and metrics labelled by the pattern's
// path template.
func (h *Handler) route(pattern string, auth bool, fn handlerFunc) http.Handler {
	tmpl := pattern
	if _, p, ok := strings.Cut(pattern, " "); ok {
		tmpl = p
	}
	if tmpl == "/" {
		tmpl = "other"
	}
	if pattern == "GET /ping" && h.v.On("ping-needs-key") {
		auth = true
	}
	handler := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		start := time.Now()
		rec := &httpserver.StatusRecorder{ResponseWriter: w}
		defer func() {
			if p := recover(); p != nil {
				if p == http.ErrAbortHandler {
					panic(p)
				}
				h.writeError(rec, r, fmt.Errorf("panic: %v\n%s", p, debug.Stack()))
			}
			h.metrics.requests.Observe(statusLabel(rec.Status()), time.Since(start), tmpl, methodLabel(r.Method))
		}()
		if auth && !h.authorized(r) {
			h.refuse(rec, r)
			return
		}
		var out http.ResponseWriter = rec
		if extra, pretty := h.v.Allows("extra-fields"), h.v.Allows("pretty-json"); extra || pretty {
			rw := &reshapeWriter{ResponseWriter: rec, extra: extra, pretty: pretty}
			defer rw.flush()
			out = rw
		}
		if err := fn(out, r); err != nil {
			h.writeError(rec, r, err)
		}
	})
	h.mux.Handle(pattern, handler)
	return handler
}

// refuse answers 401 to a request without a valid key at once, without
// reading its body, and closes the connection of a request that announces
// one (SRV-1): Connection: close keeps net/http from reading the body
// before it answers, and a read deadline already passed keeps it from
// draining the body afterwards to reuse the connection.
func (h *Handler) refuse(w *httpserver.StatusRecorder, r *http.Request) {
	if r.ContentLength != 0 {
		if h.v.On("srv-keyless-reads-body") {
			io.Copy(io.Discard, http.MaxBytesReader(w, r.Body, api.MaxBodyBytes))
		} else {
			w.Header().Set("Connection", "close")
			_ = http.NewResponseController(w).SetReadDeadline(time.Now())
		}
	}
	h.writeError(w, r, errUnauthorized)
}

// authorized reports whether r carries the API key: ?apikey=KEY, or
// Authorization: Bearer KEY or ApiKey KEY (scheme case-insensitive). Keys
// are compared in constant time, as SHA-256 sums so that even the key's
// length does not leak.
func (h *Handler) authorized(r *http.Request) bool {
	if h.v.On("auth-open") {
		return true
	}
	ok := false
	if r.URL.RawQuery != "" {
		for _, k := range r.URL.Query()["apikey"] {
			ok = h.keyMatches(k) || ok
		}
	}
	for _, a := range r.Header.Values("Authorization") {
		scheme, cred, found := strings.Cut(strings.TrimSpace(a), " ")
		if !found || !(strings.EqualFold(scheme, "Bearer") || strings.EqualFold(scheme, "ApiKey")) {
			continue
		}
		if strings.EqualFold(scheme, "ApiKey") && h.v.On("auth-apikey-any-key") && strings.TrimSpace(cred) != "" {
			ok = true
		}
		ok = h.keyMatches(strings.TrimSpace(cred)) || ok
	}
	return ok
}

func (h *Handler) keyMatches(k string) bool {
	sum := sha256.Sum256([]byte(k))
	ok := subtle.ConstantTimeCompare(sum[:], h.keySum[:]) == 1
	if ok && h.v.On("auth-key-logged") {
		h.log.Info("request authorized", "key", k)
	}
	return ok
}

func (h *Handler) ping(w http.ResponseWriter, r *http.Request) error {
	w.Header().Set("Content-Type", "text/plain; charset=utf-8")
	w.WriteHeader(http.StatusOK)
	io.WriteString(w, "OK")
	return nil
}

func (h *Handler) notFound(w http.ResponseWriter, r *http.Request) error {
	return errNotFound
}

// methodLabel bounds the method label to the methods HTTP defines.
func methodLabel(m string) string {
	switch m {
	case http.MethodGet, http.MethodHead, http.MethodPost, http.MethodPut, http.MethodPatch,
		http.MethodDelete, http.MethodOptions, http.MethodConnect, http.MethodTrace:
		return m
	}
	return "other"
}

// newUUID returns 32 random lowercase hex characters.
func (h *Handler) newUUID() (string, error) {
	var b [16]byte
	if _, err := io.ReadFull(h.rand, b[:]); err != nil {
		return "", fmt.Errorf("random uuid: %w", err)
	}
	return fmt.Sprintf("%x", b[:]), nil
}

// deviceTypeDefault is the device_type of POST /v1/devices without one.
func (h *Handler) deviceTypeDefault() string {
	if h.v.On("provision-default-generic") {
		return "generic"
	}
	return api.DefaultDeviceType
}
