// Package supervisortest is a minimal in-memory supervisor for tests of
// gateway apps, in the spirit of net/http/httptest: it serves the wire
// behaviour of the dependent-device API (CONTRACT.md: auth, apps, assets
// with ETag and Range, provision, get, put, logs, 404/410) over HTTP,
// records what it receives, injects failures (FailNext) and offers an
// await API so tests never sleep. It is not the reference proxy: it has no
// cloud, sends no hooks and keeps nothing across restarts.
//
// It imports only api; the reference proxy's packages are off limits
// to sim/.
package supervisortest

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"net/http"
	"sort"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/depharness/depharness/api"
	"github.com/depharness/depharness/internal/broadcast"
)

// Server is the in-memory supervisor. Use Handler with an httptest.Server.
type Server struct {
	// APIKey is the key every route but /ping requires; empty disables auth.
	APIKey string

	mu         sync.Mutex
	changed    broadcast.Signal // notified on every change
	apps       map[int64]*app
	devices    map[string]*api.Device
	gone       map[string]bool
	nextID     int64
	logs       map[string][]api.LogEntry
	updates    map[string][]api.DeviceUpdate
	assetGets  map[string]int
	failNext   int
	failStatus int
	requests   int
}

type app struct {
	api.App
	tars map[string][]byte // commit → tar
}

// New returns a supervisor that requires apiKey.
func New(apiKey string) *Server {
	return &Server{
		APIKey:    apiKey,
		apps:      map[int64]*app{},
		devices:   map[string]*api.Device{},
		gone:      map[string]bool{},
		logs:      map[string][]api.LogEntry{},
		updates:   map[string][]api.DeviceUpdate{},
		assetGets: map[string]int{},
	}
}

// notifyLocked wakes the waiters of Await.
func (s *Server) notifyLocked() {
	s.changed.Notify()
}

// SetApp makes commit the current release of dependent app id, with tar as
// its assets.
func (s *Server) SetApp(id int64, name, commit string, tar []byte) {
	s.mu.Lock()
	defer s.mu.Unlock()
	a := s.apps[id]
	if a == nil {
		a = &app{App: api.App{ID: id, Name: name, Config: api.Vars{}}, tars: map[string][]byte{}}
		s.apps[id] = a
	}
	a.Commit = commit
	a.tars = map[string][]byte{commit: tar}
	s.notifyLocked()
}

// MarkDeleted makes a device await its delete acknowledgement: 410.
func (s *Server) MarkDeleted(uuid string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.gone[uuid] = true
	s.notifyLocked()
}

// FailNext makes the next n requests (other than /ping) answer status.
func (s *Server) FailNext(n, status int) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.failNext, s.failStatus = n, status
}

// AssetGets returns how many times the assets of (appID, commit) were
// downloaded with a 200 or 206 answer.
func (s *Server) AssetGets(appID int64, commit string) int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.assetGets[fmt.Sprintf("%d/%s", appID, commit)]
}

// Devices returns the provisioned devices, in id order.
func (s *Server) Devices() []api.Device {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.devicesLocked()
}

func (s *Server) devicesLocked() []api.Device {
	out := make([]api.Device, 0, len(s.devices))
	for _, d := range s.devices {
		out = append(out, *d)
	}
	sort.Slice(out, func(i, j int) bool { return out[i].ID < out[j].ID })
	return out
}

// Updates returns the accepted PUT bodies of a device, in order.
func (s *Server) Updates(uuid string) []api.DeviceUpdate {
	s.mu.Lock()
	defer s.mu.Unlock()
	return append([]api.DeviceUpdate(nil), s.updates[uuid]...)
}

// Logs returns the accepted log lines of a device, in order.
func (s *Server) Logs(uuid string) []api.LogEntry {
	s.mu.Lock()
	defer s.mu.Unlock()
	return append([]api.LogEntry(nil), s.logs[uuid]...)
}

// Requests returns how many requests (other than /ping) were received.
func (s *Server) Requests() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.requests
}

// Await blocks until cond, evaluated after every change of the server's
// state, returns true, or ctx is done.
func (s *Server) Await(ctx context.Context, cond func(s *Server) bool) error {
	if err := s.changed.Await(ctx, func() bool { return cond(s) }); err != nil {
		return fmt.Errorf("await: %w", err)
	}
	return nil
}

// Handler returns the API's HTTP handler.
func (s *Server) Handler() http.Handler {
	mux := http.NewServeMux()
	mux.HandleFunc("GET /v1/dependent-apps", s.listApps)
	mux.HandleFunc("GET /v1/dependent-apps/{appId}/assets/{commit}", s.assets)
	mux.HandleFunc("GET /v1/devices", s.listDevices)
	mux.HandleFunc("POST /v1/devices", s.provision)
	mux.HandleFunc("GET /v1/devices/{uuid}", s.getDevice)
	mux.HandleFunc("PUT /v1/devices/{uuid}", s.putDevice)
	mux.HandleFunc("POST /v1/devices/{uuid}/logs", s.postLog)
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path == "/ping" && r.Method == http.MethodGet {
			_, _ = w.Write([]byte("OK"))
			return
		}
		if !s.authorized(r) {
			http.Error(w, api.ErrTextUnauthorized, http.StatusUnauthorized)
			return
		}
		s.mu.Lock()
		s.requests++
		fail := s.failNext > 0
		if fail {
			s.failNext--
		}
		status := s.failStatus
		s.mu.Unlock()
		if fail {
			http.Error(w, api.ErrTextServiceUnavailable, status)
			return
		}
		mux.ServeHTTP(w, r)
	})
}

func (s *Server) authorized(r *http.Request) bool {
	if s.APIKey == "" {
		return true
	}
	if r.URL.Query().Get("apikey") == s.APIKey {
		return true
	}
	scheme, key, ok := strings.Cut(r.Header.Get("Authorization"), " ")
	return ok && (strings.EqualFold(scheme, "Bearer") || strings.EqualFold(scheme, "ApiKey")) && key == s.APIKey
}

func writeJSON(w http.ResponseWriter, status int, v any) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(status)
	_ = json.NewEncoder(w).Encode(v)
}

func (s *Server) listApps(w http.ResponseWriter, r *http.Request) {
	s.mu.Lock()
	out := []api.App{}
	for _, a := range s.apps {
		out = append(out, a.App)
	}
	s.mu.Unlock()
	sort.Slice(out, func(i, j int) bool { return out[i].ID < out[j].ID })
	writeJSON(w, http.StatusOK, out)
}

func (s *Server) assets(w http.ResponseWriter, r *http.Request) {
	id, _ := strconv.ParseInt(r.PathValue("appId"), 10, 64)
	commit := r.PathValue("commit")
	s.mu.Lock()
	var tar []byte
	ok := false
	if a := s.apps[id]; a != nil && a.Commit == commit {
		tar, ok = a.tars[commit]
	}
	s.mu.Unlock()
	if !ok {
		http.Error(w, api.ErrTextNotFound, http.StatusNotFound)
		return
	}
	sum := sha256.Sum256(tar)
	w.Header().Set("Content-Type", "application/x-tar")
	w.Header().Set("ETag", `"`+hex.EncodeToString(sum[:])+`"`)
	rec := &statusRecorder{ResponseWriter: w}
	http.ServeContent(rec, r, "", time.Time{}, bytes.NewReader(tar))
	if rec.status == http.StatusOK || rec.status == http.StatusPartialContent {
		s.mu.Lock()
		s.assetGets[fmt.Sprintf("%d/%s", id, commit)]++
		s.notifyLocked()
		s.mu.Unlock()
	}
}

type statusRecorder struct {
	http.ResponseWriter
	status int
}

func (r *statusRecorder) WriteHeader(code int) {
	r.status = code
	r.ResponseWriter.WriteHeader(code)
}

func (s *Server) listDevices(w http.ResponseWriter, r *http.Request) {
	s.mu.Lock()
	out := s.devicesLocked()
	s.mu.Unlock()
	writeJSON(w, http.StatusOK, out)
}

func (s *Server) provision(w http.ResponseWriter, r *http.Request) {
	var req struct {
		AppID      json.RawMessage `json:"appId"`
		DeviceType string          `json:"device_type"`
	}
	if !decodeBody(w, r, &req) {
		return
	}
	id, err := strconv.ParseInt(string(req.AppID), 10, 64)
	if err != nil || id <= 0 {
		http.Error(w, api.ErrTextAppIDInvalid, http.StatusBadRequest)
		return
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	a := s.apps[id]
	if a == nil {
		http.Error(w, api.ErrTextProvisioningFailed, http.StatusBadRequest)
		return
	}
	if req.DeviceType == "" {
		req.DeviceType = api.DefaultDeviceType
	}
	s.nextID++
	sum := sha256.Sum256([]byte(fmt.Sprintf("device-%d", s.nextID)))
	uuid := hex.EncodeToString(sum[:16])
	name := fmt.Sprintf("device-%d", s.nextID)
	s.devices[uuid] = &api.Device{
		ID: s.nextID, UUID: uuid, AppID: id, DeviceType: req.DeviceType,
		DeviceID: strconv.FormatInt(40000+s.nextID, 10), Name: name, Status: "Provisioned",
		Environment: api.Vars{}, TargetEnvironment: api.Vars{}, Config: api.Vars{}, TargetConfig: api.Vars{},
	}
	if a.Commit != "" {
		c := a.Commit
		s.devices[uuid].TargetCommit = &c
	}
	s.notifyLocked()
	writeJSON(w, http.StatusCreated, api.ProvisionResponse{ID: 40000 + s.nextID, UUID: uuid, Name: name, DeviceType: req.DeviceType, DeviceName: name})
}

// decodeBody decodes the request's JSON body into v; on malformed JSON it
// answers 400 and returns false.
func decodeBody(w http.ResponseWriter, r *http.Request, v any) bool {
	if err := json.NewDecoder(r.Body).Decode(v); err != nil {
		http.Error(w, api.ErrTextMalformedJSON, http.StatusBadRequest)
		return false
	}
	return true
}

// lookupLocked answers 404 or 410 and returns nil when uuid is not usable.
func (s *Server) lookupLocked(w http.ResponseWriter, uuid string) *api.Device {
	d := s.devices[uuid]
	if d == nil {
		http.Error(w, api.ErrTextDeviceNotFound, http.StatusNotFound)
		return nil
	}
	if s.gone[uuid] {
		http.Error(w, api.ErrTextDeviceDeleted, http.StatusGone)
		return nil
	}
	return d
}

func (s *Server) getDevice(w http.ResponseWriter, r *http.Request) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if d := s.lookupLocked(w, r.PathValue("uuid")); d != nil {
		writeJSON(w, http.StatusOK, d)
	}
}

func (s *Server) putDevice(w http.ResponseWriter, r *http.Request) {
	var u api.DeviceUpdate
	if !decodeBody(w, r, &u) {
		return
	}
	if u.Status == nil && u.IsOnline == nil && u.Commit == nil && u.Environment == nil && u.Config == nil {
		http.Error(w, api.ErrTextNoAttributes, http.StatusBadRequest)
		return
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	uuid := r.PathValue("uuid")
	d := s.lookupLocked(w, uuid)
	if d == nil {
		return
	}
	if u.Status != nil {
		d.Status = *u.Status
	}
	if u.IsOnline != nil {
		v := *u.IsOnline
		d.IsOnline = &v
	}
	if u.Commit != nil {
		c := *u.Commit
		d.Commit = &c
	}
	if u.Environment != nil {
		d.Environment = u.Environment
	}
	if u.Config != nil {
		d.Config = u.Config
	}
	s.updates[uuid] = append(s.updates[uuid], u)
	s.notifyLocked()
	writeJSON(w, http.StatusOK, d)
}

func (s *Server) postLog(w http.ResponseWriter, r *http.Request) {
	var e api.LogEntry
	if !decodeBody(w, r, &e) {
		return
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	uuid := r.PathValue("uuid")
	if s.lookupLocked(w, uuid) == nil {
		return
	}
	s.logs[uuid] = append(s.logs[uuid], e)
	s.notifyLocked()
	w.WriteHeader(http.StatusAccepted)
}
