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

func TestAppendLogKeepsTheNewestLinesAndCountsDrops(t *testing.T) {
	s := openAPIStore(t)
	ctx := context.Background()
	apiProvision(t, s, "u1", 1, 11)
	var dropped []int64
	for i := 1; i <= 5; i++ {
		n, err := s.AppendLog(ctx, "u1", logPayload(i), 3)
		if err != nil {
			t.Fatalf("AppendLog %d: %v", i, err)
		}
		dropped = append(dropped, n)
	}
	if want := "[0 0 0 1 1]"; fmt.Sprint(dropped) != want {
		t.Errorf("dropped = %v, want %s", dropped, want)
	}
	if got, want := fmt.Sprint(outboxPayloads(t, s, OutboxLog)), `[{"message":"m3"} {"message":"m4"} {"message":"m5"}]`; got != want {
		t.Errorf("buffered = %s, want %s", got, want)
	}
	// Acknowledging frees room: two more lines fit without a drop.
	rows, _ := s.NextOutbox(ctx, OutboxLog, 2)
	if n, err := s.AckOutbox(ctx, OutboxLog, rows[1].Seq); err != nil || n != 2 {
		t.Fatalf("AckOutbox = %d, %v; want 2", n, err)
	}
	for i := 6; i <= 7; i++ {
		if n, err := s.AppendLog(ctx, "u1", logPayload(i), 3); err != nil || n != 0 {
			t.Fatalf("AppendLog %d = %d, %v; want no drop", i, n, err)
		}
	}
	if n, err := s.AppendLog(ctx, "u1", logPayload(8), 3); err != nil || n != 1 {
		t.Fatalf("AppendLog 8 = %d, %v; want 1 dropped", n, err)
	}
	if got, want := fmt.Sprint(outboxPayloads(t, s, OutboxLog)), `[{"message":"m6"} {"message":"m7"} {"message":"m8"}]`; got != want {
		t.Errorf("buffered = %s, want %s", got, want)
	}
	if rows[0].CloudID != 11 || rows[0].DeviceUUID != "u1" || !rows[0].CreatedAt.Equal(apiEpoch.Truncate(time.Millisecond)) {
		t.Errorf("row = %+v, want cloud id 11, uuid u1, created at %v", rows[0], apiEpoch)
	}
}

func TestAppendLogBoundHoldsAcrossReopen(t *testing.T) {
	dir := t.TempDir()
	ctx := context.Background()
	s, err := Open(dir, Options{})
	if err != nil {
		t.Fatal(err)
	}
	apiProvision(t, s, "u1", 1, 1)
	for i := 0; i < 3; i++ {
		if _, err := s.AppendLog(ctx, "u1", logPayload(i), 3); err != nil {
			t.Fatal(err)
		}
	}
	s.Close()
	s, err = Open(dir, Options{})
	if err != nil {
		t.Fatal(err)
	}
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
	for i := 1; i <= 3; i++ {
		if _, err := s.AppendLog(ctx, "u1", logPayload(i), 3); err != nil {
			t.Fatal(err)
		}
	}
	rows, _ := s.NextOutbox(ctx, OutboxLog, 3)
	if n, err := s.AckOutboxRows(ctx, OutboxLog, []int64{rows[0].Seq, rows[2].Seq}); err != nil || n != 2 {
		t.Fatalf("AckOutboxRows = %d, %v; want 2", n, err)
	}
	// Two lines fit without a drop, the third drops the oldest (m2).
	for i := 4; i <= 5; i++ {
		if n, err := s.AppendLog(ctx, "u1", logPayload(i), 3); err != nil || n != 0 {
			t.Fatalf("AppendLog %d = %d, %v; want no drop", i, n, err)
		}
	}
	if n, err := s.AppendLog(ctx, "u1", logPayload(6), 3); err != nil || n != 1 {
		t.Fatalf("AppendLog 6 = %d, %v; want 1 dropped", n, err)
	}
	if got, want := fmt.Sprint(outboxPayloads(t, s, OutboxLog)), `[{"message":"m4"} {"message":"m5"} {"message":"m6"}]`; got != want {
		t.Errorf("buffered = %s, want %s", got, want)
	}
}
