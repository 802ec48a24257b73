package sync

import (
	"cmp"
	"errors"
	"fmt"
	"reflect"
	"regexp"
	"slices"
	"strconv"
	"strings"

	"github.com/depharness/depharness/api/cloud"
	"github.com/depharness/depharness/proxy/store"
)

var (
	// digestRef is a registry reference pinned by digest: host[:port]/repo@sha256:<64 hex>.
	digestRef = regexp.MustCompile(`^[^@\s]+@sha256:[0-9a-f]{64}$`)
	// commitRe keeps commits usable as file names (the assets cache is
	// <appId>/<commit>.tar) and in URLs.
	commitRe = regexp.MustCompile(`^[A-Za-z0-9][A-Za-z0-9._-]{0,127}$`)
)

// validUUID keeps device uuids usable in hook URLs: 1 to 128 ASCII letters
// and digits.
func validUUID(s string) bool {
	if len(s) == 0 || len(s) > 128 {
		return false
	}
	for i := 0; i < len(s); i++ {
		c := s[i]
		if !('0' <= c && c <= '9' || 'a' <= c && c <= 'z' || 'A' <= c && c <= 'Z') {
			return false
		}
	}
	return true
}

// Validate checks a target state whole and converts it for the store. Any
// fault rejects the whole state: app ids are positive decimal integers; an
// app with a release has a well-formed commit and an image pinned by digest
// (and an image never comes without a commit); device uuids are alphanumeric;
// each device names exactly one app, which is one of the target's apps; restart
// counters are not negative. Apps and devices come out sorted by id and uuid.
func Validate(st *cloud.TargetState) (store.Target, error) {
	t, apps, err := validateApps(st)
	if err != nil {
		return store.Target{}, err
	}
	t.Devices = make([]store.TargetDevice, 0, len(st.Dependent.Devices))
	for uuid, d := range st.Dependent.Devices {
		td, err := validateDevice(uuid, d, apps)
		if err != nil {
			return store.Target{}, err
		}
		t.Devices = append(t.Devices, td)
	}
	// In uuid order: sorting positions moves less than sorting devices.
	order := make([]int32, len(t.Devices))
	for i := range order {
		order[i] = int32(i)
	}
	slices.SortFunc(order, func(a, b int32) int { return strings.Compare(t.Devices[a].UUID, t.Devices[b].UUID) })
	sorted := make([]store.TargetDevice, len(t.Devices))
	for i, j := range order {
		sorted[i] = t.Devices[j]
	}
	t.Devices = sorted
	return t, nil
}

// validateApps checks and converts st's apps (Validate), sorted by id, and
// returns the set of their ids.
func validateApps(st *cloud.TargetState) (store.Target, map[int64]bool, error) {
	if st == nil {
		return store.Target{}, nil, errors.New("no target state")
	}
	var t store.Target
	apps := map[int64]bool{}
	for key, a := range st.Dependent.Apps {
		id, err := parseAppID(key)
		if err != nil {
			return store.Target{}, nil, fmt.Errorf("app %q: %w", key, err)
		}
		switch {
		case a.Commit == "" && a.Image != "":
			return store.Target{}, nil, fmt.Errorf("app %d: image %q without a commit", id, a.Image)
		case a.Commit != "" && !commitRe.MatchString(a.Commit):
			return store.Target{}, nil, fmt.Errorf("app %d: malformed commit %q", id, a.Commit)
		case a.Commit != "" && !digestRef.MatchString(a.Image):
			return store.Target{}, nil, fmt.Errorf("app %d: image %q is not a digest reference", id, a.Image)
		case a.ReleaseID < 0:
			return store.Target{}, nil, fmt.Errorf("app %d: negative release id", id)
		}
		apps[id] = true
		t.Apps = append(t.Apps, store.TargetApp{
			ID: id, Name: a.Name, ParentApp: a.ParentApp, Config: a.Config,
			Commit: a.Commit, Image: a.Image, ReleaseID: a.ReleaseID,
		})
	}
	slices.SortFunc(t.Apps, func(a, b store.TargetApp) int { return cmp.Compare(a.ID, b.ID) })
	return t, apps, nil
}

// validateDevice checks and converts one device of a target state whose
// apps are apps (Validate).
func validateDevice(uuid string, d cloud.DependentDevice, apps map[int64]bool) (store.TargetDevice, error) {
	if !validUUID(uuid) {
		return store.TargetDevice{}, fmt.Errorf("device %q: malformed uuid", uuid)
	}
	if len(d.Apps) != 1 {
		return store.TargetDevice{}, fmt.Errorf("device %s: %d apps, want exactly 1", uuid, len(d.Apps))
	}
	if d.Restart < 0 {
		return store.TargetDevice{}, fmt.Errorf("device %s: negative restart counter", uuid)
	}
	for key, da := range d.Apps {
		id, err := parseAppID(key)
		if err != nil {
			return store.TargetDevice{}, fmt.Errorf("device %s: app %q: %w", uuid, key, err)
		}
		if !apps[id] {
			return store.TargetDevice{}, fmt.Errorf("device %s: app %d is not in the target", uuid, id)
		}
		return store.TargetDevice{
			UUID: uuid, AppID: id, Name: d.Name, Restart: d.Restart,
			Environment: da.Environment, Config: da.Config,
		}, nil
	}
	panic("unreachable: one app")
}

// validator is Validate for one poll after another, at a cost that grows
// with the devices that changed rather than with all of them. The cloud
// client hands a device whose bytes did not change with the very values it
// decoded before (maps included, which nobody modifies): such a device,
// checked and converted last time, is taken as it was, its app still
// checked against the state's apps. The uuid order of the last state,
// less the devices gone, is merged with the new devices sorted, rather than
// sorting all again. The devices are kept in place from state to state; a
// rejected state forgets them (the next starts afresh). Validate is the
// straightforward path it must match (a test holds them equal).
type validator struct {
	devices map[string]*validDevice // the devices of the last state accepted
	order   []*validDevice          // the same, sorted by uuid
	stamp   uint64                  // counts the states accepted
}

// validDevice is a device of an accepted state, with what it converted to.
type validDevice struct {
	apps map[string]cloud.DeviceAppTarget // the decoded map, kept as identity
	td   store.TargetDevice
	seen uint64 // the stamp of the last state that had it
}

// same reports whether d is the decoded value v was converted from.
func (v *validDevice) same(d cloud.DependentDevice) bool {
	return d.Name == v.td.Name && d.Restart == v.td.Restart && d.Apps != nil &&
		reflect.ValueOf(d.Apps).UnsafePointer() == reflect.ValueOf(v.apps).UnsafePointer()
}

// validate is Validate(st), remembering st's devices when it is accepted.
func (vr *validator) validate(st *cloud.TargetState) (store.Target, error) {
	t, err := vr.check(st)
	if err != nil {
		*vr = validator{}
		return store.Target{}, err
	}
	t.Devices = make([]store.TargetDevice, len(vr.order))
	for i, v := range vr.order {
		t.Devices[i] = v.td
	}
	return t, nil
}

// check checks st and brings the devices kept in line with it, but for
// their order; on an error they are left in part updated.
func (vr *validator) check(st *cloud.TargetState) (store.Target, error) {
	t, apps, err := validateApps(st)
	if err != nil {
		return store.Target{}, err
	}
	if vr.devices == nil {
		vr.devices = make(map[string]*validDevice, len(st.Dependent.Devices))
	}
	stamp := vr.stamp + 1
	var added []*validDevice
	for uuid, d := range st.Dependent.Devices {
		v := vr.devices[uuid]
		if v != nil && v.same(d) {
			if !apps[v.td.AppID] {
				return store.Target{}, fmt.Errorf("device %s: app %d is not in the target", uuid, v.td.AppID)
			}
			v.seen = stamp
			continue
		}
		td, err := validateDevice(uuid, d, apps)
		if err != nil {
			return store.Target{}, err
		}
		if v == nil {
			v = &validDevice{}
			vr.devices[uuid] = v
			added = append(added, v)
		}
		v.apps, v.td, v.seen = d.Apps, td, stamp
	}
	vr.stamp = stamp
	gone := len(vr.devices) > len(st.Dependent.Devices)
	if gone {
		for u, v := range vr.devices {
			if v.seen != stamp {
				delete(vr.devices, u)
			}
		}
	}
	if len(added) == 0 && !gone {
		return t, nil
	}
	byUUID := func(a, b *validDevice) int { return strings.Compare(a.td.UUID, b.td.UUID) }
	slices.SortFunc(added, byUUID)
	order := make([]*validDevice, 0, len(vr.devices))
	kept := vr.order
	for len(kept) > 0 || len(added) > 0 {
		if len(added) == 0 || len(kept) > 0 && kept[0].td.UUID < added[0].td.UUID {
			if kept[0].seen == stamp {
				order = append(order, kept[0])
			}
			kept = kept[1:]
		} else {
			order, added = append(order, added[0]), added[1:]
		}
	}
	vr.order = order
	return t, nil
}

// parseAppID parses a positive decimal app id written canonically.
func parseAppID(s string) (int64, error) {
	id, err := strconv.ParseInt(s, 10, 64)
	if err != nil || id <= 0 || strconv.FormatInt(id, 10) != s {
		return 0, errors.New("app id is not a positive integer")
	}
	return id, nil
}
