package httpapi

import (
	"encoding/json"
	"fmt"
	"math"
	"net/http"
	"strconv"
	"sync"

	"github.com/depharness/depharness/api"
	"github.com/depharness/depharness/internal/jsonstr"
	"github.com/depharness/depharness/proxy/store"
)

// Device objects are written by appendDevice, straight from store rows,
// rather than through api.Device and encoding/json: a list of 10,000
// devices must stay well under 50 ms, and decoding each stored object into
// an api.Vars only to encode it again costs most of that. toAPIDevice is the
// same mapping through the shared wire type; tests hold the two equal.

// toAPIDevice maps a store row to the wire type: objects never null
// (never-reported environment/config are {}), deviceId the cloud id as a
// string, targetCommit the app's current (downloaded) commit.
func toAPIDevice(d *store.DeviceView) (api.Device, error) {
	out := api.Device{
		ID:               d.ID,
		UUID:             d.UUID,
		AppID:            d.AppID,
		DeviceType:       d.DeviceType,
		LogsChannel:      d.LogsChannel,
		DeviceID:         strconv.FormatInt(d.CloudID, 10),
		IsOnline:         d.IsOnline,
		Name:             d.Name,
		Status:           d.Status,
		DownloadProgress: d.DownloadProgress,
		Commit:           d.ReportedCommit,
		TargetCommit:     d.AppCurrentCommit,
	}
	for _, f := range []struct {
		dst *api.Vars
		raw json.RawMessage
	}{
		{&out.Environment, d.Environment}, {&out.TargetEnvironment, d.TargetEnvironment},
		{&out.Config, d.Config}, {&out.TargetConfig, d.TargetConfig},
	} {
		v := api.Vars{}
		if len(f.raw) > 0 {
			if err := json.Unmarshal(f.raw, &v); err != nil {
				return api.Device{}, fmt.Errorf("device %s: stored object: %w", d.UUID, err)
			}
			if v == nil {
				v = api.Vars{}
			}
		}
		*f.dst = v
	}
	return out, nil
}

// appendDevice appends d's JSON device object to b. With numericOnline
// (the put-isonline-number violation) is_online is written as 0/1.
func appendDevice(b []byte, d *store.DeviceView, numericOnline bool) ([]byte, error) {
	b = append(b, `{"id":`...)
	b = strconv.AppendInt(b, d.ID, 10)
	b = append(b, `,"uuid":`...)
	b = jsonstr.Append(b, d.UUID)
	b = append(b, `,"appId":`...)
	b = strconv.AppendInt(b, d.AppID, 10)
	b = append(b, `,"device_type":`...)
	b = jsonstr.Append(b, d.DeviceType)
	b = append(b, `,"logs_channel":`...)
	b = appendStringPtr(b, d.LogsChannel)
	b = append(b, `,"deviceId":"`...)
	b = strconv.AppendInt(b, d.CloudID, 10)
	b = append(b, `","is_online":`...)
	switch {
	case d.IsOnline == nil:
		b = append(b, "null"...)
	case numericOnline && *d.IsOnline:
		b = append(b, '1')
	case numericOnline:
		b = append(b, '0')
	default:
		b = strconv.AppendBool(b, *d.IsOnline)
	}
	b = append(b, `,"name":`...)
	b = jsonstr.Append(b, d.Name)
	b = append(b, `,"status":`...)
	b = jsonstr.Append(b, d.Status)
	b = append(b, `,"download_progress":`...)
	b = appendFloatPtr(b, d.DownloadProgress)
	b = append(b, `,"commit":`...)
	b = appendStringPtr(b, d.ReportedCommit)
	b = append(b, `,"targetCommit":`...)
	b = appendStringPtr(b, d.AppCurrentCommit)
	var err error
	for _, f := range []struct {
		key string
		raw json.RawMessage
	}{
		{`,"environment":`, d.Environment}, {`,"targetEnvironment":`, d.TargetEnvironment},
		{`,"config":`, d.Config}, {`,"targetConfig":`, d.TargetConfig},
	} {
		b = append(b, f.key...)
		if b, err = appendObject(b, f.raw); err != nil {
			return nil, fmt.Errorf("device %s: %w", d.UUID, err)
		}
	}
	return append(b, '}'), nil
}

// appendObject appends a stored JSON object; nil (never reported) is {}.
// Stored objects were validated as JSON objects when written (the store's
// ApplyReport and ApplyTarget); here only their braces are checked, since a
// full validation would cost a fifth of listing 10,000 devices.
func appendObject(b []byte, raw json.RawMessage) ([]byte, error) {
	if len(raw) == 0 {
		return append(b, "{}"...), nil
	}
	if len(raw) < 2 || raw[0] != '{' || raw[len(raw)-1] != '}' {
		return nil, fmt.Errorf("stored value %.40q is not a JSON object", raw)
	}
	return append(b, raw...), nil
}

func appendStringPtr(b []byte, s *string) []byte {
	if s == nil {
		return append(b, "null"...)
	}
	return jsonstr.Append(b, *s)
}

// appendFloatPtr appends f as encoding/json would; NaN and infinities,
// which JSON cannot hold, as null.
func appendFloatPtr(b []byte, f *float64) []byte {
	if f == nil || math.IsNaN(*f) || math.IsInf(*f, 0) {
		return append(b, "null"...)
	}
	v := *f
	format := byte('f')
	if abs := math.Abs(v); abs != 0 && (abs < 1e-6 || abs >= 1e21) {
		format = 'e'
	}
	b = strconv.AppendFloat(b, v, format, -1, 64)
	if format == 'e' {
		// e-09 → e-9, as encoding/json writes it.
		if n := len(b); n >= 4 && b[n-4] == 'e' && b[n-3] == '-' && b[n-2] == '0' {
			b[n-2] = b[n-1]
			b = b[:n-1]
		}
	}
	return b
}

// bufPool recycles the buffers of device responses to writes (reads are
// encoded into the bodies the read cache keeps).
var bufPool = sync.Pool{New: func() any { b := make([]byte, 0, 4096); return &b }}

func getBuf() *[]byte { return bufPool.Get().(*[]byte) }

func putBuf(b *[]byte) {
	if cap(*b) > 64<<10 {
		return
	}
	*b = (*b)[:0]
	bufPool.Put(b)
}

// writeJSON sends body as an application/json response.
func writeJSON(w http.ResponseWriter, status int, body []byte) {
	h := w.Header()
	h.Set("Content-Type", "application/json; charset=utf-8")
	h.Set("Content-Length", strconv.Itoa(len(body)))
	w.WriteHeader(status)
	w.Write(body)
}

// writeParts sends the parts of body, one after the other, as an
// application/json response.
func writeParts(w http.ResponseWriter, status int, body *listParts) {
	h := w.Header()
	h.Set("Content-Type", "application/json; charset=utf-8")
	h.Set("Content-Length", strconv.Itoa(body.size))
	w.WriteHeader(status)
	for _, p := range body.parts {
		if _, err := w.Write(p); err != nil {
			return
		}
	}
}

// writeValue sends v encoded by encoding/json (HTML escaping off).
func writeValue(w http.ResponseWriter, status int, v any) error {
	b, err := jsonstr.Marshal(v)
	if err != nil {
		return err
	}
	writeJSON(w, status, b)
	return nil
}
