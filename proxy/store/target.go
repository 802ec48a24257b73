package store

// Applying the cloud's dependent target state: apps, devices, marks for
// deletion, restart requests; and the apps' downloaded commits.

import (
	"context"
	"database/sql"
	"encoding/json"
	"errors"
	"fmt"
	"slices"
	"sort"
	"time"
)

// Target is a validated dependent target state, as proxy/sync hands it to
// ApplyTarget.
type Target struct {
	Apps    []TargetApp
	Devices []TargetDevice
	// ETag is the state's entity tag, stored with the target in the same
	// transaction (TargetETag). It is stored as "" when some device had to be
	// skipped, so that the next poll fetches the state again.
	ETag string
}

// TargetApp is one dependent app of the target.
type TargetApp struct {
	ID        int64
	Name      string
	ParentApp int64
	Config    map[string]string
	// Commit, Image and ReleaseID are empty/zero while the app has no release.
	Commit    string
	Image     string
	ReleaseID int64
}

// TargetDevice is one dependent device of the target.
type TargetDevice struct {
	UUID        string
	AppID       int64
	Name        string
	Restart     int64
	Environment map[string]string
	Config      map[string]string
	// Cloud is the cloud's record of the device (CLOUD-GET). It is needed only
	// for a device not yet in the store; such a device without it is skipped
	// (TargetSummary.Skipped).
	Cloud *CloudDevice
}

// CloudDevice is what the store keeps of a device's cloud record.
type CloudDevice struct {
	ID          int64
	DeviceType  string
	LogsChannel *string
	Note        *string
	Name        string
}

// TargetSummary says what ApplyTarget changed.
type TargetSummary struct {
	// AppsNewCommit are apps whose target commit changed (a download may be
	// due).
	AppsNewCommit []int64
	// AppsRemoved are apps that left the target.
	AppsRemoved []int64
	// Added are devices inserted from their cloud record.
	Added []string
	// Marked are devices newly marked for deletion, with the app they belong to.
	Marked []MarkedDevice
	// Unmarked are devices re-added to the target after being marked.
	Unmarked []string
	// FirstSeen are devices already in the store (provisioned through the
	// API) seen in the target for the first time.
	FirstSeen []string
	// UpdateTargetChanged are devices whose update target (app, environment,
	// config) changed.
	UpdateTargetChanged []string
	// RestartRequested are devices with new restart requests.
	RestartRequested []string
	// Skipped are target devices unknown to the store without a cloud record.
	Skipped []string
}

// MarkedDevice is a device newly marked for deletion.
type MarkedDevice struct {
	UUID  string
	AppID int64
}

// HookWorkChanged reports whether the summary may change what hooks are owed.
func (s TargetSummary) HookWorkChanged() bool {
	return len(s.Added)+len(s.Marked)+len(s.Unmarked)+len(s.FirstSeen)+len(s.UpdateTargetChanged)+len(s.RestartRequested) > 0
}

// metaTargetETag is the meta key of the last applied target's ETag.
const metaTargetETag = "target_etag"

// TargetETag is the ETag stored with the last applied target ("" if none).
func (s *Store) TargetETag(ctx context.Context) (string, error) {
	// The ETag names the cloud target the store was last brought up to date
	// with. A device provisioned here since then, and not yet seen in any
	// target, makes the store differ from it: the next poll must then fetch
	// the whole target (so that a device deleted in the cloud in between is
	// marked), whatever the cloud's ETag says.
	var v string
	err := s.r.QueryRowContext(ctx, `SELECT value FROM meta WHERE key = ?
AND NOT EXISTS (SELECT 1 FROM devices WHERE in_target = 0 AND marked_for_delete = 0)`, metaTargetETag).Scan(&v)
	if errors.Is(err, sql.ErrNoRows) {
		return "", nil
	}
	if err != nil {
		return "", fmt.Errorf("store: target etag: %w", err)
	}
	return v, nil
}

// unknownLookupMax is the most devices UnknownDevices looks up one by one
// (through the index, in chunks); for more it reads every row.
const unknownLookupMax = 1 << 16

// UnknownDevices returns those of uuids that are not in the store, in the
// order given.
func (s *Store) UnknownDevices(ctx context.Context, uuids []string) ([]string, error) {
	known := map[string]bool{}
	collect := func(rows *sql.Rows, err error) error {
		if err != nil {
			return fmt.Errorf("store: unknown devices: %w", err)
		}
		defer rows.Close()
		for rows.Next() {
			var u string
			if err := rows.Scan(&u); err != nil {
				return fmt.Errorf("store: unknown devices: %w", err)
			}
			known[u] = true
		}
		if err := rows.Err(); err != nil {
			return fmt.Errorf("store: unknown devices: %w", err)
		}
		return nil
	}
	if len(uuids) > unknownLookupMax {
		if err := collect(s.r.QueryContext(ctx, `SELECT uuid FROM devices`)); err != nil {
			return nil, err
		}
	} else {
		// Looked up through the index, in chunks, rather than every row of
		// a large table read at each poll that lists new devices.
		for chunk := range slices.Chunk(uuids, 4096) {
			list, err := json.Marshal(chunk)
			if err != nil {
				return nil, fmt.Errorf("store: unknown devices: %w", err)
			}
			if err := collect(s.r.QueryContext(ctx, `SELECT uuid FROM devices WHERE uuid IN (SELECT value FROM json_each(?))`, string(list))); err != nil {
				return nil, err
			}
		}
	}
	var out []string
	for _, u := range uuids {
		if !known[u] {
			out = append(out, u)
		}
	}
	return out, nil
}

// targetDeviceRow is the part of a device row ApplyTarget compares.
type targetDeviceRow struct {
	uuid                 string
	appID                int64
	name                 string
	targetEnv, targetCfg string
	inTarget, marked     bool
	requested, acked     int64
	createdAt            int64
	seen                 uint64 // the stamp of the last target that listed it
}

// ApplyTarget applies a validated target in one transaction:
//   - apps are upserted (name, parent, config, target commit/image/release,
//     in_target=1); apps missing from the target get in_target=0;
//   - each target device gets its name, app, target environment and config,
//     restart counter (on first sight — not in the previous target — the
//     counter is taken as acknowledged: old requests are not replayed),
//     in_target=1, and is un-marked if it was marked for deletion
//     (HOOK-REF-2); a device not in the store is inserted from t's cloud
//     record, or skipped without one;
//   - a device absent from the target and created before pollStartedAt (the
//     moment the poll that fetched t started) is marked for deletion
//     (HOOK-DEL-1: deleted, moved out of this gateway, or its whole app
//     removed — HOOK-REF-2). Devices provisioned while the poll was in
//     flight are left alone.
//
// A device whose update target changes gets target_changed_at = now.
func (s *Store) ApplyTarget(ctx context.Context, t Target, pollStartedAt time.Time) (TargetSummary, error) {
	// The devices' objects in canonical form, before the write: the
	// transaction holds the one writer.
	canon := make([]deviceVars, len(t.Devices))
	for i, d := range t.Devices {
		var err error
		if canon[i].env, err = canonicalStringMap(d.Environment); err != nil {
			return TargetSummary{}, fmt.Errorf("store: apply target: device %s environment: %w", d.UUID, err)
		}
		if canon[i].cfg, err = canonicalStringMap(d.Config); err != nil {
			return TargetSummary{}, fmt.Errorf("store: apply target: device %s config: %w", d.UUID, err)
		}
	}
	var sum TargetSummary
	err := s.writeTx(ctx, func(tx *wtx) error {
		sum = TargetSummary{}
		return s.applyTargetTx(ctx, tx, t, canon, pollStartedAt, &sum)
	})
	if err != nil {
		return TargetSummary{}, fmt.Errorf("store: apply target: %w", err)
	}
	return sum, nil
}

// deviceVars are a target device's environment and config in canonical
// form.
type deviceVars struct{ env, cfg string }

func (s *Store) applyTargetTx(ctx context.Context, tx *wtx, t Target, canon []deviceVars, pollStartedAt time.Time, sum *TargetSummary) error {
	// Apps' rows are not part of devices' rows: the devices changed are
	// those inserted, updated and marked below.
	tx.changedNoDevice()
	now := s.nowMillis()
	// Statements run once per app or device are prepared once.
	stmts := map[string]*sql.Stmt{}
	defer func() {
		for _, st := range stmts {
			st.Close()
		}
	}()
	exec := func(q string, args ...any) error {
		st := stmts[q]
		if st == nil {
			var err error
			if st, err = tx.PrepareContext(ctx, q); err != nil {
				return err
			}
			stmts[q] = st
		}
		_, err := st.ExecContext(ctx, args...)
		return err
	}

	// Apps.
	type appRow struct {
		targetCommit, currentCommit sql.NullString
		inTarget                    bool
	}
	apps := map[int64]appRow{}
	rows, err := tx.QueryContext(ctx, `SELECT id, target_commit, current_commit, in_target FROM apps`)
	if err != nil {
		return err
	}
	for rows.Next() {
		var id int64
		var r appRow
		if err := rows.Scan(&id, &r.targetCommit, &r.currentCommit, &r.inTarget); err != nil {
			rows.Close()
			return err
		}
		apps[id] = r
	}
	rows.Close()
	if err := rows.Err(); err != nil {
		return err
	}
	inTargetApps := map[int64]bool{}
	for _, a := range t.Apps {
		inTargetApps[a.ID] = true
		cfg, err := canonicalStringMap(a.Config)
		if err != nil {
			return fmt.Errorf("app %d config: %w", a.ID, err)
		}
		commit, image, release := nullIfEmpty(a.Commit), nullIfEmpty(a.Image), sql.NullInt64{Int64: a.ReleaseID, Valid: a.ReleaseID != 0}
		if err := exec(`
INSERT INTO apps (id, name, parent_app, config, target_commit, target_image, release_id, in_target)
VALUES (?, ?, ?, ?, ?, ?, ?, 1)
ON CONFLICT(id) DO UPDATE SET name = excluded.name, parent_app = excluded.parent_app, config = excluded.config,
	target_commit = excluded.target_commit, target_image = excluded.target_image,
	release_id = excluded.release_id, in_target = 1`,
			a.ID, a.Name, a.ParentApp, cfg, commit, image, release); err != nil {
			return fmt.Errorf("app %d: %w", a.ID, err)
		}
		old, had := apps[a.ID]
		if a.Commit != "" && (!had || old.targetCommit.String != a.Commit) {
			sum.AppsNewCommit = append(sum.AppsNewCommit, a.ID)
		}
		if !had {
			apps[a.ID] = appRow{targetCommit: commit, inTarget: true}
		}
	}
	for id, r := range apps {
		if r.inTarget && !inTargetApps[id] {
			if err := exec(`UPDATE apps SET in_target = 0 WHERE id = ?`, id); err != nil {
				return err
			}
			sum.AppsRemoved = append(sum.AppsRemoved, id)
		}
	}
	sortInt64s(sum.AppsNewCommit)
	sortInt64s(sum.AppsRemoved)
	currentCommit := func(appID int64) (string, bool) {
		r, ok := apps[appID]
		return r.currentCommit.String, ok && r.currentCommit.Valid
	}

	// Devices.
	local, err := s.targetRowsTx(ctx, tx)
	if err != nil {
		return err
	}
	s.mirror.stamp++
	stamp := s.mirror.stamp
	for i, d := range t.Devices {
		env, cfg := canon[i].env, canon[i].cfg
		old := local.get(d.UUID)
		if old != nil {
			old.seen = stamp
		}
		if old == nil {
			if d.Cloud == nil {
				sum.Skipped = append(sum.Skipped, d.UUID)
				continue
			}
			name := d.Name
			if name == "" {
				name = d.Cloud.Name
			}
			if err := exec(`
INSERT INTO devices (uuid, app_id, device_type, logs_channel, cloud_id, name, note,
	target_environment, target_config, in_target, restart_requested, restart_acked, target_changed_at, created_at)
VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, 1, ?, ?, ?, ?)`,
				d.UUID, d.AppID, d.Cloud.DeviceType, d.Cloud.LogsChannel, d.Cloud.ID, name, d.Cloud.Note,
				env, cfg, d.Restart, d.Restart, now, now); err != nil {
				return fmt.Errorf("insert device %s: %w", d.UUID, err)
			}
			tx.changedDevice(d.UUID)
			sum.Added = append(sum.Added, d.UUID)
			continue
		}

		requested, acked := d.Restart, old.acked
		if !old.inTarget || old.marked {
			// First sight: requests made before are not replayed.
			acked = requested
		} else if acked > requested {
			acked = requested
		}
		if requested > acked && requested > old.requested {
			sum.RestartRequested = append(sum.RestartRequested, d.UUID)
		}
		if old.marked {
			sum.Unmarked = append(sum.Unmarked, d.UUID)
		} else if !old.inTarget {
			sum.FirstSeen = append(sum.FirstSeen, d.UUID)
		}
		targetChanged := old.appID != d.AppID || !sameJSON(old.targetEnv, env) || !sameJSON(old.targetCfg, cfg)
		if targetChanged {
			if _, ok := currentCommit(d.AppID); ok {
				sum.UpdateTargetChanged = append(sum.UpdateTargetChanged, d.UUID)
			}
		}
		if !targetChanged && old.name == d.Name && old.inTarget && !old.marked &&
			requested == old.requested && acked == old.acked && old.targetEnv == env && old.targetCfg == cfg {
			continue
		}
		changedAt := sql.NullInt64{}
		if targetChanged || !old.inTarget {
			// A device first seen (provisioned through the API) or re-added:
			// its update target, as far as the hook latency goes, starts now.
			changedAt = sql.NullInt64{Int64: now, Valid: true}
		}
		if err := exec(`
UPDATE devices SET app_id = ?, name = ?, target_environment = ?, target_config = ?, in_target = 1,
	marked_for_delete = 0, restart_requested = ?, restart_acked = ?,
	target_changed_at = COALESCE(?, target_changed_at)
WHERE uuid = ?`,
			d.AppID, d.Name, env, cfg, requested, acked, changedAt, d.UUID); err != nil {
			return fmt.Errorf("update device %s: %w", d.UUID, err)
		}
		tx.changedDevice(d.UUID)
	}

	guard := pollStartedAt.UnixMilli()
	var absent []*targetDeviceRow
	local.each(func(r *targetDeviceRow) {
		if r.seen != stamp {
			absent = append(absent, r)
		}
	})
	sort.Slice(absent, func(i, j int) bool { return absent[i].uuid < absent[j].uuid })
	for _, r := range absent {
		if r.marked {
			continue
		}
		if r.createdAt >= guard {
			// Provisioned while this poll was in flight: the target may not
			// know it yet.
			continue
		}
		if err := exec(`UPDATE devices SET marked_for_delete = 1, in_target = 0 WHERE uuid = ?`, r.uuid); err != nil {
			return fmt.Errorf("mark device %s: %w", r.uuid, err)
		}
		tx.changedDevice(r.uuid)
		sum.Marked = append(sum.Marked, MarkedDevice{UUID: r.uuid, AppID: r.appID})
	}

	etag := t.ETag
	if len(sum.Skipped) > 0 {
		etag = ""
	}
	if _, err := tx.ExecContext(ctx, `
INSERT INTO meta (key, value) VALUES (?, ?) ON CONFLICT(key) DO UPDATE SET value = excluded.value`,
		metaTargetETag, etag); err != nil {
		return err
	}
	return nil
}

// SetAppCurrentCommit records that commit's assets tar is ready for appID: the
// app now serves it and its devices' update targets name it. Devices whose
// update target thereby changes get target_changed_at = now. ErrNotFound if
// the app is unknown.
func (s *Store) SetAppCurrentCommit(ctx context.Context, appID int64, commit string) error {
	err := s.writeTx(ctx, func(tx *wtx) error {
		var cur sql.NullString
		err := tx.QueryRowContext(ctx, `SELECT current_commit FROM apps WHERE id = ?`, appID).Scan(&cur)
		if errors.Is(err, sql.ErrNoRows) {
			return ErrNotFound
		}
		if err != nil {
			return err
		}
		if cur.Valid && cur.String == commit {
			tx.changedNoDevice()
			return nil
		}
		// Every device of the app shows the new commit (targetCommit):
		// undeclared, the write counts as changing any device.
		if _, err := tx.ExecContext(ctx, `UPDATE apps SET current_commit = ? WHERE id = ?`, commit, appID); err != nil {
			return err
		}
		_, err = tx.ExecContext(ctx,
			`UPDATE devices SET target_changed_at = ? WHERE app_id = ? AND marked_for_delete = 0`, s.nowMillis(), appID)
		return err
	})
	if errors.Is(err, ErrNotFound) {
		return err
	}
	if err != nil {
		return fmt.Errorf("store: set app %d current commit: %w", appID, err)
	}
	return nil
}

// AppDownload is an app whose target commit is not yet its current commit.
type AppDownload struct {
	AppID         int64
	Commit        string
	Image         string
	CurrentCommit string // "" if none
}

// AppsNeedingDownload lists the apps in the target whose target commit is not
// their current (downloaded) commit, by id.
func (s *Store) AppsNeedingDownload(ctx context.Context) ([]AppDownload, error) {
	return queryAll(ctx, s.r, "apps needing download", `
SELECT id, target_commit, COALESCE(target_image, ''), COALESCE(current_commit, '')
FROM apps
WHERE in_target = 1 AND target_commit IS NOT NULL AND (current_commit IS NULL OR current_commit != target_commit)
ORDER BY id`, func(rows *sql.Rows) (a AppDownload, err error) {
		err = rows.Scan(&a.AppID, &a.Commit, &a.Image, &a.CurrentCommit)
		return a, err
	})
}

// sameJSON compares two stored JSON objects by canonical form.
func sameJSON(a, b string) bool {
	if a == b {
		return true
	}
	ca, err1 := CanonicalVars(&a)
	cb, err2 := CanonicalVars(&b)
	return err1 == nil && err2 == nil && ca == cb
}

func nullIfEmpty(s string) sql.NullString { return sql.NullString{String: s, Valid: s != ""} }

func sortInt64s(s []int64) { sort.Slice(s, func(i, j int) bool { return s[i] < s[j] }) }

// MarkedDevices lists the uuids of devices marked for deletion, sorted.
func (s *Store) MarkedDevices(ctx context.Context) ([]string, error) {
	return queryAll(ctx, s.r, "marked devices", `SELECT uuid FROM devices WHERE marked_for_delete = 1 ORDER BY uuid`,
		func(rows *sql.Rows) (u string, err error) {
			err = rows.Scan(&u)
			return u, err
		})
}
