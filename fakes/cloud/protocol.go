package cloud

import (
	"bufio"
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"regexp"
	"strconv"
	"strings"
	"time"

	cloudapi "github.com/depharness/depharness/api/cloud"
	"github.com/depharness/depharness/internal/httpserver"
)

// Limits of protocol bodies.
const (
	maxJSONBody = 1 << 20 // provisioning and PATCH bodies
	maxLogLine  = 1 << 20 // one line of a log stream
	// maxLogStream bounds one log-stream request, which is taken whole.
	maxLogStream = 64 << 20
)

// gwHandler handles a protocol request of an authenticated gateway.
type gwHandler func(w http.ResponseWriter, r *http.Request, gw *gateway) error

// protocol wraps a protocol handler of route: fault knobs, authentication,
// the error writer, the journal and the metrics.
func (s *Server) protocol(route string, h gwHandler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		start := time.Now()
		sw := &httpserver.StatusRecorder{ResponseWriter: w}
		req := Request{Time: s.now(), Method: r.Method, Path: r.URL.RequestURI(), Route: route}
		var tap *bodyTap
		if r.Body != nil && r.Body != http.NoBody {
			tap = &bodyTap{ReadCloser: r.Body, limit: s.journal.bodyLimit}
			r.Body = tap
		}
		keepBody := func() {
			if tap != nil {
				req.Body, req.BodySize = tap.taken()
			}
		}
		if out, done := s.applyFaults(route, sw, r); done {
			req.Fault, req.Status = out.fault, out.status
			keepBody()
			s.record(req, start)
			if out.drop {
				closeConn(w)
			}
			return
		}
		var gw *gateway
		var err error
		if route != routeUnknown {
			gw, err = s.authenticate(r)
		}
		if gw != nil {
			req.Gateway = gw.uuid
		}
		// DropAnswers, DelayAnswers: the request is handled, its answer
		// held, then lost or sent late.
		var held *heldAnswer
		out := sw
		if af := s.takeAnswerFault(route); af.drop || af.delay > 0 {
			held = &heldAnswer{header: http.Header{}}
			out = &httpserver.StatusRecorder{ResponseWriter: held}
			defer func() {
				keepBody()
				if af.drop {
					req.Fault, req.Status = "drop-answer", 0
					s.record(req, start)
					closeConn(w)
					return
				}
				req.Fault = "delay-answer"
				t := time.NewTimer(af.delay)
				defer t.Stop()
				select {
				case <-t.C:
					held.send(sw)
					req.Status = sw.Status()
				case <-r.Context().Done():
					req.Status = 0 // the client gave up: the answer is lost
				}
				s.record(req, start)
			}()
		}
		if err == nil {
			err = h(out, r, gw)
		}
		if err != nil {
			writeError(s.log, out, err)
		}
		if held != nil {
			return
		}
		req.Status = sw.Status()
		keepBody()
		s.record(req, start)
	})
}

// record adds req to the journal and the metrics.
func (s *Server) record(req Request, start time.Time) {
	req.Duration = time.Since(start)
	code := "closed"
	if req.Status != 0 {
		code = strconv.Itoa(req.Status)
	}
	s.metrics.requests.Observe(code, req.Duration, req.Route)
	s.log.Debug("request", "method", req.Method, "path", req.Path, "route", req.Route, "status", req.Status, "fault", req.Fault, "duration", req.Duration)
	s.mu.Lock()
	s.journal.addLocked(req)
	s.wakeLocked()
	s.mu.Unlock()
}

// authenticate returns the gateway whose api key the request carries as
// "Authorization: Bearer <key>".
func (s *Server) authenticate(r *http.Request) (*gateway, error) {
	scheme, key, ok := strings.Cut(r.Header.Get("Authorization"), " ")
	if !ok || !strings.EqualFold(scheme, "Bearer") || key == "" {
		return nil, errorf(http.StatusUnauthorized, "Unauthorized: a gateway api key is required (Authorization: Bearer <key>)")
	}
	s.mu.Lock()
	gw := s.gatewayByKey[key]
	s.mu.Unlock()
	if gw == nil {
		return nil, errorf(http.StatusUnauthorized, "Unauthorized: unknown api key")
	}
	return gw, nil
}

// checkOwnUUID refuses a path uuid that is not the caller's own.
func checkOwnUUID(r *http.Request, gw *gateway) error {
	if u := r.PathValue("uuid"); u != gw.uuid {
		return errorf(http.StatusForbidden, "Forbidden: the api key is not the key of gateway %q", u)
	}
	return nil
}

func (s *Server) handleState(w http.ResponseWriter, r *http.Request, gw *gateway) error {
	if err := checkOwnUUID(r, gw); err != nil {
		return err
	}
	s.mu.Lock()
	body, etag := s.stateLocked(gw)
	s.mu.Unlock()
	w.Header().Set("ETag", etag)
	w.Header().Set("Cache-Control", "no-cache")
	if etagMatches(r.Header.Get("If-None-Match"), etag) {
		w.WriteHeader(http.StatusNotModified)
		return nil
	}
	w.Header().Set("Content-Type", "application/json")
	w.Header().Set("Content-Length", strconv.Itoa(len(body)))
	_, _ = w.Write(body)
	return nil
}

// decodeBody decodes one JSON value of at most limit bytes from r's body
// into v. Unknown fields are accepted (the historical supervisors sent
// extras); wrong types, malformed JSON and trailing data are not.
func decodeBody(r *http.Request, limit int64, v any) error {
	dec := json.NewDecoder(http.MaxBytesReader(nil, r.Body, limit))
	if err := dec.Decode(v); err != nil {
		var mbe *http.MaxBytesError
		if errors.As(err, &mbe) {
			return errorf(http.StatusRequestEntityTooLarge, "body over %d bytes", limit)
		}
		return errorf(http.StatusBadRequest, "malformed JSON body: %v", err)
	}
	if _, err := dec.Token(); err != io.EOF {
		return errorf(http.StatusBadRequest, "malformed JSON body: data after the JSON value")
	}
	return nil
}

func writeJSON(w http.ResponseWriter, status int, v any) error {
	b, err := json.Marshal(v)
	if err != nil {
		return err
	}
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(status)
	_, _ = w.Write(append(b, '\n'))
	return nil
}

func (s *Server) handleProvision(w http.ResponseWriter, r *http.Request, gw *gateway) error {
	var req cloudapi.ProvisionRequest
	if err := decodeBody(r, maxJSONBody, &req); err != nil {
		return err
	}
	if !uuidRe.MatchString(req.UUID) {
		return errorf(http.StatusBadRequest, "uuid must be 32 lowercase hex characters, got %q", req.UUID)
	}
	if req.DeviceType == "" {
		return errorf(http.StatusBadRequest, "device_type is required")
	}
	out, err := s.provision(gw, req)
	if err != nil {
		return err
	}
	return writeJSON(w, http.StatusCreated, out)
}

// provision creates the device of a validated provisioning request of gw.
func (s *Server) provision(gw *gateway, req cloudapi.ProvisionRequest) (cloudapi.Device, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	a := s.apps[req.BelongsToApplication]
	if a == nil || a.parent != gw.app {
		return cloudapi.Device{}, errorf(http.StatusBadRequest, "belongs_to__application %d is not a dependent application of this gateway's application", req.BelongsToApplication)
	}
	if req.IsManagedByDevice != gw.deviceID {
		return cloudapi.Device{}, errorf(http.StatusBadRequest, "is_managed_by__device %d is not the calling gateway (device %d)", req.IsManagedByDevice, gw.deviceID)
	}
	if s.devices[req.UUID] != nil || s.gateways[req.UUID] != nil {
		return cloudapi.Device{}, errorf(http.StatusConflict, "a device with uuid %s already exists", req.UUID)
	}
	registered := s.now()
	if req.RegisteredAt > 0 {
		registered = time.Unix(req.RegisteredAt, 0)
	}
	d := &device{
		id:           s.allocDeviceIDLocked(),
		uuid:         req.UUID,
		name:         s.nameLocked(),
		deviceType:   req.DeviceType,
		app:          a,
		gateway:      gw,
		registeredAt: registered,
		origin:       OriginProvisioned,
	}
	s.addDeviceLocked(d)
	s.notifyLocked()
	return cloudDeviceLocked(d), nil
}

var patchPathRe = regexp.MustCompile(`^/v6/device\(([0-9]{1,18})\)$`)

func (s *Server) handlePatch(w http.ResponseWriter, r *http.Request, gw *gateway) error {
	m := patchPathRe.FindStringSubmatch(r.URL.Path)
	if m == nil {
		return errorf(http.StatusBadRequest, "bad device path %q: want /v6/device(<id>)", r.URL.Path)
	}
	id, _ := strconv.ParseInt(m[1], 10, 64)
	var p cloudapi.DevicePatch
	if err := decodeBody(r, maxJSONBody, &p); err != nil {
		return err
	}
	if p.Status == nil && p.IsOnline == nil && p.IsOnCommit == nil {
		return errorf(http.StatusBadRequest, "nothing to update: want any of status, is_online, is_on__commit")
	}
	if p.Status != nil && *p.Status == "" {
		return errorf(http.StatusBadRequest, "status must be a non-empty string")
	}
	if p.IsOnCommit != nil && *p.IsOnCommit == "" {
		return errorf(http.StatusBadRequest, "is_on__commit must be a non-empty string")
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	d := s.devicesByID[id]
	if d == nil || d.gateway != gw {
		return errorf(http.StatusNotFound, "no device %d managed by this gateway", id)
	}
	if p.Status != nil {
		d.status = *s.reportedLocked(*p.Status)
	}
	if p.IsOnline != nil {
		d.isOnline = *p.IsOnline
	}
	if p.IsOnCommit != nil {
		d.isOnCommit = s.reportedLocked(*p.IsOnCommit) // shared: never modified in place
	}
	s.notifyLocked()
	w.Header().Set("Content-Type", "text/plain; charset=utf-8")
	_, _ = io.WriteString(w, "OK")
	return nil
}

// filterRe is the one $filter the fake understands; ” inside the quotes is
// an escaped quote (OData).
var filterRe = regexp.MustCompile(`^uuid eq '((?:[^']|'')*)'$`)

func (s *Server) handleGet(w http.ResponseWriter, r *http.Request, gw *gateway) error {
	q, err := url.ParseQuery(r.URL.RawQuery)
	if err != nil {
		return errorf(http.StatusBadRequest, "bad query: %v", err)
	}
	for k := range q {
		if k != "$filter" && k != "$select" {
			return errorf(http.StatusBadRequest, "query parameter %q is not understood by the fake cloud (only $filter=uuid eq '<uuid>' and $select)", k)
		}
	}
	if len(q["$filter"]) != 1 {
		return errorf(http.StatusBadRequest, "exactly one $filter is required: $filter=uuid eq '<uuid>'")
	}
	m := filterRe.FindStringSubmatch(q.Get("$filter"))
	if m == nil {
		return errorf(http.StatusBadRequest, "$filter %q is not understood by the fake cloud (only uuid eq '<uuid>')", q.Get("$filter"))
	}
	uuid := strings.ReplaceAll(m[1], "''", "'")
	s.mu.Lock()
	list := cloudapi.DeviceList{D: []cloudapi.Device{}}
	if d := s.devices[uuid]; d != nil && d.gateway == gw {
		list.D = append(list.D, cloudDeviceLocked(d))
	}
	s.mu.Unlock()
	return writeJSON(w, http.StatusOK, list)
}

// handleLogs takes a log stream whole or refuses it whole (CLOUD-LOGS): it
// reads and checks every line first, and only when all are good stores them
// together, so that no line of a refused request is kept (a supervisor that
// re-sends the good lines of a refused batch must not create duplicates).
// A malformed line answers 400, a line over maxLogLine or a stream over
// maxLogStream 413. Lines for a uuid that is not a dependent device of the
// calling gateway are dropped and counted (Gateway.DroppedLogs and
// depharness_cloud_log_lines_total{result="unknown_device"}): a supervisor
// legitimately sends buffered lines of a device deleted meanwhile.
func (s *Server) handleLogs(w http.ResponseWriter, r *http.Request, gw *gateway) error {
	if err := checkOwnUUID(r, gw); err != nil {
		return err
	}
	body := http.MaxBytesReader(nil, r.Body, maxLogStream)
	sc := bufio.NewScanner(body)
	sc.Buffer(make([]byte, 0, 64<<10), maxLogLine)
	var lines []cloudapi.LogLine
	n := 0
	for sc.Scan() {
		n++
		b := bytes.TrimSpace(sc.Bytes())
		if len(b) == 0 {
			continue
		}
		var l cloudapi.LogLine
		if err := json.Unmarshal(b, &l); err != nil {
			return errorf(http.StatusBadRequest, "line %d: malformed JSON: %v (nothing of this request was stored)", n, err)
		}
		if l.UUID == "" {
			return errorf(http.StatusBadRequest, "line %d: uuid is required (nothing of this request was stored)", n)
		}
		if s.logLineRefused(l.Message) {
			return errorf(http.StatusBadRequest, "line %d: refused (injected; nothing of this request was stored)", n)
		}
		lines = append(lines, l)
	}
	if err := sc.Err(); err != nil {
		if errors.Is(err, bufio.ErrTooLong) {
			return errorf(http.StatusRequestEntityTooLarge, "line %d: over %d bytes (nothing of this request was stored)", n+1, maxLogLine)
		}
		if errors.As(err, new(*http.MaxBytesError)) {
			return errorf(http.StatusRequestEntityTooLarge, "log stream over %d bytes (nothing of this request was stored)", maxLogStream)
		}
		return errorf(http.StatusBadRequest, "reading the log stream: %v (nothing of this request was stored)", err)
	}
	stored, dropped := 0, 0
	s.mu.Lock()
	for _, l := range lines {
		if d := s.devices[l.UUID]; d != nil && d.gateway == gw {
			s.appendLogLocked(d, l)
			stored++
		} else {
			gw.droppedLogs++
			dropped++
		}
	}
	if len(lines) > 0 {
		s.notifyLocked()
	}
	s.mu.Unlock()
	s.metrics.logLines.WithLabelValues("stored").Add(float64(stored))
	s.metrics.logLines.WithLabelValues("unknown_device").Add(float64(dropped))
	w.Header().Set("Content-Type", "text/plain; charset=utf-8")
	fmt.Fprintf(w, "stored %d, dropped %d (unknown device)\n", stored, dropped)
	return nil
}

// appendLogLocked keeps l for d. Beyond the bound the oldest lines go
// (compacted in batches, so appending stays O(1) amortized).
func (s *Server) appendLogLocked(d *device, l cloudapi.LogLine) {
	d.logs = append(d.logs, l)
	d.logCount++
	if len(d.logs) >= 2*s.logsPerDevice {
		d.logs = append(d.logs[:0], d.logs[len(d.logs)-s.logsPerDevice:]...)
	}
}

// logsLocked returns a copy of the retained log lines of d, oldest first.
func (s *Server) logsLocked(d *device) []cloudapi.LogLine {
	l := d.logs
	if len(l) > s.logsPerDevice {
		l = l[len(l)-s.logsPerDevice:]
	}
	return append([]cloudapi.LogLine(nil), l...)
}

func (s *Server) handleUnknown(w http.ResponseWriter, r *http.Request, _ *gateway) error {
	s.log.Warn("request the fake cloud does not understand", "method", r.Method, "path", r.URL.RequestURI())
	return errorf(http.StatusNotFound, "fake cloud: no route for %s %s", r.Method, r.URL.Path)
}

// handleV6 routes /v6/ by hand: the device path /v6/device(<id>) cannot be
// matched by ServeMux patterns.
func (s *Server) handleV6(w http.ResponseWriter, r *http.Request) {
	p := r.URL.Path
	switch {
	case p == "/v6/device" && r.Method == http.MethodGet:
		s.v6Get.ServeHTTP(w, r)
	case p == "/v6/device" && r.Method == http.MethodPost:
		s.v6Provision.ServeHTTP(w, r)
	case strings.HasPrefix(p, "/v6/device(") && r.Method == http.MethodPatch:
		s.v6Patch.ServeHTTP(w, r)
	default:
		s.unknown.ServeHTTP(w, r)
	}
}
