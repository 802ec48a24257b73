package store

import (
	"context"
	"database/sql"
	"fmt"
	"path/filepath"
	"testing"
)

// A database of schema 2 with queued rows (and the log row count in meta,
// but no byte counts) opens with the rows' sizes filled in and counts that
// match the table; bounding and batches work on them.
func TestMigration3SizesExistingOutboxRows(t *testing.T) {
	dir := t.TempDir()
	db, err := sql.Open("sqlite", "file:"+filepath.Join(dir, FileName))
	if err != nil {
		t.Fatal(err)
	}
	for _, m := range migrations[:2] {
		if _, err := db.Exec(m); err != nil {
			t.Fatal(err)
		}
	}
	stmts := []string{
		`PRAGMA user_version = 2`,
		`INSERT INTO outbox (kind, device_uuid, cloud_id, payload, created_at) VALUES ('log', 'u1', 1, '{"message":"é1"}', 1)`,
		`INSERT INTO outbox (kind, device_uuid, cloud_id, payload, created_at) VALUES ('log', 'u1', 1, '{"message":"m2"}', 2)`,
		`INSERT INTO outbox (kind, device_uuid, cloud_id, payload, created_at) VALUES ('patch', 'u1', 1, '{"status":"old"}', 3)`,
		`INSERT INTO meta (key, value) VALUES ('outbox_log_rows', '2')`,
	}
	for _, q := range stmts {
		if _, err := db.Exec(q); err != nil {
			t.Fatal(err)
		}
	}
	db.Close()
	s := openDir(t, dir)
	defer s.Close()
	c := counts(t, s)
	if c.Rows[OutboxLog] != 2 || c.Bytes[OutboxLog] != int64(len(`{"message":"é1"}`)+len(`{"message":"m2"}`)) || c.Rows[OutboxPatch] != 1 {
		t.Errorf("counts after migration = %+v", c)
	}
	rows, err := s.NextOutboxBytes(context.Background(), OutboxLog, 10, int64(len(`{"message":"é1"}`)))
	if err != nil || len(rows) != 1 {
		t.Errorf("batch capped at the first row's bytes: %d rows, %v; want 1", len(rows), err)
	}
	apiProvision(t, s, "u1", 1, 1)
	if _, _, err := s.ApplyReport(context.Background(), "u1", Report{Status: apiStrPtr("new")}); err != nil {
		t.Fatal(err)
	}
	if got := fmt.Sprint(outboxPayloads(t, s, OutboxPatch)); got != `[{"status":"new"}]` {
		t.Errorf("queued report after a new one: %s, want the two merged", got)
	}
}
