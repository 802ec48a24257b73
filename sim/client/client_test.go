package client_test

import (
	"context"
	"encoding/json"
	"errors"
	"io"
	"math/rand/v2"
	"net"
	"net/http"
	"net/http/httptest"
	"reflect"
	"sync/atomic"
	"testing"
	"time"

	"github.com/depharness/depharness/proxy/api"
	"github.com/depharness/depharness/sim/client"
	"github.com/depharness/depharness/sim/supervisortest"
)

const key = "s3cret"

func newSupervisor(t testing.TB) (*supervisortest.Server, *httptest.Server) {
	t.Helper()
	sup := supervisortest.New(key)
	srv := httptest.NewServer(sup.Handler())
	t.Cleanup(srv.Close)
	return sup, srv
}

func newClient(t testing.TB, base string, mode client.KeyMode, k string) *client.Client {
	t.Helper()
	c, err := client.New(client.Options{BaseURL: base, APIKey: k, KeyMode: mode})
	if err != nil {
		t.Fatal(err)
	}
	return c
}

func ctxT(t testing.TB) context.Context {
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	t.Cleanup(cancel)
	return ctx
}

func TestEveryEndpointWithKeyInQueryAndInHeader(t *testing.T) {
	for _, mode := range []struct {
		name string
		mode client.KeyMode
	}{{"key in query", client.KeyInQuery}, {"key in Authorization header", client.KeyInHeader}} {
		t.Run(mode.name, func(t *testing.T) {
			sup, srv := newSupervisor(t)
			sup.SetApp(13015, "edgeApp1", "c0ffee", []byte("tar bytes of c0ffee"))
			c := newClient(t, srv.URL, mode.mode, key)
			ctx := ctxT(t)

			if err := c.Ping(ctx); err != nil {
				t.Fatalf("Ping: %v", err)
			}
			apps, err := c.Apps(ctx)
			if err != nil || len(apps) != 1 || apps[0].ID != 13015 || apps[0].Commit != "c0ffee" {
				t.Fatalf("Apps: got %+v, %v; want app 13015 at c0ffee", apps, err)
			}
			p, err := c.Provision(ctx, 13015, "")
			if err != nil {
				t.Fatalf("Provision: %v", err)
			}
			if len(p.UUID) != 32 || p.DeviceType != api.DefaultDeviceType {
				t.Errorf("Provision: got %+v, want a 32-char uuid and device type %s", p, api.DefaultDeviceType)
			}
			ds, err := c.Devices(ctx)
			if err != nil || len(ds) != 1 || ds[0].UUID != p.UUID || ds[0].AppID != 13015 {
				t.Fatalf("Devices: got %+v, %v; want the provisioned device", ds, err)
			}
			d, err := c.Device(ctx, p.UUID)
			if err != nil || d.Name != p.Name {
				t.Fatalf("Device: got %+v, %v; want name %q", d, err, p.Name)
			}
			status, online, commit := "Idle", true, "c0ffee"
			d, err = c.UpdateDevice(ctx, p.UUID, api.DeviceUpdate{Status: &status, IsOnline: &online, Commit: &commit, Environment: api.Vars{"A": "1"}})
			if err != nil {
				t.Fatalf("UpdateDevice: %v", err)
			}
			if d.Status != "Idle" || d.IsOnline == nil || !*d.IsOnline || d.Commit == nil || *d.Commit != "c0ffee" || d.Environment["A"] != "1" {
				t.Errorf("UpdateDevice: got %+v, want Idle, online, c0ffee, A=1", d)
			}
			ts := int64(1472142960)
			if err := c.Log(ctx, p.UUID, api.LogEntry{Message: "detected movement", Timestamp: &ts}); err != nil {
				t.Fatalf("Log: %v", err)
			}
			if got := sup.Logs(p.UUID); len(got) != 1 || got[0].Message != "detected movement" || *got[0].Timestamp != ts {
				t.Errorf("Log: supervisor got %+v, want the one line", got)
			}
			a, err := c.Assets(ctx, 13015, "c0ffee", nil)
			if err != nil {
				t.Fatalf("Assets: %v", err)
			}
			body, _ := io.ReadAll(a)
			a.Close()
			if string(body) != "tar bytes of c0ffee" || a.ContentType != "application/x-tar" || a.StatusCode != 200 {
				t.Errorf("Assets: got %d %q %q, want 200 application/x-tar with the tar", a.StatusCode, a.ContentType, body)
			}
		})
	}
}

func TestAssetsRangeAndIfNoneMatch(t *testing.T) {
	sup, srv := newSupervisor(t)
	sup.SetApp(1, "a", "c1", []byte("0123456789"))
	c := newClient(t, srv.URL, client.KeyInQuery, key)
	ctx := ctxT(t)

	a, err := c.Assets(ctx, 1, "c1", &client.AssetRequest{Range: "bytes=2-4"})
	if err != nil {
		t.Fatal(err)
	}
	b, _ := io.ReadAll(a)
	a.Close()
	if a.StatusCode != http.StatusPartialContent || string(b) != "234" || a.ContentRange != "bytes 2-4/10" {
		t.Errorf("range: got %d %q %q, want 206 \"234\" bytes 2-4/10", a.StatusCode, b, a.ContentRange)
	}
	if a.ETag == "" {
		t.Fatal("got no ETag, want one")
	}
	a, err = c.Assets(ctx, 1, "c1", &client.AssetRequest{IfNoneMatch: a.ETag})
	if err != nil {
		t.Fatal(err)
	}
	a.Close()
	if !a.NotModified || a.StatusCode != http.StatusNotModified {
		t.Errorf("If-None-Match: got status %d NotModified=%v, want 304 true", a.StatusCode, a.NotModified)
	}
}

func TestErrorsAreTyped(t *testing.T) {
	sup, srv := newSupervisor(t)
	sup.SetApp(1, "a", "c1", []byte("x"))
	ctx := ctxT(t)
	c := newClient(t, srv.URL, client.KeyInHeader, key)
	p, err := c.Provision(ctx, 1, "")
	if err != nil {
		t.Fatal(err)
	}
	sup.MarkDeleted(p.UUID)
	status := "Idle"

	cases := []struct {
		name   string
		call   func() error
		is     func(error) bool
		status int
		body   string
	}{
		{"a wrong key is unauthorized", func() error { _, err := newClient(t, srv.URL, client.KeyInQuery, "wrong").Devices(ctx); return err }, client.IsUnauthorized, 401, api.ErrTextUnauthorized},
		{"no key is unauthorized", func() error { _, err := newClient(t, srv.URL, client.KeyInHeader, "").Apps(ctx); return err }, client.IsUnauthorized, 401, api.ErrTextUnauthorized},
		{"an unknown device is not found", func() error { _, err := c.Device(ctx, "nope"); return err }, client.IsNotFound, 404, api.ErrTextDeviceNotFound},
		{"a deleted device is gone", func() error { _, err := c.Device(ctx, p.UUID); return err }, client.IsGone, 410, api.ErrTextDeviceDeleted},
		{"an update of a deleted device is gone", func() error {
			_, err := c.UpdateDevice(ctx, p.UUID, api.DeviceUpdate{Status: &status})
			return err
		}, client.IsGone, 410, api.ErrTextDeviceDeleted},
		{"a log of an unknown device is not found", func() error { return c.Log(ctx, "nope", api.LogEntry{Message: "m"}) }, client.IsNotFound, 404, api.ErrTextDeviceNotFound},
		{"an empty update is a bad request", func() error { _, err := c.UpdateDevice(ctx, p.UUID, api.DeviceUpdate{}); return err }, client.IsBadRequest, 400, api.ErrTextNoAttributes},
		{"provisioning into a foreign app is a bad request", func() error { _, err := c.Provision(ctx, 99, ""); return err }, client.IsBadRequest, 400, api.ErrTextProvisioningFailed},
		{"assets of another commit are not found", func() error { _, err := c.Assets(ctx, 1, "old", nil); return err }, client.IsNotFound, 404, api.ErrTextNotFound},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			err := tc.call()
			var e *client.Error
			if !errors.As(err, &e) {
				t.Fatalf("got %v, want a *client.Error", err)
			}
			if !tc.is(err) || e.StatusCode != tc.status || e.Body != tc.body {
				t.Errorf("got %d %q, want %d %q", e.StatusCode, e.Body, tc.status, tc.body)
			}
		})
	}
}

func TestRetriesUnavailableWithBackoffUntilSuccess(t *testing.T) {
	sup, srv := newSupervisor(t)
	sup.SetApp(1, "a", "c1", []byte("x"))
	sup.FailNext(2, http.StatusServiceUnavailable)
	c, err := client.New(client.Options{BaseURL: srv.URL, APIKey: key,
		Retry: client.Retry{MaxAttempts: 5, Base: time.Millisecond, Max: 4 * time.Millisecond, Rand: rand.New(rand.NewPCG(1, 2))}})
	if err != nil {
		t.Fatal(err)
	}
	apps, err := c.Apps(ctxT(t))
	if err != nil || len(apps) != 1 {
		t.Fatalf("got %v, %v; want one app after two 503s", apps, err)
	}
	if got := sup.Requests(); got != 3 {
		t.Errorf("got %d requests, want 3", got)
	}
}

func TestDoesNotRetryWithoutRetryPolicy(t *testing.T) {
	sup, srv := newSupervisor(t)
	sup.FailNext(1, http.StatusServiceUnavailable)
	c := newClient(t, srv.URL, client.KeyInQuery, key)
	if _, err := c.Apps(ctxT(t)); !client.IsUnavailable(err) {
		t.Fatalf("got %v, want a 503 error", err)
	}
	if got := sup.Requests(); got != 1 {
		t.Errorf("got %d requests, want 1", got)
	}
}

func TestProvisionIsNotRetriedWhenTheAnswerIsLost(t *testing.T) {
	var posts atomic.Int32
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		posts.Add(1)
		// The request reached the server: drop the connection without an
		// answer, as a crash after provisioning would.
		conn, _, err := w.(http.Hijacker).Hijack()
		if err == nil {
			conn.Close()
		}
	}))
	t.Cleanup(srv.Close)
	c, err := client.New(client.Options{BaseURL: srv.URL, Retry: client.Retry{MaxAttempts: 4, Base: time.Millisecond}})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := c.Provision(ctxT(t), 1, ""); err == nil {
		t.Fatal("got no error, want the connection failure")
	}
	if got := posts.Load(); got != 1 {
		t.Errorf("got %d POSTs, want 1 (a lost answer may have provisioned a device)", got)
	}
}

func TestRetriesARefusedConnectionUntilTheContextIsDone(t *testing.T) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := l.Addr().String()
	l.Close() // nothing listens there now
	c, err := client.New(client.Options{BaseURL: "http://" + addr, Retry: client.Retry{MaxAttempts: -1, Base: time.Millisecond, Max: 2 * time.Millisecond}})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 50*time.Millisecond)
	defer cancel()
	start := time.Now()
	_, err = c.Provision(ctx, 1, "")
	if err == nil {
		t.Fatal("got no error, want a connection error")
	}
	if time.Since(start) < 40*time.Millisecond {
		t.Errorf("gave up after %v, want retries until the context's deadline", time.Since(start))
	}
}

func TestNewRejectsABadBaseURL(t *testing.T) {
	for _, base := range []string{"", "ftp://x", "://"} {
		if _, err := client.New(client.Options{BaseURL: base}); err == nil {
			t.Errorf("New(%q): got no error, want one", base)
		}
	}
}

func TestUpdateDeviceSendsAnEmptyEnvironmentAsAnObject(t *testing.T) {
	var got map[string]any
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if err := json.NewDecoder(r.Body).Decode(&got); err != nil {
			t.Errorf("decoding body: %v", err)
		}
		w.Write([]byte(`{"uuid":"u"}`))
	}))
	t.Cleanup(srv.Close)
	c := newClient(t, srv.URL, client.KeyInHeader, key)
	commit := "c1"
	if _, err := c.UpdateDevice(ctxT(t), "u", api.DeviceUpdate{Commit: &commit, Environment: api.Vars{}}); err != nil {
		t.Fatal(err)
	}
	want := map[string]any{"commit": "c1", "environment": map[string]any{}}
	if !reflect.DeepEqual(got, want) {
		t.Errorf("got body %v, want %v (config nil so absent, environment empty so {})", got, want)
	}
}
