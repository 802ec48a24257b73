package gateway_test

import (
	"net/http"
	"slices"
	"testing"

	"github.com/depharness/depharness/api"
	"github.com/depharness/depharness/internal/testkit"
	"github.com/depharness/depharness/sim/fleet"
	"github.com/depharness/depharness/sim/gateway"
	"github.com/depharness/depharness/sim/supervisortest"
)

// These tests restart the gateway against the same supervisor, as a
// docker stop/start of the gateway's container does: the new process has
// a fresh fleet and nothing but the supervisor to learn from.

func sorted(s []string) []string {
	s = slices.Clone(s)
	slices.Sort(s)
	return s
}

// idsByApp returns the supervisor's device uuids of each app, by local id.
func idsByApp(s *supervisortest.Server) map[int64][]string {
	out := map[int64][]string{}
	for _, d := range s.Devices() { // in id order
		out[d.AppID] = append(out[d.AppID], d.UUID)
	}
	return out
}

func supDevice(s *supervisortest.Server, uuid string) api.Device {
	for _, d := range s.Devices() {
		if d.UUID == uuid {
			return d
		}
	}
	return api.Device{}
}

func TestARestartedGatewayAdoptsItsDevices(t *testing.T) {
	cases := []struct {
		name    string
		policy  gateway.Policy
		updated bool // the first run brought the devices to their target
	}{
		{"devices on their target commit are adopted and flashed again under policy 200", gateway.PolicyAck, true},
		{"devices on their target commit are adopted and flashed again under policy 202", gateway.PolicyAccepted, true},
		{"devices never updated are adopted and brought to their target commit without a hook", gateway.PolicyAck, false},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			const n = 4
			s := setup{profile: quickProfile(n), policy: tc.policy}
			w := start(t, s)
			first := w.gw.UUIDs()
			if tc.updated {
				for _, u := range first {
					w.hook(http.MethodPut, "/v1/devices/"+u, target("c1"))
				}
				testkit.Eventually(t, "the first run converged", func() bool { return w.gw.Stats().Converged == n })
			} else {
				w.await("every device reported idle", func(s *supervisortest.Server) bool {
					for _, d := range s.Devices() {
						if d.Status != gateway.StatusIdle {
							return false
						}
					}
					return true
				})
			}

			w.restart(s)
			if got := len(w.sup.Devices()); got != n {
				t.Errorf("got %d devices at the supervisor, want %d (no new provisioning)", got, n)
			}
			if got, want := sorted(w.gw.UUIDs()), sorted(first); !slices.Equal(got, want) {
				t.Errorf("got managed uuids %v, want the first run's %v", got, want)
			}
			if got := counter(t, w.gw.Metrics().Adopted); got != n {
				t.Errorf("got devices_adopted_total %v, want %d", got, n)
			}
			if got := counter(t, w.gw.Metrics().Provisioned); got != 0 {
				t.Errorf("got devices_provisioned_total %v, want 0", got)
			}

			// The new fleet starts without firmware; each device's target
			// commit (c1 since provisioning) is flashed with no hook sent.
			testkit.Eventually(t, "every adopted device flashed its target commit", func() bool { return w.gw.Stats().Converged == n })
			for _, u := range w.gw.UUIDs() {
				d, _ := w.gw.Device(u)
				if snap := d.Snapshot(); snap.State != fleet.StateRunning || snap.Commit != "c1" {
					t.Errorf("device %s: got %s on %q, want running c1", u, snap.State, snap.Commit)
				}
				if c := supDevice(w.sup, u).Commit; c == nil || *c != "c1" {
					t.Errorf("device %s: got commit %v at the supervisor, want c1", u, c)
				}
			}
			for _, answer := range []string{"200", "202", "404"} {
				if got := counter(t, w.gw.Metrics().HooksReceived.WithLabelValues("update", answer)); got != 0 {
					t.Errorf("got %v update hooks answered %s before any was sent, want 0", got, answer)
				}
			}

			// Hooks to the adopted devices are served: a new release
			// reaches every one of them.
			w.sup.SetApp(appID, "edgeApp1", "c2", firmwareTar(t, "two"))
			want := http.StatusOK
			if tc.policy == gateway.PolicyAccepted {
				want = http.StatusAccepted
			}
			tg := target("c2")
			for _, u := range first {
				if got := w.hook(http.MethodPut, "/v1/devices/"+u, tg); got != want {
					t.Errorf("update hook of adopted device %s: got %d, want %d", u, got, want)
				}
			}
			w.await("every device reports c2", func(s *supervisortest.Server) bool {
				for _, u := range first {
					if !hasUpdate(s, u, func(up api.DeviceUpdate) bool { return reportedTarget(up, tg) }) {
						return false
					}
				}
				return true
			})
			testkit.Eventually(t, "every device converged on c2", func() bool { return w.gw.Stats().Converged == n })
			wantGets := 1 // by the second run
			if tc.updated {
				wantGets = 2 // once per run
			}
			if got := w.sup.AssetGets(appID, "c1"); got != wantGets {
				t.Errorf("got %d downloads of c1, want %d", got, wantGets)
			}
			if got := len(w.sup.Devices()); got != n {
				t.Errorf("got %d devices at the supervisor after the release, want %d", got, n)
			}
		})
	}
}

func TestARestartedGatewayDoesNotAdoptADeviceAwaitingDeletion(t *testing.T) {
	s := setup{profile: quickProfile(3)}
	w := start(t, s)
	first := w.gw.UUIDs()
	deleted := first[0]
	w.sup.MarkDeleted(deleted)

	w.restart(s)
	got := w.gw.UUIDs()
	if slices.Contains(got, deleted) {
		t.Errorf("got managed uuids %v, want %s (awaiting deletion) left out", got, deleted)
	}
	for _, u := range first[1:] {
		if !slices.Contains(got, u) {
			t.Errorf("got managed uuids %v, want %s adopted", got, u)
		}
	}
	if n := len(w.sup.Devices()); n != 4 {
		t.Errorf("got %d devices at the supervisor, want 4 (one provisioned in place of the deleted one)", n)
	}
	if a, p := counter(t, w.gw.Metrics().Adopted), counter(t, w.gw.Metrics().Provisioned); a != 2 || p != 1 {
		t.Errorf("got %v adopted and %v provisioned, want 2 and 1", a, p)
	}
	cases := []struct {
		name, method, path string
		body               any
		want               int
	}{
		{"the delete hook of the device awaiting deletion answers 200", http.MethodDelete, "/v1/devices/" + deleted, "", http.StatusOK},
		{"an update hook of the device awaiting deletion answers 404", http.MethodPut, "/v1/devices/" + deleted, target("c1"), http.StatusNotFound},
		{"an update hook of an adopted device answers 200", http.MethodPut, "/v1/devices/" + first[1], target("c1"), http.StatusOK},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			if got := w.hook(tc.method, tc.path, tc.body); got != tc.want {
				t.Errorf("got %d, want %d", got, tc.want)
			}
		})
	}
}

func TestARestartedFleetOfAnotherSizeAdoptsWhatFits(t *testing.T) {
	cases := []struct {
		name                  string
		before, after         int
		adopted, provisioned  int
		wantSupervisorDevices int
	}{
		{"a larger fleet provisions only the shortfall", 2, 5, 2, 3, 5},
		{"a smaller fleet adopts the lowest ids and leaves the surplus alone", 4, 2, 2, 0, 4},
		{"a fleet of the same size provisions nothing", 3, 3, 3, 0, 3},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			w := start(t, setup{profile: quickProfile(tc.before)})
			w.await("every device reported idle", func(s *supervisortest.Server) bool {
				for _, d := range s.Devices() {
					if d.Status != gateway.StatusIdle {
						return false
					}
				}
				return len(s.Devices()) == tc.before
			})
			byID := idsByApp(w.sup)[appID]
			reportsBefore := map[string]int{}
			for _, u := range byID {
				reportsBefore[u] = len(w.sup.Updates(u))
			}

			w.restart(setup{profile: quickProfile(tc.after)})
			if got := len(w.sup.Devices()); got != tc.wantSupervisorDevices {
				t.Errorf("got %d devices at the supervisor, want %d", got, tc.wantSupervisorDevices)
			}
			if a, p := counter(t, w.gw.Metrics().Adopted), counter(t, w.gw.Metrics().Provisioned); a != float64(tc.adopted) || p != float64(tc.provisioned) {
				t.Errorf("got %v adopted and %v provisioned, want %d and %d", a, p, tc.adopted, tc.provisioned)
			}
			// Fleet device i took the i-th existing device by local id;
			// the new ones come after.
			got := w.gw.UUIDs()
			kept := min(tc.before, tc.after)
			if !slices.Equal(got[:kept], byID[:kept]) {
				t.Errorf("got fleet devices 0..%d on %v, want the lowest ids %v", kept-1, got[:kept], byID[:kept])
			}
			// Adopted devices flash their target commit; new ones wait for
			// their first update hook.
			testkit.Eventually(t, "every adopted device converged on its target", func() bool { return w.gw.Stats().Converged == tc.adopted })
			for _, u := range byID[kept:] {
				if got := w.hook(http.MethodPut, "/v1/devices/"+u, target("c1")); got != http.StatusNotFound {
					t.Errorf("update hook of surplus device %s: got %d, want 404", u, got)
				}
				if got := len(w.sup.Updates(u)); got != reportsBefore[u] {
					t.Errorf("surplus device %s: got %d reports, want %d (none since the restart)", u, got, reportsBefore[u])
				}
			}
		})
	}
}

func TestAdoptionFollowsTheAppsDistribution(t *testing.T) {
	const other = appID + 1
	apps := []int64{appID, other}
	w := start(t, setup{profile: quickProfile(0), apps: apps})
	w.sup.SetApp(other, "edgeApp2", "d1", firmwareTar(t, "x"))
	w.restart(setup{profile: quickProfile(6), apps: apps})
	perApp := idsByApp(w.sup)
	if len(perApp[appID]) != 3 || len(perApp[other]) != 3 {
		t.Fatalf("got devices per app %v, want 3 and 3", perApp)
	}
	cases := []struct {
		name  string
		apps  []int64
		count int
		want  []string // uuids in fleet order
	}{
		{"the same apps pair fleet device i with its app's devices by local id", apps, 6,
			[]string{perApp[appID][0], perApp[other][0], perApp[appID][1], perApp[other][1], perApp[appID][2], perApp[other][2]}},
		{"no apps given means every listed app, in id order", nil, 6,
			[]string{perApp[appID][0], perApp[other][0], perApp[appID][1], perApp[other][1], perApp[appID][2], perApp[other][2]}},
		{"apps in the other order swap the pairing", []int64{other, appID}, 4,
			[]string{perApp[other][0], perApp[appID][0], perApp[other][1], perApp[appID][1]}},
		{"devices of an app not managed are ignored", []int64{other}, 2,
			[]string{perApp[other][0], perApp[other][1]}},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			w.t = t
			w.restart(setup{profile: quickProfile(tc.count), apps: tc.apps})
			if got := w.gw.UUIDs(); !slices.Equal(got, tc.want) {
				t.Errorf("got fleet devices on %v, want %v", got, tc.want)
			}
			if got := counter(t, w.gw.Metrics().Provisioned); got != 0 {
				t.Errorf("got devices_provisioned_total %v, want 0", got)
			}
			if got := len(w.sup.Devices()); got != 6 {
				t.Errorf("got %d devices at the supervisor, want 6", got)
			}
		})
	}
}
