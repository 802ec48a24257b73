package proxy_test

import (
	"io"
	"net/http"
	"testing"

	"github.com/depharness/depharness/fakes/cloud"
	"github.com/depharness/depharness/internal/testkit"
	"github.com/depharness/depharness/proxy"
	"github.com/depharness/depharness/proxy/config"
)

// testAPIKey is the supervisor API key of every proxy in these tests.
const testAPIKey = "s3cret"

// testCloud is an in-process fake cloud on a test server, with the gateway
// every proxy in these tests is started as.
type testCloud struct {
	*cloud.Server
	URL     string
	Gateway cloud.Gateway
}

func newTestCloud(t *testing.T) *testCloud {
	t.Helper()
	cl, err := cloud.New(cloud.Options{})
	if err != nil {
		t.Fatal(err)
	}
	cs := testkit.Server(t, cl)
	gw, err := cl.CreateGateway(cloud.GatewaySpec{})
	if err != nil {
		t.Fatal(err)
	}
	return &testCloud{Server: cl, URL: cs.URL, Gateway: gw}
}

// config is the configuration of a proxy started as the cloud's gateway,
// with testAPIKey and a fresh DATA_DIR.
func (c *testCloud) config(t *testing.T) config.Config {
	return config.Config{
		APIEndpoint: c.URL, DeviceUUID: c.Gateway.UUID, DeviceID: c.Gateway.DeviceID, DeviceAPIKey: c.Gateway.APIKey,
		APIKey: testAPIKey, DataDir: t.TempDir(),
	}
}

// runProxy builds a proxy of cfg and opts and runs it until the test ends
// or the returned Running is stopped; it returns once the proxy is ready.
func runProxy(t *testing.T, cfg config.Config, opts proxy.Options) (*proxy.Proxy, *testkit.Running) {
	t.Helper()
	p, err := proxy.New(cfg, opts)
	if err != nil {
		t.Fatal(err)
	}
	r := testkit.Run(t, p.Run)
	<-p.Ready()
	return p, r
}

// get fetches url and returns the status and body.
func get(t *testing.T, url string) (int, string) {
	t.Helper()
	resp, err := http.Get(url)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, string(b)
}
