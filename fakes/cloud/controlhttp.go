package cloud

import (
	"context"
	"crypto/sha256"
	"crypto/subtle"
	"encoding/json"
	"errors"
	"io"
	"net/http"
	"strconv"
	"strings"
	"time"
)

// ControlPrefix is the path prefix of the HTTP control API. Every route
// needs "Authorization: Bearer <admin token>"; bodies are JSON, decoded
// strictly (unknown fields are a 400); errors are plain text: 400 bad input
// (nothing changed), 401, 404 unknown thing, 409 taken, 503 no builder.
//
//	GET    info                          seed and counts (Info)
//	POST   gateways                      GatewaySpec → 201 Gateway
//	GET    gateways                      []Gateway
//	GET    gateways/{uuid}               Gateway
//	GET    gateways/{uuid}/state         the gateway's target state document
//	POST   apps                          AppSpec → 201 App
//	GET    apps                          []App
//	GET    apps/{id}                     App
//	DELETE apps/{id}                     204; its devices go with it
//	POST   apps/{id}/releases            ReleaseRequest → 201 Release
//	GET    apps/{id}/releases            []Release
//	PATCH  apps/{id}/vars/{env|config}   VarsRequest → 204
//	POST   devices                       DeviceSpec → 201 DeviceInfo
//	GET    devices[?gateway=U&app=N]     []DeviceInfo
//	GET    devices/{uuid}                DeviceInfo
//	DELETE devices/{uuid}                204
//	PATCH  devices/{uuid}/vars/{kind}    VarsRequest → 204
//	POST   devices/{uuid}/move           MoveRequest → 204
//	POST   devices/{uuid}/restart        → RestartResponse
//	GET    devices/{uuid}/logs           []cloudapi.LogLine
//	GET    requests[?after=SEQ]          []Request (the journal)
//	GET    faults                        FaultState
//	DELETE faults                        204; every knob removed
//	POST   faults/delay                  DelayRequest → 204
//	DELETE faults/delay/{route}          204
//	POST   faults/fail-next              FailNextRequest → 204
//	DELETE faults/fail-next/{route}      204
//	POST   faults/outage                 OutageRequest → 204
//	DELETE faults/outage                 204
//	POST   faults/hang                   HangRequest → 204
//	DELETE faults/hang/{route}           204
//	POST   faults/refuse-log-lines       RefuseLogLinesRequest → 204
//	DELETE faults/refuse-log-lines       204
//	POST   faults/drop-answers           DropAnswersRequest → 204
//	DELETE faults/drop-answers/{route}   204
//	POST   faults/delay-answers          DelayAnswersRequest → 204
//	DELETE faults/delay-answers/{route}  204
const ControlPrefix = "/control/v1/"

// Body limits of the control API.
const (
	maxControlBody = 1 << 20
	maxReleaseBody = 512 << 20
)

// ReleaseRequest is the body of POST /control/v1/apps/{id}/releases: one of
// Layers, Files (with Delete: one layer, the simple form) or Image. File
// contents are base64.
type ReleaseRequest struct {
	Layers []Layer           `json:"layers,omitempty"`
	Files  map[string][]byte `json:"files,omitempty"`
	Delete []string          `json:"delete,omitempty"`
	Image  string            `json:"image,omitempty"`
	Commit string            `json:"commit,omitempty"`
}

// spec turns the request into a ReleaseSpec.
func (rr ReleaseRequest) spec() (ReleaseSpec, error) {
	spec := ReleaseSpec{Layers: rr.Layers, Image: rr.Image, Commit: rr.Commit}
	if len(rr.Files) > 0 || len(rr.Delete) > 0 {
		if len(rr.Layers) > 0 {
			return ReleaseSpec{}, invalidf("give layers or files, not both")
		}
		spec.Layers = []Layer{{Files: rr.Files, Delete: rr.Delete}}
	}
	return spec, nil
}

// VarsRequest is the body of PATCH …/vars/{kind}.
type VarsRequest struct {
	Set   map[string]string `json:"set,omitempty"`
	Unset []string          `json:"unset,omitempty"`
}

// MoveRequest is the body of POST /control/v1/devices/{uuid}/move.
type MoveRequest struct {
	AppID   int64  `json:"appId"`
	Gateway string `json:"gateway,omitempty"`
}

// DelayRequest is the body of POST /control/v1/faults/delay. Durations are
// Go syntax ("200ms").
type DelayRequest struct {
	Route  string `json:"route"`
	Delay  string `json:"delay"`
	Jitter string `json:"jitter,omitempty"`
}

// FailNextRequest is the body of POST /control/v1/faults/fail-next.
type FailNextRequest struct {
	Route  string `json:"route"`
	N      int    `json:"n"`
	Status int    `json:"status"`
}

// OutageRequest is the body of POST /control/v1/faults/outage.
type OutageRequest struct {
	Mode OutageMode `json:"mode"`
}

// RefuseLogLinesRequest is the body of POST
// /control/v1/faults/refuse-log-lines.
type RefuseLogLinesRequest struct {
	Message string `json:"message"`
}

// DropAnswersRequest is the body of POST /control/v1/faults/drop-answers.
type DropAnswersRequest struct {
	Route string `json:"route"`
	N     int    `json:"n"`
}

// DelayAnswersRequest is the body of POST /control/v1/faults/delay-answers.
// Delay is Go syntax ("5s").
type DelayAnswersRequest struct {
	Route string `json:"route"`
	Delay string `json:"delay"`
	N     int    `json:"n"`
}

// HangRequest is the body of POST /control/v1/faults/hang.
type HangRequest struct {
	Route string `json:"route"`
}

// RestartResponse is the answer of POST /control/v1/devices/{uuid}/restart.
type RestartResponse struct {
	Restart int64 `json:"restart"`
}

// Info is the answer of GET /control/v1/info.
type Info struct {
	Seed     uint64 `json:"seed"`
	Gateways int    `json:"gateways"`
	Apps     int    `json:"apps"`
	Devices  int    `json:"devices"`
	Requests uint64 `json:"requests"`
}

// Info returns counts of the model and the seed.
func (s *Server) Info() Info {
	s.mu.Lock()
	defer s.mu.Unlock()
	return Info{Seed: s.seed, Gateways: len(s.gateways), Apps: len(s.apps), Devices: len(s.devices), Requests: s.journal.seq}
}

type controlHandler func(w http.ResponseWriter, r *http.Request) error

// control wraps a control handler: admin token, error writer.
func (s *Server) control(h controlHandler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		scheme, tok, ok := strings.Cut(r.Header.Get("Authorization"), " ")
		if !ok || !strings.EqualFold(scheme, "Bearer") || !s.isAdminToken(tok) {
			writeError(s.log, w, errorf(http.StatusUnauthorized, "Unauthorized: the control API needs Authorization: Bearer <admin token>"))
			return
		}
		if err := h(w, r); err != nil {
			writeError(s.log, w, err)
		}
	})
}

// isAdminToken compares tok with the admin token in constant time, length
// included: both sides are hashed first, since subtle.ConstantTimeCompare
// returns at once when the lengths differ.
func (s *Server) isAdminToken(tok string) bool {
	got, want := sha256.Sum256([]byte(tok)), sha256.Sum256([]byte(s.adminToken))
	return subtle.ConstantTimeCompare(got[:], want[:]) == 1
}

// decodeControl decodes a control body strictly: unknown fields are errors.
func decodeControl(r *http.Request, limit int64, v any) error {
	dec := json.NewDecoder(http.MaxBytesReader(nil, r.Body, limit))
	dec.DisallowUnknownFields()
	if err := dec.Decode(v); err != nil {
		var mbe *http.MaxBytesError
		if errors.As(err, &mbe) {
			return errorf(http.StatusRequestEntityTooLarge, "body over %d bytes", limit)
		}
		if errors.Is(err, io.EOF) {
			return invalidf("a JSON body is required")
		}
		return invalidf("malformed JSON body: %v", err)
	}
	if _, err := dec.Token(); err != io.EOF {
		return invalidf("malformed JSON body: data after the JSON value")
	}
	return nil
}

func pathInt(r *http.Request, name string) (int64, error) {
	v, err := strconv.ParseInt(r.PathValue(name), 10, 64)
	if err != nil || v <= 0 {
		return 0, invalidf("%s must be a positive integer, got %q", name, r.PathValue(name))
	}
	return v, nil
}

func pathKind(r *http.Request) (VarKind, error) {
	switch k := VarKind(r.PathValue("kind")); k {
	case KindEnv, KindConfig:
		return k, nil
	default:
		return "", invalidf("kind must be env or config, got %q", k)
	}
}

func noContent(w http.ResponseWriter) error {
	w.WriteHeader(http.StatusNoContent)
	return nil
}

// none is the body of a route that reads none, the arguments of a route
// without path or query parameters, or the answer of a route that answers
// 204 No Content.
type none struct{}

// bodyLimiter is a request body with a limit other than maxControlBody.
type bodyLimiter interface{ bodyLimit() int64 }

func (ReleaseRequest) bodyLimit() int64 { return maxReleaseBody }

// serve is the one decode/answer helper of the control API. It reads the
// route's path and query parameters with args, decodes the body strictly
// into a B (unless B is none), calls fn, and answers its T as JSON with
// status (or 204 if T is none). Each step's error is the answer.
func serve[A, B, T any](status int, args func(*http.Request) (A, error), fn func(context.Context, A, B) (T, error)) controlHandler {
	return func(w http.ResponseWriter, r *http.Request) error {
		a, err := args(r)
		if err != nil {
			return err
		}
		var b B
		if _, skip := any(b).(none); !skip {
			limit := int64(maxControlBody)
			if l, ok := any(b).(bodyLimiter); ok {
				limit = l.bodyLimit()
			}
			if err := decodeControl(r, limit, &b); err != nil {
				return err
			}
		}
		t, err := fn(r.Context(), a, b)
		if err != nil {
			return err
		}
		if _, empty := any(t).(none); empty {
			return noContent(w)
		}
		return writeJSON(w, status, t)
	}
}

// Shapes of fn for serve, from the Server's methods.

// list answers what fn returns.
func list[T any](fn func() T) func(context.Context, none, none) (T, error) {
	return func(context.Context, none, none) (T, error) { return fn(), nil }
}

// lookup answers what fn returns for the route's parameters.
func lookup[A, T any](fn func(A) (T, error)) func(context.Context, A, none) (T, error) {
	return func(_ context.Context, a A, _ none) (T, error) { return fn(a) }
}

// create answers what fn makes of the body.
func create[B, T any](fn func(B) (T, error)) func(context.Context, none, B) (T, error) {
	return func(_ context.Context, _ none, b B) (T, error) { return fn(b) }
}

// act answers 204 once fn succeeded for the route's parameters.
func act[A any](fn func(A) error) func(context.Context, A, none) (none, error) {
	return func(_ context.Context, a A, _ none) (none, error) { return none{}, fn(a) }
}

// apply answers 204 once fn applied the body.
func apply[B any](fn func(B) error) func(context.Context, none, B) (none, error) {
	return func(_ context.Context, _ none, b B) (none, error) { return none{}, fn(b) }
}

// Arguments of the routes.

func noArgs(*http.Request) (none, error) { return none{}, nil }

func uuidArg(r *http.Request) (string, error) { return r.PathValue("uuid"), nil }

func idArg(r *http.Request) (int64, error) { return pathInt(r, "id") }

// routeArg is a fault route named in the path.
func routeArg(r *http.Request) (string, error) {
	route := r.PathValue("route")
	return route, checkRoute(route)
}

// appVarsArgs is the app and kind of PATCH apps/{id}/vars/{kind}.
func appVarsArgs(r *http.Request) (VarsUpdate, error) {
	id, err := pathInt(r, "id")
	if err != nil {
		return VarsUpdate{}, err
	}
	kind, err := pathKind(r)
	return VarsUpdate{App: id, Kind: kind}, err
}

// deviceVarsArgs is the device and kind of PATCH devices/{uuid}/vars/{kind}.
func deviceVarsArgs(r *http.Request) (VarsUpdate, error) {
	kind, err := pathKind(r)
	return VarsUpdate{Device: r.PathValue("uuid"), Kind: kind}, err
}

// deviceFilterArgs is the query of GET devices.
func deviceFilterArgs(r *http.Request) (DeviceFilter, error) {
	q := r.URL.Query()
	f := DeviceFilter{Gateway: q.Get("gateway")}
	if a := q.Get("app"); a != "" {
		id, err := strconv.ParseInt(a, 10, 64)
		if err != nil || id <= 0 {
			return DeviceFilter{}, invalidf("app must be a positive integer, got %q", a)
		}
		f.AppID = id
	}
	return f, nil
}

// afterArg is the query of GET requests.
func afterArg(r *http.Request) (uint64, error) {
	a := r.URL.Query().Get("after")
	if a == "" {
		return 0, nil
	}
	v, err := strconv.ParseUint(a, 10, 64)
	if err != nil {
		return 0, invalidf("after must be a sequence number, got %q", a)
	}
	return v, nil
}

// controlRoute is one route of the control API: a pattern relative to
// ControlPrefix ("GET apps/{id}") and its handler.
type controlRoute struct {
	pattern string
	handle  controlHandler
}

// controlTable is the control API (see ControlPrefix).
func (s *Server) controlTable() []controlRoute {
	const ok, created = http.StatusOK, http.StatusCreated
	updateVars := func(_ context.Context, u VarsUpdate, vr VarsRequest) (none, error) {
		u.Set, u.Unset = vr.Set, vr.Unset
		return none{}, s.UpdateVars(u)
	}
	return []controlRoute{
		{"GET info", serve(ok, noArgs, list(s.Info))},

		{"POST gateways", serve(created, noArgs, create(s.CreateGateway))},
		{"GET gateways", serve(ok, noArgs, list(s.Gateways))},
		{"GET gateways/{uuid}", serve(ok, uuidArg, lookup(s.Gateway))},
		{"GET gateways/{uuid}/state", s.serveState},

		{"POST apps", serve(created, noArgs, create(s.CreateApp))},
		{"GET apps", serve(ok, noArgs, list(s.Apps))},
		{"GET apps/{id}", serve(ok, idArg, lookup(s.App))},
		{"DELETE apps/{id}", serve(ok, idArg, act(s.DeleteApp))},
		{"POST apps/{id}/releases", serve(created, idArg, func(ctx context.Context, id int64, rr ReleaseRequest) (Release, error) {
			spec, err := rr.spec()
			if err != nil {
				return Release{}, err
			}
			return s.PushRelease(ctx, id, spec)
		})},
		{"GET apps/{id}/releases", serve(ok, idArg, lookup(s.Releases))},
		{"PATCH apps/{id}/vars/{kind}", serve(ok, appVarsArgs, updateVars)},

		{"POST devices", serve(created, noArgs, create(s.CreateDevice))},
		{"GET devices", serve(ok, deviceFilterArgs, lookup(func(f DeviceFilter) ([]DeviceInfo, error) { return s.Devices(f), nil }))},
		{"GET devices/{uuid}", serve(ok, uuidArg, lookup(s.Device))},
		{"DELETE devices/{uuid}", serve(ok, uuidArg, act(s.DeleteDevice))},
		{"PATCH devices/{uuid}/vars/{kind}", serve(ok, deviceVarsArgs, updateVars)},
		{"POST devices/{uuid}/move", serve(ok, uuidArg, func(_ context.Context, uuid string, mr MoveRequest) (none, error) {
			if mr.AppID <= 0 {
				return none{}, invalidf("appId must be a positive integer")
			}
			return none{}, s.MoveDevice(uuid, mr.AppID, mr.Gateway)
		})},
		{"POST devices/{uuid}/restart", serve(ok, uuidArg, lookup(func(uuid string) (RestartResponse, error) {
			n, err := s.RestartDevice(uuid)
			return RestartResponse{Restart: n}, err
		}))},
		{"GET devices/{uuid}/logs", serve(ok, uuidArg, lookup(s.Logs))},

		{"GET requests", serve(ok, afterArg, lookup(func(after uint64) ([]Request, error) { return s.Requests(after), nil }))},

		{"GET faults", serve(ok, noArgs, list(s.Faults))},
		{"DELETE faults", serve(ok, noArgs, act(func(none) error { s.ResetFaults(); return nil }))},
		{"POST faults/delay", serve(ok, noArgs, apply(func(dr DelayRequest) error {
			d, err := time.ParseDuration(dr.Delay)
			if err != nil {
				return invalidf("delay %q: want a Go duration like 200ms", dr.Delay)
			}
			var j time.Duration
			if dr.Jitter != "" {
				if j, err = time.ParseDuration(dr.Jitter); err != nil {
					return invalidf("jitter %q: want a Go duration like 50ms", dr.Jitter)
				}
			}
			return s.Delay(dr.Route, d, j)
		}))},
		{"DELETE faults/delay/{route}", serve(ok, routeArg, act(undo(s.Undelay)))},
		{"POST faults/fail-next", serve(ok, noArgs, apply(func(fr FailNextRequest) error { return s.FailNext(fr.Route, fr.N, fr.Status) }))},
		{"DELETE faults/fail-next/{route}", serve(ok, routeArg, act(undo(s.Unfail)))},
		{"POST faults/outage", serve(ok, noArgs, apply(func(or OutageRequest) error { return s.Outage(or.Mode) }))},
		{"DELETE faults/outage", serve(ok, noArgs, act(func(none) error { s.EndOutage(); return nil }))},
		{"POST faults/hang", serve(ok, noArgs, apply(func(hr HangRequest) error { return s.Hang(hr.Route) }))},
		{"DELETE faults/hang/{route}", serve(ok, routeArg, act(undo(s.Unhang)))},
		{"POST faults/refuse-log-lines", serve(ok, noArgs, apply(func(rr RefuseLogLinesRequest) error { s.RefuseLogLines(rr.Message); return nil }))},
		{"DELETE faults/refuse-log-lines", serve(ok, noArgs, act(func(none) error { s.UnrefuseLogLines(); return nil }))},
		{"POST faults/drop-answers", serve(ok, noArgs, apply(func(dr DropAnswersRequest) error { return s.DropAnswers(dr.Route, dr.N) }))},
		{"DELETE faults/drop-answers/{route}", serve(ok, routeArg, act(undo(s.Undrop)))},
		{"POST faults/delay-answers", serve(ok, noArgs, apply(func(dr DelayAnswersRequest) error {
			d, err := time.ParseDuration(dr.Delay)
			if err != nil {
				return invalidf("delay %q: want a Go duration like 5s", dr.Delay)
			}
			return s.DelayAnswers(dr.Route, d, dr.N)
		}))},
		{"DELETE faults/delay-answers/{route}", serve(ok, routeArg, act(undo(s.UndelayAnswers)))},
	}
}

// undo is a fault's removal for one route, which cannot fail.
func undo(fn func(route string)) func(string) error {
	return func(route string) error { fn(route); return nil }
}

// serveState answers GET gateways/{uuid}/state: the gateway's target state
// document as the cloud serves it, with its ETag.
func (s *Server) serveState(w http.ResponseWriter, r *http.Request) error {
	body, etag, err := s.State(r.PathValue("uuid"))
	if err != nil {
		return err
	}
	w.Header().Set("ETag", etag)
	w.Header().Set("Content-Type", "application/json")
	_, _ = w.Write(body)
	return nil
}

func (s *Server) controlRoutes(mux *http.ServeMux) {
	mux.Handle(ControlPrefix, s.control(func(w http.ResponseWriter, r *http.Request) error {
		return errorf(http.StatusNotFound, "no control route %s %s", r.Method, r.URL.Path)
	}))
	for _, rt := range s.controlTable() {
		method, p, _ := strings.Cut(rt.pattern, " ")
		mux.Handle(method+" "+ControlPrefix+p, s.control(rt.handle))
	}
}
