package outbox

import (
	"bufio"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"math/rand/v2"
	"net/http"
	"regexp"
	"strconv"
	"strings"
	"sync"
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

const gwUUID = "gateway0123456789abcdef012345678"

// testCloud is a cloud serving PATCH /v6/device(<id>) and the log stream,
// recording what it took, with knobs to fail.
type testCloud struct {
	mu sync.Mutex
	// down answers 503 to everything while set.
	down bool
	// patchStatus, if set for a device id, is the answer to its PATCH.
	patchStatus map[int64]int
	// rejectLog, if set, makes a log batch holding that message answer 400.
	rejectLog string
	patches   []string // "<id> <body>"
	logs      []cloud.LogLine
	requests  int
}

var patchPath = regexp.MustCompile(`^/v6/device\((\d+)\)$`)

func (c *testCloud) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.requests++
	if c.down {
		http.Error(w, "down", http.StatusServiceUnavailable)
		return
	}
	body, _ := io.ReadAll(r.Body)
	switch {
	case r.Method == "PATCH" && patchPath.MatchString(r.URL.Path):
		id, _ := strconv.ParseInt(patchPath.FindStringSubmatch(r.URL.Path)[1], 10, 64)
		if code := c.patchStatus[id]; code != 0 {
			http.Error(w, "refused", code)
			return
		}
		c.patches = append(c.patches, fmt.Sprintf("%d %s", id, body))
	case r.Method == "POST" && r.URL.Path == fmt.Sprintf(cloud.PathLogStreamFmt, gwUUID):
		var batch []cloud.LogLine
		sc := bufio.NewScanner(strings.NewReader(string(body)))
		for sc.Scan() {
			var l cloud.LogLine
			if err := json.Unmarshal(sc.Bytes(), &l); err != nil {
				http.Error(w, "bad line", 400)
				return
			}
			if c.rejectLog != "" && l.Message == c.rejectLog {
				http.Error(w, "bad line", 400)
				return
			}
			batch = append(batch, l)
		}
		c.logs = append(c.logs, batch...)
	default:
		http.Error(w, "unexpected "+r.Method+" "+r.URL.Path, http.StatusTeapot)
		return
	}
	w.WriteHeader(http.StatusOK)
}

func (c *testCloud) set(fn func(c *testCloud)) {
	c.mu.Lock()
	defer c.mu.Unlock()
	fn(c)
}

func (c *testCloud) Patches() []string {
	c.mu.Lock()
	defer c.mu.Unlock()
	return append([]string(nil), c.patches...)
}

func (c *testCloud) LogMessages() []string {
	c.mu.Lock()
	defer c.mu.Unlock()
	var out []string
	for _, l := range c.logs {
		out = append(out, l.UUID+":"+l.Message)
	}
	return out
}

// env is a store, a test cloud behind a real cloud client, and an outbox.
type env struct {
	t     *testing.T
	store *store.Store
	cloud *testCloud
	ob    *Outbox
	reg   *prometheus.Registry
	dir   string
}

func newEnv(t *testing.T, mods ...func(*Options)) *env {
	t.Helper()
	e := &env{t: t, cloud: &testCloud{patchStatus: map[int64]int{}}, reg: prometheus.NewRegistry(), dir: t.TempDir()}
	srv := testkit.Server(t, e.cloud)
	var err error
	if e.store, err = store.Open(e.dir, store.Options{KeepReportsUnmerged: true}); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { e.store.Close() })
	cc, err := cloudclient.New(cloudclient.Options{BaseURL: srv.URL, GatewayUUID: gwUUID, GatewayID: 1, APIKey: "k"})
	if err != nil {
		t.Fatal(err)
	}
	opts := Options{
		Store: e.store, Cloud: cc, RetryMin: 5 * time.Millisecond, RetryMax: 40 * time.Millisecond,
		IdleCheck: time.Hour, Registerer: e.reg, Rand: rand.New(rand.NewPCG(1, 2)),
		Logger: testkit.Logger(t, slog.LevelDebug),
	}
	for _, m := range mods {
		m(&opts)
	}
	if e.ob, err = New(opts); err != nil {
		t.Fatal(err)
	}
	for i, u := range []string{"dev-a", "dev-b"} {
		if _, err := e.store.InsertProvisioned(context.Background(), store.NewDevice{UUID: u, AppID: 1, DeviceType: "t", CloudID: int64(11 + i)}); err != nil {
			t.Fatal(err)
		}
	}
	return e
}

// run starts the outbox until the test ends; Run must return nil promptly.
func (e *env) run() { testkit.Run(e.t, e.ob.Run) }

func (e *env) report(uuid, status string) {
	e.t.Helper()
	if _, _, err := e.store.ApplyReport(context.Background(), uuid, store.Report{Status: &status}); err != nil {
		e.t.Fatal(err)
	}
	e.ob.Notify()
}

func (e *env) logLine(uuid, msg string) {
	e.t.Helper()
	b, _ := json.Marshal(cloud.LogLine{UUID: uuid, Message: msg, Timestamp: 1})
	if _, err := e.store.AppendLog(context.Background(), uuid, b, 0); err != nil {
		e.t.Fatal(err)
	}
	e.ob.Notify()
}

func (e *env) requests() int {
	e.cloud.mu.Lock()
	defer e.cloud.mu.Unlock()
	return e.cloud.requests
}

func (e *env) depth(kind store.OutboxKind) int64 {
	n, err := e.store.OutboxDepth(context.Background(), kind)
	if err != nil {
		e.t.Fatal(err)
	}
	return n
}

func patchWant(id int, status string) string { return fmt.Sprintf(`%d {"status":"%s"}`, id, status) }

// perDevice splits "<id> <body>" records by device id, keeping their order.
func perDevice(records []string) map[string][]string {
	out := map[string][]string{}
	for _, r := range records {
		id, _, _ := strings.Cut(r, " ")
		out[id] = append(out[id], r)
	}
	return out
}

func TestPatchesAreDeliveredInOrderPerDeviceAcrossAnOutage(t *testing.T) {
	e := newEnv(t)
	e.cloud.set(func(c *testCloud) { c.down = true })
	e.run()
	var want []string
	for i := 0; i < 10; i++ {
		u, id := "dev-a", 11
		if i%3 == 0 {
			u, id = "dev-b", 12
		}
		e.report(u, fmt.Sprint("s", i))
		want = append(want, patchWant(id, fmt.Sprint("s", i)))
	}
	testkit.Eventually(t, "two failed rounds", func() bool {
		return testutil.ToFloat64(e.ob.metrics.retries.WithLabelValues(string(store.OutboxPatch))) >= 2
	})
	if got := e.cloud.Patches(); len(got) != 0 {
		t.Fatalf("delivered during the outage: %v", got)
	}
	if d := e.depth(store.OutboxPatch); d != 10 {
		t.Fatalf("depth during the outage = %d, want 10", d)
	}
	e.cloud.set(func(c *testCloud) { c.down = false })
	testkit.Eventually(t, "all patches", func() bool { return len(e.cloud.Patches()) >= 10 })
	if got, want := perDevice(e.cloud.Patches()), perDevice(want); fmt.Sprint(got) != fmt.Sprint(want) {
		t.Fatalf("cloud got, per device,\n%v\nwant\n%v", got, want)
	}
	testkit.Eventually(t, "an empty outbox", func() bool { return e.depth(store.OutboxPatch) == 0 })
	// Counted just after the rows are deleted.
	testkit.Eventually(t, "10 counted as delivered", func() bool {
		return testutil.ToFloat64(e.ob.metrics.delivered.WithLabelValues(string(store.OutboxPatch))) >= 10
	})
	promtest.WantValue(t, "delivered", e.ob.metrics.delivered.WithLabelValues(string(store.OutboxPatch)), 10)
	testkit.Eventually(t, "the depth gauge at 0", func() bool {
		return testutil.ToFloat64(e.ob.metrics.depth.WithLabelValues(string(store.OutboxPatch))) == 0
	})
}

func TestLogsAreDeliveredInOrderInBatchesAcrossAnOutage(t *testing.T) {
	e := newEnv(t, func(o *Options) { o.LogBatch = 3 })
	e.cloud.set(func(c *testCloud) { c.down = true })
	e.run()
	var want []string
	for i := 0; i < 10; i++ {
		u := []string{"dev-a", "dev-b"}[i%2]
		e.logLine(u, fmt.Sprint("m", i))
		want = append(want, fmt.Sprintf("%s:m%d", u, i))
	}
	testkit.Eventually(t, "a failed round", func() bool {
		return testutil.ToFloat64(e.ob.metrics.retries.WithLabelValues(string(store.OutboxLog))) >= 1
	})
	e.cloud.set(func(c *testCloud) { c.down = false })
	testkit.Eventually(t, "all lines", func() bool { return len(e.cloud.LogMessages()) >= 10 })
	testkit.Eventually(t, "an empty outbox", func() bool { return e.depth(store.OutboxLog) == 0 })
	if got := e.cloud.LogMessages(); fmt.Sprint(got) != fmt.Sprint(want) {
		t.Fatalf("cloud got\n%v\nwant\n%v (each once, in order)", got, want)
	}
}

func TestDeliveryResumesAfterARestartOnTheSameData(t *testing.T) {
	e := newEnv(t)
	e.report("dev-a", "before-restart")
	e.logLine("dev-b", "kept")
	e.store.Close()
	st, err := store.Open(e.dir, store.Options{KeepReportsUnmerged: true})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { st.Close() })
	e.store = st
	e.ob.opts.Store = st
	e.run()
	testkit.Eventually(t, "the patch and the line", func() bool {
		return len(e.cloud.Patches()) == 1 && len(e.cloud.LogMessages()) == 1
	})
	if got := e.cloud.Patches()[0]; got != patchWant(11, "before-restart") {
		t.Errorf("patch = %s", got)
	}
}

func TestARejectedPatchIsDroppedAndTheQueueMovesOn(t *testing.T) {
	e := newEnv(t)
	e.cloud.set(func(c *testCloud) { c.patchStatus[11] = http.StatusNotFound })
	e.report("dev-a", "lost")
	e.report("dev-b", "after")
	e.run()
	testkit.Eventually(t, "the later patch", func() bool { return len(e.cloud.Patches()) == 1 })
	if got := e.cloud.Patches()[0]; got != patchWant(12, "after") {
		t.Errorf("delivered %s, want the patch of dev-b", got)
	}
	testkit.Eventually(t, "an empty outbox", func() bool { return e.depth(store.OutboxPatch) == 0 })
	testkit.Eventually(t, "the drop counted", func() bool {
		return testutil.ToFloat64(e.ob.metrics.dropped.WithLabelValues(string(store.OutboxPatch), "rejected")) >= 1
	})
	promtest.WantValue(t, "dropped", e.ob.metrics.dropped.WithLabelValues(string(store.OutboxPatch), "rejected"), 1)
}

func TestAnUnauthorizedPatchIsRetriedNotDropped(t *testing.T) {
	e := newEnv(t)
	e.cloud.set(func(c *testCloud) { c.patchStatus[11] = http.StatusUnauthorized })
	e.report("dev-a", "s")
	e.run()
	testkit.Eventually(t, "two failed rounds", func() bool {
		return testutil.ToFloat64(e.ob.metrics.retries.WithLabelValues(string(store.OutboxPatch))) >= 2
	})
	if d := e.depth(store.OutboxPatch); d != 1 {
		t.Fatalf("depth = %d, want 1 (kept for retry)", d)
	}
	e.cloud.set(func(c *testCloud) { delete(c.patchStatus, 11) })
	testkit.Eventually(t, "the patch", func() bool { return len(e.cloud.Patches()) == 1 })
}

func TestARejectedLogLineIsFoundAndDroppedAlone(t *testing.T) {
	e := newEnv(t, func(o *Options) { o.LogBatch = 8 })
	e.cloud.set(func(c *testCloud) { c.rejectLog = "bad" })
	var want []string
	for i := 0; i < 7; i++ {
		msg := fmt.Sprint("m", i)
		if i == 4 {
			msg = "bad"
		} else {
			want = append(want, "dev-a:"+msg)
		}
		e.logLine("dev-a", msg)
	}
	e.run()
	testkit.Eventually(t, "an empty outbox", func() bool { return e.depth(store.OutboxLog) == 0 })
	if got := e.cloud.LogMessages(); fmt.Sprint(got) != fmt.Sprint(want) {
		t.Fatalf("cloud got %v, want %v", got, want)
	}
	testkit.Eventually(t, "the drop counted", func() bool {
		return testutil.ToFloat64(e.ob.metrics.dropped.WithLabelValues(string(store.OutboxLog), "refused_400")) >= 1
	})
	promtest.WantValue(t, "dropped", e.ob.metrics.dropped.WithLabelValues(string(store.OutboxLog), "refused_400"), 1)
}

func TestNotifyWakesAnIdleOutbox(t *testing.T) {
	e := newEnv(t) // IdleCheck is an hour: only Notify can wake it
	e.run()
	testkit.Eventually(t, "the idle outbox to have looked once", func() bool {
		return testutil.ToFloat64(e.ob.metrics.depth.WithLabelValues(string(store.OutboxPatch))) == 0 &&
			testutil.CollectAndCount(e.ob.metrics.depth) == 2
	})
	e.report("dev-a", "woken")
	testkit.Eventually(t, "the patch", func() bool { return len(e.cloud.Patches()) == 1 })
}

func TestRunStopsPromptlyDuringABackoff(t *testing.T) {
	e := newEnv(t, func(o *Options) { o.RetryMin, o.RetryMax = time.Hour, time.Hour })
	e.cloud.set(func(c *testCloud) { c.down = true })
	e.report("dev-a", "s")
	r := testkit.Run(t, e.ob.Run)
	testkit.Eventually(t, "a failed round", func() bool {
		return testutil.ToFloat64(e.ob.metrics.retries.WithLabelValues(string(store.OutboxPatch))) >= 1
	})
	r.Stop()
}

func TestBackoffGrowsWithJitterUpToTheCap(t *testing.T) {
	o, err := New(Options{Store: &store.Store{}, Cloud: nopCloud{}, RetryMin: 100 * time.Millisecond, RetryMax: time.Second, Rand: rand.New(rand.NewPCG(3, 4))})
	if err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		n    int
		base time.Duration
	}{{1, 100 * time.Millisecond}, {2, 200 * time.Millisecond}, {4, 800 * time.Millisecond}, {5, time.Second}, {60, time.Second}} {
		for i := 0; i < 20; i++ {
			if d := o.backoff(tc.n); d < tc.base/2 || d > tc.base {
				t.Fatalf("backoff(%d) = %v, want within [%v, %v]", tc.n, d, tc.base/2, tc.base)
			}
		}
	}
}

type nopCloud struct{}

func (nopCloud) PatchDevice(context.Context, int64, cloud.DevicePatch) error { return nil }
func (nopCloud) SendLogs(context.Context, []cloud.LogLine) error             { return nil }

func TestViolations(t *testing.T) {
	// keptOnOutage queues a row of kind while the cloud is down: the
	// contract holds if the row is kept for a retry, not dropped.
	keptOnOutage := func(kind store.OutboxKind, queue func(e *env)) func(t *testing.T, e *env) (bool, string) {
		return func(t *testing.T, e *env) (bool, string) {
			e.cloud.set(func(c *testCloud) { c.down = true })
			queue(e)
			e.run()
			// Kept for a retry (a second request) or dropped (depth 0).
			testkit.Eventually(t, "a retry or a drop", func() bool { return e.requests() >= 2 || e.depth(kind) == 0 })
			return e.depth(kind) == 1, fmt.Sprint("depth ", e.depth(kind))
		}
	}
	// twoReports reports dev-a twice and waits for both patches.
	twoReports := func(t *testing.T, e *env) {
		e.report("dev-a", "first")
		e.report("dev-a", "second")
		e.run()
		testkit.Eventually(t, "both patches", func() bool { return len(e.cloud.Patches()) == 2 })
	}
	for _, tc := range []struct {
		name string
		// contract runs a scenario and reports whether the contract held.
		contract func(t *testing.T, e *env) (bool, string)
	}{
		{"put-lost-on-outage", keptOnOutage(store.OutboxPatch, func(e *env) { e.report("dev-a", "s") })},
		{"logs-lost-on-outage", keptOnOutage(store.OutboxLog, func(e *env) { e.logLine("dev-a", "m") })},
		{"put-commit-not-sent", func(t *testing.T, e *env) (bool, string) {
			commit, status := "abc", "s"
			for _, r := range []struct {
				uuid string
				rep  store.Report
			}{{"dev-a", store.Report{Commit: &commit}}, {"dev-b", store.Report{Status: &status, Commit: &commit}}} {
				if _, _, err := e.store.ApplyReport(context.Background(), r.uuid, r.rep); err != nil {
					t.Fatal(err)
				}
			}
			e.run()
			e.ob.Notify()
			testkit.Eventually(t, "the patches settled", func() bool { return e.depth(store.OutboxPatch) == 0 })
			got := perDevice(e.cloud.Patches())
			return strings.Contains(fmt.Sprint(got["11"]), `"is_on__commit":"abc"`) &&
				strings.Contains(fmt.Sprint(got["12"]), `"is_on__commit":"abc"`), fmt.Sprint(got)
		}},
		{"outbox-reorder", func(t *testing.T, e *env) (bool, string) {
			twoReports(t, e)
			got := e.cloud.Patches()
			return got[0] == patchWant(11, "first"), fmt.Sprint(got)
		}},
		{"outbox-late-older-patch", func(t *testing.T, e *env) (bool, string) {
			twoReports(t, e)
			time.Sleep(lateDelay + 500*time.Millisecond)
			got := e.cloud.Patches()
			return len(got) == 2 && got[1] == patchWant(11, "second"), fmt.Sprint(got)
		}},
		{"logs-refused-batch-dropped", func(t *testing.T, e *env) (bool, string) {
			e.cloud.set(func(c *testCloud) { c.rejectLog = "bad" })
			e.logLine("dev-a", "a")
			e.logLine("dev-a", "bad")
			e.logLine("dev-a", "c")
			e.run()
			testkit.Eventually(t, "the batch settled", func() bool { return e.depth(store.OutboxLog) == 0 })
			got := e.cloud.LogMessages()
			return fmt.Sprint(got) == "[dev-a:a dev-a:c]", fmt.Sprint(got)
		}},
		{"logs-resent-after-success", func(t *testing.T, e *env) (bool, string) {
			e.logLine("dev-a", "once")
			e.run()
			testkit.Eventually(t, "the line", func() bool { return len(e.cloud.LogMessages()) == 1 })
			time.Sleep(lateDelay + 500*time.Millisecond)
			got := e.cloud.LogMessages()
			return len(got) == 1, fmt.Sprint(got)
		}},
	} {
		t.Run(tc.name+" breaks "+violation.Known[tc.name].Clause, func(t *testing.T) {
			if ok, got := tc.contract(t, newEnv(t)); !ok {
				t.Fatalf("without the violation: contract broken: %s", got)
			}
			with := newEnv(t, func(o *Options) { o.Violations = violation.Set{tc.name: true} })
			if ok, got := tc.contract(t, with); ok {
				t.Fatalf("with the violation: contract still holds: %s", got)
			}
		})
	}
}

func TestMetricsLintClean(t *testing.T) {
	e := newEnv(t)
	e.report("dev-a", "s")
	e.logLine("dev-a", "m")
	e.run()
	testkit.Eventually(t, "delivery", func() bool { return len(e.cloud.Patches()) == 1 && len(e.cloud.LogMessages()) == 1 })
	promtest.CheckHygiene(t, e.reg)
}
