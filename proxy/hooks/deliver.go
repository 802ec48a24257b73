package hooks

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"io"
	"log/slog"
	"net/http"
	"time"

	"github.com/depharness/depharness/api"
	"github.com/depharness/depharness/proxy/internal/latitude"
	"github.com/depharness/depharness/proxy/store"
)

// One delivery: re-read what the device is owed, send it, record the outcome.

// deliver is one worker step for st: re-read what the device is owed, send
// the next hook if pacing allows, record the outcome, re-read what is left.
func (d *Dispatcher) deliver(ctx context.Context, reader *store.HookWorkReader, st *devState) result {
	r := result{st: st}
	w, gen, err := d.workOf(ctx, reader, st)
	if errors.Is(err, store.ErrNotFound) {
		return r
	}
	if err != nil {
		if ctx.Err() != nil {
			r.stop = true
			return r
		}
		d.log.Error("hooks: read device hook state", "uuid", st.uuid, "err", err)
		r.more, r.failed, r.workKey, r.kind = true, true, st.workKey, st.kind
		return r
	}
	kind, key := d.nextWork(w)
	if kind == KindUpdate && d.violationStopsUpdate(st, w) {
		kind = ""
	}
	looping := false
	if kind == "" && d.loopsOn(st) {
		kind, key, looping = KindUpdate, loopKey, true
	}
	if kind == KindUpdate && !looping && d.violationSkipsUpdate(ctx, st, w) {
		return r
	}
	if kind == "" || st.recall().gaveUpKey == key {
		return r
	}
	now := d.opts.Now()
	p := d.earliest(st, w.LastAttempt, now)
	if key == st.workKey {
		p = later(p, st.backoffUntil)
	}
	if d.opts.Violations.On("hook-pace-per-kind") && kind != st.recall().lastKind {
		p = now
	}
	p = later(p, d.violationDelay(st, kind, key, w, looping, now))
	if p.After(now) {
		r.more, r.kind, r.workKey, r.notDueAt = true, kind, key, p
		return r
	}

	method, url, body := d.request(st, kind, w)
	if looping {
		method, url, body = http.MethodPut, d.opts.BaseAddress+st.uuid, st.recall().loopBody
	}
	st.memory().lastKind = kind
	select { // a request slot (Concurrency)
	case d.slots <- struct{}{}:
	case <-ctx.Done():
		r.stop = true
		return r
	}
	if d.opts.Store.DeviceChangedSince(st.uuid, gen) {
		// Changed while this waited for the slot: w may be superseded
		// (HOOK-PACE: never an older target once a newer one exists).
		// Read again; the device keeps its place in the pacing.
		<-d.slots
		r.more, r.kind, r.workKey = true, kind, key
		return r
	}
	// From the request to the write of its outcome, this delivery is one
	// of those whose writes a commit may wait for.
	defer d.opts.Store.ExpectWrites()()
	if err := d.cover(ctx); err != nil {
		<-d.slots
		if ctx.Err() != nil {
			r.stop = true
			return r
		}
		d.log.Error("hooks: extend the send lease", "uuid", st.uuid, "err", err)
		r.more, r.failed, r.workKey, r.kind = true, true, key, kind
		return r
	}
	status, doneAt, err := d.send(ctx, kind, method, url, body)
	<-d.slots
	r.sent, r.attempt = true, doneAt
	if err != nil && ctx.Err() != nil {
		r.stop = true
		return r
	}
	outcome := classify(kind, status, err)
	d.metrics.deliveries.WithLabelValues(string(kind), outcome).Inc()
	d.log.Debug("hooks: sent", "kind", kind, "uuid", st.uuid, "status", status, "outcome", outcome, "err", err)

	// The attempt is recorded with its outcome: one write, which holds the
	// acknowledgement of a 200.
	hw := store.HookWrite{UUID: st.uuid, Attempt: doneAt}
	ack := ackNone
	switch outcome {
	case OutcomeOK:
		r.delivered = true
		if st.mem != nil {
			st.mem.loopBody = nil
		}
		hw, ack = d.acknowledgement(kind, st, w, hw)
	case OutcomeAccepted:
		r.delivered = true
		if d.opts.Violations.On("hook-202-stops") {
			st.memory().stoppedCanon = w.UpdateCanonical
		}
		if !looping {
			st.memory().acceptedCanon = w.UpdateCanonical
		}
		if d.opts.Violations.On("hook-202-never-stops") {
			st.memory().loopBody = body
		}
	default:
		r.failed = true
		if d.opts.Violations.On("hook-error-gives-up") {
			st.memory().gaveUpKey = key
		}
		lvl := slog.LevelDebug // a gateway that is down would flood the log
		if st.failures == 0 {
			lvl = slog.LevelWarn
		}
		d.log.Log(ctx, lvl, "hooks: not delivered; retrying with backoff", "kind", kind, "uuid", st.uuid, "status", status, "err", err)
	}
	res, err := d.writeState(ctx, hw)
	if err != nil {
		if ctx.Err() != nil {
			r.stop = true
			return r
		}
		// Pacing holds without it: this run keeps the time in memory, a
		// later one starts from the send lease. A 200 not recorded is read
		// again below.
		d.log.Error("hooks: record the outcome", "kind", kind, "uuid", st.uuid, "outcome", outcome, "err", err)
	} else {
		r.recorded = true
	}
	acked := err == nil && (ack == ackInMemory || (ack == ackStored && res.Done))
	if acked && ack == ackStored && kind == KindUpdate && !res.TargetChangedAt.IsZero() {
		d.metrics.ackLatency.Observe(max(d.opts.Now().Sub(res.TargetChangedAt), 0).Seconds())
	}

	// What is left: w less what was just acknowledged. A change of the
	// store since w was read comes with a Notify, which marks this device
	// for a re-read (recheck).
	next := w
	if acked {
		switch kind {
		case KindDelete:
			return r
		case KindRestart:
			next.RestartsDue--
		case KindUpdate:
			next.Update, next.UpdateCanonical = nil, ""
		}
	} else if outcome == OutcomeOK {
		// Not recorded: superseded in the meantime, or a store failure. Read
		// again before the next send.
		r.more, r.kind, r.workKey = true, kind, key
		return r
	}
	nk, nkey := d.nextWork(next)
	if nk == "" && d.loopsOn(st) {
		nk, nkey = KindUpdate, loopKey
	}
	if nk == "" || st.recall().gaveUpKey == nkey ||
		(nk == KindUpdate && st.recall().stoppedCanon == next.UpdateCanonical) {
		return r
	}
	r.more, r.kind, r.workKey = true, nk, nkey
	return r
}

// workOf is what st's device is owed now, and the store's generation it is
// current at: the work the scheduler kept for it if the store says the
// device did not change since that was read, else read again.
func (d *Dispatcher) workOf(ctx context.Context, reader *store.HookWorkReader, st *devState) (store.HookWork, uint64, error) {
	if st.work != nil && !d.opts.Store.DeviceChangedSince(st.uuid, st.workGen) {
		return *st.work, st.workGen, nil
	}
	gen := d.opts.Store.Generation()
	w, err := reader.Read(ctx, st.uuid)
	return w, gen, err
}

// request builds the hook request for kind.
func (d *Dispatcher) request(st *devState, kind Kind, w store.HookWork) (method, url string, body []byte) {
	base := d.opts.BaseAddress + st.uuid
	switch kind {
	case KindDelete:
		return http.MethodDelete, base, nil
	case KindRestart:
		if d.opts.Violations.On("hook-restart-path-wrong") {
			return http.MethodPut, d.opts.BaseAddress + "restart/" + st.uuid, nil
		}
		return http.MethodPut, base + "/restart", nil
	}
	body = []byte(w.UpdateCanonical)
	v := d.opts.Violations
	switch {
	case v.On("hook-202-stale-repeat") && st.recall().lastSentCanon == w.UpdateCanonical:
		h := w.Update.Hook()
		h.Environment, h.Config = api.Vars{}, api.Vars{}
		body, _ = json.Marshal(h)
	case v.On("hook-update-missing-appid"):
		h := w.Update.Hook()
		body, _ = json.Marshal(map[string]any{"commit": h.Commit, "environment": h.Environment, "config": h.Config})
	case v.On("hook-update-stale-env"):
		h := w.Update.Hook()
		h.Environment = w.ReportedEnvironment
		if h.Environment == nil {
			h.Environment = api.Vars{}
		}
		body, _ = json.Marshal(h)
	}
	if v.On("hook-sends-superseded") {
		m := st.memory()
		switch {
		case m.lastSentCanon != "" && m.lastSentCanon != w.UpdateCanonical:
			m.superseded = m.lastSentBody
		case m.superseded != nil && m.lastSentCanon == w.UpdateCanonical:
			old := m.superseded
			m.superseded = nil
			return http.MethodPut, base, old
		}
	}
	if extra, pretty := v.Allows("extra-fields"), v.Allows("pretty-json"); extra || pretty {
		if b, err := latitude.Reshape(body, extra, pretty); err == nil {
			body = b
		}
	}
	st.memory().lastSentCanon, st.memory().lastSentBody = w.UpdateCanonical, body
	return http.MethodPut, base, body
}

// send performs one hook request and returns its status (0 with an error
// when no answer came) and when it ended. Pacing counts from that end, so
// that the gateway never sees two hooks closer than the retry interval, even
// when the first was slow to arrive.
func (d *Dispatcher) send(ctx context.Context, kind Kind, method, url string, body []byte) (int, time.Time, error) {
	ctx, cancel := context.WithTimeout(ctx, d.opts.Timeout)
	defer cancel()
	var rd io.Reader
	if body != nil {
		rd = bytes.NewReader(body)
	}
	req, err := http.NewRequestWithContext(ctx, method, url, rd)
	if err != nil {
		return 0, d.opts.Now(), err
	}
	if body != nil {
		req.Header.Set("Content-Type", "application/json")
	}
	start := time.Now()
	resp, err := d.client.Do(req)
	if err != nil {
		d.metrics.duration.WithLabelValues(string(kind)).Observe(time.Since(start).Seconds())
		return 0, d.opts.Now(), err
	}
	io.Copy(io.Discard, io.LimitReader(resp.Body, 64<<10))
	resp.Body.Close()
	d.metrics.duration.WithLabelValues(string(kind)).Observe(time.Since(start).Seconds())
	return resp.StatusCode, d.opts.Now(), nil
}

// classify maps an answer to a delivery outcome.
func classify(kind Kind, status int, err error) string {
	switch {
	case err != nil:
		return OutcomeFailed
	case status == http.StatusOK:
		return OutcomeOK
	case status == http.StatusAccepted && kind == KindUpdate:
		return OutcomeAccepted
	}
	return OutcomeRejected
}

// How a 200 is acknowledged.
const (
	ackNone     = iota // not at all (not a 200, or hook-200-repeats)
	ackStored          // in the store: acknowledged if the write says Done
	ackInMemory        // in memory only (hook-acks-in-memory)
)

// acknowledgement adds the acknowledgement of a 200 answer to hw (the
// attempt) and says how the answer is acknowledged. The store acknowledges
// an update only if its target did not change meanwhile.
func (d *Dispatcher) acknowledgement(kind Kind, st *devState, w store.HookWork, hw store.HookWrite) (store.HookWrite, int) {
	switch kind {
	case KindDelete:
		hw.RemoveDeleted = true
	case KindRestart:
		hw.AckRestart = true
	default:
		if d.opts.Violations.On("hook-200-repeats") {
			return hw, ackNone
		}
		if d.opts.Violations.On("hook-acks-in-memory") {
			d.violMu.Lock()
			d.violAcks[st.uuid] = w.UpdateCanonical
			d.violMu.Unlock()
			return hw, ackInMemory
		}
		if d.opts.Violations.On("hook-config-ignored") {
			d.violMu.Lock()
			d.violAcks[st.uuid] = sansConfig(w)
			d.violMu.Unlock()
		}
		hw.AckUpdate = w.UpdateCanonical
	}
	return hw, ackStored
}

// writeState applies one hook-state write (an attempt and its outcome).
// The store's group commit puts the writes of concurrent deliveries in one
// transaction, so deliveries to many devices share the cost of commits.
func (d *Dispatcher) writeState(ctx context.Context, w store.HookWrite) (store.HookWriteResult, error) {
	res, err := d.opts.Store.WriteHookState(ctx, []store.HookWrite{w})
	if err != nil {
		return store.HookWriteResult{}, err
	}
	return res[0], nil
}

func later(a, b time.Time) time.Time {
	if a.After(b) {
		return a
	}
	return b
}
