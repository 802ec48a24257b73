package load

import (
	"context"
	"strings"
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
	if f == nil || f.RoundTrips != 801 || f.Sent != 801 || f.Seconds <= 0 || f.Error != "" {
		t.Fatalf("floor %+v, want 801 round trips sent in some time", f)
	}
	if want := round3(2 / f.Seconds); f.Ratio < want*0.99 || f.Ratio > want*1.01 {
		t.Errorf("ratio %v, want the phase's 2 s over the floor's %v s = %v", f.Ratio, f.Seconds, want)
	}
}

func TestMeasureFloorOfALargePhaseSendsItsMixAndScalesTheTime(t *testing.T) {
	const limit = 2000
	kinds := []RoundTrips{
		{Kind: "PUT /v1/devices/{uuid}", Count: 30 * limit, Concurrency: 64, RequestBytes: 80},
		{Kind: "cloud patch", Count: 10 * limit, Concurrency: 16, RequestBytes: 128},
		{Kind: "GET assets", Count: 1, Concurrency: 1, ResponseBytes: 16 << 10},
	}
	f, err := measureFloor(context.Background(), kinds, limit)
	if err != nil {
		t.Fatal(err)
	}
	if want := int64(40*limit + 1); f.RoundTrips != want {
		t.Errorf("floor of %d round trips, want all %d counted", f.RoundTrips, want)
	}
	// About 1500 + 500 in the mix (rounded down), and the download once.
	if f.Sent < limit-2 || f.Sent > limit+1 {
		t.Errorf("sent %d round trips, want about %d: the mix, each kind at least once", f.Sent, limit)
	}
	if f.Seconds <= 0 {
		t.Errorf("floor %v s, want the time of the mix scaled up", f.Seconds)
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
