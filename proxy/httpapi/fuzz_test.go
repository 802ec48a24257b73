package httpapi

import (
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"net/url"
	"strings"
	"testing"

	"github.com/depharness/depharness/api"
	"github.com/depharness/depharness/api/cloud"
	"github.com/depharness/depharness/proxy/store"
)

// serve runs one request through the handler in process (no network: the
// fuzzers run many).
func (e *testEnv) serve(method, path, body string) (int, string) {
	req := httptest.NewRequest(method, path, strings.NewReader(body))
	req.Header.Set("Authorization", "Bearer "+testKey)
	rec := httptest.NewRecorder()
	e.h.ServeHTTP(rec, req)
	return rec.Code, rec.Body.String()
}

var errorTexts = map[string]bool{
	api.ErrTextMalformedJSON: true, api.ErrTextBodyTooLarge: true, api.ErrTextAppIDInvalid: true,
	api.ErrTextIsOnlineInvalid: true, api.ErrTextStatusInvalid: true, api.ErrTextCommitInvalid: true,
	api.ErrTextEnvironmentInvalid: true, api.ErrTextConfigInvalid: true, api.ErrTextNoAttributes: true,
	api.ErrTextMessageInvalid: true, api.ErrTextTimestampInvalid: true, api.ErrTextIsSystemInvalid: true,
	"device_type must be a non-empty string": true,
}

// members decodes body as a JSON object, or nil if it is not one.
func members(body string) map[string]json.RawMessage {
	var m map[string]json.RawMessage
	if json.Unmarshal([]byte(body), &m) != nil {
		return nil
	}
	return m
}

func FuzzDeviceUpdateBody(f *testing.F) {
	for _, s := range []string{`{"status":"Idle"}`, `{"is_online":true,"commit":"c"}`, `{"environment":{"A":"1"}}`,
		`{"config":[]}`, `{"is_online":null}`, `{}`, `[]`, `{"status":""}`, `{"a":1}`, "", `{"status":"x"} {}`} {
		f.Add(s)
	}
	fx := newDeviceFixture(f)
	path := "/v1/devices/" + fx.plain
	f.Fuzz(func(t *testing.T, body string) {
		_, before := fx.serve("GET", path, "")
		code, resp := fx.serve("PUT", path, body)
		m := members(body)
		switch code {
		case http.StatusOK:
			if m == nil {
				t.Fatalf("accepted a body that is not a JSON object: %q", body)
			}
			d := decodeDevice(t, resp)
			if raw, ok := m["is_online"]; ok {
				if v, isBool := jsonBool(raw); !isBool || d.IsOnline == nil || *d.IsOnline != v {
					t.Fatalf("is_online %s accepted as %v", raw, d.IsOnline)
				}
			}
			if raw, ok := m["status"]; ok {
				var s string
				if json.Unmarshal(raw, &s) != nil || s == "" || d.Status != s {
					t.Fatalf("status %s accepted as %q", raw, d.Status)
				}
			}
			for _, k := range []string{"environment", "config"} {
				if raw, ok := m[k]; ok && (len(raw) == 0 || raw[0] != '{') {
					t.Fatalf("%s %s accepted", k, raw)
				}
			}
		case http.StatusBadRequest:
			if !errorTexts[resp] {
				t.Fatalf("400 with unexpected text %q", resp)
			}
			if _, after := fx.serve("GET", path, ""); after != before {
				t.Fatalf("a refused PUT changed the device:\n%s\n%s", before, after)
			}
		case http.StatusRequestEntityTooLarge:
		default:
			t.Fatalf("PUT %q: status %d %q", body, code, resp)
		}
	})
}

func FuzzProvisionBody(f *testing.F) {
	for _, s := range []string{`{"appId":5}`, `{"appId":5,"device_type":"edge"}`, `{"appId":0}`, `{"appId":"5"}`,
		`{"appId":1.5}`, `{"appId":5,"device_type":1}`, `{}`, ``, `{"appId":9223372036854775808}`, `{"appId":-1}`} {
		f.Add(s)
	}
	e := newEnv(f)
	f.Fuzz(func(t *testing.T, body string) {
		code, resp := e.serve("POST", "/v1/devices", body)
		switch code {
		case http.StatusCreated:
			m := members(body)
			id, ok := jsonInteger(m["appId"])
			if m == nil || !ok || id <= 0 {
				t.Fatalf("provisioned with body %q", body)
			}
			var pr api.ProvisionResponse
			if err := json.Unmarshal([]byte(resp), &pr); err != nil || !hex32.MatchString(pr.UUID) || pr.DeviceType == "" {
				t.Fatalf("201 body %s: %v", resp, err)
			}
		case http.StatusBadRequest:
			if !errorTexts[resp] {
				t.Fatalf("400 with unexpected text %q", resp)
			}
		default:
			t.Fatalf("POST %q: status %d %q", body, code, resp)
		}
	})
}

func FuzzLogBody(f *testing.F) {
	for _, s := range []string{`{"message":"m"}`, `{"message":"m","timestamp":1,"isSystem":true}`, `{"message":1}`,
		`{"message":"m","timestamp":"1"}`, `{"message":"m","timestamp":1e400}`, `{"message":"m","isSystem":0}`, ``, `[]`} {
		f.Add(s)
	}
	fx := newDeviceFixture(f)
	path := "/v1/devices/" + fx.plain + "/logs"
	f.Fuzz(func(t *testing.T, body string) {
		depth := func() int64 {
			n, err := fx.store.OutboxDepth(t.Context(), store.OutboxLog)
			if err != nil {
				t.Fatal(err)
			}
			return n
		}
		before := depth()
		code, resp := fx.serve("POST", path, body)
		switch code {
		case http.StatusAccepted:
			rows, err := fx.store.NextOutbox(t.Context(), store.OutboxLog, int(before)+1)
			if err != nil || int64(len(rows)) != before+1 {
				t.Fatalf("outbox: %d rows (%v), want %d", len(rows), err, before+1)
			}
			var l cloud.LogLine
			if err := json.Unmarshal(rows[len(rows)-1].Payload, &l); err != nil {
				t.Fatal(err)
			}
			var msg string
			if err := json.Unmarshal(members(body)["message"], &msg); err != nil || msg != l.Message || l.UUID != fx.plain {
				t.Fatalf("buffered %+v for body %q", l, body)
			}
		case http.StatusBadRequest:
			if !errorTexts[resp] {
				t.Fatalf("400 with unexpected text %q", resp)
			}
			if after := depth(); after != before {
				t.Fatalf("a refused log line was buffered")
			}
		case http.StatusRequestEntityTooLarge:
		default:
			t.Fatalf("POST %q: status %d %q", body, code, resp)
		}
	})
}

func FuzzUUIDPath(f *testing.F) {
	for _, s := range []string{"0123456789abcdef0123456789abcdef", "", "a/b", "..", "%", "' OR 1=1 --", "\x00", "é", "?apikey=x"} {
		f.Add(s)
	}
	fx := newDeviceFixture(f)
	f.Fuzz(func(t *testing.T, uuid string) {
		want := map[int]bool{http.StatusNotFound: true}
		switch uuid {
		case fx.plain:
			want = map[int]bool{http.StatusOK: true, http.StatusAccepted: true}
		case fx.marked:
			want = map[int]bool{http.StatusGone: true}
		}
		path := "/v1/devices/" + url.PathEscape(uuid)
		for _, r := range []struct{ method, path, body string }{
			{"GET", path, ""},
			{"PUT", path, `{"status":"s"}`},
			{"POST", path + "/logs", `{"message":"m"}`},
		} {
			code, resp := fx.serve(r.method, r.path, r.body)
			if !want[code] {
				t.Fatalf("%s %s: status %d %q, want one of %v", r.method, r.path, code, resp, want)
			}
			if code == http.StatusNotFound && resp != api.ErrTextDeviceNotFound && resp != api.ErrTextNotFound {
				t.Fatalf("%s %s: 404 text %q", r.method, r.path, resp)
			}
		}
	})
}
