package store

import (
	"context"
	"fmt"
	"reflect"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/depharness/depharness/api"
)

func pendingByUUID(t testing.TB, s *Store) map[string]HookWork {
	t.Helper()
	ws, err := s.PendingHooks(context.Background())
	if err != nil {
		t.Fatalf("PendingHooks: %v", err)
	}
	m := map[string]HookWork{}
	for _, w := range ws {
		m[w.UUID] = w
	}
	return m
}

func TestCanonicalUpdateTargetSortsKeysAndTreatsEmptyAsObject(t *testing.T) {
	got, err := CanonicalUpdateTarget(7, "abc", `{"b":"2","a":"<1>"}`, "")
	if err != nil {
		t.Fatal(err)
	}
	want := `{"appId":7,"commit":"abc","environment":{"a":"<1>","b":"2"},"config":{}}`
	if got != want {
		t.Fatalf("got %s, want %s", got, want)
	}
}

func TestReportedMatchesTarget(t *testing.T) {
	str := func(s string) *string { return &s }
	target := UpdateTarget{AppID: 1, Commit: "c1", Environment: api.Vars{"A": "1"}}
	tests := []struct {
		name        string
		commit      *string
		env, config *string
		want        bool
	}{
		{"equal commit, environment and an unreported config match", str("c1"), str(`{"A":"1"}`), nil, true},
		{"a never reported commit does not match", nil, str(`{"A":"1"}`), nil, false},
		{"only the commit equal does not match", str("c1"), str(`{"A":"2"}`), nil, false},
		{"an unreported environment counts as empty", str("c1"), nil, nil, false},
		{"a different commit does not match", str("c0"), str(`{"A":"1"}`), str(`{}`), false},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			got, err := ReportedMatchesTarget(target, tc.commit, tc.env, tc.config)
			if err != nil {
				t.Fatal(err)
			}
			if got != tc.want {
				t.Fatalf("got %v, want %v", got, tc.want)
			}
		})
	}
}

// twoDevices is a target of app 1 (commit c1) with devices d1 (environment
// A=1) and d2 (environment env2).
func twoDevices(env2 map[string]string) Target {
	return Target{
		Apps: []TargetApp{{ID: 1, Name: "one", Commit: "c1", Image: "r@sha256:aa"}},
		Devices: []TargetDevice{
			{UUID: "d1", AppID: 1, Environment: map[string]string{"A": "1"}, Cloud: cloudRec(1)},
			{UUID: "d2", AppID: 1, Environment: env2, Cloud: cloudRec(2)},
		},
	}
}

func TestHookBookkeeping(t *testing.T) {
	s, clk := openTestStore(t)
	ctx := context.Background()
	tg := twoDevices(nil)
	apply(t, s, tg, clk.t)
	if p := pendingByUUID(t, s); len(p) != 0 {
		t.Fatalf("got pending %v before the commit is downloaded, want none", p)
	}
	if err := s.SetAppCurrentCommit(ctx, 1, "c1"); err != nil {
		t.Fatal(err)
	}
	p := pendingByUUID(t, s)
	if p["d1"].Update == nil || p["d2"].Update == nil {
		t.Fatalf("got pending %v, want updates for d1 and d2", p)
	}
	canon1 := p["d1"].UpdateCanonical
	if canon1 != `{"appId":1,"commit":"c1","environment":{"A":"1"},"config":{}}` {
		t.Fatalf("got canonical %s", canon1)
	}

	// A newer target supersedes: acknowledging the old one does nothing.
	clk.t = clk.t.Add(time.Minute)
	tg.Devices[0].Environment = map[string]string{"A": "2"}
	apply(t, s, tg, clk.t)
	acked, _, err := s.AckUpdate(ctx, "d1", canon1)
	if err != nil || acked {
		t.Fatalf("got acked=%v err=%v for a superseded target, want false", acked, err)
	}
	w, err := s.HookWorkFor(ctx, "d1")
	if err != nil || w.Update == nil || w.UpdateCanonical == canon1 {
		t.Fatalf("got %+v err=%v, want the newer target owed", w, err)
	}
	acked, changedAt, err := s.AckUpdate(ctx, "d1", w.UpdateCanonical)
	if err != nil || !acked || !changedAt.Equal(clk.t) {
		t.Fatalf("got acked=%v changedAt=%v err=%v, want acked with changedAt %v", acked, changedAt, err, clk.t)
	}
	if _, ok := pendingByUUID(t, s)["d1"]; ok {
		t.Fatal("d1 still pending after its target was acknowledged")
	}

	// A report equal to the target (NULL environment and config as {})
	// settles d2 without an acknowledgement.
	if _, err := execWrite(s, `UPDATE devices SET reported_commit = 'c1' WHERE uuid = 'd2'`); err != nil {
		t.Fatal(err)
	}
	if _, ok := pendingByUUID(t, s)["d2"]; ok {
		t.Fatal("d2 still pending after reporting its target")
	}

	// Restarts.
	clk.t = clk.t.Add(time.Minute)
	tg.Devices[1].Restart = 2
	apply(t, s, tg, clk.t)
	if got := pendingByUUID(t, s)["d2"].RestartsDue; got != 2 {
		t.Fatalf("got %d restarts due, want 2", got)
	}
	for i, want := range []bool{true, true, false} {
		ok, err := s.AckRestart(ctx, "d2")
		if err != nil || ok != want {
			t.Fatalf("AckRestart #%d: got %v err=%v, want %v", i+1, ok, err, want)
		}
	}

	// Deletion.
	if ok, err := s.RemoveDeleted(ctx, "d2"); err != nil || ok {
		t.Fatalf("RemoveDeleted of an unmarked device: got %v err=%v, want false", ok, err)
	}
	clk.t = clk.t.Add(time.Minute)
	tg.Devices = tg.Devices[:1]
	apply(t, s, tg, clk.t)
	p = pendingByUUID(t, s)
	if !p["d2"].Delete || p["d2"].Update != nil || p["d2"].RestartsDue != 0 {
		t.Fatalf("got %+v for marked d2, want only a delete owed", p["d2"])
	}
	if err := s.RecordHookAttempt(ctx, "d2", clk.t); err != nil {
		t.Fatal(err)
	}
	if w, _ := s.HookWorkFor(ctx, "d2"); !w.LastAttempt.Equal(clk.t) {
		t.Fatalf("got last attempt %v, want %v", w.LastAttempt, clk.t)
	}
	if ok, err := s.RemoveDeleted(ctx, "d2"); err != nil || !ok {
		t.Fatalf("RemoveDeleted: got %v err=%v, want true", ok, err)
	}
	if _, err := s.HookWorkFor(ctx, "d2"); err != ErrNotFound {
		t.Fatalf("got %v after removal, want ErrNotFound", err)
	}
}

func TestHookStateSurvivesReopen(t *testing.T) {
	dir := t.TempDir()
	ctx := context.Background()
	s := openDir(t, dir)
	_, err := s.ApplyTarget(ctx, Target{
		Apps:    []TargetApp{{ID: 1, Name: "one", Commit: "c1", Image: "r@sha256:aa"}},
		Devices: []TargetDevice{{UUID: "d1", AppID: 1, Cloud: cloudRec(1)}, {UUID: "d2", AppID: 1, Cloud: cloudRec(2)}},
	}, time.Now())
	if err != nil {
		t.Fatal(err)
	}
	if err := s.SetAppCurrentCommit(ctx, 1, "c1"); err != nil {
		t.Fatal(err)
	}
	w, _ := s.HookWorkFor(ctx, "d1")
	if ok, _, err := s.AckUpdate(ctx, "d1", w.UpdateCanonical); !ok || err != nil {
		t.Fatalf("AckUpdate: %v %v", ok, err)
	}
	s.Close()
	s = openDir(t, dir)
	defer s.Close()
	p := pendingByUUID(t, s)
	if _, ok := p["d1"]; ok || p["d2"].Update == nil {
		t.Fatalf("got pending %v after reopen, want only d2's update", p)
	}
}

func TestHookSendLeaseIsDurableRoundedUpAndRemovable(t *testing.T) {
	dir := t.TempDir()
	ctx := context.Background()
	s, err := Open(dir, Options{})
	if err != nil {
		t.Fatal(err)
	}
	if l, err := s.HookSendLease(ctx); err != nil || !l.IsZero() {
		t.Fatalf("got lease %v (err %v) in a new store, want none", l, err)
	}
	until := time.UnixMilli(1_700_000_000_123).Add(400 * time.Microsecond)
	if err := s.SetHookSendLease(ctx, until); err != nil {
		t.Fatal(err)
	}
	s.Close()
	if s, err = Open(dir, Options{}); err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	l, err := s.HookSendLease(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if want := time.UnixMilli(1_700_000_000_124); !l.Equal(want) {
		t.Fatalf("got lease %v after reopen, want %v (rounded up to the millisecond, never before the time given)", l, want)
	}
	if err := s.SetHookSendLease(ctx, time.Time{}); err != nil {
		t.Fatal(err)
	}
	if l, err := s.HookSendLease(ctx); err != nil || !l.IsZero() {
		t.Fatalf("got lease %v (err %v) after removing it, want none", l, err)
	}
}

func TestAnAttemptIsWrittenWithItsAcknowledgementOrAloneWhenSuperseded(t *testing.T) {
	s, clk := openTestStore(t)
	ctx := context.Background()
	tg := twoDevices(map[string]string{"A": "1"})
	apply(t, s, tg, clk.t)
	if err := s.SetAppCurrentCommit(ctx, 1, "c1"); err != nil {
		t.Fatal(err)
	}
	p := pendingByUUID(t, s)
	sent := p["d1"].UpdateCanonical
	// d2's target changes after its hook was sent: its answer acknowledges
	// nothing, its attempt still counts.
	clk.t = clk.t.Add(time.Second)
	tg.Devices[1].Environment = map[string]string{"A": "2"}
	apply(t, s, tg, clk.t)
	at := clk.t.Add(time.Second).Truncate(time.Millisecond)
	res, err := s.WriteHookState(ctx, []HookWrite{
		{UUID: "d1", Attempt: at, AckUpdate: sent},
		{UUID: "d2", Attempt: at, AckUpdate: p["d2"].UpdateCanonical},
	})
	if err != nil {
		t.Fatal(err)
	}
	if !res[0].Done || res[1].Done {
		t.Fatalf("got done %v and %v, want the current target acknowledged and the superseded one not", res[0].Done, res[1].Done)
	}
	p = pendingByUUID(t, s)
	if _, owed := p["d1"]; owed {
		t.Fatalf("got d1 still owed %+v after its acknowledgement", p["d1"])
	}
	if p["d2"].Update == nil || p["d2"].Update.Environment["A"] != "2" {
		t.Fatalf("got d2 owed %+v, want the newer target A=2", p["d2"])
	}
	for _, u := range []string{"d1", "d2"} {
		w, err := s.HookWorkFor(ctx, u)
		if err != nil {
			t.Fatal(err)
		}
		if !w.LastAttempt.Equal(at) {
			t.Fatalf("got %s's last attempt %v, want %v", u, w.LastAttempt, at)
		}
	}
	// An acknowledgement without an attempt keeps the stored attempt.
	if _, err := s.WriteHookState(ctx, []HookWrite{{UUID: "d2", AckUpdate: p["d2"].UpdateCanonical}}); err != nil {
		t.Fatal(err)
	}
	if w, _ := s.HookWorkFor(ctx, "d2"); !w.LastAttempt.Equal(at) || w.Pending() {
		t.Fatalf("got d2 last attempt %v, pending %v, want %v and nothing owed", w.LastAttempt, w.Pending(), at)
	}
}

// PendingHooks shares the targets of devices with the same app, commit,
// environment and config (a schedule of many devices keeps one copy), and
// reads each device as HookWorkFor does.
func TestPendingHooksSharesEqualTargetsAndMatchesHookWorkFor(t *testing.T) {
	s, clk := openTestStore(t)
	ctx := context.Background()
	tg := twoDevices(map[string]string{"A": "1"})
	tg.Devices = append(tg.Devices, TargetDevice{UUID: "d3", AppID: 1, Environment: map[string]string{"A": "3"}, Cloud: cloudRec(3)})
	apply(t, s, tg, clk.t)
	if err := s.SetAppCurrentCommit(ctx, 1, "c1"); err != nil {
		t.Fatal(err)
	}
	if _, err := execWrite(s, `UPDATE devices SET reported_commit = 'c0', environment = '{"A":"0"}' WHERE uuid IN ('d1', 'd2')`); err != nil {
		t.Fatal(err)
	}
	p := pendingByUUID(t, s)
	if len(p) != 3 {
		t.Fatalf("got %d pending, want 3: %v", len(p), p)
	}
	for u, w := range p {
		one, err := s.HookWorkFor(ctx, u)
		if err != nil {
			t.Fatal(err)
		}
		if !reflect.DeepEqual(w, one) {
			t.Errorf("%s: PendingHooks read %+v, HookWorkFor %+v", u, w, one)
		}
	}
	d1, d2, d3 := p["d1"], p["d2"], p["d3"]
	if d1.Update != d2.Update || d1.Target != d2.Target {
		t.Error("d1 and d2 have equal targets, not one shared")
	}
	if reflect.ValueOf(d1.ReportedEnvironment).Pointer() != reflect.ValueOf(d2.ReportedEnvironment).Pointer() {
		t.Error("d1 and d2 reported the same environment, not decoded once")
	}
	if d1.ReportedCommit == nil || d1.ReportedCommit != d2.ReportedCommit || *d1.ReportedCommit != "c0" {
		t.Errorf("d1 and d2 reported commit c0: got %v and %v, want one shared c0", d1.ReportedCommit, d2.ReportedCommit)
	}
	if d3.Update == d1.Update || d3.Update.Environment["A"] != "3" {
		t.Errorf("d3's target %+v is d1's or wrong", d3.Update)
	}
}

// Read a page at a time, the pending hooks are those PendingHooks lists, in
// the same order, each once: a page holds at most its limit, skips devices
// owed nothing, and the last one says it is the last.
func TestPendingHooksAfterPagesThroughWhatPendingHooksLists(t *testing.T) {
	s, clk := openTestStore(t)
	ctx := context.Background()
	var tg Target
	tg.Apps = []TargetApp{{ID: 1, Name: "one", Commit: "c1", Image: "r@sha256:aa"}}
	for i := range 10 {
		tg.Devices = append(tg.Devices, TargetDevice{UUID: fmt.Sprintf("d%02d", i), AppID: 1,
			Environment: map[string]string{"A": "1"}, Cloud: cloudRec(int64(i + 1))})
	}
	apply(t, s, tg, clk.t)
	if err := s.SetAppCurrentCommit(ctx, 1, "c1"); err != nil {
		t.Fatal(err)
	}
	// d03, d06 and d09 run their target: owed nothing; so does d07, which
	// reported it in other words. d08 runs it too, but a restart is owed.
	for _, q := range []string{
		`UPDATE devices SET reported_commit = 'c1', environment = '{"A":"1"}' WHERE uuid IN ('d03', 'd06', 'd08', 'd09')`,
		`UPDATE devices SET reported_commit = 'c1', environment = '{ "A" : "1" }', config = '{ }' WHERE uuid = 'd07'`,
		`UPDATE devices SET restart_requested = 1 WHERE uuid = 'd08'`,
	} {
		if _, err := execWrite(s, q); err != nil {
			t.Fatal(err)
		}
	}
	all, err := s.PendingHooks(ctx)
	if err != nil {
		t.Fatal(err)
	}
	var want, got []string
	for _, w := range all {
		want = append(want, w.UUID)
	}
	var after int64
	for pages := 0; ; pages++ {
		if pages > 10 {
			t.Fatalf("no last page after %d pages: %v", pages, got)
		}
		works, next, done, err := s.PendingHooksAfter(ctx, after, 3)
		if err != nil {
			t.Fatal(err)
		}
		if len(works) > 3 {
			t.Fatalf("page of %d, want at most 3", len(works))
		}
		for _, w := range works {
			got = append(got, w.UUID)
		}
		if done {
			break
		}
		if next <= after {
			t.Fatalf("next %d after %d: the page did not move on", next, after)
		}
		after = next
	}
	if strings.Join(want, ",") != "d00,d01,d02,d04,d05,d08" || strings.Join(got, ",") != strings.Join(want, ",") {
		t.Fatalf("pages listed %v, PendingHooks %v; want d00,d01,d02,d04,d05,d08 from both", got, want)
	}
	// What the query passes over is what a read of one device finds owed
	// nothing.
	for _, d := range tg.Devices {
		one, err := s.HookWorkFor(ctx, d.UUID)
		if err != nil {
			t.Fatal(err)
		}
		if listed := slices.Contains(got, d.UUID); listed != one.Pending() {
			t.Errorf("%s: listed %v, but HookWorkFor says owed %v", d.UUID, listed, one.Pending())
		}
	}
	byUUID, err := s.HookWorksOf(ctx, []string{"d01", "d03", "gone"})
	if err != nil {
		t.Fatal(err)
	}
	if w := byUUID["d01"]; w == nil || !w.Pending() || byUUID["d03"] == nil || byUUID["d03"].Pending() || byUUID["gone"] != nil || len(byUUID) != 3 {
		t.Fatalf("HookWorksOf = %v, want d01 owed, d03 owed nothing, gone nil", byUUID)
	}
}

// BenchmarkPendingHooksSettled10k reads the pending hooks of 10,000 devices
// that all run their target: what a rescan of a settled fleet costs.
func BenchmarkPendingHooksSettled10k(b *testing.B) {
	s := seed10k(b)
	if _, err := execWrite(s, `UPDATE devices SET reported_commit = 'c1', in_target = 1, target_config = '{}'`); err != nil {
		b.Fatal(err)
	}
	ctx := context.Background()
	b.ResetTimer()
	for b.Loop() {
		ws, err := s.PendingHooks(ctx)
		if err != nil || len(ws) != 0 {
			b.Fatalf("PendingHooks = %d owed, %v; want none", len(ws), err)
		}
	}
}
