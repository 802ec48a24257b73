package load

import (
	"context"
	"slices"
	"strings"
	"testing"
)

// fakeCloud answers lookups from a map of commits and remembers what it was
// asked, sorted, one string per lookup.
type fakeCloud struct {
	commit map[string]string
	asked  []string
}

func (c *fakeCloud) lookup(_ context.Context, uuids []string) ([]CloudDevice, error) {
	s := slices.Clone(uuids)
	slices.Sort(s)
	c.asked = append(c.asked, strings.Join(s, ","))
	var out []CloudDevice
	for _, u := range uuids {
		out = append(out, CloudDevice{UUID: u, IsOnCommit: c.commit[u]})
	}
	return out, nil
}

func (c *fakeCloud) take() string {
	out := strings.Join(c.asked, " ")
	c.asked = nil
	return out
}

func newTestProbe(c *fakeCloud, hints *hintQueue, devices ...string) (*pendingProbe, *firstTimes) {
	var seen firstTimes
	pp := &pendingProbe{lookup: c.lookup, ok: func(d CloudDevice) bool { return d.IsOnCommit == "new" }, seen: &seen, hints: hints}
	pp.watch(devices)
	return pp, &seen
}

func sampleIs(t *testing.T, pp *pendingProbe, c *fakeCloud, wantConv, wantTotal int, wantAsked string) {
	t.Helper()
	conv, total, err := pp.sample(context.Background())
	if err != nil || conv != wantConv || total != wantTotal {
		t.Fatalf("got %d/%d (%v), want %d/%d", conv, total, err, wantConv, wantTotal)
	}
	if got := c.take(); got != wantAsked {
		t.Errorf("looked up %q, want %q", got, wantAsked)
	}
}

func TestPendingProbeReadsOnlyPendingDevicesAndVerifiesAllAtTheEnd(t *testing.T) {
	c := &fakeCloud{commit: map[string]string{"a": "old", "b": "old", "c": "old"}}
	pp, seen := newTestProbe(c, nil, "a", "b", "c")
	sampleIs(t, pp, c, 0, 3, "a,b,c")
	c.commit["a"], c.commit["c"] = "new", "new"
	sampleIs(t, pp, c, 2, 3, "a,b,c")
	sampleIs(t, pp, c, 2, 3, "b")
	c.commit["b"] = "new"
	c.commit["a"] = "old" // fell back after it was seen
	// b is the last pending device: then every device is read again, and a
	// is pending again.
	sampleIs(t, pp, c, 2, 3, "b a,b,c")
	c.commit["a"] = "new"
	sampleIs(t, pp, c, 3, 3, "a a,b,c")
	if seen.len() != 3 {
		t.Errorf("noted %d first times, want 3", seen.len())
	}
}

func TestPendingProbeWithHintsReadsTheHintedAndSweepsTheRestNowAndThen(t *testing.T) {
	c := &fakeCloud{commit: map[string]string{}}
	var hints hintQueue
	pp, _ := newTestProbe(c, &hints, "a", "b", "c", "d")
	sampleIs(t, pp, c, 0, 4, "a,b,c,d") // the first sample sweeps
	c.commit["a"] = "new"
	hints.add("a")
	hints.add("b") // hinted, but the cloud does not show it yet
	sampleIs(t, pp, c, 1, 4, "a,b")
	sampleIs(t, pp, c, 1, 4, "b")               // b stays hinted until it is seen
	c.commit["b"], c.commit["d"] = "new", "new" // d without a hint
	sampleIs(t, pp, c, 2, 4, "b")
	for range sweepEvery - 4 {
		sampleIs(t, pp, c, 2, 4, "")
	}
	sampleIs(t, pp, c, 3, 4, "c,d") // the sweep finds d
	c.commit["c"] = "new"
	hints.add("c")
	sampleIs(t, pp, c, 4, 4, "c a,b,c,d")
}

func TestPendingProbeWatchesDevicesAsTheyCome(t *testing.T) {
	c := &fakeCloud{commit: map[string]string{"a": "new", "b": "new", "c": "new"}}
	devices := []string{"a"}
	pp, _ := newTestProbe(c, nil)
	pp.devices, pp.count = func() []string { return devices }, func() int { return len(devices) }
	sampleIs(t, pp, c, 1, 1, "a a")
	devices = []string{"a", "b", "c"}
	sampleIs(t, pp, c, 3, 3, "b,c a,b,c")
	c.commit["d"] = "old"
	devices = []string{"a", "b", "c", "d"}
	sampleIs(t, pp, c, 3, 4, "d")
	devices = []string{"b", "c"} // a and d were deleted
	sampleIs(t, pp, c, 2, 2, "b,c")
}
