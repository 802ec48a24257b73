package fleetview

import (
	"encoding/json"
	"fmt"
	"sort"
	"strconv"
	"time"
)

// The frames the model publishes: a snapshot or a delta of the cells that
// changed, with the figures, encoded once for every page.

// frame is the JSON of a snapshot (Idx nil, States and Cix for every
// device) or a delta (the devices at Idx changed to States[k], Cix[k]).
type frame struct {
	Seq     uint64   `json:"seq"`
	N       int      `json:"n"`
	Full    bool     `json:"full"`
	Idx     []int32  `json:"idx,omitempty"`
	States  string   `json:"states"`
	Cix     []int32  `json:"cix"`
	Commits []string `json:"commits,omitempty"` // the whole table, when it grew
	Stats   *Stats   `json:"stats"`
}

// Step publishes the model's current state as the next frame and returns
// it: "delta" with the devices that changed since the previous step, or
// "snap" with every device when that is shorter (about half the fleet
// changed).
func (m *Model) Step() (kind string, seq uint64, data []byte) {
	m.mu.Lock()
	defer m.mu.Unlock()
	now := m.now()
	prevStates := append([]byte(nil), m.pubStates...)
	prevCommits := append([]int32(nil), m.pubCommits...)
	prevCommitN, prevErrSeq := m.pubCommitN, m.pubErrSeq
	m.publishLocked(now)
	var idx []int32
	var states []byte
	var cix []int32
	for i := range m.pubStates {
		if m.pubStates[i] != prevStates[i] || m.pubCommits[i] != prevCommits[i] {
			idx = append(idx, int32(i))
			states = append(states, m.pubStates[i])
			cix = append(cix, m.pubCommits[i])
		}
	}
	st := m.stats
	st.Errors = st.Errors[:min(uint64(len(st.Errors)), m.errSeq-prevErrSeq)]
	if len(st.Errors) == 0 {
		st.Errors = nil
	}
	f := frame{Seq: m.seq, N: len(m.pubStates), Idx: idx, States: string(states), Cix: cix, Stats: &st}
	if f.Cix == nil {
		f.Cix = []int32{}
	}
	if len(m.commits) != prevCommitN {
		f.Commits = m.commits
	}
	b, err := json.Marshal(f)
	if err != nil {
		panic(fmt.Sprintf("fleetview: encoding a delta: %v", err)) // only plain types
	}
	// A change costs about 8 bytes in a delta, a device about 4 in a
	// snapshot: past a quarter of the fleet, send the smaller.
	if len(idx) > len(m.pubStates)/4 {
		if snap := m.snapshotLocked(); len(snap) < len(b) {
			return "snap", m.seq, snap
		}
	}
	return "delta", m.seq, b
}

// Snapshot returns the last published state as a snapshot frame.
func (m *Model) Snapshot() (seq uint64, data []byte) {
	m.mu.Lock()
	defer m.mu.Unlock()
	return m.seq, m.snapshotLocked()
}

func (m *Model) snapshotLocked() []byte {
	if m.snapCache != nil && m.snapSeq == m.seq {
		return m.snapCache
	}
	st := m.stats
	st.Errors = m.errorsLocked()
	f := frame{Seq: m.seq, N: len(m.pubStates), Full: true, States: string(m.pubStates), Cix: m.pubCommits,
		Commits: m.commits, Stats: &st}
	b, err := json.Marshal(f)
	if err != nil {
		panic(fmt.Sprintf("fleetview: encoding a snapshot: %v", err))
	}
	m.snapCache, m.snapSeq = b, m.seq
	return b
}

// publishLocked computes every device's cell and the stats, and moves the
// sequence number.
func (m *Model) publishLocked(now time.Time) {
	m.seq++
	counts := map[Cell]int{}
	for _, a := range m.apps {
		a.devices, a.onTarget = 0, 0
	}
	active, onTarget := 0, 0
	for i := range m.devs {
		d := &m.devs[i]
		c := m.cellLocked(d)
		if c == OnTarget && m.pubStates[i] != byte(OnTarget) && m.seq > 1 {
			m.reached++
		}
		m.pubStates[i] = byte(c)
		m.pubCommits[i] = m.commitLocked(d.commit)
		counts[c]++
		if d.managed && !d.deleted {
			active++
			a := m.apps[d.app]
			a.devices++
			if c == OnTarget {
				onTarget++
				a.onTarget++
			}
		}
	}
	m.pubCommitN = len(m.commits)
	m.pubErrSeq = m.errSeq

	smp := sample{t: now, hooks: m.hooksTotal, reports: m.reports, reached: m.reached, errs: m.errCount}
	if k := len(m.samples); k > 0 && !now.After(m.samples[k-1].t) {
		m.samples[k-1] = smp // the same instant: the later counts
	} else {
		m.samples = append(m.samples, smp)
	}
	cut := 0
	for cut < len(m.samples)-2 && now.Sub(m.samples[cut+1].t) >= rateWindow {
		cut++
	}
	m.samples = m.samples[cut:]
	first, last := m.samples[0], m.samples[len(m.samples)-1]
	rate := func(first sample, a, b uint64) float64 {
		dt := last.t.Sub(first.t).Seconds()
		if dt <= 0 {
			return 0
		}
		return float64(b-a) / dt
	}
	// The rollout's rate counts from the last step before the release
	// changed, when that is within the window.
	rolloutFirst := first
	for _, smp := range m.samples {
		if smp.t.After(m.releasedAt) {
			break
		}
		rolloutFirst = smp
	}

	st := Stats{
		Time: now.UnixMilli(), Devices: len(m.devs), Counts: map[string]int{},
		Active: active, OnTarget: onTarget,
		Rate: rate(rolloutFirst, rolloutFirst.reached, last.reached), HookRate: rate(first, first.hooks, last.hooks),
		ReportRate: rate(first, first.reports, last.reports), ErrorRate: rate(first, first.errs, last.errs),
		Hooks: map[string]uint64{}, Reports: m.reports, ErrorCount: m.errCount, ErrSeq: m.errSeq,
	}
	for _, c := range Cells {
		st.Counts[c.Name()] = counts[c]
	}
	for k, v := range m.hooks {
		st.Hooks[k] = v
	}
	if active > 0 {
		st.Progress = float64(onTarget) / float64(active)
	}
	for _, a := range m.apps {
		as := AppStats{ID: a.id, Name: a.name, Commit: a.release(), Devices: a.devices, OnTarget: a.onTarget}
		if as.Name == "" {
			as.Name = "app " + strconv.FormatInt(a.id, 10)
		}
		if !a.since.IsZero() {
			as.Since = a.since.UnixMilli()
		}
		st.Apps = append(st.Apps, as)
	}
	sort.Slice(st.Apps, func(i, j int) bool { return st.Apps[i].ID < st.Apps[j].ID })
	st.Errors = m.errorsLocked()
	m.stats = st
}

// errorsLocked returns the kept errors, newest first.
func (m *Model) errorsLocked() []ErrorEntry {
	out := make([]ErrorEntry, 0, len(m.errs))
	for k := 1; k <= len(m.errs); k++ {
		out = append(out, m.errs[(m.errNext-k+len(m.errs))%len(m.errs)])
	}
	return out
}

// Stats returns the stats of the last step.
func (m *Model) Stats() Stats {
	m.mu.Lock()
	defer m.mu.Unlock()
	st := m.stats
	st.Errors = append([]ErrorEntry(nil), st.Errors...)
	return st
}

// DeviceInfo is one device in detail (the page's tooltip).
type DeviceInfo struct {
	Index   int    `json:"index"`
	Serial  string `json:"serial"`
	Name    string `json:"name"`
	UUID    string `json:"uuid,omitempty"`
	AppID   int64  `json:"appId,omitempty"`
	App     string `json:"app,omitempty"`
	State   string `json:"state"`
	Online  bool   `json:"online"`
	Commit  string `json:"commit,omitempty"`
	Release string `json:"release,omitempty"` // the app's release commit
	Target  string `json:"target,omitempty"`  // the latest update hook's
	Working string `json:"working,omitempty"` // being flashed, or failed
	Failure string `json:"failure,omitempty"`
}

// Device returns device i's details.
func (m *Model) Device(i int) (DeviceInfo, bool) {
	m.mu.Lock()
	defer m.mu.Unlock()
	if i < 0 || i >= len(m.devs) {
		return DeviceInfo{}, false
	}
	d := &m.devs[i]
	info := DeviceInfo{Index: i, Serial: m.serials[i], Name: m.names[i], UUID: d.uuid, AppID: d.app,
		State: m.cellLocked(d).Name(), Online: d.online, Commit: d.commit, Target: d.target, Working: d.working, Failure: d.failure}
	if a := m.apps[d.app]; a != nil {
		info.App, info.Release = a.name, a.release()
	}
	return info, true
}
