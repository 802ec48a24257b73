package fleet_test

import (
	"archive/tar"
	"bytes"
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"sync"
	"testing"
	"testing/synctest"
	"time"

	"github.com/depharness/depharness/sim/fleet"
)

// makeTar builds a tar of files in the given order, with directories and
// metadata that the checksum must ignore.
func makeTar(t testing.TB, files [][2]string) []byte {
	t.Helper()
	var buf bytes.Buffer
	tw := tar.NewWriter(&buf)
	if err := tw.WriteHeader(&tar.Header{Name: "sub/", Typeflag: tar.TypeDir, Mode: 0o755}); err != nil {
		t.Fatal(err)
	}
	for i, f := range files {
		h := &tar.Header{Name: f[0], Typeflag: tar.TypeReg, Mode: 0o600 + int64(i), Size: int64(len(f[1])), ModTime: time.Unix(int64(1000*i), 0)}
		if err := tw.WriteHeader(h); err != nil {
			t.Fatal(err)
		}
		if _, err := tw.Write([]byte(f[1])); err != nil {
			t.Fatal(err)
		}
	}
	if err := tw.Close(); err != nil {
		t.Fatal(err)
	}
	return buf.Bytes()
}

func TestChecksum(t *testing.T) {
	a := makeTar(t, [][2]string{{"firmware.bin", "AAAA"}, {"sub/x.hex", ":00000001FF"}})
	sumA, err := fleet.Checksum(bytes.NewReader(a))
	if err != nil {
		t.Fatal(err)
	}
	cases := []struct {
		name string
		tar  []byte
		same bool
	}{
		{"member order and metadata do not matter", makeTar(t, [][2]string{{"sub/x.hex", ":00000001FF"}, {"./firmware.bin", "AAAA"}}), true},
		{"a changed content changes it", makeTar(t, [][2]string{{"firmware.bin", "AAAB"}, {"sub/x.hex", ":00000001FF"}}), false},
		{"a renamed member changes it", makeTar(t, [][2]string{{"firmware.bim", "AAAA"}, {"sub/x.hex", ":00000001FF"}}), false},
		{"moving bytes between name and content changes it", makeTar(t, [][2]string{{"firmware.binA", "AAA"}, {"sub/x.hex", ":00000001FF"}}), false},
		{"a missing member changes it", makeTar(t, [][2]string{{"firmware.bin", "AAAA"}}), false},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			got, err := fleet.Checksum(bytes.NewReader(tc.tar))
			if err != nil {
				t.Fatal(err)
			}
			if (got == sumA) != tc.same {
				t.Errorf("got %s vs %s, want same=%v", got, sumA, tc.same)
			}
		})
	}
	if got := fleet.ChecksumFiles(map[string][]byte{"firmware.bin": []byte("AAAA"), "sub/x.hex": []byte(":00000001FF")}); got != sumA {
		t.Errorf("ChecksumFiles: got %s, want Checksum's %s", got, sumA)
	}
	if _, err := fleet.ChecksumLimit(bytes.NewReader(a), 5); !errors.Is(err, fleet.ErrTooLarge) {
		t.Errorf("ChecksumLimit of 15 content bytes with limit 5: got %v, want ErrTooLarge", err)
	}
	if got, err := fleet.ChecksumLimit(bytes.NewReader(a), 15); err != nil || got != sumA {
		t.Errorf("ChecksumLimit at exactly the content size: got %s, %v; want %s", got, err, sumA)
	}
	if _, err := fleet.Checksum(strings.NewReader("this is not a tar archive, it is text that goes on long enough to fill a header block" + strings.Repeat(".", 600))); err == nil {
		t.Error("Checksum of text: got no error, want one")
	}
}

func TestParseProfile(t *testing.T) {
	good := `{"count": 3, "seed": 7, "flashTime": {"dist": "uniform", "min": "1s", "max": "2s"},
		"failureProbability": 0.1, "offline": {"probability": 0.2, "interval": "10s", "duration": {"dist": "normal", "mean": "3s", "stddev": "1s"}},
		"logRate": 0.5}`
	p, err := fleet.ParseProfile([]byte(good))
	if err != nil {
		t.Fatal(err)
	}
	if p.Count != 3 || p.Seed != 7 || time.Duration(p.FlashTime.Max) != 2*time.Second || time.Duration(p.Offline.Interval) != 10*time.Second || p.LogRate != 0.5 {
		t.Errorf("got %+v, want the file's values", p)
	}
	example, err := fleet.LoadProfile(filepath.Join("testdata", "profile.json"))
	if err != nil || example.Count != 50 || example.FlashTime.Dist != fleet.DistNormal {
		t.Errorf("testdata/profile.json: got %+v, %v; want the example profile of 50 devices", example, err)
	}
	path := filepath.Join(t.TempDir(), "profile.json")
	if err := os.WriteFile(path, []byte(good), 0o600); err != nil {
		t.Fatal(err)
	}
	if q, err := fleet.LoadProfile(path); err != nil || !reflect.DeepEqual(q, p) {
		t.Errorf("LoadProfile: got %+v, %v; want %+v", q, err, p)
	}

	bad := []struct{ name, json, want string }{
		{"an unknown field is refused", `{"count": 1, "cuont": 2}`, "unknown field"},
		{"a negative count is refused", `{"count": -1}`, "count -1"},
		{"a probability above one is refused", `{"failureProbability": 1.5}`, "failureProbability"},
		{"churn without interval is refused", `{"offline": {"probability": 0.5}}`, "offline.interval"},
		{"an unknown distribution is refused", `{"flashTime": {"dist": "poisson"}}`, "unknown distribution"},
		{"uniform with max below min is refused", `{"flashTime": {"dist": "uniform", "min": "2s", "max": "1s"}}`, "below min"},
		{"a duration number is refused", `{"flashTime": {"mean": 5}}`, "duration must be a string"},
		{"a negative log rate is refused", `{"logRate": -1}`, "logRate"},
	}
	for _, tc := range bad {
		t.Run(tc.name, func(t *testing.T) {
			_, err := fleet.ParseProfile([]byte(tc.json))
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Errorf("got %v, want an error mentioning %q", err, tc.want)
			}
		})
	}
}

func TestDistSample(t *testing.T) {
	r := rand.New(rand.NewPCG(1, 2))
	ms := func(n int) fleet.Duration { return fleet.Duration(time.Duration(n) * time.Millisecond) }
	cases := []struct {
		name     string
		d        fleet.Dist
		min, max time.Duration
	}{
		{"fixed is always the mean", fleet.Dist{Mean: ms(5)}, 5 * time.Millisecond, 5 * time.Millisecond},
		{"uniform stays within min and max", fleet.Dist{Dist: "uniform", Min: ms(10), Max: ms(20)}, 10 * time.Millisecond, 20 * time.Millisecond},
		{"normal is clamped to min and max", fleet.Dist{Dist: "normal", Mean: ms(100), Stddev: ms(100), Min: ms(50), Max: ms(150)}, 50 * time.Millisecond, 150 * time.Millisecond},
		{"normal is never negative", fleet.Dist{Dist: "normal", Mean: 0, Stddev: ms(100)}, 0, time.Hour},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			for range 1000 {
				if v := tc.d.Sample(r); v < tc.min || v > tc.max {
					t.Fatalf("got %v, want within [%v, %v]", v, tc.min, tc.max)
				}
			}
		})
	}
}

func TestIdentitiesComeFromTheSeed(t *testing.T) {
	ids := func(seed int64) []string {
		f, err := fleet.New(fleet.Profile{Count: 20, Seed: seed}, fleet.Options{})
		if err != nil {
			t.Fatal(err)
		}
		var out []string
		seen := map[string]bool{}
		for _, d := range f.Devices() {
			if seen[d.Serial] {
				t.Fatalf("serial %s given twice", d.Serial)
			}
			seen[d.Serial] = true
			out = append(out, d.Serial+" "+d.Name)
		}
		return out
	}
	if a, b := ids(42), ids(42); !reflect.DeepEqual(a, b) {
		t.Errorf("same seed: got %v and %v, want equal", a, b)
	}
	if a, b := ids(42), ids(43); reflect.DeepEqual(a, b) {
		t.Errorf("different seeds: got the same identities %v", a)
	}
}

func goodFirmware(t testing.TB, commit, content string) fleet.Firmware {
	tarb := makeTar(t, [][2]string{{"firmware.bin", content}})
	sum, err := fleet.Checksum(bytes.NewReader(tarb))
	if err != nil {
		t.Fatal(err)
	}
	return fleet.Firmware{AppID: 1, Commit: commit, Tar: tarb, Checksum: sum, Expected: sum}
}

func TestUpdate(t *testing.T) {
	fw := goodFirmware(t, "c1", "v1")
	tampered := fw
	tampered.Checksum = strings.Repeat("0", 64)
	wrongRelease := fw
	wrongRelease.Expected = strings.Repeat("1", 64)
	unknownRelease := fw
	unknownRelease.Expected = ""
	notATar := fleet.Firmware{Commit: "c1", Tar: bytes.Repeat([]byte("x"), 1024), Checksum: "x"}

	cases := []struct {
		name      string
		failure   float64
		fw        fleet.Firmware
		wantErr   error
		wantState fleet.State
	}{
		{"a good firmware runs with the target", 0, fw, nil, fleet.StateRunning},
		{"a firmware without an expected checksum runs when it is consistent", 0, unknownRelease, nil, fleet.StateRunning},
		{"a firmware that differs from the release fails with a checksum mismatch", 0, wrongRelease, fleet.ErrChecksumMismatch, fleet.StateFailed},
		{"a firmware changed after download fails with a checksum mismatch", 0, tampered, fleet.ErrChecksumMismatch, fleet.StateFailed},
		{"a tar that cannot be read fails", 0, notATar, fleet.ErrBadFirmware, fleet.StateFailed},
		{"a flaky device fails a good firmware", 1, fw, fleet.ErrFlashFailed, fleet.StateFailed},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			synctest.Test(t, func(t *testing.T) {
				f, err := fleet.New(fleet.Profile{Count: 1, FailureProbability: tc.failure, FlashTime: fleet.Dist{Mean: fleet.Duration(time.Second)}}, fleet.Options{RecordHistory: true})
				if err != nil {
					t.Fatal(err)
				}
				d := f.Device(0)
				target := fleet.Target{AppID: 1, Commit: "c1", Environment: map[string]any{"E": "1"}, Config: map[string]any{"C": "2"}}
				start := time.Now()
				err = d.Update(t.Context(), target, func(context.Context) (fleet.Firmware, error) { return tc.fw, nil })
				if !errors.Is(err, tc.wantErr) {
					t.Fatalf("got %v, want %v", err, tc.wantErr)
				}
				if took := time.Since(start); took != time.Second {
					t.Errorf("flash took %v, want the profile's 1s", took)
				}
				s := d.Snapshot()
				if s.State != tc.wantState {
					t.Errorf("got state %s, want %s", s.State, tc.wantState)
				}
				if tc.wantErr == nil && (s.Commit != "c1" || s.Environment["E"] != "1" || s.Config["C"] != "2" || s.Failure != "") {
					t.Errorf("got %+v, want commit c1 with the target's environment and config", s)
				}
				if tc.wantErr != nil && (s.Commit != "" || s.Failure == "") {
					t.Errorf("got %+v, want no commit and a failure reason", s)
				}
				var states []fleet.State
				for _, e := range f.History() {
					states = append(states, e.State)
				}
				if want := []fleet.State{fleet.StateDownloading, fleet.StateFlashing, tc.wantState}; !reflect.DeepEqual(states, want) {
					t.Errorf("got states %v, want %v", states, want)
				}
			})
		})
	}
}

func TestUpdateKeepsTheStateWhenTheDownloadFails(t *testing.T) {
	f, err := fleet.New(fleet.Profile{Count: 1}, fleet.Options{})
	if err != nil {
		t.Fatal(err)
	}
	d := f.Device(0)
	if err := d.Update(t.Context(), fleet.Target{Commit: "c1"}, func(context.Context) (fleet.Firmware, error) { return goodFirmware(t, "c1", "v1"), nil }); err != nil {
		t.Fatal(err)
	}
	boom := errors.New("supervisor unreachable")
	err = d.Update(t.Context(), fleet.Target{Commit: "c2"}, func(context.Context) (fleet.Firmware, error) { return fleet.Firmware{}, boom })
	if !errors.Is(err, boom) {
		t.Fatalf("got %v, want the fetch error", err)
	}
	if s := d.Snapshot(); s.State != fleet.StateRunning || s.Commit != "c1" {
		t.Errorf("got %+v, want still running c1", s)
	}
}

func TestConfigureChangesOnlyTheVariablesOfTheRunningCommit(t *testing.T) {
	f, err := fleet.New(fleet.Profile{Count: 1}, fleet.Options{RecordHistory: true})
	if err != nil {
		t.Fatal(err)
	}
	d := f.Device(0)
	if err := d.Configure(t.Context(), fleet.Target{Commit: "c1"}); !errors.Is(err, fleet.ErrNotRunningCommit) {
		t.Fatalf("configure a device without firmware: got %v, want ErrNotRunningCommit", err)
	}
	if err := d.Update(t.Context(), fleet.Target{Commit: "c1", Environment: map[string]any{"E": "1"}}, func(context.Context) (fleet.Firmware, error) { return goodFirmware(t, "c1", "v1"), nil }); err != nil {
		t.Fatal(err)
	}
	if err := d.Configure(t.Context(), fleet.Target{Commit: "c2", Environment: map[string]any{"E": "2"}}); !errors.Is(err, fleet.ErrNotRunningCommit) {
		t.Fatalf("configure for another commit: got %v, want ErrNotRunningCommit", err)
	}
	before := len(f.History())
	if err := d.Configure(t.Context(), fleet.Target{Commit: "c1", Environment: map[string]any{"E": "2"}, Config: map[string]any{"C": "3"}}); err != nil {
		t.Fatalf("configure the running commit: %v", err)
	}
	if s := d.Snapshot(); s.State != fleet.StateRunning || s.Commit != "c1" || s.Environment["E"] != "2" || s.Config["C"] != "3" {
		t.Errorf("got %+v, want running c1 with E=2 and C=3", s)
	}
	// No state change (no download, no flash): one system log line.
	h := f.History()[before:]
	if len(h) != 1 || h[0].Kind != fleet.EventLog || !h[0].System {
		t.Errorf("got events %+v, want one system log line", h)
	}
}

func TestUpdateWaitsForAnOfflineDevice(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		p := fleet.Profile{Count: 1, Offline: fleet.Churn{Probability: 1, Interval: fleet.Duration(time.Second), Duration: fleet.Dist{Mean: fleet.Duration(5 * time.Second)}}}
		f, err := fleet.New(p, fleet.Options{})
		if err != nil {
			t.Fatal(err)
		}
		ctx, cancel := context.WithCancel(t.Context())
		done := make(chan struct{})
		go func() { f.Run(ctx); close(done) }()
		time.Sleep(1500 * time.Millisecond) // virtual: offline from 1s to 6s
		if f.Device(0).Snapshot().Online {
			t.Fatal("got online at 1.5s, want offline")
		}
		start := time.Now()
		if err := f.Device(0).Update(ctx, fleet.Target{Commit: "c1"}, func(context.Context) (fleet.Firmware, error) { return goodFirmware(t, "c1", "v"), nil }); err != nil {
			t.Fatal(err)
		}
		if waited := time.Since(start); waited != 4500*time.Millisecond {
			t.Errorf("update finished after %v, want 4.5s (when the device came back)", waited)
		}
		cancel()
		<-done
	})
}

func TestRestartRebootsAndLogs(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		f, err := fleet.New(fleet.Profile{Count: 1, RebootTime: fleet.Dist{Mean: fleet.Duration(2 * time.Second)}}, fleet.Options{RecordHistory: true})
		if err != nil {
			t.Fatal(err)
		}
		if err := f.Device(0).Restart(t.Context()); err != nil {
			t.Fatal(err)
		}
		var got []string
		for _, e := range f.History() {
			got = append(got, fmt.Sprintf("%s %s %q %v", e.Time.Sub(time.Date(2000, 1, 1, 0, 0, 0, 0, time.UTC)), e.Kind, e.Message, e.System))
		}
		want := []string{`0s offline "" false`, `0s restart "" false`, `2s log "Device restarted" true`, `2s online "" false`}
		if !reflect.DeepEqual(got, want) {
			t.Errorf("got %q, want %q", got, want)
		}
	})
}

// simulate runs a busy fleet for 30 virtual seconds: churn, logs, three
// releases flashed onto every device, a restart each; and returns its
// history.
func simulate(t *testing.T, seed int64) []fleet.Event {
	var h []fleet.Event
	synctest.Test(t, func(t *testing.T) {
		p := fleet.Profile{
			Count: 6, Seed: seed,
			FlashTime:          fleet.Dist{Dist: "uniform", Min: fleet.Duration(500 * time.Millisecond), Max: fleet.Duration(3 * time.Second)},
			FailureProbability: 0.3,
			Offline:            fleet.Churn{Probability: 0.4, Interval: fleet.Duration(2 * time.Second), Duration: fleet.Dist{Dist: "normal", Mean: fleet.Duration(time.Second), Stddev: fleet.Duration(500 * time.Millisecond)}},
			LogRate:            1.5,
			RebootTime:         fleet.Dist{Dist: "uniform", Min: fleet.Duration(100 * time.Millisecond), Max: fleet.Duration(time.Second)},
		}
		f, err := fleet.New(p, fleet.Options{RecordHistory: true})
		if err != nil {
			t.Fatal(err)
		}
		ctx, cancel := context.WithTimeout(t.Context(), 30*time.Second)
		defer cancel()
		var wg sync.WaitGroup
		wg.Go(func() { f.Run(ctx) })
		releases := []fleet.Firmware{goodFirmware(t, "c1", "one"), goodFirmware(t, "c2", "two"), goodFirmware(t, "c3", "three")}
		for _, d := range f.Devices() {
			wg.Go(func() {
				for _, fw := range releases {
					_ = d.Update(ctx, fleet.Target{AppID: 1, Commit: fw.Commit}, func(context.Context) (fleet.Firmware, error) { return fw, nil })
				}
				_ = d.Restart(ctx)
			})
		}
		wg.Wait()
		h = f.History()
	})
	return h
}

func TestSameSeedSameHistory(t *testing.T) {
	a, b := simulate(t, 1234), simulate(t, 1234)
	kinds := map[fleet.EventKind]int{}
	for _, e := range a {
		kinds[e.Kind]++
	}
	for _, k := range []fleet.EventKind{fleet.EventState, fleet.EventOnline, fleet.EventOffline, fleet.EventLog, fleet.EventRestart} {
		if kinds[k] == 0 {
			t.Errorf("history has no %s event, want a busy run (got %v)", k, kinds)
		}
	}
	if !reflect.DeepEqual(a, b) {
		for i := range min(len(a), len(b)) {
			if a[i] != b[i] {
				t.Fatalf("same seed: histories differ at event %d: got %v, want %v", i, b[i], a[i])
			}
		}
		t.Fatalf("same seed: got %d and %d events, want identical histories", len(a), len(b))
	}
	c := simulate(t, 4321)
	if reflect.DeepEqual(a, c) {
		t.Error("different seeds: got identical histories, want different")
	}
}

func TestRunsTellsTheCommitAndTheWholeTargetWithoutACopy(t *testing.T) {
	f, err := fleet.New(fleet.Profile{Count: 1}, fleet.Options{})
	if err != nil {
		t.Fatal(err)
	}
	d := f.Device(0)
	target := fleet.Target{AppID: 1, Commit: "c1", Environment: map[string]any{"E": "1"}}
	if c, whole := d.Runs(target); c || whole {
		t.Errorf("an idle device: Runs = %v, %v; want false, false", c, whole)
	}
	fw := goodFirmware(t, "c1", "v1")
	if err := d.Update(context.Background(), target, func(context.Context) (fleet.Firmware, error) { return fw, nil }); err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		name          string
		t             fleet.Target
		commit, whole bool
	}{
		{"the target it runs", target, true, true},
		{"an empty config is no config", fleet.Target{Commit: "c1", Environment: map[string]any{"E": "1"}, Config: map[string]any{}}, true, true},
		{"other variables", fleet.Target{Commit: "c1", Environment: map[string]any{"E": "2"}}, true, false},
		{"another commit", fleet.Target{Commit: "c2", Environment: map[string]any{"E": "1"}}, false, false},
	} {
		if c, whole := d.Runs(tc.t); c != tc.commit || whole != tc.whole {
			t.Errorf("%s: Runs = %v, %v; want %v, %v", tc.name, c, whole, tc.commit, tc.whole)
		}
	}
	if !d.Online() {
		t.Error("Online = false, want a new device online")
	}
}

func TestDevicesFlashingOneTarVerifyItAndStillCatchAnotherTar(t *testing.T) {
	f, err := fleet.New(fleet.Profile{Count: 3}, fleet.Options{})
	if err != nil {
		t.Fatal(err)
	}
	fw := goodFirmware(t, "c1", "v1")
	for i := range 2 {
		if err := f.Device(i).Update(context.Background(), fleet.Target{Commit: "c1"}, func(context.Context) (fleet.Firmware, error) { return fw, nil }); err != nil {
			t.Fatalf("device %d: %v", i, err)
		}
	}
	// Another download with the checksum of the first: the device reads
	// what it got, not what it saw before.
	other := goodFirmware(t, "c1", "v2")
	other.Checksum, other.Expected = fw.Checksum, fw.Expected
	err = f.Device(2).Update(context.Background(), fleet.Target{Commit: "c1"}, func(context.Context) (fleet.Firmware, error) { return other, nil })
	if !errors.Is(err, fleet.ErrChecksumMismatch) {
		t.Errorf("got %v, want ErrChecksumMismatch", err)
	}
}
