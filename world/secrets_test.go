package world

import (
	"context"
	"encoding/base64"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"math/rand/v2"
	"net"
	"net/http"
	"net/http/httptest"
	"net/url"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/promhttp"

	"github.com/depharness/depharness/fakes/cloud"
	"github.com/depharness/depharness/internal/syncbuf"
	"github.com/depharness/depharness/internal/testkit"
	"github.com/depharness/depharness/sim/client"
	"github.com/depharness/depharness/sim/fleet"
	"github.com/depharness/depharness/sim/gateway"
)

// syncBuffer is a bytes.Buffer safe for concurrent writes and the test.
type syncBuffer = syncbuf.Buffer

// leaks returns, for each secret (by name) found in any text (by name), a
// line saying where: the secret as it is, query-escaped, and in base64 (a
// Basic credential or a logged header carries it so).
func leaks(secrets, texts map[string]string) []string {
	var out []string
	for sname, sec := range secrets {
		forms := map[string]bool{sec: true, url.QueryEscape(sec): true,
			base64.StdEncoding.EncodeToString([]byte(sec)): true, base64.RawURLEncoding.EncodeToString([]byte(sec)): true}
		for tname, text := range texts {
			for form := range forms {
				if i := strings.Index(text, form); i >= 0 {
					lo, hi := max(0, i-120), min(len(text), i+len(form)+40)
					out = append(out, fmt.Sprintf("%s found in %s: …%s…", sname, tname, text[lo:hi]))
					break
				}
			}
		}
	}
	return out
}

func TestTheLeakCheckFindsAPlantedSecret(t *testing.T) {
	secrets := map[string]string{"api key": "0123abcd"}
	for _, text := range []string{
		`level=DEBUG msg=x url="http://h/ping?apikey=0123abcd"`,
		`{"auth":"Basic ` + base64.StdEncoding.EncodeToString([]byte("0123abcd")) + `"}`,
		"some_metric{key=\"0123abcd\"} 1",
	} {
		if got := leaks(secrets, map[string]string{"logs": text}); len(got) != 1 {
			t.Errorf("leaks in %q: got %q, want one", text, got)
		}
	}
	if got := leaks(secrets, map[string]string{"logs": "apikey=<redacted>"}); len(got) != 0 {
		t.Errorf("leaks in a redacted line: got %q, want none", got)
	}
}

// get returns the status and body of a GET (or of req when given).
func fetch(t *testing.T, req *http.Request) (int, string) {
	t.Helper()
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return 0, err.Error()
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, string(b)
}

func newReq(t *testing.T, method, url, auth string) *http.Request {
	t.Helper()
	req, err := http.NewRequest(method, url, strings.NewReader(`{}`))
	if err != nil {
		t.Fatal(err)
	}
	if auth != "" {
		req.Header.Set("Authorization", auth)
	}
	return req
}

// Every component of the world runs at debug level through a rollout with
// failures: the gateway app starts before the supervisor listens, the cloud
// drops off (connections closed, then 503s) and returns, clients present
// wrong keys and tokens. No key or token may appear in any log line, any
// metrics exposition, any error or any refusal's body. Each log line names
// its component once.
func TestNoSecretInAnyLogMetricOrError(t *testing.T) {
	if testing.Short() {
		t.Skip("runs the whole world through a rollout with failures")
	}
	var logs syncBuffer
	log := slog.New(slog.NewTextHandler(&logs, &slog.HandlerOptions{Level: slog.LevelDebug}))
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	texts := map[string]string{}
	var errs []string
	noteErr := func(what string, err error) {
		if err != nil {
			errs = append(errs, what+": "+err.Error())
		}
	}

	fk, err := StartFakes(ctx, FakesOptions{Logger: log, Seed: 11})
	if err != nil {
		t.Fatal(err)
	}
	defer fk.Close()
	gw, err := fk.Cloud.CreateGateway(cloud.GatewaySpec{Name: DemoGatewayName, AppName: "gateway-fleet"})
	if err != nil {
		t.Fatal(err)
	}
	apps, err := SeedDemo(ctx, fk, gw)
	if err != nil {
		t.Fatal(err)
	}
	var appIDs []int64
	for _, a := range apps {
		appIDs = append(appIDs, a.App.ID)
	}

	// The supervisor's address is chosen but nothing listens there yet.
	proxyAddr := testkit.FreeAddr(t)
	apiKey := randomHex(16)

	// The gateway app and its fleet start first, waiting for the supervisor.
	hookLn, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	cl, err := client.New(client.Options{BaseURL: "http://" + proxyAddr, APIKey: apiKey, Retry: client.Retry{MaxAttempts: 2, Max: 300 * time.Millisecond}})
	if err != nil {
		t.Fatal(err)
	}
	fl, err := fleet.New(fleet.Profile{Count: 4, Seed: 3, LogRate: 2, FlashTime: fleet.Dist{Dist: "uniform", Min: fleet.Duration(20 * time.Millisecond), Max: fleet.Duration(100 * time.Millisecond)}},
		fleet.Options{Logger: log.With("component", "fleet")})
	if err != nil {
		t.Fatal(err)
	}
	gwMetrics := prometheus.NewRegistry()
	g, err := gateway.New(gateway.Options{
		Client: cl, Fleet: fl, Apps: appIDs, Logger: log.With("component", "gateway"), Registerer: gwMetrics,
		Rand: rand.New(rand.NewPCG(1, 2)), RetryBase: 50 * time.Millisecond, RetryMax: 500 * time.Millisecond,
	})
	if err != nil {
		t.Fatal(err)
	}
	hookSrv := serveOn(hookLn, g.Handler(), log)
	defer hookSrv.close()
	runCtx, stopRun := context.WithCancel(ctx)
	var wg sync.WaitGroup
	var runMu sync.Mutex
	for name, run := range map[string]func(context.Context) error{"fleet": fl.Run, "gateway": g.Run} {
		wg.Go(func() {
			err := run(runCtx)
			runMu.Lock()
			noteErr(name+" run", err)
			runMu.Unlock()
		})
	}
	testkit.Await(ctx, t, "the gateway app to find no supervisor", func() bool {
		return strings.Contains(logs.String(), "waiting for the supervisor")
	})
	time.Sleep(500 * time.Millisecond) // a few refused connections

	// The supervisor starts while the cloud drops every connection.
	if err := fk.Cloud.Outage(cloud.OutageClose); err != nil {
		t.Fatal(err)
	}
	p, _, err := fk.StartProxy(ctx, &gw, ProxyOptions{
		DataDir: t.TempDir(), Listen: proxyAddr, APIKey: apiKey, HookAddress: hookBase(hookLn.Addr().String()),
		PollInterval: 200 * time.Millisecond, HookRetryInterval: 300 * time.Millisecond,
	}, log)
	if err != nil {
		t.Fatal(err)
	}
	defer p.Stop()
	time.Sleep(time.Second)
	fk.Cloud.EndOutage()

	secrets := map[string]string{
		"supervisor API key": apiKey, "device API key": gw.APIKey,
		"cloud admin token": fk.Cloud.AdminToken(), "registry admin token": fk.RegistryToken,
	}
	// Refused keys and tokens: wrong ones, never to be echoed either.
	wrong := map[string]string{}
	for _, w := range []string{"proxy query", "proxy bearer", "proxy basic", "cloud bearer", "cloud protocol", "registry bearer", "registry push"} {
		wrong[w] = randomHex(16)
		secrets["wrong key ("+w+")"] = wrong[w]
	}
	refusals := []struct {
		name string
		req  *http.Request
		want int
	}{
		{"proxy query", newReq(t, "GET", p.URL+"/v1/devices?apikey="+wrong["proxy query"], ""), 401},
		{"proxy bearer", newReq(t, "PUT", p.URL+"/v1/devices/x", "Bearer "+wrong["proxy bearer"]), 401},
		{"proxy basic", newReq(t, "GET", p.URL+"/v1/dependent-apps", "Basic "+base64.StdEncoding.EncodeToString([]byte("u:"+wrong["proxy basic"]))), 401},
		{"cloud bearer", newReq(t, "GET", fk.CloudURL+"/control/v1/info", "Bearer "+wrong["cloud bearer"]), 401},
		{"cloud protocol", newReq(t, "GET", fk.CloudURL+"/device/v2/"+gw.UUID+"/state", "Bearer "+wrong["cloud protocol"]), 401},
		{"registry bearer", newReq(t, "PUT", "http://"+fk.RegistryAddr+"/control/v1/throttle", "Bearer "+wrong["registry bearer"]), 401},
		{"registry push", newReq(t, "POST", "http://"+fk.RegistryAddr+"/v2/apps/1/blobs/uploads/", "Bearer "+wrong["registry push"]), 401},
	}
	for _, r := range refusals {
		code, body := fetch(t, r.req)
		if code != r.want {
			t.Errorf("%s with a wrong key: got %d, want %d", r.name, code, r.want)
		}
		texts["answer to "+r.name] = body
	}
	// A client with a wrong key, and one whose supervisor is gone: their
	// errors.
	for _, c := range []struct{ name, base, key string }{
		{"wrong key", p.URL, wrong["proxy query"]},
		{"no supervisor", "http://" + testkit.FreeAddr(t), apiKey},
	} {
		for _, mode := range []client.KeyMode{client.KeyInQuery, client.KeyInHeader} {
			bad, err := client.New(client.Options{BaseURL: c.base, APIKey: c.key, KeyMode: mode})
			if err != nil {
				t.Fatal(err)
			}
			_, err = bad.Devices(ctx)
			if err == nil {
				t.Errorf("client (%s): got no error", c.name)
			}
			noteErr("client ("+c.name+")", err)
		}
	}

	// The rollout: the demo's releases, then a new one while the cloud
	// answers 503 for a while.
	converged := func() bool {
		got, total := fk.Convergence(gw.UUID)
		return total == 4 && got == total
	}
	testkit.Await(ctx, t, "the fleet on the demo releases", converged)
	if _, err := fk.Cloud.PushRelease(ctx, apps[0].App.ID, cloud.ReleaseSpec{Layers: []cloud.Layer{{Files: map[string][]byte{
		"assets/firmware.bin": []byte("v2 firmware"),
	}}}}); err != nil {
		t.Fatal(err)
	}
	if err := fk.Cloud.Outage(cloud.Outage503); err != nil {
		t.Fatal(err)
	}
	time.Sleep(time.Second)
	fk.Cloud.EndOutage()
	testkit.Await(ctx, t, "the fleet on the new release", converged)

	// Every metrics exposition.
	for name, u := range map[string]string{
		"proxy metrics": p.MetricsURL, "cloud metrics": fk.CloudURL + "/metrics", "registry metrics": "http://" + fk.RegistryAddr + "/metrics",
	} {
		code, body := fetch(t, newReq(t, "GET", u, ""))
		if code != 200 || !strings.Contains(body, "# TYPE") {
			t.Fatalf("%s: got %d, want an exposition", name, code)
		}
		texts[name] = body
	}
	rec := httptest.NewRecorder()
	promhttp.HandlerFor(gwMetrics, promhttp.HandlerOpts{}).ServeHTTP(rec, httptest.NewRequest("GET", "/metrics", nil))
	texts["gateway metrics"] = rec.Body.String()
	reqs, err := json.Marshal(fk.Registry.Requests())
	if err != nil {
		t.Fatal(err)
	}
	texts["registry request log"] = string(reqs)

	stopRun()
	wg.Wait()
	noteErr("proxy stop", p.Stop())
	noteErr("gateway hook server", hookSrv.close())
	noteErr("fakes close", fk.Close())
	texts["errors"] = strings.Join(errs, "\n")
	texts["logs"] = logs.String()

	for _, l := range leaks(secrets, texts) {
		t.Error(l)
	}
	// Each line names its component once; the proxy's parts are named.
	seen := map[string]bool{}
	for _, line := range strings.Split(texts["logs"], "\n") {
		if n := strings.Count(line, " component="); n > 1 {
			t.Errorf("component named %d times: %s", n, line)
		}
		if _, rest, ok := strings.Cut(line, " component="); ok {
			seen[strings.Fields(rest)[0]] = true
		}
	}
	for _, c := range []string{"hooks", "sync", "api", "cloud", "assets", "fake-cloud", "fake-registry", "gateway"} {
		if !seen[c] {
			t.Errorf("no log line of component=%s (seen %v)", c, seen)
		}
	}
	if t.Failed() {
		t.Logf("%d log lines captured", strings.Count(texts["logs"], "\n"))
	}
}
