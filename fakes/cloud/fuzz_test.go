package cloud

import (
	"fmt"
	"net/http"
	"net/http/httptest"
	"net/url"
	"strings"
	"testing"

	cloudapi "github.com/depharness/depharness/api/cloud"
)

// FuzzProtocolBodies feeds arbitrary bodies to every protocol route that
// reads one: the fake answers a 2xx or 4xx, never a 5xx, and never panics.
func FuzzProtocolBodies(f *testing.F) {
	for _, s := range []string{
		`{"belongs_to__application":2,"device_type":"x","is_managed_by__device":1,"uuid":"0123456789abcdef0123456789abcdef"}`,
		`{"status":"Idle","is_online":true,"is_on__commit":"abc"}`,
		`{"uuid":"0123456789abcdef0123456789abcdef","message":"hi"}` + "\n" + `{"uuid":""}`,
		``, `{`, `null`, `[]`, `{"status":null}`, "\n\n\n", `{"is_online":1}`,
	} {
		f.Add(s, "uuid eq 'x'")
	}
	s, err := New(Options{Seed: 1})
	if err != nil {
		f.Fatal(err)
	}
	gw, err := s.CreateGateway(GatewaySpec{})
	if err != nil {
		f.Fatal(err)
	}
	app, err := s.CreateApp(AppSpec{Gateway: gw.UUID})
	if err != nil {
		f.Fatal(err)
	}
	d, err := s.CreateDevice(DeviceSpec{AppID: app.ID})
	if err != nil {
		f.Fatal(err)
	}
	f.Fuzz(func(t *testing.T, body, filter string) {
		for _, rt := range []struct{ method, path string }{
			{"POST", cloudapi.PathDevices},
			{"PATCH", fmt.Sprintf(cloudapi.PathDeviceFmt, d.ID)},
			{"POST", fmt.Sprintf(cloudapi.PathLogStreamFmt, gw.UUID)},
			{"GET", cloudapi.PathDevices + "?$filter=" + url.QueryEscape(filter)},
		} {
			req := httptest.NewRequest(rt.method, rt.path, strings.NewReader(body))
			req.Header.Set("Authorization", "Bearer "+gw.APIKey)
			w := httptest.NewRecorder()
			s.ServeHTTP(w, req)
			if w.Code >= 500 || w.Code < 200 {
				t.Errorf("%s %s with %q: got %d (%s)", rt.method, rt.path, body, w.Code, w.Body)
			}
			if w.Code >= 300 && w.Code != http.StatusConflict && w.Code/100 != 4 {
				t.Errorf("%s %s: got %d", rt.method, rt.path, w.Code)
			}
		}
	})
}
