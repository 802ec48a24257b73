package sync

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"math/rand/v2"
	"net/http"
	"net/http/httptest"
	"regexp"
	"strings"
	stdsync "sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/depharness/depharness/api/cloud"
	"github.com/depharness/depharness/internal/promreg/promtest"
	"github.com/depharness/depharness/internal/testkit"
	"github.com/depharness/depharness/proxy/cloudclient"
	"github.com/depharness/depharness/proxy/store"
	"github.com/depharness/depharness/proxy/violation"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"
)

const gwUUID = "gateway0000000000000000000000001"

// testCloud serves the target state (with an ETag) and device lookups.
type testCloud struct {
	srv *httptest.Server

	mu          stdsync.Mutex
	state       any // marshalled as the state body
	status      int // if not 0, the state answers this
	devices     map[string]cloud.Device
	ifNoneMatch []string // If-None-Match of each state request
	lookups     []string
	delay       time.Duration // before answering a state request
	stateTimes  []time.Time   // when each state request arrived
}

func newTestCloud(t *testing.T) *testCloud {
	c := &testCloud{devices: map[string]cloud.Device{}}
	mux := http.NewServeMux()
	mux.HandleFunc("GET "+fmt.Sprintf(cloud.PathStateFmt, gwUUID), func(w http.ResponseWriter, r *http.Request) {
		c.mu.Lock()
		defer c.mu.Unlock()
		c.stateTimes = append(c.stateTimes, time.Now())
		time.Sleep(c.delay)
		c.ifNoneMatch = append(c.ifNoneMatch, r.Header.Get("If-None-Match"))
		if c.status != 0 {
			w.WriteHeader(c.status)
			return
		}
		body, _ := json.Marshal(c.state)
		etag := fmt.Sprintf(`"%x"`, fnv(body))
		w.Header().Set("ETag", etag)
		if r.Header.Get("If-None-Match") == etag {
			w.WriteHeader(http.StatusNotModified)
			return
		}
		w.Header().Set("Content-Type", "application/json")
		w.Write(body)
	})
	mux.HandleFunc("GET "+cloud.PathDevices, func(w http.ResponseWriter, r *http.Request) {
		f := r.URL.Query().Get("$filter")
		uuid := strings.TrimSuffix(strings.TrimPrefix(f, "uuid eq '"), "'")
		c.mu.Lock()
		defer c.mu.Unlock()
		c.lookups = append(c.lookups, uuid)
		list := cloud.DeviceList{D: []cloud.Device{}}
		if d, ok := c.devices[uuid]; ok {
			list.D = append(list.D, d)
		}
		json.NewEncoder(w).Encode(list)
	})
	c.srv = testkit.Server(t, mux)
	return c
}

func fnv(b []byte) uint64 {
	h := uint64(14695981039346656037)
	for _, c := range b {
		h ^= uint64(c)
		h *= 1099511628211
	}
	return h
}

func (c *testCloud) set(state any) {
	c.mu.Lock()
	c.state, c.status = state, 0
	c.mu.Unlock()
}

func (c *testCloud) fail(status int) {
	c.mu.Lock()
	c.status = status
	c.mu.Unlock()
}

func (c *testCloud) addDevice(uuid string, id int64) {
	c.mu.Lock()
	c.devices[uuid] = cloud.Device{ID: id, UUID: uuid, DeviceName: "cloud-" + uuid, DeviceType: "generic-amd64"}
	c.mu.Unlock()
}

func (c *testCloud) client(t *testing.T) *cloudclient.Client {
	cl, err := cloudclient.New(cloudclient.Options{BaseURL: c.srv.URL, GatewayUUID: gwUUID, GatewayID: 1, APIKey: "k"})
	if err != nil {
		t.Fatal(err)
	}
	return cl
}

// testAssets is a scriptable asset cache.
type testAssets struct {
	mu      stdsync.Mutex
	ensured []string // "app/commit" of each Ensure call
	failN   map[string]int
	block   map[string]chan struct{} // Ensure of "app/commit" waits for close (or ctx)
	pruned  []string
	changed chan struct{}
	// permanent makes Ensure of "app/commit" fail with a permanent error.
	permanent map[string]bool
}

// permanentError is a download failure that a retry cannot cure.
type permanentError struct{}

func (permanentError) Error() string   { return "assets: tar exceeds the size limit" }
func (permanentError) Permanent() bool { return true }

func newTestAssets() *testAssets {
	return &testAssets{failN: map[string]int{}, block: map[string]chan struct{}{}, changed: make(chan struct{}, 100)}
}

func (a *testAssets) Ensure(ctx context.Context, appID int64, commit, image string) error {
	key := fmt.Sprintf("%d/%s", appID, commit)
	a.mu.Lock()
	a.ensured = append(a.ensured, key)
	ch := a.block[key]
	fail := a.failN[key] > 0
	if fail {
		a.failN[key]--
	}
	perm := a.permanent[key]
	a.mu.Unlock()
	a.changed <- struct{}{}
	if perm {
		return permanentError{}
	}
	if fail {
		return errors.New("registry unavailable")
	}
	if ch != nil {
		select {
		case <-ch:
		case <-ctx.Done():
			return ctx.Err()
		}
	}
	return nil
}

func (a *testAssets) Prune(appID int64, keep string) error {
	a.mu.Lock()
	a.pruned = append(a.pruned, fmt.Sprintf("%d/%s", appID, keep))
	a.mu.Unlock()
	return nil
}

func (a *testAssets) calls() []string {
	a.mu.Lock()
	defer a.mu.Unlock()
	return append([]string(nil), a.ensured...)
}

const img = "127.0.0.1:5000/app@sha256:" + "0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef"

// goodState is a valid target: app 1 at commit c1 with devices d1 and d2.
func goodState() map[string]any {
	return map[string]any{
		"local": map[string]any{},
		"dependent": map[string]any{
			"apps": map[string]any{
				"1": map[string]any{"name": "one", "parentApp": 9, "config": map[string]any{}, "commit": "c1", "releaseId": 5, "image": img},
			},
			"devices": map[string]any{
				"d1": map[string]any{"name": "dev1", "apps": map[string]any{"1": map[string]any{"config": map[string]any{}, "environment": map[string]any{"A": "1"}}}},
				"d2": map[string]any{"name": "dev2", "apps": map[string]any{"1": map[string]any{"config": map[string]any{}, "environment": map[string]any{}}}},
			},
		},
	}
}

type fixture struct {
	cloud    *testCloud
	assets   *testAssets
	st       *store.Store
	s        *Syncer
	reg      *prometheus.Registry
	onChange atomic.Int32
}

func newFixture(t *testing.T, opts Options) *fixture {
	t.Helper()
	f := &fixture{cloud: newTestCloud(t), assets: newTestAssets(), reg: prometheus.NewRegistry()}
	st, err := store.Open(t.TempDir(), store.Options{})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { st.Close() })
	f.st = st
	f.cloud.addDevice("d1", 101)
	f.cloud.addDevice("d2", 102)
	f.cloud.set(goodState())
	opts.Store, opts.Cloud, opts.Assets, opts.Registerer = st, f.cloud.client(t), f.assets, f.reg
	opts.OnChange = func() { f.onChange.Add(1) }
	if opts.DownloadRetry == 0 {
		opts.DownloadRetry = 20 * time.Millisecond
	}
	opts.Logger = testkit.Logger(t, slog.LevelWarn)
	s, err := New(opts)
	if err != nil {
		t.Fatal(err)
	}
	f.s = s
	return f
}

// run starts the syncer until the test ends.
func (f *fixture) run(t *testing.T) { testkit.Run(t, f.s.Run) }

func (f *fixture) devices(t *testing.T) map[string]store.Device {
	t.Helper()
	return devicesByUUID(t, f.st)
}

// devicesByUUID are the devices in st.
func devicesByUUID(t *testing.T, st *store.Store) map[string]store.Device {
	t.Helper()
	ds, err := st.ListDevices(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	m := map[string]store.Device{}
	for _, d := range ds {
		m[d.UUID] = d
	}
	return m
}

func (f *fixture) currentCommit(t *testing.T, uuid string) string {
	t.Helper()
	tg, ok, err := f.st.DeviceUpdateTarget(context.Background(), uuid)
	if errors.Is(err, store.ErrNotFound) {
		return ""
	}
	if err != nil {
		t.Fatal(err)
	}
	if !ok {
		return ""
	}
	return tg.Commit
}

func TestPollAppliesTheTargetAndLooksUpUnknownDevices(t *testing.T) {
	f := newFixture(t, Options{})
	ctx := context.Background()
	if err := f.s.Poll(ctx); err != nil {
		t.Fatalf("Poll: %v", err)
	}
	ds := f.devices(t)
	if len(ds) != 2 || ds["d1"].CloudID != 101 || ds["d2"].CloudID != 102 || ds["d1"].AppID != 1 || ds["d1"].Name != "dev1" {
		t.Fatalf("got devices %+v, want d1 (cloud 101) and d2 (cloud 102) of app 1", ds)
	}
	if f.onChange.Load() == 0 {
		t.Fatal("OnChange not called after new devices")
	}
	// Second poll: If-None-Match with the ETag, 304, no lookups.
	if err := f.s.Poll(ctx); err != nil {
		t.Fatalf("second Poll: %v", err)
	}
	f.cloud.mu.Lock()
	inm, lookups := f.cloud.ifNoneMatch, len(f.cloud.lookups)
	f.cloud.mu.Unlock()
	if len(inm) != 2 || inm[0] != "" || inm[1] == "" {
		t.Fatalf("got If-None-Match %q, want none then the ETag", inm)
	}
	if lookups != 2 {
		t.Fatalf("got %d device lookups, want 2", lookups)
	}
	promtest.WantValue(t, "not-modified polls", f.s.metrics.polls.WithLabelValues(OutcomeNotModified), 1)
	promtest.CheckHygiene(t, f.reg)
}

func TestAnUnknownDeviceTheCloudDoesNotKnowIsSkippedAndRetried(t *testing.T) {
	f := newFixture(t, Options{})
	f.cloud.mu.Lock()
	delete(f.cloud.devices, "d2")
	f.cloud.mu.Unlock()
	ctx := context.Background()
	if err := f.s.Poll(ctx); err != nil {
		t.Fatal(err)
	}
	if _, ok := f.devices(t)["d2"]; ok {
		t.Fatal("d2 stored without a cloud record")
	}
	f.cloud.addDevice("d2", 102)
	if err := f.s.Poll(ctx); err != nil {
		t.Fatal(err)
	}
	if _, ok := f.devices(t)["d2"]; !ok {
		t.Fatal("d2 not stored on the next poll (the ETag must not short-cut it)")
	}
}

func TestMalformedTargetsAreRejectedWhole(t *testing.T) {
	mutate := func(fn func(apps, devices map[string]any)) map[string]any {
		s := goodState()
		dep := s["dependent"].(map[string]any)
		fn(dep["apps"].(map[string]any), dep["devices"].(map[string]any))
		// A change that would otherwise show: d2 leaves the target.
		delete(dep["devices"].(map[string]any), "d2")
		return s
	}
	app := func(apps map[string]any) map[string]any { return apps["1"].(map[string]any) }
	tests := []struct {
		name  string
		state any
	}{
		{"an app id that is not a number", mutate(func(a, d map[string]any) { a["x"] = map[string]any{"name": "x"} })},
		{"an app id of zero", mutate(func(a, d map[string]any) { a["0"] = map[string]any{"name": "x"} })},
		{"a negative app id", mutate(func(a, d map[string]any) { a["-3"] = map[string]any{"name": "x"} })},
		{"an app id with a leading zero", mutate(func(a, d map[string]any) { a["01"] = map[string]any{"name": "x"} })},
		{"an image that is not a digest reference", mutate(func(a, d map[string]any) { app(a)["image"] = "127.0.0.1:5000/app:latest" })},
		{"a commit without an image", mutate(func(a, d map[string]any) { delete(app(a), "image") })},
		{"an image without a commit", mutate(func(a, d map[string]any) { delete(app(a), "commit") })},
		{"a commit with a path separator", mutate(func(a, d map[string]any) { app(a)["commit"] = "../c1" })},
		{"a device whose app is not in the target", mutate(func(a, d map[string]any) {
			d["d1"].(map[string]any)["apps"] = map[string]any{"7": map[string]any{}}
		})},
		{"a device with two apps", mutate(func(a, d map[string]any) {
			a["2"] = map[string]any{"name": "two"}
			d["d1"].(map[string]any)["apps"] = map[string]any{"1": map[string]any{}, "2": map[string]any{}}
		})},
		{"a device with no app", mutate(func(a, d map[string]any) { d["d1"].(map[string]any)["apps"] = map[string]any{} })},
		{"a device uuid with a slash", mutate(func(a, d map[string]any) {
			d["d1/x"] = map[string]any{"apps": map[string]any{"1": map[string]any{}}}
		})},
		{"a negative restart counter", mutate(func(a, d map[string]any) { d["d1"].(map[string]any)["restart"] = -1 })},
		{"a body that is not a target state", []int{1, 2}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			f := newFixture(t, Options{})
			ctx := context.Background()
			if err := f.s.Poll(ctx); err != nil {
				t.Fatal(err)
			}
			f.cloud.set(tc.state)
			err := f.s.Poll(ctx)
			if err == nil {
				t.Fatal("got nil error for a malformed target, want rejection")
			}
			ds := f.devices(t)
			if len(ds) != 2 || ds["d2"].MarkedForDelete {
				t.Fatalf("got devices %+v after a rejected target, want d1 and d2 unchanged", ds)
			}
			rejected := testutil.ToFloat64(f.s.metrics.rejected)
			polls := testutil.ToFloat64(f.s.metrics.polls.WithLabelValues(OutcomeRejected)) + testutil.ToFloat64(f.s.metrics.polls.WithLabelValues(OutcomeError))
			if polls != 1 {
				t.Fatalf("got %v failed polls counted, want 1 (rejected %v)", polls, rejected)
			}
		})
	}
}

func TestCloudFailureKeepsTheStore(t *testing.T) {
	f := newFixture(t, Options{})
	ctx := context.Background()
	if err := f.s.Poll(ctx); err != nil {
		t.Fatal(err)
	}
	f.cloud.fail(http.StatusServiceUnavailable)
	if err := f.s.Poll(ctx); err == nil {
		t.Fatal("got nil error while the cloud fails, want an error")
	}
	if ds := f.devices(t); len(ds) != 2 || ds["d1"].MarkedForDelete || ds["d2"].MarkedForDelete {
		t.Fatalf("got devices %+v during a cloud outage, want both unchanged", ds)
	}
	promtest.WantValue(t, "error polls", f.s.metrics.polls.WithLabelValues(OutcomeError), 1)
}

func TestReleaseBecomesCurrentOnlyOnceDownloaded(t *testing.T) {
	f := newFixture(t, Options{PollInterval: time.Hour})
	release := make(chan struct{})
	f.assets.block["1/c1"] = release
	f.run(t)
	<-f.assets.changed // Ensure(1, c1) started
	if c := f.currentCommit(t, "d1"); c != "" {
		t.Fatalf("got current commit %q while downloading, want none", c)
	}
	promtest.WantValue(t, "apps downloading", f.s.metrics.downloading, 1)
	before := f.onChange.Load()
	close(release)
	testkit.Eventually(t, "commit c1 current", func() bool { return f.currentCommit(t, "d1") == "c1" })
	testkit.Eventually(t, "OnChange after the download", func() bool { return f.onChange.Load() > before })
	f.assets.mu.Lock()
	pruned := append([]string(nil), f.assets.pruned...)
	f.assets.mu.Unlock()
	if len(pruned) != 1 || pruned[0] != "1/c1" {
		t.Fatalf("got prunes %v, want [1/c1]", pruned)
	}
}

func TestFailedDownloadIsRetried(t *testing.T) {
	f := newFixture(t, Options{PollInterval: time.Hour})
	f.assets.failN["1/c1"] = 2
	f.run(t)
	testkit.Eventually(t, "commit c1 current", func() bool { return f.currentCommit(t, "d1") == "c1" })
	if n := len(f.assets.calls()); n != 3 {
		t.Fatalf("got %d Ensure calls, want 3 (two failures, one success)", n)
	}
	promtest.WantValue(t, "failed downloads counted", f.s.metrics.downloads.WithLabelValues(OutcomeError), 2)
}

func TestAPermanentDownloadFailureIsNotRetriedUntilTheTargetChanges(t *testing.T) {
	f := newFixture(t, Options{PollInterval: 20 * time.Millisecond})
	f.assets.mu.Lock()
	f.assets.permanent = map[string]bool{"1/c1": true}
	f.assets.mu.Unlock()
	f.run(t)
	<-f.assets.changed // Ensure(1, c1) failed
	// Many polls and retry intervals (20 ms each) later, no other call.
	time.Sleep(500 * time.Millisecond)
	if calls := f.assets.calls(); len(calls) != 1 {
		t.Fatalf("got Ensure calls %v, want one (a permanent failure is not retried)", calls)
	}
	promtest.WantValue(t, "failed downloads counted", f.s.metrics.downloads.WithLabelValues(OutcomeError), 1)
	s := goodState()
	s["dependent"].(map[string]any)["apps"].(map[string]any)["1"].(map[string]any)["commit"] = "c2"
	f.cloud.set(s)
	testkit.Eventually(t, "commit c2 current", func() bool { return f.currentCommit(t, "d1") == "c2" })
	if calls := f.assets.calls(); len(calls) != 2 || calls[1] != "1/c2" {
		t.Fatalf("got Ensure calls %v, want 1/c1 then 1/c2", calls)
	}
}

func TestNewerCommitSupersedesTheDownloadInFlight(t *testing.T) {
	f := newFixture(t, Options{PollInterval: time.Hour})
	f.assets.block["1/c1"] = make(chan struct{}) // never completes
	f.run(t)
	<-f.assets.changed
	s := goodState()
	s["dependent"].(map[string]any)["apps"].(map[string]any)["1"].(map[string]any)["commit"] = "c2"
	f.cloud.set(s)
	f.s.Trigger()
	testkit.Eventually(t, "commit c2 current", func() bool { return f.currentCommit(t, "d1") == "c2" })
	calls := f.assets.calls()
	if len(calls) != 2 || calls[1] != "1/c2" {
		t.Fatalf("got Ensure calls %v, want 1/c1 then 1/c2", calls)
	}
}

func TestTriggerPollsAtOnce(t *testing.T) {
	f := newFixture(t, Options{PollInterval: time.Hour})
	f.run(t)
	testkit.Eventually(t, "first poll", func() bool { return len(f.devices(t)) == 2 })
	s := goodState()
	s["dependent"].(map[string]any)["devices"].(map[string]any)["d3"] = map[string]any{"name": "dev3", "apps": map[string]any{"1": map[string]any{}}}
	f.cloud.addDevice("d3", 103)
	f.cloud.set(s)
	f.s.Trigger()
	testkit.Eventually(t, "d3 stored after Trigger", func() bool { _, ok := f.devices(t)["d3"]; return ok })
}

// After a poll that took T, a burst of Trigger calls polls once, no sooner
// than triggerSpacing × T after that poll ended.
func TestTriggersRightAfterAPollWaitSpacedByItsDuration(t *testing.T) {
	f := newFixture(t, Options{PollInterval: time.Hour})
	const took = 100 * time.Millisecond
	f.cloud.mu.Lock()
	f.cloud.delay = took
	f.cloud.mu.Unlock()
	f.run(t)
	testkit.Eventually(t, "first poll", func() bool { return len(f.devices(t)) == 2 })
	for range 5 {
		f.s.Trigger()
	}
	states := func() []time.Time {
		f.cloud.mu.Lock()
		defer f.cloud.mu.Unlock()
		return append([]time.Time(nil), f.cloud.stateTimes...)
	}
	testkit.Eventually(t, "the triggered poll", func() bool { return len(states()) >= 2 })
	got := states()
	// The first poll took at least took, and ended at least took after its
	// request arrived.
	if gap, want := got[1].Sub(got[0]), (triggerSpacing+1)*took; gap < want {
		t.Errorf("the triggered poll's request came %s after the first one's, want at least %s", gap, want)
	}
	time.Sleep((triggerSpacing + 1) * took)
	if n := len(states()); n != 2 {
		t.Errorf("%d polls after a burst of 5 triggers, want 2 (the first and one triggered)", n)
	}
}

func TestRemovedDeviceIsMarkedAndReAddedUnmarked(t *testing.T) {
	f := newFixture(t, Options{})
	ctx := context.Background()
	if err := f.s.Poll(ctx); err != nil {
		t.Fatal(err)
	}
	time.Sleep(2 * time.Millisecond) // the next poll starts after d2 was stored (ms clock)
	s := goodState()
	delete(s["dependent"].(map[string]any)["devices"].(map[string]any), "d2")
	f.cloud.set(s)
	if err := f.s.Poll(ctx); err != nil {
		t.Fatal(err)
	}
	if !f.devices(t)["d2"].MarkedForDelete {
		t.Fatal("d2 not marked after leaving the target")
	}
	f.cloud.set(goodState())
	if err := f.s.Poll(ctx); err != nil {
		t.Fatal(err)
	}
	if f.devices(t)["d2"].MarkedForDelete {
		t.Fatal("d2 still marked after being re-added")
	}
}

// A device of the last target is not asked about again (neither the store
// nor the cloud); one the store removed once it left a target (its delete
// hook answered), and that a later target lists again, is looked up in the
// cloud and stored anew.
func TestDevicesOfTheLastTargetAreNotLookedUpAgainButRemovedOnesAre(t *testing.T) {
	f := newFixture(t, Options{})
	ctx := context.Background()
	lookups := func() []string {
		f.cloud.mu.Lock()
		defer f.cloud.mu.Unlock()
		return append([]string(nil), f.cloud.lookups...)
	}
	if err := f.s.Poll(ctx); err != nil {
		t.Fatal(err)
	}
	time.Sleep(2 * time.Millisecond) // the next poll starts after d2 was stored (ms clock)
	s := goodState()
	delete(s["dependent"].(map[string]any)["devices"].(map[string]any), "d2")
	s["dependent"].(map[string]any)["devices"].(map[string]any)["d1"].(map[string]any)["name"] = "renamed"
	f.cloud.set(s)
	if err := f.s.Poll(ctx); err != nil {
		t.Fatal(err)
	}
	if got := fmt.Sprint(lookups()); got != "[d1 d2]" && got != "[d2 d1]" {
		t.Fatalf("lookups after a changed target of known devices: %s, want d1 and d2 once (first poll)", got)
	}
	if removed, err := f.st.RemoveDeleted(ctx, "d2"); err != nil || !removed {
		t.Fatalf("RemoveDeleted(d2) = %v, %v", removed, err)
	}
	f.cloud.set(goodState())
	if err := f.s.Poll(ctx); err != nil {
		t.Fatal(err)
	}
	if got := lookups(); len(got) != 3 || got[2] != "d2" {
		t.Fatalf("lookups after d2 came back: %v, want d2 looked up again", got)
	}
	if d, ok := f.devices(t)["d2"]; !ok || d.MarkedForDelete || d.CloudID != 102 {
		t.Fatalf("d2 after it came back: %+v (stored %v), want stored unmarked with cloud id 102", d, ok)
	}
}

func TestViolations(t *testing.T) {
	t.Run("state-no-etag polls without If-None-Match", func(t *testing.T) {
		f := newFixture(t, Options{Violations: violation.Set{"state-no-etag": true}})
		for range 2 {
			if err := f.s.Poll(context.Background()); err != nil {
				t.Fatal(err)
			}
		}
		f.cloud.mu.Lock()
		defer f.cloud.mu.Unlock()
		for _, h := range f.cloud.ifNoneMatch {
			if h != "" {
				t.Fatalf("got If-None-Match %q, want none", h)
			}
		}
	})
	t.Run("hook-update-before-download makes the commit current before the download", func(t *testing.T) {
		f := newFixture(t, Options{PollInterval: time.Hour, Violations: violation.Set{"hook-update-before-download": true}})
		f.assets.block["1/c1"] = make(chan struct{})
		f.run(t)
		testkit.Eventually(t, "commit c1 current while downloading", func() bool { return f.currentCommit(t, "d1") == "c1" })
	})
	t.Run("cloud-get-skipped never stores devices provisioned elsewhere", func(t *testing.T) {
		f := newFixture(t, Options{Violations: violation.Set{"cloud-get-skipped": true}})
		if err := f.s.Poll(context.Background()); err != nil {
			t.Fatal(err)
		}
		if n := len(f.devices(t)); n != 0 {
			t.Fatalf("got %d devices, want 0", n)
		}
	})
}

func TestRunRetriesWhileTheCloudIsDown(t *testing.T) {
	f := newFixture(t, Options{PollInterval: 20 * time.Millisecond})
	f.cloud.fail(http.StatusServiceUnavailable)
	f.run(t)
	testkit.Eventually(t, "two failed polls", func() bool {
		return testutil.ToFloat64(f.s.metrics.polls.WithLabelValues(OutcomeError)) >= 2
	})
	f.cloud.set(goodState())
	testkit.Eventually(t, "devices stored once the cloud is back", func() bool { return len(f.devices(t)) == 2 })
}

func TestTargetViolations(t *testing.T) {
	removeD2 := func(s map[string]any) { delete(s["dependent"].(map[string]any)["devices"].(map[string]any), "d2") }
	tests := []struct {
		name  string
		v     string
		steps []func(map[string]any) // states polled after the first, good one
		check func(t *testing.T, ds map[string]store.Device)
	}{
		{
			name:  "delete-not-marked leaves a removed device unmarked",
			v:     "delete-not-marked",
			steps: []func(map[string]any){removeD2},
			check: func(t *testing.T, ds map[string]store.Device) {
				if ds["d2"].MarkedForDelete {
					t.Fatal("d2 marked, want unmarked under the violation")
				}
			},
		},
		{
			name:  "readded-stays-deleted keeps a re-added device marked",
			v:     "readded-stays-deleted",
			steps: []func(map[string]any){removeD2, func(map[string]any) {}},
			check: func(t *testing.T, ds map[string]store.Device) {
				if !ds["d2"].MarkedForDelete {
					t.Fatal("d2 unmarked, want it to stay marked under the violation")
				}
			},
		},
		{
			name: "app-removal-silent drops the devices of a removed app",
			v:    "app-removal-silent",
			steps: []func(map[string]any){func(s map[string]any) {
				dep := s["dependent"].(map[string]any)
				dep["apps"] = map[string]any{}
				dep["devices"] = map[string]any{}
			}},
			check: func(t *testing.T, ds map[string]store.Device) {
				if len(ds) != 0 {
					t.Fatalf("got %d devices, want none (removed without a delete hook)", len(ds))
				}
			},
		},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			f := newFixture(t, Options{Violations: violation.Set{tc.v: true}})
			ctx := context.Background()
			if err := f.s.Poll(ctx); err != nil {
				t.Fatal(err)
			}
			for _, step := range tc.steps {
				time.Sleep(2 * time.Millisecond) // the next poll starts after the devices were stored (ms clock)
				s := goodState()
				step(s)
				f.cloud.set(s)
				if err := f.s.Poll(ctx); err != nil {
					t.Fatal(err)
				}
			}
			tc.check(t, f.devices(t))
		})
	}
}

// validUUID accepts exactly what ^[A-Za-z0-9]{1,128}$ matches.
func TestValidUUIDIsTheAlphanumericPattern(t *testing.T) {
	re := regexp.MustCompile(`^[A-Za-z0-9]{1,128}$`)
	rng := rand.New(rand.NewPCG(7, 8))
	alphabet := "aZ09-_ /.é\x00\n"
	cases := []string{"", strings.Repeat("a", 128), strings.Repeat("a", 129), "abc\n", "ABCxyz019"}
	for range 5000 {
		b := make([]byte, rng.IntN(140))
		for i := range b {
			if rng.IntN(20) == 0 {
				b[i] = alphabet[rng.IntN(len(alphabet))]
			} else {
				b[i] = "abcXYZ0189"[rng.IntN(10)]
			}
		}
		cases = append(cases, string(b))
	}
	for _, c := range cases {
		if got, want := validUUID(c), re.MatchString(c); got != want {
			t.Errorf("validUUID(%q) = %v, want %v", c, got, want)
		}
	}
}
