package cloud

import (
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

func (s *Server) controlRoutes(mux *http.ServeMux) {
	h := func(pattern string, fn controlHandler) {
		method, p, _ := strings.Cut(pattern, " ")
		mux.Handle(method+" "+ControlPrefix+p, s.control(fn))
	}
	mux.Handle(ControlPrefix, s.control(func(w http.ResponseWriter, r *http.Request) error {
		return errorf(http.StatusNotFound, "no control route %s %s", r.Method, r.URL.Path)
	}))
	h("GET info", func(w http.ResponseWriter, r *http.Request) error {
		return writeJSON(w, http.StatusOK, s.Info())
	})

	h("POST gateways", func(w http.ResponseWriter, r *http.Request) error {
		var spec GatewaySpec
		if err := decodeControl(r, maxControlBody, &spec); err != nil {
			return err
		}
		gw, err := s.CreateGateway(spec)
		if err != nil {
			return err
		}
		return writeJSON(w, http.StatusCreated, gw)
	})
	h("GET gateways", func(w http.ResponseWriter, r *http.Request) error {
		return writeJSON(w, http.StatusOK, s.Gateways())
	})
	h("GET gateways/{uuid}", func(w http.ResponseWriter, r *http.Request) error {
		gw, err := s.Gateway(r.PathValue("uuid"))
		if err != nil {
			return err
		}
		return writeJSON(w, http.StatusOK, gw)
	})
	h("GET gateways/{uuid}/state", func(w http.ResponseWriter, r *http.Request) error {
		body, etag, err := s.State(r.PathValue("uuid"))
		if err != nil {
			return err
		}
		w.Header().Set("ETag", etag)
		w.Header().Set("Content-Type", "application/json")
		_, _ = w.Write(body)
		return nil
	})

	h("POST apps", func(w http.ResponseWriter, r *http.Request) error {
		var spec AppSpec
		if err := decodeControl(r, maxControlBody, &spec); err != nil {
			return err
		}
		a, err := s.CreateApp(spec)
		if err != nil {
			return err
		}
		return writeJSON(w, http.StatusCreated, a)
	})
	h("GET apps", func(w http.ResponseWriter, r *http.Request) error {
		return writeJSON(w, http.StatusOK, s.Apps())
	})
	h("GET apps/{id}", func(w http.ResponseWriter, r *http.Request) error {
		id, err := pathInt(r, "id")
		if err != nil {
			return err
		}
		a, err := s.App(id)
		if err != nil {
			return err
		}
		return writeJSON(w, http.StatusOK, a)
	})
	h("DELETE apps/{id}", func(w http.ResponseWriter, r *http.Request) error {
		id, err := pathInt(r, "id")
		if err != nil {
			return err
		}
		if err := s.DeleteApp(id); err != nil {
			return err
		}
		return noContent(w)
	})
	h("POST apps/{id}/releases", func(w http.ResponseWriter, r *http.Request) error {
		id, err := pathInt(r, "id")
		if err != nil {
			return err
		}
		var rr ReleaseRequest
		if err := decodeControl(r, maxReleaseBody, &rr); err != nil {
			return err
		}
		spec, err := rr.spec()
		if err != nil {
			return err
		}
		rel, err := s.PushRelease(r.Context(), id, spec)
		if err != nil {
			return err
		}
		return writeJSON(w, http.StatusCreated, rel)
	})
	h("GET apps/{id}/releases", func(w http.ResponseWriter, r *http.Request) error {
		id, err := pathInt(r, "id")
		if err != nil {
			return err
		}
		rels, err := s.Releases(id)
		if err != nil {
			return err
		}
		return writeJSON(w, http.StatusOK, rels)
	})
	h("PATCH apps/{id}/vars/{kind}", func(w http.ResponseWriter, r *http.Request) error {
		id, err := pathInt(r, "id")
		if err != nil {
			return err
		}
		kind, err := pathKind(r)
		if err != nil {
			return err
		}
		var vr VarsRequest
		if err := decodeControl(r, maxControlBody, &vr); err != nil {
			return err
		}
		if err := s.UpdateVars(VarsUpdate{App: id, Kind: kind, Set: vr.Set, Unset: vr.Unset}); err != nil {
			return err
		}
		return noContent(w)
	})

	h("POST devices", func(w http.ResponseWriter, r *http.Request) error {
		var spec DeviceSpec
		if err := decodeControl(r, maxControlBody, &spec); err != nil {
			return err
		}
		d, err := s.CreateDevice(spec)
		if err != nil {
			return err
		}
		return writeJSON(w, http.StatusCreated, d)
	})
	h("GET devices", func(w http.ResponseWriter, r *http.Request) error {
		var f DeviceFilter
		q := r.URL.Query()
		f.Gateway = q.Get("gateway")
		if a := q.Get("app"); a != "" {
			id, err := strconv.ParseInt(a, 10, 64)
			if err != nil || id <= 0 {
				return invalidf("app must be a positive integer, got %q", a)
			}
			f.AppID = id
		}
		return writeJSON(w, http.StatusOK, s.Devices(f))
	})
	h("GET devices/{uuid}", func(w http.ResponseWriter, r *http.Request) error {
		d, err := s.Device(r.PathValue("uuid"))
		if err != nil {
			return err
		}
		return writeJSON(w, http.StatusOK, d)
	})
	h("DELETE devices/{uuid}", func(w http.ResponseWriter, r *http.Request) error {
		if err := s.DeleteDevice(r.PathValue("uuid")); err != nil {
			return err
		}
		return noContent(w)
	})
	h("PATCH devices/{uuid}/vars/{kind}", func(w http.ResponseWriter, r *http.Request) error {
		kind, err := pathKind(r)
		if err != nil {
			return err
		}
		var vr VarsRequest
		if err := decodeControl(r, maxControlBody, &vr); err != nil {
			return err
		}
		if err := s.UpdateVars(VarsUpdate{Device: r.PathValue("uuid"), Kind: kind, Set: vr.Set, Unset: vr.Unset}); err != nil {
			return err
		}
		return noContent(w)
	})
	h("POST devices/{uuid}/move", func(w http.ResponseWriter, r *http.Request) error {
		var mr MoveRequest
		if err := decodeControl(r, maxControlBody, &mr); err != nil {
			return err
		}
		if mr.AppID <= 0 {
			return invalidf("appId must be a positive integer")
		}
		if err := s.MoveDevice(r.PathValue("uuid"), mr.AppID, mr.Gateway); err != nil {
			return err
		}
		return noContent(w)
	})
	h("POST devices/{uuid}/restart", func(w http.ResponseWriter, r *http.Request) error {
		n, err := s.RestartDevice(r.PathValue("uuid"))
		if err != nil {
			return err
		}
		return writeJSON(w, http.StatusOK, RestartResponse{Restart: n})
	})
	h("GET devices/{uuid}/logs", func(w http.ResponseWriter, r *http.Request) error {
		l, err := s.Logs(r.PathValue("uuid"))
		if err != nil {
			return err
		}
		return writeJSON(w, http.StatusOK, l)
	})

	h("GET requests", func(w http.ResponseWriter, r *http.Request) error {
		var after uint64
		if a := r.URL.Query().Get("after"); a != "" {
			v, err := strconv.ParseUint(a, 10, 64)
			if err != nil {
				return invalidf("after must be a sequence number, got %q", a)
			}
			after = v
		}
		return writeJSON(w, http.StatusOK, s.Requests(after))
	})

	h("GET faults", func(w http.ResponseWriter, r *http.Request) error {
		return writeJSON(w, http.StatusOK, s.Faults())
	})
	h("DELETE faults", func(w http.ResponseWriter, r *http.Request) error {
		s.ResetFaults()
		return noContent(w)
	})
	h("POST faults/delay", func(w http.ResponseWriter, r *http.Request) error {
		var dr DelayRequest
		if err := decodeControl(r, maxControlBody, &dr); err != nil {
			return err
		}
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
		if err := s.Delay(dr.Route, d, j); err != nil {
			return err
		}
		return noContent(w)
	})
	h("DELETE faults/delay/{route}", func(w http.ResponseWriter, r *http.Request) error {
		if err := checkRoute(r.PathValue("route")); err != nil {
			return err
		}
		s.Undelay(r.PathValue("route"))
		return noContent(w)
	})
	h("POST faults/fail-next", func(w http.ResponseWriter, r *http.Request) error {
		var fr FailNextRequest
		if err := decodeControl(r, maxControlBody, &fr); err != nil {
			return err
		}
		if err := s.FailNext(fr.Route, fr.N, fr.Status); err != nil {
			return err
		}
		return noContent(w)
	})
	h("DELETE faults/fail-next/{route}", func(w http.ResponseWriter, r *http.Request) error {
		if err := checkRoute(r.PathValue("route")); err != nil {
			return err
		}
		s.Unfail(r.PathValue("route"))
		return noContent(w)
	})
	h("POST faults/outage", func(w http.ResponseWriter, r *http.Request) error {
		var or OutageRequest
		if err := decodeControl(r, maxControlBody, &or); err != nil {
			return err
		}
		if err := s.Outage(or.Mode); err != nil {
			return err
		}
		return noContent(w)
	})
	h("DELETE faults/outage", func(w http.ResponseWriter, r *http.Request) error {
		s.EndOutage()
		return noContent(w)
	})
	h("POST faults/hang", func(w http.ResponseWriter, r *http.Request) error {
		var hr HangRequest
		if err := decodeControl(r, maxControlBody, &hr); err != nil {
			return err
		}
		if err := s.Hang(hr.Route); err != nil {
			return err
		}
		return noContent(w)
	})
	h("DELETE faults/hang/{route}", func(w http.ResponseWriter, r *http.Request) error {
		if err := checkRoute(r.PathValue("route")); err != nil {
			return err
		}
		s.Unhang(r.PathValue("route"))
		return noContent(w)
	})
	h("POST faults/refuse-log-lines", func(w http.ResponseWriter, r *http.Request) error {
		var rr RefuseLogLinesRequest
		if err := decodeControl(r, maxControlBody, &rr); err != nil {
			return err
		}
		s.RefuseLogLines(rr.Message)
		return noContent(w)
	})
	h("DELETE faults/refuse-log-lines", func(w http.ResponseWriter, r *http.Request) error {
		s.UnrefuseLogLines()
		return noContent(w)
	})
	h("POST faults/drop-answers", func(w http.ResponseWriter, r *http.Request) error {
		var dr DropAnswersRequest
		if err := decodeControl(r, maxControlBody, &dr); err != nil {
			return err
		}
		if err := s.DropAnswers(dr.Route, dr.N); err != nil {
			return err
		}
		return noContent(w)
	})
	h("DELETE faults/drop-answers/{route}", func(w http.ResponseWriter, r *http.Request) error {
		if err := checkRoute(r.PathValue("route")); err != nil {
			return err
		}
		s.Undrop(r.PathValue("route"))
		return noContent(w)
	})
	h("POST faults/delay-answers", func(w http.ResponseWriter, r *http.Request) error {
		var dr DelayAnswersRequest
		if err := decodeControl(r, maxControlBody, &dr); err != nil {
			return err
		}
		d, err := time.ParseDuration(dr.Delay)
		if err != nil {
			return invalidf("delay %q: want a Go duration like 5s", dr.Delay)
		}
		if err := s.DelayAnswers(dr.Route, d, dr.N); err != nil {
			return err
		}
		return noContent(w)
	})
	h("DELETE faults/delay-answers/{route}", func(w http.ResponseWriter, r *http.Request) error {
		if err := checkRoute(r.PathValue("route")); err != nil {
			return err
		}
		s.UndelayAnswers(r.PathValue("route"))
		return noContent(w)
	})
}
