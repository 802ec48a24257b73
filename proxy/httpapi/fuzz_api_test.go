package httpapi

import (
	"bytes"
	"errors"
	"io"
	"net/http"
	"net/http/httptest"
	"net/url"
	"strings"
	"testing"
)

// FuzzAPIRequest sends arbitrary requests (method, path, key scheme,
// headers, body, a cloud up or failing) to the whole API handler: it must
// never panic and never answer 500, and without a valid key it serves
// nothing but /ping. The other fuzzers of this package judge one route's
// body each; this one judges the routing, the key check and every route
// together.
func FuzzAPIRequest(f *testing.F) {
	fx := newDeviceFixture(f)
	paths := []string{
		"/ping", "/v1/devices", "/v1/devices/" + fx.plain, "/v1/devices/" + fx.plain + "/logs",
		"/v1/devices/" + fx.marked, "/v1/devices/" + fx.marked + "/logs", "/v1/dependent-apps",
		"/v1/dependent-apps/5/assets/c5", "/v1/dependent-apps/5/assets/", "/v1/dependent-apps/", "/", "/v1/",
		"/v1/devices/" + fx.plain + "/restart", "*", "",
	}
	for _, s := range []struct {
		method string
		path   uint8
		tail   string
		auth   uint8
		hdrs   string
		body   string
		down   bool
	}{
		{"GET", 0, "", 0, "", "", false},
		{"GET", 1, "", 1, "", "", false},
		{"POST", 1, "", 1, "Content-Type: application/json", `{"appId":5}`, true},
		{"PUT", 2, "", 2, "", `{"status":"s","is_online":true,"commit":"c"}`, true},
		{"PUT", 2, "", 0, "", `{"status":"s"}`, false},
		{"POST", 3, "", 3, "", `{"message":"m","timestamp":1}`, false},
		{"GET", 7, "", 1, "Range: bytes=-0\nIf-None-Match: \"x\"", "", false},
		{"GET", 7, "", 1, "Range: bytes=5-2,0-", "", false},
		{"OPTIONS", 13, "", 0, "", "", false},
		{"DELETE", 2, "", 1, "", "", false},
		{"PUT", 4, "", 1, "", `{"environment":{"A":"1"},"config":[]}`, false},
		{"GET", 8, "+2/x", 1, "", "", false},
		{"GET", 11, "../ping", 0, "", "", false},
		{"PATCH", 3, "?apikey=", 4, "Authorization: Basic eA==", "{}", false},
		{"HEAD", 2, "%2e%2e", 5, "Content-Encoding: gzip", "\x1f\x8b", false},
	} {
		f.Add(s.method, s.path, s.tail, s.auth, s.hdrs, []byte(s.body), s.down)
	}
	f.Fuzz(func(t *testing.T, method string, pathSel uint8, tail string, auth uint8, hdrs string, body []byte, down bool) {
		target := paths[int(pathSel)%len(paths)] + tail
		u, err := url.ParseRequestURI(target)
		if err != nil || method == "" || strings.ContainsAny(method, " \t\r\n()<>@,;:\\\"/[]?={}") || len(method) > 32 {
			return // net/http's server would refuse it before any handler
		}
		req := &http.Request{
			Method: method, URL: u, RequestURI: target, Proto: "HTTP/1.1", ProtoMajor: 1, ProtoMinor: 1,
			Header: http.Header{}, Host: "proxy", RemoteAddr: "127.0.0.1:1",
			Body: io.NopCloser(bytes.NewReader(body)), ContentLength: int64(len(body)),
		}
		if auth%7 == 6 {
			req.ContentLength = -1 // chunked: length unknown
		}
		for line := range strings.SplitSeq(hdrs, "\n") {
			k, v, ok := strings.Cut(line, ":")
			if k = strings.TrimSpace(k); ok && k != "" && !strings.ContainsAny(k, " \t\r:") {
				req.Header.Add(k, strings.TrimSpace(v))
			}
		}
		keyed := false
		switch auth % 6 {
		case 1:
			req.Header.Set("Authorization", "Bearer "+testKey)
			keyed = true
		case 2:
			req.Header.Set("Authorization", "ApiKey "+testKey)
			keyed = true
		case 3:
			q := u.Query()
			q.Set("apikey", testKey)
			u.RawQuery = q.Encode()
			keyed = true
		case 4:
			req.Header.Set("Authorization", "Bearer "+testKey+"x")
		case 5:
			req.Header.Set("Authorization", testKey)
		}
		if strings.Contains(target, testKey) || strings.Contains(hdrs, testKey) {
			keyed = true // the fuzzer found the key: any answer goes
		}
		if down {
			fx.cloud.setFail(errors.New("cloud unreachable"))
			defer fx.cloud.setFail(nil)
		}
		rec := httptest.NewRecorder()
		fx.h.ServeHTTP(rec, req)
		if rec.Code == http.StatusInternalServerError || rec.Code < 100 || rec.Code > 599 {
			t.Fatalf("%s %q (auth %d, headers %q, body %q, cloud down %t): %d %q\nlog: %s",
				method, target, auth%6, hdrs, body, down, rec.Code, rec.Body.String(), tailOf(fx.logs))
		}
		if !keyed && u.Path != "/ping" && rec.Code/100 == 2 {
			t.Fatalf("%s %q without a valid key: %d %q", method, target, rec.Code, rec.Body.String())
		}
	})
}

// tailOf is the end of the handler's log (where a recovered panic shows).
func tailOf(b *syncBuffer) string {
	s := b.String()
	return s[max(0, len(s)-2000):]
}
