package cloud

import (
	"cmp"
	"slices"
)

// The control API's dependent devices: create, delete, move, restart and list
// them.

// gatewayForLocked picks the gateway that manages a device of app a: the
// named one (which must belong to a's parent app), else keep (if it belongs
// to it), else the parent app's only gateway.
func (s *Server) gatewayForLocked(a *app, named string, keep *gateway) (*gateway, error) {
	if named != "" {
		gw := s.gateways[named]
		if gw == nil {
			return nil, notFoundf("no gateway %q", named)
		}
		if gw.app != a.parent {
			return nil, invalidf("gateway %s belongs to app %d, not to app %d, the parent of dependent app %d", gw.uuid, gw.app.id, a.parent.id, a.id)
		}
		return gw, nil
	}
	if keep != nil && keep.app == a.parent {
		return keep, nil
	}
	switch len(a.parent.gateways) {
	case 0:
		return nil, invalidf("gateway app %d (parent of app %d) has no gateway", a.parent.id, a.id)
	case 1:
		for _, gw := range a.parent.gateways {
			return gw, nil
		}
	}
	return nil, invalidf("gateway app %d (parent of app %d) has %d gateways: name one", a.parent.id, a.id, len(a.parent.gateways))
}

// CreateDevice creates a dependent device as if provisioned elsewhere: it
// appears in its gateway's target state without that gateway having
// provisioned it.
func (s *Server) CreateDevice(spec DeviceSpec) (DeviceInfo, error) {
	if spec.UUID != "" && !uuidRe.MatchString(spec.UUID) {
		return DeviceInfo{}, invalidf("uuid must be 32 lowercase hex characters, got %q", spec.UUID)
	}
	if err := checkSpecVars(spec.Config, spec.Environment); err != nil {
		return DeviceInfo{}, err
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	a := s.apps[spec.AppID]
	if a == nil {
		return DeviceInfo{}, notFoundf("no dependent app %d", spec.AppID)
	}
	gw, err := s.gatewayForLocked(a, spec.Gateway, nil)
	if err != nil {
		return DeviceInfo{}, err
	}
	if spec.UUID != "" && (s.devices[spec.UUID] != nil || s.gateways[spec.UUID] != nil) {
		return DeviceInfo{}, conflictf("uuid %s is taken", spec.UUID)
	}
	d := &device{
		uuid:         spec.UUID,
		name:         spec.Name,
		deviceType:   spec.DeviceType,
		app:          a,
		gateway:      gw,
		env:          cloneVars(spec.Environment),
		config:       cloneVars(spec.Config),
		registeredAt: s.now(),
		origin:       OriginCreated,
	}
	if d.uuid == "" {
		d.uuid = s.newDeviceUUIDLocked()
	}
	if d.name == "" {
		d.name = s.nameLocked()
	}
	if d.deviceType == "" {
		d.deviceType = DefaultDeviceType
	}
	d.id = s.allocDeviceIDLocked()
	s.addDeviceLocked(d)
	s.notifyLocked()
	return deviceInfoLocked(d), nil
}

// DeleteDevice removes a dependent device (its logs go with it).
func (s *Server) DeleteDevice(uuid string) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	d := s.devices[uuid]
	if d == nil {
		return notFoundf("no device %q", uuid)
	}
	s.removeDeviceLocked(d)
	s.notifyLocked()
	return nil
}

// MoveDevice moves a device to dependent app appID, possibly of another
// gateway app. The managing gateway is gateway if given, else the current
// one if it belongs to the new app's parent, else that parent's only
// gateway.
func (s *Server) MoveDevice(uuid string, appID int64, gateway string) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	d := s.devices[uuid]
	if d == nil {
		return notFoundf("no device %q", uuid)
	}
	a := s.apps[appID]
	if a == nil {
		return notFoundf("no dependent app %d", appID)
	}
	gw, err := s.gatewayForLocked(a, gateway, d.gateway)
	if err != nil {
		return err
	}
	detachLocked(d)
	d.app, d.gateway = a, gw
	d.version++
	attachLocked(d)
	s.notifyLocked()
	return nil
}

// RestartDevice requests a restart of device uuid: its restart counter in
// the target state goes up by one. It returns the new counter.
func (s *Server) RestartDevice(uuid string) (int64, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	d := s.devices[uuid]
	if d == nil {
		return 0, notFoundf("no device %q", uuid)
	}
	d.restart++
	d.version++
	bumpGatewayLocked(d.gateway)
	s.notifyLocked()
	return d.restart, nil
}

// Device returns the cloud's view of device uuid.
func (s *Server) Device(uuid string) (DeviceInfo, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return infoOf(s.devices, uuid, deviceInfoLocked, "no device %q")
}

// DeviceFilter selects devices; zero fields select all.
type DeviceFilter struct {
	Gateway string
	AppID   int64
}

// Devices returns the cloud's view of the devices that filter selects, by id.
func (s *Server) Devices(filter DeviceFilter) []DeviceInfo {
	s.mu.Lock()
	defer s.mu.Unlock()
	out := []DeviceInfo{}
	for _, d := range s.devices {
		if (filter.Gateway == "" || (d.gateway != nil && d.gateway.uuid == filter.Gateway)) && (filter.AppID == 0 || d.app.id == filter.AppID) {
			out = append(out, deviceInfoLocked(d))
		}
	}
	slices.SortFunc(out, func(a, b DeviceInfo) int { return cmp.Compare(a.ID, b.ID) })
	return out
}
