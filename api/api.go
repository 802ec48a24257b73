// Package api holds the wire types of the balena Supervisor's dependent-device
// API (the endpoints a gateway app calls) and of the hooks the supervisor sends
// to the gateway app, as CONTRACT.md specifies them.
//
// It is a leaf package: it imports only the standard library, so that the
// reference proxy, the fakes, the simulator and third-party clients can share
// one definition of the wire format.
package api

import "encoding/json"

// Vars is an object of environment or configuration variables. Values are
// whatever JSON the writer sent: the cloud only ever sends strings, a gateway
// may report anything, and comparison is done on the canonical JSON encoding.
type Vars map[string]any

// App is one element of GET /v1/dependent-apps.
type App struct {
	ID     int64  `json:"id"`
	Name   string `json:"name"`
	Commit string `json:"commit"`
	// Config is never null on the wire: {} when empty.
	Config Vars `json:"config"`
}

// Device is the dependent-device object of GET /v1/devices, GET and PUT
// /v1/devices/{uuid}. Every field is always present; nullable ones are
// pointers. Environment, TargetEnvironment, Config and TargetConfig are never
// null on the wire ({} when empty).
type Device struct {
	// ID is the local row id of the device in the supervisor's database.
	ID          int64   `json:"id"`
	UUID        string  `json:"uuid"`
	AppID       int64   `json:"appId"`
	DeviceType  string  `json:"device_type"`
	LogsChannel *string `json:"logs_channel"`
	// DeviceID is the cloud's id of the device, as a string.
	DeviceID string `json:"deviceId"`
	// IsOnline is true, false or null; never 0/1.
	IsOnline          *bool    `json:"is_online"`
	Name              string   `json:"name"`
	Status            string   `json:"status"`
	DownloadProgress  *float64 `json:"download_progress"`
	Commit            *string  `json:"commit"`
	TargetCommit      *string  `json:"targetCommit"`
	Environment       Vars     `json:"environment"`
	TargetEnvironment Vars     `json:"targetEnvironment"`
	Config            Vars     `json:"config"`
	TargetConfig      Vars     `json:"targetConfig"`
}

// ProvisionRequest is the body of POST /v1/devices.
type ProvisionRequest struct {
	AppID int64 `json:"appId"`
	// DeviceType, if empty, is generic-amd64.
	DeviceType string `json:"device_type,omitempty"`
}

// ProvisionResponse is the 201 body of POST /v1/devices.
type ProvisionResponse struct {
	// ID is the cloud's device id.
	ID         int64   `json:"id"`
	UUID       string  `json:"uuid"`
	Name       string  `json:"name"`
	Note       *string `json:"note"`
	DeviceType string  `json:"device_type"`
	// DeviceName repeats Name for clients written against later API versions
	// (DEV-PROV-4, reference tier).
	DeviceName string `json:"device_name,omitempty"`
}

// DeviceUpdate is the body of PUT /v1/devices/{uuid}. Nil fields are not
// sent and not changed; an empty but non-nil Environment or Config is sent
// as {} (a report that every variable was removed).
type DeviceUpdate struct {
	Status      *string `json:"status,omitempty"`
	IsOnline    *bool   `json:"is_online,omitempty"`
	Commit      *string `json:"commit,omitempty"`
	Environment Vars    `json:"environment,omitempty"`
	Config      Vars    `json:"config,omitempty"`
}

// MarshalJSON writes the fields that are set, keeping an empty non-nil
// Environment or Config as {} where omitempty would drop it.
func (u DeviceUpdate) MarshalJSON() ([]byte, error) {
	m := make(map[string]any, 5)
	if u.Status != nil {
		m["status"] = *u.Status
	}
	if u.IsOnline != nil {
		m["is_online"] = *u.IsOnline
	}
	if u.Commit != nil {
		m["commit"] = *u.Commit
	}
	if u.Environment != nil {
		m["environment"] = u.Environment
	}
	if u.Config != nil {
		m["config"] = u.Config
	}
	return json.Marshal(m)
}

// LogEntry is the body of POST /v1/devices/{uuid}/logs.
type LogEntry struct {
	Message string `json:"message"`
	// Timestamp, if nil, is set by the supervisor to the receive time in
	// milliseconds since the Unix epoch.
	Timestamp *int64 `json:"timestamp,omitempty"`
	IsSystem  *bool  `json:"isSystem,omitempty"`
}

// UpdateHook is the body of the update hook PUT <base><uuid> that the
// supervisor sends to the gateway app: the device's target.
type UpdateHook struct {
	AppID       int64  `json:"appId"`
	Commit      string `json:"commit"`
	Environment Vars   `json:"environment"`
	Config      Vars   `json:"config"`
}

// Exact error texts of CONTRACT.md (ERR-2). Bodies are plain text.
const (
	ErrTextUnauthorized       = "Unauthorized"
	ErrTextNotFound           = "Not found"
	ErrTextDeviceNotFound     = "Device not found"
	ErrTextDeviceDeleted      = "Device deleted"
	ErrTextAppIDInvalid       = "appId must be a positive integer"
	ErrTextProvisioningFailed = "Provisioning failed, invalid appId or credentials"
	ErrTextIsOnlineInvalid    = "is_online must be a boolean"
	ErrTextStatusInvalid      = "status must be a non-empty string"
	ErrTextCommitInvalid      = "commit must be a non-empty string"
	ErrTextEnvironmentInvalid = "environment must be an object"
	ErrTextConfigInvalid      = "config must be an object"
	ErrTextNoAttributes       = "At least one device attribute must be updated"
	ErrTextMessageInvalid     = "message must be a string"
	ErrTextTimestampInvalid   = "timestamp must be a number"
	ErrTextIsSystemInvalid    = "isSystem must be a boolean"
	ErrTextMalformedJSON      = "Malformed JSON body"
	ErrTextBodyTooLarge       = "Request body too large"
	ErrTextServiceUnavailable = "Service unavailable"
)

// Defaults and limits of the API.
const (
	// DefaultDeviceType is the device type of POST /v1/devices when the body
	// names none.
	DefaultDeviceType = "generic-amd64"
	// DefaultHookAddress is BALENA_DEPENDENT_DEVICES_HOOK_ADDRESS's default.
	DefaultHookAddress = "http://0.0.0.0:1337/v1/devices/"
	// MaxBodyBytes is the largest request body; larger ones get 413.
	MaxBodyBytes int64 = 10 << 20
)
