package outbox

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"math/rand/v2"
	"runtime"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/depharness/depharness/api/cloud"
	"github.com/depharness/depharness/internal/promreg/promtest"
	"github.com/depharness/depharness/internal/testkit"
	"github.com/depharness/depharness/proxy/cloudclient"
	"github.com/depharness/depharness/proxy/store"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"
)

// fakeCloud is an in-process Cloud recording every attempt and every
// accepted patch per device; answer, if set, decides each PATCH.
type fakeCloud struct {
	mu       sync.Mutex
	answer   func(ctx context.Context, id int64, status string) error
	attempts []string           // "<id> <status>" in call order
	accepted map[int64][]string // statuses the cloud took, per device, in order
	logs     []string
	inFlight int
	maxIn    int
}

func newFakeCloud() *fakeCloud { return &fakeCloud{accepted: map[int64][]string{}} }

func (c *fakeCloud) PatchDevice(ctx context.Context, id int64, p cloud.DevicePatch) error {
	status := ""
	if p.Status != nil {
		status = *p.Status
	}
	c.mu.Lock()
	c.attempts = append(c.attempts, fmt.Sprintf("%d %s", id, status))
	c.inFlight++
	c.maxIn = max(c.maxIn, c.inFlight)
	answer := c.answer
	c.mu.Unlock()
	var err error
	if answer != nil {
		err = answer(ctx, id, status)
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	c.inFlight--
	if err == nil {
		c.accepted[id] = append(c.accepted[id], status)
	}
	return err
}

func (c *fakeCloud) SendLogs(ctx context.Context, lines []cloud.LogLine) error {
	c.mu.Lock()
	defer c.mu.Unlock()
	for _, l := range lines {
		if l.Message == "bad" {
			return &cloudclient.StatusError{Call: cloudclient.CallLogs, Code: 400}
		}
	}
	for _, l := range lines {
		c.logs = append(c.logs, l.UUID+":"+l.Message)
	}
	return nil
}

func (c *fakeCloud) setAnswer(fn func(ctx context.Context, id int64, status string) error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.answer = fn
}

func (c *fakeCloud) acceptedBy(id int64) []string {
	c.mu.Lock()
	defer c.mu.Unlock()
	return slices.Clone(c.accepted[id])
}

func (c *fakeCloud) acceptedCount() int {
	c.mu.Lock()
	defer c.mu.Unlock()
	n := 0
	for _, s := range c.accepted {
		n += len(s)
	}
	return n
}

func (c *fakeCloud) attemptsOf(id int64) []string {
	c.mu.Lock()
	defer c.mu.Unlock()
	var out []string
	prefix := fmt.Sprint(id, " ")
	for _, a := range c.attempts {
		if len(a) > len(prefix) && a[:len(prefix)] == prefix {
			out = append(out, a[len(prefix):])
		}
	}
	return out
}

func (c *fakeCloud) logLines() []string {
	c.mu.Lock()
	defer c.mu.Unlock()
	return slices.Clone(c.logs)
}

// countingStore is the real store, recording each acknowledgement
// transaction (the number of rows it was asked to acknowledge, by kind) and
// failing the first failAcks[kind] of them.
type countingStore struct {
	*store.Store
	mu       sync.Mutex
	acks     map[store.OutboxKind][]int
	failAcks map[store.OutboxKind]int
}

func (s *countingStore) AckOutboxRows(ctx context.Context, kind store.OutboxKind, seqs []int64) (int64, error) {
	s.mu.Lock()
	s.acks[kind] = append(s.acks[kind], len(seqs))
	fail := s.failAcks[kind] > 0
	if fail {
		s.failAcks[kind]--
	}
	s.mu.Unlock()
	if fail {
		return 0, errors.New("disk full")
	}
	return s.Store.AckOutboxRows(ctx, kind, seqs)
}

func (s *countingStore) ackSizes(kind store.OutboxKind) []int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return slices.Clone(s.acks[kind])
}

// batchEnv is a store with devices, a fake cloud and an outbox over them.
type batchEnv struct {
	t     *testing.T
	st    *countingStore
	cloud *fakeCloud
	ob    *Outbox
}

func newBatchEnv(t *testing.T, devices int, mods ...func(*Options)) *batchEnv {
	t.Helper()
	st, err := store.Open(t.TempDir(), store.Options{KeepReportsUnmerged: true})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { st.Close() })
	e := &batchEnv{t: t, st: &countingStore{Store: st, acks: map[store.OutboxKind][]int{}, failAcks: map[store.OutboxKind]int{}}, cloud: newFakeCloud()}
	for i := range devices {
		if _, err := st.InsertProvisioned(context.Background(), store.NewDevice{UUID: devUUID(i), AppID: 1, DeviceType: "t", CloudID: devCloudID(i)}); err != nil {
			t.Fatal(err)
		}
	}
	opts := Options{
		Store: e.st, Cloud: e.cloud, RetryMin: 5 * time.Millisecond, RetryMax: 20 * time.Millisecond,
		IdleCheck: time.Hour, Registerer: prometheus.NewRegistry(), Rand: rand.New(rand.NewPCG(5, 6)),
		Logger: testkit.Logger(t, slog.LevelInfo),
	}
	for _, m := range mods {
		m(&opts)
	}
	if e.ob, err = New(opts); err != nil {
		t.Fatal(err)
	}
	return e
}

func devUUID(i int) string     { return fmt.Sprintf("dev-%03d", i) }
func devCloudID(i int) int64   { return int64(100 + i) }
func status(dev, n int) string { return fmt.Sprintf("d%d-s%d", dev, n) }

func (e *batchEnv) report(dev, n int) {
	e.t.Helper()
	s := status(dev, n)
	if _, _, err := e.st.ApplyReport(context.Background(), devUUID(dev), store.Report{Status: &s}); err != nil {
		e.t.Fatal(err)
	}
}

// start runs the outbox until the test ends or stop is called; stop waits
// for Run to return nil.
func (e *batchEnv) start() (stop func()) {
	r := testkit.Run(e.t, e.ob.Run)
	return func() { r.Stop() }
}

func (e *batchEnv) queued(kind store.OutboxKind) []string {
	e.t.Helper()
	rows, err := e.st.NextOutbox(context.Background(), kind, 10000)
	if err != nil {
		e.t.Fatal(err)
	}
	var out []string
	for _, r := range rows {
		out = append(out, string(r.Payload))
	}
	return out
}

func statuses(dev int, ns ...int) []string {
	var out []string
	for _, n := range ns {
		out = append(out, status(dev, n))
	}
	return out
}

func TestEachDevicesPatchesArriveInOrderWhileDevicesAreDeliveredConcurrently(t *testing.T) {
	const devices, perDev = 40, 15
	e := newBatchEnv(t, devices, func(o *Options) { o.PatchBatch, o.PatchConcurrency = 64, 8 })
	// The first PATCH waits for a second one to be in flight, so delivery
	// must be concurrent; later ones yield a random number of times to
	// shuffle the interleaving of devices.
	rng := rand.New(rand.NewPCG(7, 8))
	var rngMu sync.Mutex
	second := make(chan struct{})
	var first, secondOnce sync.Once
	e.cloud.setAnswer(func(ctx context.Context, id int64, _ string) error {
		isFirst := false
		first.Do(func() { isFirst = true })
		if isFirst {
			select {
			case <-second:
			case <-time.After(5 * time.Second):
				return errors.New("no second PATCH in flight within 5 s")
			}
			return nil
		}
		secondOnce.Do(func() { close(second) })
		rngMu.Lock()
		n := rng.IntN(20)
		rngMu.Unlock()
		for range n {
			runtime.Gosched()
		}
		return nil
	})
	// Interleave the devices' reports in a random order, each device's in
	// its own order.
	next := make([]int, devices)
	for left := devices * perDev; left > 0; left-- {
		d := rng.IntN(devices)
		for next[d] == perDev {
			d = (d + 1) % devices
		}
		e.report(d, next[d])
		next[d]++
	}
	e.start()
	testkit.Eventually(t, "every patch", func() bool { return e.cloud.acceptedCount() >= devices*perDev })
	testkit.Eventually(t, "an empty outbox", func() bool { return len(e.queued(store.OutboxPatch)) == 0 })
	for d := range devices {
		want := statuses(d, 0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14)
		if got := e.cloud.acceptedBy(devCloudID(d)); !slices.Equal(got, want) {
			t.Errorf("device %d: cloud got %v, want %v (each once, in order)", d, got, want)
		}
	}
	e.cloud.mu.Lock()
	maxIn, attempts := e.cloud.maxIn, len(e.cloud.attempts)
	e.cloud.mu.Unlock()
	if maxIn < 2 || maxIn > 8 {
		t.Errorf("at most %d PATCHes in flight, want between 2 and the pool's 8", maxIn)
	}
	if attempts != devices*perDev {
		t.Errorf("%d PATCH attempts, want %d (none sent twice)", attempts, devices*perDev)
	}
}

func TestAnOutageInTheMiddleOfABatchHoldsBackOnlyTheFailedDevice(t *testing.T) {
	e := newBatchEnv(t, 3)
	var mu sync.Mutex
	down := true
	e.cloud.setAnswer(func(_ context.Context, id int64, s string) error {
		mu.Lock()
		defer mu.Unlock()
		if down && s == status(1, 1) {
			return &cloudclient.StatusError{Call: cloudclient.CallPatch, Code: 503}
		}
		return nil
	})
	for n := range 3 {
		for d := range 3 {
			e.report(d, n) // d0-s0 d1-s0 d2-s0 d0-s1 d1-s1 ...
		}
	}
	e.start()
	retries := e.ob.metrics.retries.WithLabelValues(string(store.OutboxPatch))
	testkit.Eventually(t, "two failed rounds", func() bool { return testutil.ToFloat64(retries) >= 2 })

	for _, tc := range []struct {
		dev  int
		want []string
	}{{0, statuses(0, 0, 1, 2)}, {1, statuses(1, 0)}, {2, statuses(2, 0, 1, 2)}} {
		if got := e.cloud.acceptedBy(devCloudID(tc.dev)); !slices.Equal(got, tc.want) {
			t.Errorf("during the outage, device %d: cloud got %v, want %v", tc.dev, got, tc.want)
		}
	}
	for _, a := range e.cloud.attemptsOf(devCloudID(1)) {
		if a == status(1, 2) {
			t.Fatalf("device 1's third patch was sent before its second succeeded: attempts %v", e.cloud.attemptsOf(devCloudID(1)))
		}
	}
	if got, want := e.queued(store.OutboxPatch), []string{`{"status":"d1-s1"}`, `{"status":"d1-s2"}`}; !slices.Equal(got, want) {
		t.Errorf("queued during the outage = %v, want %v", got, want)
	}

	mu.Lock()
	down = false
	mu.Unlock()
	testkit.Eventually(t, "an empty outbox", func() bool { return len(e.queued(store.OutboxPatch)) == 0 })
	if got, want := e.cloud.acceptedBy(devCloudID(1)), statuses(1, 0, 1, 2); !slices.Equal(got, want) {
		t.Errorf("after the outage, device 1: cloud got %v, want %v", got, want)
	}
	for _, d := range []int{0, 2} {
		if got := e.cloud.attemptsOf(devCloudID(d)); !slices.Equal(got, statuses(d, 0, 1, 2)) {
			t.Errorf("device %d was sent %v, want each of its patches once", d, got)
		}
	}
	// One acknowledgement of the batch's 7 delivered rows, none for the
	// rounds that delivered nothing, one of the 2 held back rows.
	if got, want := e.st.ackSizes(store.OutboxPatch), []int{7, 2}; !slices.Equal(got, want) {
		t.Errorf("acknowledgement transactions (rows each) = %v, want %v", got, want)
	}
	promtest.WantValue(t, "delivered", e.ob.metrics.delivered.WithLabelValues(string(store.OutboxPatch)), 9)
}

func TestABatchIsAcknowledgedInOneTransaction(t *testing.T) {
	e := newBatchEnv(t, 10, func(o *Options) { o.PatchBatch, o.LogBatch = 32, 8 })
	for n := range 64 {
		e.report(n%10, n)
	}
	for i := range 16 {
		msg := fmt.Sprint("m", i)
		if i == 5 {
			msg = "bad" // refused: the batch is split to find it
		}
		e.logLine(i%10, msg)
	}
	e.start()
	e.waitSettled(64, 16)
	if got, want := e.st.ackSizes(store.OutboxPatch), []int{32, 32}; !slices.Equal(got, want) {
		t.Errorf("patch acknowledgements (rows each) = %v, want %v: one per batch", got, want)
	}
	if got, want := e.st.ackSizes(store.OutboxLog), []int{8, 8}; !slices.Equal(got, want) {
		t.Errorf("log acknowledgements (rows each) = %v, want %v: one per batch, the split one included", got, want)
	}
	promtest.WantValue(t, "patches delivered", e.ob.metrics.delivered.WithLabelValues(string(store.OutboxPatch)), 64)
	promtest.WantValue(t, "log lines delivered", e.ob.metrics.delivered.WithLabelValues(string(store.OutboxLog)), 15)
	promtest.WantValue(t, "log lines dropped", e.ob.metrics.dropped.WithLabelValues(string(store.OutboxLog), "refused_400"), 1)
	if got := len(e.cloud.logLines()); got != 15 {
		t.Errorf("the cloud got %d log lines, want 15", got)
	}
}

// waitSettled waits for empty outboxes and for the metrics to count
// patches and lines rows as delivered or dropped (they are counted just
// after the rows are deleted).
func (e *batchEnv) waitSettled(patches, lines float64) {
	e.t.Helper()
	m := e.ob.metrics
	testkit.Eventually(e.t, "empty outboxes, counted", func() bool {
		return len(e.queued(store.OutboxPatch)) == 0 && len(e.queued(store.OutboxLog)) == 0 &&
			testutil.ToFloat64(m.delivered.WithLabelValues(string(store.OutboxPatch))) >= patches &&
			testutil.ToFloat64(m.delivered.WithLabelValues(string(store.OutboxLog)))+
				testutil.ToFloat64(m.dropped.WithLabelValues(string(store.OutboxLog), "refused_400")) >= lines
	})
}

func (e *batchEnv) logLine(dev int, msg string) {
	e.t.Helper()
	b := fmt.Appendf(nil, `{"uuid":%q,"message":%q,"timestamp":1}`, devUUID(dev), msg)
	if _, err := e.st.AppendLog(context.Background(), devUUID(dev), b, 0); err != nil {
		e.t.Fatal(err)
	}
}

func TestAFailedAcknowledgementIsRetriedWithoutSendingAgain(t *testing.T) {
	e := newBatchEnv(t, 3)
	e.st.failAcks[store.OutboxPatch], e.st.failAcks[store.OutboxLog] = 1, 1
	for n := range 6 {
		e.report(n%3, n)
		e.logLine(n%3, fmt.Sprint("m", n))
	}
	e.start()
	e.waitSettled(6, 6)
	for d := range 3 {
		if got, want := e.cloud.attemptsOf(devCloudID(d)), statuses(d, d, d+3); !slices.Equal(got, want) {
			t.Errorf("device %d was sent %v, want %v (each once)", d, got, want)
		}
	}
	if got, want := e.cloud.logLines(), []string{"dev-000:m0", "dev-001:m1", "dev-002:m2", "dev-000:m3", "dev-001:m4", "dev-002:m5"}; !slices.Equal(got, want) {
		t.Errorf("log lines = %v, want %v (each once, in order)", got, want)
	}
	for _, kind := range []store.OutboxKind{store.OutboxPatch, store.OutboxLog} {
		if got, want := e.st.ackSizes(kind), []int{6, 6}; !slices.Equal(got, want) {
			t.Errorf("%s acknowledgements = %v, want %v (a failed one, then its retry)", kind, got, want)
		}
		if got := testutil.ToFloat64(e.ob.metrics.delivered.WithLabelValues(string(kind))); got != 6 {
			t.Errorf("%s delivered = %v, want 6 (counted once acknowledged)", kind, got)
		}
	}
}

func TestShutdownAcknowledgesWhatWasDelivered(t *testing.T) {
	e := newBatchEnv(t, 2)
	blocked := make(chan struct{})
	e.cloud.setAnswer(func(ctx context.Context, id int64, _ string) error {
		if id != devCloudID(1) {
			return nil
		}
		close(blocked) // only device 1's first patch gets here: its chain stops
		<-ctx.Done()
		return &cloudclient.TransportError{Call: cloudclient.CallPatch, Err: ctx.Err()}
	})
	e.report(0, 0)
	e.report(1, 0)
	e.report(0, 1)
	e.report(1, 1)
	stop := e.start()
	testkit.Eventually(t, "device 0's patches", func() bool { return len(e.cloud.acceptedBy(devCloudID(0))) == 2 })
	select {
	case <-blocked:
	case <-time.After(5 * time.Second):
		t.Fatal("device 1's patch was not sent within 5 s")
	}
	stop()
	if got, want := e.queued(store.OutboxPatch), []string{`{"status":"d1-s0"}`, `{"status":"d1-s1"}`}; !slices.Equal(got, want) {
		t.Errorf("queued after shutdown = %v, want only device 1's, in order", got)
	}
	if got := e.cloud.attemptsOf(devCloudID(1)); !slices.Equal(got, statuses(1, 0)) {
		t.Errorf("device 1 was sent %v, want only its first patch", got)
	}
}
