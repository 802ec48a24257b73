package client_test

import (
	"archive/tar"
	"bytes"
	"context"
	"io"
	"net/http"
	"net/http/httptest"
	"testing"
	"time"

	"github.com/depharness/depharness/api"
	"github.com/depharness/depharness/internal/testkit"
	"github.com/depharness/depharness/sim/client"
	"github.com/depharness/depharness/sim/fleet"
	"github.com/depharness/depharness/world"
)

// target is a supervisor the client's tests run against: the same test
// body checks the in-memory supervisortest and the reference proxy (started
// in-process by package world, and spoken to over HTTP like any other).
type target struct {
	url, key string
	appID    int64
	commit   string
	// checksum is fleet.Checksum of the app's assets.
	checksum string
	// foreignApp is an app id the supervisor must refuse to provision into.
	foreignApp int64
	// deleteDevice removes a device from the supervisor's target, so that
	// it awaits its delete acknowledgement (410).
	deleteDevice func(t *testing.T, uuid string)
}

func memoryTarget(t *testing.T) target {
	sup, srv := newSupervisor(t)
	files := map[string][]byte{"firmware.bin": []byte("v1 firmware"), ".hidden": []byte("dotfile")}
	var buf bytes.Buffer
	tw := tar.NewWriter(&buf)
	for name, b := range files {
		tw.WriteHeader(&tar.Header{Name: name, Typeflag: tar.TypeReg, Mode: 0o644, Size: int64(len(b))})
		tw.Write(b)
	}
	tw.Close()
	sup.SetApp(13015, "edgeApp1", "c0ffee", buf.Bytes())
	return target{url: srv.URL, key: key, appID: 13015, commit: "c0ffee", checksum: fleet.ChecksumFiles(files), foreignApp: 99,
		deleteDevice: func(t *testing.T, uuid string) { sup.MarkDeleted(uuid) }}
}

func proxyTarget(t *testing.T) target {
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	t.Cleanup(cancel)
	// The hooks go to a gateway app that refuses them all, so that a
	// deleted device keeps awaiting its delete acknowledgement (410).
	refuser := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		http.Error(w, "not now", http.StatusServiceUnavailable)
	}))
	t.Cleanup(refuser.Close)
	st, err := world.StartStack(ctx, world.StackOptions{
		Proxy: world.ProxyOptions{DataDir: t.TempDir(), PollInterval: 50 * time.Millisecond, HookRetryInterval: 100 * time.Millisecond,
			HookAddress: refuser.URL + "/v1/devices/"},
		NoGateway: true,
		Demo:      true,
	})
	if err != nil {
		t.Fatalf("starting the reference proxy: %v", err)
	}
	t.Cleanup(func() { st.Close() })
	app := st.Apps[0]
	c := newClient(t, st.Proxy.URL, client.KeyInQuery, st.Proxy.APIKey)
	testkit.Eventually(t, "the proxy lists the demo app's release", func() bool {
		apps, err := c.Apps(ctx)
		for _, a := range apps {
			if a.ID == app.App.ID && a.Commit == app.Release.Commit {
				return true
			}
		}
		_ = err
		return false
	})
	return target{url: st.Proxy.URL, key: st.Proxy.APIKey, appID: app.App.ID, commit: app.Release.Commit, checksum: app.Checksum,
		foreignApp: 987654,
		deleteDevice: func(t *testing.T, uuid string) {
			// Removed from the target means first in it: wait until the proxy
			// applied a target holding the device (its target environment
			// then carries the app's variables). Deleting it earlier can go
			// unnoticed: the cloud's target is then back to the content the
			// proxy last applied, the poll answers 304 and the device is never
			// marked for deletion (reported to the proxy's owners).
			testkit.Eventually(t, "the proxy has the device in its target", func() bool {
				d, err := c.Device(ctx, uuid)
				return err == nil && len(d.TargetEnvironment) > 0
			})
			if err := st.Cloud.DeleteDevice(uuid); err != nil {
				t.Fatal(err)
			}
		}}
}

func TestEveryEndpointAgainstEveryTarget(t *testing.T) {
	targets := []struct {
		name  string
		start func(*testing.T) target
	}{
		{"in-memory supervisor", memoryTarget},
		{"reference proxy", proxyTarget},
	}
	for _, tg := range targets {
		t.Run(tg.name, func(t *testing.T) {
			tgt := tg.start(t)
			for _, mode := range []struct {
				name string
				mode client.KeyMode
			}{{"key in query", client.KeyInQuery}, {"key in Authorization header", client.KeyInHeader}} {
				t.Run(mode.name, func(t *testing.T) { everyEndpoint(t, tgt, newClient(t, tgt.url, mode.mode, tgt.key)) })
			}
			t.Run("errors are typed", func(t *testing.T) { typedErrors(t, tgt) })
		})
	}
}

func everyEndpoint(t *testing.T, tgt target, c *client.Client) {
	ctx := ctxT(t)
	if err := c.Ping(ctx); err != nil {
		t.Fatalf("Ping: %v", err)
	}
	apps, err := c.Apps(ctx)
	if err != nil {
		t.Fatalf("Apps: %v", err)
	}
	found := false
	for _, a := range apps {
		found = found || (a.ID == tgt.appID && a.Commit == tgt.commit && a.Config != nil)
	}
	if !found {
		t.Fatalf("Apps: got %+v, want app %d at %s with a config object", apps, tgt.appID, tgt.commit)
	}
	p, err := c.Provision(ctx, tgt.appID, "")
	if err != nil {
		t.Fatalf("Provision: %v", err)
	}
	if len(p.UUID) != 32 || p.DeviceType != api.DefaultDeviceType || p.Name == "" {
		t.Errorf("Provision: got %+v, want a 32-char uuid, a name and device type %s", p, api.DefaultDeviceType)
	}
	ds, err := c.Devices(ctx)
	if err != nil {
		t.Fatalf("Devices: %v", err)
	}
	listed := false
	for _, d := range ds {
		listed = listed || (d.UUID == p.UUID && d.AppID == tgt.appID)
	}
	if !listed {
		t.Errorf("Devices: got %+v, want the provisioned device of app %d", ds, tgt.appID)
	}
	d, err := c.Device(ctx, p.UUID)
	if err != nil || d.Name != p.Name {
		t.Fatalf("Device: got %+v, %v; want name %q", d, err, p.Name)
	}
	status, online, commit := "Idle", true, tgt.commit
	d, err = c.UpdateDevice(ctx, p.UUID, api.DeviceUpdate{Status: &status, IsOnline: &online, Commit: &commit, Environment: api.Vars{"A": "1"}, Config: api.Vars{}})
	if err != nil {
		t.Fatalf("UpdateDevice: %v", err)
	}
	if d.Status != "Idle" || d.IsOnline == nil || !*d.IsOnline || d.Commit == nil || *d.Commit != tgt.commit || d.Environment["A"] != "1" || d.Config == nil || len(d.Config) != 0 {
		t.Errorf("UpdateDevice: got %+v, want Idle, online, %s, A=1, config {}", d, tgt.commit)
	}
	ts := int64(1472142960000)
	if err := c.Log(ctx, p.UUID, api.LogEntry{Message: "detected movement", Timestamp: &ts}); err != nil {
		t.Fatalf("Log: %v", err)
	}
	a, err := c.Assets(ctx, tgt.appID, tgt.commit, nil)
	if err != nil {
		t.Fatalf("Assets: %v", err)
	}
	body, err := io.ReadAll(a)
	a.Close()
	if err != nil || a.StatusCode != 200 || a.ContentType != "application/x-tar" {
		t.Fatalf("Assets: got %d %q, %v; want 200 application/x-tar", a.StatusCode, a.ContentType, err)
	}
	if sum, err := fleet.Checksum(bytes.NewReader(body)); err != nil || sum != tgt.checksum {
		t.Errorf("Assets: got checksum %s, %v; want the release's %s", sum, err, tgt.checksum)
	}
}

func typedErrors(t *testing.T, tgt target) {
	ctx := ctxT(t)
	c := newClient(t, tgt.url, client.KeyInHeader, tgt.key)
	p, err := c.Provision(ctx, tgt.appID, "")
	if err != nil {
		t.Fatal(err)
	}
	tgt.deleteDevice(t, p.UUID)
	testkit.Eventually(t, "the deleted device answers 410", func() bool {
		_, err := c.Device(ctx, p.UUID)
		return client.IsGone(err)
	})
	status := "Idle"
	cases := []struct {
		name   string
		call   func() error
		is     func(error) bool
		status int
		body   string
	}{
		{"a wrong key is unauthorized", func() error { _, err := newClient(t, tgt.url, client.KeyInQuery, "wrong").Devices(ctx); return err }, client.IsUnauthorized, 401, api.ErrTextUnauthorized},
		{"no key is unauthorized", func() error { _, err := newClient(t, tgt.url, client.KeyInHeader, "").Apps(ctx); return err }, client.IsUnauthorized, 401, api.ErrTextUnauthorized},
		{"an unknown device is not found", func() error { _, err := c.Device(ctx, "0123456789abcdef0123456789abcdef"); return err }, client.IsNotFound, 404, api.ErrTextDeviceNotFound},
		{"a deleted device is gone", func() error { _, err := c.Device(ctx, p.UUID); return err }, client.IsGone, 410, api.ErrTextDeviceDeleted},
		{"an update of a deleted device is gone", func() error {
			_, err := c.UpdateDevice(ctx, p.UUID, api.DeviceUpdate{Status: &status})
			return err
		}, client.IsGone, 410, api.ErrTextDeviceDeleted},
		{"a log of an unknown device is not found", func() error { return c.Log(ctx, "0123456789abcdef0123456789abcdef", api.LogEntry{Message: "m"}) }, client.IsNotFound, 404, api.ErrTextDeviceNotFound},
		{"an empty update is a bad request", func() error {
			_, err := c.UpdateDevice(ctx, "0123456789abcdef0123456789abcdef", api.DeviceUpdate{})
			return err
		}, client.IsBadRequest, 400, api.ErrTextNoAttributes},
		{"provisioning into a foreign app is a bad request", func() error { _, err := c.Provision(ctx, tgt.foreignApp, ""); return err }, client.IsBadRequest, 400, api.ErrTextProvisioningFailed},
		{"assets of another commit are not found", func() error { _, err := c.Assets(ctx, tgt.appID, "0ld", nil); return err }, client.IsNotFound, 404, api.ErrTextNotFound},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			err := tc.call()
			var e *client.Error
			if !errorsAs(err, &e) {
				t.Fatalf("got %v, want a *client.Error", err)
			}
			if !tc.is(err) || e.StatusCode != tc.status || e.Body != tc.body {
				t.Errorf("got %d %q, want %d %q", e.StatusCode, e.Body, tc.status, tc.body)
			}
		})
	}
}
