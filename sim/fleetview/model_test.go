package fleetview

import (
	"archive/tar"
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/depharness/depharness/api"
	"github.com/depharness/depharness/sim/fleet"
)

// clock is a settable time source.
type clock struct {
	mu sync.Mutex
	t  time.Time
}

func (c *clock) now() time.Time { c.mu.Lock(); defer c.mu.Unlock(); return c.t }
func (c *clock) add(d time.Duration) {
	c.mu.Lock()
	c.t = c.t.Add(d)
	c.mu.Unlock()
}

func newFleet(t testing.TB, n int) *fleet.Fleet {
	t.Helper()
	f, err := fleet.New(fleet.Profile{Count: n, Seed: 1}, fleet.Options{})
	if err != nil {
		t.Fatal(err)
	}
	return f
}

func newModel(t testing.TB, n int) (*Model, *clock) {
	c := &clock{t: time.Date(2026, 1, 2, 3, 4, 5, 0, time.UTC)}
	return NewModel(newFleet(t, n), c.now), c
}

func state(dev int, s fleet.State, commit string) fleet.Event {
	return fleet.Event{Device: dev, Kind: fleet.EventState, State: s, Commit: commit}
}

func cellOf(t *testing.T, m *Model, i int) string {
	t.Helper()
	d, ok := m.Device(i)
	if !ok {
		t.Fatalf("device %d unknown", i)
	}
	return d.State
}

func TestCellFollowsTheDeviceThroughAnUpdate(t *testing.T) {
	m, _ := newModel(t, 1)
	steps := []struct {
		name string
		do   func()
		want Cell
	}{
		{"a device the gateway does not manage yet is provisioning", func() {}, Provisioning},
		{"a managed device without firmware is pending", func() { m.DeviceManaged(0, "u0", 2) }, Pending},
		{"an update hook alone changes nothing", func() { m.HookReceived("update", 0, 202, "c1") }, Pending},
		{"downloading", func() { m.FleetEvent(state(0, fleet.StateDownloading, "c1")) }, Downloading},
		{"flashing", func() { m.FleetEvent(state(0, fleet.StateFlashing, "c1")) }, Flashing},
		{"running the hook's commit is on target", func() { m.FleetEvent(state(0, fleet.StateRunning, "c1")) }, OnTarget},
		{"the app's new release makes it pending", func() { m.SetApps([]api.App{{ID: 2, Name: "fw", Commit: "c2"}}) }, Pending},
		{"a failed download goes back without losing the commit", func() {
			m.FleetEvent(state(0, fleet.StateDownloading, "c2"))
			m.FleetEvent(state(0, fleet.StateRunning, ""))
		}, Pending},
		{"a failed flash", func() {
			m.FleetEvent(fleet.Event{Device: 0, Kind: fleet.EventState, State: fleet.StateFailed, Commit: "c2", Message: "flash failed"})
		}, Failed},
		{"offline hides the firmware state", func() { m.FleetEvent(fleet.Event{Device: 0, Kind: fleet.EventOffline}) }, Offline},
		{"back online, failed again", func() { m.FleetEvent(fleet.Event{Device: 0, Kind: fleet.EventOnline}) }, Failed},
		{"running the release is on target", func() { m.FleetEvent(state(0, fleet.StateRunning, "c2")) }, OnTarget},
		{"a forgotten device is deleted", func() { m.DeviceForgotten(0, "u0") }, Deleted},
	}
	for _, s := range steps {
		s.do()
		if got := cellOf(t, m, 0); got != s.want.Name() {
			t.Fatalf("%s: got %q, want %q", s.name, got, s.want.Name())
		}
	}
	d, _ := m.Device(0)
	if d.Commit != "c2" || d.UUID != "u0" || d.App != "fw" || d.Release != "c2" || d.Target != "c1" {
		t.Errorf("device details: got %+v", d)
	}
}

func TestRealDeviceEventsReachTheModel(t *testing.T) {
	f := newFleet(t, 2)
	m := NewModel(f, nil)
	stop := f.Watch(m.FleetEvent)
	defer stop()
	m.DeviceManaged(1, "u1", 5)
	var buf bytes.Buffer
	tw := tar.NewWriter(&buf)
	body := []byte("firmware")
	if err := tw.WriteHeader(&tar.Header{Name: "fw.bin", Mode: 0o644, Size: int64(len(body)), Typeflag: tar.TypeReg}); err != nil {
		t.Fatal(err)
	}
	tw.Write(body)
	tw.Close()
	sum, err := fleet.Checksum(bytes.NewReader(buf.Bytes()))
	if err != nil {
		t.Fatal(err)
	}
	fw := fleet.Firmware{AppID: 5, Commit: "abc", Tar: buf.Bytes(), Checksum: sum}
	if err := f.Device(1).Update(context.Background(), fleet.Target{AppID: 5, Commit: "abc"}, func(context.Context) (fleet.Firmware, error) {
		return fw, nil
	}); err != nil {
		t.Fatal(err)
	}
	if got := cellOf(t, m, 1); got != OnTarget.Name() {
		t.Errorf("after a real update: got %q, want on target", got)
	}
	if err := f.Device(1).Update(context.Background(), fleet.Target{AppID: 5, Commit: "def"}, func(context.Context) (fleet.Firmware, error) {
		return fleet.Firmware{}, errors.New("registry down")
	}); err == nil {
		t.Fatal("update with a failing download succeeded")
	}
	if d, _ := m.Device(1); d.Commit != "abc" || d.State != OnTarget.Name() {
		t.Errorf("after a failed download: got %+v, want still on abc and on target", d)
	}
}

// decode reads a frame.
func decode(t *testing.T, data []byte) frame {
	t.Helper()
	var f frame
	if err := json.Unmarshal(data, &f); err != nil {
		t.Fatalf("frame %s: %v", data, err)
	}
	return f
}

func TestStepSendsOnlyWhatChangedAndDeltasRebuildTheSnapshot(t *testing.T) {
	const n = 30
	m, _ := newModel(t, n)
	_, snap0 := m.Snapshot()
	page := decode(t, snap0)
	if !page.Full || len(page.States) != n || page.States != strings.Repeat(string(Provisioning), n) {
		t.Fatalf("first snapshot: got %+v", page)
	}
	apply := func(kind string, data []byte) {
		f := decode(t, data)
		if f.Seq != page.Seq+1 {
			t.Fatalf("frame seq %d after %d", f.Seq, page.Seq)
		}
		if kind == "snap" {
			page = f
			return
		}
		st := []byte(page.States)
		for k, i := range f.Idx {
			st[i] = f.States[k]
			page.Cix[i] = f.Cix[k]
		}
		if f.Commits != nil {
			page.Commits = f.Commits
		}
		page.States, page.Seq = string(st), f.Seq
	}

	m.DeviceManaged(3, "u3", 1)
	m.DeviceManaged(4, "u4", 1)
	kind, _, data := m.Step()
	if f := decode(t, data); kind != "delta" || fmt.Sprint(f.Idx) != "[3 4]" || f.States != "ww" {
		t.Fatalf("two devices managed: got %s %+v, want a delta of devices 3 and 4 pending", kind, f)
	}
	apply(kind, data)

	kind, _, data = m.Step()
	if f := decode(t, data); kind != "delta" || len(f.Idx) != 0 || f.Stats == nil || f.Stats.Errors != nil {
		t.Fatalf("nothing changed: got %s %+v, want an empty delta with stats and no errors", kind, f)
	}
	apply(kind, data)

	for i := range n {
		m.DeviceManaged(i, fmt.Sprint("u", i), 1)
		m.FleetEvent(state(i, fleet.StateRunning, "c1"))
	}
	kind, _, data = m.Step()
	if kind != "snap" {
		t.Fatalf("every device changed: got a %s, want a snapshot", kind)
	}
	apply(kind, data)
	m.FleetEvent(state(7, fleet.StateFlashing, "c2"))
	m.Failed("flash", 7, errors.New("boom"))
	kind, _, data = m.Step()
	if f := decode(t, data); kind != "delta" || len(f.Stats.Errors) != 1 || f.Stats.Errors[0].Serial == "" {
		t.Fatalf("a new error: got %s %+v, want a delta carrying it with the device's serial", kind, f.Stats)
	}
	apply(kind, data)
	m.Failed("report", 8, errors.New("second"))
	m.Failed("report", 9, errors.New("third"))
	kind, _, data = m.Step()
	if f := decode(t, data); kind != "delta" || len(f.Stats.Errors) != 2 || f.Stats.Errors[0].Message != "third" || f.Stats.Errors[1].Message != "second" {
		t.Fatalf("two more errors: got %s %+v, want a delta carrying only those two, newest first", kind, f.Stats.Errors)
	}
	apply(kind, data)

	_, snap := m.Snapshot()
	want := decode(t, snap)
	if page.States != want.States || fmt.Sprint(page.Cix) != fmt.Sprint(want.Cix) || page.Seq != want.Seq {
		t.Errorf("snapshot rebuilt from deltas:\n got %s %v seq %d\nwant %s %v seq %d", page.States, page.Cix, page.Seq, want.States, want.Cix, want.Seq)
	}
	if want.Stats.Active != n || want.Stats.OnTarget != n-1 || want.Stats.Counts["flashing"] != 1 {
		t.Errorf("stats: got %+v", want.Stats)
	}
}

func TestRatesProgressAndAppsOverTime(t *testing.T) {
	m, c := newModel(t, 10)
	for i := range 10 {
		m.DeviceManaged(i, fmt.Sprint("u", i), int64(1+i%2))
		m.FleetEvent(state(i, fleet.StateRunning, "old"))
	}
	m.SetApps([]api.App{{ID: 1, Name: "one", Commit: "new"}, {ID: 2, Name: "two", Commit: "old"}})
	m.Step()
	for s := range 4 { // one second each: 5 hooks, 5 reports and one device reaching its target
		c.add(time.Second)
		for range 5 {
			m.HookReceived("update", 2*s, 202, "new")
			m.Reported(s)
		}
		m.FleetEvent(state(2*s, fleet.StateRunning, "new"))
		m.Step()
	}
	st := m.Stats()
	if st.HookRate != 5 || st.ReportRate != 5 || st.Rate != 1 {
		t.Errorf("rates: got hooks %v/s, reports %v/s, devices %v/s; want 5, 5, 1", st.HookRate, st.ReportRate, st.Rate)
	}
	if st.Active != 10 || st.OnTarget != 9 || st.Progress != 0.9 {
		t.Errorf("progress: got %d/%d = %v, want 9/10", st.OnTarget, st.Active, st.Progress)
	}
	if len(st.Apps) != 2 || st.Apps[0].Name != "one" || st.Apps[0].Commit != "new" || st.Apps[0].OnTarget != 4 || st.Apps[0].Devices != 5 ||
		st.Apps[1].OnTarget != 5 {
		t.Errorf("apps: got %+v", st.Apps)
	}
	if st.Hooks["update"] != 20 || st.Reports != 20 {
		t.Errorf("totals: got %v hooks, %d reports", st.Hooks, st.Reports)
	}
	c.add(10 * time.Second)
	m.Step()
	if st := m.Stats(); st.HookRate != 0 || st.Rate != 0 {
		t.Errorf("after 10 quiet seconds: got hooks %v/s, devices %v/s, want 0", st.HookRate, st.Rate)
	}
}

func TestErrorsAreBoundedNewestFirst(t *testing.T) {
	m, _ := newModel(t, 3)
	for i := range 3*MaxErrors + 7 {
		m.Failed("report", i%4-1, fmt.Errorf("error %d %s", i, strings.Repeat("x", 1000)))
	}
	m.Step()
	st := m.Stats()
	if len(st.Errors) != MaxErrors || st.ErrorCount != 3*MaxErrors+7 {
		t.Fatalf("got %d errors kept of %d, want %d of %d", len(st.Errors), st.ErrorCount, MaxErrors, 3*MaxErrors+7)
	}
	if !strings.HasPrefix(st.Errors[0].Message, fmt.Sprintf("error %d ", 3*MaxErrors+6)) || len(st.Errors[0].Message) > 410 {
		t.Errorf("newest error: got %.40q (%d bytes), want error %d, cut to 400 bytes", st.Errors[0].Message, len(st.Errors[0].Message), 3*MaxErrors+6)
	}
	for _, e := range st.Errors {
		if e.Device == -1 && e.Serial != "" || e.Device >= 3 {
			t.Errorf("error of device %d has serial %q", e.Device, e.Serial)
		}
	}
}

func TestAHookAheadOfTheAppsListSetsTheTarget(t *testing.T) {
	m, c := newModel(t, 2)
	m.SetApps([]api.App{{ID: 1, Name: "fw", Commit: "c1"}})
	for i := range 2 {
		m.DeviceManaged(i, fmt.Sprint("u", i), 1)
		m.FleetEvent(state(i, fleet.StateRunning, "c1"))
	}
	c.add(time.Second)
	m.HookReceived("update", 0, 202, "c2") // the supervisor's list still says c1
	select {
	case <-m.appsStale:
	default:
		t.Error("a hook with a new commit did not ask for the apps again")
	}
	if got := cellOf(t, m, 0); got != Pending.Name() {
		t.Errorf("device told of c2, running c1: got %q, want pending", got)
	}
	if got := cellOf(t, m, 1); got != OnTarget.Name() {
		t.Errorf("device not told yet, running c1: got %q, want on target (the list's release)", got)
	}
	m.FleetEvent(state(0, fleet.StateRunning, "c2"))
	if got := cellOf(t, m, 0); got != OnTarget.Name() {
		t.Errorf("device running its hook's c2: got %q, want on target", got)
	}
	c.add(time.Second)
	m.SetApps([]api.App{{ID: 1, Name: "fw", Commit: "c2"}})
	if got := cellOf(t, m, 1); got != Pending.Name() {
		t.Errorf("once the list says c2, the device running c1: got %q, want pending", got)
	}
}

func TestTheCommitTableIsBounded(t *testing.T) {
	m, _ := newModel(t, 1)
	m.DeviceManaged(0, "u0", 1)
	for i := range maxCommits + 100 {
		m.FleetEvent(state(0, fleet.StateRunning, fmt.Sprint("c", i)))
		m.Step()
	}
	_, snap := m.Snapshot()
	f := decode(t, snap)
	if len(f.Commits) != maxCommits || f.Commits[maxCommits-1] != "…" || f.Commits[f.Cix[0]] != "…" {
		t.Errorf("after %d commits: table of %d ending %q, the device's %q; want %d ending and showing …",
			maxCommits+100, len(f.Commits), f.Commits[len(f.Commits)-1], f.Commits[f.Cix[0]], maxCommits)
	}
	if d, _ := m.Device(0); d.Commit != fmt.Sprint("c", maxCommits+99) {
		t.Errorf("the device's details: got commit %q, want the real one", d.Commit)
	}
}
