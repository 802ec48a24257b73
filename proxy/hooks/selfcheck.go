package hooks

import (
	"context"
	"encoding/json"
	"time"

	"github.com/depharness/depharness/proxy/store"
)

// The deliberate contract violations of the dispatcher (self-check only).

// violationStopsUpdate applies the violations that end an update loop early.
func (d *Dispatcher) violationStopsUpdate(st *devState, w store.HookWork) bool {
	v := d.opts.Violations
	if st.recall().stoppedCanon != "" && st.recall().stoppedCanon == w.UpdateCanonical {
		return true
	}
	if v.On("hook-202-commit-only") && st.recall().lastSentCanon == w.UpdateCanonical &&
		w.ReportedCommit != nil && *w.ReportedCommit == w.Update.Commit {
		st.memory().stoppedCanon = w.UpdateCanonical
		return true
	}
	return false
}

// loopKey is the work key of hook-202-never-stops' endless loop.
var loopKey = workKey{kind: KindUpdate, canon: "loop"} // no canonical JSON: that starts with {

// loopsOn reports whether hook-202-never-stops keeps re-sending st's last
// accepted update hook although nothing is owed. The scheduler may not read
// memo while a worker has the device: a device in flight counts as looping,
// which only marks it for a re-read when its worker is done.
func (d *Dispatcher) loopsOn(st *devState) bool {
	return st != nil && d.opts.Violations.On("hook-202-never-stops") && (st.inFlight || st.recall().loopBody != nil)
}

// violationDelay is the earliest time the violations that send late allow
// the next hook to st (zero when none applies).
func (d *Dispatcher) violationDelay(st *devState, kind Kind, key workKey, w store.HookWork, looping bool, now time.Time) time.Time {
	v := d.opts.Violations
	var t time.Time
	switch {
	case looping:
		// hook-202-never-stops: the settled loop goes on every 5 intervals.
		t = st.lastSent.Add(5 * d.opts.RetryInterval)
	case kind == KindUpdate && v.On("hook-202-cadence-5x") && st.recall().acceptedCanon == w.UpdateCanonical:
		t = st.lastSent.Add(5 * d.opts.RetryInterval)
	}
	if kind == KindUpdate && v.On("hook-update-late") {
		if st.recall().lateKey != key {
			st.memory().lateKey, st.memory().lateSince = key, now
		}
		t = later(t, st.recall().lateSince.Add(10*d.opts.RetryInterval))
	}
	return t
}

// violationSkipsUpdate applies the violations that take an update hook as
// acknowledged without sending it: hook-acks-in-memory (acknowledged in
// this run's memory only) and hook-config-ignored (the acknowledged target
// differed only in config). It reports whether nothing is to be sent.
func (d *Dispatcher) violationSkipsUpdate(ctx context.Context, st *devState, w store.HookWork) bool {
	v := d.opts.Violations
	d.violMu.Lock()
	acked := d.violAcks[st.uuid]
	d.violMu.Unlock()
	switch {
	case v.On("hook-acks-in-memory"):
		return acked == w.UpdateCanonical
	case v.On("hook-config-ignored") && acked != "" && acked == sansConfig(w):
		_, err := d.writeState(ctx, store.HookWrite{UUID: st.uuid, AckUpdate: w.UpdateCanonical})
		return err == nil
	}
	return false
}

// sansConfig is w's update target without its config.
func sansConfig(w store.HookWork) string {
	if w.Update == nil {
		return ""
	}
	h := w.Update.Hook()
	h.Config = nil
	b, _ := json.Marshal(h)
	return string(b)
}
