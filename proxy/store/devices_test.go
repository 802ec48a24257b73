package store

import (
	"context"
	"database/sql"
	"encoding/json"
	"errors"
	"fmt"
	"testing"
	"time"
)

var apiEpoch = time.Date(2026, 3, 4, 5, 6, 7, 0, time.UTC)

// openAPIStore opens a store in a temporary directory with a fixed clock.
func openAPIStore(t testing.TB) *Store {
	t.Helper()
	s, err := Open(t.TempDir(), Options{Now: func() time.Time { return apiEpoch }})
	if err != nil {
		t.Fatalf("Open: %v", err)
	}
	t.Cleanup(func() { s.Close() })
	return s
}

// openDir opens the store in dir (a new one, or one closed before: a
// reopen), with the real clock.
func openDir(t testing.TB, dir string) *Store {
	t.Helper()
	s, err := Open(dir, Options{})
	if err != nil {
		t.Fatalf("Open: %v", err)
	}
	return s
}

// execWrite runs one statement as a write of the store (through the group
// commit, as every write of the proxy: the store's memory of what changed
// sees it).
func execWrite(s *Store, q string, args ...any) (sql.Result, error) {
	var res sql.Result
	err := s.write(context.Background(), func(tx *sql.Tx) error {
		var err error
		res, err = tx.Exec(q, args...)
		return err
	})
	return res, err
}

// seedApp inserts an app row; current "" means no downloaded commit.
func apiSeedApp(t testing.TB, s *Store, id int64, name, config, current string, inTarget bool) {
	t.Helper()
	var cur any
	if current != "" {
		cur = current
	}
	if _, err := execWrite(s, `INSERT INTO apps (id, name, config, current_commit, target_commit, in_target) VALUES (?, ?, ?, ?, ?, ?)`,
		id, name, config, cur, cur, inTarget); err != nil {
		t.Fatalf("seed app %d: %v", id, err)
	}
}

// provision inserts a device as POST /v1/devices does.
func apiProvision(t testing.TB, s *Store, uuid string, appID, cloudID int64) Device {
	t.Helper()
	d, err := s.InsertProvisioned(context.Background(), NewDevice{UUID: uuid, AppID: appID, DeviceType: "generic-amd64", CloudID: cloudID, Name: "name-" + uuid})
	if err != nil {
		t.Fatalf("InsertProvisioned %s: %v", uuid, err)
	}
	return d
}

func apiSetTarget(t testing.TB, s *Store, uuid, env, cfg string) {
	t.Helper()
	if _, err := execWrite(s, `UPDATE devices SET target_environment = ?, target_config = ?, in_target = 1 WHERE uuid = ?`, env, cfg, uuid); err != nil {
		t.Fatalf("set target: %v", err)
	}
}

func apiMarkForDelete(t testing.TB, s *Store, uuid string) {
	t.Helper()
	if _, err := execWrite(s, `UPDATE devices SET marked_for_delete = 1 WHERE uuid = ?`, uuid); err != nil {
		t.Fatalf("mark: %v", err)
	}
}

func apiStrPtr(s string) *string { return &s }

func apiDeref(p *string) any {
	if p == nil {
		return nil
	}
	return *p
}
func apiBoolPtr(b bool) *bool { return &b }

func TestInsertProvisionedThenRead(t *testing.T) {
	s := openAPIStore(t)
	ctx := context.Background()
	apiSeedApp(t, s, 5, "app", `{}`, "c1", true)
	note := "a note"
	d, err := s.InsertProvisioned(ctx, NewDevice{UUID: "u1", AppID: 5, DeviceType: "edge", CloudID: 77, Name: "blue-sun", Note: &note})
	if err != nil {
		t.Fatalf("InsertProvisioned: %v", err)
	}
	got, err := s.DeviceByUUID(ctx, "u1")
	if err != nil {
		t.Fatalf("DeviceByUUID: %v", err)
	}
	for _, c := range []struct {
		what      string
		got, want any
	}{
		{"id", got.ID, d.ID},
		{"app", got.AppID, int64(5)},
		{"type", got.DeviceType, "edge"},
		{"cloud id", got.CloudID, int64(77)},
		{"name", got.Name, "blue-sun"},
		{"note", *got.Note, "a note"},
		{"status", got.Status, "Provisioned"},
		{"is_online is nil", got.IsOnline == nil, true},
		{"commit is nil", got.ReportedCommit == nil, true},
		{"environment is nil", got.Environment == nil, true},
		{"target environment", string(got.TargetEnvironment), "{}"},
		{"target config", string(got.TargetConfig), "{}"},
		{"app current commit", *got.AppCurrentCommit, "c1"},
		{"created at", got.CreatedAt.UnixMilli(), apiEpoch.UnixMilli()},
		{"not marked", got.MarkedForDelete, false},
	} {
		if fmt.Sprint(c.got) != fmt.Sprint(c.want) {
			t.Errorf("%s: got %v, want %v", c.what, c.got, c.want)
		}
	}
}

func TestInsertProvisionedKeepsTargetOfARowTheSyncInsertedFirst(t *testing.T) {
	s := openAPIStore(t)
	apiProvision(t, s, "u1", 5, 1)
	apiSetTarget(t, s, "u1", `{"A":"1"}`, `{}`)
	d, err := s.InsertProvisioned(context.Background(), NewDevice{UUID: "u1", AppID: 5, DeviceType: "generic-amd64", CloudID: 9, Name: "n2"})
	if err != nil {
		t.Fatalf("InsertProvisioned again: %v", err)
	}
	if d.CloudID != 9 || d.Name != "n2" || string(d.TargetEnvironment) != `{"A":"1"}` || !d.InTarget {
		t.Errorf("got cloud id %d, name %q, target env %s, in target %v; want 9, n2, {\"A\":\"1\"}, true",
			d.CloudID, d.Name, d.TargetEnvironment, d.InTarget)
	}
}

func TestDeviceByUUIDUnknownIsNotFound(t *testing.T) {
	s := openAPIStore(t)
	if _, err := s.DeviceByUUID(context.Background(), "nope"); !errors.Is(err, ErrNotFound) {
		t.Fatalf("err = %v, want ErrNotFound", err)
	}
}

func TestListDevicesIncludesMarkedInIDOrder(t *testing.T) {
	s := openAPIStore(t)
	if ds, err := s.ListDevices(context.Background()); err != nil || ds == nil || len(ds) != 0 {
		t.Fatalf("empty list = %v, %v; want non-nil empty", ds, err)
	}
	for i, u := range []string{"c", "a", "b"} {
		apiProvision(t, s, u, 1, int64(i+1))
	}
	apiMarkForDelete(t, s, "a")
	ds, err := s.ListDevices(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	var got []string
	for _, d := range ds {
		got = append(got, fmt.Sprintf("%s/%v", d.UUID, d.MarkedForDelete))
	}
	if want := "[c/false a/true b/false]"; fmt.Sprint(got) != want {
		t.Errorf("list = %v, want %s", got, want)
	}
}

func TestApplyReport(t *testing.T) {
	ctx := context.Background()
	for _, tc := range []struct {
		name        string
		report      Report
		wantPatch   string // "" when no outbox row
		check       func(t *testing.T, d Device)
		wantPending bool // an update hook is still owed afterwards
	}{
		{
			name:        "a status report is stored and queued for the cloud alone",
			report:      Report{Status: apiStrPtr("Updating")},
			wantPatch:   `{"status":"Updating"}`,
			wantPending: true,
			check: func(t *testing.T, d Device) {
				if d.Status != "Updating" {
					t.Errorf("status = %q, want Updating", d.Status)
				}
			},
		},
		{
			name:        "is_online false is stored as false and queued",
			report:      Report{IsOnline: apiBoolPtr(false)},
			wantPatch:   `{"is_online":false}`,
			wantPending: true,
			check: func(t *testing.T, d Device) {
				if d.IsOnline == nil || *d.IsOnline {
					t.Errorf("is_online = %v, want false", d.IsOnline)
				}
			},
		},
		{
			name:        "a commit is queued as is_on__commit",
			report:      Report{Commit: apiStrPtr("c0"), IsOnline: apiBoolPtr(true)},
			wantPatch:   `{"is_online":true,"is_on__commit":"c0"}`,
			wantPending: true,
			check: func(t *testing.T, d Device) {
				if d.ReportedCommit == nil || *d.ReportedCommit != "c0" {
					t.Errorf("commit = %v, want c0", d.ReportedCommit)
				}
			},
		},
		{
			name:        "environment and config stay local",
			report:      Report{Environment: json.RawMessage(`{ "X" : 1 }`), Config: json.RawMessage(`{}`)},
			wantPending: true,
			check: func(t *testing.T, d Device) {
				if string(d.Environment) != `{"X":1}` || string(d.Config) != `{}` {
					t.Errorf("environment, config = %s, %s; want {\"X\":1}, {}", d.Environment, d.Config)
				}
			},
		},
		{
			name:   "a reported state equal to the target acknowledges it",
			report: Report{Commit: apiStrPtr("c1"), Environment: json.RawMessage(`{"B":"2","A":"1"}`)},
			// config never reported counts as {} and the target config is {}
			wantPatch: `{"is_on__commit":"c1"}`,
			check: func(t *testing.T, d Device) {
				want := `{"appId":5,"commit":"c1","environment":{"A":"1","B":"2"},"config":{}}`
				if d.UpdateAcked == nil || *d.UpdateAcked != want {
					t.Errorf("update_acked = %v, want %s", apiDeref(d.UpdateAcked), want)
				}
			},
		},
		{
			name:        "the target commit with another environment acknowledges nothing",
			report:      Report{Commit: apiStrPtr("c1"), Environment: json.RawMessage(`{"A":"1"}`)},
			wantPatch:   `{"is_on__commit":"c1"}`,
			wantPending: true,
			check: func(t *testing.T, d Device) {
				if d.UpdateAcked != nil {
					t.Errorf("update_acked = %s, want nil", *d.UpdateAcked)
				}
			},
		},
	} {
		t.Run(tc.name, func(t *testing.T) {
			s := openAPIStore(t)
			apiSeedApp(t, s, 5, "app", `{}`, "c1", true)
			apiProvision(t, s, "u1", 5, 42)
			apiSetTarget(t, s, "u1", `{"A":"1","B":"2"}`, `{}`)
			d, enq, err := s.ApplyReport(ctx, "u1", tc.report)
			if err != nil {
				t.Fatalf("ApplyReport: %v", err)
			}
			tc.check(t, d)
			again, err := s.DeviceByUUID(ctx, "u1")
			if err != nil {
				t.Fatal(err)
			}
			tc.check(t, again)
			rows, err := s.NextOutbox(ctx, OutboxPatch, 10)
			if err != nil {
				t.Fatal(err)
			}
			if enq != (tc.wantPatch != "") {
				t.Errorf("enqueued = %v, want %v", enq, tc.wantPatch != "")
			}
			switch {
			case tc.wantPatch == "" && len(rows) != 0:
				t.Errorf("outbox = %d rows, want none", len(rows))
			case tc.wantPatch != "" && len(rows) != 1:
				t.Errorf("outbox = %d rows, want 1", len(rows))
			case tc.wantPatch != "":
				r := rows[0]
				if string(r.Payload) != tc.wantPatch || r.CloudID != 42 || r.DeviceUUID != "u1" || r.Kind != OutboxPatch {
					t.Errorf("outbox row = %+v (payload %s), want payload %s for cloud id 42 of u1", r, r.Payload, tc.wantPatch)
				}
			}
			w, err := s.HookWorkFor(ctx, "u1")
			if err != nil {
				t.Fatal(err)
			}
			if got := w.Update != nil; got != tc.wantPending {
				t.Errorf("update hook pending = %v, want %v", got, tc.wantPending)
			}
		})
	}
}

func TestApplyReportWithoutCurrentCommitAcknowledgesNothing(t *testing.T) {
	s := openAPIStore(t)
	apiSeedApp(t, s, 5, "app", `{}`, "", true)
	apiProvision(t, s, "u1", 5, 42)
	d, _, err := s.ApplyReport(context.Background(), "u1", Report{Commit: apiStrPtr("c1"), Environment: json.RawMessage(`{}`), Config: json.RawMessage(`{}`)})
	if err != nil {
		t.Fatal(err)
	}
	if d.UpdateAcked != nil {
		t.Errorf("update_acked = %s, want nil", *d.UpdateAcked)
	}
}

func TestApplyReportRefusalsWriteNothing(t *testing.T) {
	ctx := context.Background()
	for _, tc := range []struct {
		name    string
		uuid    string
		report  Report
		wantErr error
	}{
		{"an unknown device is not found", "nope", Report{Status: apiStrPtr("x")}, ErrNotFound},
		{"a device marked for deletion is deleted", "gone", Report{Status: apiStrPtr("x")}, ErrDeleted},
		{"an empty report is refused", "u1", Report{}, nil},
		{"an environment that is not an object is refused", "u1", Report{Status: apiStrPtr("x"), Environment: json.RawMessage(`[]`)}, nil},
	} {
		t.Run(tc.name, func(t *testing.T) {
			s := openAPIStore(t)
			apiProvision(t, s, "u1", 5, 1)
			apiProvision(t, s, "gone", 5, 2)
			apiMarkForDelete(t, s, "gone")
			_, _, err := s.ApplyReport(ctx, tc.uuid, tc.report)
			if err == nil {
				t.Fatal("ApplyReport succeeded, want error")
			}
			if tc.wantErr != nil && !errors.Is(err, tc.wantErr) {
				t.Fatalf("err = %v, want %v", err, tc.wantErr)
			}
			if n, _ := s.OutboxDepth(ctx, OutboxPatch); n != 0 {
				t.Errorf("outbox depth = %d, want 0", n)
			}
			for _, u := range []string{"u1", "gone"} {
				d, _ := s.DeviceByUUID(ctx, u)
				if d.Status != "Provisioned" || d.Environment != nil {
					t.Errorf("%s: status %q, environment %s; want unchanged", u, d.Status, d.Environment)
				}
			}
		})
	}
}

func TestApplyReportKeepsUnreportedFields(t *testing.T) {
	s := openAPIStore(t)
	ctx := context.Background()
	apiProvision(t, s, "u1", 5, 1)
	if _, _, err := s.ApplyReport(ctx, "u1", Report{Status: apiStrPtr("A"), IsOnline: apiBoolPtr(true), Commit: apiStrPtr("c"), Environment: json.RawMessage(`{"e":1}`), Config: json.RawMessage(`{"c":1}`)}); err != nil {
		t.Fatal(err)
	}
	d, _, err := s.ApplyReport(ctx, "u1", Report{Status: apiStrPtr("B")})
	if err != nil {
		t.Fatal(err)
	}
	if d.Status != "B" || d.IsOnline == nil || !*d.IsOnline || *d.ReportedCommit != "c" || string(d.Environment) != `{"e":1}` || string(d.Config) != `{"c":1}` {
		t.Errorf("device = %+v, want status B and the earlier is_online, commit, environment, config kept", d)
	}
}

func BenchmarkApplyReport(b *testing.B) {
	s := openAPIStore(b)
	apiSeedApp(b, s, 5, "app", `{}`, "c1", true)
	apiProvision(b, s, "u1", 5, 1)
	ctx := context.Background()
	b.ResetTimer()
	for i := 0; b.Loop(); i++ {
		if _, _, err := s.ApplyReport(ctx, "u1", Report{Status: apiStrPtr(fmt.Sprint("s", i)), IsOnline: apiBoolPtr(i%2 == 0)}); err != nil {
			b.Fatal(err)
		}
	}
	b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "puts/s")
}

// seed10k inserts 10,000 devices of app 5 with small reported and target
// objects, in one transaction.
func seed10k(b *testing.B) *Store {
	s := openAPIStore(b)
	apiSeedApp(b, s, 5, "app", `{}`, "c1", true)
	ctx := context.Background()
	err := s.write(ctx, func(tx *sql.Tx) error {
		for i := 0; i < 10000; i++ {
			if _, err := tx.ExecContext(ctx, `INSERT INTO devices (uuid, app_id, device_type, cloud_id, name, status, environment, config, target_environment, created_at)
VALUES (?, 5, 'generic-amd64', ?, 'n', 'Idle', '{"A":"1"}', '{}', '{"A":"1"}', 0)`, fmt.Sprintf("%032x", i), i+1); err != nil {
				return err
			}
		}
		return nil
	})
	if err != nil {
		b.Fatal(err)
	}
	return s
}

// BenchmarkListDevices10k reads every column of 10,000 devices into a slice.
func BenchmarkListDevices10k(b *testing.B) {
	s := seed10k(b)
	ctx := context.Background()
	b.ResetTimer()
	for b.Loop() {
		ds, err := s.ListDevices(ctx)
		if err != nil || len(ds) != 10000 {
			b.Fatalf("ListDevices = %d, %v", len(ds), err)
		}
	}
}

// BenchmarkEachDeviceView10k streams the API's columns of 10,000 devices
// (what GET /v1/devices reads).
func BenchmarkEachDeviceView10k(b *testing.B) {
	s := seed10k(b)
	ctx := context.Background()
	b.ResetTimer()
	for b.Loop() {
		n := 0
		if err := s.EachDeviceView(ctx, func(*DeviceView) error { n++; return nil }); err != nil || n != 10000 {
			b.Fatalf("EachDeviceView = %d, %v", n, err)
		}
	}
}

// Concurrent reports, log lines and reads share the prepared statements and
// the one writer connection without deadlock, and every write lands.
func TestConcurrentWritesAndReads(t *testing.T) {
	s := openAPIStore(t)
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	apiSeedApp(t, s, 5, "app", `{}`, "c1", true)
	for i := 0; i < 4; i++ {
		apiProvision(t, s, fmt.Sprint("u", i), 5, int64(i+1))
	}
	errs := make(chan error, 12)
	for g := 0; g < 12; g++ {
		go func() {
			u := fmt.Sprint("u", g%4)
			for i := 0; i < 20; i++ {
				var err error
				switch g % 3 {
				case 0:
					_, _, err = s.ApplyReport(ctx, u, Report{Status: apiStrPtr(fmt.Sprint(i))})
				case 1:
					_, err = s.AppendLog(ctx, u, logPayload(i), 0)
				default:
					_, err = s.DeviceByUUID(ctx, u)
				}
				if err != nil {
					errs <- err
					return
				}
			}
			errs <- nil
		}()
	}
	for g := 0; g < 12; g++ {
		if err := <-errs; err != nil {
			t.Fatal(err)
		}
	}
	// Each device's reports are merged into one queued row (DEV-PUT-6).
	if n, _ := s.OutboxDepth(ctx, OutboxPatch); n != 4 {
		t.Errorf("patch rows = %d, want 4 (one merged report per device)", n)
	}
	if n, _ := s.OutboxDepth(ctx, OutboxLog); n != 4*20 {
		t.Errorf("log rows = %d, want 80", n)
	}
}
