package store

import (
	"context"
	"database/sql"
	"database/sql/driver"
	"errors"
	"fmt"
	"runtime"
	"slices"
	"sort"
	"strings"
	"sync"
	"testing"
	"time"
)

// holdWriter runs a write that waits inside its transaction until the
// returned release is called, so that writes submitted meanwhile queue up and
// are committed together in the next batch. release returns the held write's
// error.
func holdWriter(t *testing.T, s *Store) (release func() error) {
	t.Helper()
	started, rel := make(chan struct{}), make(chan struct{})
	errc := make(chan error, 1)
	go func() {
		errc <- s.write(context.Background(), func(tx *sql.Tx) error {
			close(started)
			<-rel
			return nil
		})
	}()
	select {
	case <-started:
	case <-time.After(10 * time.Second):
		t.Fatal("the held write did not start within 10s")
	}
	var (
		once sync.Once
		err  error
	)
	release = func() error {
		once.Do(func() {
			close(rel)
			select {
			case err = <-errc:
			case <-time.After(10 * time.Second):
				err = errors.New("the held write did not return within 10s")
			}
		})
		return err
	}
	t.Cleanup(func() { release() })
	return release
}

// awaitQueued waits until n writes are queued for the writer.
func awaitQueued(t *testing.T, s *Store, n int) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for {
		s.gc.mu.Lock()
		got := len(s.gc.queue)
		s.gc.mu.Unlock()
		if got == n {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("queued writes = %d after 10s, want %d", got, n)
		}
		time.Sleep(time.Millisecond)
	}
}

// putMeta is a write function storing key=value in meta.
func putMeta(key, value string) func(*sql.Tx) error {
	return func(tx *sql.Tx) error {
		_, err := tx.Exec(`INSERT INTO meta (key, value) VALUES (?, ?)`, key, value)
		return err
	}
}

// asWtx adapts a write function on the *sql.Tx to one on the wtx.
func asWtx(fn func(*sql.Tx) error) func(*wtx) error {
	return func(w *wtx) error { return fn(w.Tx) }
}

// metaKeys lists the keys of meta with prefix, sorted, through the readers.
func metaKeys(t *testing.T, s *Store, prefix string) []string {
	t.Helper()
	rows, err := s.r.Query(`SELECT key FROM meta WHERE key LIKE ? ORDER BY key`, prefix+"%")
	if err != nil {
		t.Fatal(err)
	}
	defer rows.Close()
	keys := []string{}
	for rows.Next() {
		var k string
		if err := rows.Scan(&k); err != nil {
			t.Fatal(err)
		}
		keys = append(keys, k)
	}
	if err := rows.Err(); err != nil {
		t.Fatal(err)
	}
	return keys
}

// wantMetaKeys fails the test unless the keys of meta with prefix are want.
func wantMetaKeys(t *testing.T, s *Store, prefix string, want ...string) {
	t.Helper()
	if got := metaKeys(t, s, prefix); !slices.Equal(got, want) {
		t.Errorf("committed keys %s* = %v, want %v", prefix, got, want)
	}
}

// submit starts write(ctx, fn) on its own goroutine; its error arrives on
// the returned channel.
func submit(s *Store, ctx context.Context, fn func(*sql.Tx) error) <-chan error {
	errc := make(chan error, 1)
	go func() { errc <- s.write(ctx, fn) }()
	return errc
}

func await(t *testing.T, what string, errc <-chan error) error {
	t.Helper()
	select {
	case err := <-errc:
		return err
	case <-time.After(10 * time.Second):
		t.Fatalf("%s did not return within 10s", what)
		return nil
	}
}

func TestConcurrentWritesAreAllCommittedAndVisible(t *testing.T) {
	s := openAPIStore(t)
	const n = 300
	var wg sync.WaitGroup
	errs := make(chan error, n)
	for i := range n {
		wg.Go(func() {
			errs <- s.write(context.Background(), putMeta(fmt.Sprintf("c%03d", i), "v"))
		})
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		if err != nil {
			t.Errorf("write: %v", err)
		}
	}
	if got := len(metaKeys(t, s, "c")); got != n {
		t.Errorf("committed rows = %d, want %d", got, n)
	}
	if b, w := s.gc.batches.Load(), s.gc.batched.Load(); w != n || b > w {
		t.Errorf("batches, writes = %d, %d; want %d writes in at most as many transactions", b, w, n)
	}
}

func TestQueuedWritesShareOneTransactionInSubmissionOrder(t *testing.T) {
	s := openAPIStore(t)
	release := holdWriter(t, s)
	var order []int // appended by the write functions, which run on the writer
	var errcs []<-chan error
	for i := range 5 {
		errcs = append(errcs, submit(s, context.Background(), func(tx *sql.Tx) error {
			order = append(order, i)
			return putMeta(fmt.Sprintf("q%d", i), "v")(tx)
		}))
		awaitQueued(t, s, i+1)
	}
	batchesBefore := s.gc.batches.Load()
	if err := release(); err != nil {
		t.Fatalf("held write: %v", err)
	}
	for i, errc := range errcs {
		if err := await(t, "write", errc); err != nil {
			t.Errorf("write %d: %v", i, err)
		}
	}
	if got := s.gc.batches.Load() - batchesBefore; got != 1 {
		t.Errorf("transactions for 5 queued writes = %d, want 1", got)
	}
	if fmt.Sprint(order) != "[0 1 2 3 4]" {
		t.Errorf("run order = %v, want submission order [0 1 2 3 4]", order)
	}
	wantMetaKeys(t, s, "q", "q0", "q1", "q2", "q3", "q4")
}

func TestWritesOfAnnouncedCallersWaitForEachOtherAndShareOneTransaction(t *testing.T) {
	s := openAPIStore(t)
	s.gc.lingerFor = time.Minute // only the second write can end the wait in time
	ctx := context.Background()
	announced := func(key string) <-chan error {
		errc := make(chan error, 1)
		go func() { errc <- s.writeAnnounced(ctx, asWtx(putMeta(key, "v"))) }()
		return errc
	}
	quick := func(what string, write func() error) {
		t.Helper()
		start := time.Now()
		if err := write(); err != nil {
			t.Fatal(err)
		}
		if d := time.Since(start); d > 30*time.Second {
			t.Errorf("%s took %v, want no wait for others", what, d)
		}
	}
	done1, done2 := s.ExpectWrites(), s.ExpectWrites()

	// Other writes never wait for announced callers.
	quick("a write of another kind while 2 callers are announced", func() error { return s.write(ctx, putMeta("a0", "v")) })

	before := s.gc.batches.Load()
	first := announced("a1")
	awaitQueued(t, s, 1)
	select {
	case err := <-first:
		t.Fatalf("the first announced write returned (err %v) before the other announced caller wrote", err)
	case <-time.After(50 * time.Millisecond):
	}
	second := announced("a2")
	for i, errc := range []<-chan error{first, second} {
		if err := await(t, "write", errc); err != nil {
			t.Errorf("write %d: %v", i+1, err)
		}
	}
	if got := s.gc.batches.Load() - before; got != 1 {
		t.Errorf("transactions for the writes of 2 announced callers = %d, want 1", got)
	}

	done1()
	done1() // a second call changes nothing
	done2()
	if got := s.gc.expected.Load(); got != 0 {
		t.Fatalf("announced callers after every done = %d, want 0", got)
	}
	quick("an announced write with nobody announced", func() error { return s.writeAnnounced(ctx, asWtx(putMeta("a3", "v"))) })
	wantMetaKeys(t, s, "a", "a0", "a1", "a2", "a3")
}

func TestAFailingWriteIsUndoneAndTheOthersOfItsBatchAreKept(t *testing.T) {
	errBoom := errors.New("boom")
	cases := []struct {
		name    string
		fail    func(tx *sql.Tx) error // writes "b" then fails
		wantErr func(error) bool
	}{
		{
			name: "an error is returned to its caller only",
			fail: func(tx *sql.Tx) error {
				if err := putMeta("fb", "v")(tx); err != nil {
					return err
				}
				return errBoom
			},
			wantErr: func(err error) bool { return errors.Is(err, errBoom) },
		},
		{
			name: "a constraint violation is returned to its caller only",
			fail: func(tx *sql.Tx) error {
				if err := putMeta("fb", "v")(tx); err != nil {
					return err
				}
				return putMeta("fa", "duplicate of the first write's key")(tx)
			},
			wantErr: func(err error) bool { return err != nil && strings.Contains(err.Error(), "UNIQUE") },
		},
		{
			name: "a panic becomes an error of its caller only",
			fail: func(tx *sql.Tx) error {
				if err := putMeta("fb", "v")(tx); err != nil {
					return err
				}
				panic("write function bug")
			},
			wantErr: func(err error) bool { return err != nil && strings.Contains(err.Error(), "write function bug") },
		},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			s := openAPIStore(t)
			release := holdWriter(t, s)
			a := submit(s, context.Background(), putMeta("fa", "v"))
			awaitQueued(t, s, 1)
			b := submit(s, context.Background(), tc.fail)
			awaitQueued(t, s, 2)
			c := submit(s, context.Background(), putMeta("fc", "v"))
			awaitQueued(t, s, 3)
			if err := release(); err != nil {
				t.Fatalf("held write: %v", err)
			}
			if err := await(t, "write a", a); err != nil {
				t.Errorf("write a: %v, want nil", err)
			}
			if err := await(t, "write b", b); !tc.wantErr(err) {
				t.Errorf("write b: got %v, want its own failure", err)
			}
			if err := await(t, "write c", c); err != nil {
				t.Errorf("write c: %v, want nil", err)
			}
			// b's write is undone, a's and c's are committed.
			wantMetaKeys(t, s, "f", "fa", "fc")
			// The writer goes on with the next writes.
			if err := s.write(context.Background(), putMeta("fd", "v")); err != nil {
				t.Errorf("next write: %v", err)
			}
		})
	}
}

func TestALoneFailingOrPanickingWriteIsUndone(t *testing.T) {
	s := openAPIStore(t)
	errBoom := errors.New("boom")
	err := s.write(context.Background(), func(tx *sql.Tx) error {
		if err := putMeta("la", "v")(tx); err != nil {
			return err
		}
		return errBoom
	})
	if !errors.Is(err, errBoom) {
		t.Errorf("failing write: got %v, want %v", err, errBoom)
	}
	err = s.write(context.Background(), func(tx *sql.Tx) error {
		if err := putMeta("lb", "v")(tx); err != nil {
			return err
		}
		panic("lone bug")
	})
	if err == nil || !strings.Contains(err.Error(), "lone bug") {
		t.Errorf("panicking write: got %v, want an error naming the panic", err)
	}
	if err := s.write(context.Background(), putMeta("lc", "v")); err != nil {
		t.Fatalf("next write: %v", err)
	}
	wantMetaKeys(t, s, "l", "lc")
}

func TestAWriteWhoseContextEndsWhileQueuedIsNotRun(t *testing.T) {
	s := openAPIStore(t)
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	ran := false
	if err := s.write(ctx, func(tx *sql.Tx) error { ran = true; return nil }); !errors.Is(err, context.Canceled) {
		t.Errorf("write with an ended context: got %v, want %v", err, context.Canceled)
	}

	release := holdWriter(t, s)
	ctx, cancel = context.WithCancel(context.Background())
	defer cancel()
	queued := submit(s, ctx, func(tx *sql.Tx) error {
		ran = true
		return putMeta("xq", "v")(tx)
	})
	awaitQueued(t, s, 1)
	cancel()
	if err := await(t, "cancelled write", queued); !errors.Is(err, context.Canceled) {
		t.Errorf("write cancelled while queued: got %v, want %v", err, context.Canceled)
	}
	after := submit(s, context.Background(), putMeta("xa", "v"))
	if err := release(); err != nil {
		t.Fatalf("held write: %v", err)
	}
	if err := await(t, "later write", after); err != nil {
		t.Fatalf("later write: %v", err)
	}
	if ran {
		t.Error("the function of a cancelled write ran")
	}
	wantMetaKeys(t, s, "x", "xa")
}

func TestAStartedWriteCompletesWithItsBatchWhenItsContextEnds(t *testing.T) {
	s := openAPIStore(t)
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	err := s.write(ctx, func(tx *sql.Tx) error {
		if _, err := tx.ExecContext(ctx, `INSERT INTO meta (key, value) VALUES ('s1', 'v')`); err != nil {
			return err
		}
		cancel()
		return nil
	})
	if err != nil {
		t.Errorf("write whose context ended after it started: got %v, want nil (committed)", err)
	}
	wantMetaKeys(t, s, "s", "s1")
}

func TestWriterStatementsRunToTheEndWhateverTheContext(t *testing.T) {
	s := openAPIStore(t)
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	conn, err := s.w.Conn(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	err = conn.Raw(func(dc any) error {
		ex, ok := dc.(driver.ExecerContext)
		if !ok {
			return fmt.Errorf("writer connection %T does not execute with a context", dc)
		}
		_, err := ex.ExecContext(ctx, `INSERT INTO meta (key, value) VALUES ('d1', 'v')`, nil)
		return err
	})
	if err != nil {
		t.Errorf("statement on the writer with an ended context: got %v, want it run", err)
	}
	conn.Close()
	wantMetaKeys(t, s, "d", "d1")
}

func TestAWriteThatEndsTheTransactionFailsItsBatchAndTheRestRunAnew(t *testing.T) {
	s := openAPIStore(t)
	release := holdWriter(t, s)
	a := submit(s, context.Background(), putMeta("ra", "v"))
	awaitQueued(t, s, 1)
	b := submit(s, context.Background(), func(tx *sql.Tx) error {
		if err := putMeta("rb", "v")(tx); err != nil {
			return err
		}
		// As SQLite does after some errors (I/O, interrupt): the whole
		// transaction is rolled back.
		_, err := tx.Exec(`ROLLBACK`)
		return err
	})
	awaitQueued(t, s, 2)
	c := submit(s, context.Background(), putMeta("rc", "v"))
	awaitQueued(t, s, 3)
	if err := release(); err != nil {
		t.Fatalf("held write: %v", err)
	}
	if err := await(t, "write a", a); err == nil {
		t.Error("write a: got nil, want an error (its transaction was rolled back)")
	}
	if err := await(t, "write b", b); err == nil {
		t.Error("write b: got nil, want an error")
	}
	if err := await(t, "write c", c); err != nil {
		t.Errorf("write c: %v, want nil (run in a new transaction)", err)
	}
	wantMetaKeys(t, s, "r", "rc")
}

func TestWritesSurviveReopenAndCloseDrainsThenRefuses(t *testing.T) {
	dir := t.TempDir()
	s := openDir(t, dir)
	release := holdWriter(t, s)
	const n = 50
	var errcs []<-chan error
	for i := range n {
		errcs = append(errcs, submit(s, context.Background(), putMeta(fmt.Sprintf("p%02d", i), "v")))
	}
	awaitQueued(t, s, n)
	closed := make(chan error, 1)
	go func() { closed <- s.Close() }()
	// Close waits for the queued writes; new ones are refused meanwhile.
	deadline := time.Now().Add(10 * time.Second)
	for {
		s.gc.mu.Lock()
		c := s.gc.closed
		s.gc.mu.Unlock()
		if c {
			break
		}
		if time.Now().After(deadline) {
			t.Fatal("Close did not start within 10s")
		}
		time.Sleep(time.Millisecond)
	}
	if err := s.write(context.Background(), putMeta("late", "v")); !errors.Is(err, errClosed) {
		t.Errorf("write during Close: got %v, want %v", err, errClosed)
	}
	if err := release(); err != nil {
		t.Fatalf("held write: %v", err)
	}
	for i, errc := range errcs {
		if err := await(t, "queued write", errc); err != nil {
			t.Errorf("queued write %d: %v", i, err)
		}
	}
	if err := await(t, "Close", closed); err != nil {
		t.Fatalf("Close: %v", err)
	}

	s = openDir(t, dir)
	defer s.Close()
	want := make([]string, n)
	for i := range want {
		want[i] = fmt.Sprintf("p%02d", i)
	}
	sort.Strings(want)
	wantMetaKeys(t, s, "p", want...)
	wantMetaKeys(t, s, "late") // the refused write stored nothing
}

func TestPreparedStatementsOfTheWriterWorkInsideBatches(t *testing.T) {
	s := openAPIStore(t)
	apiSeedApp(t, s, 5, "app", `{}`, "c1", true)
	for i := range 20 {
		apiProvision(t, s, fmt.Sprintf("u%02d", i), 5, int64(i+1))
	}
	// ApplyReport and AppendLog prepare their statements on the writer
	// before they queue, on first use: do that before the writer is held.
	if _, _, err := s.ApplyReport(context.Background(), "u00", Report{Status: apiStrPtr("Starting")}); err != nil {
		t.Fatal(err)
	}
	if _, err := s.AppendLog(context.Background(), "u00", logPayload(99), 0); err != nil {
		t.Fatal(err)
	}
	release := holdWriter(t, s)
	var wg sync.WaitGroup
	errs := make(chan error, 40)
	for i := range 20 {
		uuid := fmt.Sprintf("u%02d", i)
		wg.Go(func() {
			_, _, err := s.ApplyReport(context.Background(), uuid, Report{Status: apiStrPtr("Idle")})
			errs <- err
		})
		wg.Go(func() {
			_, err := s.AppendLog(context.Background(), uuid, logPayload(i), 0)
			errs <- err
		})
	}
	awaitQueued(t, s, 40)
	if err := release(); err != nil {
		t.Fatalf("held write: %v", err)
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		if err != nil {
			t.Errorf("write: %v", err)
		}
	}
	// u00's "Starting" was merged into its "Idle" (DEV-PUT-6): one row per
	// device.
	if got := len(outboxPayloads(t, s, OutboxPatch)); got != 20 {
		t.Errorf("patch rows = %d, want 20", got)
	}
	if got := len(outboxPayloads(t, s, OutboxLog)); got != 21 {
		t.Errorf("log rows = %d, want 21", got)
	}
	var counted string
	if err := s.r.QueryRow(`SELECT value FROM meta WHERE key = ?`, metaLogRows).Scan(&counted); err != nil {
		t.Fatal(err)
	}
	if counted != "21" {
		t.Errorf("meta log row counter = %s, want 21", counted)
	}
}

// BenchmarkApplyReportConcurrent256 is ApplyReport from 256 concurrent
// callers, each on its own device, as during a rollout.
func BenchmarkApplyReportConcurrent256(b *testing.B) {
	s := openAPIStore(b)
	apiSeedApp(b, s, 5, "app", `{}`, "c1", true)
	uuids := make(chan string, 256)
	for i := range 256 {
		uuid := fmt.Sprintf("u%03d", i)
		apiProvision(b, s, uuid, 5, int64(i+1))
		uuids <- uuid
	}
	procs := runtime.GOMAXPROCS(0)
	b.SetParallelism((256 + procs - 1) / procs)
	b.ResetTimer()
	b.RunParallel(func(pb *testing.PB) {
		uuid := <-uuids
		for i := 0; pb.Next(); i++ {
			if _, _, err := s.ApplyReport(context.Background(), uuid, Report{Status: apiStrPtr(fmt.Sprint("s", i)), IsOnline: apiBoolPtr(i%2 == 0)}); err != nil {
				b.Error(err)
				return
			}
		}
	})
	b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "puts/s")
}

// A writer that has been answered always finds Generation moved: a read
// cache keyed by it never hides a finished write (alone or batched).
func TestGenerationMovesBeforeEveryWriterIsAnswered(t *testing.T) {
	s := openAPIStore(t)
	before := s.Generation()
	if err := s.write(context.Background(), putMeta("g-alone", "v")); err != nil {
		t.Fatal(err)
	}
	if s.Generation() == before {
		t.Fatal("Generation did not move after a lone write")
	}
	const n = 64
	var wg sync.WaitGroup
	errs := make(chan error, n)
	for i := range n {
		wg.Go(func() {
			g := s.Generation()
			if err := s.write(context.Background(), putMeta(fmt.Sprintf("g%03d", i), "v")); err != nil {
				errs <- err
				return
			}
			if s.Generation() == g {
				errs <- fmt.Errorf("write %d answered with Generation still %d", i, g)
			}
		})
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Error(err)
	}
}
