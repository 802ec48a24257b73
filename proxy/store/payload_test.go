package store_test

import (
	"context"
	"encoding/json"
	"testing"
	"time"

	"github.com/depharness/depharness/api/cloud"
	"github.com/depharness/depharness/proxy/store"
)

// The store writes patch payloads without importing the cloud wire package;
// this pins that they decode as cloud.DevicePatch and re-encode the same.
func TestPatchPayloadIsCloudDevicePatchJSON(t *testing.T) {
	s, err := store.Open(t.TempDir(), store.Options{Now: func() time.Time { return time.Unix(1, 0) }})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { s.Close() })
	ctx := context.Background()
	if _, err := s.InsertProvisioned(ctx, store.NewDevice{UUID: "u1", AppID: 1, DeviceType: "t", CloudID: 3}); err != nil {
		t.Fatal(err)
	}
	st, on, c := "Idle", false, "abc"
	if _, _, err := s.ApplyReport(ctx, "u1", store.Report{Status: &st, IsOnline: &on, Commit: &c}); err != nil {
		t.Fatal(err)
	}
	rows, err := s.NextOutbox(ctx, store.OutboxPatch, 1)
	if err != nil || len(rows) != 1 {
		t.Fatalf("NextOutbox = %v, %v", rows, err)
	}
	var p cloud.DevicePatch
	if err := json.Unmarshal(rows[0].Payload, &p); err != nil {
		t.Fatal(err)
	}
	if p.Status == nil || *p.Status != st || p.IsOnline == nil || *p.IsOnline != on || p.IsOnCommit == nil || *p.IsOnCommit != c {
		t.Fatalf("decoded patch = %+v, want status Idle, is_online false, is_on__commit abc", p)
	}
	again, _ := json.Marshal(p)
	if string(again) != string(rows[0].Payload) {
		t.Errorf("re-encoded %s, want %s", again, rows[0].Payload)
	}
}
