package cloud

import (
	"bytes"
	"cmp"
	"crypto/sha256"
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"maps"
	"os"
	"slices"
	"time"

	cloudapi "github.com/depharness/depharness/api/cloud"
	"github.com/depharness/depharness/internal/atomicfile"
)

// The fake cloud keeps its model in memory. With Options.StateFile it also
// keeps it on disk: New loads the file when it exists, every change is
// written within Options.SaveInterval, and Close writes the last one. The
// file holds the model (gateways, apps with their releases and variables,
// devices with their reported state and retained logs, the id counters and
// the random source), so that a restarted fake cloud answers as the old one
// did: same uuids, keys, ids and target state (the same ETag), and fresh
// uuids, commits and ids that collide with nothing from before. Fault knobs,
// held requests and the journal of requests are not kept.

// DefaultSaveInterval is how soon a change reaches the state file when
// Options.SaveInterval is zero.
const DefaultSaveInterval = time.Second

// stateFileVersion is the format of the state file; a file of another
// version is refused.
const stateFileVersion = 1

type snapshot struct {
	Version       int              `json:"version"`
	AdminToken    string           `json:"adminToken"`
	Seed          uint64           `json:"seed"`
	Random        []byte           `json:"random"`
	NextAppID     int64            `json:"nextAppId"`
	NextDeviceID  int64            `json:"nextDeviceId"`
	NextReleaseID int64            `json:"nextReleaseId"`
	AppIDs        []int64          `json:"appIds"`
	DeviceIDs     []int64          `json:"deviceIds"`
	GatewayApps   []snapGatewayApp `json:"gatewayApps"`
	Gateways      []snapGateway    `json:"gateways"`
	Apps          []snapApp        `json:"apps"`
	Devices       []snapDevice     `json:"devices"`
}

type snapGatewayApp struct {
	ID   int64  `json:"id"`
	Name string `json:"name"`
}

type snapGateway struct {
	UUID        string `json:"uuid"`
	DeviceID    int64  `json:"deviceId"`
	APIKey      string `json:"apiKey"`
	Name        string `json:"name"`
	AppID       int64  `json:"appId"`
	DroppedLogs int64  `json:"droppedLogs"`
}

type snapApp struct {
	ID          int64             `json:"id"`
	Name        string            `json:"name"`
	ParentApp   int64             `json:"parentApp"`
	Config      map[string]string `json:"config"`
	Environment map[string]string `json:"environment"`
	Releases    []Release         `json:"releases"`
}

type snapDevice struct {
	ID           int64              `json:"id"`
	UUID         string             `json:"uuid"`
	Name         string             `json:"name"`
	DeviceType   string             `json:"deviceType"`
	AppID        int64              `json:"appId"`
	Gateway      string             `json:"gateway,omitempty"`
	Environment  map[string]string  `json:"environment"`
	Config       map[string]string  `json:"config"`
	Restart      int64              `json:"restart"`
	RegisteredAt time.Time          `json:"registeredAt"`
	Origin       string             `json:"origin"`
	Status       string             `json:"status"`
	IsOnline     bool               `json:"isOnline"`
	IsOnCommit   *string            `json:"isOnCommit"`
	Logs         []cloudapi.LogLine `json:"logs"`
	LogCount     int                `json:"logCount"`
}

// snapshotLocked captures the model, in id order so that equal models give
// equal files. It shares nothing the model changes in place (variables are
// replaced, never changed in place; releases are copied; logs too), so that
// it can be encoded once the lock is released.
func (s *Server) snapshotLocked() (*snapshot, error) {
	rnd, err := s.pcg.MarshalBinary()
	if err != nil {
		return nil, err
	}
	sn := &snapshot{
		Version: stateFileVersion, AdminToken: s.adminToken, Seed: s.seed, Random: rnd,
		NextAppID: s.nextAppID, NextDeviceID: s.nextDeviceID, NextReleaseID: s.nextReleaseID,
		AppIDs: slices.Sorted(maps.Keys(s.appIDs)), DeviceIDs: slices.Sorted(maps.Keys(s.deviceIDs)),
	}
	for _, id := range slices.Sorted(maps.Keys(s.gatewayApps)) {
		ga := s.gatewayApps[id]
		sn.GatewayApps = append(sn.GatewayApps, snapGatewayApp{ID: ga.id, Name: ga.name})
	}
	gws := make([]*gateway, 0, len(s.gateways))
	for _, gw := range s.gateways {
		gws = append(gws, gw)
	}
	slices.SortFunc(gws, func(a, b *gateway) int { return cmp.Compare(a.deviceID, b.deviceID) })
	for _, gw := range gws {
		sn.Gateways = append(sn.Gateways, snapGateway{UUID: gw.uuid, DeviceID: gw.deviceID, APIKey: gw.apiKey,
			Name: gw.name, AppID: gw.app.id, DroppedLogs: gw.droppedLogs})
	}
	for _, id := range slices.Sorted(maps.Keys(s.apps)) {
		a := s.apps[id]
		sn.Apps = append(sn.Apps, snapApp{ID: a.id, Name: a.name, ParentApp: a.parent.id,
			Config: a.config, Environment: a.env, Releases: slices.Clone(a.releases)})
	}
	for _, id := range slices.Sorted(maps.Keys(s.devicesByID)) {
		d := s.devicesByID[id]
		sd := snapDevice{ID: d.id, UUID: d.uuid, Name: d.name, DeviceType: d.deviceType, AppID: d.app.id,
			Environment: orEmpty(d.env), Config: orEmpty(d.config), Restart: d.restart, RegisteredAt: d.registeredAt,
			Origin: d.origin, Status: d.status, IsOnline: d.isOnline, IsOnCommit: d.isOnCommit,
			Logs: s.logsLocked(d), LogCount: d.logCount}
		if d.gateway != nil {
			sd.Gateway = d.gateway.uuid
		}
		sn.Devices = append(sn.Devices, sd)
	}
	return sn, nil
}

// restoreLocked replaces the (empty) model by sn's, checking that every
// reference resolves.
func (s *Server) restoreLocked(sn *snapshot) error {
	if sn.Version != stateFileVersion {
		return fmt.Errorf("format version %d, want %d", sn.Version, stateFileVersion)
	}
	if err := s.pcg.UnmarshalBinary(sn.Random); err != nil {
		return fmt.Errorf("random source: %w", err)
	}
	m := &s.model
	m.nextAppID, m.nextDeviceID, m.nextReleaseID = sn.NextAppID, sn.NextDeviceID, sn.NextReleaseID
	for _, id := range sn.AppIDs {
		m.appIDs[id] = true
	}
	for _, id := range sn.DeviceIDs {
		m.deviceIDs[id] = true
	}
	for _, g := range sn.GatewayApps {
		m.addGatewayAppLocked(g.ID, g.Name)
	}
	for _, g := range sn.Gateways {
		ga := m.gatewayApps[g.AppID]
		if ga == nil {
			return fmt.Errorf("gateway %s: no gateway app %d", g.UUID, g.AppID)
		}
		if m.gateways[g.UUID] != nil || m.gatewayByKey[g.APIKey] != nil {
			return fmt.Errorf("gateway %s: uuid or api key repeated", g.UUID)
		}
		m.addGatewayLocked(&gateway{uuid: g.UUID, deviceID: g.DeviceID, apiKey: g.APIKey, name: g.Name, app: ga,
			devices: map[string]*device{}, droppedLogs: g.DroppedLogs, version: 1})
	}
	for _, sa := range sn.Apps {
		ga := m.gatewayApps[sa.ParentApp]
		if ga == nil {
			return fmt.Errorf("app %d: no gateway app %d", sa.ID, sa.ParentApp)
		}
		a := &app{id: sa.ID, name: sa.Name, parent: ga, config: orEmpty(sa.Config), env: orEmpty(sa.Environment),
			releases: sa.Releases, devices: map[string]*device{}}
		if len(a.releases) > 0 {
			a.release = &a.releases[len(a.releases)-1]
		}
		m.addAppLocked(a)
	}
	for _, sd := range sn.Devices {
		a := m.apps[sd.AppID]
		if a == nil {
			return fmt.Errorf("device %s: no app %d", sd.UUID, sd.AppID)
		}
		if m.devices[sd.UUID] != nil || m.devicesByID[sd.ID] != nil {
			return fmt.Errorf("device %s: uuid or id repeated", sd.UUID)
		}
		d := &device{id: sd.ID, uuid: sd.UUID, name: sd.Name, deviceType: sd.DeviceType, app: a,
			env: orEmpty(sd.Environment), config: orEmpty(sd.Config), restart: sd.Restart,
			registeredAt: sd.RegisteredAt, origin: sd.Origin, status: sd.Status, isOnline: sd.IsOnline,
			isOnCommit: sd.IsOnCommit, logs: sd.Logs, logCount: sd.LogCount, version: 1}
		if sd.Gateway != "" {
			if d.gateway = m.gateways[sd.Gateway]; d.gateway == nil {
				return fmt.Errorf("device %s: no gateway %s", sd.UUID, sd.Gateway)
			}
		}
		s.addDeviceLocked(d)
	}
	return nil
}

func orEmpty(m map[string]string) map[string]string {
	if m == nil {
		return map[string]string{}
	}
	return m
}

// loadState restores the model from path if the file exists, with the
// saved admin token unless keepToken (one was given). A file that cannot be
// read or makes no consistent model is an error (and is left as it is).
func (s *Server) loadState(path string, keepToken bool) (loaded bool, err error) {
	b, err := os.ReadFile(path)
	if errors.Is(err, fs.ErrNotExist) {
		return false, nil
	}
	if err != nil {
		return false, err
	}
	var sn snapshot
	dec := json.NewDecoder(bytes.NewReader(b))
	dec.DisallowUnknownFields()
	if err := dec.Decode(&sn); err != nil {
		return false, fmt.Errorf("decoding: %w", err)
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if err := s.restoreLocked(&sn); err != nil {
		return false, err
	}
	if !keepToken && sn.AdminToken != "" {
		s.adminToken = sn.AdminToken
	}
	s.seed = sn.Seed
	// The first save writes only once something changed.
	if sn, err := s.snapshotLocked(); err == nil {
		if _, sum, err := encodeSnapshot(sn); err == nil {
			s.lastSavedModel = sum
		}
	}
	return true, nil
}

// encodeSnapshot is the state file's content for sn, and its hash.
func encodeSnapshot(sn *snapshot) ([]byte, [32]byte, error) {
	b, err := encodeSnapshotJSON(sn)
	if err != nil {
		return nil, [32]byte{}, err
	}
	return b, sha256.Sum256(b), nil
}

// Save writes the model to Options.StateFile now (atomically: a crash
// leaves the old file or the new one). It is a no-op without a state file,
// and skips the write when nothing changed since the last save.
func (s *Server) Save() error {
	if s.stateFile == "" {
		return nil
	}
	s.saveMu.Lock()
	defer s.saveMu.Unlock()
	// Only the capture holds the model's lock: the encoding, which takes
	// far longer with many devices, does not hold up the requests.
	s.mu.Lock()
	sn, err := s.snapshotLocked()
	s.mu.Unlock()
	var (
		b   []byte
		sum [32]byte
	)
	if err == nil {
		b, sum, err = encodeSnapshot(sn)
	}
	if err != nil {
		return fmt.Errorf("fake cloud: state file: %w", err)
	}
	if sum == s.lastSavedModel {
		return nil
	}
	if err := atomicfile.Write(s.stateFile, b); err != nil {
		return fmt.Errorf("fake cloud: state file: %w", err)
	}
	s.lastSavedModel = sum
	s.metrics.stateSaves.Inc()
	return nil
}

// saveLoop saves after changes, at most once per interval, until stop is
// closed. Each pass takes the change channel before it saves, so that a
// change made during or after the save wakes the next pass: none is missed.
// A failed save is tried again after the interval.
func (s *Server) saveLoop(interval time.Duration, stop <-chan struct{}, done chan<- struct{}) {
	defer close(done)
	for {
		changed := s.modelChanged.C()
		if err := s.Save(); err != nil {
			// Try again after the interval, change or not.
			s.metrics.stateSaveErrors.Inc()
			s.log.Error("saving the state file", "file", s.stateFile, "err", err)
		} else {
			select {
			case <-stop:
				return
			case <-changed:
			}
		}
		select {
		case <-stop:
			return
		case <-time.After(interval):
		}
	}
}

// Close stops saving and writes the state file a last time. Without a
// state file it does nothing. The Server still serves after Close, but
// changes are no longer saved.
func (s *Server) Close() error {
	if s.stateFile == "" {
		return nil
	}
	s.closeOnce.Do(func() {
		close(s.stopSave)
		<-s.saveDone
	})
	return s.Save()
}
