package cloud

import (
	"time"

	cloudapi "github.com/depharness/depharness/api/cloud"
)

// model is the fake cloud's whole state. Every field is guarded by
// Server.mu; functions that expect the lock held end in Locked.
type model struct {
	gatewayApps   map[int64]*gatewayApp
	gateways      map[string]*gateway // by uuid
	gatewayByKey  map[string]*gateway // by api key
	apps          map[int64]*app      // dependent apps
	devices       map[string]*device  // dependent devices by uuid
	devicesByID   map[int64]*device
	appIDs        map[int64]bool // every application id in use (gateway and dependent)
	deviceIDs     map[int64]bool // every device id in use (gateway and dependent)
	nextAppID     int64
	nextDeviceID  int64
	nextReleaseID int64
	logsPerDevice int
	// reported holds the values devices report (statuses and commits),
	// one copy of each, so that a fleet reporting the same release does not
	// hold a copy a device; forgotten when it grows past maxReported
	// (distinct values come and go). Its strings are never modified.
	reported map[string]*string
}

// maxReported bounds model.reported.
const maxReported = 4096

// reportedLocked returns the shared copy of v.
func (m *model) reportedLocked(v string) *string {
	if p, ok := m.reported[v]; ok {
		return p
	}
	if m.reported == nil || len(m.reported) >= maxReported {
		m.reported = map[string]*string{}
	}
	m.reported[v] = &v
	return &v
}

// gatewayApp is the application a gateway device belongs to; dependent apps
// name it as their parentApp.
type gatewayApp struct {
	id       int64
	name     string
	gateways map[string]*gateway
	apps     map[int64]*app // dependent apps whose parent is this app
}

// gateway is a gateway device: the identity a supervisor speaks as.
type gateway struct {
	uuid     string
	deviceID int64
	apiKey   string
	name     string
	app      *gatewayApp
	devices  map[string]*device // dependent devices it manages

	// version counts changes of the gateway's target state; the rendered
	// document is cached for one version.
	version      uint64
	cacheVersion uint64
	cacheBody    []byte
	cacheETag    string
	cacheRender  uint64 // the render cacheBody came from (renderSeq)
	renders      uint64
	droppedLogs  int64
	// order is the devices sorted by uuid, valid while orderValid, less
	// those added since (added): a device leaving the gateway invalidates
	// it, one joining is merged in at the next render rather than sorting
	// all again (provisioning adds one device at a time to many).
	order      []*device
	orderValid bool
	added      []*device
}

// app is a dependent application.
type app struct {
	id     int64
	name   string
	parent *gatewayApp
	// config and env are never changed in place but replaced (UpdateVars),
	// so that a snapshot of the model may share them.
	config   map[string]string
	env      map[string]string
	release  *Release
	releases []Release
	devices  map[string]*device
	// varsVersion counts changes of config/env, which every device
	// fragment of the state document depends on.
	varsVersion uint64
}

// device is a dependent device.
type device struct {
	id         int64
	uuid       string
	name       string
	deviceType string
	app        *app
	gateway    *gateway
	// env and config are never changed in place but replaced, as an
	// app's; nil until the device has a variable of its own (an empty map
	// per device costs a large fleet ~100 bytes a device).
	env          map[string]string
	config       map[string]string
	restart      int64
	registeredAt time.Time
	origin       string

	// The cloud's view of the device, set by PATCH.
	status     string
	isOnline   bool
	isOnCommit *string

	logs     []cloudapi.LogLine
	logCount int

	// version counts changes of the device's target. Its entry of the
	// state document is remembered as a place (fragAt, fragLen) in the
	// document of render fragRender (0: none), valid while the device's
	// version, app and app variables are those it was rendered for: the next
	// render copies it from there instead of rendering it again, and a
	// device keeps no copy of its own (~180 bytes a device).
	version     uint64
	fragRender  uint64
	fragAt      int
	fragLen     int
	fragVersion uint64
	fragAppVars uint64
	fragApp     *app
}

// Origins of a dependent device.
const (
	OriginProvisioned = "provisioned" // POST /v6/device by a gateway
	OriginCreated     = "created"     // control API, "provisioned elsewhere"
)

func (m *model) init() {
	m.gatewayApps = map[int64]*gatewayApp{}
	m.gateways = map[string]*gateway{}
	m.gatewayByKey = map[string]*gateway{}
	m.apps = map[int64]*app{}
	m.devices = map[string]*device{}
	m.devicesByID = map[int64]*device{}
	m.appIDs = map[int64]bool{}
	m.deviceIDs = map[int64]bool{}
	m.nextAppID = 1
	m.nextDeviceID = 1
	m.nextReleaseID = 1
}

// allocAppIDLocked returns the next free application id.
func (m *model) allocAppIDLocked() int64 { return allocID(m.appIDs, &m.nextAppID) }

// allocDeviceIDLocked returns the next free device id.
func (m *model) allocDeviceIDLocked() int64 { return allocID(m.deviceIDs, &m.nextDeviceID) }

// allocID returns the first id from *next on that used does not hold,
// marks it used and moves *next past it.
func allocID(used map[int64]bool, next *int64) int64 {
	for used[*next] {
		*next++
	}
	id := *next
	used[id] = true
	*next++
	return id
}

// bumpGatewayLocked marks gw's target state changed.
func bumpGatewayLocked(gw *gateway) {
	if gw != nil {
		gw.version++
	}
}

// bumpGatewayAppLocked marks the target state of every gateway of ga changed.
func bumpGatewayAppLocked(ga *gatewayApp) {
	for _, gw := range ga.gateways {
		gw.version++
	}
}

// cloudDeviceLocked is d as the protocol shows it.
func cloudDeviceLocked(d *device) cloudapi.Device {
	out := cloudapi.Device{
		ID:                   d.id,
		UUID:                 d.uuid,
		DeviceName:           d.name,
		DeviceType:           d.deviceType,
		BelongsToApplication: cloudapi.Ref{ID: d.app.id},
		Status:               d.status,
		IsOnline:             d.isOnline,
		IsOnCommit:           copyOf(d.isOnCommit),
	}
	if d.gateway != nil {
		out.IsManagedByDevice = &cloudapi.Ref{ID: d.gateway.deviceID}
	}
	return out
}

// deviceInfoLocked is d as the control API shows it.
func deviceInfoLocked(d *device) DeviceInfo {
	di := DeviceInfo{
		ID:           d.id,
		UUID:         d.uuid,
		Name:         d.name,
		DeviceType:   d.deviceType,
		AppID:        d.app.id,
		Environment:  cloneVars(d.env),
		Config:       cloneVars(d.config),
		Restart:      d.restart,
		Status:       d.status,
		IsOnline:     d.isOnline,
		IsOnCommit:   copyOf(d.isOnCommit),
		RegisteredAt: d.registeredAt,
		Origin:       d.origin,
		LogCount:     d.logCount,
	}
	if d.gateway != nil {
		di.Gateway = d.gateway.uuid
		di.GatewayDeviceID = d.gateway.deviceID
	}
	return di
}

func appInfoLocked(a *app) App {
	return App{
		ID:          a.id,
		Name:        a.name,
		ParentApp:   a.parent.id,
		Config:      cloneVars(a.config),
		Environment: cloneVars(a.env),
		Release:     copyOf(a.release),
		Devices:     len(a.devices),
	}
}

func gatewayInfoLocked(gw *gateway) Gateway {
	return Gateway{
		UUID:     gw.uuid,
		DeviceID: gw.deviceID,
		APIKey:   gw.apiKey,
		Name:     gw.name,
		AppID:    gw.app.id,
		AppName:  gw.app.name,
		Devices:  len(gw.devices),

		DroppedLogs: gw.droppedLogs,
	}
}

func cloneVars(m map[string]string) map[string]string {
	out := make(map[string]string, len(m))
	for k, v := range m {
		out[k] = v
	}
	return out
}

// removeDeviceLocked deletes d from every index. Its id stays reserved:
// ids are never reused.
func (s *Server) removeDeviceLocked(d *device) {
	delete(s.devices, d.uuid)
	delete(s.devicesByID, d.id)
	detachLocked(d)
	s.metrics.devices.Set(float64(len(s.devices)))
}

// addGatewayAppLocked makes gateway app id, without gateways or apps, and
// indexes it.
func (m *model) addGatewayAppLocked(id int64, name string) *gatewayApp {
	ga := &gatewayApp{id: id, name: name, gateways: map[string]*gateway{}, apps: map[int64]*app{}}
	m.gatewayApps[id] = ga
	m.appIDs[id] = true
	return ga
}

// addGatewayLocked indexes a new gateway gw (its fields already set).
func (m *model) addGatewayLocked(gw *gateway) {
	gw.app.gateways[gw.uuid] = gw
	m.gateways[gw.uuid] = gw
	m.gatewayByKey[gw.apiKey] = gw
	m.deviceIDs[gw.deviceID] = true
}

// addAppLocked indexes a new dependent app a (its fields already set).
func (m *model) addAppLocked(a *app) {
	m.apps[a.id] = a
	a.parent.apps[a.id] = a
	m.appIDs[a.id] = true
}

// addDeviceLocked indexes a new device d (its fields already set).
func (s *Server) addDeviceLocked(d *device) {
	s.devices[d.uuid] = d
	s.devicesByID[d.id] = d
	s.deviceIDs[d.id] = true
	attachLocked(d)
	s.metrics.devices.Set(float64(len(s.devices)))
}

// attachLocked lists d under its app and its gateway, if any, whose target
// state changes.
func attachLocked(d *device) {
	d.app.devices[d.uuid] = d
	if gw := d.gateway; gw != nil {
		gw.devices[d.uuid] = d
		if gw.orderValid && len(gw.added) < len(gw.order) {
			gw.added = append(gw.added, d)
		} else {
			// Sorting all at once costs less than merging as many again.
			invalidateOrderLocked(gw)
		}
		bumpGatewayLocked(gw)
	}
}

// invalidateOrderLocked has gw's order sorted whole at the next render
// (gateway.order).
func invalidateOrderLocked(gw *gateway) {
	gw.orderValid = false
	clear(gw.added)
	gw.added = gw.added[:0]
}

// detachLocked undoes attachLocked.
func detachLocked(d *device) {
	delete(d.app.devices, d.uuid)
	if d.gateway != nil {
		delete(d.gateway.devices, d.uuid)
		invalidateOrderLocked(d.gateway)
		bumpGatewayLocked(d.gateway)
	}
}

// copyOf returns a pointer to a copy of *p, or nil for nil, so that a view
// never aliases the model.
func copyOf[T any](p *T) *T {
	if p == nil {
		return nil
	}
	c := *p
	return &c
}
