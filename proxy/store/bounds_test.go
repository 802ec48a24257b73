package store

import (
	"context"
	"fmt"
	"strings"
	"testing"
)

func sizedLog(i, size int) []byte {
	head := fmt.Sprintf(`{"message":"m%03d-`, i)
	return []byte(head + strings.Repeat("x", size-len(head)-2) + `"}`)
}

func counts(t *testing.T, s *Store) OutboxCounters {
	t.Helper()
	c, err := s.OutboxCounters(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	return c
}

// LOG_BUFFER_BYTES (issue 10, finding 3): the buffer is bounded in bytes as
// well as lines; the oldest go first, never the line just added, and the
// kept counts match the table.
func TestAppendLogBoundsTheBufferInBytesDroppingTheOldest(t *testing.T) {
	s := openAPIStore(t)
	ctx := context.Background()
	apiProvision(t, s, "u1", 1, 11)
	var dropped int64
	for i := range 10 {
		n, err := s.AppendLogBounded(ctx, "u1", sizedLog(i, 1000), 100, 3500)
		if err != nil {
			t.Fatal(err)
		}
		dropped += n
	}
	if dropped != 7 {
		t.Errorf("dropped %d of 10 lines of 1000 bytes in 3500, want 7", dropped)
	}
	got := outboxPayloads(t, s, OutboxLog)
	if len(got) != 3 || !strings.HasPrefix(got[0], `{"message":"m007-`) || !strings.HasPrefix(got[2], `{"message":"m009-`) {
		t.Errorf("kept %d lines starting %.20s, want m007..m009", len(got), got)
	}
	if c := counts(t, s); c.Rows[OutboxLog] != 3 || c.Bytes[OutboxLog] != 3000 {
		t.Errorf("counts = %d rows, %d bytes; want 3, 3000", c.Rows[OutboxLog], c.Bytes[OutboxLog])
	}
	// A line larger than the whole bound is kept alone.
	if n, err := s.AppendLogBounded(ctx, "u1", sizedLog(10, 5000), 100, 3500); err != nil || n != 3 {
		t.Errorf("a 5000-byte line into 3500: dropped %d, %v; want the 3 older", n, err)
	}
	if c := counts(t, s); c.Rows[OutboxLog] != 1 || c.Bytes[OutboxLog] != 5000 {
		t.Errorf("counts = %d rows, %d bytes; want 1, 5000", c.Rows[OutboxLog], c.Bytes[OutboxLog])
	}
	rows, _ := s.NextOutbox(ctx, OutboxLog, 10)
	if _, err := s.AckOutboxRows(ctx, OutboxLog, []int64{rows[0].Seq}); err != nil {
		t.Fatal(err)
	}
	if c := counts(t, s); c.Rows[OutboxLog] != 0 || c.Bytes[OutboxLog] != 0 {
		t.Errorf("after ack: %d rows, %d bytes; want 0, 0", c.Rows[OutboxLog], c.Bytes[OutboxLog])
	}
}

// The delivery batch byte cap: rows are read oldest first until the next
// would pass the cap; a row larger than the cap goes alone.
func TestNextOutboxBytesCapsABatchInBytes(t *testing.T) {
	s := openAPIStore(t)
	ctx := context.Background()
	apiProvision(t, s, "u1", 1, 11)
	for i, size := range []int{400, 400, 400, 5000, 100} {
		if _, err := s.AppendLogBounded(ctx, "u1", sizedLog(i, size), 0, 0); err != nil {
			t.Fatal(err)
		}
	}
	var got []int
	for {
		rows, err := s.NextOutboxBytes(ctx, OutboxLog, 100, 1000)
		if err != nil {
			t.Fatal(err)
		}
		if len(rows) == 0 {
			break
		}
		got = append(got, len(rows))
		seqs := []int64{}
		for _, r := range rows {
			seqs = append(seqs, r.Seq)
		}
		if _, err := s.AckOutboxRows(ctx, OutboxLog, seqs); err != nil {
			t.Fatal(err)
		}
	}
	if fmt.Sprint(got) != "[2 1 1 1]" {
		t.Errorf("batches of %v rows, want [2 1 1 1] (400+400, 400, 5000 alone, 100)", got)
	}
}

// DEV-PUT-6 as revised (issue 10, finding 3): a device's queued reports are
// merged: latest value of each field, older fields kept; a report being
// delivered when a newer one is merged is replaced, so acknowledging it
// does not delete the newer values.
func TestReportsOfOneDeviceAreMergedAndAnAckOfTheOlderOneKeepsTheNewer(t *testing.T) {
	s := openAPIStore(t)
	ctx := context.Background()
	apiProvision(t, s, "u1", 1, 11)
	apiProvision(t, s, "u2", 1, 12)
	on, off := true, false
	report := func(uuid string, r Report) {
		t.Helper()
		if _, _, err := s.ApplyReport(ctx, uuid, r); err != nil {
			t.Fatal(err)
		}
	}
	report("u1", Report{Status: apiStrPtr("Downloading"), IsOnline: &on})
	report("u2", Report{Status: apiStrPtr("Idle")})
	inFlight, _ := s.NextOutbox(ctx, OutboxPatch, 10)
	report("u1", Report{Status: apiStrPtr("Installing")})
	report("u1", Report{IsOnline: &off, Commit: apiStrPtr("c2")})
	if got, want := fmt.Sprint(outboxPayloads(t, s, OutboxPatch)), `[{"status":"Idle"} {"status":"Installing","is_online":false,"is_on__commit":"c2"}]`; got != want {
		t.Errorf("queued = %s, want %s", got, want)
	}
	// The outbox delivered what it read before the merges and acks it.
	if _, err := s.AckOutboxRows(ctx, OutboxPatch, []int64{inFlight[0].Seq, inFlight[1].Seq}); err != nil {
		t.Fatal(err)
	}
	if got, want := fmt.Sprint(outboxPayloads(t, s, OutboxPatch)), `[{"status":"Installing","is_online":false,"is_on__commit":"c2"}]`; got != want {
		t.Errorf("after acking the older rows: %s, want the merged report kept: %s", got, want)
	}
	c := counts(t, s)
	if c.PatchesMerged != 2 || c.Rows[OutboxPatch] != 1 || c.Bytes[OutboxPatch] != int64(len(`{"status":"Installing","is_online":false,"is_on__commit":"c2"}`)) {
		t.Errorf("counters = %+v, want 2 merged, 1 row of its bytes", c)
	}
}

// REPORT_QUEUE_BYTES: beyond the bound the oldest devices' reports are
// dropped and counted; the device just reported keeps its report.
func TestTheReportQueueIsBoundedInBytes(t *testing.T) {
	s, err := Open(t.TempDir(), Options{ReportQueueBytes: 100})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { s.Close() })
	ctx := context.Background()
	for i := range 5 {
		u := fmt.Sprint("u", i)
		apiProvision(t, s, u, 1, int64(i+1))
		if _, _, err := s.ApplyReport(ctx, u, Report{Status: apiStrPtr(fmt.Sprintf("status-%d-%s", i, strings.Repeat("y", 20)))}); err != nil {
			t.Fatal(err)
		}
	}
	c := counts(t, s)
	if c.Bytes[OutboxPatch] > 100 || c.PatchesDropped != 3 || c.Rows[OutboxPatch] != 2 {
		t.Errorf("counters = %+v, want 2 rows within 100 bytes, 3 dropped", c)
	}
	got := outboxPayloads(t, s, OutboxPatch)
	if len(got) != 2 || !strings.Contains(got[1], "status-4-") {
		t.Errorf("kept %v, want the two newest", got)
	}
}
