package sync

import (
	"cmp"
	"errors"
	"fmt"
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
	if st == nil {
		return store.Target{}, errors.New("no target state")
	}
	t := store.Target{Devices: make([]store.TargetDevice, 0, len(st.Dependent.Devices))}
	apps := map[int64]bool{}
	for key, a := range st.Dependent.Apps {
		id, err := parseAppID(key)
		if err != nil {
			return store.Target{}, fmt.Errorf("app %q: %w", key, err)
		}
		switch {
		case a.Commit == "" && a.Image != "":
			return store.Target{}, fmt.Errorf("app %d: image %q without a commit", id, a.Image)
		case a.Commit != "" && !commitRe.MatchString(a.Commit):
			return store.Target{}, fmt.Errorf("app %d: malformed commit %q", id, a.Commit)
		case a.Commit != "" && !digestRef.MatchString(a.Image):
			return store.Target{}, fmt.Errorf("app %d: image %q is not a digest reference", id, a.Image)
		case a.ReleaseID < 0:
			return store.Target{}, fmt.Errorf("app %d: negative release id", id)
		}
		apps[id] = true
		t.Apps = append(t.Apps, store.TargetApp{
			ID: id, Name: a.Name, ParentApp: a.ParentApp, Config: a.Config,
			Commit: a.Commit, Image: a.Image, ReleaseID: a.ReleaseID,
		})
	}
	for uuid, d := range st.Dependent.Devices {
		if !validUUID(uuid) {
			return store.Target{}, fmt.Errorf("device %q: malformed uuid", uuid)
		}
		if len(d.Apps) != 1 {
			return store.Target{}, fmt.Errorf("device %s: %d apps, want exactly 1", uuid, len(d.Apps))
		}
		if d.Restart < 0 {
			return store.Target{}, fmt.Errorf("device %s: negative restart counter", uuid)
		}
		for key, da := range d.Apps {
			id, err := parseAppID(key)
			if err != nil {
				return store.Target{}, fmt.Errorf("device %s: app %q: %w", uuid, key, err)
			}
			if !apps[id] {
				return store.Target{}, fmt.Errorf("device %s: app %d is not in the target", uuid, id)
			}
			t.Devices = append(t.Devices, store.TargetDevice{
				UUID: uuid, AppID: id, Name: d.Name, Restart: d.Restart,
				Environment: da.Environment, Config: da.Config,
			})
		}
	}
	slices.SortFunc(t.Apps, func(a, b store.TargetApp) int { return cmp.Compare(a.ID, b.ID) })
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

// parseAppID parses a positive decimal app id written canonically.
func parseAppID(s string) (int64, error) {
	id, err := strconv.ParseInt(s, 10, 64)
	if err != nil || id <= 0 || strconv.FormatInt(id, 10) != s {
		return 0, errors.New("app id is not a positive integer")
	}
	return id, nil
}
