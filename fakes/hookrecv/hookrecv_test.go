package hookrecv

import (
	"context"
	"fmt"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"
	"time"
)

func newServer(t *testing.T, opts Options) (*Receiver, *httptest.Server) {
	t.Helper()
	r := New(opts)
	srv := httptest.NewServer(r)
	t.Cleanup(func() { r.Close(); srv.Close() })
	return r, srv
}

func send(t *testing.T, c *http.Client, method, url, body string) (int, error) {
	t.Helper()
	req, err := http.NewRequest(method, url, strings.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	resp, err := c.Do(req)
	if err != nil {
		return 0, err
	}
	resp.Body.Close()
	return resp.StatusCode, nil
}

func awaitCtx(t *testing.T) context.Context {
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	t.Cleanup(cancel)
	return ctx
}

func TestRequestsAreClassifiedByMethodAndPath(t *testing.T) {
	r, srv := newServer(t, Options{})
	cases := []struct {
		method, path string
		wantKind     Kind
		wantUUID     string
		wantStatus   int
	}{
		{"PUT", "/v1/devices/abc", Update, "abc", 200},
		{"DELETE", "/v1/devices/abc", Delete, "abc", 200},
		{"PUT", "/v1/devices/abc/restart", Restart, "abc", 200},
		{"POST", "/v1/devices/abc", Unknown, "abc", 404},
		{"PUT", "/other/abc", Unknown, "", 404},
		{"PUT", "/v1/devices/a/b", Unknown, "", 404},
	}
	for _, c := range cases {
		body := ""
		if c.wantKind == Update {
			body = `{"appId":1,"commit":"c","environment":{},"config":{}}`
		}
		st, err := send(t, srv.Client(), c.method, srv.URL+c.path, body)
		if err != nil {
			t.Fatal(err)
		}
		if st != c.wantStatus {
			t.Errorf("%s %s: got status %d, want %d", c.method, c.path, st, c.wantStatus)
		}
	}
	hs := r.Hooks()
	if len(hs) != len(cases) {
		t.Fatalf("got %d recorded hooks, want %d", len(hs), len(cases))
	}
	for i, c := range cases {
		if hs[i].Kind != c.wantKind || hs[i].UUID != c.wantUUID {
			t.Errorf("%s %s: got kind %s uuid %q, want %s %q", c.method, c.path, hs[i].Kind, hs[i].UUID, c.wantKind, c.wantUUID)
		}
		if hs[i].Seq != i+1 || !hs[i].Done() || hs[i].Answered.Before(hs[i].Received) {
			t.Errorf("hook %d: got seq %d done %v received %v answered %v", i, hs[i].Seq, hs[i].Done(), hs[i].Received, hs[i].Answered)
		}
	}
	if hs[0].Update == nil || hs[0].Update.AppID != 1 || hs[0].Update.Commit != "c" {
		t.Errorf("update body: got %+v (error %q), want appId 1 commit c", hs[0].Update, hs[0].BodyError)
	}
}

func TestUpdateBodyWithAStringAppIDIsRecordedAsABodyError(t *testing.T) {
	r, srv := newServer(t, Options{})
	if _, err := send(t, srv.Client(), "PUT", srv.URL+"/v1/devices/d", `{"appId":"1","commit":"c","environment":{},"config":{}}`); err != nil {
		t.Fatal(err)
	}
	h := r.Hooks()[0]
	if h.Update != nil || h.BodyError == "" {
		t.Errorf("got update %+v body error %q, want no update and an error", h.Update, h.BodyError)
	}
}

func TestScriptAnswersInOrderAndRepeatsTheLastAnswer(t *testing.T) {
	r, srv := newServer(t, Options{})
	r.Script("d1", Update, Answer{Status: 202}, Answer{Status: 500}, Answer{Status: 200})
	r.Script("", Delete, Answer{Status: 503})
	var got []int
	for range 5 {
		st, err := send(t, srv.Client(), "PUT", srv.URL+"/v1/devices/d1", "{}")
		if err != nil {
			t.Fatal(err)
		}
		got = append(got, st)
	}
	want := []int{202, 500, 200, 200, 200}
	for i := range want {
		if got[i] != want[i] {
			t.Fatalf("got statuses %v, want %v", got, want)
		}
	}
	if st, _ := send(t, srv.Client(), "PUT", srv.URL+"/v1/devices/d2", "{}"); st != 200 {
		t.Errorf("unscripted device: got %d, want 200", st)
	}
	if st, _ := send(t, srv.Client(), "DELETE", srv.URL+"/v1/devices/d2", ""); st != 503 {
		t.Errorf("delete under the every-device script: got %d, want 503", st)
	}
	r.Script("d1", Update)
	if st, _ := send(t, srv.Client(), "PUT", srv.URL+"/v1/devices/d1", "{}"); st != 200 {
		t.Errorf("after resetting the script: got %d, want 200", st)
	}
}

func TestRefuseClosesTheConnectionWithoutAnAnswer(t *testing.T) {
	r, srv := newServer(t, Options{})
	r.Script("d", Update, Answer{Refuse: true})
	if st, err := send(t, srv.Client(), "PUT", srv.URL+"/v1/devices/d", "{}"); err == nil {
		t.Fatalf("got status %d, want a connection error", st)
	}
	hs, err := r.AwaitHooks(awaitCtx(t), And(For("d", Update), IsDone), 1)
	if err != nil {
		t.Fatal(err)
	}
	if hs[0].Outcome != Refused || hs[0].Status != 0 {
		t.Errorf("got outcome %s status %d, want refused 0", hs[0].Outcome, hs[0].Status)
	}
}

func TestHangLastsUntilTheClientGivesUp(t *testing.T) {
	r, srv := newServer(t, Options{})
	r.Script("d", Update, Answer{Hang: true})
	c := &http.Client{Timeout: 100 * time.Millisecond}
	if _, err := send(t, c, "PUT", srv.URL+"/v1/devices/d", "{}"); err == nil {
		t.Fatal("got an answer, want a client timeout")
	}
	hs, err := r.AwaitHooks(awaitCtx(t), And(For("d", Update), IsDone), 1)
	if err != nil {
		t.Fatal(err)
	}
	if hs[0].Outcome != Abandoned {
		t.Errorf("got outcome %s, want abandoned", hs[0].Outcome)
	}
	// The client's clock starts before the request is received, so allow
	// for the time spent connecting.
	if d := hs[0].Answered.Sub(hs[0].Received); d < 50*time.Millisecond {
		t.Errorf("got the request ended after %s, want about the client's 100ms timeout", d)
	}
}

func TestCloseReleasesHangingRequests(t *testing.T) {
	r, srv := newServer(t, Options{})
	r.Script("d", Update, Answer{Hang: true})
	done := make(chan error, 1)
	go func() { _, err := send(t, srv.Client(), "PUT", srv.URL+"/v1/devices/d", "{}"); done <- err }()
	if _, err := r.AwaitHooks(awaitCtx(t), For("d", Update), 1); err != nil {
		t.Fatal(err)
	}
	r.Close()
	select {
	case err := <-done:
		if err == nil {
			t.Error("got an answer after Close, want the connection closed")
		}
	case <-time.After(5 * time.Second):
		t.Fatal("hanging request not released by Close")
	}
}

func TestDelayedAnswersAreTimedAndOnReceiveRunsBeforeTheAnswer(t *testing.T) {
	r, srv := newServer(t, Options{})
	r.Script("d", Update, Answer{Status: 202, Delay: 50 * time.Millisecond})
	var mu sync.Mutex
	var seen []string
	r.SetOnReceive(func(ctx context.Context, h Hook) string {
		mu.Lock()
		seen = append(seen, h.UUID)
		mu.Unlock()
		return "assets 200"
	})
	st, err := send(t, srv.Client(), "PUT", srv.URL+"/v1/devices/d", "{}")
	if err != nil || st != 202 {
		t.Fatalf("got %d %v, want 202", st, err)
	}
	h := r.Hooks()[0]
	if h.Note != "assets 200" {
		t.Errorf("got note %q, want %q", h.Note, "assets 200")
	}
	if d := h.Answered.Sub(h.Received); d < 50*time.Millisecond {
		t.Errorf("got answered after %s, want at least 50ms", d)
	}
	mu.Lock()
	defer mu.Unlock()
	if len(seen) != 1 || seen[0] != "d" {
		t.Errorf("got callback calls %v, want [d]", seen)
	}
}

func TestMaxConcurrentCountsOverlappingRequestsPerDevice(t *testing.T) {
	r, srv := newServer(t, Options{})
	release := make(chan struct{})
	r.SetOnReceive(func(ctx context.Context, h Hook) string {
		select {
		case <-release:
		case <-ctx.Done():
		}
		return ""
	})
	var wg sync.WaitGroup
	for _, u := range []string{"a", "a", "b"} {
		wg.Add(1)
		go func() { defer wg.Done(); send(t, srv.Client(), "PUT", srv.URL+"/v1/devices/"+u, "{}") }()
	}
	if _, err := r.AwaitHooks(awaitCtx(t), nil, 3); err != nil {
		t.Fatal(err)
	}
	close(release)
	wg.Wait()
	if got := r.MaxConcurrent("a"); got != 2 {
		t.Errorf("device a: got max concurrency %d, want 2", got)
	}
	if got := r.MaxConcurrent("b"); got != 1 {
		t.Errorf("device b: got max concurrency %d, want 1", got)
	}
	if got := r.MaxConcurrentAll(); got != 3 {
		t.Errorf("all devices: got max concurrency %d, want 3", got)
	}
}

func TestAwaitHooksReportsWhatItSawWhenTheContextEnds(t *testing.T) {
	r, srv := newServer(t, Options{})
	send(t, srv.Client(), "PUT", srv.URL+"/v1/devices/d", "{}")
	ctx, cancel := context.WithTimeout(context.Background(), 50*time.Millisecond)
	defer cancel()
	got, err := r.AwaitHooks(ctx, For("d", Update), 2)
	if err == nil {
		t.Fatal("got no error, want a deadline error")
	}
	if len(got) != 1 {
		t.Errorf("got %d hooks, want 1", len(got))
	}
}

func TestCustomPrefix(t *testing.T) {
	r, srv := newServer(t, Options{Prefix: "/hooks/x"})
	if r.Prefix() != "/hooks/x/" {
		t.Errorf("got prefix %q, want /hooks/x/", r.Prefix())
	}
	send(t, srv.Client(), "DELETE", srv.URL+"/hooks/x/u1", "")
	if h := r.Hooks()[0]; h.Kind != Delete || h.UUID != "u1" {
		t.Errorf("got %s %q, want delete u1", h.Kind, h.UUID)
	}
}

func TestTheEveryDeviceTemplateIsSteppedThroughPerDevice(t *testing.T) {
	r, srv := newServer(t, Options{})
	r.Script("", Update, Answer{Status: 202}, Answer{Status: 200})
	got := map[string][]int{}
	for _, u := range []string{"a", "b", "a", "b", "a"} {
		st, err := send(t, srv.Client(), "PUT", srv.URL+"/v1/devices/"+u, "{}")
		if err != nil {
			t.Fatal(err)
		}
		got[u] = append(got[u], st)
	}
	want := map[string][]int{"a": {202, 200, 200}, "b": {202, 200}}
	for u, w := range want {
		if fmt.Sprint(got[u]) != fmt.Sprint(w) {
			t.Errorf("device %s: got statuses %v, want %v", u, got[u], w)
		}
	}
	r.Script("", Update, Answer{Status: 500})
	if st, _ := send(t, srv.Client(), "PUT", srv.URL+"/v1/devices/a", "{}"); st != 200 {
		t.Errorf("device a after the template changed: got %d, want its own copy's 200", st)
	}
	if st, _ := send(t, srv.Client(), "PUT", srv.URL+"/v1/devices/c", "{}"); st != 500 {
		t.Errorf("new device c: got %d, want the new template's 500", st)
	}
}

func TestUpdateBodiesAreJudgedOnTheContractsFieldsOnly(t *testing.T) {
	r, srv := newServer(t, Options{})
	cases := []struct {
		name, body string
		wantErr    bool
	}{
		{"the four fields", `{"appId":5,"commit":"c","environment":{"A":"1"},"config":{}}`, false},
		{"additional fields allowed", `{"appId":5,"commit":"c","environment":{},"config":{},"releaseId":9,"x":[1]}`, false},
		{"any key order and formatting", "{\n \"config\": {},\n \"environment\": {},\n \"commit\": \"c\",\n \"appId\": 5\n}", false},
		{"no config", `{"appId":5,"commit":"c","environment":{}}`, true},
		{"config null", `{"appId":5,"commit":"c","environment":{},"config":null}`, true},
		{"appId a string", `{"appId":"5","commit":"c","environment":{},"config":{}}`, true},
		{"appId not an integer", `{"appId":5.5,"commit":"c","environment":{},"config":{}}`, true},
		{"environment an array", `{"appId":5,"commit":"c","environment":[],"config":{}}`, true},
		{"commit a number", `{"appId":5,"commit":1,"environment":{},"config":{}}`, true},
		{"trailing data", `{"appId":5,"commit":"c","environment":{},"config":{}} {}`, true},
		{"not an object", `[1]`, true},
	}
	for i, c := range cases {
		uuid := fmt.Sprintf("dev%d", i)
		if _, err := send(t, srv.Client(), "PUT", srv.URL+"/v1/devices/"+uuid, c.body); err != nil {
			t.Fatal(err)
		}
		hs, err := r.AwaitHooks(awaitCtx(t), And(For(uuid, Update), IsDone), 1)
		if err != nil {
			t.Fatal(err)
		}
		h := hs[0]
		if gotErr := h.Update == nil; gotErr != c.wantErr {
			t.Errorf("%s: decoded %v (body error %q), want a body error: %v", c.name, h.Update, h.BodyError, c.wantErr)
		}
		if !c.wantErr && (h.Update.AppID != 5 || h.Update.Commit != "c") {
			t.Errorf("%s: got %+v, want appId 5 and commit c", c.name, h.Update)
		}
	}
}

func TestFailedAndAbandonedFollowTheOutcome(t *testing.T) {
	cases := []struct {
		h    Hook
		want bool
	}{
		{Hook{Kind: Update, Outcome: Answered, Status: 200}, false},
		{Hook{Kind: Update, Outcome: Answered, Status: 202}, false},
		{Hook{Kind: Restart, Outcome: Answered, Status: 202}, true},
		{Hook{Kind: Delete, Outcome: Answered, Status: 500}, true},
		{Hook{Kind: Update, Outcome: Refused}, true},
		{Hook{Kind: Update, Outcome: Abandoned}, true},
		{Hook{Kind: Update, Outcome: Pending}, false},
	}
	for _, c := range cases {
		if got := c.h.Failed(); got != c.want {
			t.Errorf("%s: Failed() = %v, want %v", c.h, got, c.want)
		}
	}
	if !(Hook{Outcome: Abandoned}).Abandoned() || (Hook{Outcome: Refused}).Abandoned() {
		t.Error("Abandoned() must hold for abandoned requests only")
	}
}
