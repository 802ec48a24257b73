package proxy_test

import (
	"net/http"
	"testing"

	"github.com/depharness/depharness/internal/testkit"
	"github.com/depharness/depharness/proxy"
)

// startProxy runs a reference proxy against a fake cloud for the test's
// duration and returns its API and metrics addresses.
func startProxy(t *testing.T) (api, metrics string) {
	t.Helper()
	ln, mln := testkit.Listen(t), testkit.Listen(t)
	runProxy(t, newTestCloud(t).config(t), proxy.Options{Listener: ln, MetricsListener: mln})
	return ln.Addr().String(), mln.Addr().String()
}

func TestOptionsStarNeedsTheKey(t *testing.T) {
	api, metrics := startProxy(t)
	if got := testkit.RawStatus(t, api, "OPTIONS * HTTP/1.1\r\nHost: x\r\n\r\n"); got != http.StatusUnauthorized {
		t.Errorf("OPTIONS * without a key = %d, want 401 (every route needs the key)", got)
	}
	if got := testkit.RawStatus(t, api, "OPTIONS * HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer s3cret\r\n\r\n"); got != http.StatusNotFound {
		t.Errorf("OPTIONS * with the key = %d, want 404 (no such route)", got)
	}
	if got := testkit.RawStatus(t, metrics, "OPTIONS * HTTP/1.1\r\nHost: x\r\n\r\n"); got == http.StatusOK {
		t.Errorf("OPTIONS * on the metrics listener = %d, want a refusal", got)
	}
}

func TestTheMetricsListenerServesOnlyGetMetrics(t *testing.T) {
	_, metrics := startProxy(t)
	for _, c := range []struct {
		method, path string
		want         int
	}{
		{"GET", "/metrics", 200},
		{"HEAD", "/metrics", 200},
		{"GET", "/", 404},
		{"GET", "/metrics/x", 404},
		{"GET", "/v1/devices", 404},
		{"POST", "/metrics", 405},
		{"PUT", "/metrics", 405},
		{"DELETE", "/metrics", 405},
		{"POST", "/other", 404},
	} {
		req, err := http.NewRequest(c.method, "http://"+metrics+c.path, nil)
		if err != nil {
			t.Fatal(err)
		}
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		if resp.StatusCode != c.want {
			t.Errorf("%s %s on the metrics listener = %d, want %d", c.method, c.path, resp.StatusCode, c.want)
		}
	}
}
