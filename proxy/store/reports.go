package store

// The gateway's reports (PUT /v1/devices/{uuid}): stored together with the
// outbox row that carries them to the cloud, merged with the device's
// report still queued.

import (
	"bytes"
	"context"
	"database/sql"
	"encoding/json"
	"errors"
	"fmt"
	"math"
)

// Report is what a gateway reports for a device (PUT /v1/devices/{uuid}).
// Nil fields are not reported and not changed. Environment and Config, when
// set, must be JSON objects (the caller validates).
type Report struct {
	Status      *string
	IsOnline    *bool
	Commit      *string
	Environment json.RawMessage
	Config      json.RawMessage
}

// Empty reports whether r reports nothing.
func (r Report) Empty() bool {
	return r.Status == nil && r.IsOnline == nil && r.Commit == nil && r.Environment == nil && r.Config == nil
}

// patchPayload is the JSON of cloudapi.DevicePatch (the store does not
// import the cloud wire package; a test pins the equality).
type patchPayload struct {
	Status     *string `json:"status,omitempty"`
	IsOnline   *bool   `json:"is_online,omitempty"`
	IsOnCommit *string `json:"is_on__commit,omitempty"`
}

// ApplyReport stores r for uuid in one transaction: the reported fields;
// an outbox 'patch' row with status, is_online and commit if r has any of
// them (DEV-PUT-4: environment and config stay local), merged with the
// device's report still queued, if any (DEV-PUT-6, see enqueuePatch); and, when the
// device's reported state now equals its update target, update_acked (so no
// further update hook is sent for that target, HOOK-202). It returns the
// updated device. ErrNotFound for an unknown uuid, ErrDeleted for a device
// marked for deletion; nothing is written then. enqueued tells whether an
// outbox row was added.
func (s *Store) ApplyReport(ctx context.Context, uuid string, r Report) (d Device, enqueued bool, err error) {
	if r.Empty() {
		return Device{}, false, errors.New("store: empty report")
	}
	for name, raw := range map[string]json.RawMessage{"environment": r.Environment, "config": r.Config} {
		if raw != nil && !isJSONObject(raw) {
			return Device{}, false, fmt.Errorf("store: reported %s is not a JSON object", name)
		}
	}
	var isOnline any
	if r.IsOnline != nil {
		isOnline = *r.IsOnline
	}
	env, cfg := compactOrNil(r.Environment), compactOrNil(r.Config)
	patch := r.Status != nil || r.IsOnline != nil || r.Commit != nil
	err = s.writeTx(ctx, func(tx *wtx) error {
		enqueued = false
		var err error
		d, err = scanDevice(tx.stmt(ctx, s.ws.reportUpdate).QueryRowContext(ctx, r.Status, isOnline, r.Commit, env, cfg, uuid))
		if errors.Is(err, sql.ErrNoRows) {
			return s.missingForWrite(ctx, tx, uuid)
		}
		if err != nil {
			return err
		}
		tx.changedDevice(uuid)
		if patch {
			if err := s.enqueuePatch(ctx, tx, uuid, d.CloudID,
				patchPayload{Status: r.Status, IsOnline: r.IsOnline, IsOnCommit: r.Commit}); err != nil {
				return err
			}
			enqueued = true
		}
		// The device's reported state now equals its update target:
		// acknowledged (see scanUpdateTarget for when it has one).
		if d.AppCurrentCommit == nil || d.ReportedCommit == nil || *d.ReportedCommit != *d.AppCurrentCommit {
			return nil
		}
		t, err := makeUpdateTarget(nil, d.AppID, *d.AppCurrentCommit, string(d.TargetEnvironment), string(d.TargetConfig))
		if err != nil {
			return err
		}
		canon := t.Canonical()
		if d.UpdateAcked != nil && *d.UpdateAcked == canon {
			return nil
		}
		match, err := ReportedMatchesTarget(t, d.ReportedCommit, rawPtr(d.Environment), rawPtr(d.Config))
		if err != nil || !match {
			return err
		}
		if _, err := tx.stmt(ctx, s.ws.ackedSet).ExecContext(ctx, canon, uuid); err != nil {
			return err
		}
		d.UpdateAcked = &canon
		return nil
	})
	if errors.Is(err, ErrNotFound) || errors.Is(err, ErrDeleted) {
		return Device{}, false, err
	}
	if err != nil {
		return Device{}, false, fmt.Errorf("store: apply report %s: %w", uuid, err)
	}
	return d, enqueued, nil
}

// missingForWrite is the error of a write to device uuid that found no
// unmarked row: ErrNotFound or ErrDeleted.
func (s *Store) missingForWrite(ctx context.Context, tx *wtx, uuid string) error {
	tx.changedNoDevice()
	var (
		cloudID int64
		marked  bool
	)
	err := tx.stmt(ctx, s.ws.deviceLookup).QueryRowContext(ctx, uuid).Scan(&cloudID, &marked)
	switch {
	case errors.Is(err, sql.ErrNoRows):
		return ErrNotFound
	case err != nil:
		return err
	case marked:
		return ErrDeleted
	}
	return fmt.Errorf("store: device %s neither found nor marked for deletion", uuid)
}

// Statements of ApplyReport (and AppendLog), prepared once.
const (
	deviceLookupForWrite = `SELECT cloud_id, marked_for_delete FROM devices WHERE uuid = ?`
	// applyReportUpdate stores the reported fields of an unmarked device
	// and returns its row as deviceColumns does.
	applyReportUpdate = `
UPDATE devices SET
	status          = COALESCE(?, status),
	is_online       = COALESCE(?, is_online),
	reported_commit = COALESCE(?, reported_commit),
	environment     = COALESCE(?, environment),
	config          = COALESCE(?, config)
WHERE uuid = ? AND marked_for_delete = 0
RETURNING ` + deviceReturning
	outboxInsert = `INSERT INTO outbox (kind, device_uuid, cloud_id, payload, created_at, size) VALUES (?, ?, ?, ?, ?, ?)`
	// takeQueuedPatch deletes a device's queued report, if any (at most
	// one: reports are merged), and returns it.
	takeQueuedPatch = `
DELETE FROM outbox WHERE seq = (SELECT seq FROM outbox WHERE kind = 'patch' AND device_uuid = ? ORDER BY seq DESC LIMIT 1)
RETURNING payload`
)

// isJSONObject reports whether raw is one JSON object (after whitespace).
func isJSONObject(raw json.RawMessage) bool {
	t := bytes.TrimSpace(raw)
	return len(t) > 0 && t[0] == '{' && json.Valid(t)
}

// compactOrNil is raw without insignificant whitespace, as a string for
// the database, or nil (SQL NULL) when raw is nil.
func compactOrNil(raw json.RawMessage) any {
	if raw == nil {
		return nil
	}
	var buf bytes.Buffer
	if err := json.Compact(&buf, raw); err != nil {
		return string(raw)
	}
	return buf.String()
}

func rawPtr(raw json.RawMessage) *string {
	if raw == nil {
		return nil
	}
	s := string(raw)
	return &s
}

// enqueuePatch queues p for device uuid (DEV-PUT-6). A report of the device
// still queued is merged into it: p's fields win, the queued report's other
// fields are kept, and the merged report replaces the queued one as a new
// row (the old row is deleted). The cloud thus gets the latest value of
// each field, never an older value after a newer one: a report already
// being delivered when it is merged is delivered before the merged row,
// which repeats its fields or carries newer values; acknowledging the old
// row afterwards deletes nothing. The queue is then bounded in bytes: the
// oldest reports of other devices are dropped beyond s.reportQueueBytes.
// Merged and dropped reports are counted on tx.
func (s *Store) enqueuePatch(ctx context.Context, tx *wtx, uuid string, cloudID int64, p patchPayload) error {
	c := tx.outboxCounts(OutboxPatch)
	var oldBody string
	err := sql.ErrNoRows
	if !s.unmerged {
		err = tx.stmt(ctx, s.ws.takeQueuedPatch).QueryRowContext(ctx, uuid).Scan(&oldBody)
	}
	switch {
	case errors.Is(err, sql.ErrNoRows):
	case err != nil:
		return err
	default:
		var old patchPayload
		if err := json.Unmarshal([]byte(oldBody), &old); err == nil {
			if p.Status == nil {
				p.Status = old.Status
			}
			if p.IsOnline == nil {
				p.IsOnline = old.IsOnline
			}
			if p.IsOnCommit == nil {
				p.IsOnCommit = old.IsOnCommit
			}
		}
		c.rows--
		c.bytes -= int64(len(oldBody))
		tx.merged++
	}
	payload, err := json.Marshal(p)
	if err != nil {
		return err
	}
	dropped, err := s.enqueue(ctx, tx, OutboxPatch, c, uuid, cloudID, payload, math.MaxInt64, s.reportQueueBytes)
	tx.dropped += dropped
	return err
}
