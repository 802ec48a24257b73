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
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/depharness/depharness/api"
	"github.com/depharness/depharness/internal/testkit"
	"github.com/depharness/depharness/sim/client"
	"github.com/depharness/depharness/sim/supervisortest"
)

const key = "s3cret"

func newSupervisor(t testing.TB) (*supervisortest.Server, *httptest.Server) {
	t.Helper()
	sup := supervisortest.New(key)
	srv := testkit.Server(t, sup.Handler())
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
	addr := testkit.FreeAddr(t)
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

func TestReportSendsTheUpdateAndReusesTheConnectionWithoutDecoding(t *testing.T) {
	var bodies []map[string]any
	var conns sync.Map
	srv := httptest.NewUnstartedServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		var got map[string]any
		if err := json.NewDecoder(r.Body).Decode(&got); err != nil {
			t.Errorf("decoding body: %v", err)
		}
		if r.Method != http.MethodPut || r.URL.Path != "/v1/devices/u" || r.URL.Query().Get("apikey") != key {
			t.Errorf("got %s %s, want PUT /v1/devices/u?apikey=…", r.Method, r.URL)
		}
		bodies = append(bodies, got)
		w.Write([]byte(`not JSON: a report's answer is not read`))
	}))
	srv.Config.ConnState = func(c net.Conn, st http.ConnState) {
		if st == http.StateNew {
			conns.Store(c, true)
		}
	}
	srv.Start()
	t.Cleanup(srv.Close)
	c := newClient(t, srv.URL, client.KeyInQuery, key)
	status := "Idle"
	for range 3 {
		if err := c.Report(ctxT(t), "u", api.DeviceUpdate{Status: &status}); err != nil {
			t.Fatal(err)
		}
	}
	if len(bodies) != 3 || bodies[0]["status"] != "Idle" {
		t.Errorf("got bodies %v, want three with status Idle", bodies)
	}
	n := 0
	conns.Range(func(any, any) bool { n++; return true })
	if n != 1 {
		t.Errorf("three reports used %d connections, want 1 (each answer read to its end)", n)
	}
}

func errorsAs(err error, target **client.Error) bool { return errors.As(err, target) }

func TestTransportErrorsNeverCarryTheKey(t *testing.T) {
	addr := testkit.FreeAddr(t) // every request fails in the transport
	for _, mode := range []client.KeyMode{client.KeyInQuery, client.KeyInHeader} {
		c := newClient(t, "http://"+addr, mode, key)
		for name, call := range map[string]func() error{
			"ping":    func() error { return c.Ping(ctxT(t)) },
			"devices": func() error { _, err := c.Devices(ctxT(t)); return err },
		} {
			err := call()
			if err == nil {
				t.Fatalf("mode %d, %s: got no error, want a connection error", mode, name)
			}
			if strings.Contains(err.Error(), key) {
				t.Errorf("mode %d, %s: error %q carries the API key", mode, name, err)
			}
			if !strings.Contains(err.Error(), addr) {
				t.Errorf("mode %d, %s: error %q does not name the address any more, want it kept", mode, name, err)
			}
		}
	}
}
