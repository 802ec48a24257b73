// Package cloud holds the wire types of the cloud protocol that a
// supervisor speaks to the balena API for its dependent devices (CONTRACT.md,
// "Cloud protocol"): the dependent target state, provisioning, device PATCH
// and lookup, and the log stream.
//
// It is a leaf package: it imports only the standard library. The reference
// proxy's cloud client and the fake cloud both use it.
package cloud

import "encoding/json"

// Paths of the cloud protocol. %s is the gateway's uuid, %d a device id.
const (
	PathStateFmt     = "/device/v2/%s/state"
	PathLogStreamFmt = "/device/v2/%s/log-stream"
	PathDevices      = "/v6/device"
	PathDeviceFmt    = "/v6/device(%d)"
)

// TargetState is the body of GET /device/v2/<gatewayUuid>/state.
type TargetState struct {
	// Local is the gateway's own target; dependent-device code ignores it.
	Local     json.RawMessage `json:"local"`
	Dependent Dependent       `json:"dependent"`
}

// Dependent is the dependent section of the target state.
type Dependent struct {
	// Apps is keyed by the decimal dependent app id.
	Apps map[string]DependentApp `json:"apps"`
	// Devices is keyed by dependent device uuid.
	Devices map[string]DependentDevice `json:"devices"`
}

// DependentApp is one dependent app of the target state. Commit, ReleaseID and
// Image are absent while the app has no release.
type DependentApp struct {
	Name      string            `json:"name"`
	ParentApp int64             `json:"parentApp"`
	Config    map[string]string `json:"config"`
	Commit    string            `json:"commit,omitempty"`
	ReleaseID int64             `json:"releaseId,omitempty"`
	// Image is a full registry reference, host:port/repo@sha256:<hex>.
	Image string `json:"image,omitempty"`
}

// DependentDevice is one dependent device of the target state.
type DependentDevice struct {
	Name string `json:"name"`
	// Restart is a counter the cloud increases for every restart request.
	Restart int64 `json:"restart,omitempty"`
	// Apps is keyed by the decimal dependent app id (one entry).
	Apps map[string]DeviceAppTarget `json:"apps"`
}

// DeviceAppTarget is a device's target environment and configuration for its
// app, with app-level variables already merged under device-level ones.
type DeviceAppTarget struct {
	Config      map[string]string `json:"config"`
	Environment map[string]string `json:"environment"`
}

// ProvisionRequest is the body of POST /v6/device.
type ProvisionRequest struct {
	BelongsToApplication int64  `json:"belongs_to__application"`
	DeviceType           string `json:"device_type"`
	IsManagedByDevice    int64  `json:"is_managed_by__device"`
	UUID                 string `json:"uuid"`
	// RegisteredAt is in seconds since the Unix epoch.
	RegisteredAt int64 `json:"registered_at"`
}

// Ref is an OData navigation reference, {"__id": N}.
type Ref struct {
	ID int64 `json:"__id"`
}

// Device is the cloud's device resource as returned by POST /v6/device and
// GET /v6/device.
type Device struct {
	ID                   int64   `json:"id"`
	UUID                 string  `json:"uuid"`
	DeviceName           string  `json:"device_name"`
	DeviceType           string  `json:"device_type"`
	Note                 *string `json:"note"`
	BelongsToApplication Ref     `json:"belongs_to__application"`
	IsManagedByDevice    *Ref    `json:"is_managed_by__device"`
	LogsChannel          *string `json:"logs_channel"`
	Status               string  `json:"status"`
	IsOnline             bool    `json:"is_online"`
	IsOnCommit           *string `json:"is_on__commit"`
}

// DeviceList is the body of GET /v6/device?$filter=….
type DeviceList struct {
	D []Device `json:"d"`
}

// DevicePatch is the body of PATCH /v6/device(<id>). Nil fields are absent.
type DevicePatch struct {
	Status     *string `json:"status,omitempty"`
	IsOnline   *bool   `json:"is_online,omitempty"`
	IsOnCommit *string `json:"is_on__commit,omitempty"`
}

// LogLine is one newline-delimited JSON line of POST
// /device/v2/<gatewayUuid>/log-stream.
type LogLine struct {
	UUID    string `json:"uuid"`
	Message string `json:"message"`
	// Timestamp is in milliseconds since the Unix epoch.
	Timestamp int64 `json:"timestamp"`
	IsSystem  bool  `json:"isSystem"`
}
