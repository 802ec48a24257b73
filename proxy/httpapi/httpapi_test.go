package httpapi

import (
	"errors"
	"io"
	"net/http"
	"strings"
	"testing"

	"github.com/depharness/depharness/api"
	"github.com/depharness/depharness/internal/promreg/promtest"
	"github.com/depharness/depharness/proxy/store"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"
)

func TestNewRequiresItsDependencies(t *testing.T) {
	st, err := store.Open(t.TempDir(), store.Options{})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { st.Close() })
	full := Options{Store: st, Cloud: &fakeCloud{}, Assets: &fakeAssets{}, APIKey: "k"}
	for _, tc := range []struct {
		name string
		mod  func(*Options)
	}{
		{"no store", func(o *Options) { o.Store = nil }},
		{"no cloud", func(o *Options) { o.Cloud = nil }},
		{"no assets", func(o *Options) { o.Assets = nil }},
		{"no API key (every route would be open)", func(o *Options) { o.APIKey = "" }},
	} {
		t.Run(tc.name, func(t *testing.T) {
			o := full
			tc.mod(&o)
			if _, err := New(o); err == nil {
				t.Fatal("New succeeded, want error")
			}
		})
	}
	if _, err := New(full); err != nil {
		t.Fatalf("New with every dependency: %v", err)
	}
}

// AUTH-1.
func TestEveryRouteNeedsTheKey(t *testing.T) {
	e := newEnv(t)
	routes := []struct{ method, path string }{
		{"GET", "/"},
		{"GET", "/v1/dependent-apps"},
		{"GET", "/v1/dependent-apps/1/assets/c1"},
		{"GET", "/v1/devices"},
		{"POST", "/v1/devices"},
		{"GET", "/v1/devices/abc"},
		{"PUT", "/v1/devices/abc"},
		{"POST", "/v1/devices/abc/logs"},
		{"GET", "/no/such/path"},
		{"DELETE", "/v1/devices/abc"},
		{"GET", "//v1/devices"},
		{"GET", "//"},
		{"GET", "/v1/devices/./x"},
		{"GET", "/v1/../v1/devices"},
	}
	creds := []struct {
		name  string
		query string
		hdr   http.Header
	}{
		{"no key at all", "", nil},
		{"a wrong key in the query", "?apikey=wrong", nil},
		{"an empty key in the query", "?apikey=", nil},
		{"a wrong bearer key", "", http.Header{"Authorization": {"Bearer wrong"}}},
		{"the key under an unknown scheme", "", http.Header{"Authorization": {"Basic " + testKey}}},
		{"the key without a scheme", "", http.Header{"Authorization": {testKey}}},
		{"a prefix of the key", "?apikey=" + testKey[:5], nil},
		{"the key with a suffix", "?apikey=" + testKey + "x", nil},
	}
	for _, rt := range routes {
		for _, c := range creds {
			t.Run(rt.method+" "+rt.path+" with "+c.name+" answers 401", func(t *testing.T) {
				code, body := e.raw(rt.method, rt.path+c.query, "", c.hdr)
				if code != http.StatusUnauthorized || body != api.ErrTextUnauthorized {
					t.Fatalf("got %d %q, want 401 %q", code, body, api.ErrTextUnauthorized)
				}
			})
		}
	}
}

// AUTH-1: the accepted ways to send the key.
func TestTheKeyIsAcceptedInQueryOrHeader(t *testing.T) {
	e := newEnv(t)
	for _, tc := range []struct {
		name  string
		query string
		hdr   http.Header
	}{
		{"query apikey", "?apikey=" + testKey, nil},
		{"Bearer header", "", http.Header{"Authorization": {"Bearer " + testKey}}},
		{"ApiKey header", "", http.Header{"Authorization": {"ApiKey " + testKey}}},
		{"lower-case bearer scheme", "", http.Header{"Authorization": {"bearer " + testKey}}},
		{"upper-case APIKEY scheme", "", http.Header{"Authorization": {"APIKEY " + testKey}}},
		{"right query key beside a wrong header", "?apikey=" + testKey, http.Header{"Authorization": {"Bearer nope"}}},
	} {
		t.Run(tc.name+" is accepted", func(t *testing.T) {
			code, body := e.raw("GET", "/v1/devices"+tc.query, "", tc.hdr)
			if code != http.StatusOK || body != "[]" {
				t.Fatalf("got %d %q, want 200 []", code, body)
			}
		})
	}
	t.Run("an unknown path with the key answers 404 Not found", func(t *testing.T) {
		code, body := e.do("GET", "/no/such/path", "")
		if code != http.StatusNotFound || body != api.ErrTextNotFound {
			t.Fatalf("got %d %q, want 404 %q", code, body, api.ErrTextNotFound)
		}
	})
	t.Run("a known path with another method answers 404 Not found", func(t *testing.T) {
		code, body := e.do("DELETE", "/v1/devices", "")
		if code != http.StatusNotFound || body != api.ErrTextNotFound {
			t.Fatalf("got %d %q, want 404 %q", code, body, api.ErrTextNotFound)
		}
	})
}

// AUTH-3.
func TestPingIsOpen(t *testing.T) {
	e := newEnv(t)
	code, body := e.raw("GET", "/ping", "", nil)
	if code != http.StatusOK || body != "OK" {
		t.Fatalf("GET /ping without key: got %d %q, want 200 OK", code, body)
	}
	code, body = e.do("GET", "/ping", "")
	if code != http.StatusOK || body != "OK" {
		t.Fatalf("GET /ping with key: got %d %q, want 200 OK", code, body)
	}
}

// AUTH-2: the key never shows in logs, metrics or error bodies.
func TestTheKeyNeverLeaks(t *testing.T) {
	e := newEnv(t)
	e.assets.fail = errors.New("registry down: " + "no key here")
	e.applyTarget(map[int64]map[string]string{1: nil}, nil, nil)
	e.setCurrent(1, "c1")
	var bodies []string
	for _, r := range []struct{ method, path, body string }{
		{"GET", "/v1/dependent-apps/1/assets/c1", ""}, // 503, logged as an error
		{"PUT", "/v1/devices/nope", `{"status":"x"}`}, // 404
		{"PUT", "/v1/devices/nope", `{bad`},           // 400, logged at debug
		{"GET", "/nope", ""},
	} {
		_, b := e.do(r.method, r.path, r.body)
		bodies = append(bodies, b)
	}
	_, b := e.raw("GET", "/v1/devices?apikey="+testKey+"x", "", nil)
	bodies = append(bodies, b)
	for _, b := range bodies {
		if strings.Contains(b, testKey) {
			t.Errorf("body %q holds the key", b)
		}
	}
	if logs := e.logs.String(); strings.Contains(logs, testKey) || !strings.Contains(logs, "registry down") {
		t.Errorf("logs hold the key or miss the 503's cause:\n%s", logs)
	}
	promtest.CheckHygiene(t, e.reg, testKey)
}

// ERR-1, ERR-2: unexpected failures are 503 with a plain-text body.
func TestUnexpectedFailuresAre503(t *testing.T) {
	t.Run("an assets failure answers 503", func(t *testing.T) {
		e := newEnv(t)
		e.assets.fail = errors.New("boom")
		e.applyTarget(map[int64]map[string]string{1: nil}, nil, nil)
		e.setCurrent(1, "c1")
		code, body := e.do("GET", "/v1/dependent-apps/1/assets/c1", "")
		if code != http.StatusServiceUnavailable || body != api.ErrTextServiceUnavailable {
			t.Fatalf("got %d %q, want 503 %q", code, body, api.ErrTextServiceUnavailable)
		}
	})
	t.Run("a panic answers 503 and the server keeps serving", func(t *testing.T) {
		e := newEnv(t)
		e.assets.panic = true
		e.applyTarget(map[int64]map[string]string{1: nil}, nil, nil)
		e.setCurrent(1, "c1")
		code, body := e.do("GET", "/v1/dependent-apps/1/assets/c1", "")
		if code != http.StatusServiceUnavailable || body != api.ErrTextServiceUnavailable {
			t.Fatalf("got %d %q, want 503", code, body)
		}
		if code, _ := e.do("GET", "/v1/devices", ""); code != http.StatusOK {
			t.Fatalf("after the panic: got %d, want 200", code)
		}
	})
	t.Run("a closed store answers 503 on every data route", func(t *testing.T) {
		e := newEnv(t)
		e.store.Close()
		for _, r := range []struct{ method, path, body string }{
			{"GET", "/v1/devices", ""},
			{"GET", "/v1/devices/x", ""},
			{"PUT", "/v1/devices/x", `{"status":"s"}`},
			{"POST", "/v1/devices/x/logs", `{"message":"m"}`},
			{"POST", "/v1/devices", `{"appId":1}`},
			{"GET", "/v1/dependent-apps", ""},
			{"GET", "/v1/dependent-apps/1/assets/c", ""},
		} {
			code, body := e.do(r.method, r.path, r.body)
			if code != http.StatusServiceUnavailable || body != api.ErrTextServiceUnavailable {
				t.Errorf("%s %s: got %d %q, want 503", r.method, r.path, code, body)
			}
		}
	})
	t.Run("error bodies are plain text", func(t *testing.T) {
		e := newEnv(t)
		req, _ := http.NewRequest("GET", e.srv.URL+"/v1/devices/nope?apikey="+testKey, nil)
		resp, err := e.srv.Client().Do(req)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		if ct := resp.Header.Get("Content-Type"); ct != "text/plain; charset=utf-8" {
			t.Errorf("Content-Type = %q, want text/plain; charset=utf-8", ct)
		}
	})
}

// BODY-1.
func TestBodies(t *testing.T) {
	e := newEnv(t)
	uuid := e.provision(1)
	big := `{"status":"` + strings.Repeat("x", int(api.MaxBodyBytes)) + `"}`
	for _, r := range []struct{ method, path string }{
		{"PUT", "/v1/devices/" + uuid},
		{"POST", "/v1/devices"},
		{"POST", "/v1/devices/" + uuid + "/logs"},
	} {
		for _, tc := range []struct {
			name     string
			body     string
			wantCode int
			wantText string
		}{
			{"malformed JSON answers 400", `{"status":`, 400, api.ErrTextMalformedJSON},
			{"trailing garbage answers 400", `{"status":"a"} x`, 400, api.ErrTextMalformedJSON},
			{"a JSON array answers 400", `[1]`, 400, api.ErrTextMalformedJSON},
			{"JSON null answers 400", `null`, 400, api.ErrTextMalformedJSON},
			{"a body over 10 MiB answers 413", big, 413, api.ErrTextBodyTooLarge},
		} {
			t.Run(r.method+" "+r.path+": "+tc.name, func(t *testing.T) {
				code, body := e.do(r.method, r.path, tc.body)
				if code != tc.wantCode || body != tc.wantText {
					t.Fatalf("got %d %q, want %d %q", code, body, tc.wantCode, tc.wantText)
				}
			})
		}
	}
	t.Run("a chunked body over 10 MiB answers 413", func(t *testing.T) {
		pr, pw := io.Pipe()
		go func() {
			pw.Write([]byte(big))
			pw.Close()
		}()
		req, _ := http.NewRequest("PUT", e.srv.URL+"/v1/devices/"+uuid+"?apikey="+testKey, pr)
		req.ContentLength = -1
		resp, err := e.srv.Client().Do(req)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		if resp.StatusCode != 413 {
			t.Fatalf("got %d, want 413", resp.StatusCode)
		}
	})
	if d := e.device(uuid); d.Status != "Provisioned" {
		t.Errorf("status after rejected bodies = %q, want Provisioned", d.Status)
	}
}

func TestMetricsUseRouteTemplatesAndLintClean(t *testing.T) {
	e := newEnv(t)
	uuid := e.provision(1)
	e.do("GET", "/v1/devices/"+uuid, "")
	e.do("GET", "/v1/devices/"+uuid, "")
	e.do("GET", "/v1/devices/nope", "")
	e.raw("GET", "/v1/devices/"+uuid, "", nil)
	e.do("GET", "/some/"+uuid, "")
	e.raw("GET", "/ping", "", nil)
	for _, tc := range []struct {
		route, method, code string
		want                float64
	}{
		{"/v1/devices/{uuid}", "GET", "200", 2},
		{"/v1/devices/{uuid}", "GET", "404", 1},
		{"/v1/devices/{uuid}", "GET", "401", 1},
		{"/v1/devices", "POST", "201", 1},
		{"other", "GET", "404", 1},
		{"/ping", "GET", "200", 1},
	} {
		if got := testutil.ToFloat64(e.h.metrics.requests.Count.WithLabelValues(tc.route, tc.method, tc.code)); got != tc.want {
			t.Errorf("requests{%s,%s,%s} = %v, want %v", tc.route, tc.method, tc.code, got, tc.want)
		}
	}
	promtest.CheckHygiene(t, e.reg, uuid)
}

func TestMetricsAreSharedOnOneRegistry(t *testing.T) {
	reg := prometheus.NewRegistry()
	for i := 0; i < 2; i++ {
		if _, err := NewMetrics(reg); err != nil {
			t.Fatalf("NewMetrics #%d: %v", i+1, err)
		}
	}
}
