package httpapi

import (
	"context"
	"encoding/json"
	"errors"
	"net/http"
	"time"

	"github.com/depharness/depharness/api"
	"github.com/depharness/depharness/api/cloud"
	"github.com/depharness/depharness/internal/jsonstr"
	"github.com/depharness/depharness/proxy/cloudclient"
	"github.com/depharness/depharness/proxy/store"
)

// provisionTimeout bounds provisioning (cloud call and store write). It runs
// detached from the client's connection: a device the cloud created is
// stored even if the client gave up waiting.
const provisionTimeout = 30 * time.Second

// deviceError maps the store's lookup errors to the API's.
func deviceError(err error) error {
	switch {
	case errors.Is(err, store.ErrNotFound):
		return errDeviceNotFound
	case errors.Is(err, store.ErrDeleted):
		return errDeviceDeleted
	}
	return unavailable(err)
}

// writeDevice sends d as a device object with status.
func (h *Handler) writeDevice(w http.ResponseWriter, status int, d *store.Device) error {
	bp := getBuf()
	defer putBuf(bp)
	v := d.View()
	b, err := appendDevice(*bp, &v, h.v.On("put-isonline-number"))
	if err != nil {
		return unavailable(err)
	}
	*bp = b
	if h.v.On("put-reply-appid-string") {
		b = appIDAsString(b, d.AppID)
	}
	writeJSON(w, status, b)
	return nil
}

// listDevices is GET /v1/devices (DEV-LIST-1): every device, including those
// awaiting a delete acknowledgement.
func (h *Handler) listDevices(w http.ResponseWriter, r *http.Request) error {
	gen := h.opts.Store.Generation()
	if body, ok := h.cache.deviceList(gen); ok {
		writeParts(w, http.StatusOK, body)
		return nil
	}
	body, at, err := h.listBody(r.Context())
	if err != nil {
		return unavailable(err)
	}
	h.cache.putDeviceList(at, body)
	writeParts(w, http.StatusOK, body)
	return nil
}

// getDevice is GET /v1/devices/{uuid} (DEV-GET-1).
func (h *Handler) getDevice(w http.ResponseWriter, r *http.Request) error {
	uuid := r.PathValue("uuid")
	gen := h.opts.Store.Generation()
	if body, at, ok := h.cache.device(uuid); ok && (at == gen || !h.opts.Store.DeviceChangedSince(uuid, at)) {
		writeJSON(w, http.StatusOK, body)
		return nil
	}
	d, err := h.opts.Store.DeviceByUUID(r.Context(), uuid)
	if err != nil {
		return deviceError(err)
	}
	if d.MarkedForDelete && !h.v.On("get-marked-200") {
		return errDeviceDeleted
	}
	v := d.View()
	body, err := appendDevice(make([]byte, 0, 512), &v, h.v.On("put-isonline-number"))
	if err != nil {
		return unavailable(err)
	}
	h.cache.putDevice(uuid, gen, body)
	writeJSON(w, http.StatusOK, body)
	return nil
}

// provision is POST /v1/devices (DEV-PROV-1..4).
func (h *Handler) provision(w http.ResponseWriter, r *http.Request) error {
	m, err := h.readObject(w, r)
	if err != nil {
		return err
	}
	appID, ok := jsonInteger(m["appId"])
	if s, isString := jsonString(m["appId"]); isString && !ok && h.v.On("provision-appid-string-ok") {
		appID, ok = jsonInteger(json.RawMessage(s))
	}
	if !ok || (appID <= 0 && !h.v.On("provision-appid-zero-ok")) {
		return errAppIDInvalid
	}
	deviceType := h.deviceTypeDefault()
	if raw, present := m["device_type"]; present && string(raw) != "null" {
		s, ok := jsonString(raw)
		if !ok || s == "" {
			return errDeviceType
		}
		deviceType = s
	}
	uuid, err := h.newUUID()
	if err != nil {
		return unavailable(err)
	}
	ctx, cancel := context.WithTimeout(context.WithoutCancel(r.Context()), provisionTimeout)
	defer cancel()
	cd, err := h.opts.Cloud.Provision(ctx, appID, deviceType, uuid)
	if err != nil {
		if cloudclient.IsRejected(err) && !h.v.On("provision-cloud-error-503") {
			return &Error{Status: http.StatusBadRequest, Text: api.ErrTextProvisioningFailed, Cause: err}
		}
		return unavailable(err)
	}
	if cd.DeviceType != "" {
		deviceType = cd.DeviceType
	}
	nd := store.NewDevice{
		UUID: uuid, AppID: appID, DeviceType: deviceType, CloudID: cd.ID,
		Name: cd.DeviceName, Note: cd.Note, LogsChannel: cd.LogsChannel, Status: cd.Status,
	}
	if h.v.Allows("online-from-cloud") {
		// Other initial values within their types, as another supervisor
		// may set them: is_online from the cloud's answer, no download yet.
		online, progress, channel := cd.IsOnline, 0.0, "logs-"+uuid
		nd.IsOnline, nd.DownloadProgress = &online, &progress
		nd.Status, nd.Name = "Idle", "device-"+uuid[:7]
		if nd.LogsChannel == nil {
			nd.LogsChannel = &channel
		}
	}
	if _, err := h.opts.Store.InsertProvisioned(ctx, nd); err != nil {
		return unavailable(err)
	}
	h.log.Info("device provisioned", "uuid", uuid, "app", appID, "cloud_id", cd.ID)
	if h.opts.OnProvisioned != nil {
		h.opts.OnProvisioned()
	}
	resp := api.ProvisionResponse{ID: cd.ID, UUID: uuid, Name: cd.DeviceName, Note: cd.Note, DeviceType: deviceType}
	if !h.v.On("provision-no-device-name") {
		resp.DeviceName = cd.DeviceName
	}
	return writeValue(w, http.StatusCreated, resp)
}

// parseReport validates a PUT body (DEV-PUT-1, -2, -5): each known member
// must have its exact JSON type; unknown members are ignored.
func (h *Handler) parseReport(m map[string]json.RawMessage) (store.Report, error) {
	var rep store.Report
	if raw, ok := m["is_online"]; ok {
		v, ok := jsonBool(raw)
		if !ok {
			return rep, errIsOnline
		}
		rep.IsOnline = &v
	}
	if raw, ok := m["status"]; ok {
		s, ok := jsonString(raw)
		if !ok || s == "" {
			return rep, errStatus
		}
		rep.Status = &s
	}
	if raw, ok := m["commit"]; ok {
		s, ok := jsonString(raw)
		if !ok || s == "" {
			return rep, errCommit
		}
		rep.Commit = &s
	}
	arraysOK := h.v.On("put-array-env-ok")
	for _, f := range []struct {
		name string
		dst  *json.RawMessage
		err  error
	}{{"environment", &rep.Environment, errEnvironment}, {"config", &rep.Config, errConfig}} {
		raw, ok := m[f.name]
		if !ok {
			continue
		}
		switch {
		case jsonObject(raw):
			*f.dst = raw
		case arraysOK && len(raw) > 0 && raw[0] == '[':
			*f.dst = json.RawMessage("{}")
		default:
			return rep, f.err
		}
	}
	return rep, nil
}

// putDevice is PUT /v1/devices/{uuid} (DEV-PUT-1..6). The body is validated
// before the lookup; the change and its cloud patch are stored in one
// transaction and the answer does not wait for the cloud.
func (h *Handler) putDevice(w http.ResponseWriter, r *http.Request) error {
	uuid := r.PathValue("uuid")
	ctx := r.Context()
	if h.v.On("put-lookup-first") {
		d, err := h.opts.Store.DeviceByUUID(ctx, uuid)
		if err != nil {
			return deviceError(err)
		}
		if d.MarkedForDelete && !h.v.On("put-marked-200") {
			return errDeviceDeleted
		}
	}
	m, err := h.readObject(w, r)
	if err != nil {
		return err
	}
	rep, err := h.parseReport(m)
	if err != nil {
		return err
	}
	if rep.Empty() {
		if !h.v.On("put-no-attr-200") {
			return errNoAttributes
		}
		return h.currentDevice(w, r, uuid)
	}
	d, _, err := h.opts.Store.ApplyReport(ctx, uuid, rep)
	if errors.Is(err, store.ErrDeleted) && h.v.On("put-marked-200") {
		return h.currentDevice(w, r, uuid)
	}
	if err != nil {
		return deviceError(err)
	}
	if h.v.On("put-cloud-fail-500") {
		if err := h.patchNow(ctx, d.CloudID, rep); cloudclient.IsUnavailable(err) {
			return &Error{Status: http.StatusInternalServerError, Text: "Internal server error", Cause: err}
		}
	}
	if h.opts.OnDeviceReported != nil {
		h.opts.OnDeviceReported(uuid, rep.Commit != nil || rep.Environment != nil || rep.Config != nil)
	}
	return h.writeDevice(w, http.StatusOK, &d)
}

// currentDevice answers 200 with the stored device, changing nothing (for
// the violations that accept what they must refuse).
func (h *Handler) currentDevice(w http.ResponseWriter, r *http.Request, uuid string) error {
	d, err := h.opts.Store.DeviceByUUID(r.Context(), uuid)
	if err != nil {
		return deviceError(err)
	}
	if d.MarkedForDelete && !h.v.On("put-marked-200") {
		return errDeviceDeleted
	}
	return h.writeDevice(w, http.StatusOK, &d)
}

// postLog is POST /v1/devices/{uuid}/logs (DEV-LOG-1, -2): the line is
// buffered durably for the cloud and answered 202.
func (h *Handler) postLog(w http.ResponseWriter, r *http.Request) error {
	uuid := r.PathValue("uuid")
	m, err := h.readObject(w, r)
	if err != nil {
		return err
	}
	msg, ok := jsonString(m["message"])
	if !ok {
		return errMessage
	}
	line := cloud.LogLine{UUID: uuid, Message: msg}
	if raw, present := m["timestamp"]; present {
		if line.Timestamp, ok = jsonNumberMillis(raw); !ok {
			return errTimestamp
		}
	} else if !h.v.On("logs-no-default-timestamp") {
		line.Timestamp = h.now().UnixMilli()
	}
	if raw, present := m["isSystem"]; present {
		if line.IsSystem, ok = jsonBool(raw); !ok {
			return errIsSystem
		}
	}
	payload, err := jsonstr.Marshal(line)
	if err != nil {
		return unavailable(err)
	}
	if limit := h.opts.MaxLogLineBytes; limit > 0 && len(payload) > limit {
		if payload, err = truncateLogLine(line, limit); err != nil {
			return unavailable(err)
		}
		h.metrics.logsCut.Inc()
	}
	dropped, err := h.opts.Store.AppendLogBounded(r.Context(), uuid, payload, h.opts.MaxLogLines, h.opts.MaxLogBytes)
	switch {
	case errors.Is(err, store.ErrDeleted) && h.v.On("logs-marked-202"):
		// accepted and discarded
	case err != nil:
		return deviceError(err)
	}
	if dropped > 0 {
		h.metrics.logsDropped.Add(float64(dropped))
		h.log.Warn("log buffer full: oldest lines dropped", "dropped", dropped)
	}
	if err == nil && h.opts.OnLogAccepted != nil {
		h.opts.OnLogAccepted(uuid)
	}
	status := http.StatusAccepted
	if h.v.On("logs-200") {
		status = http.StatusOK
	}
	w.Header().Set("Content-Length", "0")
	w.WriteHeader(status)
	return nil
}
