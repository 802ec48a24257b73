package cloud

import (
	"context"
	"io"
	"log/slog"
	"net/http"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/depharness/depharness/internal/testkit"
)

// testCloud is a fake cloud on an httptest server.
type testCloud struct {
	*Server
	url string
	reg *prometheus.Registry
}

func newTestCloud(t testing.TB, opts Options) *testCloud {
	t.Helper()
	reg := prometheus.NewRegistry()
	if opts.Registerer == nil {
		opts.Registerer = reg
	}
	if opts.Logger == nil {
		opts.Logger = testkit.Logger(t, slog.LevelWarn)
	}
	if opts.Seed == 0 {
		opts.Seed = 42
	}
	s, err := New(opts)
	if err != nil {
		t.Fatalf("New: %v", err)
	}
	ts := testkit.Server(t, s)
	return &testCloud{Server: s, url: ts.URL, reg: reg}
}

// fixture is a gateway with one dependent app.
type fixture struct {
	gw  Gateway
	app App
}

// gateway creates a gateway with generated identity.
func (c *testCloud) gateway(t testing.TB) Gateway {
	t.Helper()
	gw, err := c.CreateGateway(GatewaySpec{})
	if err != nil {
		t.Fatalf("CreateGateway: %v", err)
	}
	return gw
}

// device creates a dependent device of app appID with generated identity.
func (c *testCloud) device(t testing.TB, appID int64) DeviceInfo {
	t.Helper()
	d, err := c.CreateDevice(DeviceSpec{AppID: appID})
	if err != nil {
		t.Fatalf("CreateDevice: %v", err)
	}
	return d
}

func (c *testCloud) fixture(t testing.TB) fixture {
	t.Helper()
	gw := c.gateway(t)
	a, err := c.CreateApp(AppSpec{Gateway: gw.UUID, Name: "sensors"})
	if err != nil {
		t.Fatalf("CreateApp: %v", err)
	}
	return fixture{gw: gw, app: a}
}

// ownAndForeignDevice creates a fixture with a device, and a device of
// another gateway's app.
func (c *testCloud) ownAndForeignDevice(t testing.TB) (f fixture, own, foreign DeviceInfo) {
	t.Helper()
	f = c.fixture(t)
	own = c.device(t, f.app.ID)
	other := c.fixture(t)
	return f, own, c.device(t, other.app.ID)
}

// send sends req and returns the answer's status, or the error of a
// request that got none.
func send(req *http.Request) (int, error) {
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return 0, err
	}
	resp.Body.Close()
	return resp.StatusCode, nil
}

// statusOf sends req in the background; the channel gets the answer's
// status, or -1 if there is none.
func statusOf(req *http.Request) <-chan int {
	done := make(chan int, 1)
	go func() {
		code, err := send(req)
		if err != nil {
			code = -1
		}
		done <- code
	}()
	return done
}

// wantStatus waits for the status statusOf delivers and checks it against
// want; the end of ctx before it comes is fatal. what names the request.
func wantStatus(ctx context.Context, t testing.TB, done <-chan int, want int, what string) {
	t.Helper()
	select {
	case code := <-done:
		if code != want {
			t.Errorf("%s: got status %d, want %d", what, code, want)
		}
	case <-ctx.Done():
		t.Fatalf("%s did not finish", what)
	}
}

// response is a protocol answer.
type response struct {
	status int
	header http.Header
	body   string
}

// request is a protocol request with key as the bearer token ("" for none).
func (c *testCloud) request(ctx context.Context, t testing.TB, method, path, key string, body io.Reader) *http.Request {
	t.Helper()
	req, err := http.NewRequestWithContext(ctx, method, c.url+path, body)
	if err != nil {
		t.Fatal(err)
	}
	if key != "" {
		req.Header.Set("Authorization", "Bearer "+key)
	}
	return req
}

// call sends a protocol request with key as the bearer token ("" for none).
func (c *testCloud) call(t testing.TB, method, path, key string, body io.Reader, hdr ...string) response {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	req := c.request(ctx, t, method, path, key, body)
	for i := 0; i+1 < len(hdr); i += 2 {
		req.Header.Set(hdr[i], hdr[i+1])
	}
	resp, b := testkit.Do(t, nil, req)
	return response{status: resp.StatusCode, header: resp.Header, body: string(b)}
}

func testCtx(t testing.TB) context.Context {
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	t.Cleanup(cancel)
	return ctx
}

func mustNoErr(t testing.TB, err error) {
	t.Helper()
	if err != nil {
		t.Fatal(err)
	}
}

// hexOf returns a 32-hex uuid made of digit d.
func hexOf(d byte) string { return strings.Repeat(string([]byte{d}), 32) }

// fakeImage is a well-formed image reference.
func fakeImage(repo string, d byte) string {
	return "127.0.0.1:5000/" + repo + "@sha256:" + strings.Repeat(string([]byte{d}), 64)
}

// nameRe is a generated adjective-noun name.
var nameRe = regexp.MustCompile(`^[a-z]+-[a-z]+$`)
