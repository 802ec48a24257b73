package store

import (
	"context"
	"database/sql"
	"fmt"
	"slices"
	"testing"
	"time"
)

// testClock is a settable clock for the store.
type testClock struct{ t time.Time }

func (c *testClock) now() time.Time { return c.t }

func openTestStore(t testing.TB) (*Store, *testClock) {
	t.Helper()
	clk := &testClock{t: time.Date(2026, 1, 2, 3, 4, 5, 0, time.UTC)}
	s, err := Open(t.TempDir(), Options{Now: clk.now})
	if err != nil {
		t.Fatalf("Open: %v", err)
	}
	t.Cleanup(func() { s.Close() })
	return s, clk
}

// insertLocalDevice inserts a device as provisioning through the API does:
// not yet in any target.
func insertLocalDevice(t testing.TB, s *Store, uuid string, appID int64, createdAt time.Time) {
	t.Helper()
	if _, err := execWrite(s, `INSERT INTO devices (uuid, app_id, device_type, cloud_id, created_at) VALUES (?, ?, 'generic-amd64', 1, ?)`,
		uuid, appID, createdAt.UnixMilli()); err != nil {
		t.Fatalf("insert device: %v", err)
	}
}

type deviceState struct {
	appID             int64
	name              string
	targetEnv         string
	inTarget, marked  bool
	requested, acked  int64
	targetChangedAtMs sql.NullInt64
}

func readDevice(t testing.TB, s *Store, uuid string) (deviceState, bool) {
	t.Helper()
	var d deviceState
	err := s.r.QueryRow(`SELECT app_id, name, target_environment, in_target, marked_for_delete, restart_requested, restart_acked, target_changed_at FROM devices WHERE uuid = ?`, uuid).
		Scan(&d.appID, &d.name, &d.targetEnv, &d.inTarget, &d.marked, &d.requested, &d.acked, &d.targetChangedAtMs)
	if err == sql.ErrNoRows {
		return deviceState{}, false
	}
	if err != nil {
		t.Fatalf("read device %s: %v", uuid, err)
	}
	return d, true
}

func cloudRec(id int64) *CloudDevice {
	return &CloudDevice{ID: id, DeviceType: "generic-amd64", Name: "cloud-name"}
}

func apply(t testing.TB, s *Store, tg Target, pollStartedAt time.Time) TargetSummary {
	t.Helper()
	sum, err := s.ApplyTarget(context.Background(), tg, pollStartedAt)
	if err != nil {
		t.Fatalf("ApplyTarget: %v", err)
	}
	return sum
}

func TestApplyTarget(t *testing.T) {
	app1 := TargetApp{ID: 1, Name: "one", Commit: "c1", Image: "r/one@sha256:aa"}
	app2 := TargetApp{ID: 2, Name: "two"}
	dev := func(uuid string, app int64) TargetDevice {
		return TargetDevice{UUID: uuid, AppID: app, Name: uuid + "-name", Cloud: cloudRec(7), Environment: map[string]string{"A": "1"}}
	}
	tests := []struct {
		name  string
		setup func(t *testing.T, s *Store, clk *testClock)
		// target applied after setup; the poll started one second before the clock.
		target Target
		check  func(t *testing.T, s *Store, sum TargetSummary)
	}{
		{
			name:   "a target device unknown locally is inserted from its cloud record",
			target: Target{Apps: []TargetApp{app1}, Devices: []TargetDevice{dev("d1", 1)}, ETag: `"e1"`},
			check: func(t *testing.T, s *Store, sum TargetSummary) {
				d, ok := readDevice(t, s, "d1")
				if !ok {
					t.Fatal("device d1 not inserted")
				}
				if d.appID != 1 || d.name != "d1-name" || !d.inTarget || d.marked || d.targetEnv != `{"A":"1"}` {
					t.Fatalf("got %+v, want app 1, name d1-name, in target, unmarked, env {\"A\":\"1\"}", d)
				}
				if !slices.Equal(sum.Added, []string{"d1"}) || !slices.Equal(sum.AppsNewCommit, []int64{1}) {
					t.Fatalf("got summary %+v, want d1 added and app 1 with a new commit", sum)
				}
				if e, _ := s.TargetETag(context.Background()); e != `"e1"` {
					t.Fatalf("got etag %q, want %q", e, `"e1"`)
				}
			},
		},
		{
			name:   "an unknown device without a cloud record is skipped and the etag not kept",
			target: Target{Apps: []TargetApp{app1}, Devices: []TargetDevice{{UUID: "d1", AppID: 1}}, ETag: `"e1"`},
			check: func(t *testing.T, s *Store, sum TargetSummary) {
				if _, ok := readDevice(t, s, "d1"); ok {
					t.Fatal("device d1 inserted without a cloud record")
				}
				if !slices.Equal(sum.Skipped, []string{"d1"}) {
					t.Fatalf("got skipped %v, want [d1]", sum.Skipped)
				}
				if e, _ := s.TargetETag(context.Background()); e != "" {
					t.Fatalf("got etag %q, want empty", e)
				}
			},
		},
		{
			name: "a device absent from the target is marked for deletion",
			setup: func(t *testing.T, s *Store, clk *testClock) {
				apply(t, s, Target{Apps: []TargetApp{app1}, Devices: []TargetDevice{dev("d1", 1), dev("d2", 1)}}, clk.t)
				clk.t = clk.t.Add(time.Minute)
			},
			target: Target{Apps: []TargetApp{app1}, Devices: []TargetDevice{dev("d1", 1)}},
			check: func(t *testing.T, s *Store, sum TargetSummary) {
				d, _ := readDevice(t, s, "d2")
				if !d.marked || d.inTarget {
					t.Fatalf("got d2 %+v, want marked and not in target", d)
				}
				if d1, _ := readDevice(t, s, "d1"); d1.marked {
					t.Fatal("d1 marked, want unmarked")
				}
				if len(sum.Marked) != 1 || sum.Marked[0] != (MarkedDevice{UUID: "d2", AppID: 1}) {
					t.Fatalf("got marked %v, want [d2 of app 1]", sum.Marked)
				}
			},
		},
		{
			name: "a device re-added after being marked is un-marked",
			setup: func(t *testing.T, s *Store, clk *testClock) {
				apply(t, s, Target{Apps: []TargetApp{app1}, Devices: []TargetDevice{dev("d1", 1)}}, clk.t)
				clk.t = clk.t.Add(time.Minute)
				apply(t, s, Target{Apps: []TargetApp{app1}}, clk.t)
				if d, _ := readDevice(t, s, "d1"); !d.marked {
					t.Fatal("setup: d1 not marked")
				}
			},
			target: Target{Apps: []TargetApp{app1}, Devices: []TargetDevice{{UUID: "d1", AppID: 1, Name: "back"}}},
			check: func(t *testing.T, s *Store, sum TargetSummary) {
				d, _ := readDevice(t, s, "d1")
				if d.marked || !d.inTarget || d.name != "back" {
					t.Fatalf("got d1 %+v, want unmarked, in target, named back", d)
				}
				if !slices.Equal(sum.Unmarked, []string{"d1"}) {
					t.Fatalf("got unmarked %v, want [d1]", sum.Unmarked)
				}
			},
		},
		{
			name: "removing a whole app marks each of its devices",
			setup: func(t *testing.T, s *Store, clk *testClock) {
				apply(t, s, Target{Apps: []TargetApp{app1, app2}, Devices: []TargetDevice{dev("d1", 1), dev("d2", 2), dev("d3", 2)}}, clk.t)
				clk.t = clk.t.Add(time.Minute)
			},
			target: Target{Apps: []TargetApp{app1}, Devices: []TargetDevice{dev("d1", 1)}},
			check: func(t *testing.T, s *Store, sum TargetSummary) {
				for _, u := range []string{"d2", "d3"} {
					if d, _ := readDevice(t, s, u); !d.marked {
						t.Fatalf("device %s of the removed app not marked", u)
					}
				}
				if !slices.Equal(sum.AppsRemoved, []int64{2}) {
					t.Fatalf("got apps removed %v, want [2]", sum.AppsRemoved)
				}
				var inTarget bool
				s.r.QueryRow(`SELECT in_target FROM apps WHERE id = 2`).Scan(&inTarget)
				if inTarget {
					t.Fatal("app 2 still in_target")
				}
			},
		},
		{
			name: "a device moved between this gateway's apps changes app and update target",
			setup: func(t *testing.T, s *Store, clk *testClock) {
				apply(t, s, Target{Apps: []TargetApp{app1, {ID: 2, Name: "two", Commit: "c2", Image: "r/two@sha256:bb"}}, Devices: []TargetDevice{dev("d1", 1)}}, clk.t)
				for _, a := range []int64{1, 2} {
					if err := s.SetAppCurrentCommit(context.Background(), a, map[int64]string{1: "c1", 2: "c2"}[a]); err != nil {
						t.Fatal(err)
					}
				}
				clk.t = clk.t.Add(time.Minute)
			},
			target: Target{Apps: []TargetApp{app1, {ID: 2, Name: "two", Commit: "c2", Image: "r/two@sha256:bb"}}, Devices: []TargetDevice{dev("d1", 2)}},
			check: func(t *testing.T, s *Store, sum TargetSummary) {
				d, _ := readDevice(t, s, "d1")
				if d.appID != 2 || d.marked {
					t.Fatalf("got d1 %+v, want app 2, unmarked", d)
				}
				if !slices.Equal(sum.UpdateTargetChanged, []string{"d1"}) {
					t.Fatalf("got update target changed %v, want [d1]", sum.UpdateTargetChanged)
				}
				want := time.Date(2026, 1, 2, 3, 5, 5, 0, time.UTC).UnixMilli()
				if d.targetChangedAtMs.Int64 != want {
					t.Fatalf("got target_changed_at %d, want %d", d.targetChangedAtMs.Int64, want)
				}
				tg, ok, err := s.DeviceUpdateTarget(context.Background(), "d1")
				if err != nil || !ok || tg.AppID != 2 || tg.Commit != "c2" {
					t.Fatalf("got target %+v ok=%v err=%v, want app 2 commit c2", tg, ok, err)
				}
			},
		},
		{
			name: "on first sight the restart counter is taken as acknowledged",
			setup: func(t *testing.T, s *Store, clk *testClock) {
				insertLocalDevice(t, s, "d1", 1, clk.t.Add(-time.Hour))
			},
			target: Target{Apps: []TargetApp{app1}, Devices: []TargetDevice{{UUID: "d1", AppID: 1, Restart: 5}, {UUID: "d2", AppID: 1, Restart: 3, Cloud: cloudRec(9)}}},
			check: func(t *testing.T, s *Store, sum TargetSummary) {
				for _, u := range []string{"d1", "d2"} {
					d, _ := readDevice(t, s, u)
					if d.requested != d.acked || d.requested == 0 {
						t.Fatalf("device %s: got requested %d acked %d, want equal and non-zero", u, d.requested, d.acked)
					}
				}
				if len(sum.RestartRequested) != 0 {
					t.Fatalf("got restarts requested %v, want none", sum.RestartRequested)
				}
				if !slices.Equal(sum.FirstSeen, []string{"d1"}) || !sum.HookWorkChanged() {
					t.Fatalf("got first seen %v, want [d1] (the provisioned device) and hook work changed", sum.FirstSeen)
				}
			},
		},
		{
			name: "a restart counter increase leaves requests to acknowledge",
			setup: func(t *testing.T, s *Store, clk *testClock) {
				apply(t, s, Target{Apps: []TargetApp{app1}, Devices: []TargetDevice{{UUID: "d1", AppID: 1, Restart: 1, Cloud: cloudRec(9)}}}, clk.t)
			},
			target: Target{Apps: []TargetApp{app1}, Devices: []TargetDevice{{UUID: "d1", AppID: 1, Restart: 3}}},
			check: func(t *testing.T, s *Store, sum TargetSummary) {
				d, _ := readDevice(t, s, "d1")
				if d.requested != 3 || d.acked != 1 {
					t.Fatalf("got requested %d acked %d, want 3 and 1", d.requested, d.acked)
				}
				if !slices.Equal(sum.RestartRequested, []string{"d1"}) {
					t.Fatalf("got restarts requested %v, want [d1]", sum.RestartRequested)
				}
			},
		},
		{
			name: "a device provisioned after the poll started is not marked",
			setup: func(t *testing.T, s *Store, clk *testClock) {
				insertLocalDevice(t, s, "old", 1, clk.t.Add(-time.Hour))
				insertLocalDevice(t, s, "new", 1, clk.t)
			},
			target: Target{Apps: []TargetApp{app1}},
			check: func(t *testing.T, s *Store, sum TargetSummary) {
				if d, _ := readDevice(t, s, "new"); d.marked {
					t.Fatal("device provisioned during the poll was marked")
				}
				if d, _ := readDevice(t, s, "old"); !d.marked {
					t.Fatal("device provisioned before the poll was not marked")
				}
			},
		},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			s, clk := openTestStore(t)
			if tc.setup != nil {
				tc.setup(t, s, clk)
			}
			sum := apply(t, s, tc.target, clk.t.Add(-time.Second))
			tc.check(t, s, sum)
		})
	}
}

func TestApplyTargetTwiceChangesNothing(t *testing.T) {
	s, clk := openTestStore(t)
	tg := Target{
		Apps:    []TargetApp{{ID: 1, Name: "one", Commit: "c1", Image: "r@sha256:aa", Config: map[string]string{"K": "v"}}},
		Devices: []TargetDevice{{UUID: "d1", AppID: 1, Name: "n", Restart: 2, Environment: map[string]string{"B": "2", "A": "1"}, Cloud: cloudRec(1)}},
	}
	apply(t, s, tg, clk.t)
	sum := apply(t, s, tg, clk.t)
	if sum.HookWorkChanged() || len(sum.AppsNewCommit) != 0 || len(sum.AppsRemoved) != 0 {
		t.Fatalf("got summary %+v for an unchanged target, want nothing changed", sum)
	}
}

func TestAppsNeedingDownloadAndCurrentCommit(t *testing.T) {
	s, clk := openTestStore(t)
	ctx := context.Background()
	apply(t, s, Target{Apps: []TargetApp{{ID: 1, Name: "one", Commit: "c1", Image: "r@sha256:aa"}, {ID: 2, Name: "two"}},
		Devices: []TargetDevice{{UUID: "d1", AppID: 1, Cloud: cloudRec(1)}}}, clk.t)
	got, err := s.AppsNeedingDownload(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if len(got) != 1 || got[0] != (AppDownload{AppID: 1, Commit: "c1", Image: "r@sha256:aa"}) {
		t.Fatalf("got %+v, want app 1 commit c1", got)
	}
	clk.t = clk.t.Add(time.Minute)
	if err := s.SetAppCurrentCommit(ctx, 1, "c1"); err != nil {
		t.Fatal(err)
	}
	if got, _ := s.AppsNeedingDownload(ctx); len(got) != 0 {
		t.Fatalf("got %+v after the download, want none", got)
	}
	d, _ := readDevice(t, s, "d1")
	if d.targetChangedAtMs.Int64 != clk.t.UnixMilli() {
		t.Fatalf("got target_changed_at %d, want %d", d.targetChangedAtMs.Int64, clk.t.UnixMilli())
	}
	if err := s.SetAppCurrentCommit(ctx, 99, "x"); err != ErrNotFound {
		t.Fatalf("got %v for an unknown app, want ErrNotFound", err)
	}
}

func TestTargetETagIsForgottenWhileAProvisionedDeviceIsUnseen(t *testing.T) {
	s, clk := openTestStore(t)
	ctx := context.Background()
	app := TargetApp{ID: 1, Name: "one", Commit: "c1", Image: "r/one@sha256:aa"}
	apply(t, s, Target{ETag: `"v1"`, Apps: []TargetApp{app}}, clk.t)
	if got, _ := s.TargetETag(ctx); got != `"v1"` {
		t.Fatalf("TargetETag after apply = %q, want %q", got, `"v1"`)
	}
	// Provisioned through the API: the store now holds a device that the
	// target of "v1" does not list, so "v1" no longer describes the store.
	insertLocalDevice(t, s, "dev", 1, clk.t)
	if got, _ := s.TargetETag(ctx); got != "" {
		t.Fatalf("TargetETag with an unseen device = %q, want \"\" (fetch the whole target)", got)
	}
	// The cloud deleted it before any target listed it: the next full
	// target marks it, and the ETag is usable again.
	clk.t = clk.t.Add(time.Second)
	apply(t, s, Target{ETag: `"v1"`, Apps: []TargetApp{app}}, clk.t)
	if d, _ := readDevice(t, s, "dev"); !d.marked {
		t.Fatal("device absent from the full target was not marked for deletion")
	}
	if got, _ := s.TargetETag(ctx); got != `"v1"` {
		t.Fatalf("TargetETag once the device is marked = %q, want %q", got, `"v1"`)
	}
}

func TestNoUpdateHookIsOwedBeforeTheDeviceAppearsInATarget(t *testing.T) {
	s, clk := openTestStore(t)
	app := TargetApp{ID: 1, Name: "one", Commit: "c1", Image: "r/one@sha256:aa"}
	apply(t, s, Target{Apps: []TargetApp{app}}, clk.t)
	if err := s.SetAppCurrentCommit(context.Background(), 1, "c1"); err != nil {
		t.Fatal(err)
	}
	insertLocalDevice(t, s, "dev", 1, clk.t)
	if w, ok := pendingByUUID(t, s)["dev"]; ok {
		t.Fatalf("device not yet in any target is owed %+v, want nothing (its environment is unknown)", w)
	}
	apply(t, s, Target{Apps: []TargetApp{app}, Devices: []TargetDevice{{UUID: "dev", AppID: 1, Name: "d", Environment: map[string]string{"LED": "on"}}}}, clk.t)
	w, ok := pendingByUUID(t, s)["dev"]
	if !ok || w.Update == nil {
		t.Fatalf("device in the target is owed %+v, want its update", w)
	}
	if got := w.Update.Environment["LED"]; got != "on" {
		t.Errorf("owed update environment LED = %v, want the target's \"on\"", got)
	}
}

// UnknownDevices answers the same for a few uuids (looked up), for more
// than one chunk of lookups, and for more than it looks up (every row
// read), in the order given.
func TestUnknownDevicesFewAndMany(t *testing.T) {
	s, clk := openTestStore(t)
	for _, u := range []string{"k1", "k2", "k3"} {
		insertLocalDevice(t, s, u, 1, clk.t)
	}
	few := []string{"u9", "k2", "u1", "k1"}
	list := func(n int) []string {
		out := append([]string(nil), few...)
		for i := range n {
			out = append(out, fmt.Sprintf("x%d", i))
		}
		return append(out, "k3") // known, in the last chunk
	}
	for _, tc := range []struct {
		name  string
		uuids []string
		want  int
	}{{"few", few, 2}, {"chunks", list(5000), 2 + 5000}, {"many", list(unknownLookupMax), 2 + unknownLookupMax}} {
		got, err := s.UnknownDevices(context.Background(), tc.uuids)
		if err != nil {
			t.Fatal(err)
		}
		if len(got) != tc.want || got[0] != "u9" || got[1] != "u1" {
			t.Errorf("%s: %d unknown starting %v, want %d starting [u9 u1]", tc.name, len(got), got[:min(len(got), 3)], tc.want)
		}
	}
}
