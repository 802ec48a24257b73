package fleetview

import (
	"bufio"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/depharness/depharness/internal/testkit"
	"github.com/depharness/depharness/sim/fleet"
)

func newView(t *testing.T, n int, opts Options) *View {
	t.Helper()
	opts.Fleet = newFleet(t, n)
	v, err := New(opts)
	if err != nil {
		t.Fatal(err)
	}
	return v
}

type sseEvent struct {
	id, kind string
	data     []byte
}

// readEvents parses a server-sent event stream into ch until it ends.
func readEvents(body io.Reader, ch chan<- sseEvent) {
	defer close(ch)
	sc := bufio.NewScanner(body)
	sc.Buffer(make([]byte, 1<<20), 4<<20)
	var ev sseEvent
	for sc.Scan() {
		line := sc.Text()
		switch {
		case line == "":
			if ev.kind != "" {
				ch <- ev
			}
			ev = sseEvent{}
		case strings.HasPrefix(line, "id: "):
			ev.id = line[4:]
		case strings.HasPrefix(line, "event: "):
			ev.kind = line[7:]
		case strings.HasPrefix(line, "data: "):
			ev.data = []byte(line[6:])
		}
	}
}

func next(t *testing.T, ch <-chan sseEvent) sseEvent {
	t.Helper()
	select {
	case ev, ok := <-ch:
		if !ok {
			t.Fatal("the stream ended")
		}
		return ev
	case <-time.After(5 * time.Second):
		t.Fatal("no event within 5 s")
	}
	panic("unreachable")
}

func openStream(t *testing.T, url string) (<-chan sseEvent, *http.Response) {
	t.Helper()
	resp, err := http.Get(url + "/events")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { resp.Body.Close() })
	if resp.StatusCode != http.StatusOK || resp.Header.Get("Content-Type") != "text/event-stream" {
		t.Fatalf("GET /events: %s %q", resp.Status, resp.Header.Get("Content-Type"))
	}
	ch := make(chan sseEvent, 16)
	go readEvents(resp.Body, ch)
	return ch, resp
}

func TestEventsStreamASnapshotThenDeltas(t *testing.T) {
	v := newView(t, 20, Options{})
	srv := testkit.Server(t, v.Handler()) // closed after the streams' bodies (cleanups run last first)
	ch, _ := openStream(t, srv.URL)
	ev := next(t, ch)
	snap := decode(t, ev.data)
	if ev.kind != "snap" || ev.id != fmt.Sprint(snap.Seq) || !snap.Full || snap.N != 20 {
		t.Fatalf("first event: got %s id %s %+v, want the snapshot", ev.kind, ev.id, snap)
	}
	v.Model().DeviceManaged(5, "u5", 1)
	v.Model().FleetEvent(fleet.Event{Device: 5, Kind: fleet.EventState, State: fleet.StateFlashing, Commit: "c"})
	v.step()
	ev = next(t, ch)
	d := decode(t, ev.data)
	if ev.kind != "delta" || d.Seq != snap.Seq+1 || fmt.Sprint(d.Idx) != "[5]" || d.States != string(Flashing) {
		t.Fatalf("after one change: got %s %+v, want a delta of device 5 flashing", ev.kind, d)
	}
	v.step()
	if ev = next(t, ch); ev.kind != "delta" || decode(t, ev.data).Seq != snap.Seq+2 {
		t.Fatalf("an idle step: got %s %s, want the next delta", ev.kind, ev.data)
	}
}

// blockingWriter is a ResponseWriter whose writes wait until released: a
// client that reads nothing.
type blockingWriter struct {
	h       http.Header
	release chan struct{}
	once    sync.Once
	writing chan struct{}
}

func (w *blockingWriter) Header() http.Header { return w.h }
func (w *blockingWriter) WriteHeader(int)     {}
func (w *blockingWriter) Write(b []byte) (int, error) {
	w.once.Do(func() { close(w.writing) })
	<-w.release
	return len(b), nil
}

func TestASlowClientIsDroppedAndNeverBlocksTheView(t *testing.T) {
	v := newView(t, 10, Options{ClientBuffer: 2})
	w := &blockingWriter{h: http.Header{}, release: make(chan struct{}), writing: make(chan struct{})}
	req := httptest.NewRequest("GET", "/events", nil)
	done := make(chan struct{})
	go func() {
		v.Handler().ServeHTTP(w, req)
		close(done)
	}()
	<-w.writing // the handler is stuck writing the snapshot
	start := time.Now()
	for range 10 {
		v.step()
	}
	if el := time.Since(start); el > time.Second {
		t.Errorf("10 steps with a stuck client took %v", el)
	}
	if conn, dropped := v.Clients(); conn != 0 || dropped != 1 {
		t.Errorf("got %d clients connected, %d dropped; want 0 and 1", conn, dropped)
	}
	close(w.release)
	select {
	case <-done:
	case <-time.After(5 * time.Second):
		t.Fatal("the dropped client's handler did not return")
	}
}

func TestClientsBeyondTheLimitAreRefused(t *testing.T) {
	v := newView(t, 3, Options{MaxClients: 1})
	srv := testkit.Server(t, v.Handler()) // closed after the streams' bodies (cleanups run last first)
	ch, _ := openStream(t, srv.URL)
	next(t, ch)
	resp, err := http.Get(srv.URL + "/events")
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusServiceUnavailable || resp.Header.Get("Retry-After") == "" {
		t.Errorf("second client: got %s, want 503 with Retry-After", resp.Status)
	}
}

func TestRunPublishesAndItsEndClosesTheStreams(t *testing.T) {
	v := newView(t, 5, Options{Interval: 20 * time.Millisecond})
	srv := testkit.Server(t, v.Handler()) // closed after the streams' bodies (cleanups run last first)
	ctx, cancel := context.WithCancel(context.Background())
	ran := make(chan error, 1)
	go func() { ran <- v.Run(ctx) }()
	ch, _ := openStream(t, srv.URL)
	next(t, ch)
	if ev := next(t, ch); ev.kind != "delta" {
		t.Fatalf("got %s, want Run's deltas", ev.kind)
	}
	cancel()
	if err := <-ran; err != nil {
		t.Fatalf("Run: %v", err)
	}
	deadline := time.After(5 * time.Second)
	for {
		select {
		case _, ok := <-ch:
			if !ok {
				return // the stream ended
			}
		case <-deadline:
			t.Fatal("the stream did not end with Run")
		}
	}
}

func TestThePageIsSelfContained(t *testing.T) {
	v := newView(t, 4, Options{})
	srv := testkit.Server(t, v.Handler()) // closed after the streams' bodies (cleanups run last first)
	get := func(path string, wantStatus int, wantType string) string {
		t.Helper()
		resp, err := http.Get(srv.URL + path)
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		b, _ := io.ReadAll(resp.Body)
		if resp.StatusCode != wantStatus || !strings.HasPrefix(resp.Header.Get("Content-Type"), wantType) {
			t.Fatalf("GET %s: got %s %q, want %d %s", path, resp.Status, resp.Header.Get("Content-Type"), wantStatus, wantType)
		}
		return string(b)
	}
	page := get("/", 200, "text/html") + get("/static/app.js", 200, "text/javascript") + get("/static/style.css", 200, "text/css")
	for _, ext := range []string{"http://", "https://", "@import", "//cdn", "src=\"//", "href=\"//"} {
		if strings.Contains(page, ext) {
			t.Errorf("the page refers to something outside it: %q", ext)
		}
	}
	var d DeviceInfo
	if err := json.Unmarshal([]byte(get("/api/devices/2", 200, "application/json")), &d); err != nil || d.Index != 2 || d.Serial == "" || d.State != "provisioning" {
		t.Errorf("GET /api/devices/2: got %+v, %v", d, err)
	}
	get("/api/devices/4", 404, "text/plain")
	get("/api/devices/x", 404, "text/plain")
	if f := decode(t, []byte(get("/api/state", 200, "application/json"))); !f.Full || f.N != 4 {
		t.Errorf("GET /api/state: got %+v", f)
	}
}

// TestConcurrentEventsStepsAndClients is for the race detector: the fleet's
// and the gateway's goroutines feed the model while Run publishes to
// clients.
func TestConcurrentEventsStepsAndClients(t *testing.T) {
	v := newView(t, 200, Options{Interval: 5 * time.Millisecond})
	srv := testkit.Server(t, v.Handler()) // closed after the streams' bodies (cleanups run last first)
	ctx, cancel := context.WithCancel(context.Background())
	var wg sync.WaitGroup
	wg.Go(func() { _ = v.Run(ctx) })
	m := v.Model()
	for g := range 4 {
		wg.Go(func() {
			for i := g; i < 200; i += 4 {
				m.DeviceManaged(i, fmt.Sprint("u", i), 1)
				m.HookReceived("update", i, 202, "c")
				m.FleetEvent(fleet.Event{Device: i, Kind: fleet.EventState, State: fleet.StateFlashing, Commit: "c"})
				m.FleetEvent(fleet.Event{Device: i, Kind: fleet.EventState, State: fleet.StateRunning, Commit: "c"})
				m.Reported(i)
				if i%10 == 0 {
					m.Failed("flash", i, fmt.Errorf("flaky %d", i))
				}
				time.Sleep(100 * time.Microsecond)
			}
		})
	}
	for range 3 {
		ch, _ := openStream(t, srv.URL)
		wg.Go(func() {
			for range ch {
			}
		})
	}
	deadline := time.Now().Add(10 * time.Second)
	for m.Stats().OnTarget != 200 {
		if time.Now().After(deadline) {
			t.Fatalf("got %d on target, want 200", m.Stats().OnTarget)
		}
		time.Sleep(10 * time.Millisecond)
	}
	cancel()
	wg.Wait()
}
