package refproxy

import (
	"context"
	"fmt"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"os/exec"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/depharness/depharness/api"
	cloudapi "github.com/depharness/depharness/api/cloud"
	"github.com/depharness/depharness/fakes/cloud"
	"github.com/depharness/depharness/sim/client"
	"github.com/depharness/depharness/world"
)

// hookLog records the update hooks a gateway app received, per device.
type hookLog struct {
	mu    sync.Mutex
	times map[string][]time.Time
}

func (h *hookLog) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	uuid := strings.TrimPrefix(r.URL.Path, "/v1/devices/")
	if r.Method == http.MethodPut && !strings.Contains(uuid, "/") {
		h.mu.Lock()
		h.times[uuid] = append(h.times[uuid], time.Now())
		h.mu.Unlock()
		w.WriteHeader(http.StatusAccepted) // report later: the loop goes on until then
		return
	}
	w.WriteHeader(http.StatusOK)
}

func (h *hookLog) since(uuid string, t time.Time) int {
	h.mu.Lock()
	defer h.mu.Unlock()
	n := 0
	for _, at := range h.times[uuid] {
		if at.After(t) {
			n++
		}
	}
	return n
}

// childProxy is the reference proxy as a child process of this test binary.
type childProxy struct {
	t   *testing.T
	env []string
	cmd *exec.Cmd
	url string
}

func (c *childProxy) start(ctx context.Context) {
	c.t.Helper()
	self, err := os.Executable()
	if err != nil {
		c.t.Fatal(err)
	}
	c.cmd = exec.Command(self)
	c.cmd.Env = append(os.Environ(), append([]string{TriggerEnv + "=1"}, c.env...)...)
	c.cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	if err := c.cmd.Start(); err != nil {
		c.t.Fatal(err)
	}
	deadline := time.Now().Add(20 * time.Second)
	for {
		resp, err := http.Get(c.url + "/ping")
		if err == nil {
			resp.Body.Close()
			if resp.StatusCode == 200 {
				return
			}
		}
		if time.Now().After(deadline) || ctx.Err() != nil {
			c.t.Fatalf("the proxy did not answer /ping: %v", err)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

func (c *childProxy) kill() {
	syscall.Kill(-c.cmd.Process.Pid, syscall.SIGKILL)
	c.cmd.Wait()
}

func freeLoopbackPort(t *testing.T) int {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	return ln.Addr().(*net.TCPAddr).Port
}

// TestBusyProxyKilledLosesNoAcknowledgedReportAndNoPendingHook SIGKILLs the
// reference proxy while gateway reports pour in and update hooks loop, then
// restarts it on the same DATA_DIR: every report answered 200 is still
// there and reaches the cloud, a target the gateway reported is never hooked
// again, and every target still owed is hooked again.
func TestBusyProxyKilledLosesNoAcknowledgedReportAndNoPendingHook(t *testing.T) {
	if testing.Short() {
		t.Skip("starts the proxy as a process twice; run without -short")
	}
	ctx, cancel := context.WithTimeout(context.Background(), 90*time.Second)
	defer cancel()
	fk, err := world.StartFakes(ctx, world.FakesOptions{Seed: 3})
	if err != nil {
		t.Fatal(err)
	}
	defer fk.Close()
	gw, err := fk.Cloud.CreateGateway(cloud.GatewaySpec{})
	if err != nil {
		t.Fatal(err)
	}
	app, err := fk.Cloud.CreateApp(cloud.AppSpec{Gateway: gw.UUID})
	if err != nil {
		t.Fatal(err)
	}
	rel, err := fk.Cloud.PushRelease(ctx, app.ID, cloud.ReleaseSpec{Layers: []cloud.Layer{{Files: map[string][]byte{"assets/fw.bin": []byte("v1")}}}})
	if err != nil {
		t.Fatal(err)
	}
	hooks := &hookLog{times: map[string][]time.Time{}}
	recv := httptest.NewServer(hooks)
	defer recv.Close()

	const retry = 200 * time.Millisecond
	port := freeLoopbackPort(t)
	p := &childProxy{t: t, url: "http://127.0.0.1:" + strconv.Itoa(port), env: []string{
		"API_ENDPOINT=" + fk.CloudURL, "DEVICE_UUID=" + gw.UUID, "DEVICE_ID=" + strconv.FormatInt(gw.DeviceID, 10),
		"DEVICE_API_KEY=" + gw.APIKey, "BALENA_SUPERVISOR_API_KEY=k", "BALENA_SUPERVISOR_PORT=" + strconv.Itoa(port),
		"BALENA_DEPENDENT_DEVICES_HOOK_ADDRESS=" + recv.URL + "/v1/devices/", "DATA_DIR=" + t.TempDir(),
		"TARGET_POLL_INTERVAL=100ms", "HOOK_RETRY_INTERVAL=" + retry.String(), "HOOK_TIMEOUT=1s", "METRICS_ADDRESS=off",
	}}
	p.start(ctx)
	defer func() {
		if p.cmd.ProcessState == nil {
			p.kill()
		}
	}()
	c, err := client.New(client.Options{BaseURL: p.url, APIKey: "k"})
	if err != nil {
		t.Fatal(err)
	}

	const n = 40
	uuids := make([]string, n)
	for i := range uuids {
		d, err := c.Provision(ctx, app.ID, "")
		if err != nil {
			t.Fatal(err)
		}
		uuids[i] = d.UUID
	}
	for _, u := range uuids { // every device is in its 202 loop
		for hooks.since(u, time.Time{}) == 0 {
			if ctx.Err() != nil {
				t.Fatalf("device %s got no update hook", u)
			}
			time.Sleep(20 * time.Millisecond)
		}
	}

	// The busy run: each device's status is counted up by PUT; the even
	// devices report the target (ending their loop). Record what the
	// proxy acknowledged.
	var mu sync.Mutex
	acked := map[string]int{}
	reported := map[string]bool{}
	stop := make(chan struct{})
	var wg sync.WaitGroup
	for w := 0; w < 8; w++ {
		wg.Go(func() {
			for k := 1; ; k++ {
				for i := w; i < n; i += 8 {
					select {
					case <-stop:
						return
					default:
					}
					u, status := uuids[i], fmt.Sprintf("s-%d", k)
					upd := api.DeviceUpdate{Status: &status}
					if i%2 == 0 {
						upd.Commit, upd.Environment, upd.Config = &rel.Commit, api.Vars{}, api.Vars{}
					}
					if _, err := c.UpdateDevice(ctx, u, upd); err != nil {
						continue // the proxy is being killed
					}
					mu.Lock()
					acked[u] = k
					if i%2 == 0 {
						reported[u] = true
					}
					mu.Unlock()
				}
			}
		})
	}
	time.Sleep(700 * time.Millisecond)
	p.kill()
	close(stop)
	wg.Wait()
	if len(acked) < n {
		t.Fatalf("only %d of %d devices had a report acknowledged before the kill; the run was not busy", len(acked), n)
	}

	restarted := time.Now()
	p.start(ctx)
	owed := map[string]bool{}
	for _, u := range uuids {
		d, err := c.Device(ctx, u)
		if err != nil {
			t.Fatalf("device %s after the restart: %v", u, err)
		}
		got, _ := strconv.Atoi(strings.TrimPrefix(d.Status, "s-"))
		// A report in flight at the kill may have been stored unanswered.
		if got < acked[u] || got > acked[u]+1 {
			t.Errorf("device %s status after the restart = %q, want s-%d (acknowledged) or s-%d (in flight)", u, d.Status, acked[u], acked[u]+1)
		}
		owed[u] = d.Commit == nil || *d.Commit != rel.Commit
		if reported[u] && owed[u] {
			t.Errorf("device %s commit after the restart = %v, want the reported %s", u, d.Commit, rel.Commit)
		}
	}
	// Owed targets are hooked again; reported ones (acknowledged, or stored
	// from a report in flight) never.
	time.Sleep(6 * retry)
	for _, u := range uuids {
		got := hooks.since(u, restarted)
		switch {
		case !owed[u] && got > 0:
			t.Errorf("device %s reported its target before the kill, yet got %d update hooks after the restart", u, got)
		case owed[u] && got == 0:
			t.Errorf("device %s still owed its target, yet got no update hook after the restart", u)
		}
	}
	// Every stored report reaches the cloud.
	for _, u := range uuids {
		d, err := c.Device(ctx, u)
		if err != nil {
			t.Fatal(err)
		}
		if _, err := fk.Cloud.AwaitDevice(ctx, u, func(cd cloudapi.Device) bool { return cd.Status == d.Status }); err != nil {
			t.Errorf("the cloud never saw device %s with status %q: %v", u, d.Status, err)
		}
	}
}
