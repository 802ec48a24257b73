package store

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"reflect"
	"slices"
	"testing"
	"time"
	"unsafe"
)

// metaCounts reads the outbox counts of kind as meta holds them.
func metaCounts(t *testing.T, s *Store, kind OutboxKind) (rows, bytes string) {
	t.Helper()
	if err := s.r.QueryRow(countsRead, metaRows(kind), metaBytes(kind)).Scan(&rows, &bytes); err != nil {
		t.Fatal(err)
	}
	return rows, bytes
}

// The outbox counts kept in memory follow the committed transactions only:
// a write that fails inside a batch leaves them (and meta) as they were,
// while the other writes of its batch count.
func TestOutboxCountsFollowOnlyTheWritesThatCommitted(t *testing.T) {
	s := openAPIStore(t)
	ctx := context.Background()
	apiProvision(t, s, "u1", 1, 11)
	release := holdWriter(t, s)
	ok := make(chan error, 1)
	go func() { _, err := s.AppendLog(ctx, "u1", logPayload(1), 0); ok <- err }()
	awaitQueued(t, s, 1)
	errBoom := errors.New("boom")
	failed := make(chan error, 1)
	go func() {
		failed <- s.writeTx(ctx, func(tx *wtx) error {
			tx.changedNoDevice()
			c := tx.outboxCounts(OutboxLog)
			tx.setOutboxCounts(OutboxLog, outboxCounts{rows: c.rows + 100, bytes: c.bytes + 100})
			tx.merged++
			return errBoom
		})
	}()
	awaitQueued(t, s, 2)
	if err := release(); err != nil {
		t.Fatal(err)
	}
	if err := await(t, "log line", ok); err != nil {
		t.Fatalf("AppendLog: %v", err)
	}
	if err := await(t, "failing write", failed); !errors.Is(err, errBoom) {
		t.Fatalf("failing write: got %v, want %v", err, errBoom)
	}
	want := int64(len(logPayload(1)))
	if c := counts(t, s); c.Rows[OutboxLog] != 1 || c.Bytes[OutboxLog] != want || c.PatchesMerged != 0 {
		t.Errorf("counters = %+v, want 1 log row of %d bytes and nothing merged", c, want)
	}
	if rows, bytes := metaCounts(t, s, OutboxLog); rows != "1" || bytes != fmt.Sprint(want) {
		t.Errorf("meta counts = %s rows, %s bytes; want 1, %d", rows, bytes, want)
	}
}

// The counts survive a reopen (they are in meta) and match the table.
func TestOutboxCountsAreReadBackAtOpen(t *testing.T) {
	dir := t.TempDir()
	s := openDir(t, dir)
	ctx := context.Background()
	apiProvision(t, s, "u1", 1, 11)
	for i := range 3 {
		if _, err := s.AppendLog(ctx, "u1", logPayload(i), 0); err != nil {
			t.Fatal(err)
		}
	}
	if _, _, err := s.ApplyReport(ctx, "u1", Report{Status: apiStrPtr("Idle")}); err != nil {
		t.Fatal(err)
	}
	rows, _ := s.NextOutbox(ctx, OutboxLog, 1)
	if _, err := s.AckOutbox(ctx, OutboxLog, rows[0].Seq); err != nil {
		t.Fatal(err)
	}
	before := counts(t, s)
	s.Close()
	s = openDir(t, dir)
	defer s.Close()
	after := counts(t, s)
	if fmt.Sprint(after.Rows, after.Bytes) != fmt.Sprint(before.Rows, before.Bytes) || after.Rows[OutboxLog] != 2 || after.Rows[OutboxPatch] != 1 {
		t.Errorf("counts after reopen = %v %v, want %v %v (2 log rows, 1 patch)", after.Rows, after.Bytes, before.Rows, before.Bytes)
	}
	var n, size int64
	if err := s.r.QueryRow(`SELECT COUNT(*), SUM(size) FROM outbox WHERE kind = 'log'`).Scan(&n, &size); err != nil {
		t.Fatal(err)
	}
	if n != after.Rows[OutboxLog] || size != after.Bytes[OutboxLog] {
		t.Errorf("table holds %d log rows of %d bytes, counts say %d, %d", n, size, after.Rows[OutboxLog], after.Bytes[OutboxLog])
	}
}

// changedViews returns the uuids ChangedDeviceViews passes on (sorted, a
// "-" prefix for devices gone), the generation it returns, and whether it
// said any device may have changed.
func changedViews(t *testing.T, s *Store, since uint64) ([]string, uint64, bool) {
	t.Helper()
	var got []string
	at, all, err := s.ChangedDeviceViews(context.Background(), since, func(uuid string, v *DeviceView) error {
		switch {
		case v == nil:
			got = append(got, "-"+uuid)
		case v.UUID != uuid:
			t.Errorf("view of %s passed as %s", v.UUID, uuid)
		default:
			got = append(got, uuid)
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	slices.Sort(got)
	return got, at, all
}

// Each write names the devices it changes: readers re-read those only, a
// write that changes none (a log line) invalidates nothing, one that
// changes apps' commits (every device's targetCommit) invalidates all, and
// a failed write nothing.
func TestChangedDevicesAreThoseTheCommittedWritesChanged(t *testing.T) {
	s := openAPIStore(t)
	ctx := context.Background()
	apiSeedApp(t, s, 5, "app", `{}`, "", true)
	for _, u := range []string{"u1", "u2", "u3"} {
		apiProvision(t, s, u, 5, 1)
	}
	g := s.Generation()
	if got, at, all := changedViews(t, s, g); len(got) != 0 || all || at != g {
		t.Errorf("nothing written: changed %v (all %v) at %d, want none at %d", got, all, at, g)
	}
	if _, _, err := s.ApplyReport(ctx, "u2", Report{Status: apiStrPtr("Idle")}); err != nil {
		t.Fatal(err)
	}
	if _, err := s.AppendLog(ctx, "u3", logPayload(1), 0); err != nil {
		t.Fatal(err)
	}
	if _, _, err := s.ApplyReport(ctx, "nope", Report{Status: apiStrPtr("Idle")}); !errors.Is(err, ErrNotFound) {
		t.Fatalf("report of an unknown device: %v", err)
	}
	got, at, all := changedViews(t, s, g)
	if fmt.Sprint(got) != "[u2]" || all || at != s.Generation() {
		t.Errorf("after a report of u2 and a log line of u3: changed %v (all %v), want [u2]", got, all)
	}
	if !s.DeviceChangedSince("u2", g) || s.DeviceChangedSince("u1", g) || s.DeviceChangedSince("u3", g) {
		t.Error("DeviceChangedSince: want u2 only")
	}
	g = at
	if err := s.RecordHookAttempt(ctx, "u1", time.Now()); err != nil {
		t.Fatal(err)
	}
	if _, err := s.WriteHookState(ctx, []HookWrite{{UUID: "u3", RemoveDeleted: true}}); err != nil {
		t.Fatal(err)
	}
	if got, _, all := changedViews(t, s, g); fmt.Sprint(got) != "[u1 u3]" || all {
		t.Errorf("after hook writes to u1 and u3: changed %v (all %v), want [u1 u3]", got, all)
	}
	g = s.Generation()
	if err := s.SetAppCurrentCommit(ctx, 5, "c1"); err != nil {
		t.Fatal(err)
	}
	if _, _, all := changedViews(t, s, g); !all || !s.DeviceChangedSince("u1", g) {
		t.Error("after the app's commit changed: want every device changed")
	}
	g = s.Generation()
	if err := s.SetAppCurrentCommit(ctx, 5, "c1"); err != nil {
		t.Fatal(err)
	}
	if got, _, all := changedViews(t, s, g); len(got) != 0 || all {
		t.Errorf("after the same commit again: changed %v (all %v), want none", got, all)
	}
	if _, err := s.ApplyTarget(ctx, Target{Apps: []TargetApp{{ID: 5, Name: "app", Commit: "c1", Image: "r@sha256:aa"}},
		Devices: []TargetDevice{{UUID: "u1", AppID: 5}, {UUID: "u2", AppID: 5}}}, time.Now().Add(time.Hour)); err != nil {
		t.Fatal(err)
	}
	if got, _, all := changedViews(t, s, g); fmt.Sprint(got) != "[u1 u2 u3]" || all {
		t.Errorf("after a target listing u1, u2 (u3 marked): changed %v (all %v), want [u1 u2 u3]", got, all)
	}
	g = s.Generation()
	if _, err := s.WriteHookState(ctx, []HookWrite{{UUID: "u3", RemoveDeleted: true}}); err != nil {
		t.Fatal(err)
	}
	if got, _, _ := changedViews(t, s, g); fmt.Sprint(got) != "[-u3]" {
		t.Errorf("after u3 was removed: changed %v, want [-u3]", got)
	}
	g = s.Generation()
	if err := s.write(ctx, func(tx *sql.Tx) error { _, err := tx.Exec(`UPDATE devices SET name = 'x'`); return err }); err != nil {
		t.Fatal(err)
	}
	if _, _, all := changedViews(t, s, g); !all {
		t.Error("after a write that named no device: want every device changed")
	}
}

// Past the changes it remembers, the log says any device may have changed.
func TestChangeLogForgetsOldChangesSafely(t *testing.T) {
	var l changeLog
	for i := range changeLogSize + 10 {
		l.record(uint64(i+1), []string{fmt.Sprint("u", i)}, false)
	}
	if _, all := l.since(5); !all {
		t.Error("since a generation older than the ring: want all")
	}
	got, all := l.since(changeLogSize + 8)
	if all || fmt.Sprint(got) != fmt.Sprintf("[u%d u%d]", changeLogSize+9, changeLogSize+8) {
		t.Errorf("since a recent generation: %v (all %v)", got, all)
	}
}

// The log keeps a uuid of its own, not the caller's string: a uuid cut from
// a request line would keep the whole line alive for every device changed.
func TestChangeLogKeepsCopiesOfTheUUIDs(t *testing.T) {
	var l changeLog
	line := "PUT /v1/devices/0123456789abcdef0123456789abcdef HTTP/1.1"
	uuid := line[len("PUT /v1/devices/") : len(line)-len(" HTTP/1.1")]
	l.record(1, []string{uuid}, false)
	l.record(2, []string{uuid}, false)
	for k := range l.last {
		if unsafe.StringData(k) == unsafe.StringData(uuid) {
			t.Error("the log's key is the caller's string, a slice of the request line")
		}
	}
	for _, e := range l.ring {
		if unsafe.StringData(e.uuid) == unsafe.StringData(uuid) {
			t.Error("a change in the ring holds the caller's string")
		}
	}
	if !l.changedSince(uuid, 1) || l.changedSince(uuid, 2) {
		t.Error("changedSince: want changed after 1, not after 2")
	}
}

// A transaction whose commit fails (here a deferred foreign key the commit
// checks) changes nothing in memory either: its writers get the error, the
// outbox counts stay those of the database, every device counts as changed,
// and the next writes commit.
func TestAFailedCommitLeavesMemoryAsTheDatabase(t *testing.T) {
	s := openAPIStore(t)
	ctx := context.Background()
	apiProvision(t, s, "u1", 1, 11)
	before := counts(t, s)
	g := s.Generation()
	err := s.writeTx(ctx, func(tx *wtx) error {
		tx.changedNoDevice()
		c := tx.outboxCounts(OutboxLog)
		tx.setOutboxCounts(OutboxLog, outboxCounts{rows: c.rows + 5, bytes: c.bytes + 500})
		for _, q := range []string{
			`CREATE TEMP TABLE parent (id INTEGER PRIMARY KEY)`,
			`CREATE TEMP TABLE child (p INTEGER REFERENCES parent(id) DEFERRABLE INITIALLY DEFERRED)`,
			`INSERT INTO child (p) VALUES (42)`,
		} {
			if _, err := tx.Exec(q); err != nil {
				return err
			}
		}
		return nil
	})
	if err == nil {
		t.Fatal("a write whose commit breaks a deferred foreign key: got nil, want the commit's error")
	}
	if after := counts(t, s); fmt.Sprint(after.Rows, after.Bytes) != fmt.Sprint(before.Rows, before.Bytes) {
		t.Errorf("counts after the failed commit = %v %v, want %v %v", after.Rows, after.Bytes, before.Rows, before.Bytes)
	}
	if s.Generation() == g || !s.DeviceChangedSince("u1", g) {
		t.Error("after a failed commit: want the generation moved and every device counted as changed")
	}
	if _, err := s.AppendLog(ctx, "u1", logPayload(1), 0); err != nil {
		t.Fatalf("the next write: %v", err)
	}
	if c := counts(t, s); c.Rows[OutboxLog] != before.Rows[OutboxLog]+1 {
		t.Errorf("log rows after the next write = %d, want %d", c.Rows[OutboxLog], before.Rows[OutboxLog]+1)
	}
}

// ChangedHookWork reads what the changed devices are owed, as HookWorkFor
// does, nil for a device gone, and says all when the app's commit changed.
func TestChangedHookWorkReadsTheChangedDevices(t *testing.T) {
	s := openAPIStore(t)
	ctx := context.Background()
	apiSeedApp(t, s, 5, "app", `{}`, "", true)
	for _, u := range []string{"u1", "u2", "u3"} {
		apiProvision(t, s, u, 5, 1)
	}
	if err := s.SetAppCurrentCommit(ctx, 5, "c1"); err != nil {
		t.Fatal(err)
	}
	g := s.Generation()
	if _, _, err := s.ApplyReport(ctx, "u2", Report{Status: apiStrPtr("Idle")}); err != nil {
		t.Fatal(err)
	}
	works, at, all, err := s.ChangedHookWork(ctx, g)
	if err != nil || all || at != s.Generation() || len(works) != 1 || works["u2"] == nil {
		t.Fatalf("after a report of u2: got %v at %d (all %v, err %v), want u2's work at %d", works, at, all, err, s.Generation())
	}
	one, err := s.HookWorkFor(ctx, "u2")
	if err != nil || !reflect.DeepEqual(*works["u2"], one) {
		t.Errorf("ChangedHookWork read %+v, HookWorkFor %+v (err %v)", *works["u2"], one, err)
	}
	g = at
	if _, err := s.ApplyTarget(ctx, Target{Apps: []TargetApp{{ID: 5, Name: "app", Commit: "c1", Image: "r@sha256:aa"}},
		Devices: []TargetDevice{{UUID: "u1", AppID: 5}, {UUID: "u2", AppID: 5}}}, time.Now().Add(time.Hour)); err != nil {
		t.Fatal(err)
	}
	if _, err := s.WriteHookState(ctx, []HookWrite{{UUID: "u3", RemoveDeleted: true}}); err != nil {
		t.Fatal(err)
	}
	works, _, all, err = s.ChangedHookWork(ctx, g)
	if err != nil || all || len(works) != 3 || works["u3"] != nil || works["u1"] == nil || works["u1"].Update == nil {
		t.Fatalf("after a target of u1, u2 and u3 removed: got %v (all %v, err %v), want u1 and u2 owed an update, u3 nil", works, all, err)
	}
	g = s.Generation()
	if err := s.SetAppCurrentCommit(ctx, 5, "c2"); err != nil {
		t.Fatal(err)
	}
	if works, _, all, err := s.ChangedHookWork(ctx, g); err != nil || !all || works != nil {
		t.Errorf("after the app's commit changed: got %v (all %v, err %v), want all", works, all, err)
	}
}
