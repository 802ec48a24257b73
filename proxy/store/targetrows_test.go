package store

import (
	"context"
	"fmt"
	"math/rand/v2"
	"reflect"
	"strings"
	"testing"
	"time"
	"unsafe"

	"github.com/depharness/depharness/internal/jsonstr"
)

// canonicalStringMap writes what encoding/json writes for the map, with
// HTML escaping off, whatever the keys and values hold.
func TestCanonicalStringMapIsEncodingJSONs(t *testing.T) {
	rng := rand.New(rand.NewPCG(3, 4))
	pieces := []string{"a", "Z", "é", "\u2028", "\u2029", "<&>", `"`, `\`, "\n", "\x00", "\x1f", "\xff", "\xe2\x82", "日本", " ", "0", "{}"}
	word := func() string {
		var b strings.Builder
		for range rng.IntN(5) {
			b.WriteString(pieces[rng.IntN(len(pieces))])
		}
		return b.String()
	}
	for i := range 2000 {
		m := map[string]string{}
		for range rng.IntN(5) {
			m[word()] = word()
		}
		if i == 0 {
			m = nil
		}
		got, err := canonicalStringMap(m)
		if err != nil {
			t.Fatal(err)
		}
		if m == nil {
			m = map[string]string{}
		}
		want, err := jsonstr.Marshal(m)
		if err != nil {
			t.Fatal(err)
		}
		if got != string(want) {
			t.Fatalf("canonicalStringMap(%q) = %s, want %s", m, got, want)
		}
	}
}

// targetWorld is a store with the operations that change the rows
// ApplyTarget compares with.
type targetWorld struct {
	t    *testing.T
	s    *Store
	clk  *testClock
	full bool // forget the kept rows before each target
}

func (w *targetWorld) apply(tg Target) (TargetSummary, error) {
	if w.full {
		// The committer runs no transaction between test steps.
		w.s.mirror.ok = false
	}
	return w.s.ApplyTarget(context.Background(), tg, w.clk.t.Add(time.Second))
}

// dump is every device row's columns ApplyTarget reads or writes, sorted.
func (w *targetWorld) dump() string {
	rows, err := w.s.r.Query(`SELECT uuid, app_id, name, target_environment, target_config, in_target, marked_for_delete,
       restart_requested, restart_acked, target_changed_at, created_at FROM devices ORDER BY uuid`)
	if err != nil {
		w.t.Fatal(err)
	}
	defer rows.Close()
	var b strings.Builder
	for rows.Next() {
		var r targetDeviceRow
		var changed any
		if err := rows.Scan(&r.uuid, &r.appID, &r.name, &r.targetEnv, &r.targetCfg, &r.inTarget, &r.marked, &r.requested, &r.acked, &changed, &r.createdAt); err != nil {
			w.t.Fatal(err)
		}
		fmt.Fprintf(&b, "%+v %v\n", r, changed)
	}
	return b.String()
}

// Targets applied against the rows kept between targets, after every kind
// of write that changes them (provisioning, reports, hook
// acknowledgements, removals, another target), give the same summaries and
// the same rows as targets compared with every row read again.
func TestApplyTargetWithKeptRowsEqualsReadingEveryRow(t *testing.T) {
	var worlds [2]*targetWorld
	for i := range worlds {
		s, clk := openTestStore(t)
		worlds[i] = &targetWorld{t: t, s: s, clk: clk, full: i == 1}
	}
	rng := rand.New(rand.NewPCG(5, 6))
	uuid := func() string { return fmt.Sprintf("%032x", rng.IntN(60)) }
	ctx := context.Background()
	for step := range 300 {
		op := rng.IntN(6)
		var tg Target
		if op == 0 {
			tg = Target{ETag: fmt.Sprint(step), Apps: []TargetApp{{ID: 1, Name: "one", Commit: "c1", Image: "r@sha256:aa"}, {ID: 2, Name: "two"}}}
			seen := map[string]bool{}
			for range rng.IntN(50) {
				u := uuid()
				if seen[u] {
					continue
				}
				seen[u] = true
				d := TargetDevice{UUID: u, AppID: 1 + rng.Int64N(2), Name: fmt.Sprint("n", rng.IntN(3)), Restart: rng.Int64N(3),
					Environment: map[string]string{"E": fmt.Sprint(rng.IntN(3))}}
				if rng.IntN(4) > 0 {
					d.Cloud = cloudRec(rng.Int64N(1000))
				}
				tg.Devices = append(tg.Devices, d)
			}
			sortDevices(tg.Devices)
		}
		u := uuid()
		var results [2]string
		for i, w := range worlds {
			var res any
			var err error
			switch op {
			case 0:
				res, err = w.apply(tg)
			case 1:
				res, err = w.s.InsertProvisioned(ctx, NewDevice{UUID: u, AppID: 1, DeviceType: "t", CloudID: 7, Name: "p"})
				res = fmt.Sprint(err)
			case 2:
				res, err = w.s.WriteHookState(ctx, []HookWrite{{UUID: u, RemoveDeleted: true}})
			case 3:
				res, err = w.s.WriteHookState(ctx, []HookWrite{{UUID: u, AckRestart: true}})
			case 4:
				_, _, err = w.s.ApplyReport(ctx, u, Report{Status: apiStrPtr(fmt.Sprint(step))})
				res, err = fmt.Sprint(err), nil
			case 5:
				w.clk.t = w.clk.t.Add(time.Second)
			}
			if err != nil {
				t.Fatalf("step %d op %d: %v", step, op, err)
			}
			results[i] = fmt.Sprintf("%+v", res)
		}
		if results[0] != results[1] {
			t.Fatalf("step %d op %d: kept rows gave %s, reading every row %s", step, op, results[0], results[1])
		}
		if a, b := worlds[0].dump(), worlds[1].dump(); a != b {
			t.Fatalf("step %d op %d: rows differ:\n%s\nreading every row:\n%s", step, op, a, b)
		}
	}
}

func sortDevices(ds []TargetDevice) {
	for i := range ds {
		for j := i + 1; j < len(ds); j++ {
			if ds[j].UUID < ds[i].UUID {
				ds[i], ds[j] = ds[j], ds[i]
			}
		}
	}
}

// A target applied in the same transaction as earlier writes (group
// commit) compares with the rows as those writes left them: a device
// provisioned just before is known (not skipped for want of a cloud
// record), one removed just before is inserted anew.
func TestApplyTargetSeesTheWritesBeforeItInItsTransaction(t *testing.T) {
	s, clk := openTestStore(t)
	ctx := context.Background()
	app := TargetApp{ID: 1, Name: "one", Commit: "c1", Image: "r@sha256:aa"}
	apply(t, s, Target{Apps: []TargetApp{app}, Devices: []TargetDevice{{UUID: "gone", AppID: 1, Cloud: cloudRec(1)}}}, clk.t)
	apply(t, s, Target{Apps: []TargetApp{app}}, clk.t.Add(time.Second)) // marks "gone"
	release := holdWriter(t, s)
	prov := make(chan error, 1)
	go func() {
		_, err := s.InsertProvisioned(ctx, NewDevice{UUID: "new", AppID: 1, DeviceType: "t", CloudID: 2, Name: "p"})
		prov <- err
	}()
	awaitQueued(t, s, 1)
	rm := make(chan error, 1)
	go func() { _, err := s.RemoveDeleted(ctx, "gone"); rm <- err }()
	awaitQueued(t, s, 2)
	sums := make(chan TargetSummary, 1)
	applied := make(chan error, 1)
	go func() {
		sum, err := s.ApplyTarget(ctx, Target{Apps: []TargetApp{app}, Devices: []TargetDevice{
			{UUID: "new", AppID: 1}, {UUID: "gone", AppID: 1, Cloud: cloudRec(1)}}}, clk.t.Add(time.Hour))
		sums <- sum
		applied <- err
	}()
	awaitQueued(t, s, 3)
	if err := release(); err != nil {
		t.Fatal(err)
	}
	if err := await(t, "provisioning", prov); err != nil {
		t.Fatal(err)
	}
	if err := await(t, "removal", rm); err != nil {
		t.Fatal(err)
	}
	if err := await(t, "target", applied); err != nil {
		t.Fatal(err)
	}
	sum := <-sums
	want := TargetSummary{Added: []string{"gone"}, FirstSeen: []string{"new"}}
	if !reflect.DeepEqual(sum, want) {
		t.Errorf("summary = %+v, want %+v", sum, want)
	}
}

// The rows ApplyTarget keeps between targets share the strings devices hold
// alike (a million kept rows held a copy each), and keep their values.
func TestKeptTargetRowsShareEqualStrings(t *testing.T) {
	s, clk := openTestStore(t)
	tg := twoDevices(map[string]string{"A": "1"})
	tg.Devices = append(tg.Devices, TargetDevice{UUID: "d3", AppID: 1, Environment: map[string]string{"A": "3"}, Cloud: cloudRec(3)})
	apply(t, s, tg, clk.t)
	apply(t, s, tg, clk.t) // reads the rows the first one wrote, and keeps them
	rows := s.mirror.rows
	d1, d2, d3 := rows["d1"], rows["d2"], rows["d3"]
	if d1 == nil || d2 == nil || d3 == nil {
		t.Fatalf("kept rows %v, want d1, d2 and d3", rows)
	}
	if d1.targetEnv != `{"A":"1"}` || d3.targetEnv != `{"A":"3"}` {
		t.Errorf("kept environments %q and %q, want {\"A\":\"1\"} and {\"A\":\"3\"}", d1.targetEnv, d3.targetEnv)
	}
	if unsafe.StringData(d1.targetEnv) != unsafe.StringData(d2.targetEnv) || unsafe.StringData(d1.targetCfg) != unsafe.StringData(d3.targetCfg) {
		t.Error("rows with equal target variables keep copies of their own")
	}
}
