package store

// Hook bookkeeping: a device's update target and its canonical form, the
// hooks a device is owed (update, delete, restart), and their
// acknowledgements. The dispatcher in proxy/hooks drives these; the rules are
// CONTRACT.md's HOOK-* clauses.

import (
	"context"
	"database/sql"
	"encoding/json"
	"errors"
	"fmt"
	"strconv"
	"time"

	"github.com/depharness/depharness/api"
	"github.com/depharness/depharness/internal/jsonstr"
)

// UpdateTarget is what a device's update hook carries: its app, the app's
// current (downloaded) commit, and the device's target environment and
// configuration.
type UpdateTarget struct {
	AppID       int64
	Commit      string
	Environment api.Vars
	Config      api.Vars
}

// Hook is the update hook body for t. Environment and Config are never nil.
func (t UpdateTarget) Hook() api.UpdateHook {
	h := api.UpdateHook{AppID: t.AppID, Commit: t.Commit, Environment: t.Environment, Config: t.Config}
	if h.Environment == nil {
		h.Environment = api.Vars{}
	}
	if h.Config == nil {
		h.Config = api.Vars{}
	}
	return h
}

// Canonical is the canonical JSON of t's hook body: encoding/json sorts map
// keys, so two equal targets always have the same canonical form. It is what
// devices.update_acked holds once the target is acknowledged.
func (t UpdateTarget) Canonical() string {
	b, err := jsonstr.Marshal(t.Hook())
	if err != nil {
		// api.Vars decoded from JSON always re-encodes.
		panic(fmt.Sprintf("store: canonical update target: %v", err))
	}
	return string(b)
}

// CanonicalUpdateTarget is the canonical JSON of the update target made of an
// app id, a commit and a device's target environment and configuration as
// stored (JSON objects; "" or "null" count as {}).
func CanonicalUpdateTarget(appID int64, commit, environmentJSON, configJSON string) (string, error) {
	env, err := decodeVars(environmentJSON)
	if err != nil {
		return "", fmt.Errorf("store: target environment: %w", err)
	}
	cfg, err := decodeVars(configJSON)
	if err != nil {
		return "", fmt.Errorf("store: target config: %w", err)
	}
	return UpdateTarget{AppID: appID, Commit: commit, Environment: env, Config: cfg}.Canonical(), nil
}

// CanonicalVars is the canonical JSON of a stored environment or
// configuration object. NULL (nil), "" and "null" count as {} (HOOK-REF-2).
func CanonicalVars(raw *string) (string, error) {
	s := ""
	if raw != nil {
		s = *raw
	}
	v, err := decodeVars(s)
	if err != nil {
		return "", err
	}
	b, err := jsonstr.Marshal(v)
	if err != nil {
		return "", err
	}
	return string(b), nil
}

// ReportedMatchesTarget reports whether a device's reported state (commit,
// environment and config as stored; NULL environment/config count as {})
// equals its update target t. A never-reported commit matches nothing.
func ReportedMatchesTarget(t UpdateTarget, reportedCommit, environmentJSON, configJSON *string) (bool, error) {
	if reportedCommit == nil || *reportedCommit != t.Commit {
		return false, nil
	}
	env, err := CanonicalVars(environmentJSON)
	if err != nil {
		return false, fmt.Errorf("store: reported environment: %w", err)
	}
	cfg, err := CanonicalVars(configJSON)
	if err != nil {
		return false, fmt.Errorf("store: reported config: %w", err)
	}
	te, _ := jsonstr.Marshal(nonNilVars(t.Environment))
	tc, _ := jsonstr.Marshal(nonNilVars(t.Config))
	return env == string(te) && cfg == string(tc), nil
}

// DeviceUpdateTarget is the device's current update target. ok is false when
// the device has none: its app has no downloaded commit yet, or it is marked
// for deletion. ErrNotFound if the device does not exist.
func (s *Store) DeviceUpdateTarget(ctx context.Context, uuid string) (t UpdateTarget, ok bool, err error) {
	st, err := s.prepared(ctx, s.r, updateTargetQuery)
	if err != nil {
		return UpdateTarget{}, false, fmt.Errorf("store: device update target: %w", err)
	}
	return scanUpdateTarget(st.QueryRowContext(ctx, uuid))
}

// setUpdateAcked records the acknowledged canonical target of a device.
const setUpdateAcked = `UPDATE devices SET update_acked = ? WHERE uuid = ?`

const updateTargetQuery = `
SELECT d.app_id, d.marked_for_delete, d.target_environment, d.target_config, a.current_commit
FROM devices d LEFT JOIN apps a ON a.id = d.app_id
WHERE d.uuid = ?`

func scanUpdateTarget(row *sql.Row) (UpdateTarget, bool, error) {
	var (
		appID    int64
		marked   bool
		env, cfg string
		commit   sql.NullString
	)
	err := row.Scan(&appID, &marked, &env, &cfg, &commit)
	if errors.Is(err, sql.ErrNoRows) {
		return UpdateTarget{}, false, ErrNotFound
	}
	if err != nil {
		return UpdateTarget{}, false, fmt.Errorf("store: device update target: %w", err)
	}
	if marked || !commit.Valid {
		return UpdateTarget{}, false, nil
	}
	t, err := makeUpdateTarget(nil, appID, commit.String, env, cfg)
	if err != nil {
		return UpdateTarget{}, false, err
	}
	return t, true, nil
}

// makeUpdateTarget decodes a target's stored variables, through m when it is
// not nil.
func makeUpdateTarget(m *hookWorkMemo, appID int64, commit, envJSON, cfgJSON string) (UpdateTarget, error) {
	env, err := m.decodeVars(envJSON)
	if err != nil {
		return UpdateTarget{}, fmt.Errorf("store: target environment: %w", err)
	}
	cfg, err := m.decodeVars(cfgJSON)
	if err != nil {
		return UpdateTarget{}, fmt.Errorf("store: target config: %w", err)
	}
	return UpdateTarget{AppID: appID, Commit: commit, Environment: env, Config: cfg}, nil
}

// HookWork is what one device is owed in hooks, read from the store.
type HookWork struct {
	UUID string
	// Row is the device's row id: PendingHooksAfter reads in its order.
	Row   int64
	AppID int64
	// Delete: the device is marked for deletion; a DELETE hook is owed until
	// the gateway answers 200. Nothing else is owed to a marked device.
	Delete bool
	// RestartsDue is how many restart requests are not yet acknowledged.
	RestartsDue int64
	// Update is the update target still owed, nil when none is: no
	// downloaded commit, already acknowledged (200), or already reported.
	Update *UpdateTarget
	// UpdateCanonical is Update's canonical JSON ("" when Update is nil).
	UpdateCanonical string
	// Target is the device's current update target whether owed or not; nil
	// when its app has no downloaded commit, the device is marked, or it has
	// not yet appeared in a cloud target.
	Target *UpdateTarget
	// ReportedCommit is the commit the gateway last reported (nil: never).
	ReportedCommit *string
	// ReportedEnvironment is the environment the gateway last reported
	// ({} when never).
	ReportedEnvironment api.Vars
	// LastAttempt is when a hook was last sent to the device (zero: never).
	LastAttempt time.Time
	// TargetChangedAt is when the current update target appeared (zero:
	// unknown).
	TargetChangedAt time.Time
}

// Pending reports whether any hook is owed.
func (w HookWork) Pending() bool { return w.Delete || w.RestartsDue > 0 || w.Update != nil }

const hookWorkColumns = `
SELECT d.id, d.uuid, d.app_id, d.marked_for_delete, d.restart_requested, d.restart_acked, d.update_acked,
       d.reported_commit, d.environment, d.config, d.target_environment, d.target_config,
       d.hook_last_at, d.target_changed_at, a.current_commit, d.in_target
FROM devices d LEFT JOIN apps a ON a.id = d.app_id`

// hookWorkMemo shares, within one read of many devices, what devices of the
// same app hold alike: decoded variables, update targets with their
// canonical form, and reported commits. A rebuild of the hook schedule reads every pending device
// and the schedule keeps what it read, so that a large fleet would otherwise
// hold one copy of the same target per device. What it shares is never
// changed in place (HookWork's maps and targets are read-only).
type hookWorkMemo struct {
	vars    map[string]api.Vars
	targets map[targetKey]sharedTarget
	commits map[string]*string // reported commits
}

type targetKey struct {
	appID            int64
	commit, env, cfg string
}

type sharedTarget struct {
	t     *UpdateTarget
	canon string
}

func newHookWorkMemo() *hookWorkMemo {
	return &hookWorkMemo{vars: map[string]api.Vars{}, targets: map[targetKey]sharedTarget{}, commits: map[string]*string{}}
}

// commit returns a pointer to commit, shared through m when m is not nil.
func (m *hookWorkMemo) commit(commit string) *string {
	if m == nil {
		return &commit
	}
	if p, ok := m.commits[commit]; ok {
		return p
	}
	m.commits[commit] = &commit
	return &commit
}

// decodeVars is decodeVars, shared through m when m is not nil.
func (m *hookWorkMemo) decodeVars(raw string) (api.Vars, error) {
	if m == nil {
		return decodeVars(raw)
	}
	if v, ok := m.vars[raw]; ok {
		return v, nil
	}
	v, err := decodeVars(raw)
	if err == nil {
		m.vars[raw] = v
	}
	return v, err
}

// target is makeUpdateTarget and the target's canonical form, shared
// through m when m is not nil.
func (m *hookWorkMemo) target(appID int64, commit, envJSON, cfgJSON string) (*UpdateTarget, string, error) {
	k := targetKey{appID, commit, envJSON, cfgJSON}
	if m != nil {
		if st, ok := m.targets[k]; ok {
			return st.t, st.canon, nil
		}
	}
	t, err := makeUpdateTarget(m, appID, commit, envJSON, cfgJSON)
	if err != nil {
		return nil, "", err
	}
	canon := t.Canonical()
	if m != nil {
		m.targets[k] = sharedTarget{&t, canon}
	}
	return &t, canon, nil
}

// scanHookWork reads one device's hook work; memo, if not nil, shares
// targets and variables with the other devices read through it.
func scanHookWork(sc interface{ Scan(...any) error }, memo *hookWorkMemo) (HookWork, error) {
	var (
		w                    HookWork
		marked               bool
		requested, acked     int64
		updateAcked          sql.NullString
		reportedCommit       sql.NullString
		repEnv, repCfg       sql.NullString
		targetEnv, targetCfg string
		lastAt, changedAt    sql.NullInt64
		currentCommit        sql.NullString
		inTarget             bool
	)
	if err := sc.Scan(&w.Row, &w.UUID, &w.AppID, &marked, &requested, &acked, &updateAcked,
		&reportedCommit, &repEnv, &repCfg, &targetEnv, &targetCfg,
		&lastAt, &changedAt, &currentCommit, &inTarget); err != nil {
		return HookWork{}, err
	}
	if lastAt.Valid {
		w.LastAttempt = time.UnixMilli(lastAt.Int64)
	}
	if changedAt.Valid {
		w.TargetChangedAt = time.UnixMilli(changedAt.Int64)
	}
	if reportedCommit.Valid {
		w.ReportedCommit = memo.commit(reportedCommit.String)
	}
	env, err := memo.decodeVars(repEnv.String)
	if err != nil {
		return HookWork{}, fmt.Errorf("store: device %s reported environment: %w", w.UUID, err)
	}
	w.ReportedEnvironment = env
	if marked {
		w.Delete = true
		return w, nil
	}
	if acked < requested {
		w.RestartsDue = requested - acked
	}
	// No update is owed before the device's app has a downloaded commit, nor
	// before the device appears in a cloud target: until then its target
	// environment and config are unknown, and a hook would announce {}.
	if !currentCommit.Valid || !inTarget {
		return w, nil
	}
	t, canon, err := memo.target(w.AppID, currentCommit.String, targetEnv, targetCfg)
	if err != nil {
		return HookWork{}, fmt.Errorf("store: device %s: %w", w.UUID, err)
	}
	w.Target = t
	if updateAcked.Valid && updateAcked.String == canon {
		return w, nil
	}
	match, err := ReportedMatchesTarget(*t, nullStringPtr(reportedCommit), nullStringPtr(repEnv), nullStringPtr(repCfg))
	if err != nil {
		return HookWork{}, fmt.Errorf("store: device %s: %w", w.UUID, err)
	}
	if !match {
		w.Update = t
		w.UpdateCanonical = canon
	}
	return w, nil
}

// PendingHooks lists every device that is owed a hook: marked for deletion,
// with unacknowledged restart requests, or with an update target that is
// neither acknowledged nor reported.
func (s *Store) PendingHooks(ctx context.Context) ([]HookWork, error) {
	out, _, _, err := s.PendingHooksAfter(ctx, 0, 0)
	return out, err
}

// PendingHooksAfter lists, in the order of their row ids, the devices owed
// a hook (as PendingHooks) whose row id is above after, at most limit of
// them (0: no bound). next is the row id of the last device it read, owed
// or not (after if none), to pass as after for the next page; done reports
// that it read to the last device. A dispatcher that holds a bounded share
// of a large backlog reads the backlog a page at a time with it.
func (s *Store) PendingHooksAfter(ctx context.Context, after int64, limit int) (works []HookWork, next int64, done bool, err error) {
	st, err := s.prepared(ctx, s.r, pendingHooksQuery)
	if err != nil {
		return nil, 0, false, fmt.Errorf("store: pending hooks: %w", err)
	}
	rows, err := st.QueryContext(ctx, after)
	if err != nil {
		return nil, 0, false, fmt.Errorf("store: pending hooks: %w", err)
	}
	defer rows.Close()
	memo := newHookWorkMemo()
	next = after
	for rows.Next() {
		w, err := scanHookWork(rows, memo)
		if err != nil {
			return nil, 0, false, fmt.Errorf("store: pending hooks: %w", err)
		}
		next = w.Row
		if !w.Pending() {
			continue
		}
		works = append(works, w)
		if limit > 0 && len(works) == limit {
			return works, next, false, nil
		}
	}
	if err := rows.Err(); err != nil {
		return nil, 0, false, fmt.Errorf("store: pending hooks: %w", err)
	}
	return works, next, true, nil
}

// pendingHooksQuery reads the devices that may be owed a hook, by row id.
// A device whose app has a downloaded commit may be owed an update; one
// that reported that commit with its target's environment and config, to
// the letter, is not (equal text decodes to equal variables), and is
// passed over here, where reading it would cost most of a read of a fleet
// that runs its target. Whatever else it lets through, scanHookWork and
// HookWork.Pending decide.
const pendingHooksQuery = hookWorkColumns + `
WHERE d.id > ? AND (d.marked_for_delete = 1 OR d.restart_acked < d.restart_requested OR
      (a.current_commit IS NOT NULL AND d.in_target = 1 AND NOT (d.reported_commit IS a.current_commit
       AND d.environment IS d.target_environment AND d.config IS d.target_config)))
ORDER BY d.id`

// HookWorksOf reads the hook work of the devices uuids in one statement; a
// device that does not exist maps to nil.
func (s *Store) HookWorksOf(ctx context.Context, uuids []string) (map[string]*HookWork, error) {
	return s.hookWorks(ctx, uuids)
}

// ChangedHookWork reads the hook work of the devices changed by write
// transactions that moved the Generation beyond since: works holds each of
// them, nil for a device that no longer exists, read at generation at or
// later (a device changed after at may be read as it is now, and is
// reported again by the next call from at). Every device not in works is
// unchanged since since. all is true (and works nil) when the store cannot
// tell which devices changed: read every device again then (PendingHooks).
// Unlike ChangedDeviceViews it needs no snapshot at exactly one generation,
// so it never has to give up while writes keep committing: a dispatcher
// that read the pending hooks once thus re-reads only what changed.
func (s *Store) ChangedHookWork(ctx context.Context, since uint64) (works map[string]*HookWork, at uint64, all bool, err error) {
	// Changes are recorded before the generation moves: the log holds
	// every change up to at, and maybe some after.
	at = s.gc.gen.Load()
	if since >= at {
		return map[string]*HookWork{}, at, false, nil
	}
	uuids, all := s.changes.since(since)
	if all {
		return nil, at, true, nil
	}
	works, err = s.hookWorks(ctx, uuids)
	if err != nil {
		return nil, 0, false, err
	}
	return works, at, false, nil
}

// hookWorks reads the hook work of the devices uuids in one statement; a
// device that does not exist maps to nil.
func (s *Store) hookWorks(ctx context.Context, uuids []string) (map[string]*HookWork, error) {
	out := make(map[string]*HookWork, len(uuids))
	if len(uuids) == 0 {
		return out, nil
	}
	for _, u := range uuids {
		out[u] = nil
	}
	rows, err := s.queryUUIDs(ctx, hookWorkColumns, uuids)
	if err != nil {
		return nil, fmt.Errorf("store: hook work: %w", err)
	}
	defer rows.Close()
	memo := newHookWorkMemo()
	for rows.Next() {
		w, err := scanHookWork(rows, memo)
		if err != nil {
			return nil, fmt.Errorf("store: hook work: %w", err)
		}
		out[w.UUID] = &w
	}
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("store: hook work: %w", err)
	}
	return out, nil
}

// HookWorkFor reads what uuid is owed now (which may be nothing). The
// dispatcher calls it right before each send, so that it never sends a
// superseded target. ErrNotFound if the device does not exist (any more).
func (s *Store) HookWorkFor(ctx context.Context, uuid string) (HookWork, error) {
	w, err := scanHookWork(s.r.QueryRowContext(ctx, hookWorkColumns+` WHERE d.uuid = ?`, uuid), nil)
	if errors.Is(err, sql.ErrNoRows) {
		return HookWork{}, ErrNotFound
	}
	if err != nil {
		return HookWork{}, fmt.Errorf("store: hook work %s: %w", uuid, err)
	}
	return w, nil
}

// HookWrite is one change of a device's hook state. WriteHookState applies
// several in one transaction, in order.
type HookWrite struct {
	UUID string
	// Attempt, if not zero, records that a hook was sent, answered (or
	// failed) at that time (hook_last_at), so that pacing (HOOK-PACE) holds
	// across a restart. The dispatcher writes it with the outcome, in the
	// same write as an acknowledgement; a hook sent but not yet recorded
	// is covered by the send lease (SetHookSendLease).
	Attempt time.Time
	// AckUpdate, if not empty, is the canonical target the gateway answered
	// 200 to: it becomes update_acked only if it is still the device's
	// current update target (a newer target stays owed).
	AckUpdate string
	// AckRestart records a 200 to one restart hook: restart_acked grows by
	// one, never beyond restart_requested.
	AckRestart bool
	// RemoveDeleted records a 200 to the delete hook: the row goes, only if
	// the device is still marked for deletion (one re-added to the target in
	// the meantime stays).
	RemoveDeleted bool
}

// HookWriteResult is what one HookWrite did.
type HookWriteResult struct {
	// Done: the acknowledgement or removal was recorded (always true for a
	// write that only records an attempt).
	Done bool
	// TargetChangedAt is, for an acknowledged update, when that target
	// appeared (zero if unknown), for the latency metric.
	TargetChangedAt time.Time
}

// Queries of WriteHookState.
const (
	qHookAttempt = `UPDATE devices SET hook_last_at = ? WHERE uuid = ?`
	// qHookAck records an acknowledged update target and, if not NULL, the
	// attempt it answered (one statement for both).
	qHookAck     = `UPDATE devices SET update_acked = ?, hook_last_at = COALESCE(?, hook_last_at) WHERE uuid = ? RETURNING target_changed_at`
	qHookRestart = `
UPDATE devices SET restart_acked = restart_acked + 1
WHERE uuid = ? AND restart_acked < restart_requested AND marked_for_delete = 0`
	qHookRemove = `DELETE FROM devices WHERE uuid = ? AND marked_for_delete = 1`
)

// WriteHookState applies ws in one transaction and reports what each did.
// Its statements are prepared once per Store; the writes of concurrent
// callers share commits through the store's group commit.
func (s *Store) WriteHookState(ctx context.Context, ws []HookWrite) ([]HookWriteResult, error) {
	if len(ws) == 0 {
		return nil, nil
	}
	var out []HookWriteResult
	err := s.writeAnnounced(ctx, func(tx *wtx) error {
		out = make([]HookWriteResult, len(ws))
		exec := func(st *sql.Stmt, args ...any) (int64, error) {
			res, err := tx.stmt(ctx, st).ExecContext(ctx, args...)
			if err != nil {
				return 0, err
			}
			return res.RowsAffected()
		}
		tx.changedNoDevice()
		for i, w := range ws {
			tx.changedDevice(w.UUID)
			var attempt any // NULL: none
			if !w.Attempt.IsZero() {
				attempt = w.Attempt.UnixMilli()
			}
			if w.AckUpdate != "" {
				// Checked first: a current target is acknowledged with
				// its attempt in one statement.
				t, ok, err := scanUpdateTarget(tx.stmt(ctx, s.ws.hookTarget).QueryRowContext(ctx, w.UUID))
				if err != nil && !errors.Is(err, ErrNotFound) {
					return err
				}
				if err == nil && ok && t.Canonical() == w.AckUpdate {
					var changed sql.NullInt64
					if err := tx.stmt(ctx, s.ws.hookAck).QueryRowContext(ctx, w.AckUpdate, attempt, w.UUID).Scan(&changed); err != nil {
						return err
					}
					out[i].Done = true
					if changed.Valid {
						out[i].TargetChangedAt = time.UnixMilli(changed.Int64)
					}
					continue
				}
			}
			if attempt != nil {
				if _, err := exec(s.ws.hookAttempt, attempt, w.UUID); err != nil {
					return err
				}
				out[i].Done = true
			}
			switch {
			case w.AckUpdate != "":
				out[i].Done = false // superseded (or gone): not acknowledged
			case w.AckRestart:
				n, err := exec(s.ws.hookRestart, w.UUID)
				if err != nil {
					return err
				}
				out[i].Done = n == 1
			case w.RemoveDeleted:
				n, err := exec(s.ws.hookRemove, w.UUID)
				if err != nil {
					return err
				}
				out[i].Done = n == 1
			}
		}
		return nil
	})
	if err != nil {
		return nil, fmt.Errorf("store: write hook state: %w", err)
	}
	return out, nil
}

// HookWorkReader reads devices' hook work through one prepared statement:
// cheaper than HookWorkFor when a dispatcher re-reads a device before every
// send. Close it when done.
type HookWorkReader struct {
	stmt *sql.Stmt
}

// NewHookWorkReader prepares a HookWorkReader.
func (s *Store) NewHookWorkReader(ctx context.Context) (*HookWorkReader, error) {
	st, err := s.r.PrepareContext(ctx, hookWorkColumns+` WHERE d.uuid = ?`)
	if err != nil {
		return nil, fmt.Errorf("store: prepare hook work reader: %w", err)
	}
	return &HookWorkReader{stmt: st}, nil
}

// Read is HookWorkFor.
func (r *HookWorkReader) Read(ctx context.Context, uuid string) (HookWork, error) {
	w, err := scanHookWork(r.stmt.QueryRowContext(ctx, uuid), nil)
	if errors.Is(err, sql.ErrNoRows) {
		return HookWork{}, ErrNotFound
	}
	if err != nil {
		return HookWork{}, fmt.Errorf("store: hook work %s: %w", uuid, err)
	}
	return w, nil
}

// Close releases the prepared statement.
func (r *HookWorkReader) Close() error { return r.stmt.Close() }

// AckUpdate records that the gateway answered 200 to the update hook whose
// canonical target is canonical — only if that is still the device's current
// target (a newer target stays owed). It reports whether it acknowledged, and
// when the acknowledged target appeared (zero if unknown), for the latency
// metric.
func (s *Store) AckUpdate(ctx context.Context, uuid, canonical string) (acked bool, targetChangedAt time.Time, err error) {
	r, err := s.WriteHookState(ctx, []HookWrite{{UUID: uuid, AckUpdate: canonical}})
	if err != nil {
		return false, time.Time{}, err
	}
	return r[0].Done, r[0].TargetChangedAt, nil
}

// AckRestart records that the gateway answered 200 to one restart hook:
// restart_acked grows by one, never beyond restart_requested. It reports
// whether a request was acknowledged.
func (s *Store) AckRestart(ctx context.Context, uuid string) (bool, error) {
	r, err := s.WriteHookState(ctx, []HookWrite{{UUID: uuid, AckRestart: true}})
	if err != nil {
		return false, err
	}
	return r[0].Done, nil
}

// RemoveDeleted removes a device whose delete hook the gateway answered with
// 200, only if it is still marked for deletion (a device re-added to the
// target in the meantime stays). It reports whether a row was removed.
func (s *Store) RemoveDeleted(ctx context.Context, uuid string) (bool, error) {
	r, err := s.WriteHookState(ctx, []HookWrite{{UUID: uuid, RemoveDeleted: true}})
	if err != nil {
		return false, err
	}
	return r[0].Done, nil
}

// RecordHookAttempt records that a hook is being sent to uuid at at, so that
// pacing (HOOK-PACE) holds across a restart of the proxy.
func (s *Store) RecordHookAttempt(ctx context.Context, uuid string, at time.Time) error {
	_, err := s.WriteHookState(ctx, []HookWrite{{UUID: uuid, Attempt: at}})
	return err
}

// metaHookSendLease is the meta key of the hook send lease: unix ms before
// which every hook sent so far started (see SetHookSendLease).
const metaHookSendLease = "hook_send_lease"

// HookSendLease is the stored hook send lease (zero if none was ever
// written).
func (s *Store) HookSendLease(ctx context.Context) (time.Time, error) {
	var v int64
	err := s.r.QueryRowContext(ctx, `SELECT CAST(value AS INTEGER) FROM meta WHERE key = ?`, metaHookSendLease).Scan(&v)
	if errors.Is(err, sql.ErrNoRows) {
		return time.Time{}, nil
	}
	if err != nil {
		return time.Time{}, fmt.Errorf("store: hook send lease: %w", err)
	}
	return time.UnixMilli(v), nil
}

// SetHookSendLease durably records until as the hook send lease: the
// dispatcher sends no hook that starts at or after it without extending it
// first. Attempts are recorded once answered (HookWrite.Attempt), so a
// crash can lose the record of a hook that was sent; after a restart, the
// dispatcher takes the lease plus the hook timeout (or the restart, if
// earlier) as the last attempt of every device, which keeps HOOK-PACE across the crash. until
// is rounded up to the millisecond; zero removes the lease.
func (s *Store) SetHookSendLease(ctx context.Context, until time.Time) error {
	ms := until.UnixMilli()
	if until.After(time.UnixMilli(ms)) {
		ms++
	}
	err := s.writeAnnounced(ctx, func(tx *wtx) error {
		tx.changedNoDevice()
		if until.IsZero() {
			_, err := tx.ExecContext(ctx, `DELETE FROM meta WHERE key = ?`, metaHookSendLease)
			return err
		}
		_, err := tx.ExecContext(ctx, `
INSERT INTO meta (key, value) VALUES (?, ?) ON CONFLICT(key) DO UPDATE SET value = excluded.value`,
			metaHookSendLease, strconv.FormatInt(ms, 10))
		return err
	})
	if err != nil {
		return fmt.Errorf("store: set hook send lease: %w", err)
	}
	return nil
}

// decodeVars decodes a stored JSON object; "" and "null" are the empty object.
func decodeVars(raw string) (api.Vars, error) {
	v := api.Vars{}
	if raw == "" || raw == "null" {
		return v, nil
	}
	if err := json.Unmarshal([]byte(raw), &v); err != nil {
		return nil, err
	}
	if v == nil {
		v = api.Vars{}
	}
	return v, nil
}

func nonNilVars(v api.Vars) api.Vars {
	if v == nil {
		return api.Vars{}
	}
	return v
}

func nullStringPtr(n sql.NullString) *string {
	if !n.Valid {
		return nil
	}
	s := n.String
	return &s
}
