package cloud

import (
	"cmp"
	"context"
	"fmt"
	"maps"
	"path"
	"slices"
	"strings"

	cloudapi "github.com/depharness/depharness/api/cloud"
)

// DefaultDeviceType is the device type of a device created without one.
const DefaultDeviceType = "generic-amd64"

// CreateGateway creates a gateway device (and its gateway app unless
// spec.AppID names an existing one) and returns its identity.
func (s *Server) CreateGateway(spec GatewaySpec) (Gateway, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if spec.UUID != "" && !gatewayUUIDRe.MatchString(spec.UUID) {
		return Gateway{}, invalidf("gateway uuid must be 32 or 62 lowercase hex characters, got %q", spec.UUID)
	}
	if spec.UUID != "" && (s.gateways[spec.UUID] != nil || s.devices[spec.UUID] != nil) {
		return Gateway{}, conflictf("uuid %s is taken", spec.UUID)
	}
	if spec.APIKey != "" && strings.ContainsAny(spec.APIKey, " \t\r\n") {
		return Gateway{}, invalidf("api key must not contain white space")
	}
	if spec.APIKey != "" && s.gatewayByKey[spec.APIKey] != nil {
		return Gateway{}, conflictf("api key is taken by another gateway")
	}
	if spec.DeviceID < 0 {
		return Gateway{}, invalidf("deviceId must be positive, got %d", spec.DeviceID)
	}
	if spec.DeviceID > 0 && s.deviceIDs[spec.DeviceID] {
		return Gateway{}, conflictf("device id %d is taken", spec.DeviceID)
	}
	var ga *gatewayApp
	if spec.AppID < 0 {
		return Gateway{}, invalidf("appId must be positive, got %d", spec.AppID)
	}
	if spec.AppID > 0 {
		if ga = s.gatewayApps[spec.AppID]; ga == nil {
			return Gateway{}, notFoundf("no gateway app %d", spec.AppID)
		}
		if spec.AppName != "" && spec.AppName != ga.name {
			return Gateway{}, invalidf("appName %q differs from the name %q of gateway app %d", spec.AppName, ga.name, ga.id)
		}
	}
	gw := &gateway{uuid: spec.UUID, deviceID: spec.DeviceID, apiKey: spec.APIKey, name: spec.Name, devices: map[string]*device{}}
	if gw.uuid == "" {
		gw.uuid = s.newDeviceUUIDLocked()
	}
	if gw.apiKey == "" {
		for gw.apiKey == "" || s.gatewayByKey[gw.apiKey] != nil {
			gw.apiKey = s.hexLocked(16)
		}
	}
	if gw.deviceID == 0 {
		gw.deviceID = s.allocDeviceIDLocked()
	}
	if gw.name == "" {
		gw.name = s.nameLocked()
	}
	if ga == nil {
		name := spec.AppName
		if name == "" {
			name = gw.name + "-fleet"
		}
		ga = s.addGatewayAppLocked(s.allocAppIDLocked(), name)
	}
	gw.app = ga
	s.addGatewayLocked(gw)
	s.notifyLocked()
	s.log.Info("gateway created", "uuid", gw.uuid, "deviceId", gw.deviceID, "app", ga.id)
	return gatewayInfoLocked(gw), nil
}

// Gateways returns every gateway, by device id.
func (s *Server) Gateways() []Gateway {
	s.mu.Lock()
	defer s.mu.Unlock()
	return sortedInfos(s.gateways, gatewayInfoLocked, func(g Gateway) int64 { return g.DeviceID })
}

// Gateway returns the gateway with uuid.
func (s *Server) Gateway(uuid string) (Gateway, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return infoOf(s.gateways, uuid, gatewayInfoLocked, "no gateway %q")
}

// parentLocked resolves the gateway app of an AppSpec.
func (s *Server) parentLocked(parentApp int64, gateway string) (*gatewayApp, error) {
	switch {
	case parentApp != 0 && gateway != "":
		return nil, invalidf("give parentApp or gateway, not both")
	case parentApp != 0:
		ga := s.gatewayApps[parentApp]
		if ga == nil {
			return nil, notFoundf("no gateway app %d", parentApp)
		}
		return ga, nil
	case gateway != "":
		gw := s.gateways[gateway]
		if gw == nil {
			return nil, notFoundf("no gateway %q", gateway)
		}
		return gw.app, nil
	default:
		return nil, invalidf("parentApp or gateway is required")
	}
}

// CreateApp creates a dependent app under a gateway app.
func (s *Server) CreateApp(spec AppSpec) (App, error) {
	if err := checkSpecVars(spec.Config, spec.Environment); err != nil {
		return App{}, err
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	ga, err := s.parentLocked(spec.ParentApp, spec.Gateway)
	if err != nil {
		return App{}, err
	}
	a := &app{
		id:      s.allocAppIDLocked(),
		name:    spec.Name,
		parent:  ga,
		config:  cloneVars(spec.Config),
		env:     cloneVars(spec.Environment),
		devices: map[string]*device{},
	}
	if a.name == "" {
		a.name = s.nameLocked()
	}
	s.addAppLocked(a)
	bumpGatewayAppLocked(ga)
	s.notifyLocked()
	s.log.Info("app created", "app", a.id, "name", a.name, "parentApp", ga.id)
	return appInfoLocked(a), nil
}

// Apps returns every dependent app, by id.
func (s *Server) Apps() []App {
	s.mu.Lock()
	defer s.mu.Unlock()
	return sortedInfos(s.apps, appInfoLocked, func(a App) int64 { return a.ID })
}

// App returns the dependent app id.
func (s *Server) App(id int64) (App, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return infoOf(s.apps, id, appInfoLocked, "no dependent app %d")
}

// DeleteApp removes a dependent app and all its devices.
func (s *Server) DeleteApp(id int64) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	a := s.apps[id]
	if a == nil {
		return notFoundf("no dependent app %d", id)
	}
	for _, d := range a.devices {
		s.removeDeviceLocked(d)
	}
	delete(s.apps, id)
	delete(a.parent.apps, id)
	bumpGatewayAppLocked(a.parent)
	s.notifyLocked()
	s.log.Info("app deleted", "app", id)
	return nil
}

// checkImagePath validates a path of a layer.
func checkImagePath(p string) error {
	if p == "" || strings.HasPrefix(p, "/") || path.Clean(p) != p || p == "." || p == ".." || strings.HasPrefix(p, "../") {
		return invalidf("layer path %q must be relative, clean and inside the image", p)
	}
	return nil
}

// PushRelease makes a new release of app appID its latest: with
// spec.Layers, the image is built by the ImageBuilder (as repository
// "apps/<appID>") outside the lock; with spec.Image, that reference is used.
func (s *Server) PushRelease(ctx context.Context, appID int64, spec ReleaseSpec) (Release, error) {
	switch {
	case len(spec.Layers) > 0 && spec.Image != "":
		return Release{}, invalidf("give layers or image, not both")
	case len(spec.Layers) == 0 && spec.Image == "":
		return Release{}, invalidf("a release needs layers (at least one) or an image")
	case spec.Image != "" && !imageRe.MatchString(spec.Image):
		return Release{}, invalidf("image %q must be a reference by digest, host:port/repo@sha256:<64 hex>", spec.Image)
	case spec.Commit != "" && !commitRe.MatchString(spec.Commit):
		return Release{}, invalidf("commit %q must be 40 lowercase hex characters", spec.Commit)
	}
	for i, l := range spec.Layers {
		for p := range l.Files {
			if err := checkImagePath(p); err != nil {
				return Release{}, fmt.Errorf("layer %d: %w", i, err)
			}
		}
		for _, p := range l.Delete {
			if err := checkImagePath(p); err != nil {
				return Release{}, fmt.Errorf("layer %d: %w", i, err)
			}
		}
	}
	checkApp := func() error {
		a := s.apps[appID]
		if a == nil {
			return notFoundf("no dependent app %d", appID)
		}
		if spec.Commit != "" && slices.ContainsFunc(a.releases, func(r Release) bool { return r.Commit == spec.Commit }) {
			return conflictf("app %d already has a release with commit %s", appID, spec.Commit)
		}
		return nil
	}
	s.mu.Lock()
	err := checkApp()
	s.mu.Unlock()
	if err != nil {
		return Release{}, err
	}
	image := spec.Image
	if image == "" {
		if s.builder == nil {
			return Release{}, ErrNoBuilder
		}
		ref, err := s.builder.BuildImage(ctx, fmt.Sprintf("apps/%d", appID), spec.Layers)
		if err != nil {
			return Release{}, fmt.Errorf("building the image of app %d: %w", appID, err)
		}
		if !imageRe.MatchString(ref) {
			return Release{}, fmt.Errorf("image builder returned %q, not a reference by digest", ref)
		}
		image = ref
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if err := checkApp(); err != nil {
		return Release{}, err
	}
	a := s.apps[appID]
	r := Release{ID: s.nextReleaseID, Commit: spec.Commit, Image: image, CreatedAt: s.now()}
	s.nextReleaseID++
	if r.Commit == "" {
		r.Commit = s.hexLocked(20)
	}
	a.releases = append(a.releases, r)
	a.release = &a.releases[len(a.releases)-1]
	bumpGatewayAppLocked(a.parent)
	s.notifyLocked()
	s.log.Info("release pushed", "app", appID, "release", r.ID, "commit", r.Commit, "image", r.Image)
	return r, nil
}

// Releases returns the releases of app appID, oldest first.
func (s *Server) Releases(appID int64) ([]Release, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	a := s.apps[appID]
	if a == nil {
		return nil, notFoundf("no dependent app %d", appID)
	}
	return slices.Clone(a.releases), nil
}

func checkVars(what string, vars map[string]string) error {
	for k := range vars {
		if !varRe.MatchString(k) {
			return invalidf("%s variable name %q must match %s", what, k, varRe)
		}
	}
	return nil
}

// checkSpecVars checks the variable names of a new app's or device's
// configuration and environment.
func checkSpecVars(config, env map[string]string) error {
	if err := checkVars("config", config); err != nil {
		return err
	}
	return checkVars("environment", env)
}

// UpdateVars changes the environment or configuration variables of one app
// or one device. Nothing changes unless the whole update is valid.
func (s *Server) UpdateVars(u VarsUpdate) error {
	if u.Kind != KindEnv && u.Kind != KindConfig {
		return invalidf("kind must be %q or %q, got %q", KindEnv, KindConfig, u.Kind)
	}
	if (u.App != 0) == (u.Device != "") {
		return invalidf("give exactly one of app and device")
	}
	if err := checkVars(string(u.Kind), u.Set); err != nil {
		return err
	}
	for _, k := range u.Unset {
		if !varRe.MatchString(k) {
			return invalidf("%s variable name %q must match %s", u.Kind, k, varRe)
		}
		if _, ok := u.Set[k]; ok {
			return invalidf("variable %q is both set and unset", k)
		}
	}
	if len(u.Set) == 0 && len(u.Unset) == 0 {
		return invalidf("nothing to set or unset")
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	var vars *map[string]string
	if u.App != 0 {
		a := s.apps[u.App]
		if a == nil {
			return notFoundf("no dependent app %d", u.App)
		}
		vars = &a.env
		if u.Kind == KindConfig {
			vars = &a.config
		}
		a.varsVersion++
		bumpGatewayAppLocked(a.parent)
	} else {
		d := s.devices[u.Device]
		if d == nil {
			return notFoundf("no device %q", u.Device)
		}
		vars = &d.env
		if u.Kind == KindConfig {
			vars = &d.config
		}
		d.version++
		bumpGatewayLocked(d.gateway)
	}
	// A new map: the old one may be shared by a snapshot being saved.
	next := make(map[string]string, len(*vars)+len(u.Set))
	maps.Copy(next, *vars)
	for k, v := range u.Set {
		next[k] = v
	}
	for _, k := range u.Unset {
		delete(next, k)
	}
	*vars = next
	s.notifyLocked()
	return nil
}

// SetAppEnv sets environment variables of dependent app appID.
func (s *Server) SetAppEnv(appID int64, vars map[string]string) error {
	return s.UpdateVars(VarsUpdate{App: appID, Kind: KindEnv, Set: vars})
}

// SetAppConfig sets configuration variables of dependent app appID.
func (s *Server) SetAppConfig(appID int64, vars map[string]string) error {
	return s.UpdateVars(VarsUpdate{App: appID, Kind: KindConfig, Set: vars})
}

// SetDeviceEnv sets environment variables of device uuid (they override
// the app's).
func (s *Server) SetDeviceEnv(uuid string, vars map[string]string) error {
	return s.UpdateVars(VarsUpdate{Device: uuid, Kind: KindEnv, Set: vars})
}

// SetDeviceConfig sets configuration variables of device uuid (they
// override the app's).
func (s *Server) SetDeviceConfig(uuid string, vars map[string]string) error {
	return s.UpdateVars(VarsUpdate{Device: uuid, Kind: KindConfig, Set: vars})
}

// Logs returns the retained log lines of device uuid, oldest first.
func (s *Server) Logs(uuid string) ([]cloudapi.LogLine, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	d := s.devices[uuid]
	if d == nil {
		return nil, notFoundf("no device %q", uuid)
	}
	return s.logsLocked(d), nil
}

// Requests returns the retained journal entries with Seq > after, oldest
// first (after = 0: all).
func (s *Server) Requests(after uint64) []Request {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.journal.sinceLocked(after)
}

// RequestSeq returns the Seq of the latest journal entry (0 if none): pass
// it to AwaitRequest predicates or Requests to see only later requests.
func (s *Server) RequestSeq() uint64 {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.journal.seq
}

// State returns the target state document of gateway uuid and its ETag, as
// GET /device/v2/<uuid>/state would answer it.
func (s *Server) State(uuid string) (body []byte, etag string, err error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	gw := s.gateways[uuid]
	if gw == nil {
		return nil, "", notFoundf("no gateway %q", uuid)
	}
	body, etag = s.stateLocked(gw)
	return slices.Clone(body), etag, nil
}

// sortedInfos returns the public view of every record in m, ordered by the
// id that key reads from the view.
func sortedInfos[K comparable, R, T any](m map[K]*R, info func(*R) T, key func(T) int64) []T {
	out := make([]T, 0, len(m))
	for _, r := range m {
		out = append(out, info(r))
	}
	slices.SortFunc(out, func(a, b T) int { return cmp.Compare(key(a), key(b)) })
	return out
}

// infoOf returns the public view of the record k in m, or a not-found error
// that formats k with missing.
func infoOf[K comparable, R, T any](m map[K]*R, k K, info func(*R) T, missing string) (T, error) {
	r := m[k]
	if r == nil {
		var zero T
		return zero, notFoundf(missing, k)
	}
	return info(r), nil
}
