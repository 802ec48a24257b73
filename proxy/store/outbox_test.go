package store

import (
	"context"
	"errors"
	"fmt"
	"testing"
	"time"
)

func logPayload(i int) []byte { return []byte(fmt.Sprintf(`{"message":"m%d"}`, i)) }

func outboxPayloads(t testing.TB, s *Store, kind OutboxKind) []string {
	t.Helper()
	rows, err := s.NextOutbox(context.Background(), kind, 1000)
	if err != nil {
		t.Fatal(err)
	}
	var out []string
	for _, r := range rows {
		out = append(out, string(r.Payload))
	}
	return out
}

// appendLogs appends the log lines from to to (logPayload) of uuid to a
// buffer bounded at bound lines and returns how many lines each dropped.
func appendLogs(t testing.TB, s *Store, uuid string, bound, from, to int) []int64 {
	t.Helper()
	var dropped []int64
	for i := from; i <= to; i++ {
		n, err := s.AppendLog(context.Background(), uuid, logPayload(i), bound)
		if err != nil {
			t.Fatalf("AppendLog %d: %v", i, err)
		}
		dropped = append(dropped, n)
	}
	return dropped
}

// wantDropped fails the test unless dropped, what appendLogs returned, is
// want.
func wantDropped(t testing.TB, dropped []int64, want string) {
	t.Helper()
	if got := fmt.Sprint(dropped); got != want {
		t.Fatalf("dropped = %s, want %s", got, want)
	}
}

// wantBuffered fails the test unless the log rows waiting in the outbox
// are want, in order.
func wantBuffered(t testing.TB, s *Store, want string) {
	t.Helper()
	if got := fmt.Sprint(outboxPayloads(t, s, OutboxLog)); got != want {
		t.Errorf("buffered = %s, want %s", got, want)
	}
}

func TestAppendLogKeepsTheNewestLinesAndCountsDrops(t *testing.T) {
	s := openAPIStore(t)
	ctx := context.Background()
	apiProvision(t, s, "u1", 1, 11)
	wantDropped(t, appendLogs(t, s, "u1", 3, 1, 5), "[0 0 0 1 1]")
	wantBuffered(t, s, `[{"message":"m3"} {"message":"m4"} {"message":"m5"}]`)
	// Acknowledging frees room: two more lines fit without a drop.
	rows, _ := s.NextOutbox(ctx, OutboxLog, 2)
	if n, err := s.AckOutbox(ctx, OutboxLog, rows[1].Seq); err != nil || n != 2 {
		t.Fatalf("AckOutbox = %d, %v; want 2", n, err)
	}
	wantDropped(t, appendLogs(t, s, "u1", 3, 6, 8), "[0 0 1]")
	wantBuffered(t, s, `[{"message":"m6"} {"message":"m7"} {"message":"m8"}]`)
	if rows[0].CloudID != 11 || rows[0].DeviceUUID != "u1" || !rows[0].CreatedAt.Equal(apiEpoch.Truncate(time.Millisecond)) {
		t.Errorf("row = %+v, want cloud id 11, uuid u1, created at %v", rows[0], apiEpoch)
	}
}

func TestAppendLogBoundHoldsAcrossReopen(t *testing.T) {
	dir := t.TempDir()
	ctx := context.Background()
	s := openDir(t, dir)
	apiProvision(t, s, "u1", 1, 1)
	appendLogs(t, s, "u1", 3, 0, 2)
	s.Close()
	s = openDir(t, dir)
	t.Cleanup(func() { s.Close() })
	if n, err := s.AppendLog(ctx, "u1", logPayload(3), 3); err != nil || n != 1 {
		t.Fatalf("AppendLog after reopen = %d, %v; want 1 dropped", n, err)
	}
	if d, _ := s.OutboxDepth(ctx, OutboxLog); d != 3 {
		t.Errorf("depth = %d, want 3", d)
	}
}

func TestAppendLogRefusesUnknownAndMarkedDevices(t *testing.T) {
	s := openAPIStore(t)
	ctx := context.Background()
	apiProvision(t, s, "gone", 1, 1)
	apiMarkForDelete(t, s, "gone")
	if _, err := s.AppendLog(ctx, "nope", logPayload(1), 0); !errors.Is(err, ErrNotFound) {
		t.Errorf("unknown: err = %v, want ErrNotFound", err)
	}
	if _, err := s.AppendLog(ctx, "gone", logPayload(1), 0); !errors.Is(err, ErrDeleted) {
		t.Errorf("marked: err = %v, want ErrDeleted", err)
	}
	if _, err := s.AppendLog(ctx, "gone", []byte("{not json"), 0); err == nil {
		t.Errorf("bad payload accepted")
	}
	if d, _ := s.OutboxDepth(ctx, OutboxLog); d != 0 {
		t.Errorf("depth = %d, want 0", d)
	}
}

// queueInterleaved provisions devices u1…un and queues, in turn, a report
// of status s<i> of device u<i+1> and log line i of u1 (seqs shared by both
// kinds; one device per report, as a device's reports are merged), with
// the log buffer bounded to maxLogs lines (0: unbounded).
func queueInterleaved(t *testing.T, s *Store, n, maxLogs int) {
	t.Helper()
	ctx := context.Background()
	for i := 0; i < n; i++ {
		apiProvision(t, s, fmt.Sprint("u", i+1), 1, int64(i+1))
	}
	for i := 0; i < n; i++ {
		if _, _, err := s.ApplyReport(ctx, fmt.Sprint("u", i+1), Report{Status: apiStrPtr(fmt.Sprint("s", i))}); err != nil {
			t.Fatal(err)
		}
		if _, err := s.AppendLog(ctx, "u1", logPayload(i), maxLogs); err != nil {
			t.Fatal(err)
		}
	}
}

func TestOutboxKindsAreSeparateQueuesInSeqOrder(t *testing.T) {
	s := openAPIStore(t)
	ctx := context.Background()
	queueInterleaved(t, s, 3, 0)
	patches, _ := s.NextOutbox(ctx, OutboxPatch, 2)
	if len(patches) != 2 || string(patches[0].Payload) != `{"status":"s0"}` || string(patches[1].Payload) != `{"status":"s1"}` || patches[0].Seq >= patches[1].Seq {
		t.Fatalf("first two patches = %+v, want s0 then s1", patches)
	}
	if n, err := s.AckOutbox(ctx, OutboxPatch, patches[1].Seq); err != nil || n != 2 {
		t.Fatalf("AckOutbox = %d, %v; want 2", n, err)
	}
	if got, want := fmt.Sprint(outboxPayloads(t, s, OutboxPatch)), `[{"status":"s2"}]`; got != want {
		t.Errorf("patches left = %s, want %s", got, want)
	}
	if d, _ := s.OutboxDepth(ctx, OutboxLog); d != 3 {
		t.Errorf("log depth = %d, want 3 (acking patches must not touch logs)", d)
	}
	if _, err := s.NextOutbox(ctx, "other", 1); err == nil {
		t.Errorf("unknown kind accepted")
	}
}

func TestAckOutboxRowsDeletesExactlyTheListedRowsOfItsKind(t *testing.T) {
	s := openAPIStore(t)
	ctx := context.Background()
	// Interleaved: patch s0, log m0, patch s1, log m1, ...
	queueInterleaved(t, s, 4, 4)
	patches, _ := s.NextOutbox(ctx, OutboxPatch, 10)
	logs, _ := s.NextOutbox(ctx, OutboxLog, 10)
	if len(patches) != 4 || len(logs) != 4 {
		t.Fatalf("got %d patches and %d logs, want 4 and 4", len(patches), len(logs))
	}
	// Ack patches s0 and s2 (a gap at s1), plus a log row's seq and a seq
	// that does not exist: only the two patch rows may go.
	n, err := s.AckOutboxRows(ctx, OutboxPatch, []int64{patches[0].Seq, patches[2].Seq, logs[1].Seq, 1 << 40})
	if err != nil || n != 2 {
		t.Fatalf("AckOutboxRows = %d, %v; want 2, nil", n, err)
	}
	if got, want := fmt.Sprint(outboxPayloads(t, s, OutboxPatch)), `[{"status":"s1"} {"status":"s3"}]`; got != want {
		t.Errorf("patches left = %s, want %s", got, want)
	}
	if d, _ := s.OutboxDepth(ctx, OutboxLog); d != 4 {
		t.Errorf("log depth = %d, want 4 (acking patches must not touch logs)", d)
	}
	// Acking the same rows again deletes nothing.
	if n, err := s.AckOutboxRows(ctx, OutboxPatch, []int64{patches[0].Seq, patches[2].Seq}); err != nil || n != 0 {
		t.Errorf("second AckOutboxRows = %d, %v; want 0, nil", n, err)
	}
	if n, err := s.AckOutboxRows(ctx, OutboxPatch, nil); err != nil || n != 0 {
		t.Errorf("AckOutboxRows(nil) = %d, %v; want 0, nil", n, err)
	}
	if _, err := s.AckOutboxRows(ctx, "other", []int64{1}); err == nil {
		t.Errorf("unknown kind accepted")
	}
}

func TestAckOutboxRowsFreesRoomInTheBoundedLogBuffer(t *testing.T) {
	s := openAPIStore(t)
	ctx := context.Background()
	apiProvision(t, s, "u1", 1, 1)
	appendLogs(t, s, "u1", 3, 1, 3)
	rows, _ := s.NextOutbox(ctx, OutboxLog, 3)
	if n, err := s.AckOutboxRows(ctx, OutboxLog, []int64{rows[0].Seq, rows[2].Seq}); err != nil || n != 2 {
		t.Fatalf("AckOutboxRows = %d, %v; want 2", n, err)
	}
	// Two lines fit without a drop, the third drops the oldest (m2).
	wantDropped(t, appendLogs(t, s, "u1", 3, 4, 6), "[0 0 1]")
	wantBuffered(t, s, `[{"message":"m4"} {"message":"m5"} {"message":"m6"}]`)
}
