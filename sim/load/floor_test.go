package load

import (
	"context"
	"strings"
	"sync"
	"testing"
)

func TestTrafficCountsRoundTripsTheirPeakInFlightAndMeanSizes(t *testing.T) {
	var tr traffic
	a := tr.begin("PUT /v1/devices/{uuid}", 100)
	b := tr.begin("PUT /v1/devices/{uuid}", 300)
	tr.end(a, 1000)
	c := tr.begin("PUT /v1/devices/{uuid}", -1) // unknown size
	tr.end(b, 2000)
	tr.end(c, -1)
	h := tr.begin("hook update", 50)
	tr.end(h, 8)
	got := tr.take("gateway")
	want := []RoundTrips{
		{Kind: "PUT /v1/devices/{uuid}", From: "gateway", Count: 3, Concurrency: 2, RequestBytes: 133, ResponseBytes: 1000},
		{Kind: "hook update", From: "gateway", Count: 1, Concurrency: 1, RequestBytes: 50, ResponseBytes: 8},
	}
	if len(got) != len(want) {
		t.Fatalf("got %+v, want %+v", got, want)
	}
	for i := range want {
		if got[i] != want[i] {
			t.Errorf("kind %d: got %+v, want %+v", i, got[i], want[i])
		}
	}
	if again := tr.take("gateway"); len(again) != 0 {
		t.Errorf("a second take got %+v, want nothing: take forgets", again)
	}
}

func TestMeasureFloorSendsEveryRoundTripAndGivesTheRatio(t *testing.T) {
	res := &Result{Seconds: 2, RoundTrips: []RoundTrips{
		{Kind: "hook update", Count: 300, Concurrency: 16, RequestBytes: 106, ResponseBytes: 8},
		{Kind: "PUT /v1/devices/{uuid}", Count: 500, Concurrency: 64, RequestBytes: 83, ResponseBytes: 418},
		{Kind: "GET assets", Count: 1, Concurrency: 1, ResponseBytes: 1 << 20},
		{Kind: "nothing", Count: 0, Concurrency: 4},
	}}
	if err := MeasureFloor(context.Background(), res); err != nil {
		t.Fatal(err)
	}
	f := res.Floor
	if f == nil || f.RoundTrips != 801 || f.Seconds <= 0 || f.Error != "" {
		t.Fatalf("floor %+v, want 801 round trips in some time", f)
	}
	if want := round3(2 / f.Seconds); f.Ratio < want*0.99 || f.Ratio > want*1.01 {
		t.Errorf("ratio %v, want the phase's 2 s over the floor's %v s = %v", f.Ratio, f.Seconds, want)
	}
}

func TestMeasureFloorOfAPhaseWithoutRoundTripsIsZero(t *testing.T) {
	res := &Result{Seconds: 1}
	if err := MeasureFloor(context.Background(), res); err != nil {
		t.Fatal(err)
	}
	if *res.Floor != (Floor{}) {
		t.Errorf("floor %+v, want zero", *res.Floor)
	}
}

func TestMeasureFloorStopsWithItsContext(t *testing.T) {
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	res := &Result{Seconds: 1, RoundTrips: []RoundTrips{{Kind: "x", Count: 100, Concurrency: 2}}}
	err := MeasureFloor(ctx, res)
	if err == nil || !strings.Contains(res.Floor.Error, "canceled") {
		t.Errorf("got %v (floor %+v), want the context's error", err, res.Floor)
	}
}

func TestPendingProbeReadsOnlyPendingDevicesAndVerifiesAllAtTheEnd(t *testing.T) {
	var mu sync.Mutex
	commit := map[string]string{"a": "old", "b": "old", "c": "old"}
	var asked [][]string
	lookup := func(_ context.Context, uuids []string) ([]CloudDevice, error) {
		mu.Lock()
		defer mu.Unlock()
		asked = append(asked, append([]string(nil), uuids...))
		var out []CloudDevice
		for _, u := range uuids {
			out = append(out, CloudDevice{UUID: u, IsOnCommit: commit[u]})
		}
		return out, nil
	}
	var seen firstTimes
	pp := &pendingProbe{lookup: lookup, ok: func(d CloudDevice) bool { return d.IsOnCommit == "new" }, seen: &seen,
		all: []string{"a", "b", "c"}, pending: []string{"a", "b", "c"}}
	sample := func(wantConv int, wantAsked string) {
		t.Helper()
		conv, total, err := pp.sample(context.Background())
		if err != nil || conv != wantConv || total != 3 {
			t.Fatalf("got %d/%d (%v), want %d/3", conv, total, err, wantConv)
		}
		var got []string
		for _, a := range asked {
			got = append(got, strings.Join(a, ","))
		}
		asked = nil
		if strings.Join(got, " ") != wantAsked {
			t.Errorf("looked up %q, want %q", got, wantAsked)
		}
	}
	sample(0, "a,b,c")
	commit["a"], commit["c"] = "new", "new"
	sample(2, "a,b,c")
	commit["b"] = "new"
	commit["a"] = "old" // fell back after it was seen
	// b is the last pending device: then every device is read again, and a
	// is pending again.
	sample(2, "b a,b,c")
	commit["a"] = "new"
	sample(3, "a a,b,c")
	if seen.len() != 3 {
		t.Errorf("noted %d first times, want 3", seen.len())
	}
}

func TestPendingProbeWatchesDevicesAsTheyCome(t *testing.T) {
	devices := []string{"a"}
	lookup := func(_ context.Context, uuids []string) ([]CloudDevice, error) {
		var out []CloudDevice
		for _, u := range uuids {
			out = append(out, CloudDevice{UUID: u, IsOnCommit: "new"})
		}
		return out, nil
	}
	var seen firstTimes
	pp := &pendingProbe{lookup: lookup, ok: func(d CloudDevice) bool { return d.IsOnCommit == "new" }, seen: &seen,
		devices: func() []string { return devices }, count: func() int { return len(devices) }}
	if conv, total, _ := pp.sample(context.Background()); conv != 1 || total != 1 {
		t.Errorf("got %d/%d, want 1/1", conv, total)
	}
	devices = []string{"a", "b", "c"}
	if conv, total, _ := pp.sample(context.Background()); conv != 3 || total != 3 {
		t.Errorf("got %d/%d after two more devices came, want 3/3", conv, total)
	}
}
